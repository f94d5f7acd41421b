//! Files from a misbehaving file server: a redirect whose target fails names the
//! target and leaves the mirror usable; a short but complete answer is another
//! file, not a dropped connection.

use super::local::{file_session, noise, FILE};
use super::*;
use ferry_testkit::{Fault, FileServer};
use sha2::{Digest as _, Sha256};

#[test]
fn a_redirect_whose_target_fails_names_the_target_and_leaves_the_mirror_usable() {
    let files = FileServer::start();
    let bytes = noise(3, 100_000);
    files.put(FILE, bytes.clone());
    // Nothing listens there: the connection is refused.
    let target = "http://127.0.0.2:9/x";
    files.fault(FILE, Fault::Redirect(target.into()));
    let s = file_session(&bytes, &[files.url()]);
    let run = s.bundler(&LOCK).failure();
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "{}{FILE}: redirected to {target}: cannot connect",
            files.url()
        )),
        "{}",
        run.stderr
    );
    // The mirror answered: it is not the one skipped for being unreachable.
    assert!(!run.stderr.contains("was skipped"), "{}", run.stderr);
}

#[test]
fn a_short_but_complete_answer_is_another_file_not_a_dropped_connection() {
    let (bad, good) = (FileServer::start(), FileServer::start());
    let bytes = noise(4, 3_000_000);
    bad.put(FILE, bytes.clone());
    good.put(FILE, bytes.clone());
    let s = file_session(&bytes, &[bad.url(), good.url()]);
    s.bundler(&LOCK).success();
    // 200 with a Content-Length of 12000, and 12000 bytes.
    let short = noise(9, 12_000);
    bad.fault(FILE, Fault::Serve(short.clone()));
    let run = s.bundler(&LOCKED_PULL).success();
    let said = format!(
        "{}{FILE} failed: served sha256:{}, not the pinned sha256:{}",
        bad.url(),
        hex::encode(Sha256::digest(&short)),
        hex::encode(Sha256::digest(&bytes))
    );
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
    // Asked once, not again and again; the next endpoint served it whole.
    let asked = bad.requests().len();
    assert_eq!(asked, 2, "once by lock, once by pull: {:?}", bad.requests());
    let sha = hex::encode(Sha256::digest(&bytes));
    assert!(std::fs::read(s.path(&format!("store/blobs/sha256/{sha}"))).unwrap() == bytes);
}

/// A files-only spec was summed up as `pulled 1 image(s)`, a failed file as
/// `cannot pull image files/…: blob …`, the lock as `(0 image(s))`; a store blob
/// cut short counted as present and never fetched again.
#[test]
fn files_are_named_and_counted_as_files_and_a_blob_cut_short_is_fetched_again() {
    let files = FileServer::start();
    let bytes = noise(7, 300_000);
    files.put(FILE, bytes.clone());
    let s = file_session(&bytes, &[files.url()]);
    let run = s.bundler(&LOCK).success();
    assert!(
        run.stderr
            .contains("wrote spec.lock (0 image(s), 1 file(s), 0 chart(s))"),
        "{}",
        run.stderr
    );
    let sha = hex::encode(Sha256::digest(&bytes));
    files.fault(FILE, Fault::Serve(noise(8, 300_000)));
    let run = s.bundler(&LOCKED_PULL).failure();
    assert!(
        run.error_line().starts_with(&format!(
            "error: cannot pull file files/tool:1.0.0 (sha256:{sha}): "
        )),
        "{}",
        run.stderr
    );
    files.heal(FILE);
    let run = s.bundler(&LOCKED_PULL).success();
    assert!(
        run.stderr
            .contains("pulled 0 image(s), 1 file(s), 0 chart(s) into store: 1 blob(s)"),
        "{}",
        run.stderr
    );
    // Cut short, it is fetched again (and replaced), not counted as present.
    let blob = s.path(&format!("store/blobs/sha256/{sha}"));
    std::fs::write(&blob, &bytes[..100]).unwrap();
    let run = s.bundler(&LOCKED_PULL).success();
    assert!(
        run.stderr.contains("1 blob(s), 293.0 KiB fetched"),
        "{}",
        run.stderr
    );
    assert!(std::fs::read(&blob).unwrap() == bytes);
}
