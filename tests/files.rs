//! Files in the bundle (binaries, archives, manifests), end to end against real
//! peers: a loopback file server as upstream and mirror (with faults), the
//! `ferry-bundler lock`/`build`, `ferry-installer unpack`/`serve`, then `curl` over
//! the plain `/files/...` path and the ORAS Python client (PyPI `oras`) by
//! `files/<name>:<version>`, and skopeo and umoci reading the store.

mod common;

use std::process::Command;

use common::serve::Serve;
use common::Session;
use ferry_testkit::proxy::Proxy;
use ferry_testkit::{Fault, FileServer};
use sha2::{Digest as _, Sha256};

const HOST: &str = "dl.example.test";
const AMD: &str = "/release/v1.0.0/bin/linux/amd64/kubelet";
const ARM: &str = "/release/v1.0.0/bin/linux/arm64/kubelet";
const YAML: &str = "/manifests/v2.0.0/app.yaml";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that do not compress away.
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    common::noise(u32::from(seed), len)
}

struct World {
    s: Session,
    files: FileServer,
    amd: Vec<u8>,
    arm: Vec<u8>,
    yaml: Vec<u8>,
}

/// A file server with a kubelet for two platforms and a platform-independent YAML,
/// a spec naming them (kubelet pinned, the YAML not) and mirror rules that send
/// `dl.example.test` to the file server only.
fn world() -> World {
    let s = Session::new();
    let files = FileServer::start();
    let (amd, arm) = (bytes(1, 3 << 20), bytes(2, 2 << 20));
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n".to_vec();
    files.put(AMD, amd.clone());
    files.put(ARM, arm.clone());
    files.put(YAML, yaml.clone());
    s.write(
        "spec.toml",
        &format!(
            r#"name = "files"
version = "1.0.0"
platforms = ["linux/amd64", "linux/arm64"]

[[files]]
name = "kubelet"
version = "1.0.0"
url = "https://{HOST}/release/v{{version}}/bin/{{os}}/{{arch}}/kubelet"
sha256 = {{ "linux/amd64" = "{}", "linux/arm64" = "{}" }}

[[files]]
name = "app.yaml"
version = "2.0.0"
url = "https://{HOST}/manifests/v{{version}}/app.yaml"
platforms = []
"#,
            sha(&amd),
            sha(&arm)
        ),
    );
    s.write("mirrors.toml", &file_mirrors(&[files.url()]));
    World {
        s,
        files,
        amd,
        arm,
        yaml,
    }
}

/// mirrors.toml sending `dl.example.test` to `urls` only, in that order.
fn file_mirrors(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[files]]\nhost = \"{HOST}\"\nmirrors = [{}]\nskip_upstream = true\n",
        quoted.join(", ")
    )
}

fn lock(w: &World) -> common::Run {
    w.s.bundler(&common::LOCK)
}

/// Runs the bundler, which must succeed in under `secs` seconds (`what` says when).
fn bundler_within(s: &Session, args: &[&str], secs: u64, what: &str) -> common::Run {
    let t = std::time::Instant::now();
    let run = s.bundler(args).success();
    let took = t.elapsed();
    eprintln!("{what}: {took:?}");
    assert!(
        took < std::time::Duration::from_secs(secs),
        "{what}: {took:?}\n{}",
        run.stderr
    );
    run
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sSf"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The ORAS Python client pulls the file for each platform of `files/NAME:VERSION`
/// (through the index, by digest) and prints `platform sha256-of-the-file`.
const ORAS_PULL: &str = r#"
import hashlib, json, os, sys, oras.provider
host, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
reg = oras.provider.Registry(hostname=host, insecure=True)
top = reg.get_manifest(reg.get_container(f"{host}/{target}"), allowed_media_type=[
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"])
repo = target.rsplit(":", 1)[0]
entries = top.get("manifests") or [None]
for e in entries:
    ref = f"{host}/{target}" if e is None else f"{host}/{repo}@{e['digest']}"
    plat = "any" if e is None else f"{e['platform']['os']}/{e['platform']['architecture']}"
    d = os.path.join(out, plat.replace("/", "-"))
    for path in reg.pull(target=ref, outdir=d):
        print(plat, os.path.basename(path), hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;

#[test]
fn files_travel_lock_build_unpack_serve_and_come_out_byte_exact() {
    let w = world();
    let s = &w.s;
    let locked = lock(&w).success();
    // The unpinned file is pinned from what was downloaded, with a warning naming it.
    assert!(
        locked
            .stderr
            .contains("file app.yaml 2.0.0 has no sha256 in the spec"),
        "{}",
        locked.stderr
    );
    let lock_text = s.read("spec.lock");
    for d in [sha(&w.amd), sha(&w.arm), sha(&w.yaml)] {
        assert!(lock_text.contains(&format!("sha256:{d}")), "{lock_text}");
    }
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let build = common::build_args("spec.toml", "spec.lock", "b.tar.zst");
    s.bundler(&build).success();
    // Every file was fetched once (lock fetched each once more to check its pin).
    for path in [AMD, ARM, YAML] {
        assert_eq!(w.files.count(path), 2, "{path}: {:?}", w.files.requests());
    }
    // A second build fetches nothing and gives the same bytes.
    let first = std::fs::read(s.path("b.tar.zst")).unwrap();
    s.bundler(&build).success();
    assert_eq!(
        std::fs::read(s.path("b.tar.zst")).unwrap(),
        first,
        "not reproducible"
    );
    assert_eq!(w.files.count(AMD), 2);

    let inspect = s
        .installer(&["inspect", "b.tar.zst", "--key", "k.pub"])
        .success();
    for needle in [
        "files/kubelet:1.0.0",
        "files/app.yaml:2.0.0",
        "linux/amd64,linux/arm64",
        "any platform",
    ] {
        assert!(
            inspect.stdout.contains(needle),
            "{needle}:\n{}",
            inspect.stdout
        );
    }
    s.installer(&["unpack", "b.tar.zst", "--key", "k.pub", "--store", "site"])
        .success();

    // Standard tools still read the store.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!(
            "oci:{}:files/kubelet:1.0.0",
            s.path("site").display()
        ))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["artifactType"], ferry::artifact::FILE_ARTIFACT_TYPE);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(s.path("site"))
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("files/kubelet:1.0.0") && ls.contains("files/app.yaml:2.0.0"),
        "{ls}"
    );

    let srv = Serve::start(s, &["--store", "site", "--tls", "off"]);
    let base = format!("http://{}", srv.addr());
    assert_eq!(
        curl(&[&format!("{base}/files/kubelet/1.0.0/linux/amd64/kubelet")]),
        w.amd
    );
    assert_eq!(
        curl(&[&format!("{base}/files/kubelet/1.0.0/linux/arm64/kubelet")]),
        w.arm
    );
    assert_eq!(
        curl(&[&format!("{base}/files/app.yaml/2.0.0/app.yaml")]),
        w.yaml
    );
    assert_eq!(
        curl(&[
            "-r",
            "1000-",
            &format!("{base}/files/kubelet/1.0.0/linux/arm64/kubelet")
        ]),
        w.arm[1000..]
    );
    let head = String::from_utf8(curl(&[
        "-I",
        &format!("{base}/files/kubelet/1.0.0/linux/amd64/kubelet"),
    ]))
    .unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("etag: \"sha256:{}\"", sha(&w.amd))),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", w.amd.len())),
        "{head}"
    );
    for missing in [
        "/files/kubelet/1.0.0/linux/s390x/kubelet",
        "/files/kubelet/1.0.0/linux/amd64/kubectl",
        "/files/kubelet/9.9/linux/amd64/kubelet",
        "/files/kubelet/1.0.0/kubelet",
    ] {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{base}{missing}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404", "{missing}");
    }

    // ORAS by name: each platform's file, saved under its title, hashes to the pin.
    for (target, want) in [
        (
            "files/kubelet:1.0.0",
            vec![
                format!("linux/amd64 kubelet {}", sha(&w.amd)),
                format!("linux/arm64 kubelet {}", sha(&w.arm)),
            ],
        ),
        (
            "files/app.yaml:2.0.0",
            vec![format!("any app.yaml {}", sha(&w.yaml))],
        ),
    ] {
        let out = Command::new("python3")
            .args(["-c", ORAS_PULL, srv.addr(), target])
            .arg(s.path("oras"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oras: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(got, want, "{target}");
    }

    // The catalog names files as the store does, and a DELETE of a file's tag
    // (with push credentials) removes it, as for an image.
    let catalog = String::from_utf8(curl(&[&format!("{base}/v2/_catalog")])).unwrap();
    assert!(
        catalog.contains("\"files/kubelet\"") && !catalog.contains("docker.io/files"),
        "{catalog}"
    );
    srv.terminate();
    let users = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    s.write("users", &String::from_utf8(users.stdout).unwrap());
    let srv = Serve::start(
        s,
        &["--store", "site", "--tls", "off", "--htpasswd", "users"],
    );
    let base = format!("http://{}", srv.addr());
    let delete = |what: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
            .args(["alice:s3cret", "-X", "DELETE"])
            .arg(format!("{base}/v2/files/app.yaml/manifests/{what}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(delete("2.0.0"), "202");
    assert_eq!(delete("2.0.0"), "404");
    assert!(!s.read("site/index.json").contains("files/app.yaml:2.0.0"));
    assert!(s.read("site/index.json").contains("files/kubelet:1.0.0"));
}

#[test]
fn a_pinned_file_that_changed_upstream_is_refused_and_named() {
    let w = world();
    let other = bytes(9, 1 << 20);
    w.files.fault(ARM, Fault::Serve(other.clone()));
    let run = lock(&w).failure();
    let line = run.error_line();
    for needle in [
        "file kubelet 1.0.0 for linux/arm64",
        &sha(&w.arm),
        &sha(&other),
    ] {
        assert!(
            line.contains(needle) || run.stderr.contains(needle),
            "{needle}: {}",
            run.stderr
        );
    }
    assert!(
        !w.s.path("spec.lock").exists(),
        "a refused lock was written"
    );
}

#[test]
fn a_dropped_download_resumes_at_the_byte_it_stopped() {
    let w = world();
    lock(&w).success();
    w.files.fault(AMD, Fault::DropAfter(1 << 20));
    w.s.bundler(&common::LOCKED_PULL).success();
    let requests = w.files.requests();
    assert!(
        requests.contains(&format!("GET {AMD} range=bytes={}-", 1 << 20)),
        "{requests:?}"
    );
    let blob = w.s.path(&format!("store/blobs/sha256/{}", sha(&w.amd)));
    assert_eq!(sha(&std::fs::read(blob).unwrap()), sha(&w.amd));
}

#[test]
fn a_mirror_serving_another_file_is_skipped_for_the_next() {
    let w = world();
    let bad = FileServer::start();
    bad.put(AMD, bytes(7, 1000));
    bad.put(ARM, w.arm.clone());
    bad.put(YAML, w.yaml.clone());
    w.s.write("mirrors.toml", &file_mirrors(&[bad.url(), w.files.url()]));
    let run = lock(&w).success();
    // The first mirror is named, with what it served, and the next one used.
    let wrong = format!(
        "{}{AMD} failed: served sha256:{}, not the pinned sha256:{}",
        bad.url(),
        sha(&bytes(7, 1000)),
        sha(&w.amd)
    );
    assert!(run.stderr.contains(&wrong), "{}", run.stderr);
    assert!(w.s.read("spec.lock").contains(&sha(&w.amd)));
    w.s.bundler(&common::LOCKED_PULL).success();
    let blob = w.s.path(&format!("store/blobs/sha256/{}", sha(&w.amd)));
    assert_eq!(std::fs::read(blob).unwrap(), w.amd);
}

#[test]
fn a_build_whose_addon_manifest_runs_an_image_the_spec_lacks_is_refused_naming_it() {
    let w = world();
    let addon = b"apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: app }\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: registry.k8s.io/app:1.0\n      initContainers:\n        - { name: init, image: \"docker.io/library/busybox:1.36\" }\n";
    w.files.put(YAML, addon.to_vec());
    lock(&w).success();
    w.s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let build = common::build_args("spec.toml", "spec.lock", "b.tar.zst");
    let run = w.s.bundler(&build).failure();
    let line = run.error_line();
    for needle in [
        "file app.yaml 2.0.0 names registry.k8s.io/app:1.0",
        "file app.yaml 2.0.0 names docker.io/library/busybox:1.36",
        "--allow-missing-images",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    assert!(
        !w.s.path("b.tar.zst").exists(),
        "a refused build left a bundle"
    );
    let mut allowed = build.to_vec();
    allowed.push("--allow-missing-images");
    let run = w.s.bundler(&allowed).success();
    assert!(
        run.stderr.contains("warning: file app.yaml 2.0.0 names registry.k8s.io/app:1.0, which the bundle does not carry"),
        "{}",
        run.stderr
    );
}

#[test]
fn lock_resumes_a_dropped_download_too() {
    let w = world();
    w.files.fault(ARM, Fault::DropAfter(512 << 10));
    lock(&w).success();
    assert!(
        w.files
            .requests()
            .contains(&format!("GET {ARM} range=bytes={}-", 512 << 10)),
        "{:?}",
        w.files.requests()
    );
    assert!(w.s.read("spec.lock").contains(&sha(&w.arm)));
}

#[test]
fn lock_keeps_pinned_files_in_the_store_so_they_are_fetched_once() {
    let w = world();
    let s = &w.s;
    // A dropped connection resumes from the length the first answer gave.
    w.files.fault(ARM, Fault::DropAfter(512 << 10));
    let mut keep = common::LOCK.to_vec();
    keep.extend(["--store", "store"]);
    s.bundler(&keep).success();
    let requests = w.files.requests();
    assert!(
        requests.contains(&format!("GET {ARM} range=bytes={}-", 512 << 10)),
        "{requests:?}"
    );
    let counts = || [AMD, ARM, YAML].map(|p| w.files.count(p));
    assert_eq!(counts(), [1, 2, 1], "{:?}", w.files.requests());
    for bytes in [&w.amd, &w.arm] {
        let blob = s.path(&format!("store/blobs/sha256/{}", sha(bytes)));
        assert_eq!(&std::fs::read(blob).unwrap(), bytes);
    }
    // The pull fetches only the unpinned file, which lock hashed and let go.
    s.bundler(&common::LOCKED_PULL).success();
    assert_eq!(counts(), [1, 2, 2], "{:?}", w.files.requests());
    // The next lock finds them there, and any lock says the same.
    let locked = s.read("spec.lock");
    keep.splice(5..6, ["again.lock"]);
    let again = s.bundler(&keep).success();
    assert!(
        again.stderr.contains("in the store already"),
        "{}",
        again.stderr
    );
    assert_eq!(counts(), [1, 2, 3], "{:?}", w.files.requests());
    assert_eq!(s.read("again.lock"), locked);
    let mut plain = common::LOCK.to_vec();
    plain.splice(5..6, ["plain.lock"]);
    s.bundler(&plain).success();
    assert_eq!(s.read("plain.lock"), locked);
    // A build without a lock resolves into its store: each file comes once.
    let before = counts();
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let mut build = common::build_args("spec.toml", "spec.lock", "b.tar.zst");
    build.splice(2..4, []);
    build.splice(4..6, ["--store", "fresh"]);
    s.bundler(&build).success();
    let after = counts();
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1, 1, 2],
        "{:?}",
        w.files.requests()
    );
}

#[test]
fn a_file_two_specs_name_lands_once_in_a_shared_store() {
    let w = world();
    lock(&w).success();
    let pull = |spec: &str, lock: &str| {
        w.s.bundler(&[
            "pull",
            spec,
            "--lock",
            lock,
            "--mirrors",
            "mirrors.toml",
            "--store",
            "store",
        ])
        .success()
    };
    pull("spec.toml", "spec.lock");
    // A second release naming the same kubelet (and nothing else).
    let spec = w.s.read("spec.toml");
    let only_kubelet = &spec[..spec.find("[[files]]\nname = \"app.yaml\"").unwrap()];
    w.s.write(
        "other.toml",
        &only_kubelet.replace("name = \"files\"", "name = \"other\""),
    );
    w.s.bundler(&[
        "lock",
        "other.toml",
        "--mirrors",
        "mirrors.toml",
        "-o",
        "other.lock",
    ])
    .success();
    let before = w.files.count(AMD);
    pull("other.toml", "other.lock");
    assert_eq!(
        w.files.count(AMD),
        before,
        "the shared file was fetched again"
    );
    let index = w.s.read("store/index.json");
    assert_eq!(index.matches("files/kubelet:1.0.0").count(), 1, "{index}");
}

#[test]
fn deltas_and_split_parts_carry_files_like_any_other_blob() {
    let w = world();
    let s = &w.s;
    lock(&w).success();
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let build = |spec: &str, lock: &str, out: &str, extra: &[&str]| {
        let mut args = common::build_args(spec, lock, out);
        args.extend_from_slice(extra);
        s.bundler(&args).success()
    };
    build("spec.toml", "spec.lock", "base.tar.zst", &[]);
    // The next release changes only the YAML.
    let yaml2 = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app2\n".to_vec();
    w.files.put("/manifests/v2.0.1/app.yaml", yaml2.clone());
    s.write(
        "next.toml",
        &s.read("spec.toml")
            .replace("version = \"2.0.0\"", "version = \"2.0.1\""),
    );
    s.bundler(&[
        "lock",
        "next.toml",
        "--mirrors",
        "mirrors.toml",
        "-o",
        "next.lock",
    ])
    .success();
    build(
        "next.toml",
        "next.lock",
        "delta.tar.zst",
        &["--base", "base.tar.zst", "--split", "1M"],
    );
    // The kubelets live in the base: the delta carries only what changed.
    let parts: u64 = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().contains("delta.tar.zst.0")
                && !p.to_string_lossy().ends_with(".minisig")
        })
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(parts > 0 && parts < 1 << 20, "the delta is {parts} bytes");
    s.installer(&[
        "unpack",
        "base.tar.zst",
        "--key",
        "k.pub",
        "--store",
        "site",
    ])
    .success();
    s.installer(&[
        "unpack",
        "delta.tar.zst.001",
        "--key",
        "k.pub",
        "--store",
        "site",
    ])
    .success();
    let srv = Serve::start(s, &["--store", "site", "--tls", "off"]);
    let base = format!("http://{}", srv.addr());
    assert_eq!(
        curl(&[&format!("{base}/files/app.yaml/2.0.1/app.yaml")]),
        yaml2
    );
    assert_eq!(
        curl(&[&format!("{base}/files/kubelet/1.0.0/linux/arm64/kubelet")]),
        w.arm
    );
}

#[test]
fn lock_and_pull_leave_a_mirror_far_slower_than_the_next_mid_file() {
    let files = FileServer::start();
    let big = bytes(9, 12 << 20);
    files.put(AMD, big.clone());
    // The mirror: the same server behind a proxy serving 1 MiB/s, so 12 s.
    let slow = Proxy::throttled(&files.url(), 1 << 20);
    let s = Session::new();
    s.write(
        "spec.toml",
        &format!(
            "name = \"files\"\nversion = \"1.0.0\"\nplatforms = [\"linux/amd64\"]\n\n[[files]]\nname = \"kubelet\"\nversion = \"1.0.0\"\nurl = \"https://{HOST}/release/v{{version}}/bin/{{os}}/{{arch}}/kubelet\"\nsha256 = {{ \"linux/amd64\" = \"{}\" }}\n",
            sha(&big)
        ),
    );
    s.write("mirrors.toml", &file_mirrors(&[slow.url(), files.url()]));
    // The binaries are built by the first run of a test process: not timed.
    s.bundler(&["--version"]).success();
    for (name, args) in [
        ("lock", &common::LOCK[..]),
        ("pull", &common::LOCKED_PULL[..]),
    ] {
        let what = format!("{name} through a 1 MiB/s mirror with a fast next one");
        let run = bundler_within(&s, &[args, &["--verbose"]].concat(), 6, &what);
        assert!(
            run.stderr
                .contains(&format!("decision: {}: moving ", slow.url())),
            "{name}: {}",
            run.stderr
        );
        // The rest came from the next one with a Range.
        assert!(
            files
                .requests()
                .iter()
                .any(|r| r.starts_with(&format!("GET {AMD} range=bytes="))),
            "{name}: {:?}",
            files.requests()
        );
    }
    assert!(s.read("spec.lock").contains(&sha(&big)));
    let blob = s.path(&format!("store/blobs/sha256/{}", sha(&big)));
    assert_eq!(sha(&std::fs::read(blob).unwrap()), sha(&big));
}

#[test]
fn lock_leaves_a_mirror_that_stalls_mid_file_for_the_next_where_it_stopped() {
    let w = world();
    let s = &w.s;
    // The first mirror sends 256 KiB of each kubelet, and 10 bytes of the YAML,
    // then nothing.
    let stalling = FileServer::start();
    for (path, bytes) in [(AMD, &w.amd), (ARM, &w.arm), (YAML, &w.yaml)] {
        stalling.put(path, bytes.clone());
    }
    for path in [AMD, ARM] {
        stalling.fault(path, Fault::StallAfter(256 << 10));
    }
    stalling.fault(YAML, Fault::StallAfter(10));
    s.write(
        "mirrors.toml",
        &file_mirrors(&[stalling.url(), w.files.url()]),
    );
    s.bundler(&["--version"]).success();
    // Hashed only (no store), then kept in a store: the two ways lock reads a file.
    for (name, extra) in [
        ("lock", &[][..]),
        ("lock --store", &["--store", "store"][..]),
    ] {
        // One stall timeout for the files under way when it stalled; 2 s of slack.
        let args = [&common::LOCK[..], &["--stall-timeout", "1"], extra].concat();
        let what = format!("{name} with a first mirror that stalls");
        let run = bundler_within(s, &args, 3, &what);
        assert!(
            run.stderr.contains(&format!(
                "note: {} was skipped (it stalled after",
                stalling.url()
            )),
            "{name}: {}",
            run.stderr
        );
        let locked = s.read("spec.lock");
        for bytes in [&w.amd, &w.arm, &w.yaml] {
            assert!(locked.contains(&sha(bytes)), "{name}: {locked}");
        }
    }
    // In each run, the rest of each kubelet came from the next mirror, and only
    // that. The YAML has no pin to check bytes from two mirrors against: all of it
    // came from the next one.
    let asked = |path: &str| -> Vec<String> {
        w.files
            .requests()
            .into_iter()
            .filter(|r| r.starts_with(&format!("GET {path}")))
            .collect()
    };
    for path in [AMD, ARM] {
        let rest = format!("GET {path} range=bytes={}-", 256 << 10);
        assert_eq!(asked(path), [rest.clone(), rest], "{path}");
    }
    let whole = format!("GET {YAML}");
    assert_eq!(asked(YAML), [whole.clone(), whole]);
    let blob = s.path(&format!("store/blobs/sha256/{}", sha(&w.amd)));
    assert_eq!(std::fs::read(blob).unwrap(), w.amd);
}
