//! Ctrl-C as a request to stop, for work that must clean up after itself. A
//! signal handler (the binaries install one, see `ferry_cli::interrupt`) sets
//! one flag; a reader wrapped in [`Interruptible`] fails at its next read, and
//! the error unwinds through the code that removes what the work made, where a
//! kill would leave it behind.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static FLAG: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// The process's flag, for a signal handler to set.
pub fn flag() -> Arc<AtomicBool> {
    FLAG.clone()
}

/// Whether the process was asked to stop.
pub fn requested() -> bool {
    FLAG.load(Ordering::Relaxed)
}

/// The error an [`Interruptible`] reader fails with once its flag is set.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// A reader that fails with [`Interrupted`] at the first read after its flag is
/// set. A read already under way (a pipe waiting for data) is let finish.
pub struct Interruptible<R> {
    inner: R,
    flag: Arc<AtomicBool>,
}

impl<R> Interruptible<R> {
    /// `inner`, stopped by `flag` (the process's is [`flag()`]).
    pub fn new(inner: R, flag: Arc<AtomicBool>) -> Interruptible<R> {
        Interruptible { inner, flag }
    }
}

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.flag.load(Ordering::Relaxed) {
            // Not `ErrorKind::Interrupted`: `read_exact` and `io::copy` retry that.
            return Err(io::Error::other(Interrupted));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_until_the_flag_is_set_then_fails_every_time() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut r = Interruptible::new(&b"abcdef"[..], flag.clone());
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ab");
        flag.store(true, Ordering::Relaxed);
        for _ in 0..2 {
            let e = r.read(&mut buf).unwrap_err();
            assert!(e.get_ref().is_some_and(|e| e.is::<Interrupted>()), "{e}");
        }
        // `read_to_end` does not retry it as it would an EINTR.
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }
}
