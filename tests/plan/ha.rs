use super::*;

/// A stand-in apiserver (not kube-apiserver): HTTPS on ADDR:6443 answering every
/// GET with its name.
const STAND_IN: &str = r#"
import http.server, ssl, sys
name, addr, cert, key = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
class H(http.server.BaseHTTPRequestHandler):
    # Each connection shakes hands in its own thread, under a timeout: a peer
    # that connects and then says nothing (haproxy's forwarded half of a client
    # lost while the VIP moved) must not stall every later connection, as a
    # handshake inside accept() on the listening socket would.
    timeout = 5
    def setup(self):
        self.request = ctx.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((addr, 6443), H)
srv.serve_forever()
"#;

#[test]
fn haproxy_and_keepalived_hold_the_vip_and_outlive_a_lost_apiserver_and_a_lost_node() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    assert!(!s.path("plan/worker1/etc/haproxy").exists());
    for node in ["master1", "master2", "master3"] {
        let cfg = s.path(&format!("plan/{node}/etc/haproxy/haproxy.cfg"));
        let out = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "haproxy -c {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ka = s.path(&format!("plan/{node}/etc/keepalived/keepalived.conf"));
        let out = Command::new("keepalived")
            .arg("--config-test")
            .arg("-f")
            .arg(&ka)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keepalived --config-test {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = s.read("plan/master2/etc/keepalived/keepalived.conf");
    assert!(
        text.contains(&w.vip()) && text.contains("virtual_router_id 51"),
        "{text}"
    );

    // haproxy holds VIP:6443 on every control plane, so each apiserver binds its
    // node's address only: a kubeadm patch each control plane's config names.
    let mut binds = Vec::new();
    for (node, config) in [
        ("master1", "kubeadm-init.yaml"),
        ("master2", "kubeadm-join.yaml"),
        ("master3", "kubeadm-join.yaml"),
    ] {
        let config = s.read(&format!("plan/{node}/etc/kubernetes/ferry/{config}"));
        assert!(
            config.contains("patches:\n  directory: /etc/kubernetes/ferry/patches\n"),
            "{node}: {config}"
        );
        let patch: serde_json::Value = serde_json::from_str(&s.read(&format!(
            "plan/{node}/etc/kubernetes/ferry/patches/kube-apiserver0+json.json"
        )))
        .unwrap();
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(patch[0]["path"], "/spec/containers/0/command/-");
        let flag = patch[0]["value"].as_str().unwrap();
        let addr = flag.strip_prefix("--bind-address=").unwrap().to_string();
        binds.push((node, addr));
    }
    assert!(!s.path("plan/worker1/etc/kubernetes/ferry/patches").exists());
    assert!(!s
        .read("plan/worker1/etc/kubernetes/ferry/kubeadm-join.yaml")
        .contains("patches:"));

    // On each control plane, in its own network namespace with its tree in place:
    // a stand-in apiserver on the address its patch binds, and the real haproxy
    // and keepalived with their rendered configs. keepalived must put the VIP on
    // one of them, and a client on worker1 reach every apiserver through it.
    assert_eq!(
        binds,
        [
            ("master1", w.addr("master1")),
            ("master2", w.addr("master2")),
            ("master3", w.addr("master3"))
        ]
    );
    self_signed(s, "api", "kube-apiserver");
    s.write("stand-in.py", STAND_IN);
    let start = |node: &str, what: &str, script: String| {
        w.nodes
            .node(node)
            .command(Some(&s.path(&format!("plan/{node}"))), &script)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(s.path(&format!("{what}-{node}.log"))).unwrap())
            .spawn()
            .unwrap()
    };
    let (mut apis, mut haproxies, mut keepaliveds) = (
        Members(Vec::new()),
        Members(Vec::new()),
        Members(Vec::new()),
    );
    for (node, addr) in &binds {
        apis.0.push(start(
            node,
            "api",
            format!(
                "exec python3 '{}' {node} {addr} '{}' '{}'",
                s.path("stand-in.py").display(),
                s.path("api.crt").display(),
                s.path("api.key").display()
            ),
        ));
        haproxies.0.push(start(
            node,
            "haproxy",
            "sysctl -q -p /etc/sysctl.d/99-ferry-ha.conf && exec haproxy -db -f /etc/haproxy/haproxy.cfg".into(),
        ));
        keepaliveds.0.push(start(
            node,
            "keepalived",
            "exec keepalived --dont-fork --log-console --log-detail -f /etc/keepalived/keepalived.conf".into(),
        ));
    }
    let vip = w.vip();
    let holds_vip = |node: &str| {
        let out = Command::new("ip")
            .args([
                "-n",
                &w.nodes.node(node).netns,
                "-br",
                "addr",
                "show",
                "eth0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {vip}/"))
    };
    let ask = || -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &w.nodes.node("worker1").netns])
            .args(["curl", "-sk", "--max-time", "3"])
            .arg(format!("https://{vip}:6443/readyz"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let logs = || {
        [
            "haproxy-master1",
            "keepalived-master1",
            "keepalived-master2",
        ]
        .map(|l| {
            format!(
                "{l}:\n{}",
                std::fs::read_to_string(s.path(&format!("{l}.log"))).unwrap_or_default()
            )
        })
        .join("\n")
    };
    // Every backend answers through the VIP once keepalived holds it and haproxy
    // has checked them all.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "backends seen: {seen:?}\n{}",
            logs()
        );
        if let Some(name) = ask() {
            seen.insert(name);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Exactly one control plane holds the VIP (they all start as BACKUP with
    // nopreempt: the first to time out keeps it).
    let holder = || -> Vec<&str> {
        ["master1", "master2", "master3"]
            .into_iter()
            .filter(|n| holds_vip(n))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while holder().len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "holders {:?}:\n{}",
            holder(),
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let first = holder()[0];
    // One apiserver goes away: after its checks fail, every request still gets an answer.
    let mut gone = apis.0.remove(1);
    gone.kill().unwrap();
    gone.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(6));
    for _ in 0..12 {
        let name =
            ask().unwrap_or_else(|| panic!("a request failed with master2 down:\n{}", logs()));
        assert_ne!(name, "master2");
    }
    // The holder's keepalived stops: the VIP moves to another control plane,
    // whose haproxy keeps answering.
    let at = ["master1", "master2", "master3"]
        .iter()
        .position(|n| *n == first)
        .unwrap();
    let mut stopped = keepaliveds.0.remove(at);
    Command::new("kill")
        .args(["-TERM", &stopped.id().to_string()])
        .status()
        .unwrap();
    stopped.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = holder();
        if now.len() == 1 && now[0] != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VIP did not move from {first}: {now:?}\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The new holder announces the VIP by gratuitous ARP; a request racing that
    // announcement may go to the old holder's MAC, so a client tries again, as
    // kubelet and kubectl do.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let name = loop {
        if let Some(name) = ask() {
            break name;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer once the VIP moved:\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_ne!(name, "master2");
    drop((apis, haproxies, keepaliveds));
}
