//! What a run learns about its endpoints, shared by every task of the run: which
//! could not be reached (skipped until a cool-down has passed), which did not
//! answer before the next one was started, which served far slower than another
//! (tried after it), how fast each has served, and how often each failed, by kind
//! ([`crate::tally`]). Every decision is said as it is made when the run is
//! verbose, and summed up in one note per endpoint (and kind of failure) at the end.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tally::{Asked, Problem, Say, Tally};

/// How long an endpoint that could not be connected to is left alone.
pub const COOL_DOWN: Duration = Duration::from_secs(60);

/// Whether something that happened at `since` still keeps its endpoint aside.
fn cooling(since: Instant) -> bool {
    since.elapsed() < COOL_DOWN
}

/// The endpoints of a run, by base URL.
#[derive(Default)]
pub(crate) struct Health {
    down: Mutex<HashMap<String, Down>>,
    /// Left mid-transfer for a faster endpoint: tried after the others until the
    /// cool-down has passed.
    slow: Mutex<HashMap<String, Slow>>,
    /// How many times each was passed over for not answering within the head start.
    overtaken: Mutex<HashMap<String, usize>>,
    /// Bytes per second, smoothed over the transfers long enough to tell.
    speeds: Mutex<HashMap<String, f64>>,
    /// Endpoints a transfer was moved to only to learn their speed: one at a time.
    exploring: Mutex<HashSet<String>>,
    probing: Mutex<HashSet<String>>,
    /// Failures by endpoint and kind: the first of each said, the rest counted.
    failures: Tally,
    verbose: bool,
}

struct Down {
    since: Instant,
    why: String,
    skipped: usize,
}

struct Slow {
    since: Instant,
    why: String,
    /// Known to be far slower than another (not only left to measure another).
    demote: bool,
    demoted: usize,
}

impl Health {
    pub(crate) fn new(verbose: bool) -> Health {
        Health {
            verbose,
            ..Health::default()
        }
    }

    /// Says a decision as it is made (`--verbose`).
    pub(crate) fn decide(&self, message: impl FnOnce() -> String) {
        if self.verbose {
            // Never a panic on a closed stderr.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "decision: {}", message());
        }
    }

    /// Counts a failure of `base`; whether to say it now.
    pub(crate) fn failed(&self, base: &str, problem: Problem, asked: Asked) -> Say {
        self.failures.count(base, problem, asked, self.verbose)
    }

    pub(crate) fn give_up(&self, base: &str, why: String) {
        self.decide(|| format!("{base}: left alone for {}s: {why}", COOL_DOWN.as_secs()));
        self.down.lock().unwrap().insert(
            base.to_string(),
            Down {
                since: Instant::now(),
                why,
                skipped: 0,
            },
        );
    }

    /// Whether `base` is being left alone; counts the request that skips it.
    pub(crate) fn skip(&self, base: &str) -> bool {
        let mut down = self.down.lock().unwrap();
        match down.get_mut(base) {
            Some(d) if cooling(d.since) => {
                d.skipped += 1;
                true
            }
            Some(_) => {
                down.remove(base);
                false
            }
            None => false,
        }
    }

    pub(crate) fn is_down(&self, base: &str) -> bool {
        self.down
            .lock()
            .unwrap()
            .get(base)
            .is_some_and(|d| cooling(d.since))
    }

    pub(crate) fn overtaken(&self, base: &str) {
        *self
            .overtaken
            .lock()
            .unwrap()
            .entry(base.to_string())
            .or_default() += 1;
    }

    /// Passed over for not answering, and its probe has not answered either.
    pub(crate) fn suspect(&self, base: &str) -> bool {
        self.probing.lock().unwrap().contains(base)
            && self.overtaken.lock().unwrap().contains_key(base)
    }

    pub(crate) fn start_probe(&self, base: &str) -> bool {
        !self.is_down(base) && self.probing.lock().unwrap().insert(base.to_string())
    }

    pub(crate) fn end_probe(&self, base: &str) {
        self.probing.lock().unwrap().remove(base);
    }

    pub(crate) fn record_speed(&self, base: &str, bytes_per_sec: f64) {
        let mut speeds = self.speeds.lock().unwrap();
        let s = speeds.entry(base.to_string()).or_insert(bytes_per_sec);
        *s = (*s + bytes_per_sec) / 2.0;
        drop(speeds);
        self.exploring.lock().unwrap().remove(base);
    }

    pub(crate) fn speed(&self, base: &str) -> Option<f64> {
        self.speeds.lock().unwrap().get(base).copied()
    }

    pub(crate) fn try_explore(&self, base: &str) -> bool {
        self.exploring.lock().unwrap().insert(base.to_string())
    }

    pub(crate) fn leave_slow(&self, base: &str, why: String, demote: bool) {
        let mut slow = self.slow.lock().unwrap();
        let old = slow.get(base);
        let demoted = old.map_or(0, |s| s.demoted);
        // A known comparison is the better account of why.
        if old.is_some_and(|s| s.demote && !demote) {
            return;
        }
        slow.insert(
            base.to_string(),
            Slow {
                since: Instant::now(),
                why,
                demote,
                demoted,
            },
        );
    }

    /// Whether `base` was left for slowness within the cool-down; counts the
    /// transfer that tries it later because of that.
    pub(crate) fn demote(&self, base: &str) -> bool {
        let mut slow = self.slow.lock().unwrap();
        match slow.get_mut(base) {
            Some(s) if s.demote && cooling(s.since) => {
                s.demoted += 1;
                true
            }
            _ => false,
        }
    }

    /// One line per endpoint skipped, passed over or left during the run, and why,
    /// and one per endpoint and kind of failure, with how many times.
    pub(crate) fn notes(&self) -> Vec<String> {
        let down = self.down.lock().unwrap();
        // An endpoint's failures to answer are told by its note of being skipped.
        let mut failures = self.failures.notes(|base| down.contains_key(base));
        let mut notes: Vec<String> = down
            .iter()
            .map(|(base, d)| {
                format!(
                    "note: {base} was skipped ({}); {} request(s) went to the next endpoint at once",
                    d.why, d.skipped
                )
            })
            .collect();
        for (base, n) in self.overtaken.lock().unwrap().iter() {
            if !down.contains_key(base) {
                notes.push(format!(
                    "note: {base} did not answer in time {n} time(s); the next endpoint answered instead"
                ));
            }
        }
        for (base, s) in self.slow.lock().unwrap().iter() {
            notes.push(format!(
                "note: {base} was left mid-transfer ({}); {} later transfer(s) tried it last",
                s.why, s.demoted
            ));
        }
        notes.append(&mut failures);
        notes.sort();
        notes
    }
}
