//! A registry client for the pull side of the distribution API: manifests and blobs
//! by endpoint, with anonymous, Basic and Bearer-token auth, bounded retries with
//! jittered backoff (honouring `Retry-After`, in seconds or as an HTTP date), custom
//! CAs and redirects for blobs.
//!
//! It is ours rather than `oci-client`'s because a pull needs what that crate does not
//! expose together: the repository path rewritten per mirror, `Range` resumption of a
//! partial blob, the raw manifest bytes and their `Content-Type`, and a clear account
//! of why each endpoint failed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::mirrors::Endpoint;
use bytes::Bytes;
use ferry::manifest::MAX_MANIFEST_BYTES;
use ferry::media::MANIFEST_ACCEPT;
use ferry::Digest;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};

use crate::auth::{Challenge, Credentials};
use ferry_cli::Report;

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

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what} not found (HTTP 404)")]
    NotFound { what: String },
    #[error("HTTP {status}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        status: StatusCode,
        code: Option<String>,
    },
    #[error("authentication required and no credentials for {host} (add them to ~/.docker/config.json or pass --cred {host}=USER:PASSWORD)")]
    NoCredentials { host: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Described in full here (reqwest's own text hides the cause), so not a source.
    #[error("{}", describe(.0))]
    Transport(reqwest::Error),
    #[error("manifest larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("skipped: unreachable earlier in this run")]
    Unreachable,
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialError),
}

/// reqwest's own text hides the cause (connection refused, certificate unknown).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        "transfer failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if !last.is_empty() {
        text.push_str(": ");
        text.push_str(&last);
    }
    text
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> FetchError {
        FetchError::Transport(e)
    }
}

impl FetchError {
    /// Worth trying the same endpoint again after a pause.
    fn retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            FetchError::Transport(e) => !e.is_builder() && !e.is_redirect(),
            _ => false,
        }
    }
}

pub struct ClientOptions {
    pub ca_certs: Vec<PathBuf>,
    pub credentials: Credentials,
}

/// A registry client shared by every task of a run.
pub struct Client {
    http: reqwest::Client,
    credentials: Arc<Credentials>,
    /// Authorization header values by (base URL, repository).
    tokens: Mutex<HashMap<(String, String), HeaderValue>>,
    warned_insecure: Mutex<HashSet<String>>,
    /// Endpoints that refused connections through every retry: not asked again this run.
    unreachable: Mutex<HashSet<String>>,
}

impl Client {
    pub fn new(options: ClientOptions) -> anyhow::Result<Client> {
        use anyhow::Context as _;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ferry-bundler/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64);
        for path in &options.ca_certs {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build().context("cannot set up the HTTP client")?,
            credentials: Arc::new(options.credentials),
            tokens: Mutex::default(),
            warned_insecure: Mutex::default(),
            unreachable: Mutex::default(),
        })
    }

    /// Says once per endpoint that it is plain HTTP.
    pub fn note_insecure(&self, endpoint: &Endpoint, report: &Report) {
        let first = endpoint.insecure()
            && self
                .warned_insecure
                .lock()
                .unwrap()
                .insert(endpoint.base_url.clone());
        if first {
            report.info(&format!(
                "note: {} is plain HTTP (insecure); digests are still checked",
                endpoint.base_url
            ));
        }
    }

    /// Fetches a manifest by tag or digest: its bytes and `Content-Type`.
    pub async fn manifest(
        &self,
        endpoint: &Endpoint,
        reference: &str,
    ) -> Result<(Bytes, Option<String>), FetchError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            endpoint.base_url, endpoint.repository, reference
        );
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let what = format!("manifest {reference}");
        let response = self.get(endpoint, &url, headers, &what).await?;
        if response
            .content_length()
            .is_some_and(|l| l > MAX_MANIFEST_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_MANIFEST_BYTES {
                return Err(FetchError::TooLarge);
            }
        }
        Ok((Bytes::from(body), content_type))
    }

    /// Starts a blob download from byte `offset`. The response is 200 (whole blob)
    /// or 206 (from `offset`); redirects to object storage are followed.
    pub async fn blob(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response, FetchError> {
        let url = format!(
            "{}/v2/{}/blobs/{}",
            endpoint.base_url, endpoint.repository, digest
        );
        self.get(endpoint, &url, from(offset), &format!("blob {digest}"))
            .await
    }

    /// Starts the download of a file (an endpoint of `MirrorRules::file_endpoints`)
    /// from byte `offset`, as [`Client::blob`] does for a blob.
    pub async fn file(&self, endpoint: &Endpoint, offset: u64) -> Result<Response, FetchError> {
        let url = endpoint.to_string();
        self.get(endpoint, &url, from(offset), &format!("file {url}"))
            .await
    }

    /// A GET with auth and retries; returns a response with a success status.
    async fn get(
        &self,
        endpoint: &Endpoint,
        url: &str,
        headers: HeaderMap,
        what: &str,
    ) -> Result<Response, FetchError> {
        if self
            .unreachable
            .lock()
            .unwrap()
            .contains(&endpoint.base_url)
        {
            return Err(FetchError::Unreachable);
        }
        let key = (endpoint.base_url.clone(), endpoint.repository.clone());
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            attempt += 1;
            let mut request = self.http.get(url).headers(headers.clone());
            if let Some(auth) = self.tokens.lock().unwrap().get(&key) {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let result = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    attempt -= 1;
                    let challenge = r
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(Challenge::parse)
                        .ok_or_else(|| {
                            FetchError::Auth(
                                "401 without a usable WWW-Authenticate challenge".into(),
                            )
                        })?;
                    let value = self.authenticate(endpoint, &challenge).await?;
                    self.tokens.lock().unwrap().insert(key.clone(), value);
                    continue;
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    return Err(FetchError::NotFound {
                        what: what.to_string(),
                    })
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let code = error_code(r).await;
                    (FetchError::Status { status, code }, retry_after)
                }
                Err(e) => (FetchError::Transport(e), None),
            };
            let (error, retry_after) = result;
            if !error.retryable() || attempt >= RetryPolicy::REQUEST.attempts {
                if matches!(&error, FetchError::Transport(e) if e.is_connect()) {
                    self.unreachable
                        .lock()
                        .unwrap()
                        .insert(endpoint.base_url.clone());
                }
                return Err(error);
            }
            tokio::time::sleep(RetryPolicy::REQUEST.pause(attempt, retry_after)).await;
        }
    }

    /// Answers a challenge: Basic from stored credentials, or a Bearer token from the
    /// realm (with credentials if we have them, anonymously otherwise).
    async fn authenticate(
        &self,
        endpoint: &Endpoint,
        challenge: &Challenge,
    ) -> Result<HeaderValue, FetchError> {
        let host = endpoint.host().to_string();
        // Credential helpers are programs that block: run them off the async workers.
        let (credentials, lookup) = (Arc::clone(&self.credentials), host.clone());
        let creds = match tokio::task::spawn_blocking(move || credentials.for_host(&lookup)).await {
            Ok(found) => found?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match challenge {
            Challenge::Basic => {
                let c = creds.ok_or(FetchError::NoCredentials { host })?;
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.user, c.password));
                HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|e| FetchError::Auth(e.to_string()))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .clone()
                    .unwrap_or_else(|| format!("repository:{}:pull", endpoint.repository));
                let mut query = vec![("scope", scope)];
                if let Some(s) = service {
                    query.push(("service", s.clone()));
                }
                let mut request = self.http.get(realm).query(&query);
                if let Some(c) = &creds {
                    request = request.basic_auth(&c.user, Some(&c.password));
                }
                let response = request.send().await?;
                if response.status() == StatusCode::UNAUTHORIZED && creds.is_none() {
                    return Err(FetchError::NoCredentials { host });
                }
                if !response.status().is_success() {
                    return Err(FetchError::Auth(format!(
                        "token endpoint {realm} answered HTTP {}",
                        response.status()
                    )));
                }
                let body: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| FetchError::Auth(format!("token endpoint {realm}: {e}")))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        FetchError::Auth(format!("token endpoint {realm} sent no token"))
                    })?;
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| FetchError::Auth(e.to_string()))
            }
        }
    }
}

/// The headers that ask for a body from byte `offset` on (none from the start).
fn from(offset: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if offset > 0 {
        headers.insert(
            RANGE,
            HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
        );
    }
    headers
}

/// The distribution-spec error code from an error body, if there is one.
async fn error_code(response: Response) -> Option<String> {
    let body = response.bytes().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("errors")?
        .get(0)?
        .get("code")?
        .as_str()
        .map(str::to_string)
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
