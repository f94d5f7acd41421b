use super::*;

/// containerd on worker1, installed as the plan has it (its programs at
/// /usr/local/bin, its config.toml, certs.d and the site CA under /etc), pulls
/// every image of the bundle by its upstream name from the site registry that
/// `ferry-installer serve` runs on master1, across the nodes' network, over TLS.
/// The node has no route anywhere else.
#[test]
fn containerd_with_the_rendered_config_pulls_every_image_by_its_upstream_name() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let master1 = w.addr("master1");
    let _srv = Serve::start_in(
        s,
        &w.nodes.node("master1").netns,
        &[
            "--store",
            w.site.to_str().unwrap(),
            "--addr",
            &format!("{master1}:{}", w.port),
            "--san",
            "master1",
            "--san",
            &master1,
        ],
    );
    let log = s.path("containerd.log");
    let mut script = format!(
        "set -e\ntest \"$(command -v containerd)\" = /usr/local/bin/containerd\n/usr/local/bin/containerd --config /etc/containerd/config.toml >'{log}' 2>&1 &\nC=$!\ntrap 'kill $C' EXIT\nfor i in $(seq 100); do /usr/local/bin/ctr version >/dev/null 2>&1 && break; sleep 0.1; done\n",
        log = log.display()
    );
    for (r, _) in &w.images {
        script.push_str(&format!(
            "/usr/local/bin/ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d --snapshotter native --platform linux/amd64 {r} >/dev/null\n"
        ));
    }
    script.push_str("/usr/local/bin/ctr -n k8s.io images ls\n");
    let out = w
        .nodes
        .node("worker1")
        .command(Some(&s.path("plan/worker1")), &script)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pull failed:\n{ls}\n{}\ncontainerd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for (r, img) in &w.images {
        let line = ls
            .lines()
            .find(|l| l.starts_with(r.as_str()))
            .unwrap_or_else(|| panic!("{r} not pulled:\n{ls}"));
        assert!(
            line.contains(img.digest()),
            "{r}: the digest differs:\n{line}"
        );
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
