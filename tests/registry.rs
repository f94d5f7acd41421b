//! `ferry-installer serve` against real clients: skopeo (pull and push, HTTP and
//! TLS with the generated CA), containerd through a `hosts.toml` mirror, podman
//! through a `registries.conf` mirror, and raw HTTP for the protocol details and
//! hostile inputs. The store is filled the way a site gets it: `ferry-bundler
//! pull` from a registry:2 seeded with generated images.

mod common;

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
    assert!(
        srv.log().contains("site CA: pki/ca.pem"),
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
    skopeo_check(
        &[&cert_dir],
        srv.addr(),
        "registry.k8s.io/delta:1.0",
        f.delta.digest(),
        &s.path("out2"),
    );
}

#[test]
fn every_spelling_of_a_name_reaches_the_same_image_and_headers_match_registry2() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr();
    let accept = [("Accept", ACCEPT_ALL)];
    let pause = f.pause.digest();
    for target in [
        "/v2/registry.k8s.io/pause/manifests/3.10",
        "/v2/pause/manifests/3.10?ns=registry.k8s.io",
        &format!("/v2/pause/manifests/{pause}?ns=registry.k8s.io"),
    ] {
        let r = raw(a, "GET", target, &accept, b"");
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(sha256(&r.body), pause, "{target}");
        assert_eq!(r.header("Docker-Content-Digest").as_deref(), Some(pause));
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json")
        );
        assert_eq!(r.header("Content-Length"), Some(r.body.len().to_string()));
        assert_eq!(
            r.header("Docker-Distribution-API-Version").as_deref(),
            Some("registry/2.0")
        );
    }
    for target in [
        "/v2/busybox/manifests/1.36",
        "/v2/library/busybox/manifests/1.36",
        "/v2/busybox/manifests/1.36?ns=docker.io",
        "/v2/docker.io/library/busybox/manifests/1.36",
    ] {
        let r = raw(a, "GET", target, &accept, b"");
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(sha256(&r.body), f.busybox.digest(), "{target}");
    }
    // Platform manifests by digest, reachable through the index of their repository...
    let arm = &f.pause.platforms[1].manifest;
    let r = raw(
        a,
        "GET",
        &format!("/v2/registry.k8s.io/pause/manifests/{}", arm.digest),
        &accept,
        b"",
    );
    assert_eq!((r.status, r.body.clone()), (200, arm.data.clone()));
    // ...but not from another repository.
    let r = raw(
        a,
        "GET",
        &format!("/v2/registry.k8s.io/delta/manifests/{}", arm.digest),
        &accept,
        b"",
    );
    assert_eq!((r.status, r.code()), (404, "MANIFEST_UNKNOWN".into()));
    // HEAD: same headers, no body.
    let r = raw(
        a,
        "HEAD",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &accept,
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some(f.pause.top.data.len().to_string())
    );
    assert!(r.body.is_empty());
    // Conditional GET.
    let etag = format!("\"{pause}\"");
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &[("Accept", ACCEPT_ALL), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(r.status, 304);

    // Accept rules (registry:2's): an OCI index to a client that does not take it...
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/apps/beta/manifests/v2",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!((r.status, r.code()), (404, "MANIFEST_UNKNOWN".into()));
    // ...a Docker list to a client that cannot read lists: its linux/amd64 manifest.
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, f.pause.platforms[0].manifest.data);
    // ...by digest, Accept does not matter.
    let r = raw(
        a,
        "GET",
        &format!(
            "/v2/registry.k8s.io/apps/beta/manifests/{}",
            f.beta.digest()
        ),
        &[],
        b"",
    );
    assert_eq!(sha256(&r.body), f.beta.digest());

    // Blobs: full, HEAD, ranges.
    let big = &f.delta.platforms[0].layers[1];
    let blob = format!("/v2/registry.k8s.io/delta/blobs/{}", big.digest);
    let r = get(a, &blob);
    assert_eq!((r.status, r.body == big.data), (200, true));
    assert_eq!(
        r.header("Docker-Content-Digest").as_deref(),
        Some(big.digest.as_str())
    );
    let r = raw(a, "HEAD", &blob, &[], b"");
    assert_eq!(
        (r.status, r.header("Content-Length")),
        (200, Some(big.data.len().to_string()))
    );
    let r = raw(a, "GET", &blob, &[("Range", "bytes=100-199")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, big.data[100..200]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 100-199/{}", big.data.len()))
    );
    let r = raw(a, "GET", &blob, &[("Range", "bytes=-10")], b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &big.data[big.data.len() - 10..])
    );

    // Tags and catalog with pagination.
    let r = get(a, "/v2/registry.k8s.io/pause/tags/list");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["3.10"]));
    let r = get(a, "/v2/_catalog?n=2");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["docker.io/library/busybox", "registry.k8s.io/apps/beta"])
    );
    assert_eq!(
        r.header("Link").as_deref(),
        Some("</v2/_catalog?last=registry.k8s.io/apps/beta&n=2>; rel=\"next\"")
    );
    let r = get(a, "/v2/_catalog?n=2&last=registry.k8s.io/apps/beta");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["registry.k8s.io/delta", "registry.k8s.io/pause"])
    );
    assert_eq!(r.header("Link"), None);

    // Errors: registry:2's codes and statuses.
    for (target, status, code) in [
        ("/v2/registry.k8s.io/nothere/manifests/1", 404, "NAME_UNKNOWN"),
        ("/v2/registry.k8s.io/pause/manifests/9.9", 404, "MANIFEST_UNKNOWN"),
        ("/v2/registry.k8s.io/nothere/tags/list", 404, "NAME_UNKNOWN"),
        ("/v2/registry.k8s.io/pause/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", 404, "BLOB_UNKNOWN"),
    ] {
        let r = get(a, target);
        assert_eq!((r.status, r.code()), (status, code.to_string()), "{target}");
    }
    let r = get(a, "/v2/");
    assert_eq!((r.status, r.text()), (200, "{}".to_string()));
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
    let hosts = certs_d.display().to_string();
    for (platform, p) in [
        ("linux/amd64", &f.pause.platforms[0]),
        ("linux/arm64", &f.pause.platforms[1]),
    ] {
        let out = node.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--snapshotter",
            "native",
            "--platform",
            platform,
            "registry.k8s.io/pause:3.10",
        ]);
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

/// `htpasswd -Bbn alice s3cret` into the session; returns the file name.
fn users(s: &Session) -> &'static str {
    let out = run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]));
    s.write("users", &String::from_utf8_lossy(&out.stdout));
    "users"
}

/// `Authorization` for alice.
const ALICE: (&str, &str) = ("Authorization", "Basic YWxpY2U6czNjcmV0");

#[test]
fn skopeo_pushes_into_the_store_with_credentials_and_is_refused_without() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--htpasswd", users(&s)],
    );
    let a = srv.addr().to_string();
    // Pulls stay anonymous with an htpasswd file: the source comes from ferry itself.
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/registry.k8s.io/apps/beta:v2"),
        &format!("oci:{}:beta", s.path("src").display()),
    ]));
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/registry.k8s.io/pause:3.10"),
        &format!("dir:{}", s.path("pause-dir").display()),
    ]));
    let push = |src: &str, dest: &str, creds: Option<&str>| {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if let Some(cr) = creds {
            c.arg(format!("--dest-creds={cr}"));
        }
        c.arg(src)
            .arg(format!("docker://{a}/{dest}"))
            .output()
            .unwrap()
    };
    let src = format!("oci:{}:beta", s.path("src").display());
    for creds in [None, Some("alice:wrong"), Some("mallory:s3cret")] {
        let out = push(&src, "site/app:v1", creds);
        assert!(!out.status.success(), "push with {creds:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("unauthorized") || err.contains("authentication required"),
            "{err}"
        );
    }
    assert!(!index_digests(&s.path("store")).contains_key("docker.io/site/app:v1"));

    // With credentials: an OCI index (children pushed by digest) and a Docker list.
    let out = push(&src, "site/app:v1", Some("alice:s3cret"));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    let out = push(
        &format!("dir:{}", s.path("pause-dir").display()),
        "site.lan/infra/pause:3.10",
        Some("alice:s3cret"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = index_digests(&s.path("store"));
    assert_eq!(index["docker.io/site/app:v1"], f.beta.digest());
    assert_eq!(index["site.lan/infra/pause:3.10"], f.pause.digest());
    // And they pull back, byte-exact, by every spelling.
    skopeo_check(
        &["--tls-verify=false"],
        &a,
        "site/app:v1",
        f.beta.digest(),
        &s.path("o1"),
    );
    skopeo_check(
        &["--tls-verify=false"],
        &a,
        "docker.io/site/app:v1",
        f.beta.digest(),
        &s.path("o2"),
    );
    skopeo_check(
        &["--tls-verify=false"],
        &a,
        "site.lan/infra/pause:3.10",
        f.pause.digest(),
        &s.path("o3"),
    );
    // The access log names the user who pushed.
    assert!(srv.log().contains(" - alice ["), "{}", srv.log());
}

fn blob_url(repo: &str, d: &str) -> String {
    format!("/v2/{repo}/blobs/{d}")
}

#[test]
fn uploads_monolithic_chunked_and_mounted_are_verified_and_atomic() {
    let s = Session::new();
    filled_store(&s);
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--htpasswd", users(&s)],
    );
    let a = srv.addr().to_string();
    let a = a.as_str();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = sha256(&data);

    // Monolithic: POST ?digest= with the body.
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/mono/blobs/uploads/?digest={d}"),
        &[ALICE],
        &data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Locations name the repository as the client did, not as it resolves.
    assert_eq!(r.header("Location"), Some(blob_url("site/mono", &d)));
    assert_eq!(get(a, &blob_url("site/mono", &d)).body, data);

    // Chunked: POST, PATCH, PATCH, PUT; the Range replies track the size.
    let data2: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    let d2 = sha256(&data2);
    let r = raw(a, "POST", "/v2/site/chunky/blobs/uploads/", &[ALICE], b"");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range").as_deref(), Some("0-0"));
    let loc = r.header("Location").unwrap();
    assert!(loc.starts_with("/v2/site/chunky/blobs/uploads/"), "{loc}");
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "0-99999")],
        &data2[..100_000],
    );
    assert_eq!(
        (r.status, r.header("Range").as_deref()),
        (202, Some("0-99999"))
    );
    // A chunk that does not continue where the upload is: 416.
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "5-10")],
        &data2[5..11],
    );
    assert_eq!((r.status, r.code()), (416, "RANGE_INVALID".to_string()));
    // A chunk whose Content-Range announces another length than its body: 416,
    // before a byte of it is taken.
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "100000-100099")],
        &data2[100_000..100_050],
    );
    assert_eq!((r.status, r.code()), (416, "RANGE_INVALID".to_string()));
    assert!(r.text().contains("announces 100 bytes"), "{}", r.text());
    let r = raw(a, "GET", &loc, &[ALICE], b"");
    assert_eq!(
        (r.status, r.header("Range").as_deref()),
        (204, Some("0-99999"))
    );
    // Not in the store before the PUT.
    assert_eq!(get(a, &blob_url("site/chunky", &d2)).status, 404);
    let r = raw(a, "PATCH", &loc, &[ALICE], &data2[100_000..]);
    assert_eq!(r.status, 202);
    let r = raw(a, "PUT", &format!("{loc}?digest={d2}"), &[ALICE], b"");
    assert_eq!(
        (r.status, r.header("Docker-Content-Digest")),
        (201, Some(d2.clone()))
    );
    assert_eq!(get(a, &blob_url("site/chunky", &d2)).body, data2);

    // A digest that does not match: 400 DIGEST_INVALID, nothing stored, session gone.
    let r = raw(a, "POST", "/v2/site/bad/blobs/uploads/", &[ALICE], b"");
    let loc = r.header("Location").unwrap();
    let wrong = sha256(b"something else");
    let r = raw(
        a,
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[ALICE],
        b"these bytes",
    );
    assert_eq!((r.status, r.code()), (400, "DIGEST_INVALID".to_string()));
    assert!(!s
        .path(&format!("store/blobs/sha256/{}", &wrong[7..]))
        .exists());
    assert!(!s
        .path(&format!(
            "store/blobs/sha256/{}",
            &sha256(b"these bytes")[7..]
        ))
        .exists());
    assert_eq!(raw(a, "GET", &loc, &[ALICE], b"").status, 404);

    // Cross-repository mount of a blob the store has.
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/other/blobs/uploads/?mount={d}&from=site/mono"),
        &[ALICE],
        b"",
    );
    assert_eq!(
        (r.status, r.header("Docker-Content-Digest")),
        (201, Some(d.clone()))
    );

    // Manifests: blobs must exist, digests must match, size is bounded.
    let config = sha256(b"{}");
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/art/blobs/uploads/?digest={config}"),
        &[ALICE],
        b"{}",
    );
    assert_eq!(r.status, 201);
    let missing = sha256(b"missing layer");
    let manifest = |layer: &str, size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{layer}","size":{size}}}]}}"#
        )
    };
    let ct = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
    let r = raw(
        a,
        "PUT",
        "/v2/site/art/manifests/v1",
        &[ALICE, ct],
        manifest(&missing, 13).as_bytes(),
    );
    assert_eq!(
        (r.status, r.code()),
        (400, "MANIFEST_BLOB_UNKNOWN".to_string())
    );
    let good = manifest(&d, data.len());
    let r = raw(
        a,
        "PUT",
        &format!("/v2/site/art/manifests/{wrong}"),
        &[ALICE, ct],
        good.as_bytes(),
    );
    assert_eq!((r.status, r.code()), (400, "DIGEST_INVALID".to_string()));
    let huge = vec![b' '; 5 << 20];
    let r = raw(a, "PUT", "/v2/site/art/manifests/v1", &[ALICE, ct], &huge);
    assert_eq!((r.status, r.code()), (413, "MANIFEST_INVALID".to_string()));
    let r = raw(
        a,
        "PUT",
        "/v2/site/art/manifests/v1",
        &[ALICE, ct],
        good.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256(good.as_bytes()))
    );

    // Referrers: an artifact whose subject is that manifest.
    let subject = sha256(good.as_bytes());
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":{}}}}}"#,
        good.len()
    );
    let sig_digest = sha256(sig.as_bytes());
    let r = raw(
        a,
        "PUT",
        &format!("/v2/site/art/manifests/{sig_digest}"),
        &[ALICE, ct],
        sig.as_bytes(),
    );
    assert_eq!(
        (r.status, r.header("OCI-Subject")),
        (201, Some(subject.clone()))
    );
    let r = get(a, &format!("/v2/site/art/referrers/{subject}"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], sig_digest.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let r = get(
        a,
        &format!("/v2/site/art/referrers/{subject}?artifactType=other/type"),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert_eq!(
        r.header("OCI-Filters-Applied").as_deref(),
        Some("artifactType")
    );

    // A crash mid-upload leaves nothing visible, and a restart cleans up.
    let r = raw(a, "POST", "/v2/site/crash/blobs/uploads/", &[ALICE], b"");
    let loc = r.header("Location").unwrap();
    let r = raw(a, "PATCH", &loc, &[ALICE], b"half a blob");
    assert_eq!(r.status, 202);
    let uploads = s.path("store/.ferry/uploads");
    // Each serve keeps its sessions in a directory of its own, under a lock.
    let sessions = || -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = std::fs::read_dir(&uploads)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| {
                let n = std::fs::read_dir(&p).unwrap().count();
                (p.file_name().unwrap().to_string_lossy().into_owned(), n)
            })
            .collect();
        out.sort();
        out
    };
    let crashed = sessions();
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    assert_eq!(crashed[0].1, 1, "{crashed:?}");
    drop(srv); // SIGKILL
    assert!(!s
        .path(&format!(
            "store/blobs/sha256/{}",
            &sha256(b"half a blob")[7..]
        ))
        .exists());
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    // The next serve reclaims what the killed one left, and starts with nothing.
    let now = sessions();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, crashed[0].0);
    assert_eq!(now[0].1, 0);
    assert!(!uploads.join(format!("{}.lock", crashed[0].0)).exists());
    // Without --htpasswd, pushing is refused outright.
    let r = raw(
        srv.addr(),
        "POST",
        "/v2/site/x/blobs/uploads/",
        &[ALICE],
        b"",
    );
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    // What was pushed survived the restart (named in index.json).
    // With no Accept at all, the manifest as stored, with its own type
    // (distribution v3's answer; registry:2 2.8 said 404).
    let r = get(srv.addr(), "/v2/site/art/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, good.as_bytes());
    let r = raw(
        srv.addr(),
        "GET",
        "/v2/site/art/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        b"",
    );
    assert_eq!(r.body, good.as_bytes());
}

#[test]
fn hostile_requests_get_precise_errors_and_nothing_outside_the_store() {
    let s = Session::new();
    let f = filled_store(&s);
    s.write("secret.txt", "outside the store");
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--client-timeout", "2"],
    );
    let a = srv.addr().to_string();
    let a = a.as_str();
    let blob = &f.delta.platforms[0].layers[1];
    let size = blob.data.len();
    let zero = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for (method, target, headers, status, code) in [
        (
            "GET",
            "/v2/../secret.txt/manifests/1".to_string(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/../../secret.txt/tags/list".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/%2e%2e/%2e%2e/blobs/".to_string() + zero,
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/pause/manifests/3.10?ns=../..".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/Pause/manifests/3.10".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/{}/tags/list", "a/".repeat(200) + "b"),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            // Slashes split it into path segments: no such route, as in registry:2.
            "/v2/registry.k8s.io/delta/blobs/sha256:../../../../secret.txt".into(),
            vec![],
            404,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        (
            "HEAD",
            "/v2/registry.k8s.io/delta/manifests/sha256:ZZ".into(),
            vec![],
            400,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/manifests/sha256:ZZ".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        // Not a valid tag: no manifest is called that (the OCI conformance suite
        // and registry:2 say 404).
        (
            "GET",
            "/v2/registry.k8s.io/delta/manifests/.INVALID_MANIFEST_NAME".into(),
            vec![],
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "HEAD",
            "/v2/registry.k8s.io/delta/manifests/.INVALID_MANIFEST_NAME".into(),
            vec![],
            404,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/referrers/sha1:00".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", format!("bytes={size}-"))],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", "bytes=500-100".into())],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", "bytes=99999999999999999999999999-".into())],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            "/v2/_catalog?n=-1".into(),
            vec![],
            400,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            "DELETE",
            "/v2/registry.k8s.io/pause/manifests/3.10".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
        (
            "PUT",
            "/v2/registry.k8s.io/pause/manifests/3.10".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/blobs/uploads/not-a-uuid".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
    ] {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = raw(a, method, &target, &hs, b"");
        assert_eq!(r.status, status, "{method} {target}: {}", r.text());
        if code.is_empty() {
            assert!(!r.text().contains("{"), "{method} {target}: {}", r.text());
        } else {
            assert_eq!(r.code(), code, "{method} {target}");
        }
        if status == 416 {
            assert_eq!(r.header("Content-Range"), Some(format!("bytes */{size}")));
        }
        assert!(!r.text().contains("outside the store"));
    }
    assert_eq!(get(a, "/v3/").status, 404);
    assert_eq!(get(a, "/etc/passwd").status, 404);

    // Oversized request headers: refused by the HTTP layer.
    let big = "x".repeat(1 << 20);
    let mut c = TcpStream::connect(a).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "{head}"
    );

    // A client that stalls mid-headers is cut off after --client-timeout, and does
    // not hold up anyone else meanwhile.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(get(a, "/v2/").status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "stalled client kept for {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    // A client that stops reading a blob is dropped too (the write times out).
    let mut lazy = TcpStream::connect(a).unwrap();
    lazy.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            blob_url("registry.k8s.io/delta", &blob.digest)
        )
        .as_bytes(),
    )
    .unwrap();

    // Still serving, never panicked.
    assert_eq!(get(a, "/v2/registry.k8s.io/delta/tags/list").status, 200);
    drop(lazy);
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}

#[test]
fn metrics_count_requests_and_bytes_and_each_request_has_one_log_line() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr().to_string();
    let blob = &f.delta.platforms[0].layers[1];
    for _ in 0..3 {
        assert_eq!(
            raw(
                &a,
                "GET",
                "/v2/registry.k8s.io/pause/manifests/3.10",
                &[("Accept", ACCEPT_ALL)],
                b""
            )
            .status,
            200
        );
    }
    assert_eq!(
        get(&a, &blob_url("registry.k8s.io/delta", &blob.digest)).status,
        200
    );
    assert_eq!(
        get(&a, "/v2/registry.k8s.io/pause/manifests/nope").status,
        404
    );
    let m = get(&a, "/metrics").text();
    assert!(
        m.contains(
            "ferry_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "ferry_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"404\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("ferry_registry_requests_total{route=\"blob\",method=\"GET\",status=\"200\"} 1"),
        "{m}"
    );
    let served = m
        .lines()
        .find_map(|l| l.strip_prefix("ferry_registry_bytes_served_total{route=\"blob\"} "))
        .unwrap();
    assert_eq!(served, blob.data.len().to_string());
    assert!(m.contains("ferry_registry_manifests 8"), "{m}");
    // One access-log line per request, in combined format (the one registry:2 uses).
    std::thread::sleep(Duration::from_millis(200));
    let log = srv.log();
    let lines: Vec<_> = log
        .lines()
        .filter_map(ferry_testkit::registry::parse_access_line)
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.target == "/v2/registry.k8s.io/pause/manifests/3.10" && l.status == 200)
            .count(),
        3,
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.status == 404 && l.target.ends_with("/nope")),
        "{log}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let s = Session::new();
    filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    assert_eq!(get(srv.addr(), "/v2/").status, 200);
    let st = srv.terminate();
    assert!(st.success(), "{st}");
}

#[test]
fn bad_command_lines_fail_with_one_error_line() {
    let s = Session::new();
    let out = Command::new(installer())
        .args(["serve", "--store", "nothere", "--tls", "off"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: nothere is not a store"), "{err}");
    // A directory that is not a store is refused and left as it was (it used to be
    // served as an empty registry and littered with oci-layout, blobs/ and .ferry/).
    std::fs::create_dir(s.path("plain")).unwrap();
    s.write("plain/notes.txt", "mine");
    let out = Command::new(installer())
        .args(["serve", "--store", "plain", "--tls", "off", "--pki", "pki"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: plain is not a store (no oci-layout file)"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(s.path("plain"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["notes.txt"],
        "serve littered a directory that is not a store"
    );
    assert!(!s.path("pki").exists(), "a refused serve made a PKI");
    // Flags are checked before the store is looked at.
    std::fs::create_dir(s.path("store")).unwrap();
    for (args, needle) in [
        (
            vec!["--tls", "bogus"],
            "--tls must be auto, off or CERT,KEY",
        ),
        (vec!["--auth-pull"], "--auth-pull needs --htpasswd"),
        (vec!["--htpasswd", "missing"], "missing"),
    ] {
        let out = Command::new(installer())
            .args(["serve", "--store", "store"])
            .args(&args)
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
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

/// Holds N idle TCP connections to ADDR (sending nothing) until its stdin closes;
/// prints "ready" once they are all open. Python, to raise its own open-file limit.
const IDLE_HOLDER: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
held = []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((host, int(port)), timeout=10)
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"#;

#[test]
fn two_thousand_idle_connections_do_not_starve_a_client() {
    let s = Session::new();
    let f = filled_store(&s);
    // The default limit, 1024 connections: 2,000 idle ones are more than it holds.
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr().to_string();
    let a = a.as_str();
    s.write("idle.py", IDLE_HOLDER);
    let opened = Instant::now();
    let mut holder = Command::new("python3")
        .arg(s.path("idle.py"))
        .args([a, "2000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the idle connections did not open");
    eprintln!("2000 idle connections opened in {:?}", opened.elapsed());

    // A client pulls an image (its manifest and every blob) while they are held.
    let t = Instant::now();
    let image = &f.delta;
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/delta/manifests/1.0",
        &[("Accept", ACCEPT_ALL)],
        b"",
    );
    assert_eq!(r.status, 200);
    for b in image.platforms[0].blobs() {
        let r = get(a, &blob_url("registry.k8s.io/delta", &b.digest));
        assert_eq!((r.status, r.body.len()), (200, b.data.len()));
    }
    let took = t.elapsed();
    let metrics = String::from_utf8_lossy(&get(a, "/metrics").body).into_owned();
    let open = metrics
        .lines()
        .find(|l| l.starts_with("ferry_registry_connections "))
        .unwrap_or_default()
        .to_string();
    eprintln!("2000 idle connections held; a pull took {took:?}; {open}");
    assert!(took < Duration::from_secs(1), "the pull took {took:?}");
    let t = Instant::now();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    eprintln!("closed in {:?}", t.elapsed());
}

#[test]
fn deletes_and_gc_remove_an_old_image_while_serve_keeps_serving_the_rest() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--htpasswd", users(&s)],
    );
    let a = srv.addr().to_string();
    let a = a.as_str();
    let delta = "/v2/registry.k8s.io/delta/manifests/1.0";

    // Deletes need push credentials.
    assert_eq!(raw(a, "DELETE", delta, &[], b"").status, 401);
    // A tag: gone from the tag list and from index.json; the other images stay.
    let r = raw(a, "DELETE", delta, &[ALICE], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        raw(a, "GET", delta, &[("Accept", ACCEPT_ALL)], b"").status,
        404
    );
    let tags =
        String::from_utf8_lossy(&get(a, "/v2/registry.k8s.io/delta/tags/list").body).into_owned();
    assert!(!tags.contains("\"1.0\""), "{tags}");
    assert!(!common::store::index_names(&s.path("store")).contains("registry.k8s.io/delta:1.0"));
    assert_eq!(raw(a, "DELETE", delta, &[ALICE], b"").status, 404);
    // By digest: every tag pointing at it goes.
    let beta = format!(
        "/v2/registry.k8s.io/apps/beta/manifests/{}",
        f.beta.digest()
    );
    assert_eq!(raw(a, "DELETE", &beta, &[ALICE], b"").status, 202);
    assert_eq!(
        raw(
            a,
            "GET",
            "/v2/registry.k8s.io/apps/beta/manifests/v2",
            &[("Accept", ACCEPT_ALL)],
            b""
        )
        .status,
        404
    );
    // A blob pause still uses is kept (405, naming it); one only delta used goes.
    let shared = &f.pause.platforms[0].layers[0];
    let r = raw(
        a,
        "DELETE",
        &blob_url("registry.k8s.io/pause", &shared.digest),
        &[ALICE],
        b"",
    );
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    assert!(r.text().contains("registry.k8s.io/pause"), "{}", r.text());
    let own = f.delta.platforms[0].layers.last().unwrap();
    let url = blob_url("registry.k8s.io/delta", &own.digest);
    assert_eq!(raw(a, "DELETE", &url, &[ALICE], b"").status, 202);
    assert_eq!(get(a, &url).status, 404);

    // gc: a dry run says what would go and removes nothing; then it goes, while
    // serve runs, and every blob of the remaining images is still served.
    let before = common::store::stored_blobs(&s.path("store"));
    let run = s
        .installer(&["gc", "--store", "store", "--dry-run", "--grace", "0s"])
        .success();
    assert!(run.stderr.contains("would remove"), "{}", run.stderr);
    assert_eq!(common::store::stored_blobs(&s.path("store")), before);
    // With the default grace (1 h) the freshly unpacked blobs are all young.
    let run = s.installer(&["gc", "--store", "store"]).success();
    assert!(run.stderr.contains("removed 0 blob(s)"), "{}", run.stderr);
    let run = s
        .installer(&["gc", "--store", "store", "--grace", "0s"])
        .success();
    let after = common::store::stored_blobs(&s.path("store"));
    assert!(after.len() < before.len(), "{}", run.stderr);
    for img in [&f.pause, &f.busybox] {
        for p in &img.platforms {
            for b in p.blobs() {
                assert!(after.contains(&b.digest), "{} was collected", b.digest);
            }
        }
    }
    for b in f.beta.platforms[1].blobs() {
        assert!(
            !after.contains(&b.digest),
            "{} of a deleted image was kept",
            b.digest
        );
    }
    for (name, img) in [
        ("registry.k8s.io/pause", &f.pause),
        ("docker.io/library/busybox", &f.busybox),
    ] {
        for p in &img.platforms {
            for b in p.blobs() {
                assert_eq!(
                    get(a, &blob_url(name, &b.digest)).status,
                    200,
                    "{name} {}",
                    b.digest
                );
            }
        }
    }

    // --read-only: deletes (and pushes) are refused.
    drop(srv);
    let srv = Serve::start(
        &s,
        &[
            "--store",
            "store",
            "--tls",
            "off",
            "--htpasswd",
            users(&s),
            "--read-only",
        ],
    );
    let pause = "/v2/registry.k8s.io/pause/manifests/3.10";
    let r = raw(srv.addr(), "DELETE", pause, &[ALICE], b"");
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    assert_eq!(
        raw(srv.addr(), "GET", pause, &[("Accept", ACCEPT_ALL)], b"").status,
        200
    );
}

#[test]
fn mutated_requests_get_an_answer_below_500_and_touch_nothing_outside_the_store() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let s = Session::new();
    let f = filled_store(&s);
    s.write("secret.txt", "outside the store");
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--htpasswd", users(&s)],
    );
    let a = srv.addr().to_string();
    let outside = |s: &Session| -> Vec<String> {
        common::files_under(&s.path(""))
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| !rel.starts_with("store/") && !rel.starts_with("serve"))
            .collect()
    };
    let before = outside(&s);
    let index = s.read("store/index.json");
    let digest = f.pause.platforms[0].layers[0].digest.clone();
    let segment = prop_oneof![
        Just("v2".to_string()),
        Just("registry.k8s.io".to_string()),
        Just("pause".to_string()),
        Just("library".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("manifests".to_string()),
        Just("blobs".to_string()),
        Just("uploads".to_string()),
        Just("tags".to_string()),
        Just("list".to_string()),
        Just("referrers".to_string()),
        Just("3.10".to_string()),
        Just(digest.clone()),
        Just(format!("{}x", &digest[..20])),
        "[a-zA-Z0-9._~:@%-]{0,24}",
    ];
    let header = prop_oneof![
        Just(("Accept", ACCEPT_ALL.to_string())),
        "[ -~]{0,40}".prop_map(|v| ("Accept", v)),
        "bytes=[0-9]{0,6}-[0-9]{0,6}".prop_map(|v| ("Range", v)),
        "[0-9]{0,6}-[0-9]{0,6}".prop_map(|v| ("Content-Range", v)),
        "[ -~]{0,30}".prop_map(|v| ("Content-Type", v)),
        "[ -~]{0,30}".prop_map(|v| ("Authorization", v)),
    ];
    let request = (
        prop_oneof![
            Just("GET"),
            Just("HEAD"),
            Just("PUT"),
            Just("POST"),
            Just("PATCH"),
            Just("DELETE")
        ],
        proptest::collection::vec(segment, 1..7),
        "(\\?[a-z]{1,6}=[a-zA-Z0-9:._%-]{0,20})?",
        proptest::collection::vec(header, 0..3),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&request, |(method, segments, query, headers, body)| {
            let target = format!("/{}{query}", segments.join("/"));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = raw(&a, method, &target, &headers, &body);
            prop_assert!(
                r.status < 500,
                "{method} {target} {headers:?}: {}",
                r.status
            );
            Ok(())
        })
        .unwrap();
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    assert_eq!(outside(&s), before, "files appeared outside the store");
    assert_eq!(s.read("secret.txt"), "outside the store");
    assert_eq!(
        s.read("store/index.json"),
        index,
        "an anonymous request changed the store"
    );
}
