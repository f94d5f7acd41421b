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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn client(head_start: Duration) -> Client {
        Client::new(crate::ClientOptions {
            ca_certs: Vec::new(),
            credentials: crate::auth::Credentials::default(),
            connect_timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(1),
            head_start,
            verbose: false,
            user_agent: "test".into(),
        })
        .unwrap()
    }

    /// Endpoints on a loopback port nothing listens on (for the probes).
    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                base_url: format!("http://127.0.0.1:{}", 1 + i),
                repository: "r".into(),
                upstream: false,
                connect_timeout: None,
            })
            .collect()
    }

    /// What each candidate does when started: answer, fail, or never finish.
    #[derive(Clone, Copy)]
    enum Act {
        Answer,
        Fail,
        Hang,
    }

    async fn race(head_start: Duration, acts: &[Act]) -> (Raced<usize, String>, Vec<usize>) {
        let client = client(head_start);
        let endpoints = endpoints(acts.len());
        let started = Mutex::new(Vec::new());
        let raced = client
            .first_ok(
                &endpoints,
                |e| e,
                |e| {
                    let i = endpoints.iter().position(|x| x == e).unwrap();
                    started.lock().unwrap().push(i);
                    let act = acts[i];
                    async move {
                        match act {
                            Act::Answer => Ok(i),
                            Act::Fail => Err(format!("{i} failed")),
                            Act::Hang => std::future::pending().await,
                        }
                    }
                },
            )
            .await;
        (raced, started.into_inner().unwrap())
    }

    #[tokio::test]
    async fn an_endpoint_that_answers_in_its_head_start_is_the_only_one_asked() {
        let (raced, started) = race(Duration::from_secs(30), &[Act::Answer, Act::Answer]).await;
        assert_eq!(raced.won, Some((0, 0)));
        assert_eq!(started, [0]);
    }

    #[tokio::test]
    async fn while_one_hangs_the_next_is_started_and_wins() {
        let (raced, started) = race(
            Duration::from_millis(20),
            &[Act::Hang, Act::Hang, Act::Answer, Act::Answer],
        )
        .await;
        assert_eq!(raced.won.map(|(i, _)| i), Some(2));
        assert_eq!(started, [0, 1, 2]);
        assert!(raced.errors.is_empty());
    }

    #[tokio::test]
    async fn a_failure_starts_the_next_at_once_and_every_error_is_kept_in_order() {
        // A head start of a minute would time the test out if it were waited for.
        let t = std::time::Instant::now();
        let (raced, started) = race(Duration::from_secs(60), &[Act::Fail, Act::Answer]).await;
        assert!(t.elapsed() < Duration::from_secs(30));
        assert_eq!(raced.won.map(|(i, _)| i), Some(1));
        assert_eq!(started, [0, 1]);
        assert_eq!(raced.errors, [(0, "0 failed".to_string())]);

        let (raced, _) = race(Duration::from_secs(60), &[Act::Fail, Act::Fail, Act::Fail]).await;
        assert!(raced.won.is_none());
        let order: Vec<usize> = raced.errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 1, 2]);
    }

    #[tokio::test]
    async fn the_endpoint_passed_over_is_probed_and_given_up_on_when_it_does_not_connect() {
        let client = client(Duration::from_millis(10));
        let endpoints = endpoints(2);
        let raced = client
            .first_ok(
                &endpoints,
                |e| e,
                |e| {
                    let first = e == &endpoints[0];
                    async move {
                        if first {
                            std::future::pending::<Result<(), ()>>().await
                        } else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok(())
                        }
                    }
                },
            )
            .await;
        assert_eq!(raced.won.map(|(i, _)| i), Some(1));
        // Port 1 refuses: the probe marks it down soon after.
        for _ in 0..100 {
            if client.is_down(&endpoints[0]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(client.is_down(&endpoints[0]));
        assert!(!client.is_down(&endpoints[1]));
        let notes = client.endpoint_notes();
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("note: http://127.0.0.1:1 was skipped")),
            "{notes:?}"
        );
    }
}
