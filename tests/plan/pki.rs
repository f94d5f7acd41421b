use super::*;

/// `openssl x509` text of a certificate: subject, extended key usage and SANs.
fn x509(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "extendedKeyUsage,subjectAltName,basicConstraints",
            "-in",
        ])
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        cert.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cluster_pki_is_kubeadms_and_every_certificate_verifies_against_its_ca() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let pki = |node: &str, f: &str| s.path(&format!("plan/{node}/etc/kubernetes/pki/{f}"));
    // Profiles from kubeadm's certlist.go and constants.go (see src/pki/cluster.rs).
    const SERVER_CLIENT: &str = "TLS Web Server Authentication, TLS Web Client Authentication";
    const CLIENT: &str = "TLS Web Client Authentication";
    let table: [(&str, &str, &str, &[&str]); 5] = [
        (
            "etcd/server.crt",
            "etcd/ca.crt",
            SERVER_CLIENT,
            &[
                "CN = master2",
                "DNS:master2",
                "DNS:localhost",
                "IP Address:@master2",
                "IP Address:127.0.0.1",
                "IP Address:0:0:0:0:0:0:0:1",
            ],
        ),
        (
            "etcd/peer.crt",
            "etcd/ca.crt",
            SERVER_CLIENT,
            &["CN = master2", "DNS:master2", "IP Address:@master2"],
        ),
        (
            "etcd/healthcheck-client.crt",
            "etcd/ca.crt",
            CLIENT,
            &["O = system:masters", "CN = kube-etcd-healthcheck-client"],
        ),
        (
            "apiserver-etcd-client.crt",
            "etcd/ca.crt",
            CLIENT,
            &["O = system:masters", "CN = kube-apiserver-etcd-client"],
        ),
        ("ca.crt", "ca.crt", "", &["CN = kubernetes", "CA:TRUE"]),
    ];
    for (cert, ca, eku, needles) in table {
        let verify = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(pki("master2", ca))
            .arg(pki("master2", cert))
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let text = x509(&pki("master2", cert));
        assert!(text.contains(eku), "{cert}: {text}");
        for n in needles {
            let n = n.replace("@master2", &w.addr("master2"));
            assert!(text.contains(&n), "{cert} lacks {n}: {text}");
        }
    }
    assert!(x509(&pki("master2", "front-proxy-ca.crt")).contains("CN = front-proxy-ca"));
    assert!(x509(&pki("master2", "etcd/ca.crt")).contains("CN = etcd-ca"));
    // A certificate from another member's CA chain would not do: each member has its own.
    assert_ne!(
        std::fs::read(pki("master1", "etcd/server.crt")).unwrap(),
        std::fs::read(pki("master2", "etcd/server.crt")).unwrap()
    );
    // Keys are 0600 in the plan and in the state; workers get no cluster keys.
    for key in [
        "ca.key",
        "sa.key",
        "etcd/server.key",
        "apiserver-etcd-client.key",
    ] {
        let mode = std::fs::metadata(pki("master1", key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let state_key = s.path("ferry.state/pki/ca.key");
    assert_eq!(
        std::fs::metadata(&state_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!s.path("plan/worker1/etc/kubernetes/pki").exists());
    // The service-account key pair matches.
    let derived = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(pki("master1", "sa.key"))
        .output()
        .unwrap();
    assert_eq!(
        derived.stdout,
        std::fs::read(pki("master1", "sa.pub")).unwrap()
    );
}
