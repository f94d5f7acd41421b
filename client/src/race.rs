//! Trying a list of endpoints as Happy Eyeballs (RFC 8305) tries addresses: the
//! first gets a short head start, and while it has not answered the next one is
//! started too; whichever answers well first wins and the rest are dropped. An
//! endpoint that fails lets the next one start at once. What "answers well" means
//! is the caller's: a manifest whose digest checks, or a blob's response head.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::{describe, Client, Endpoint};

/// The default of [`crate::ClientOptions::head_start`]: RFC 8305's recommended
/// connection attempt delay.
pub const HEAD_START: Duration = Duration::from_millis(250);

/// How a race between endpoints ended: the winner's index and value, if any, and
/// the errors of those that failed before it (or of all), by index.
pub struct Raced<T, E> {
    pub won: Option<(usize, T)>,
    pub errors: Vec<(usize, E)>,
}

impl Client {
    /// Runs `attempt` on `candidates` in order, each next one starting when those
    /// before it failed or have not finished within the head start. Returns the
    /// first success and the errors before it, by index. `endpoint_of` names the
    /// endpoint a candidate talks to.
    pub async fn first_ok<'c, C, T, E, Fut>(
        &self,
        candidates: &'c [C],
        endpoint_of: impl Fn(&C) -> &Endpoint,
        mut attempt: impl FnMut(&'c C) -> Fut,
    ) -> Raced<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut pending = FuturesUnordered::new();
        let mut errors = Vec::new();
        let mut next = 0;
        let mut deadline = tokio::time::Instant::now();
        loop {
            if pending.is_empty() || deadline <= tokio::time::Instant::now() {
                if next == candidates.len() && pending.is_empty() {
                    errors.sort_by_key(|(i, _)| *i);
                    return Raced { won: None, errors };
                }
                if next < candidates.len() {
                    let candidate = &candidates[next];
                    let run = attempt(candidate);
                    let i = next;
                    pending.push(async move { (i, run.await) });
                    next += 1;
                    // One passed over already, whose probe has not answered yet,
                    // gets no head start: it would most likely waste it again.
                    let base = &endpoint_of(candidate).base_url;
                    let head_start = if self.health.suspect(base) {
                        Duration::ZERO
                    } else {
                        self.head_start
                    };
                    deadline = tokio::time::Instant::now() + head_start;
                }
            }
            let more = next < candidates.len();
            tokio::select! {
                Some((i, result)) = pending.next() => match result {
                    Ok(value) => {
                        for (j, candidate) in candidates[..next].iter().enumerate() {
                            let passed = endpoint_of(candidate);
                            if j < i && !errors.iter().any(|(k, _)| *k == j) && !self.health.is_down(&passed.base_url) {
                                self.health.overtaken(&passed.base_url);
                            }
                        }
                        errors.sort_by_key(|(i, _)| *i);
                        return Raced { won: Some((i, value)), errors };
                    }
                    Err(e) => {
                        errors.push((i, e));
                        // The next one starts now, not after the head start.
                        deadline = tokio::time::Instant::now();
                    }
                },
                _ = tokio::time::sleep_until(deadline), if more => {
                    let slow = endpoint_of(&candidates[next - 1]);
                    self.health.decide(|| format!(
                        "{}: no answer within {} ms; starting {} too",
                        slow.base_url,
                        self.head_start.as_millis(),
                        endpoint_of(&candidates[next]).base_url
                    ));
                    self.probe(slow);
                }
            }
        }
    }

    /// Finds out in the background whether `endpoint` answers at all, so that one
    /// dropping packets is skipped by the whole run after one connect timeout,
    /// even though the requests that waited on it were dropped when another
    /// endpoint answered first. Any HTTP answer counts as alive.
    pub(crate) fn probe(&self, endpoint: &Endpoint) {
        let base = endpoint.base_url.clone();
        if !self.health.start_probe(&base) {
            return;
        }
        let http = self.http_for(endpoint);
        let health = self.health.clone();
        tokio::spawn(async move {
            match http.head(format!("{base}/")).send().await {
                Err(e) if e.is_connect() || e.is_timeout() => health.give_up(&base, describe(&e)),
                _ => {}
            }
            health.end_probe(&base);
        });
    }
}
