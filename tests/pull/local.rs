//! Failures of this machine rather than of an endpoint: a store disk that fills
//! up mid-pull stops the run with one line and blames no mirror; a rerun with room
//! resumes from the bytes the partial file holds.

use super::*;
use common::Mounted;
use ferry_testkit::FileServer;
use sha2::{Digest as _, Sha256};

pub(super) const FILE: &str = "/dl/tool";

/// Bytes that do not compress away.
pub(super) fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

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
    let run = s
        .bundler(&[
            "pull",
            "spec.toml",
            "--lock",
            "spec.lock",
            "--mirrors",
            "mirrors.toml",
            "--store",
            "small/store",
        ])
        .failure();
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
    s.bundler(&[
        "pull",
        "spec.toml",
        "--lock",
        "spec.lock",
        "--mirrors",
        "mirrors.toml",
        "--store",
        "small/store",
    ])
    .success();
    let last = files.requests().pop().unwrap();
    assert_eq!(last, format!("GET {FILE} range=bytes={kept}-"));
    let stored = std::fs::read(s.path(&format!("small/store/blobs/sha256/{sha}"))).unwrap();
    assert!(stored == bytes, "the resumed blob differs");
}
