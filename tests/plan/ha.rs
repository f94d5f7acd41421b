use super::*;

/// A stand-in apiserver: HTTPS on ADDR:6443 answering every GET with its name.
const STAND_IN: &str = r#"
import http.server, ssl, sys
name, addr, cert, key = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((addr, 6443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

#[test]
fn haproxy_and_keepalived_take_their_configs_and_haproxy_outlives_a_lost_apiserver() {
    let w = world();
    let s = &w.s;
    // The VIP on loopback, so a real haproxy can hold it here.
    s.write(
        "cluster.toml",
        &s.read("cluster.toml")
            .replace("192.168.10.10", "127.0.0.100"),
    );
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
        text.contains("127.0.0.100") && text.contains("virtual_router_id 51"),
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

    // Three stand-in apiservers, each on the address its patch binds, behind
    // master1's rendered haproxy on the VIP, the same port, the same host.
    self_signed(s, "api", "kube-apiserver");
    let mut apis = Members(Vec::new());
    assert_eq!(
        binds,
        [
            ("master1", "127.0.0.1".to_string()),
            ("master2", "127.0.0.2".to_string()),
            ("master3", "127.0.0.3".to_string())
        ]
    );
    for (name, addr) in &binds {
        let (name, addr) = (*name, addr.as_str());
        apis.0.push(
            Command::new("python3")
                .args(["-c", STAND_IN, name, addr])
                .arg(s.path("api.crt"))
                .arg(s.path("api.key"))
                .spawn()
                .unwrap(),
        );
    }
    let haproxy = Members(vec![Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(s.path("plan/master1/etc/haproxy/haproxy.cfg"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(s.path("haproxy.log")).unwrap())
        .spawn()
        .unwrap()]);
    let ask = || -> Option<String> {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "3", "https://127.0.0.100:6443/readyz"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Every backend answers once haproxy has checked them all.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "backends seen: {seen:?}\n{}",
            s.read("haproxy.log")
        );
        if let Some(name) = ask() {
            seen.insert(name);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // One apiserver goes away: after its checks fail, every request still gets an answer.
    let mut apis = apis;
    let mut gone = apis.0.remove(1);
    gone.kill().unwrap();
    gone.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(6));
    for _ in 0..12 {
        let name = ask().unwrap_or_else(|| {
            panic!(
                "a request failed with master2 down:\n{}",
                s.read("haproxy.log")
            )
        });
        assert_ne!(name, "master2");
    }
    drop(haproxy);
}
