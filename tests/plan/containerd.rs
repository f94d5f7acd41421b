use super::*;

/// containerd on every node, installed as the plan has it (its programs at
/// /usr/local/bin, its config.toml, certs.d and the site CA under /etc), pulls
/// every image of the bundle by its upstream name from the site registry that
/// master1 runs by its rendered unit, across the nodes' network, over TLS with the
/// certificate the plan issued it from the site CA.
/// The node has no route anywhere else.
#[test]
fn containerd_with_the_rendered_config_pulls_every_image_by_its_upstream_name() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    // The site registry as master1 runs it: its rendered unit's ExecStart, with
    // the certificate the plan gave it, over the release's store.
    let unit = s.read("plan/master1/etc/systemd/system/ferry-registry.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let log = s.path("registry.log");
    let _registry = Members(vec![w
        .nodes
        .node("master1")
        .command(
            Some(&s.path("plan/master1")),
            &format!(
                "mkdir -p /var/lib/ferry/store && mount --bind '{}' /var/lib/ferry/store && exec {exec}",
                w.site.display()
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s.read("registry.log").contains("listening on") {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry did not start:\n{}",
            s.read("registry.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every node at once, each its own containerd in its own namespace.
    let nodes = ["master1", "master2", "master3", "worker1"];
    let runs: Vec<_> = nodes
        .iter()
        .map(|node| {
            let log = s.path(&format!("containerd-{node}.log"));
            let mut script = format!(
                "set -e\ntest \"$(command -v containerd)\" = /usr/local/bin/containerd\n/usr/local/bin/containerd --config /etc/containerd/config.toml config dump\n/usr/local/bin/containerd --config /etc/containerd/config.toml >'{log}' 2>&1 &\nC=$!\ntrap 'kill $C' EXIT\nfor i in $(seq 100); do /usr/local/bin/ctr version >/dev/null 2>&1 && break; sleep 0.1; done\n",
                log = log.display()
            );
            for (r, _) in &w.images {
                script.push_str(&format!(
                    "/usr/local/bin/ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d --snapshotter native --platform linux/amd64 {r} >/dev/null\n"
                ));
            }
            script.push_str("echo '== images'\n/usr/local/bin/ctr -n k8s.io images ls\n");
            let child = w
                .nodes
                .node(node)
                .command(Some(&s.path(&format!("plan/{node}"))), &script)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (node, log, child)
        })
        .collect();
    for (node, log, child) in runs {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{node}: pull failed:\n{text}\n{}\ncontainerd:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let (dump, ls) = text.split_once("== images\n").unwrap();
        // Debian's containerd 1.6 reads the config rendered for the release's 1.7:
        // every key it has is one 1.6 knows too, and `config dump` shows it took them.
        for key in [
            "sandbox_image = \"registry.k8s.io/pause:3.10\"",
            "config_path = \"/etc/containerd/certs.d\"",
            "SystemdCgroup = true",
        ] {
            assert!(
                dump.contains(key),
                "{node}: containerd did not take {key}:\n{dump}"
            );
        }
        for (r, img) in &w.images {
            let line = ls
                .lines()
                .find(|l| l.starts_with(r.as_str()))
                .unwrap_or_else(|| panic!("{node}: {r} not pulled:\n{ls}"));
            assert!(
                line.contains(img.digest()),
                "{node}: {r}: the digest differs:\n{line}"
            );
        }
    }
    // Nothing but the nodes' own network is reachable from a node.
    let out = w
        .nodes
        .node("worker1")
        .command(
            None,
            "python3 -c 'import socket; socket.create_connection((\"192.0.2.1\", 443), timeout=3)'",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Network is unreachable"),
        "{err}"
    );
}
