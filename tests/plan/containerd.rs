use super::*;

#[test]
fn containerd_with_the_rendered_config_pulls_every_image_by_its_upstream_name() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let _srv = Serve::start(
        s,
        &[
            "--store",
            w.site.to_str().unwrap(),
            "--addr",
            &format!("127.0.0.1:{}", w.port),
        ],
    );
    let node = s.path("node");
    std::fs::create_dir_all(&node).unwrap();
    let mut script = format!(
        "set -e\nexport PATH='{bin}':$PATH\ntest \"$(command -v containerd)\" = '{bin}/containerd'\nmount --bind '{plan}' /etc/containerd\ncontainerd --config /etc/containerd/config.toml --root '{n}/root' --state '{n}/state' --address '{n}/c.sock' >'{n}/containerd.log' 2>&1 &\nC=$!\ntrap 'kill $C' EXIT\nfor i in $(seq 100); do ctr --address '{n}/c.sock' version >/dev/null 2>&1 && break; sleep 0.1; done\n",
        plan = s.path("plan/master1/etc/containerd").display(),
        bin = s.path("plan/master1/usr/local/bin").display(),
        n = node.display()
    );
    for (r, _) in &w.images {
        script.push_str(&format!(
            "ctr --address '{n}/c.sock' images pull --hosts-dir /etc/containerd/certs.d --snapshotter native --platform linux/amd64 {r} >/dev/null\n",
            n = node.display()
        ));
    }
    script.push_str(&format!(
        "ctr --address '{}/c.sock' images ls\n",
        node.display()
    ));
    // Only this process sees the rendered tree at /etc/containerd.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pull failed:\n{ls}\n{}\ncontainerd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(node.join("containerd.log")).unwrap_or_default()
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
}
