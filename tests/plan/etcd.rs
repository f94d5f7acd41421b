use super::*;

/// The arguments of a unit's ExecStart, continuation lines joined.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_rendered_etcd_members_form_a_cluster_over_mutual_tls_and_snapshot_it() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    // The programs the plan unpacked from the release's etcd archive.
    let etcdctl = s.path("plan/master1/usr/local/bin/etcdctl");
    // Each member runs its rendered ExecStart verbatim in its own node, where its
    // tree is at the real paths (/usr/local/bin/etcd, /etc/kubernetes/pki/etcd,
    // an empty /var/lib for its data).
    let mut members = Members(Vec::new());
    for node in ["master1", "master2", "master3"] {
        let unit = s.read(&format!("plan/{node}/etc/systemd/system/etcd.service"));
        let args = exec_start(&unit);
        assert_eq!(args[0], "/usr/local/bin/etcd", "{unit}");
        let log = std::fs::File::create(s.path(&format!("etcd-{node}.log"))).unwrap();
        members.0.push(
            w.nodes
                .node(node)
                .command(
                    Some(&s.path(&format!("plan/{node}"))),
                    &format!("exec {}", args.join(" ")),
                )
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let pki = |f: &str| s.path(&format!("plan/master1/etc/kubernetes/pki/{f}"));
    let ctl = |cert: &Path, key: &Path, args: &[&str]| {
        Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints=https://{}:2379,https://{}:2379,https://{}:2379",
                w.addr("master1"),
                w.addr("master2"),
                w.addr("master3")
            ))
            .arg(format!("--cacert={}", pki("etcd/ca.crt").display()))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let (hc, hk) = (
        pki("etcd/healthcheck-client.crt"),
        pki("etcd/healthcheck-client.key"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let out = ctl(&hc, &hk, &["endpoint", "health", "--cluster"]);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not become healthy:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            s.read("etcd-master1.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let list = ctl(&hc, &hk, &["member", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        3,
        "three members"
    );
    // The apiserver's client certificate writes and reads.
    let (ac, ak) = (
        pki("apiserver-etcd-client.crt"),
        pki("apiserver-etcd-client.key"),
    );
    assert!(ctl(&ac, &ak, &["put", "/ferry/test", "hello"])
        .status
        .success());
    let got = ctl(&ac, &ak, &["get", "/ferry/test", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "hello");
    // A certificate from another CA is refused.
    self_signed(s, "intruder", "intruder");
    let refused = ctl(
        &s.path("intruder.crt"),
        &s.path("intruder.key"),
        &["get", "/ferry/test"],
    );
    assert!(
        !refused.status.success(),
        "a foreign client certificate was accepted"
    );

    // The snapshot script: a checked snapshot, and only the last 7 kept.
    let backup = s.path("backup");
    std::fs::create_dir_all(&backup).unwrap();
    for i in 0..8 {
        let old = backup.join(format!("snapshot-2000010{i}T000000Z.db"));
        std::fs::write(&old, "old").unwrap();
        Command::new("touch")
            .args(["-d", &format!("2000-01-0{} 00:00", i + 1)])
            .arg(&old)
            .status()
            .unwrap();
    }
    // On master1, as its timer would run it, with the node's own etcdctl and PKI.
    let run = w
        .nodes
        .node("master1")
        .command(
            Some(&s.path("plan/master1")),
            &format!(
                "BACKUP_DIR='{}' exec /usr/local/bin/ferry-etcd-snapshot",
                backup.display()
            ),
        )
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut kept: Vec<String> = std::fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 7, "{kept:?}");
    let newest = backup.join(kept.last().unwrap());
    let status = Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&newest)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        !kept
            .iter()
            .any(|k| k.starts_with("snapshot-20000100") || k.starts_with("snapshot-20000101")),
        "{kept:?}"
    );
}
