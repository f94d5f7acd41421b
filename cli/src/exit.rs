//! How a command ends, the same way in both binaries: one `error:` line naming what
//! went wrong and why (each cause once), and an exit code a script can act on.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Exit code of a command that failed (the message says which file, image or node).
pub const FAILURE: u8 = 1;
/// Exit code of a bad command line (clap's own).
pub const USAGE: u8 = 2;
/// Exit code of a bundle that was refused: unsigned, wrongly signed, truncated,
/// altered or unsafe.
pub const REFUSED: u8 = 3;

/// A bundle refused for what it holds (not for an I/O error around it): the
/// command exits with [`REFUSED`].
#[derive(Debug, thiserror::Error)]
#[error("bundle {} refused: {reason}", bundle.display())]
pub struct Refused {
    pub bundle: PathBuf,
    pub reason: ferry::archive::ArchiveError,
}

impl Refused {
    /// Wraps `e` as a refusal of `bundle` when it is one; an I/O or store error
    /// stays an ordinary failure (exit 1), with the bundle named.
    pub fn classify(bundle: &std::path::Path, e: ferry::archive::ArchiveError) -> anyhow::Error {
        use ferry::archive::ArchiveError;
        match e {
            ArchiveError::Io { .. } | ArchiveError::Store(_) | ArchiveError::NoSpace { .. } => {
                anyhow::Error::new(e).context(format!("bundle {}", bundle.display()))
            }
            reason => anyhow::Error::new(Refused {
                bundle: bundle.to_path_buf(),
                reason,
            }),
        }
    }
}

/// A command line the parser took but the command cannot (a flag's value it checks
/// itself, a flag another needs): the command exits with [`USAGE`], as for clap's
/// own refusals.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// An error that makes the command exit with [`USAGE`].
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The error line's text: every cause in the chain once, joined by `: `. A cause
/// whose text its parent already shows (a library error that prints its source)
/// is not repeated.
pub fn render(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Work stopped by Ctrl-C, after it removed what it had made: the command exits
/// with [`crate::interrupt::INTERRUPTED`]. The text says what was left as it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// The exit code for an error: [`crate::interrupt::INTERRUPTED`] for work stopped
/// by Ctrl-C, [`REFUSED`] for a refused bundle, [`USAGE`] for a bad command line,
/// else [`FAILURE`].
pub fn code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Interrupted>()) {
        crate::interrupt::INTERRUPTED
    } else if e.chain().any(|c| c.is::<Refused>()) {
        REFUSED
    } else if e.chain().any(|c| c.is::<Usage>()) {
        USAGE
    } else {
        FAILURE
    }
}

/// A binary's `main`: parses the command line, runs it, prints the error line.
pub fn main<C: Parser>(run: impl FnOnce(C) -> anyhow::Result<()>) -> ExitCode {
    match run(C::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::say!("error: {}", render(&e));
            ExitCode::from(code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.lock: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_its_parent_already_shows_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(Repeats(io)).context("lock");
        assert_eq!(render(&e), "lock: cannot read x.lock: No such file");
        assert_eq!(code(&e), FAILURE);
    }

    #[test]
    fn a_refused_bundle_exits_3_and_an_io_error_around_it_1() {
        let refused = Refused::classify(
            std::path::Path::new("b.tar.zst"),
            ferry::archive::ArchiveError::NotABundle("empty".into()),
        );
        assert_eq!(code(&refused), REFUSED);
        assert_eq!(
            render(&refused),
            "bundle b.tar.zst refused: not a ferry bundle: empty"
        );
        let io = Refused::classify(
            std::path::Path::new("b.tar.zst"),
            ferry::archive::ArchiveError::Io {
                path: "b.tar.zst".into(),
                error: std::io::Error::other("disk on fire"),
            },
        );
        assert_eq!(code(&io), FAILURE);
    }
}
