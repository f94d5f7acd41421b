//! `ferry-installer serve` against real clients: skopeo (pull and push, HTTP and
//! TLS with the generated CA), containerd through a `hosts.toml` mirror, podman
//! through a `registries.conf` mirror, and raw HTTP for the protocol details and
//! hostile inputs. The store is filled the way a site gets it: `ferry-bundler
//! pull` from a registry:2 seeded with generated images.

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod limits;
mod protocol;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::containerd::Containerd;
use common::serve::Serve;
use common::store::index_digests;
use common::{four_kinds, mirrors, spec, Rule, Session, LOCKED_PULL};
use ferry_testkit::image::{self, layer, Image};
use ferry_testkit::registry::Registry;
use ferry_testkit::sha256_digest as sha256;

const K8S: &str = "registry.k8s.io";

/// The images every test serves, one of each kind, under upstream names.
struct Fixture {
    /// Docker manifest list, linux/amd64 + linux/arm64/v8: `registry.k8s.io/pause:3.10`
    pause: Image,
    /// OCI index, linux/amd64 + linux/arm64: `registry.k8s.io/apps/beta:v2`
    beta: Image,
    /// single Docker manifest, linux/amd64: `docker.io/library/busybox:1.36`
    busybox: Image,
    /// single OCI manifest, linux/amd64: `registry.k8s.io/delta:1.0`
    delta: Image,
}

fn fixture() -> Fixture {
    let [pause, beta, busybox, delta] = four_kinds(
        layer(7, 32 * 1024),
        700,
        [40_000, 30_000, 20_000, 20_000, 50_000, 300_000],
    );
    Fixture {
        pause,
        beta,
        busybox,
        delta,
    }
}

/// (store name, image) for every fixture image.
fn named(f: &Fixture) -> Vec<(&'static str, &Image)> {
    vec![
        ("registry.k8s.io/pause:3.10", &f.pause),
        ("registry.k8s.io/apps/beta:v2", &f.beta),
        ("docker.io/library/busybox:1.36", &f.busybox),
        ("registry.k8s.io/delta:1.0", &f.delta),
    ]
}

/// Seeds a registry:2, then `ferry-bundler lock` + `pull` into `store/` of the session.
fn filled_store(s: &Session) -> Fixture {
    let f = fixture();
    let reg = Registry::start();
    image::push(&reg.url(), "pause", "3.10", &f.pause);
    image::push(&reg.url(), "apps/beta", "v2", &f.beta);
    image::push(&reg.url(), "library/busybox", "1.36", &f.busybox);
    image::push(&reg.url(), "delta", "1.0", &f.delta);
    s.write(
        "spec.toml",
        &spec(
            &["linux/amd64", "linux/arm64"],
            &[
                &format!("{K8S}/pause:3.10"),
                &format!("{K8S}/apps/beta:v2"),
                "{ ref = \"docker.io/library/busybox:1.36\", platforms = [\"linux/amd64\"] }",
                &format!("{{ ref = \"{K8S}/delta:1.0\", platforms = [\"linux/amd64\"] }}"),
            ],
        ),
    );
    s.write(
        "mirrors.toml",
        &mirrors(&[
            Rule {
                host: K8S,
                endpoints: vec![(reg.url(), None, false)],
            },
            Rule {
                host: "docker.io",
                endpoints: vec![(reg.url(), None, false)],
            },
        ]),
    );
    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
    s.bundler(&LOCKED_PULL).success();
    f
}

/// The `ferry-installer` binary, built by the first `Session::bundler` call.
fn installer() -> PathBuf {
    // Builds both binaries once per process (see tests/common).
    Session::new().bundler(&["--version"]);
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("ferry-installer")
}

/// One raw HTTP/1.1 exchange (Connection: close), for exact statuses and headers.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `code` of the first error in a registry error body.
    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not a JSON error body: {}", self.text()));
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn raw(addr: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before taking a large body.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

fn get(addr: &str, target: &str) -> Reply {
    raw(addr, "GET", target, &[], b"")
}

const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// skopeo's view of one image: raw manifest digest and `inspect`'s Digest.
fn skopeo_check(tls: &[&str], url: &str, name: &str, want: &str, dir: &Path) {
    let src = format!("docker://{url}/{name}");
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(tls)
        .arg(&src));
    assert_eq!(sha256(&out.stdout), want, "raw manifest of {name}");
    let out = run(Command::new("skopeo")
        .args([
            "inspect",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
        ])
        .args(tls)
        .arg(&src));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], want, "skopeo inspect of {name}");
    // The whole image, every platform, byte-exact (dir: keeps manifests unchanged).
    let exact = dir.join("exact");
    let _ = std::fs::remove_dir_all(&exact);
    std::fs::create_dir_all(dir).unwrap();
    let tls_src: Vec<String> = tls.iter().map(|a| a.replacen("--", "--src-", 1)).collect();
    run(Command::new("skopeo")
        .args(["copy", "--all", "--quiet"])
        .args(&tls_src)
        .arg(&src)
        .arg(format!("dir:{}", exact.display())));
    assert_eq!(
        sha256(&std::fs::read(exact.join("manifest.json")).unwrap()),
        want,
        "dir: copy of {name}"
    );
    // And into an OCI layout, as the issue asks (skopeo converts Docker types there).
    run(Command::new("skopeo")
        .args(["copy", "--all", "--quiet"])
        .args(&tls_src)
        .arg(&src)
        .arg(format!(
            "oci:{}:{}",
            dir.join("oci").display(),
            name.replace(['/', ':'], "_")
        )));
}

/// `htpasswd -Bbn alice s3cret` into the session; returns the file name.
fn users(s: &Session) -> &'static str {
    let out = run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]));
    s.write("users", &String::from_utf8_lossy(&out.stdout));
    "users"
}

/// `serve` of the session's `store` over plain HTTP, taking pushes from alice.
fn serve_for_alice(s: &Session) -> Serve {
    Serve::start(
        s,
        &["--store", "store", "--tls", "off", "--htpasswd", users(s)],
    )
}

/// `Authorization` for alice.
const ALICE: (&str, &str) = ("Authorization", "Basic YWxpY2U6czNjcmV0");

fn blob_url(repo: &str, d: &str) -> String {
    format!("/v2/{repo}/blobs/{d}")
}
