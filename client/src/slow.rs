//! When to leave an endpoint mid-transfer: it serves far slower than another has
//! this run (or another has not been measured yet), and what is left would take
//! long enough here to be worth asking elsewhere for the rest with `Range`.

use std::time::Duration;

use crate::{Client, Endpoint};

/// A transfer is judged for speed only after it has run this long.
pub const SLOW_WINDOW: Duration = Duration::from_secs(2);
/// Another endpoint must have served this many times faster to be moved to.
pub const SLOW_FACTOR: f64 = 4.0;
/// A move is worth it only when the rest would take longer than this here.
pub const WORTH_MOVING: Duration = Duration::from_secs(4);

impl Client {
    /// Where a transfer from `current` should go on: the index in `others` of an
    /// endpoint far faster this run, or of one not measured yet (one transfer at a
    /// time goes to learn its speed). `here` bytes came in `took`; `left` are to
    /// come. Keeps `current`'s speed, notes the move and says it; `what` names
    /// the transfer for that (`blob sha256:…`).
    pub fn faster(
        &self,
        current: &Endpoint,
        others: &[&Endpoint],
        here: u64,
        took: Duration,
        left: u64,
        what: &str,
    ) -> Option<usize> {
        if took < SLOW_WINDOW {
            return None;
        }
        let speed = here as f64 / took.as_secs_f64();
        self.record_speed(current, here, took);
        if (left as f64) < speed * WORTH_MOVING.as_secs_f64() {
            return None;
        }
        let (j, other, theirs) = others
            .iter()
            .enumerate()
            .map(|(j, e)| (j, *e, self.speed(e)))
            .filter(|(_, e, _)| e.base_url != current.base_url && !self.is_down(e))
            .find(|(_, e, theirs)| match theirs {
                Some(s) => *s >= speed * SLOW_FACTOR,
                None => self.try_explore(e),
            })?;
        let per_sec = |s: f64| format!("{:.1} MiB/s", s / f64::from(1 << 20));
        let why = match theirs {
            Some(s) => format!(
                "{} against {} from {}",
                per_sec(speed),
                per_sec(s),
                other.base_url
            ),
            None => format!("{}; {} not measured yet", per_sec(speed), other.base_url),
        };
        self.leave_slow(current, why.clone(), theirs.is_some());
        self.decide(|| {
            format!(
                "{}: moving {what} to {} with {left} bytes left ({why})",
                current.base_url, other.base_url
            )
        });
        Some(j)
    }
}
