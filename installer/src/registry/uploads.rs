//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (start, monolithic with
//! `?digest=`, or cross-repository `?mount=`), `PATCH` (append a chunk), `PUT
//! ?digest=` (finish), `GET` (progress) and `DELETE` (cancel) on the `Location`.
//!
//! A session's bytes go to `DIR/.ferry/uploads/<uuid>` and are hashed as they
//! arrive; at `PUT` the digest is compared, the file fsynced and renamed into
//! `blobs/sha256/`. Until that rename nothing is visible in the store, so a crash
//! mid-upload leaves only a file under `.ferry/uploads`, which the next start
//! removes. Sessions live in memory: at most 256 at once, expired after 15 idle
//! minutes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use bytes::{Bytes, BytesMut};
use ferry::digest::Hasher;
use ferry::store::Store;
use ferry::Digest;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::error::{ApiError, ApiResult, Code};
use super::router::Ctx;

const MAX_SESSIONS: usize = 256;
const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);

struct Session {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Hasher,
    size: u64,
    last: Instant,
}

/// A session, locked by the one request working on it at a time.
type Shared = Arc<tokio::sync::Mutex<Session>>;

/// Where the store keeps its blobs (the directory of any blob's path).
fn blob_dir(store: &Store) -> PathBuf {
    store
        .blob_path(&Digest::of(b""))
        .parent()
        .expect("blobs live in a directory")
        .to_path_buf()
}

/// The upload sessions under way.
pub struct Uploads {
    /// This serve's own directory under the store's uploads, held while it runs
    /// (none under `--read-only`).
    _claimed: Option<ferry::store::ClaimedDir>,
    dir: PathBuf,
    blob_dir: PathBuf,
    /// id -> (repository it was started for, session)
    sessions: Mutex<HashMap<String, (String, Shared)>>,
}

impl Uploads {
    /// Claims this serve's upload directory, removing what serves that are gone
    /// left (and loose files of older versions), but never a live serve's.
    pub fn open(store: &Store) -> std::io::Result<Uploads> {
        let root = store.uploads_dir();
        std::fs::create_dir_all(&root)?;
        for e in std::fs::read_dir(&root)? {
            let p = e?.path();
            if p.is_file() && p.extension().is_none_or(|x| x != "lock") {
                let _ = std::fs::remove_file(p);
            }
        }
        let other = |e: ferry::store::StoreError| std::io::Error::other(e.to_string());
        store.reclaim_uploads().map_err(other)?;
        // An unpack killed midway left staging behind: its space comes back too.
        store.reclaim_staging().map_err(other)?;
        let claimed = store
            .claim_uploads(&format!("serve-{}", std::process::id()))
            .map_err(other)?;
        let dir = claimed.path().to_path_buf();
        Ok(Uploads {
            _claimed: Some(claimed),
            dir,
            blob_dir: blob_dir(store),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// No uploads (`--read-only`): nothing in the store is touched, so it may sit
    /// on read-only media.
    pub fn none(store: &Store) -> Uploads {
        Uploads {
            _claimed: None,
            dir: store.uploads_dir(),
            blob_dir: blob_dir(store),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn count(&self) -> usize {
        self.sessions.lock().expect("sessions").len()
    }

    async fn create(&self, repo: &str) -> Result<(String, Shared), ApiError> {
        if self.count() >= MAX_SESSIONS {
            return Err(ApiError::new(Code::TooManyRequests)
                .detail(format!("{MAX_SESSIONS} uploads are under way; retry later"))
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("10")));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let path = self.dir.join(&id);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        let s = Arc::new(tokio::sync::Mutex::new(Session {
            path,
            file,
            hasher: Hasher::new(),
            size: 0,
            last: Instant::now(),
        }));
        self.sessions
            .lock()
            .expect("sessions")
            .insert(id.clone(), (repo.to_string(), s.clone()));
        Ok((id, s))
    }

    fn get(&self, id: &str, repo: &str) -> Result<Shared, ApiError> {
        let unknown = || ApiError::new(Code::BlobUploadUnknown).detail(id.to_string());
        uuid::Uuid::parse_str(id).map_err(|_| unknown())?;
        // A session belongs to the repository it was started for.
        self.sessions
            .lock()
            .expect("sessions")
            .get(id)
            .filter(|(r, _)| r == repo)
            .map(|(_, s)| s.clone())
            .ok_or_else(unknown)
    }

    fn remove(&self, id: &str, path: &Path) {
        self.sessions.lock().expect("sessions").remove(id);
        let _ = std::fs::remove_file(path);
    }

    /// Drops sessions idle for longer than 15 minutes.
    pub async fn expire(&self) {
        let all: Vec<(String, Shared)> = self
            .sessions
            .lock()
            .expect("sessions")
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        for (id, s) in all {
            if let Ok(g) = s.try_lock() {
                if g.last.elapsed() > SESSION_IDLE {
                    self.remove(&id, &g.path);
                }
            }
        }
    }
}

/// Reads a whole request body of at most `max` bytes; `None` when it is larger.
pub async fn read_limited(
    body: Body,
    max: usize,
    idle: Duration,
) -> Result<Option<Bytes>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                return Err(ApiError::new(Code::BlobUploadInvalid)
                    .detail("the request body stalled")
                    .with_status(StatusCode::REQUEST_TIMEOUT))
            }
            Ok(None) => return Ok(Some(buf.freeze())),
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(Code::BlobUploadInvalid).detail(e.to_string()))
            }
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > max {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// Appends a request body to a session, hashing as it goes.
async fn append(ctx: &Ctx, s: &mut Session, body: Body) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(ctx.state.body_timeout, stream.next()).await {
            Err(_) => {
                return Err(ApiError::new(Code::BlobUploadInvalid)
                    .detail("the request body stalled")
                    .with_status(StatusCode::REQUEST_TIMEOUT))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(Code::BlobUploadInvalid).detail(e.to_string()))
            }
            Ok(Some(Ok(c))) => c,
        };
        s.file
            .write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", s.path.display())))?;
        s.hasher.update(&chunk);
        s.size += chunk.len() as u64;
        ctx.state
            .metrics
            .upload_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    s.last = Instant::now();
    Ok(())
}

/// Where an upload continues: under the name the client used (`library/x`, not
/// the `docker.io/library/x` it resolves to), as registry:2 answers.
fn location(repo: &str, id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v2/{repo}/blobs/uploads/{id}"))
        .expect("a valid name is a header value")
}

/// `202 Accepted` with where to continue and how much is there.
fn progress(repo: &str, id: &str, size: u64, status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location(repo, id));
    h.insert(
        header::RANGE,
        HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))).expect("header"),
    );
    h.insert(
        "docker-upload-uuid",
        HeaderValue::from_str(id).expect("a uuid is a header value"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    r
}

/// `201 Created` for a blob now in the store.
fn created(repo: &str, d: &Digest) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v2/{repo}/blobs/{d}")).expect("header"),
    );
    h.insert(
        "docker-content-digest",
        HeaderValue::from_str(&d.to_string()).expect("header"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    r
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e: ferry::digest::DigestError| {
        ApiError::new(Code::DigestInvalid).detail(e.to_string())
    })
}

/// Checks the digest and moves the upload into the store.
async fn commit(ctx: &Ctx, id: &str, s: &mut Session, want: &Digest) -> ApiResult {
    let actual = s.hasher.clone().finish();
    let uploads = &ctx.state.uploads;
    if &actual != want {
        uploads.remove(id, &s.path);
        return Err(ApiError::new(Code::DigestInvalid).detail(format!(
            "uploaded {} bytes hash to {actual}, not {want}",
            s.size
        )));
    }
    s.file
        .sync_all()
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", s.path.display())))?;
    let from = s.path.clone();
    let to = ctx.state.store.blob_path(want);
    let blob_dir = uploads.blob_dir.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if to.is_file() {
            // Already there (verified when it was written): keep the one we have.
            return std::fs::remove_file(&from);
        }
        std::fs::rename(&from, &to)?;
        std::fs::File::open(&blob_dir)?.sync_all()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(format!("committing {want}: {e}")))?;
    uploads.sessions.lock().expect("sessions").remove(id);
    Ok(created(&ctx.raw_name, want))
}

pub async fn start(ctx: &Ctx, body: Body) -> ApiResult {
    if let Some(m) = ctx.query.get("mount") {
        // Cross-repository mount: the store is one pool, so any present blob mounts.
        if let Ok(d) = m.parse::<Digest>() {
            if ctx.state.store.has_blob(&d) {
                // Young again for gc until the manifest that needs it lands.
                let _ = ctx.state.store.touch_blob(&d);
                return Ok(created(&ctx.raw_name, &d));
            }
        }
    }
    let want = ctx.query.get("digest").map(parse_digest).transpose()?;
    let (id, s) = ctx.state.uploads.create(&ctx.repo).await?;
    let mut g = s.lock().await;
    match want {
        // Monolithic: the whole blob in the POST.
        Some(d) => {
            if let Err(e) = append(ctx, &mut g, body).await {
                ctx.state.uploads.remove(&id, &g.path);
                return Err(e);
            }
            commit(ctx, &id, &mut g, &d).await
        }
        None => Ok(progress(&ctx.raw_name, &id, 0, StatusCode::ACCEPTED)),
    }
}

/// `Content-Range: <start>-<end>` (also accepting a `bytes ` prefix and `/size`):
/// the first byte and the length it announces.
fn content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end - start + 1))
}

pub async fn patch(ctx: &Ctx, id: &str, body: Body) -> ApiResult {
    let s = ctx.state.uploads.get(id, &ctx.repo)?;
    let mut g = s.lock().await;
    let bad_range = |g: &Session, why: String| {
        ApiError::new(Code::RangeInvalid)
            .detail(why)
            .with_header(header::LOCATION, location(&ctx.raw_name, id))
            .with_header(
                header::RANGE,
                HeaderValue::from_str(&format!("0-{}", g.size.saturating_sub(1))).expect("header"),
            )
    };
    let mut announced = None;
    if let Some(v) = ctx.headers.get(header::CONTENT_RANGE) {
        let range = v.to_str().ok().and_then(content_range);
        if range.map(|r| r.0) != Some(g.size) {
            let why = format!("the upload has {} bytes; a chunk must start there", g.size);
            return Err(bad_range(&g, why));
        }
        let len = range.expect("checked above").1;
        let body_len = ctx
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if body_len.is_some_and(|b| b != len) {
            let why = format!(
                "Content-Range announces {len} bytes, Content-Length {}",
                body_len.expect("checked")
            );
            return Err(bad_range(&g, why));
        }
        announced = Some(len);
    }
    let before = g.size;
    if let Err(e) = append(ctx, &mut g, body).await {
        ctx.state.uploads.remove(id, &g.path);
        return Err(e);
    }
    if let Some(len) = announced.filter(|len| g.size - before != *len) {
        // The bytes are in the upload already: it cannot go on from a known state.
        ctx.state.uploads.remove(id, &g.path);
        let why = format!(
            "Content-Range announces {len} bytes, the body had {}",
            g.size - before
        );
        return Err(bad_range(&g, why));
    }
    Ok(progress(&ctx.raw_name, id, g.size, StatusCode::ACCEPTED))
}

pub async fn finish(ctx: &Ctx, id: &str, body: Body) -> ApiResult {
    let want = parse_digest(
        ctx.query
            .get("digest")
            .ok_or_else(|| ApiError::new(Code::DigestInvalid).detail("PUT needs ?digest="))?,
    )?;
    let s = ctx.state.uploads.get(id, &ctx.repo)?;
    let mut g = s.lock().await;
    if let Err(e) = append(ctx, &mut g, body).await {
        ctx.state.uploads.remove(id, &g.path);
        return Err(e);
    }
    commit(ctx, id, &mut g, &want).await
}

pub async fn status(ctx: &Ctx, id: &str) -> ApiResult {
    let s = ctx.state.uploads.get(id, &ctx.repo)?;
    let g = s.lock().await;
    Ok(progress(&ctx.raw_name, id, g.size, StatusCode::NO_CONTENT))
}

pub async fn cancel(ctx: &Ctx, id: &str) -> ApiResult {
    let s = ctx.state.uploads.get(id, &ctx.repo)?;
    let g = s.lock().await;
    ctx.state.uploads.remove(id, &g.path);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
