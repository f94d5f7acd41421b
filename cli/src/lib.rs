//! What the command lines of `ferry-bundler` and `ferry-installer` share, so both
//! look and behave alike: progress and report rendering on stderr ([`progress`]),
//! one error line and the exit codes ([`exit`]), Ctrl-C that lets work clean up
//! ([`interrupt`]), `inspect` ([`inspect`]),
//! completions and man pages ([`generate`]) and `--version` ([`VERSION`]).
//!
//! The `ferry` library draws nothing; it reports progress through
//! [`ferry::progress::Progress`], which [`progress::Report`] renders.

/// `eprintln!` that never panics: a closed stderr (`2>&1 | head -2`) must not stop
/// the work half-way with a panic; the lines are dropped and the work goes on.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics on a closed stdout (`inspect B | head -1`).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod exit;
pub mod generate;
pub mod inspect;
pub mod interrupt;
pub mod progress;

pub use exit::{main, Refused};
pub use progress::{human_bytes, Report};

/// `--version`: the package version and the git commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FERRY_GIT_COMMIT"),
    ")"
);
