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

    // Three stand-in apiservers behind master1's rendered haproxy.
    self_signed(s, "api", "kube-apiserver");
    let mut apis = Members(Vec::new());
    for (name, addr) in [
        ("master1", "127.0.0.1"),
        ("master2", "127.0.0.2"),
        ("master3", "127.0.0.3"),
    ] {
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
