//! Bundles the installer must refuse: every kind of crafted archive, and random
//! mutations of a good one; none may panic or touch the store.

use super::*;

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
        // A store the refused unpack would have made is not left behind (an
        // empty layout would be served as an empty registry).
        unpack(&s, bad, "fresh").refused();
        assert!(!s.path("fresh").exists(), "{bad}: an empty store was left");
    }
    // No signature at all: a plain tar.zst of a layout.
    std::fs::write(s.path("plain.tar.zst"), b"not zstd").unwrap();
    s.installer(&["verify", "plain.tar.zst", "--key", "rel.pub"])
        .refused();
    // The signature or the lock given for the bundle is named for what it is.
    for (file, expect) in [
        (
            "good.tar.zst.minisig",
            "it is a minisign signature: give the bundle it signs (.tar.zst)",
        ),
        ("k8s.lock", "it is text ("),
    ] {
        for cmd in ["verify", "inspect"] {
            let run = s.installer(&[cmd, file, "--key", "rel.pub"]).refused();
            assert!(
                run.error_line().contains(expect),
                "{cmd} {file}: {}",
                run.stderr
            );
        }
    }
    // A directory is a mistake on the command line, not a refused bundle (exit 1).
    let line = s
        .installer(&["verify", "site", "--key", "rel.pub"])
        .failure()
        .error_line()
        .to_string();
    assert!(line.contains("it is a directory, not a bundle"), "{line}");
    // And the good one still goes in.
    unpack(&s, "good.tar.zst", "site").success();
    assert_eq!(index_names(&s.path("site")).len(), 3);
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
