//! Bundles end to end: keygen, build, inspect, verify and unpack with the real
//! `minisign` CLI, reproducibility, every refusal with a crafted archive, deltas and
//! split bundles. Upstream content comes from a loopback registry:2.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::store::{index_names, sha256_file};
use common::{mirror_to, spec, Run, Session};
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::registry::Registry;
use sha2::{Digest as _, Sha256};

const HOST: &str = "registry.example.io";

/// Three images, one layer shared by two of them.
fn seed(reg: &Registry, n: u64, big: usize) -> Vec<Image> {
    let shared = layer(n, 100_000);
    let pi = |flavor, arch, layers| platform_image(flavor, "linux", arch, None, layers);
    let images = vec![
        Image::multi(
            Flavor::Docker,
            vec![
                pi(
                    Flavor::Docker,
                    "amd64",
                    vec![shared.clone(), layer(n * 10 + 1, big)],
                ),
                pi(
                    Flavor::Docker,
                    "arm64",
                    vec![shared.clone(), layer(n * 10 + 2, 50_000)],
                ),
            ],
        ),
        Image::multi(
            Flavor::Oci,
            vec![pi(
                Flavor::Oci,
                "amd64",
                vec![shared, layer(n * 10 + 3, 70_000)],
            )],
        ),
        Image::single(pi(Flavor::Oci, "amd64", vec![layer(n * 10 + 4, 30_000)])),
    ];
    for (i, img) in images.iter().enumerate() {
        image::push(&reg.url(), &format!("apps/img{i}"), "v1", img);
    }
    images
}

fn refs(which: &[usize]) -> Vec<String> {
    which
        .iter()
        .map(|i| match i {
            0 => format!("{HOST}/apps/img0:v1"),
            i => format!("{{ ref = \"{HOST}/apps/img{i}:v1\", platforms = [\"linux/amd64\"] }}"),
        })
        .collect()
}

/// A session with mirrors at `reg`, a key pair `rel.{key,pub}`, and a locked spec.
fn prepare(reg: &Registry, which: &[usize], spec_name: &str) -> Session {
    let s = Session::new();
    s.write("mirrors.toml", &mirror_to(HOST, reg.url()));
    write_spec(&s, which, spec_name);
    s.bundler(&["keygen", "--name", "rel", "--no-password"])
        .success();
    s
}

fn write_spec(s: &Session, which: &[usize], spec_name: &str) {
    let r = refs(which);
    let r: Vec<&str> = r.iter().map(String::as_str).collect();
    s.write(
        &format!("{spec_name}.toml"),
        &spec(&["linux/amd64", "linux/arm64"], &r),
    );
    s.bundler(&[
        "lock",
        &format!("{spec_name}.toml"),
        "--mirrors",
        "mirrors.toml",
        "--quiet",
    ])
    .success();
}

fn build(s: &Session, spec_name: &str, out: &str, extra: &[&str]) -> Run {
    build_with(s, spec_name, "rel.key", out, extra, &[]).success()
}

/// `ferry-bundler build NAME.toml --lock NAME.lock --mirrors mirrors.toml --store store
/// --key KEY -o OUT EXTRA...` with the environment variables `env`, not yet checked.
fn build_with(
    s: &Session,
    spec_name: &str,
    key: &str,
    out: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let spec_file = format!("{spec_name}.toml");
    let lock_file = format!("{spec_name}.lock");
    let mut args = vec![
        "build",
        &spec_file,
        "--lock",
        &lock_file,
        "--mirrors",
        "mirrors.toml",
        "--store",
        "store",
        "--key",
        key,
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    s.bundler_env(&args, env)
}

/// `ferry-installer unpack BUNDLE --key rel.pub --store STORE`, not yet checked.
fn unpack(s: &Session, bundle: &str, store: &str) -> Run {
    s.installer(&["unpack", bundle, "--key", "rel.pub", "--store", store])
}

/// Every file under `dir` with its sha256, so "untouched" can be checked exactly.
fn snapshot(dir: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if !rel.starts_with(".ferry/lock") {
                    out.insert((rel, sha256_file(&p)));
                }
            }
        }
    }
    out
}

#[test]
fn round_trip_with_the_minisign_cli_and_standard_tools() {
    let reg = Registry::start();
    let images = seed(&reg, 1, 200_000);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    build(&s, "k8s", "k8s.tar.zst", &[]);

    // The stock minisign CLI checks the whole file with our public key.
    s.tool("minisign", &["-Vm", "k8s.tar.zst", "-p", "rel.pub"]);

    let inspect = s
        .installer(&["inspect", "k8s.tar.zst", "--key", "rel.pub", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["name"], "test");
    assert_eq!(v["signature_verified"], true);
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"][0]["digest"], images[0].digest());
    assert!(v["dedup_savings"].as_u64().unwrap() >= 100_000, "{v}");
    let text = s.bundler(&["inspect", "k8s.tar.zst"]).success().stdout;
    assert!(
        text.contains(&format!("{HOST}/apps/img0:v1")) && text.contains("not verified"),
        "{text}"
    );

    s.installer(&["verify", "k8s.tar.zst", "--key", "rel.pub"])
        .success();
    let run = unpack(&s, "k8s.tar.zst", "site").success();
    assert!(run.stderr.contains("unpacked test 1.0.0"), "{}", run.stderr);
    let site = s.path("site");
    assert_eq!(index_names(&site).len(), 3);
    // Unpacking again writes nothing new but still checks everything.
    let run = unpack(&s, "k8s.tar.zst", "site").success();
    assert!(
        run.stderr.contains("0 blob(s), 0 B written"),
        "{}",
        run.stderr
    );

    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&site)
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 3);
    let out = Command::new("skopeo")
        .args([
            "inspect",
            &format!("oci:{}:{HOST}/apps/img2:v1", site.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], images[2].digest());
}

#[test]
fn keys_work_both_ways_with_minisign() {
    let reg = Registry::start();
    seed(&reg, 2, 10_000);
    let s = prepare(&reg, &[2], "k8s");
    // A key made by `minisign -G` (unencrypted) signs our bundles.
    s.tool("minisign", &["-G", "-W", "-p", "m.pub", "-s", "m.key"]);
    build_with(&s, "k8s", "m.key", "m.tar.zst", &[], &[]).success();
    s.installer(&["verify", "m.tar.zst", "--key", "m.pub"])
        .success();

    // A password-protected key of ours: the password comes from FERRY_KEY_PASSWORD.
    let env = [("FERRY_KEY_PASSWORD", "correct horse")];
    s.bundler_env(&["keygen", "--name", "pw"], &env).success();
    let run = s.bundler(&["keygen", "--name", "pw"]).failure();
    assert!(
        run.error_line().contains("already exists"),
        "{}",
        run.stderr
    );
    let pw_build = |env: &[(&str, &str)]| build_with(&s, "k8s", "pw.key", "pw.tar.zst", &[], env);
    let run = pw_build(&[]).failure();
    assert!(
        run.error_line().contains("FERRY_KEY_PASSWORD"),
        "{}",
        run.stderr
    );
    let run = pw_build(&[("FERRY_KEY_PASSWORD", "wrong")]).failure();
    assert!(
        run.error_line().contains("wrong password"),
        "{}",
        run.stderr
    );
    pw_build(&env).success();
    s.tool("minisign", &["-Vm", "pw.tar.zst", "-p", "pw.pub"]);
    // Signed by one key, checked with another: refused.
    let run = s
        .installer(&["verify", "pw.tar.zst", "--key", "m.pub"])
        .refused();
    assert!(
        run.error_line().contains("not by the given key"),
        "{}",
        run.stderr
    );
}

#[test]
fn builds_are_byte_reproducible() {
    let reg = Registry::start();
    seed(&reg, 3, 300_000);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    build(&s, "k8s", "a.tar.zst", &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Another directory, another store, another second.
    std::fs::create_dir_all(s.path("other")).unwrap();
    for f in ["k8s.toml", "k8s.lock", "mirrors.toml", "rel.key"] {
        std::fs::copy(s.path(f), s.path(&format!("other/{f}"))).unwrap();
    }
    // The default level, spelled out, changes nothing.
    let level = ferry::archive::pack::DEFAULT_LEVEL.to_string();
    s.bundler(&[
        "build",
        "other/k8s.toml",
        "--lock",
        "other/k8s.lock",
        "--mirrors",
        "other/mirrors.toml",
        "--store",
        "other/store",
        "--key",
        "other/rel.key",
        "-o",
        "other/b.tar.zst",
        "--level",
        &level,
    ])
    .success();
    assert_eq!(
        sha256_file(&s.path("a.tar.zst")),
        sha256_file(&s.path("other/b.tar.zst"))
    );
    assert_eq!(
        s.read("a.tar.zst.minisig"),
        s.read("other/b.tar.zst.minisig")
    );
    // SOURCE_DATE_EPOCH changes the entries' mtime, and so the bytes.
    build_with(
        &s,
        "k8s",
        "rel.key",
        "c.tar.zst",
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    )
    .success();
    assert_ne!(
        sha256_file(&s.path("a.tar.zst")),
        sha256_file(&s.path("c.tar.zst"))
    );
    let tv = Command::new("tar")
        .args(["--zstd", "-tvf", "c.tar.zst"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&tv.stdout);
    assert!(
        listing.lines().next().unwrap().contains("2023-11-14"),
        "{listing}"
    );
    assert!(
        listing.lines().all(|l| l.starts_with("-rw-r--r-- 0/0")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .next()
            .unwrap()
            .ends_with("ferry-bundle.json"),
        "{listing}"
    );
}

/// Tar entries with their contents, as a test crafts them.
type Entries = Vec<(tar::Header, Vec<u8>)>;

/// The entries of a bundle, decompressed with the zstd CLI.
fn entries(bundle: &Path) -> Entries {
    let out = Command::new("zstd")
        .arg("-dc")
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut archive = tar::Archive::new(&out.stdout[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (h, data)
        })
        .collect()
}

/// Writes entries back as a zstd tar, headers as given (no path checks: we craft).
fn write_bundle(path: &Path, entries: &[(tar::Header, Vec<u8>)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (h, data) in entries {
        tar.append(h, &data[..]).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-o"])
        .arg(path)
        .arg("-f")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    assert!(child.wait().unwrap().success());
}

fn with_name(h: &tar::Header, name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = h.clone();
    let bytes = h.as_old_mut();
    bytes.name = [0; 100];
    bytes.name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    if kind.is_symlink() || kind.is_hard_link() {
        h.set_link_name("index.json").unwrap();
    }
    h.set_cksum();
    h
}

#[test]
fn every_kind_of_bad_bundle_is_refused_and_the_store_left_untouched() {
    let reg = Registry::start();
    seed(&reg, 4, 100_000);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    build(&s, "k8s", "good.tar.zst", &[]);
    s.bundler(&["keygen", "--name", "other", "--no-password"])
        .success();
    build_with(&s, "k8s", "other.key", "other.tar.zst", &[], &[]).success();
    // The site store already holds another release, which must stay as it is.
    write_spec(&s, &[2], "small");
    build(&s, "small", "small.tar.zst", &[]);
    unpack(&s, "small.tar.zst", "site").success();
    let before = snapshot(&s.path("site"));

    let good = entries(&s.path("good.tar.zst"));
    let blob_at = good
        .iter()
        .position(|(h, _)| h.path().unwrap().starts_with("blobs/"))
        .unwrap();
    let blob_name = good[blob_at].0.path().unwrap().display().to_string();
    let mut cases: Vec<(&str, Entries, &str)> = Vec::new();
    let mut v = good.clone();
    v.remove(1);
    cases.push(("unsigned", v, "not signed"));
    let mut v = good.clone();
    let text = String::from_utf8(v[0].1.clone())
        .unwrap()
        .replace("\"version\": \"1.0.0\"", "\"version\": \"9.0.0\"");
    v[0].1 = text.into_bytes();
    cases.push(("manifest altered after signing", v, "signature"));
    let mut v = good.clone();
    let last = v[blob_at].1.len() - 1;
    v[blob_at].1[last] ^= 1;
    cases.push(("a flipped byte in a blob", v, "was altered"));
    let mut v = good.clone();
    v.push((
        with_name(&good[2].0, "blobs/sha256/extra", tar::EntryType::Regular, 3),
        b"abc".to_vec(),
    ));
    cases.push((
        "an entry not in the manifest",
        v,
        "not in the signed manifest",
    ));
    let mut v = good.clone();
    v.remove(blob_at);
    cases.push(("a missing entry", v, "is missing"));
    let mut v = good.clone();
    v.insert(blob_at, good[blob_at].clone());
    cases.push(("a duplicate entry", v, "appears twice"));
    let mut v = good.clone();
    v.insert(
        2,
        (
            with_name(&good[2].0, "../evil", tar::EntryType::Regular, 3),
            b"abc".to_vec(),
        ),
    );
    cases.push(("a .. path", v, "unsafe path"));
    let mut v = good.clone();
    v.insert(
        2,
        (
            with_name(&good[2].0, "/etc/evil", tar::EntryType::Regular, 3),
            b"abc".to_vec(),
        ),
    );
    cases.push(("an absolute path", v, "unsafe path"));
    let mut v = good.clone();
    v[blob_at] = (
        with_name(&good[blob_at].0, &blob_name, tar::EntryType::Symlink, 0),
        Vec::new(),
    );
    cases.push(("a symlink", v, "symbolic link"));
    let mut v = good.clone();
    v[blob_at] = (
        with_name(&good[blob_at].0, &blob_name, tar::EntryType::Link, 0),
        Vec::new(),
    );
    cases.push(("a hard link", v, "hard link"));
    let mut v = good.clone();
    v[blob_at] = (
        with_name(&good[blob_at].0, &blob_name, tar::EntryType::Char, 0),
        Vec::new(),
    );
    cases.push(("a device", v, "character device"));
    let mut v = good.clone();
    let huge = vec![0u8; 8 << 20];
    v[blob_at] = (
        with_name(
            &good[blob_at].0,
            &blob_name,
            tar::EntryType::Regular,
            huge.len() as u64,
        ),
        huge,
    );
    cases.push((
        "an entry far larger than the manifest says",
        v,
        "the manifest says",
    ));

    for (what, crafted, expect) in &cases {
        write_bundle(&s.path("bad.tar.zst"), crafted);
        for cmd in ["verify", "unpack"] {
            let mut args = vec![cmd, "bad.tar.zst", "--key", "rel.pub"];
            if cmd == "unpack" {
                args.extend(["--store", "site"]);
            }
            let run = s.installer(&args).refused();
            assert!(
                run.error_line().contains(expect),
                "{what}: expected {expect:?} in {}",
                run.error_line()
            );
        }
        assert_eq!(
            snapshot(&s.path("site")),
            before,
            "{what}: the store changed"
        );
    }

    // Signed by another key.
    let run = unpack(&s, "other.tar.zst", "site").refused();
    assert!(
        run.error_line().contains("not by the given key"),
        "{}",
        run.stderr
    );
    // Damage to the compressed file itself, and truncation.
    let bytes = std::fs::read(s.path("good.tar.zst")).unwrap();
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(s.path("flipped.tar.zst"), flipped).unwrap();
    std::fs::write(s.path("cut.tar.zst"), &bytes[..mid]).unwrap();
    std::fs::write(s.path("cut-end.tar.zst"), &bytes[..bytes.len() - 3]).unwrap();
    for bad in ["flipped.tar.zst", "cut.tar.zst", "cut-end.tar.zst"] {
        unpack(&s, bad, "site").refused();
        assert_eq!(
            snapshot(&s.path("site")),
            before,
            "{bad}: the store changed"
        );
    }
    // No signature at all: a plain tar.zst of a layout.
    std::fs::write(s.path("plain.tar.zst"), b"not zstd").unwrap();
    s.installer(&["verify", "plain.tar.zst", "--key", "rel.pub"])
        .refused();
    // And the good one still goes in.
    unpack(&s, "good.tar.zst", "site").success();
    assert_eq!(index_names(&s.path("site")).len(), 3);
}

#[test]
fn a_delta_applies_only_on_top_of_its_base() {
    let reg = Registry::start();
    seed(&reg, 5, 200_000);
    let s = prepare(&reg, &[0, 1], "v1");
    build(&s, "v1", "v1.tar.zst", &[]);
    write_spec(&s, &[0, 1, 2], "v2");
    let run = build(&s, "v2", "v2-delta.tar.zst", &["--base", "v1.tar.zst"]);
    assert!(run.stderr.contains("wrote"), "{}", run.stderr);
    let full = build(&s, "v2", "v2.tar.zst", &[]);
    drop(full);
    let delta_size = std::fs::metadata(s.path("v2-delta.tar.zst")).unwrap().len();
    assert!(
        delta_size * 4 < std::fs::metadata(s.path("v2.tar.zst")).unwrap().len(),
        "the delta is not small"
    );
    let v: serde_json::Value = serde_json::from_str(
        &s.installer(&["inspect", "v2-delta.tar.zst", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    assert!(
        v["base"]
            .as_str()
            .unwrap()
            .starts_with("test 1.0.0 (sha256:"),
        "{v}"
    );

    // On an empty store, or one holding another bundle: refused, and said why.
    let run = unpack(&s, "v2-delta.tar.zst", "empty").refused();
    assert!(run.error_line().contains("does not hold"), "{}", run.stderr);
    write_spec(&s, &[0], "wrong");
    build(&s, "wrong", "wrong.tar.zst", &[]);
    unpack(&s, "wrong.tar.zst", "wrongbase").success();
    let before = snapshot(&s.path("wrongbase"));
    unpack(&s, "v2-delta.tar.zst", "wrongbase").refused();
    assert_eq!(snapshot(&s.path("wrongbase")), before);

    // On top of its base: the store ends up as the full v2 would leave it.
    unpack(&s, "v1.tar.zst", "site").success();
    unpack(&s, "v2-delta.tar.zst", "site").success();
    unpack(&s, "v2.tar.zst", "full").success();
    let blobs = |d: &str| -> BTreeSet<_> {
        snapshot(&s.path(d))
            .into_iter()
            .filter(|(p, _)| p.starts_with("blobs/"))
            .collect()
    };
    assert_eq!(blobs("site"), blobs("full"));
    assert_eq!(index_names(&s.path("site")), index_names(&s.path("full")));
}

#[test]
fn split_bundles_find_their_parts_and_name_the_missing_one() {
    let reg = Registry::start();
    seed(&reg, 6, 3 << 20);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    build(&s, "k8s", "whole.tar.zst", &[]);
    build(&s, "k8s", "k8s.tar.zst", &["--split", "1M"]);
    let parts: Vec<String> = (1..=9)
        .map(|i| format!("k8s.tar.zst.{i:03}"))
        .filter(|p| s.path(p).exists())
        .collect();
    assert!(parts.len() >= 3, "{parts:?}");
    for p in &parts {
        assert!(std::fs::metadata(s.path(p)).unwrap().len() <= 1 << 20);
        s.tool("minisign", &["-Vm", p, "-p", "rel.pub"]);
    }
    assert!(!s.path("k8s.tar.zst").exists());
    s.installer(&["verify", "k8s.tar.zst.001", "--key", "rel.pub"])
        .success();
    s.installer(&["inspect", "k8s.tar.zst.001"]).success();

    // Rejoined, the parts are the unsplit bundle.
    let mut joined = Vec::new();
    for p in &parts {
        joined.extend(std::fs::read(s.path(p)).unwrap());
    }
    assert_eq!(
        hex::encode(Sha256::digest(&joined)),
        sha256_file(&s.path("whole.tar.zst"))
    );

    // A part damaged, then lost.
    let second = s.path(&parts[1]);
    let original = std::fs::read(&second).unwrap();
    let mut damaged = original.clone();
    damaged[100] ^= 1;
    std::fs::write(&second, damaged).unwrap();
    let run = unpack(&s, "k8s.tar.zst.001", "site").refused();
    assert!(
        run.error_line()
            .contains(&format!("part 2 of {}", parts.len())),
        "{}",
        run.stderr
    );
    assert!(snapshot(&s.path("site"))
        .iter()
        .all(|(p, _)| !p.starts_with("blobs/")));
    std::fs::remove_file(&second).unwrap();
    let run = s
        .installer(&["verify", "k8s.tar.zst.001", "--key", "rel.pub"])
        .refused();
    assert!(
        run.error_line().contains(&format!(
            "part 2 of {} ({}) is missing",
            parts.len(),
            parts[1]
        )),
        "{}",
        run.stderr
    );
    std::fs::write(&second, original).unwrap();
    unpack(&s, "k8s.tar.zst.001", "site").success();
    assert_eq!(index_names(&s.path("site")).len(), 3);
}

/// A filesystem mounted at `dir`, unmounted on drop.
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// `mount -t FSTYPE -o OPTIONS FSTYPE DIR` (needs root).
    fn new(dir: std::path::PathBuf, fstype: &str, options: &str) -> Mounted {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", fstype, "-o", options, fstype])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a {fstype} (needs root)");
        Mounted(dir)
    }

    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unpack_the_disk_cannot_hold_is_a_local_failure_said_up_front_not_a_bad_bundle() {
    let s = Session::new();
    let (bundle, key) = common::cluster::bundle();
    let small = Mounted::new(s.path("small"), "tmpfs", "size=32m");
    let run = s
        .installer(&[
            "unpack",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--store",
            "small/store",
        ])
        .failure();
    // Exit 1 (this host's failure), not 3 (a refused bundle).
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("small/store: the bundle adds"), "{line}");
    assert!(
        line.contains("MiB free: make room or unpack elsewhere"),
        "{line}"
    );
    // Nothing of the bundle was written.
    let blobs = s.path("small/store/blobs/sha256");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).unwrap().count() == 0);
    // verify of the same bundle is fine, and with room the unpack is too.
    s.installer(&[
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
    .success();
    small.grow("1g");
    s.installer(&[
        "unpack",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        "small/store",
    ])
    .success();
}

#[test]
fn a_filesystem_that_refuses_direct_writes_gets_ordinary_ones_and_the_same_bytes() {
    let reg = Registry::start();
    seed(&reg, 3, 300_000);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    build(&s, "k8s", "a.tar.zst", &[]);
    unpack(&s, "a.tar.zst", "site").success();
    // ramfs refuses O_DIRECT when a file is opened (dd says so), so bundles and
    // blobs written there take the ordinary path.
    let _ram = Mounted::new(s.path("ram"), "ramfs", "mode=0755");
    let probe = Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=1", "oflag=direct"])
        .arg(format!("of={}", s.path("ram/probe").display()))
        .output()
        .unwrap();
    assert!(
        !probe.status.success()
            && String::from_utf8_lossy(&probe.stderr).contains("Invalid argument"),
        "ramfs took a direct write: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    build(&s, "k8s", "ram/b.tar.zst", &[]);
    assert_eq!(
        sha256_file(&s.path("a.tar.zst")),
        sha256_file(&s.path("ram/b.tar.zst"))
    );
    assert_eq!(s.read("a.tar.zst.minisig"), s.read("ram/b.tar.zst.minisig"));
    unpack(&s, "ram/b.tar.zst", "ram/site").success();
    assert_eq!(
        snapshot(&s.path("ram/site/blobs")),
        snapshot(&s.path("site/blobs"))
    );
    assert!(!snapshot(&s.path("site/blobs")).is_empty());
}

#[test]
fn an_unpack_killed_midway_leaves_nothing_the_next_one_does_not_reclaim() {
    let s = Session::new();
    let (bundle, key) = common::cluster::bundle();
    let args = [
        "unpack",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        "site",
    ];
    let staging = s.path("site/.ferry/staging");
    // kill -9 once blobs are being staged, at two different points.
    for wait_files in [1, 4] {
        let mut child = Command::new(common::bin_path("ferry-installer"))
            .args(args)
            .current_dir(s.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let staged: usize = std::fs::read_dir(&staging)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir())
                        .map(|e| std::fs::read_dir(e.path()).map_or(0, |f| f.count()))
                        .sum()
                })
                .unwrap_or(0);
            if staged >= wait_files {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "the unpack ended before it staged {wait_files} file(s)"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            std::fs::read_dir(&staging).unwrap().count() > 0,
            "the killed unpack left no staging to reclaim"
        );
    }
    // The next unpack reclaims what the killed ones left and completes.
    s.installer(&args).success();
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // And the store is exactly what a clean unpack makes.
    s.installer(&[
        "unpack",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        "clean",
    ])
    .success();
    let blobs = |store: &str| -> BTreeSet<String> {
        std::fs::read_dir(s.path(&format!("{store}/blobs/sha256")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(blobs("site"), blobs("clean"));
    assert_eq!(s.read("site/index.json"), s.read("clean/index.json"));
    for hex in blobs("site") {
        let path = s.path(&format!("site/blobs/sha256/{hex}"));
        assert_eq!(sha256_file(&path), hex, "{hex}");
    }
}

/// One way to damage a bundle.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte of the compressed file (at this fraction of its length).
    Flip(f64, u8),
    /// Keep only this fraction of the compressed file.
    Truncate(f64),
    /// Swap two tar entries.
    Swap(usize, usize),
    /// Write one tar entry twice.
    Duplicate(usize),
    /// Leave one tar entry out.
    Drop(usize),
    /// Flip a byte inside one entry's contents (then compress again).
    Alter(usize, f64),
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    prop_oneof![
        (0.0..1.0f64, 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        (0..64usize, 0..64usize).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (0..64usize).prop_map(Mutation::Duplicate),
        (0..64usize).prop_map(Mutation::Drop),
        (0..64usize, 0.0..1.0f64).prop_map(|(i, at)| Mutation::Alter(i, at)),
    ]
}

/// Which byte of an entry of `len` bytes `Mutation::Alter` changes.
fn altered_at(len: usize, at: f64) -> usize {
    ((len as f64 * at) as usize).min(len.saturating_sub(1))
}

/// The bundle's bytes after `m`.
fn mutate(good: &[u8], entries: &Entries, m: &Mutation) -> Vec<u8> {
    let compress = |entries: &Entries| {
        let mut tar = tar::Builder::new(Vec::new());
        for (h, data) in entries {
            tar.append(h, &data[..]).unwrap();
        }
        zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap()
    };
    let n = entries.len();
    match *m {
        Mutation::Flip(at, x) => {
            let mut b = good.to_vec();
            let i = ((b.len() as f64 * at) as usize).min(b.len() - 1);
            b[i] ^= x;
            b
        }
        Mutation::Truncate(keep) => good[..(good.len() as f64 * keep) as usize].to_vec(),
        Mutation::Swap(a, b) => {
            let mut e = entries.clone();
            e.swap(a % n, b % n);
            compress(&e)
        }
        Mutation::Duplicate(i) => {
            let mut e = entries.clone();
            e.insert(i % n, e[i % n].clone());
            compress(&e)
        }
        Mutation::Drop(i) => {
            let mut e = entries.clone();
            e.remove(i % n);
            compress(&e)
        }
        Mutation::Alter(i, at) => {
            let mut e = entries.clone();
            let data = &mut e[i % n].1;
            if !data.is_empty() {
                let j = altered_at(data.len(), at);
                data[j] ^= 0x20;
            }
            compress(&e)
        }
    }
}

#[test]
fn mutated_bundles_are_refused_without_a_panic_and_leave_the_store_untouched() {
    use proptest::test_runner::{Config, TestRunner};
    let reg = Registry::start();
    seed(&reg, 3, 20_000);
    let s = prepare(&reg, &[0, 1], "k8s");
    build(&s, "k8s", "good.tar.zst", &[]);
    let good = std::fs::read(s.path("good.tar.zst")).unwrap();
    let entries = entries(&s.path("good.tar.zst"));
    let key = ferry::signing::PublicKey::load(&s.path("rel.pub")).unwrap();
    let unpack_into = |bytes: Vec<u8>, dir: &Path| {
        let store = ferry::store::Store::create(dir).unwrap();
        ferry::archive::unpack::unpack(
            std::io::Cursor::new(bytes),
            &key,
            &store,
            &ferry::progress::Silent,
        )
    };
    // What a clean unpack gives: a mutation that changes nothing signed is
    // accepted, and must give exactly this.
    let clean = tempfile::tempdir().unwrap();
    unpack_into(good.clone(), clean.path()).unwrap();
    let clean = snapshot(clean.path());
    let empty = {
        let d = tempfile::tempdir().unwrap();
        ferry::store::Store::create(d.path()).unwrap();
        snapshot(d.path())
    };

    let (refused, accepted) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    // A fixed seed: the same cases in every run, so CI is never at the mercy of
    // the draw (a failing case is then the same one each time, to be looked at).
    let config = Config {
        cases: 192,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&mutation(), |m| {
            let bytes = mutate(&good, &entries, &m);
            let dir = tempfile::tempdir().unwrap();
            let result = unpack_into(bytes.clone(), dir.path());
            let after = snapshot(dir.path());
            match result {
                Err(e) => {
                    refused.set(refused.get() + 1);
                    // A refusal (exit 3), never a local failure, and nothing visible.
                    proptest::prop_assert!(
                        !matches!(
                            e,
                            ferry::archive::ArchiveError::Io { .. }
                                | ferry::archive::ArchiveError::Store(_)
                                | ferry::archive::ArchiveError::NoSpace { .. }
                        ),
                        "{m:?}: {e}"
                    );
                    proptest::prop_assert_eq!(&after, &empty, "{:?} left something: {}", m, e);
                }
                Ok(_) => {
                    accepted.set(accepted.get() + 1);
                    // Only what changes nothing signed may pass: an entry swapped
                    // with itself, or a change to the signature's untrusted comment
                    // (its first line, which minisign leaves unsigned by design).
                    let n = entries.len();
                    let harmless = match m {
                        Mutation::Swap(a, b) => a % n == b % n,
                        Mutation::Alter(i, at) => {
                            let (h, data) = &entries[i % n];
                            h.path().unwrap().to_string_lossy() == ferry::archive::SIGNATURE_ENTRY
                                && altered_at(data.len(), at)
                                    < data.iter().position(|b| *b == b'\n').unwrap_or(0)
                        }
                        _ => false,
                    };
                    proptest::prop_assert!(harmless, "{:?} was accepted", m);
                    proptest::prop_assert_eq!(&after, &clean, "{:?}", m);
                }
            }
            Ok(())
        })
        .unwrap();
    let (refused, accepted) = (refused.get(), accepted.get());
    eprintln!("192 mutated bundles: {refused} refused, {accepted} accepted unchanged");
    assert!(refused > 150, "{refused} refused");
}
