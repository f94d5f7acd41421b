//! Request dispatch: parses `/v2/<name>/<resource>/<reference>` (names contain
//! slashes, so no route table can express it), applies the access policy, calls the
//! resource's handler, and around every request records metrics and writes one
//! access-log line.
//!
//! Policy: pulls are anonymous unless `--auth-pull`; pushes and deletes need a
//! user from `--htpasswd` and are refused (405 UNSUPPORTED) when there is none, or
//! under `--read-only`. With an
//! htpasswd file, `GET /v2/` answers 401 with a Basic challenge to callers without
//! valid credentials, as registry:2 does: that is how docker, skopeo and podman
//! learn to send credentials at all. Credentials sent with a pull are ignored
//! unless `--auth-pull` (containers/image sends empty ones after that challenge).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use ferry::store::Store;

use super::auth::{Caller, Htpasswd};
use super::catalog::Images;
use super::error::{ApiError, ApiResult, Code};
use super::metrics::{Metrics, Route};
use super::server::Peer;
use super::uploads::Uploads;
use super::{blobs, deletes, manifests, names, referrers, tags, uploads};

/// Everything the handlers share.
pub struct State {
    pub images: Images,
    pub store: Store,
    pub auth: Option<Htpasswd>,
    pub auth_pull: bool,
    /// Pushes and deletes refused (405).
    pub read_only: bool,
    pub metrics: Metrics,
    pub uploads: Uploads,
    /// Longest pause allowed while a request body is being received.
    pub body_timeout: Duration,
}

/// The query string, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One request, as the handlers see it.
pub struct Ctx {
    pub state: Arc<State>,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    /// The repository as the store names it (`registry.k8s.io/pause`).
    pub repo: String,
    /// The name as the client wrote it in the path.
    pub raw_name: String,
}

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Base,
    Catalog,
    Metrics,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Upload(&'a str, Option<&'a str>),
    Referrers(&'a str, &'a str),
    /// `/files/...`: a file by plain HTTP.
    File(&'a str),
    NotFound,
}

fn parse(path: &str) -> Target<'_> {
    match path {
        "/v2" | "/v2/" => return Target::Base,
        "/v2/_catalog" => return Target::Catalog,
        "/metrics" => return Target::Metrics,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/files/") {
        return Target::File(rest);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Target::NotFound;
    };
    let mut it = rest.rsplitn(3, '/');
    let (Some(last), Some(kind), Some(prefix)) = (it.next(), it.next(), it.next()) else {
        return Target::NotFound;
    };
    if kind == "uploads" {
        if let Some(name) = prefix.strip_suffix("/blobs") {
            return Target::Upload(name, (!last.is_empty()).then_some(last));
        }
    }
    match (kind, last) {
        ("manifests", r) if !r.is_empty() => Target::Manifest(prefix, r),
        ("blobs", d) if !d.is_empty() => Target::Blob(prefix, d),
        ("referrers", d) if !d.is_empty() => Target::Referrers(prefix, d),
        ("tags", "list") => Target::Tags(prefix),
        _ => Target::NotFound,
    }
}

impl Target<'_> {
    fn route(&self) -> Route {
        match self {
            Target::Base => Route::Base,
            Target::Catalog => Route::Catalog,
            Target::Metrics => Route::Metrics,
            Target::Tags(_) => Route::Tags,
            Target::Manifest(..) => Route::Manifest,
            Target::Blob(..) => Route::Blob,
            Target::Upload(..) => Route::Upload,
            Target::Referrers(..) => Route::Referrers,
            Target::File(..) => Route::Blob,
            Target::NotFound => Route::Other,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Target::Tags(n)
            | Target::Manifest(n, _)
            | Target::Blob(n, _)
            | Target::Upload(n, _)
            | Target::Referrers(n, _) => Some(n),
            _ => None,
        }
    }
}

fn method_str(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(Code::Unauthorized).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"ferry-registry\""),
    )
}

pub fn not_found() -> Response<Body> {
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn unsupported() -> ApiError {
    ApiError::new(Code::Unsupported)
}

/// Serves one request; never fails (errors become responses).
pub async fn handle(
    state: Arc<State>,
    peer: Peer,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    // Cheap (shared bytes); the target borrows from it while `parts` moves on.
    let uri = parts.uri.clone();
    let target = parse(uri.path());
    let route = target.route();
    let method = parts.method.clone();
    let agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace('"', "'");

    let caller = match (&state.auth, parts.headers.get(header::AUTHORIZATION)) {
        (Some(_), Some(v)) => {
            let value = v.to_str().unwrap_or_default().to_string();
            let st = state.clone();
            tokio::task::spawn_blocking(move || {
                st.auth.as_ref().expect("checked above").check(Some(&value))
            })
            .await
            .unwrap_or(Caller::Rejected)
        }
        _ => Caller::Anonymous,
    };
    let user = match &caller {
        Caller::User(u) => Some(u.clone()),
        _ => None,
    };

    let resp = match authorize(&state, &target, &method, &caller) {
        Err(e) => e.into_response(),
        Ok(()) => match serve_target(&state, target, parts, Body::new(body)).await {
            Ok(r) => r,
            Err(e) => {
                if e.code == Code::Unknown {
                    ferry_cli::say!("error: {}", e.detail.as_deref().unwrap_or("internal error"));
                }
                e.into_response()
            }
        },
    };
    let mut resp = resp;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = resp.status().as_u16();
    state.metrics.count(route, method_str(&method), status);
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    state.metrics.log(format!(
        "{} - {} [{}] \"{} {} HTTP/1.1\" {status} {bytes} \"\" \"{}\" {:.1}ms\n",
        peer.0.ip(),
        user.as_deref().unwrap_or("-"),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        method,
        uri,
        agent,
        start.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(resp)
}

fn authorize(
    state: &State,
    target: &Target<'_>,
    method: &Method,
    caller: &Caller,
) -> Result<(), ApiError> {
    let is_user = matches!(caller, Caller::User(_));
    let write = matches!(
        (target, method),
        (Target::Upload(..), _)
            | (Target::Manifest(..), &Method::PUT | &Method::DELETE)
            | (Target::Blob(..), &Method::DELETE)
    );
    match target {
        Target::Metrics | Target::NotFound => Ok(()),
        Target::Base => {
            if state.auth.is_some() && !is_user {
                Err(unauthorized())
            } else {
                Ok(())
            }
        }
        _ if write && state.read_only => {
            Err(ApiError::new(Code::Unsupported).detail("this registry is read-only (--read-only)"))
        }
        _ if write => match &state.auth {
            None => Err(ApiError::new(Code::Unsupported)
                .detail("pushing is disabled: serve with --htpasswd FILE")),
            Some(_) if is_user => Ok(()),
            Some(_) => Err(unauthorized()),
        },
        _ => {
            if state.auth_pull && !is_user {
                Err(unauthorized())
            } else {
                Ok(())
            }
        }
    }
}

async fn serve_target(
    state: &Arc<State>,
    target: Target<'_>,
    parts: axum::http::request::Parts,
    body: Body,
) -> ApiResult {
    let method = parts.method.clone();
    match target {
        Target::NotFound => return Ok(not_found()),
        Target::Base => {
            return match method {
                Method::GET | Method::HEAD => Ok(json_response(b"{}".to_vec())),
                _ => Err(unsupported()),
            }
        }
        Target::Metrics => {
            let (repos, manifests) = state.images.counts();
            let text = state
                .metrics
                .render(repos, manifests, state.uploads.count());
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        Target::Catalog => {
            let query = Query::parse(parts.uri.query());
            return match method {
                Method::GET => tags::catalog(state, &query),
                _ => Err(unsupported()),
            };
        }
        Target::File(path) => {
            return match method {
                Method::GET | Method::HEAD => super::files::get(state, path, parts).await,
                _ => Err(unsupported()),
            };
        }
        _ => {}
    }
    let raw_name = target
        .name()
        .expect("resource routes have a name")
        .to_string();
    let query = Query::parse(parts.uri.query());
    let repo = names::resolve(&raw_name, query.get("ns"))?;
    let ctx = Ctx {
        state: state.clone(),
        method: method.clone(),
        headers: parts.headers,
        query,
        repo,
        raw_name,
    };
    match (target, method) {
        (Target::Tags(_), Method::GET) => tags::list(&ctx),
        (Target::Manifest(_, r), Method::GET | Method::HEAD) => manifests::get(&ctx, r),
        (Target::Manifest(_, r), Method::PUT) => manifests::put(&ctx, r, body).await,
        (Target::Manifest(_, r), Method::DELETE) => deletes::manifest(&ctx, r).await,
        (Target::Blob(_, d), Method::DELETE) => deletes::blob(&ctx, d).await,
        (Target::Blob(_, d), Method::GET | Method::HEAD) => blobs::get(&ctx, d).await,
        (Target::Upload(_, None), Method::POST) => uploads::start(&ctx, body).await,
        (Target::Upload(_, Some(id)), Method::PATCH) => uploads::patch(&ctx, id, body).await,
        (Target::Upload(_, Some(id)), Method::PUT) => uploads::finish(&ctx, id, body).await,
        (Target::Upload(_, Some(id)), Method::GET) => uploads::status(&ctx, id).await,
        (Target::Upload(_, Some(id)), Method::DELETE) => uploads::cancel(&ctx, id).await,
        (Target::Referrers(_, d), Method::GET) => referrers::get(&ctx, d),
        _ => Err(unsupported()),
    }
}

/// A 200 JSON answer.
pub fn json_response(body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Background chores: notice `index.json` changed on disk (an unpack into a served
/// store) and expire abandoned uploads.
pub async fn housekeeping(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_sweep = Instant::now();
    loop {
        tick.tick().await;
        let st = state.clone();
        let r = tokio::task::spawn_blocking(move || st.images.reload_if_changed()).await;
        match r {
            Ok(Ok(true)) => {
                let (repos, manifests) = state.images.counts();
                ferry_cli::say!(
                    "index.json changed: now {repos} repositories, {manifests} manifests"
                );
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => ferry_cli::say!("warning: reloading index.json: {e}"),
            Err(e) => ferry_cli::say!("warning: reloading index.json: {e}"),
        }
        if last_sweep.elapsed() >= Duration::from_secs(60) {
            last_sweep = Instant::now();
            state.uploads.expire().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_resources() {
        assert_eq!(parse("/v2/"), Target::Base);
        assert_eq!(parse("/v2/_catalog"), Target::Catalog);
        assert_eq!(
            parse("/v2/registry.k8s.io/pause/manifests/3.10"),
            Target::Manifest("registry.k8s.io/pause", "3.10")
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:x"),
            Target::Blob("a/b", "sha256:x")
        );
        assert_eq!(parse("/v2/a/blobs/uploads/"), Target::Upload("a", None));
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/u-1"),
            Target::Upload("a/b", Some("u-1"))
        );
        assert_eq!(parse("/v2/a/tags/list"), Target::Tags("a"));
        assert_eq!(
            parse("/v2/a/referrers/sha256:x"),
            Target::Referrers("a", "sha256:x")
        );
        assert_eq!(
            parse("/files/kubelet/1.31.14/linux/amd64/kubelet"),
            Target::File("kubelet/1.31.14/linux/amd64/kubelet")
        );
        assert_eq!(parse("/v2/a/manifests/"), Target::NotFound);
        assert_eq!(parse("/v2/a"), Target::NotFound);
        assert_eq!(parse("/etc/passwd"), Target::NotFound);
    }
}
