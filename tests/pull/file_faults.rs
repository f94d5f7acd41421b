//! Files from a misbehaving file server: a redirect whose target fails names the
//! target and leaves the mirror usable; a short but complete answer is another
//! file, not a dropped connection.

use super::local::{file_session, noise, FILE};
use super::*;
use ferry_testkit::{Fault, FileServer};

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
