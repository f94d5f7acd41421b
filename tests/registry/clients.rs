//! Real clients pulling from `serve`: skopeo over HTTP and over TLS with the
//! generated CA, containerd and podman through their mirror configurations, and
//! ferry-bundler itself with credentials.

use super::*;

#[test]
fn skopeo_pulls_every_image_kind_over_plain_http_with_store_digests() {
    let s = Session::new();
    let f = filled_store(&s);
    let store_index = index_digests(&s.path("store"));
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    assert!(srv.url.starts_with("http://"), "{}", srv.url);
    for (name, img) in named(&f) {
        assert_eq!(
            store_index[name],
            img.digest(),
            "store holds upstream digest"
        );
        skopeo_check(
            &["--tls-verify=false"],
            srv.addr(),
            name,
            img.digest(),
            &s.path("out"),
        );
    }
    // The OCI-typed images land in the oci: layout with their digests unchanged.
    let oci = index_digests(&s.path("out/oci"));
    assert_eq!(oci["registry.k8s.io_apps_beta_v2"], f.beta.digest());
    assert_eq!(oci["registry.k8s.io_delta_1.0"], f.delta.digest());
}

#[test]
fn skopeo_pulls_over_tls_with_the_generated_ca_which_is_kept_across_restarts() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--san", "registry.site.test"]);
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    let ca = s.path("pki/ca.pem");
    // The CA's full path, ready for hosts.toml.
    let ca_full = ca.canonicalize().unwrap();
    assert!(
        srv.log()
            .contains(&format!("site CA: {} (made now)", ca_full.display())),
        "the CA path is printed:\n{}",
        srv.log()
    );
    let certs = s.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let cert_dir = format!("--cert-dir={}", certs.display());
    for (name, img) in named(&f) {
        skopeo_check(&[&cert_dir], srv.addr(), name, img.digest(), &s.path("out"));
    }
    // Without the CA the certificate is not trusted: TLS is real.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("docker://{}/registry.k8s.io/pause:3.10", srv.addr()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The SAN asked for is in the certificate.
    let text = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(s.path("pki/registry.pem")));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:registry.site.test"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    drop(srv);

    // A restart keeps the CA nodes already trust.
    let before = std::fs::read(&ca).unwrap();
    let srv = Serve::start(&s, &["--store", "store", "--san", "other.site.test"]);
    assert_eq!(std::fs::read(&ca).unwrap(), before, "the CA was replaced");
    // And says so: only the server certificate is new (regression: "made now").
    let log = srv.log();
    assert!(
        log.contains(&format!("site CA: {} (kept)", ca_full.display()))
            && log.contains("server certificate (made now) names:"),
        "{log}"
    );
    // The name the last certificate had and this one lacks is said, with the fix
    // (regression: dropped without a word, and nodes using it failed TLS).
    assert!(
        log.contains("warning: the certificate it replaced also named registry.site.test: clients that reach the registry by it now fail TLS; to keep it, pass --san registry.site.test"),
        "{log}"
    );
    skopeo_check(
        &[&cert_dir],
        srv.addr(),
        "registry.k8s.io/delta:1.0",
        f.delta.digest(),
        &s.path("out2"),
    );
}

#[test]
fn containerd_pulls_by_the_upstream_name_through_a_hosts_toml_mirror_for_amd64_and_arm64() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store"]);
    let ca = s.path("pki/ca.pem");
    let certs_d = s.path("certs.d");
    s.write(
        &format!("certs.d/{K8S}/hosts.toml"),
        &format!(
            "server = \"https://{K8S}\"\n\n[host.\"https://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
            srv.addr(),
            ca.display()
        ),
    );
    let node = Containerd::start(&s.path("node"), &certs_d);
    for (platform, p) in [
        ("linux/amd64", &f.pause.platforms[0]),
        ("linux/arm64", &f.pause.platforms[1]),
    ] {
        let out = node.pull(&certs_d, Some(platform), "registry.k8s.io/pause:3.10");
        assert!(
            out.status.success(),
            "ctr pull {platform} failed:\n{}\n{}\ncontainerd:\n{}\nserve:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&node.log).unwrap_or_default(),
            srv.log()
        );
        // The platform's layers are now in the node's content store.
        let content =
            String::from_utf8_lossy(&node.ctr(&["content", "ls", "-q"]).stdout).into_owned();
        for b in p.blobs() {
            assert!(
                content.contains(&b.digest),
                "{platform}: {} not fetched",
                b.digest
            );
        }
    }
    let ls = String::from_utf8_lossy(&node.ctr(&["images", "ls"]).stdout).into_owned();
    let line = ls
        .lines()
        .find(|l| l.starts_with("registry.k8s.io/pause:3.10"))
        .unwrap_or_else(|| panic!("image not listed:\n{ls}"));
    assert!(line.contains(f.pause.digest()), "digest differs:\n{line}");
    // It came through the mirror path containerd uses, not by luck.
    assert!(
        srv.log()
            .contains("/v2/pause/manifests/3.10?ns=registry.k8s.io"),
        "{}",
        srv.log()
    );
}

#[test]
fn podman_pulls_by_the_upstream_name_through_a_registries_conf_mirror() {
    assert!(
        Command::new("podman").arg("--version").output().is_ok(),
        "podman is not installed: apt-get install podman (.ci/run does)"
    );
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store"]);
    // containers/image replaces the prefix with the mirror location, so the
    // location carries the upstream host as the first path component.
    let conf = s.write(
        "registries.conf",
        &format!(
            "[[registry]]\nprefix = \"{K8S}\"\nlocation = \"{K8S}\"\n\n[[registry.mirror]]\nlocation = \"{}/{K8S}\"\n",
            srv.addr()
        ),
    );
    // Trust the site CA the way a node would (certs.d of containers/image).
    let certs = s.path(&format!("certs.d/{}", srv.addr()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(s.path("pki/ca.pem"), certs.join("ca.crt")).unwrap();
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(s.path("podman/root"))
            .arg("--runroot")
            .arg(s.path("podman/run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .env("XDG_CONFIG_HOME", s.path("xdg"))
            .output()
            .unwrap()
    };
    let certs_d = s.path("certs.d").display().to_string();
    let out = podman(&[
        "pull",
        "--cert-dir",
        &format!("{certs_d}/{}", srv.addr()),
        "--platform",
        "linux/arm64",
        "registry.k8s.io/pause:3.10",
    ]);
    assert!(
        out.status.success(),
        "podman pull failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    let out = podman(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.Digest}}",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("registry.k8s.io/pause:3.10 {}", f.pause.digest())),
        "{text}"
    );
    assert!(srv
        .log()
        .contains("/v2/registry.k8s.io/pause/manifests/3.10"));
}

/// One site's registry as the upstream of another build: `ferry-bundler` pulls from
/// `serve --auth-pull` over HTTPS with the site CA and Basic credentials.

#[test]
fn the_bundler_pulls_from_a_ferry_registry_with_basic_auth_and_the_site_ca() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(
        &s,
        &["--store", "store", "--htpasswd", users(&s), "--auth-pull"],
    );
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    // The site registry keeps upstream names: registry.k8s.io/pause lives at
    // /v2/registry.k8s.io/pause, so the rule puts the host back as a prefix.
    s.write(
        "site-mirrors.toml",
        &mirrors(&[Rule {
            host: K8S,
            endpoints: vec![(srv.url.clone(), Some(K8S), false)],
        }]),
    );
    s.write(
        "site.toml",
        &spec(
            &["linux/amd64", "linux/arm64"],
            &[&format!("{K8S}/pause:3.10")],
        ),
    );
    let args = [
        "pull",
        "site.toml",
        "--mirrors",
        "site-mirrors.toml",
        "--store",
        "copy",
        "--ca-cert",
        "pki/ca.pem",
    ];
    let run = s.bundler(&args).failure();
    assert!(run.error_line().contains("--cred"), "{}", run.stderr);
    let cred = format!("{}=alice:s3cret", srv.addr());
    let mut with_cred = args.to_vec();
    with_cred.extend(["--cred", &cred]);
    s.bundler(&with_cred).success();
    let index = std::fs::read_to_string(s.path("copy/index.json")).unwrap();
    assert!(index.contains(f.pause.digest()), "{index}");
    assert!(
        srv.log().contains("alice"),
        "the pull was not authenticated"
    );
}
