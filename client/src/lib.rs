//! A client for OCI distribution registries, both directions: the bundler pulls
//! manifests and blobs through it, the installer pushes a store into a site's
//! registry. It owns what both need: anonymous, Basic and Bearer-token auth with
//! credentials from flags or the docker config ([`auth`]), bounded retries with
//! jittered backoff honouring `Retry-After` ([`retry`]), custom CAs, and errors that
//! say why an endpoint failed.
//!
//! It is ours rather than `oci-client`'s because Ferry needs what that crate does not
//! expose together: the repository path rewritten per mirror, `Range` resumption of a
//! partial blob, the raw manifest bytes and their `Content-Type`, cross-repository
//! mounts, and a clear account of why each endpoint failed.

pub mod auth;
mod endpoint;
mod health;
mod push;
mod race;
pub mod retry;
mod slow;
mod tally;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry::manifest::MAX_MANIFEST_BYTES;
use ferry::media::MANIFEST_ACCEPT;
use ferry::Digest;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::{Challenge, Credentials};
pub use endpoint::Endpoint;
use health::Health;
pub use health::COOL_DOWN;
pub use push::{BlobSource, Sent, Upload};
pub use race::{Raced, HEAD_START};
/// A request body, for [`Client::upload_stream`].
pub use reqwest::Body;
pub use retry::{parse_retry_after, Jitter, RetryPolicy, ATTEMPTS};
pub use tally::{Asked, Problem, Say};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what} not found (HTTP 404)")]
    NotFound { what: String },
    #[error("HTTP {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        status: StatusCode,
        code: Option<String>,
        message: Option<String>,
    },
    #[error("authentication required and no credentials for {host} (add them to ~/.docker/config.json or pass --cred {host}=USER:PASSWORD)")]
    NoCredentials { host: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{host} refused the credentials (HTTP 401): check the user and password")]
    Refused { host: String },
    /// Described in full here (reqwest's own text hides the cause), so not a source.
    #[error("{}", describe(.0))]
    Transport(reqwest::Error),
    /// The endpoint answered with a redirect whose target failed: the target is
    /// named, and the endpoint itself is not left alone for it (github.com's
    /// release downloads answer from objects.githubusercontent.com).
    #[error("redirected to {to}: {}", describe(error))]
    Redirected { to: String, error: reqwest::Error },
    #[error("manifest larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("skipped: it could not be connected to moments ago")]
    Unreachable,
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialError),
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
}

/// Why a [`Client`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("CA certificate {}: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
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
    // rustls names what went wrong, not what to do about it.
    if last.contains("UnknownIssuer") {
        text.push_str(" (its certificate's CA is not trusted here: give it with --ca-cert FILE)");
    } else if last.contains("InvalidContentType") {
        text.push_str(" (it does not speak TLS: for a plain-HTTP registry use http://)");
    }
    text
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> FetchError {
        FetchError::Transport(e)
    }
}

impl FetchError {
    /// The kind of failure it is, to count like failures of an endpoint together.
    pub fn problem(&self) -> Problem {
        match self {
            FetchError::NotFound { .. } => Problem::NotFound,
            FetchError::Status { status, .. } => Problem::Status(status.as_u16()),
            FetchError::NoCredentials { .. }
            | FetchError::Auth(_)
            | FetchError::Refused { .. }
            | FetchError::Credentials(_) => Problem::Refused,
            FetchError::Transport(e) if e.is_connect() || e.is_timeout() => Problem::Unavailable,
            FetchError::Unreachable => Problem::Unavailable,
            FetchError::Transport(_)
            | FetchError::Redirected { .. }
            | FetchError::TooLarge
            | FetchError::Protocol { .. } => Problem::Broken,
        }
    }

    /// Worth trying the same endpoint again after a pause.
    fn retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            FetchError::Transport(e) => !e.is_builder() && !e.is_redirect(),
            // A target that cannot be reached now will not be in a moment either.
            FetchError::Redirected { error, .. } => {
                !error.is_builder()
                    && !error.is_redirect()
                    && !error.is_connect()
                    && !error.is_timeout()
            }
            _ => false,
        }
    }
}

pub struct ClientOptions {
    pub ca_certs: Vec<PathBuf>,
    pub credentials: Credentials,
    /// How long a connection may take to open before its endpoint is given up on
    /// for a while (a blocked mirror drops packets rather than refusing).
    pub connect_timeout: Duration,
    /// How long a response may send nothing before its endpoint is given up on
    /// for a while (a mirror that answers, then stalls).
    pub stall_timeout: Duration,
    /// How long an endpoint may take to answer before the next one is started
    /// too (Happy Eyeballs between endpoints).
    pub head_start: Duration,
    /// Say each decision about an endpoint as it is made, on standard error.
    pub verbose: bool,
    /// Sent as `User-Agent`, e.g. `ferry-bundler/0.1.0`.
    pub user_agent: String,
}

/// Which access a request needs, for the token it asks a Bearer realm for when the
/// registry's challenge names no scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Pull,
    Push,
}

/// A registry client shared by every task of a run.
pub struct Client {
    http: reqwest::Client,
    /// How `http` was made, for the clients of endpoints with a connect timeout of
    /// their own (reqwest sets it per client), made when first needed.
    user_agent: String,
    roots: Vec<reqwest::Certificate>,
    stall_timeout: Duration,
    by_timeout: Mutex<HashMap<Duration, reqwest::Client>>,
    credentials: Arc<Credentials>,
    /// Authorization header values by (base URL, scope asked for).
    tokens: Mutex<HashMap<(String, String), HeaderValue>>,
    warned_insecure: Mutex<HashSet<String>>,
    head_start: Duration,
    /// What the run has learnt about its endpoints; shared with probes.
    health: Arc<Health>,
    /// Where each request under way was last redirected to, by the URL asked:
    /// reqwest's error names only the URL asked, and a failed target is not the
    /// endpoint's fault.
    redirects: Redirects,
}

/// The last redirect target of each request under way, by the URL it asked.
type Redirects = Arc<Mutex<HashMap<reqwest::Url, reqwest::Url>>>;

/// The default of [`ClientOptions::connect_timeout`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The default of [`ClientOptions::stall_timeout`].
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ClientSetupError> {
        let mut roots = Vec::new();
        for path in &options.ca_certs {
            let pem = std::fs::read(path).map_err(|e| ClientSetupError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| ClientSetupError::Ca {
                    path: path.clone(),
                    reason: "not a PEM certificate".into(),
                })?;
            if certs.is_empty() {
                return Err(ClientSetupError::Ca {
                    path: path.clone(),
                    reason: "holds no PEM certificate".into(),
                });
            }
            roots.extend(certs);
        }
        let redirects = Redirects::default();
        Ok(Client {
            http: http_client(
                &options.user_agent,
                &roots,
                options.connect_timeout,
                options.stall_timeout,
                &redirects,
            )?,
            redirects,
            user_agent: options.user_agent,
            roots,
            stall_timeout: options.stall_timeout,
            by_timeout: Mutex::default(),
            credentials: Arc::new(options.credentials),
            tokens: Mutex::default(),
            warned_insecure: Mutex::default(),
            head_start: options.head_start,
            health: Arc::new(Health::new(options.verbose)),
        })
    }

    /// The HTTP client for `endpoint`: its own connect timeout, else the run's.
    pub(crate) fn http_for(&self, endpoint: &Endpoint) -> reqwest::Client {
        let Some(t) = endpoint.connect_timeout else {
            return self.http.clone();
        };
        let mut clients = self.by_timeout.lock().unwrap();
        if let Some(c) = clients.get(&t) {
            return c.clone();
        }
        // The same settings built once already: it cannot fail now.
        let c = http_client(
            &self.user_agent,
            &self.roots,
            t,
            self.stall_timeout,
            &self.redirects,
        )
        .unwrap_or_else(|_| self.http.clone());
        clients.insert(t, c.clone());
        c
    }

    /// Leaves `endpoint` alone for the rest of the cool-down: every request to it
    /// fails at once with [`FetchError::Unreachable`], so callers try the next one.
    pub fn give_up(&self, endpoint: &Endpoint, why: String) {
        self.health.give_up(&endpoint.base_url, why);
    }

    /// Whether `endpoint` is being left alone (see [`Client::give_up`]).
    pub fn is_down(&self, endpoint: &Endpoint) -> bool {
        self.health.is_down(&endpoint.base_url)
    }

    /// Notes that a transfer left `endpoint` mid-way for another: because that
    /// one served far faster (`demote`: new transfers try `endpoint` after the
    /// others for the rest of the cool-down), or to learn that one's speed.
    pub(crate) fn leave_slow(&self, endpoint: &Endpoint, why: String, demote: bool) {
        self.health.leave_slow(&endpoint.base_url, why, demote);
    }

    /// Whether `endpoint` was left for slowness lately, so that a new transfer
    /// should try it after the others; counted for the endpoint's note.
    pub fn demote(&self, endpoint: &Endpoint) -> bool {
        self.health.demote(&endpoint.base_url)
    }

    /// Keeps how fast `endpoint` served a transfer, for choosing between endpoints.
    pub fn record_speed(&self, endpoint: &Endpoint, bytes: u64, took: Duration) {
        if !took.is_zero() {
            let speed = bytes as f64 / took.as_secs_f64();
            self.health.record_speed(&endpoint.base_url, speed);
        }
    }

    /// How fast `endpoint` has served this run, in bytes per second, if known.
    pub(crate) fn speed(&self, endpoint: &Endpoint) -> Option<f64> {
        self.health.speed(&endpoint.base_url)
    }

    /// Claims the one transfer that may move to `endpoint`, whose speed is not
    /// known yet, to learn it; false while another transfer does so.
    pub(crate) fn try_explore(&self, endpoint: &Endpoint) -> bool {
        self.health.try_explore(&endpoint.base_url)
    }

    /// Says a decision as it is made, when the run is verbose.
    pub fn decide(&self, message: impl FnOnce() -> String) {
        self.health.decide(message);
    }

    /// Counts a failure of `endpoint` at something `asked` for, for its note at
    /// the end of the run; whether to say it now (the first of its kind from that
    /// endpoint, or each in a verbose run).
    pub fn failed(&self, endpoint: &Endpoint, problem: Problem, asked: Asked) -> Say {
        self.health.failed(&endpoint.base_url, problem, asked)
    }

    /// One line per endpoint skipped, passed over or left during the run, and why,
    /// and one per endpoint and kind of failure, with how many times.
    pub fn endpoint_notes(&self) -> Vec<String> {
        self.health.notes()
    }

    /// The note to show, once per endpoint, that it is plain HTTP.
    pub fn insecure_note(&self, endpoint: &Endpoint) -> Option<String> {
        let first = endpoint.insecure()
            && self
                .warned_insecure
                .lock()
                .unwrap()
                .insert(endpoint.base_url.clone());
        first.then(|| {
            format!(
                "note: {} is plain HTTP (insecure); digests are still checked",
                endpoint.base_url
            )
        })
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
        let what = format!("manifest {reference}");
        let http = self.http_for(endpoint);
        let response = self
            .send(endpoint, Access::Pull, None, &what, || {
                http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        read_manifest(response).await
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
        let http = self.http_for(endpoint);
        self.send(
            endpoint,
            Access::Pull,
            None,
            &format!("blob {digest}"),
            || http.get(&url).headers(from(offset)),
        )
        .await
    }

    /// Starts the download of a file (an endpoint of `MirrorRules::file_endpoints`)
    /// from byte `offset`, as [`Client::blob`] does for a blob.
    pub async fn file(&self, endpoint: &Endpoint, offset: u64) -> Result<Response, FetchError> {
        let url = endpoint.to_string();
        let http = self.http_for(endpoint);
        self.send(endpoint, Access::Pull, None, &format!("file {url}"), || {
            http.get(&url).headers(from(offset))
        })
        .await
    }

    /// Sends the request `build` makes (afresh for every try), with auth and
    /// retries; returns a response with a success (or redirect, for a HEAD)
    /// status. `mount_from` widens a push's scope to reading that repository.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        access: Access,
        mount_from: Option<&str>,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, FetchError> {
        if self.health.skip(&endpoint.base_url) {
            self.health
                .decide(|| format!("{}: skipped for {what}", endpoint.base_url));
            return Err(FetchError::Unreachable);
        }
        let key = token_key(endpoint, access, mount_from);
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            attempt += 1;
            let mut request = build();
            if let Some(auth) = self.tokens.lock().unwrap().get(&key) {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let (http, request) = request.build_split();
            let request = request?;
            let asked = request.url().clone();
            let sent = http.execute(request).await;
            let redirected = self.redirects.lock().unwrap().remove(&asked);
            let result = match sent {
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
                    let value = self.authenticate(endpoint, &key.1, &challenge).await?;
                    self.tokens.lock().unwrap().insert(key.clone(), value);
                    continue;
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    let host = endpoint.host().to_string();
                    return Err(FetchError::Refused { host });
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    return Err(FetchError::NotFound {
                        what: what.to_string(),
                    })
                }
                Ok(r) => {
                    let retry_after = r
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    (status_error(r).await, retry_after)
                }
                // A redirect was followed: the error is its target's.
                Err(e) => match redirected {
                    Some(to) => (
                        FetchError::Redirected {
                            to: to.to_string(),
                            error: e,
                        },
                        None,
                    ),
                    None => (FetchError::Transport(e), None),
                },
            };
            let (error, retry_after) = result;
            // A connection that cannot be opened (refused, or dropped until the
            // connect timeout), or that answers nothing until the stall timeout,
            // is not tried again: every other task of the run goes to the next
            // endpoint at once, until the cool-down has passed.
            if matches!(&error, FetchError::Transport(e) if e.is_connect() || e.is_timeout()) {
                self.give_up(endpoint, error.to_string());
                return Err(error);
            }
            if !error.retryable() || attempt >= RetryPolicy::REQUEST.attempts {
                return Err(error);
            }
            tokio::time::sleep(RetryPolicy::REQUEST.pause(attempt, retry_after)).await;
        }
    }

    /// The Authorization header already obtained for `access` to the endpoint's
    /// repository, for a request that cannot be retried (its body is a stream).
    pub(crate) fn cached_auth(&self, endpoint: &Endpoint, access: Access) -> Option<HeaderValue> {
        self.tokens
            .lock()
            .unwrap()
            .get(&token_key(endpoint, access, None))
            .cloned()
    }

    /// Answers a challenge: Basic from stored credentials, or a Bearer token from the
    /// realm (with credentials if we have them, anonymously otherwise) for the scope
    /// the challenge names, else `scope`.
    async fn authenticate(
        &self,
        endpoint: &Endpoint,
        scope: &str,
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
                scope: asked,
            } => {
                // A token server takes each scope as its own parameter (docker's
                // client does the same for a mount's two repositories).
                let scopes = asked.as_deref().unwrap_or(scope);
                let mut query: Vec<(&str, &str)> =
                    scopes.split_whitespace().map(|s| ("scope", s)).collect();
                if let Some(s) = service {
                    query.push(("service", s));
                }
                let mut request = self.http.get(realm).query(&query);
                if let Some(c) = &creds {
                    request = request.basic_auth(&c.user, Some(&c.password));
                }
                let response = request.send().await?;
                if response.status() == StatusCode::UNAUTHORIZED {
                    return Err(match creds {
                        None => FetchError::NoCredentials { host },
                        Some(_) => FetchError::Refused { host },
                    });
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

fn http_client(
    user_agent: &str,
    roots: &[reqwest::Certificate],
    connect_timeout: Duration,
    stall_timeout: Duration,
    redirects: &Redirects,
) -> Result<reqwest::Client, ClientSetupError> {
    let redirects = Arc::clone(redirects);
    // reqwest's default (up to 10 redirects), noting where each request went.
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > 10 {
            return attempt.error("too many redirects");
        }
        if let Some(asked) = attempt.previous().first() {
            let to = attempt.url().clone();
            redirects.lock().unwrap().insert(asked.clone(), to);
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(policy)
        .connect_timeout(connect_timeout)
        .read_timeout(stall_timeout)
        .pool_max_idle_per_host(64);
    for cert in roots {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder
        .build()
        .map_err(|e| ClientSetupError::Http(e.to_string()))
}

/// What a token is kept under: the base URL and the scope it was asked for.
fn token_key(endpoint: &Endpoint, access: Access, mount_from: Option<&str>) -> (String, String) {
    let mut scope = match access {
        Access::Pull => format!("repository:{}:pull", endpoint.repository),
        Access::Push => format!("repository:{}:pull,push", endpoint.repository),
    };
    if let Some(from) = mount_from {
        scope.push_str(&format!(" repository:{from}:pull"));
    }
    (endpoint.base_url.clone(), scope)
}

/// The error a failed response stands for, with the registry's code and message.
pub(crate) async fn status_error(r: Response) -> FetchError {
    let status = r.status();
    let (code, message) = error_code(r).await;
    FetchError::Status {
        status,
        code,
        message,
    }
}

/// Reads a manifest response whole, refusing one over [`MAX_MANIFEST_BYTES`].
async fn read_manifest(response: Response) -> Result<(Bytes, Option<String>), FetchError> {
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

/// The distribution-spec error code and message from an error body, if any.
async fn error_code(response: Response) -> (Option<String>, Option<String>) {
    let Ok(body) = response.bytes().await else {
        return (None, None);
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (None, None);
    };
    let first = v.get("errors").and_then(|e| e.get(0));
    let field = |name: &str| {
        first
            .and_then(|f| f.get(name))
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty())
            .map(str::to_string)
    };
    (field("code"), field("message"))
}
