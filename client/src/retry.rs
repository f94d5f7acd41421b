//! How a failed request is tried again: bounded attempts, jittered exponential
//! backoff, and the server's own `Retry-After` when it sends one.

use std::time::{Duration, SystemTime};

/// How many times one request is tried before its endpoint is given up on.
pub const ATTEMPTS: u32 = 4;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How something that failed is tried again: at most `attempts` tries, each pause
/// an exponential backoff from `base` (doubling per try, at most `cap`) randomised
/// by `jitter`, so that many downloads failing together do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: Jitter,
}

/// How a backoff `d` is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere in `[0, d]`.
    Full,
    /// Anywhere in `[d/2, d]`: never much shorter than the backoff.
    Equal,
}

impl RetryPolicy {
    /// A request answered 429 or 5xx, or failed in transport: pauses of about 200,
    /// 400 and 800 ms, never less than half that; a `Retry-After` overrides them.
    pub const REQUEST: RetryPolicy = RetryPolicy {
        attempts: ATTEMPTS,
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
        jitter: Jitter::Equal,
    };
    /// A blob body cut short: resumed after up to 200, 400 and 800 ms.
    pub const RESUME: RetryPolicy = RetryPolicy {
        attempts: ATTEMPTS,
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
        jitter: Jitter::Full,
    };

    /// The backoff after failed try `attempt` (1 for the first), before jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The pause after failed try `attempt`, drawn from `rng`.
    pub fn delay_with(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let most = u64::try_from(self.backoff(attempt).as_nanos()).unwrap_or(u64::MAX);
        let least = match self.jitter {
            Jitter::Full => 0,
            Jitter::Equal => most / 2,
        };
        Duration::from_nanos(rng.u64(least..=most))
    }

    /// The pause after failed try `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut fastrand::Rng::new())
    }

    /// The pause after failed try `attempt`: what the server asked for with
    /// `Retry-After` (at most [`MAX_RETRY_AFTER`]), else the jittered backoff.
    pub fn pause(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or_else(|| self.delay(attempt), |d| d.min(MAX_RETRY_AFTER))
    }
}

/// A `Retry-After` value (RFC 9110, section 10.2.3), delay-seconds or an HTTP date,
/// as the wait from `now`; a date already past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_inside_it() {
        let policy = RetryPolicy {
            attempts: 40,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            jitter: Jitter::Full,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=40 {
            let most = Duration::from_millis(100 << (attempt - 1).min(5)).min(policy.cap);
            assert_eq!(policy.backoff(attempt), most);
            for jitter in [Jitter::Full, Jitter::Equal] {
                let p = RetryPolicy { jitter, ..policy };
                let least = if jitter == Jitter::Full {
                    Duration::ZERO
                } else {
                    most / 2
                };
                for _ in 0..200 {
                    let d = p.delay_with(attempt, &mut rng);
                    assert!(least <= d && d <= most, "{jitter:?} try {attempt}: {d:?}");
                }
            }
        }
        // Jitter spreads: not every pause is the same.
        let pauses: std::collections::HashSet<Duration> = (0..50)
            .map(|_| RetryPolicy::REQUEST.delay_with(3, &mut rng))
            .collect();
        assert!(pauses.len() > 40);
        // The policies in use keep their totals small: the last pause is under a second.
        for p in [RetryPolicy::REQUEST, RetryPolicy::RESUME] {
            assert!(p.backoff(p.attempts - 1) <= Duration::from_millis(800));
            assert!(p.delay(u32::MAX) <= p.cap);
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = |offset: i64| {
            httpdate::fmt_http_date(if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs(offset.unsigned_abs())
            })
        };
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // RFC 9110's own example of an IMF-fixdate.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&date(-60), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&date(12), now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);

        let p = RetryPolicy::REQUEST;
        // A date in the past: try again at once.
        assert_eq!(
            p.pause(1, parse_retry_after(&date(-60), now)),
            Duration::ZERO
        );
        // In the future: honoured, up to MAX_RETRY_AFTER.
        assert_eq!(
            p.pause(1, parse_retry_after(&date(12), now)),
            Duration::from_secs(12)
        );
        assert_eq!(
            p.pause(1, parse_retry_after(&date(3600), now)),
            MAX_RETRY_AFTER
        );
        assert_eq!(p.pause(1, parse_retry_after("86400", now)), MAX_RETRY_AFTER);
        // Without one, the backoff.
        assert!(p.pause(2, None) <= Duration::from_millis(400));
        assert!(p.pause(2, None) >= Duration::from_millis(200));
    }
}
