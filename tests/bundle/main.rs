//! Bundles end to end: keygen, build, inspect, verify and unpack with the real
//! `minisign` CLI, reproducibility, every refusal with a crafted archive, deltas and
//! split bundles. Upstream content comes from a loopback registry:2.

#[path = "../common/mod.rs"]
mod common;

mod refused;
mod stores;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::store::{index_names, sha256_file};
use common::{mirror_to, spec, Mounted, Run, Session};
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
                // The store's own locks (index.json's, gc's) are not the bundle's.
                if !rel.starts_with(".ferry/lock") && rel != ".ferry/gc.lock" {
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

/// Regression: a build from a complete store took the store's index lock to name
/// what was already named, so a store on read-only media (a shared cache) failed
/// with "Read-only file system". It now builds the same bytes from it.
#[test]
fn a_complete_store_on_read_only_media_is_built_from() {
    let reg = Registry::start();
    seed(&reg, 2, 100_000);
    let s = prepare(&reg, &[0, 1], "k8s");
    build(&s, "k8s", "a.tar.zst", &[]);
    let ro = Mounted::bind_read_only(&s.path("store"), s.path("ro"));
    let run = s.bundler(&[
        "build",
        "k8s.toml",
        "--lock",
        "k8s.lock",
        "--mirrors",
        "mirrors.toml",
        "--store",
        "ro",
        "--key",
        "rel.key",
        "-o",
        "b.tar.zst",
    ]);
    drop(ro);
    run.success();
    assert_eq!(
        std::fs::read(s.path("a.tar.zst")).unwrap(),
        std::fs::read(s.path("b.tar.zst")).unwrap()
    );
}

/// The forms of `out` in the session: `OUT`, `OUT.NNN` and their `.minisig`s.
fn forms_of(s: &Session, out: &str) -> BTreeSet<String> {
    std::fs::read_dir(s.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(out) && !n.ends_with(".notes"))
        .collect()
}

#[test]
fn a_build_replaces_the_other_form_of_its_output_split_or_not_and_nothing_else() {
    let reg = Registry::start();
    seed(&reg, 8, 3 << 20);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    s.write("rel.tar.zst.notes", "mine");
    build(&s, "k8s", "rel.tar.zst", &["--split", "1M"]);
    let split = forms_of(&s, "rel.tar.zst");
    assert!(split.contains("rel.tar.zst.003.minisig"), "{split:?}");
    // Unsplit to the same output: the parts go, once the new bundle is in place.
    build(&s, "k8s", "rel.tar.zst", &[]);
    let whole: BTreeSet<String> = ["rel.tar.zst", "rel.tar.zst.minisig"]
        .map(String::from)
        .into();
    assert_eq!(forms_of(&s, "rel.tar.zst"), whole);
    // And back: the unsplit bundle goes.
    build(&s, "k8s", "rel.tar.zst", &["--split", "1M"]);
    assert_eq!(forms_of(&s, "rel.tar.zst"), split);
    assert_eq!(s.read("rel.tar.zst.notes"), "mine");
    s.installer(&["verify", "rel.tar.zst.001", "--key", "rel.pub"])
        .success();
}
