//! Failures of this machine rather than of an endpoint: a store disk that fills
//! up mid-pull stops the run with one line and blames no mirror; a rerun with room
//! resumes from the bytes the partial file holds.

use super::*;
use common::Mounted;
use ferry_testkit::FileServer;
use sha2::{Digest as _, Sha256};

pub(super) const FILE: &str = "/dl/tool";

pub(super) use common::noise;

/// A spec of one platform-independent file `dl.example.test/dl/tool`, pinned to
/// `bytes`, served by `urls` in turn (and nothing else).
pub(super) fn file_session(bytes: &[u8], urls: &[String]) -> Session {
    let s = Session::new();
    let sha = hex::encode(Sha256::digest(bytes));
    s.write(
        "spec.toml",
        &format!(
            "name = \"t\"\nversion = \"1.0.0\"\nplatforms = [\"linux/amd64\"]\n\n[[files]]\nname = \"tool\"\nversion = \"1.0.0\"\nurl = \"https://dl.example.test{FILE}\"\nplatforms = []\nsha256 = \"{sha}\"\n"
        ),
    );
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    s.write(
        "mirrors.toml",
        &format!(
            "[[files]]\nhost = \"dl.example.test\"\nmirrors = [{}]\nskip_upstream = true\n",
            quoted.join(", ")
        ),
    );
    s
}

#[test]
fn a_full_store_disk_stops_the_pull_in_one_line_blames_no_mirror_and_a_rerun_resumes_on_disk() {
    let files = FileServer::start();
    let bytes = noise(1, 12 << 20);
    files.put(FILE, bytes.clone());
    // The same server twice, as two mirrors: neither is to blame for the disk.
    let second = files.url().replace("127.0.0.1", "localhost");
    let s = file_session(&bytes, &[files.url(), second]);
    s.bundler(&LOCK).success();
    let before = files.count(FILE);
    let small = Mounted::new(s.path("small"), "tmpfs", "size=4m");
    let run = pull_locked(&s, "mirrors.toml", "small/store").failure();
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("the disk holding the store small/store is full")
            && errors[0].contains("still to fetch"),
        "{}",
        run.stderr
    );
    // No warning, no note blaming an endpoint, and no other endpoint asked.
    assert!(
        !run.stderr.contains("warning:") && !run.stderr.contains("note:"),
        "{}",
        run.stderr
    );
    assert_eq!(files.count(FILE) - before, 1, "{:?}", files.requests());
    // With room, the rerun asks from exactly what the partial file holds.
    let sha = hex::encode(Sha256::digest(&bytes));
    let partial = s.path(&format!("small/store/.ferry/partial/{sha}"));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0, "nothing kept to resume from");
    small.grow("64m");
    pull_locked(&s, "mirrors.toml", "small/store").success();
    let last = files.requests().pop().unwrap();
    assert_eq!(last, format!("GET {FILE} range=bytes={kept}-"));
    let stored = std::fs::read(s.path(&format!("small/store/blobs/sha256/{sha}"))).unwrap();
    assert!(stored == bytes, "the resumed blob differs");
}

/// `ferry-bundler ARGS` started in the session, its stderr kept for [`stopped`].
fn start(s: &Session, args: &[&str]) -> std::process::Child {
    std::process::Command::new(common::bin_path("ferry-bundler"))
        .args(args)
        .current_dir(s.path(""))
        .env("DOCKER_CONFIG", s.path(".docker"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `ready`, then sends `signal` to `child` and
/// returns its exit code and stderr.
fn stopped(
    mut child: std::process::Child,
    signal: &str,
    ready: impl Fn() -> bool,
) -> (Option<i32>, String) {
    let t = std::time::Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "it ended first");
        assert!(t.elapsed().as_secs() < 60, "never got there");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ok = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctrl_c_during_a_pull_keeps_what_was_fetched_says_so_and_exits_130_and_a_rerun_resumes() {
    let files = FileServer::start();
    let bytes = noise(5, 8 << 20);
    files.put(FILE, bytes.clone());
    let s = file_session(&bytes, &[files.url()]);
    s.bundler(&LOCK).success();
    // It serves 3 MiB, then nothing: the pull is mid-file when Ctrl-C comes.
    files.fault(FILE, ferry_testkit::Fault::StallAfter(3 << 20));
    let sha = hex::encode(Sha256::digest(&bytes));
    let partial = s.path(&format!("store/.ferry/partial/{sha}"));
    let child = start(&s, &LOCKED_PULL);
    let on_disk = || std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 1 << 20);
    let (code, stderr) = stopped(child, "-INT", on_disk);
    assert_eq!(code, Some(130), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: pull interrupted: what was downloaded is kept in store/.ferry/partial, and a rerun resumes from it"),
        "{stderr}"
    );
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert_eq!(kept, 3 << 20, "what arrived is on disk");
    files.heal(FILE);
    s.bundler(&LOCKED_PULL).success();
    let last = files.requests().pop().unwrap();
    assert_eq!(last, format!("GET {FILE} range=bytes={kept}-"));
}

#[test]
fn sigterm_during_a_build_removes_the_unfinished_bundle_says_so_and_exits_130() {
    let files = FileServer::start();
    // Gzip's magic first: packed as raw blocks, read 128 KiB at a time.
    let mut bytes = vec![0x1f, 0x8b];
    bytes.extend(noise(6, 96 << 20));
    files.put(FILE, bytes.clone());
    let s = file_session(&bytes, &[files.url()]);
    s.bundler(&LOCK).success();
    s.bundler(&LOCKED_PULL).success();
    s.bundler(&["keygen", "--name", "k", "--no-password"])
        .success();
    let child = start(
        &s,
        &common::build_args("spec.toml", "spec.lock", "out.tar.zst"),
    );
    let tmp = s.path(&format!("out.tar.zst.tmp-{}", child.id()));
    let (code, stderr) = stopped(child, "-TERM", || {
        std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(code, Some(130), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "error: build interrupted: the unfinished bundle was removed, and out.tar.zst was not written",
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(s.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("out.tar.zst"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
