//! The push side of the distribution API: asking whether a blob or manifest is
//! there (`HEAD`), mounting a blob from another repository of the same registry,
//! uploading one (in one streamed `PUT`, or in `PATCH` chunks that a broken
//! connection can resume from the registry's `Range`), and putting manifests byte
//! for byte.
//!
//! Every request goes through [`Client::send`] for auth and retries; an upload
//! whose session the registry lost starts a new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry::Digest;
use futures_util::StreamExt as _;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Body, Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::retry::RetryPolicy;
use crate::{Access, Client, Endpoint, FetchError};

/// Counts bytes as they leave, for progress.
pub type Sent = Arc<dyn Fn(u64) + Send + Sync>;

/// Where a blob's bytes come from: a file holding exactly them.
#[derive(Debug, Clone)]
pub struct BlobSource {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// What a mount request did.
#[derive(Debug)]
pub enum Upload {
    /// The registry linked the blob from the other repository: nothing to send.
    Mounted,
    /// It did not (it may not have the blob there, or not mount at all) and opened
    /// an upload session instead, at this URL.
    Session(String),
}

impl Client {
    /// Whether the repository already has the blob.
    pub async fn has_blob(&self, endpoint: &Endpoint, digest: &Digest) -> Result<bool, FetchError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            endpoint.base_url, endpoint.repository
        );
        self.exists(endpoint, &format!("blob {digest}"), || self.http.head(&url))
            .await
    }

    /// Whether the repository has the manifest `digest` (by digest, so a tag that
    /// points elsewhere does not count).
    pub async fn has_manifest(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
    ) -> Result<bool, FetchError> {
        let url = format!(
            "{}/v2/{}/manifests/{digest}",
            endpoint.base_url, endpoint.repository
        );
        self.exists(endpoint, &format!("manifest {digest}"), || {
            self.http
                .head(&url)
                .header(reqwest::header::ACCEPT, ferry::media::MANIFEST_ACCEPT)
        })
        .await
    }

    /// The digest a tag points at, if the repository has the tag.
    pub async fn tag_digest(
        &self,
        endpoint: &Endpoint,
        tag: &str,
    ) -> Result<Option<Digest>, FetchError> {
        let url = format!(
            "{}/v2/{}/manifests/{tag}",
            endpoint.base_url, endpoint.repository
        );
        let what = format!("manifest {tag}");
        let response = self
            .send(endpoint, Access::Push, None, &what, || {
                self.http
                    .head(&url)
                    .header(reqwest::header::ACCEPT, ferry::media::MANIFEST_ACCEPT)
            })
            .await;
        match response {
            Ok(r) => Ok(r
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            Err(FetchError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn exists(
        &self,
        endpoint: &Endpoint,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bool, FetchError> {
        match self.send(endpoint, Access::Push, None, what, build).await {
            Ok(_) => Ok(true),
            Err(FetchError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Asks the registry to link `digest` from repository `from` (on the same
    /// registry) into the endpoint's repository.
    pub async fn mount(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
        from: &str,
    ) -> Result<Upload, FetchError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            endpoint.base_url, endpoint.repository
        );
        let response = self
            .send(
                endpoint,
                Access::Push,
                Some(from),
                &format!("mount of {digest}"),
                || self.http.post(&url).header(CONTENT_LENGTH, 0),
            )
            .await
            .map_err(|e| no_pushes(e, "mount"))?;
        if response.status() == StatusCode::CREATED {
            return Ok(Upload::Mounted);
        }
        Ok(Upload::Session(location(endpoint, &response, "mount")?))
    }

    /// Checks that the endpoint's registry answers the distribution API (`GET
    /// /v2/`, with credentials if it asks): a push says "cannot reach the
    /// registry" once, before naming any blob.
    pub async fn ping(&self, endpoint: &Endpoint) -> Result<(), FetchError> {
        let url = format!("{}/v2/", endpoint.base_url);
        self.send(
            endpoint,
            Access::Push,
            None,
            "the registry's API (/v2/)",
            || self.http.get(&url),
        )
        .await
        .map(drop)
    }

    /// Opens an upload session; returns its URL.
    pub async fn start_upload(&self, endpoint: &Endpoint) -> Result<String, FetchError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/",
            endpoint.base_url, endpoint.repository
        );
        let response = self
            .send(endpoint, Access::Push, None, "upload", || {
                self.http.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await
            .map_err(|e| no_pushes(e, "upload"))?;
        location(endpoint, &response, "upload")
    }

    /// Sends a blob into the endpoint's repository through the session `session`
    /// (one from [`Client::start_upload`] or a refused mount), then closes it with
    /// its digest. Blobs over `chunk` bytes go in chunks, resumed from what the
    /// registry says it has if a chunk is cut off; smaller ones in one streamed
    /// `PUT`. A session the registry forgot is replaced by a new one.
    pub async fn upload(
        &self,
        endpoint: &Endpoint,
        session: String,
        blob: &BlobSource,
        chunk: u64,
        sent: &Sent,
    ) -> Result<(), FetchError> {
        let mut session = Some(session);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let url = match session.take() {
                Some(url) => url,
                None => self.start_upload(endpoint).await?,
            };
            let result = if blob.size > chunk {
                self.upload_chunked(endpoint, url, blob, chunk, sent).await
            } else {
                self.upload_whole(endpoint, &url, blob, sent).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < RetryPolicy::REQUEST.attempts && restartable(&e) => {
                    tokio::time::sleep(RetryPolicy::REQUEST.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One `PUT ?digest=` with the whole blob streamed from its file.
    async fn upload_whole(
        &self,
        endpoint: &Endpoint,
        url: &str,
        blob: &BlobSource,
        sent: &Sent,
    ) -> Result<(), FetchError> {
        let target = with_digest(url, &blob.digest);
        let what = format!("upload of {}", blob.digest);
        // A retried PUT sends the file again from the start.
        self.send(endpoint, Access::Push, None, &what, || {
            self.http
                .put(&target)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, blob.size)
                .body(file_body(&blob.path, 0, blob.size, sent.clone()))
        })
        .await?;
        Ok(())
    }

    /// `PATCH` chunks with `Content-Range`, then `PUT ?digest=` with no body. After a
    /// failed chunk the registry is asked (`GET` on the session) how much it holds.
    async fn upload_chunked(
        &self,
        endpoint: &Endpoint,
        mut url: String,
        blob: &BlobSource,
        chunk: u64,
        sent: &Sent,
    ) -> Result<(), FetchError> {
        let what = format!("upload of {}", blob.digest);
        let mut offset = 0;
        let mut failures = 0;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let result = self
                .send(endpoint, Access::Push, None, &what, || {
                    self.http
                        .patch(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len)
                        .header(CONTENT_RANGE, &range)
                        .body(file_body(&blob.path, offset, len, sent.clone()))
                })
                .await;
            match result {
                Ok(r) => {
                    url = location(endpoint, &r, &what)?;
                    offset = match held(&r) {
                        Some(end) => end,
                        None => offset + len,
                    };
                }
                Err(e) if failures < RetryPolicy::RESUME.attempts && resumable(&e) => {
                    failures += 1;
                    tokio::time::sleep(RetryPolicy::RESUME.delay(failures)).await;
                    let r = self
                        .send(endpoint, Access::Push, None, &what, || self.http.get(&url))
                        .await?;
                    url = location(endpoint, &r, &what).unwrap_or(url);
                    // `Range: 0-0` is what registries say for 0 bytes and for 1.
                    offset = match held(&r) {
                        Some(1) if offset == 0 => 0,
                        Some(end) => end,
                        None => 0,
                    };
                }
                Err(e) => return Err(e),
            }
        }
        let target = with_digest(&url, &blob.digest);
        self.send(endpoint, Access::Push, None, &what, || {
            self.http.put(&target).header(CONTENT_LENGTH, 0)
        })
        .await?;
        Ok(())
    }

    /// Sends a blob whose bytes come as a stream that cannot be replayed (a
    /// bundle being read): a new session, then one `PUT` that is not retried. A
    /// failure fails the blob; a rerun finds what landed.
    pub async fn upload_stream(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> Result<(), FetchError> {
        let session = self.start_upload(endpoint).await?;
        let mut request = self
            .http
            .put(with_digest(&session, digest))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(body);
        if let Some(auth) = self.cached_auth(endpoint, Access::Push) {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(crate::status_error(response).await)
    }

    /// Puts a manifest's exact bytes under `reference` (its digest or a tag).
    pub async fn put_manifest(
        &self,
        endpoint: &Endpoint,
        reference: &str,
        media_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), FetchError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            endpoint.base_url, endpoint.repository
        );
        let what = format!("manifest {reference}");
        self.send(endpoint, Access::Push, None, &what, || {
            self.http
                .put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(bytes.clone())
        })
        .await
        .map_err(|e| no_pushes(e, &what))?;
        Ok(())
    }

    /// Reads a manifest back by digest, as pushed: its bytes.
    pub async fn read_back(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
    ) -> Result<bytes::Bytes, FetchError> {
        let url = format!(
            "{}/v2/{}/manifests/{digest}",
            endpoint.base_url, endpoint.repository
        );
        let what = format!("manifest {digest}");
        let response = self
            .send(endpoint, Access::Push, None, &what, || {
                self.http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, ferry::media::MANIFEST_ACCEPT)
            })
            .await?;
        Ok(crate::read_manifest(response).await?.0)
    }
}

/// An upload failure that a new session may get past: the registry lost the
/// session (404 BLOB_UPLOAD_UNKNOWN), or a retryable failure outlasted its tries.
/// A registry that answers a push with 405 takes none at all (a read-only mirror,
/// or `ferry-installer serve` without users): say so, not "unsupported".
fn no_pushes(e: FetchError, what: &str) -> FetchError {
    match e {
        FetchError::Status { status, .. } if status == StatusCode::METHOD_NOT_ALLOWED => {
            FetchError::Protocol {
                what: what.to_string(),
                reason: "the registry takes no pushes (HTTP 405); `ferry-installer serve` takes them only with --htpasswd".into(),
            }
        }
        other => other,
    }
}

fn restartable(e: &FetchError) -> bool {
    matches!(e, FetchError::NotFound { .. }) || e.retryable()
}

/// A chunk failure worth asking the registry how far it got.
fn resumable(e: &FetchError) -> bool {
    e.retryable()
        || matches!(e, FetchError::Status { status, .. } if *status == StatusCode::RANGE_NOT_SATISFIABLE)
}

/// The end (exclusive) of what an upload session holds, from its `Range: 0-N`.
fn held(response: &Response) -> Option<u64> {
    let range = response.headers().get(RANGE)?.to_str().ok()?;
    let (_, end) = range.trim_start_matches("bytes=").split_once('-')?;
    end.trim().parse::<u64>().ok().map(|n| n + 1)
}

/// The session URL a response names in `Location`, made absolute.
fn location(endpoint: &Endpoint, response: &Response, what: &str) -> Result<String, FetchError> {
    let value = response
        .headers()
        .get(LOCATION)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .ok_or_else(|| FetchError::Protocol {
            what: what.to_string(),
            reason: format!("HTTP {} without a Location", response.status()),
        })?;
    Ok(
        if value.starts_with("http://") || value.starts_with("https://") {
            value.to_string()
        } else {
            format!("{}{}", endpoint.base_url, value)
        },
    )
}

fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// `len` bytes of the file at `path` from `offset`, streamed, counted by `sent`.
fn file_body(path: &Path, offset: u64, len: u64, sent: Sent) -> Body {
    let path = path.to_path_buf();
    let stream = futures_util::stream::once(async move {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            256 * 1024,
        ))
    })
    .map(|opened| match opened {
        Ok(s) => s.left_stream(),
        Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
    })
    .flatten()
    .inspect(move |chunk| {
        if let Ok(c) = chunk {
            sent(c.len() as u64);
        }
    });
    Body::wrap_stream(stream)
}

/// The path of a blob source, for messages.
impl std::fmt::Display for BlobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.digest, self.path.display())
    }
}
