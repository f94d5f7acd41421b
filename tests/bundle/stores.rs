//! Bundles against the store they go into: deltas on their base, split parts, a
//! disk too small, a filesystem without direct writes, an unpack killed midway or
//! stopped by Ctrl-C.

use super::*;

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
    // And field by field, for scripts: the base's id is v1's.
    let v1: serde_json::Value = serde_json::from_str(
        &s.installer(&["inspect", "v1.tar.zst", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["base_release"]["name"], "test", "{v}");
    assert_eq!(v["base_release"]["version"], "1.0.0", "{v}");
    assert_eq!(v["base_release"]["id"], v1["id"], "{v}");
    assert!(v1.get("base_release").is_none(), "{v1}");

    // verify says what a delta needs; a secret key given for the public one is
    // named as such.
    let run = s
        .installer(&["verify", "v2-delta.tar.zst", "--key", "rel.pub"])
        .success();
    assert!(
        run.stderr
            .contains("; a delta: it unpacks only into a store holding test 1.0.0"),
        "{}",
        run.stderr
    );
    let run = s
        .installer(&["verify", "v2-delta.tar.zst", "--key", "rel.key"])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: rel.key is not a minisign public key: it is a secret key: give the public key beside it (.pub)"
    );

    // inspect says what the delta takes from its base, and whose dedup it shows.
    let text = s
        .installer(&["inspect", "v2-delta.tar.zst"])
        .success()
        .stdout;
    assert!(text.contains("\nfrom base  "), "{text}");
    assert!(
        text.contains("saved by storing shared blobs once (across the release, its base included)"),
        "{text}"
    );
    assert!(v["from_base"].as_u64().unwrap() > 0, "{v}");
    assert!(v1.get("from_base").is_none(), "{v1}");

    // push --bundle refuses a delta from its signed head, before reading on.
    let line = s
        .installer(&[
            "push",
            "--bundle",
            "v2-delta.tar.zst",
            "--key",
            "rel.pub",
            "--to",
            "http://127.0.0.1:9",
        ])
        .failure()
        .error_line()
        .to_string();
    assert!(line.contains("a delta bundle needs its base"), "{line}");

    // On an empty store, or one holding another bundle: refused, and said why.
    let run = unpack(&s, "v2-delta.tar.zst", "empty").refused();
    assert!(run.error_line().contains("does not hold"), "{}", run.stderr);
    write_spec(&s, &[0], "wrong");
    build(&s, "wrong", "wrong.tar.zst", &[]);
    unpack(&s, "wrong.tar.zst", "wrongbase").success();
    let before = snapshot(&s.path("wrongbase"));
    unpack(&s, "v2-delta.tar.zst", "wrongbase").refused();
    assert_eq!(snapshot(&s.path("wrongbase")), before);

    // On a store that held its base, from which gc has since taken blobs: said so,
    // not that the base is missing (the advice to unpack it again is the same).
    unpack(&s, "v1.tar.zst", "collected").success();
    let layer = std::fs::read_dir(s.path("collected/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&layer).unwrap();
    let run = unpack(&s, "v2-delta.tar.zst", "collected").refused();
    let line = run.error_line();
    assert!(
        line.contains("on top of test 1.0.0, which the store at collected held, but 1 of the files it takes from it are gone (blobs/sha256/"),
        "{line}"
    );
    assert!(
        line.contains("unpack test 1.0.0's bundle again first"),
        "{line}"
    );

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
    // On a store holding its own release in full (not its base): every byte it
    // takes from the base is there, so it goes in, changing nothing.
    let before = (blobs("full"), index_names(&s.path("full")));
    unpack(&s, "v2-delta.tar.zst", "full").success();
    assert_eq!((blobs("full"), index_names(&s.path("full"))), before);
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
    // The whole name, or a later part, is pointed at the first part.
    for (given, says) in [
        (
            "k8s.tar.zst",
            "it was split into parts: give the first, k8s.tar.zst.001".to_string(),
        ),
        (
            "k8s.tar.zst.002",
            format!(
                "it is part 2 of {} of a split bundle: give the first, k8s.tar.zst.001",
                parts.len()
            ),
        ),
    ] {
        let run = s.installer(&["inspect", given]).failure();
        assert!(run.error_line().ends_with(&says), "{}", run.stderr);
    }
    // A part renamed: its signature says what it is (it was "truncated or
    // corrupt: incomplete frame").
    for ext in ["", ".minisig"] {
        std::fs::copy(
            s.path(&format!("{}{ext}", parts[0])),
            s.path(&format!("k8s.part1{ext}")),
        )
        .unwrap();
    }
    let run = s
        .installer(&["verify", "k8s.part1", "--key", "rel.pub"])
        .failure();
    assert!(
        run.error_line().ends_with(&format!(
            "it is part 1 of {n} of a split bundle: the parts must keep the names the build gave them (NAME.001 to NAME.{n:03}): give the first",
            n = parts.len()
        )),
        "{}",
        run.stderr
    );
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
    // Parts 2 and 3 swapped, each with its signature: named before a byte is read
    // (it was "truncated or corrupt: Data corruption detected").
    let swap = |a: &str, b: &str| {
        for ext in ["", ".minisig"] {
            let (a, b) = (s.path(&format!("{a}{ext}")), s.path(&format!("{b}{ext}")));
            std::fs::rename(&a, s.path("swap")).unwrap();
            std::fs::rename(&b, &a).unwrap();
            std::fs::rename(s.path("swap"), &b).unwrap();
        }
    };
    swap(&parts[1], &parts[2]);
    let run = unpack(&s, "k8s.tar.zst.001", "site").refused();
    assert!(
        run.error_line().contains(&format!(
            "part 2 of {n} ({}) is signed as \"ferry bundle test 1.0.0 sha256:",
            parts[1],
            n = parts.len()
        )) && run.error_line().contains(&format!(
            " part 3/{}\": a part out of order, or of another bundle",
            parts.len()
        )),
        "{}",
        run.stderr
    );
    swap(&parts[1], &parts[2]);
    // The data of parts 2 and 3 swapped, their signatures left: the part that
    // fails to decompress is found by its signature (it was "Data corruption
    // detected", naming no part).
    let swap_data = |a: &str, b: &str| {
        let (a, b) = (s.path(a), s.path(b));
        std::fs::rename(&a, s.path("swap")).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(s.path("swap"), &b).unwrap();
    };
    swap_data(&parts[1], &parts[2]);
    let run = unpack(&s, "k8s.tar.zst.001", "site").refused();
    assert!(
        run.error_line().contains(&format!(
            "part 2 of {} ({}) is wrong",
            parts.len(),
            parts[1]
        )),
        "{}",
        run.stderr
    );
    swap_data(&parts[1], &parts[2]);
    unpack(&s, "k8s.tar.zst.001", "site").success();
    assert_eq!(index_names(&s.path("site")).len(), 3);
}

/// `ferry-installer unpack` of the shared cluster bundle into `store`, not yet checked.
fn unpack_cluster(s: &Session, store: &str) -> Run {
    unpack_release(s, &common::cluster::bundle().0, store)
}

/// `ferry-installer unpack` of `bundle`, signed by the cluster release's key.
fn unpack_release(s: &Session, bundle: &Path, store: &str) -> Run {
    let key = common::cluster::bundle().1;
    s.installer(&[
        "unpack",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        store,
    ])
}

#[test]
fn an_unpack_the_disk_cannot_hold_is_a_local_failure_said_up_front_not_a_bad_bundle() {
    let s = Session::new();
    let (bundle, key) = common::cluster::bundle();
    let small = Mounted::new(s.path("small"), "tmpfs", "size=32m");
    let run = unpack_cluster(&s, "small/store").failure();
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
    unpack_cluster(&s, "small/store").success();
}

#[test]
fn a_write_that_fails_midway_stops_the_unpack_names_the_file_and_leaves_the_store_empty() {
    let s = Session::new();
    let (bundle, key) = common::cluster::bundle();
    // The disk fills up after the checks: strace fails the writing thread's third
    // write with ENOSPC (its first two, and every other thread's, go through).
    let installer = common::bin_path("ferry-installer");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=pwrite64",
            "-e",
            "inject=pwrite64:error=ENOSPC:when=3",
        ])
        .arg(&installer)
        .args(["unpack", "-q", "--store", "site", "--key"])
        .arg(&key)
        .arg(&bundle)
        .current_dir(s.path(""))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // This host's failure (1), not a refused bundle (3), naming the staged blob.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("site/.ferry/staging/") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let blobs = s.path("site/blobs/sha256");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).unwrap().count() == 0);
    let left = staging_left(&s.path("site"));
    assert!(left.is_empty(), "{left:?}");
    // With room, the same unpack goes through.
    unpack_cluster(&s, "site").success();
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
fn a_direct_write_refused_for_its_alignment_is_made_again_the_ordinary_way() {
    let reg = Registry::start();
    // A bundle of more than one 8 MiB direct write.
    seed(&reg, 4, 12 << 20);
    let s = prepare(&reg, &[0, 1], "k8s");
    build(&s, "k8s", "a.tar.zst", &[]);
    // A device whose logical block is larger than 4096 bytes refuses an aligned
    // direct write with EINVAL. strace makes the first pwrite64 of every thread fail
    // so (refused, not made): the writing thread's first, a direct 8 MiB write.
    let bundler = common::bin_path("ferry-bundler");
    s.tool(
        "strace",
        &[
            "-f",
            "-qq",
            "-e",
            "trace=pwrite64",
            "-e",
            "inject=pwrite64:error=EINVAL:when=1",
            "-o",
            "trace.txt",
            bundler.to_str().unwrap(),
            "build",
            "k8s.toml",
            "--lock",
            "k8s.lock",
            "--mirrors",
            "mirrors.toml",
            "--store",
            "store",
            "--key",
            "rel.key",
            "-o",
            "b.tar.zst",
            "--quiet",
        ],
    );
    let trace = s.read("trace.txt");
    let injected: Vec<&str> = trace.lines().filter(|l| l.contains("(INJECTED)")).collect();
    assert!(
        injected
            .iter()
            .any(|l| l.contains(&format!(", {}, 0) = -1 EINVAL", 8 << 20))),
        "no refused direct write of 8 MiB at 0:\n{}",
        injected.join("\n")
    );
    // It was made again, the ordinary way, and so was the rest: the same bundle,
    // byte for byte.
    assert_eq!(
        sha256_file(&s.path("a.tar.zst")),
        sha256_file(&s.path("b.tar.zst"))
    );
    assert_eq!(s.read("a.tar.zst.minisig"), s.read("b.tar.zst.minisig"));
    s.tool("minisign", &["-Vq", "-p", "rel.pub", "-m", "b.tar.zst"]);
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
    // kill -9 once blobs are being staged, at two different points.
    for wait_files in [1, 4] {
        let mut child = unpack_until_staged(&s, "site", wait_files);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the unpack ended before it staged {wait_files} file(s)"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !staging_left(&s.path("site")).is_empty(),
            "the killed unpack left no staging to reclaim"
        );
    }
    // serve says the store names no image yet, and what to do (--read-only
    // leaves the staging for the next unpack to reclaim).
    let srv = common::serve::Serve::start(&s, &["--store", "site", "--tls", "off", "--read-only"]);
    assert!(
        srv.log()
            .contains("warning: site names no image: unpack a bundle into it"),
        "{}",
        srv.log()
    );
    drop(srv);
    // The next unpack reclaims what the killed ones left and completes.
    s.installer(&args).success();
    let left = staging_left(&s.path("site"));
    assert!(left.is_empty(), "{left:?}");
    // And the store is exactly what a clean unpack makes.
    unpack_cluster(&s, "clean").success();
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

/// What `store`'s staging area holds (directories and their lock files).
fn staging_left(store: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(store.join(".ferry/staging"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Files in the staging directories of `store`.
fn staged_files(store: &Path) -> usize {
    std::fs::read_dir(store.join(".ferry/staging"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| std::fs::read_dir(e.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

/// `ferry-installer unpack --quiet` of the cluster bundle into `store`, started
/// and returned once it has staged `files` files, or has ended (the caller tells
/// which); its stderr is piped. Fails after 60 s of neither.
fn unpack_until_staged(s: &Session, store: &str, files: usize) -> std::process::Child {
    let (bundle, key) = common::cluster::bundle();
    let mut child = Command::new(common::bin_path("ferry-installer"))
        .args(["unpack", bundle.to_str().unwrap(), "--key"])
        .arg(key)
        .args(["--store", store, "--quiet"])
        .current_dir(s.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while staged_files(&s.path(store)) < files && child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the unpack staged fewer than {files} file(s) in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child
}

/// Regression: Ctrl-C killed an unpack silently (exit 130, no line), leaving its
/// staging directory until the next unpack and the store it had just made. Now
/// the first Ctrl-C stops it at its next read: it removes its staging (and the
/// store it made), says so in one line, and exits 130.
#[test]
fn an_unpack_stopped_by_ctrl_c_says_so_and_leaves_the_store_as_it_was() {
    let s = Session::new();
    let bundle = common::cluster::bundle().0;
    // One store this unpack makes, and one that holds a release already.
    unpack_release(&s, &common::cluster::bundle_lacking(), "kept").success();
    let before = snapshot(&s.path("kept"));
    for store in ["made", "kept"] {
        // The signal is sent once blobs are being staged. An unpack that ends
        // before it lands (the bundle is 80 MiB) is tried again.
        let (status, stderr) = (0..5)
            .find_map(|_| {
                let child = unpack_until_staged(&s, store, 1);
                s.tool("kill", &["-INT", &child.id().to_string()]);
                let out = child.wait_with_output().unwrap();
                (!out.status.success()).then(|| {
                    (
                        out.status,
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .expect("five unpacks ended before Ctrl-C reached them");
        assert_eq!(status.code(), Some(130), "{store}: {status}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(
            errors,
            [if store == "made" {
                format!(
                    "error: unpack of {} interrupted: the store {store} it had made was removed",
                    bundle.display()
                )
            } else {
                format!(
                    "error: unpack of {} interrupted: nothing of it was added to {store}",
                    bundle.display()
                )
            }],
            "{stderr}"
        );
    }
    assert!(
        !s.path("made").exists(),
        "the store the unpack made is left"
    );
    assert_eq!(snapshot(&s.path("kept")), before, "the store was changed");
    let left = staging_left(&s.path("kept"));
    assert!(left.is_empty(), "staging left: {left:?}");
    // And the next unpack goes through.
    unpack_cluster(&s, "kept").success();
}

/// Regression: unpack opened its bundle twice, so one coming through a named pipe
/// (a bundle streamed off a device) lost its writer at the first close and hung at
/// the second open. It reads the pipe once, to the end.
#[test]
fn a_bundle_through_a_named_pipe_unpacks() {
    let s = Session::new();
    let (bundle, _) = common::cluster::bundle();
    s.tool("mkfifo", &[s.path("pipe.tar.zst").to_str().unwrap()]);
    let pipe = s.path("pipe.tar.zst");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(pipe).unwrap();
        f.write_all(&std::fs::read(bundle).unwrap()).unwrap();
    });
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(common::bin_path("ferry-installer"))
        .args(["unpack", "pipe.tar.zst", "--key"])
        .arg(common::cluster::bundle().1)
        .args(["--store", "piped", "--quiet"])
        .current_dir(s.dir.path())
        .spawn()
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "the unpack through a pipe failed or hung"
    );
    writer.join().unwrap();
    unpack_cluster(&s, "direct").success();
    assert_eq!(snapshot(&s.path("piped")), snapshot(&s.path("direct")));
}

/// Regression: gc during an unpack took blobs the unpack had found "already
/// there" (old, and reached by no image since a delete), and the unpack then named
/// an image whose blobs were gone. An unpack now holds gc off until its end: gc
/// refuses, naming the store, while one is frozen midway (SIGSTOP).
#[test]
fn gc_does_not_run_while_an_unpack_counts_on_the_store() {
    let s = Session::new();
    let lacking = common::cluster::bundle_lacking();
    let mut tries = 0;
    let mut child = loop {
        tries += 1;
        assert!(tries <= 5, "five unpacks ended before they could be frozen");
        let _ = std::fs::remove_dir_all(s.path("st"));
        unpack_release(&s, &lacking, "st").success();
        let mut child = unpack_until_staged(&s, "st", 1);
        s.tool("kill", &["-STOP", &child.id().to_string()]);
        if child.try_wait().unwrap().is_none() {
            break child;
        }
    };
    let before = common::store::stored_blobs(&s.path("st"));
    let run = s
        .installer(&["gc", "--store", "st", "--grace", "0s"])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: an unpack into st is under way: run gc once it is done"
    );
    assert_eq!(common::store::stored_blobs(&s.path("st")), before);
    s.tool("kill", &["-CONT", &child.id().to_string()]);
    assert!(child.wait().unwrap().success());
    // Once it is done, gc runs; both releases' blobs are reached and stay.
    let run = s
        .installer(&["gc", "--store", "st", "--grace", "0s"])
        .success();
    assert!(run.stderr.contains("removed 0 blob(s)"), "{}", run.stderr);
}

/// Regression: a store blob damaged since it was pulled (same size, one byte
/// changed) was signed into the bundle, which the site then refused. `build` checks
/// every blob against its digest as it packs, and refuses, naming it.
#[test]
fn a_store_blob_damaged_after_the_pull_is_refused_by_build_naming_it() {
    let reg = Registry::start();
    seed(&reg, 2, 300_000);
    let s = prepare(&reg, &[0, 1], "k8s");
    build(&s, "k8s", "a.tar.zst", &[]);
    let largest = std::fs::read_dir(s.path("store/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&largest, &bytes).unwrap();

    let run = build_with(&s, "k8s", "rel.key", "b.tar.zst", &[], &[]).failure();
    let hex = largest.file_name().unwrap().to_str().unwrap();
    let line = run.error_line();
    assert!(
        line.contains(&format!("store blob store/blobs/sha256/{hex} is damaged"))
            && line.contains("delete it and pull again"),
        "{line}"
    );
    // Nothing signed, nothing half-written.
    let left: Vec<String> = std::fs::read_dir(s.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.tar.zst") || n.starts_with(".b.tar.zst"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // As it says: without the blob, build fetches it again and gives the same bundle.
    std::fs::remove_file(&largest).unwrap();
    build(&s, "k8s", "b.tar.zst", &[]);
    assert_eq!(
        sha256_file(&s.path("a.tar.zst")),
        sha256_file(&s.path("b.tar.zst"))
    );
}

/// Regression: `serve --read-only` prepared its upload directory and `gc --dry-run`
/// opened its lock to write, so neither ran on a store on read-only media (an
/// ISO, a read-only mount): "Read-only file system".
#[test]
fn a_store_on_read_only_media_is_served_read_only_and_gc_dry_runs_on_it() {
    let s = Session::new();
    let media = Mounted::new(s.path("media"), "tmpfs", "size=256m");
    unpack_cluster(&s, "media/site").success();
    media.remount("ro");
    let srv = common::serve::Serve::start(
        &s,
        &["--store", "media/site", "--tls", "off", "--read-only"],
    );
    let url = format!(
        "http://{}/v2/registry.k8s.io/pause/manifests/3.10",
        srv.addr()
    );
    s.tool(
        "curl",
        &[
            "-sSf",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.list.v2+json",
            &url,
        ],
    );
    drop(srv);
    let dry = s
        .installer(&["gc", "--store", "media/site", "--dry-run"])
        .success();
    assert!(
        dry.stderr.contains("would remove 0 blob(s)"),
        "{}",
        dry.stderr
    );
    // Without --read-only, serve says what to do.
    let line = s
        .installer(&[
            "serve",
            "--store",
            "media/site",
            "--tls",
            "off",
            "--addr",
            "127.0.0.1:0",
        ])
        .failure()
        .error_line()
        .to_string();
    assert!(
        line.contains("serve a store on read-only media with --read-only"),
        "{line}"
    );
}

#[test]
fn a_build_onto_a_full_disk_names_the_output_and_says_the_disk_is_full() {
    let reg = Registry::start();
    seed(&reg, 9, 3 << 20);
    let s = prepare(&reg, &[0, 1, 2], "k8s");
    let _small = Mounted::new(s.path("small"), "tmpfs", "size=1m");
    let run = build_with(&s, "k8s", "rel.key", "small/k8s.tar.zst", &[], &[]).failure();
    let line = run.error_line();
    assert!(
        line.starts_with("error: cannot write the bundle small/k8s.tar.zst: the disk is full"),
        "{}",
        run.stderr
    );
    // The entry being written is named as such, not as the file that failed.
    assert!(!line.contains(": blobs/sha256/"), "{line}");
    let left: Vec<_> = std::fs::read_dir(s.path("small"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}\n{}", run.stderr);
}
