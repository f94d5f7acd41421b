//! Warnings of an endpoint's failures, one line per endpoint and kind of failure:
//! the first is said as it happens, with a word that the others are only counted
//! for the note at the end of the run; `--verbose` says each (see
//! [`ferry_client::Client::failed`]). An error that fails the run still names
//! each image and blob: it is made from every failure, said or not.

use std::fmt::Display;

use ferry_cli::Report;
use ferry_client::{Asked, Client, Endpoint, FetchError, Problem, Say};

/// An endpoint's failure, with the kind it is counted as.
pub(crate) trait EndpointFailure: Display {
    /// `None` for a failure that is not the endpoint's (the local disk): said
    /// every time.
    fn problem(&self) -> Option<Problem>;
}

impl EndpointFailure for FetchError {
    fn problem(&self) -> Option<Problem> {
        Some(FetchError::problem(self))
    }
}

/// Warns `line` of `endpoint`'s failure at something `asked` for, if this is the
/// first of its kind from `endpoint` (or the run is verbose); counts it either way.
pub(crate) fn warn(
    client: &Client,
    report: &Report,
    endpoint: &Endpoint,
    asked: Asked,
    failure: &dyn EndpointFailure,
    line: impl FnOnce() -> String,
) {
    let Some(problem) = failure.problem() else {
        report.warn(&line());
        return;
    };
    match client.failed(endpoint, problem, asked) {
        Say::First => report.warn(&format!(
            "{} (more like this from {} are counted at the end; --verbose shows each)",
            line(),
            endpoint.base_url
        )),
        Say::Each => report.warn(&line()),
        Say::Counted => {}
    }
}
