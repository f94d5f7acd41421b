//! Failures of endpoints, counted by kind. A stale mirror fails the same way for
//! every blob it lacks; said once per blob, that buries the run's other lines under
//! hundreds of near-identical ones. So the first failure of each kind from an
//! endpoint is said as it happens (the user learns at once that the mirror is bad),
//! the others are only counted (each is said with `--verbose`), and the end of the
//! run sums each kind up in one note: `http://m lacked 37 blobs (HTTP 404)`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What kind of failure an endpoint had. Failures of one kind tell one story (a
/// mirror synced half-way lacks many blobs for one reason), so they are counted
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    /// Could not be connected to, timed out or stalled (then left alone a while).
    Unavailable,
    /// Answered 404: it does not have it.
    NotFound,
    /// Served bytes other than those asked for: stale or altered.
    WrongBytes,
    /// Wanted credentials it was not given, or refused those it was.
    Refused,
    /// Answered with another error status.
    Status(u16),
    /// A transfer broke off, or its answer could not be used.
    Broken,
}

/// What was asked for, to count failures by: `lacked 3 manifests and 37 blobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asked {
    /// An image's tag, resolved to a digest (`lock`), or checked (`--cross-check`).
    Image,
    Manifest,
    Blob,
    /// A file or a chart's `index.yaml` or .tgz, by URL.
    File,
}

impl Asked {
    fn counted(self, n: usize) -> String {
        let noun = match self {
            Asked::Image => "image",
            Asked::Manifest => "manifest",
            Asked::Blob => "blob",
            Asked::File => "file",
        };
        format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
    }
}

/// Whether a failure is said as it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    /// The first of its kind from its endpoint: said, with a word that the rest
    /// are only counted.
    First,
    /// Any, in a verbose run: said as it is (each is).
    Each,
    /// Another: only counted, for the note at the end.
    Counted,
}

/// How many times each endpoint (by base URL) failed, by kind and by what was asked.
#[derive(Default)]
pub(crate) struct Tally {
    counts: Mutex<BTreeMap<(String, Problem), BTreeMap<Asked, usize>>>,
}

impl Tally {
    /// Counts one failure; whether to say it now.
    pub(crate) fn count(&self, base: &str, problem: Problem, asked: Asked, verbose: bool) -> Say {
        let mut counts = self.counts.lock().unwrap();
        let by_asked = counts.entry((base.to_string(), problem)).or_default();
        let first = by_asked.is_empty();
        *by_asked.entry(asked).or_default() += 1;
        match (verbose, first) {
            (true, _) => Say::Each,
            (false, true) => Say::First,
            (false, false) => Say::Counted,
        }
    }

    /// One note per endpoint and kind of failure, with the count of each thing
    /// asked for; none for an endpoint's unavailability that `covered` says
    /// another note accounts for already.
    pub(crate) fn notes(&self, covered: impl Fn(&str) -> bool) -> Vec<String> {
        let counts = self.counts.lock().unwrap();
        counts
            .iter()
            .filter(|((base, problem), _)| !(*problem == Problem::Unavailable && covered(base)))
            .map(|((base, problem), by_asked)| {
                let items: Vec<String> = by_asked.iter().map(|(a, n)| a.counted(*n)).collect();
                let items = items.join(" and ");
                let what = match problem {
                    Problem::Unavailable => format!("did not answer for {items}"),
                    Problem::NotFound => format!("lacked {items} (HTTP 404)"),
                    Problem::WrongBytes => {
                        format!(
                            "served other bytes than those asked for {items} (stale or altered)"
                        )
                    }
                    Problem::Refused => format!("refused access to {items}"),
                    Problem::Status(status) => format!("answered HTTP {status} for {items}"),
                    Problem::Broken => format!("broke off or served unusable answers for {items}"),
                };
                format!("note: {base} {what}; each was asked of the next endpoint, if any")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_kind_is_said_and_the_rest_counted() {
        let tally = Tally::default();
        let count = |base, problem, asked| tally.count(base, problem, asked, false);
        assert_eq!(
            count("http://m", Problem::NotFound, Asked::Manifest),
            Say::First
        );
        assert_eq!(
            count("http://m", Problem::NotFound, Asked::Blob),
            Say::Counted
        );
        assert_eq!(
            count("http://m", Problem::NotFound, Asked::Blob),
            Say::Counted
        );
        assert_eq!(
            count("http://m", Problem::WrongBytes, Asked::Blob),
            Say::First
        );
        assert_eq!(
            count("http://n", Problem::NotFound, Asked::Blob),
            Say::First
        );
        assert_eq!(
            tally.count("http://n", Problem::NotFound, Asked::Blob, true),
            Say::Each
        );
        assert_eq!(
            count("http://n", Problem::Unavailable, Asked::Blob),
            Say::First
        );
        let mut notes = tally.notes(|base| base == "http://n");
        notes.sort();
        assert_eq!(
            notes,
            [
                "note: http://m lacked 1 manifest and 2 blobs (HTTP 404); each was asked of the next endpoint, if any",
                "note: http://m served other bytes than those asked for 1 blob (stale or altered); each was asked of the next endpoint, if any",
                "note: http://n lacked 2 blobs (HTTP 404); each was asked of the next endpoint, if any",
            ]
        );
    }
}
