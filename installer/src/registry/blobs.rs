//! `GET`/`HEAD /v2/<name>/blobs/<digest>`: blobs stream from their files in the
//! store, a chunk at a time (memory stays flat whatever the blob size), with
//! single byte ranges (`206` + `Content-Range`; `416` for ranges that cannot be
//! served, the way Go's `http.ServeContent` under registry:2 answers them).
//!
//! Any blob in the store is served under any valid repository name: the store is
//! one content-addressed pool, and everything in it is public to pullers anyway.

use std::io::SeekFrom;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use ferry::Digest;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ApiResult, Code};
use super::router::{Ctx, State};

/// Read size per chunk: large enough that a fast client is not held back by
/// per-read overhead, small enough that 1000 downloads stay well under 1 GiB.
const CHUNK: usize = 256 * 1024;

/// A `Range` header's meaning for a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No (usable) range: send everything.
    Full,
    /// `start..=end`
    Part(u64, u64),
    /// Cannot be satisfied: 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`. Several ranges at once are answered
/// with the whole blob (allowed by RFC 9110; no registry client asks for them).
pub fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Unsatisfiable;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(0) | None => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(size.saturating_sub(n), size - 1),
        },
        (s, "") => match num(s) {
            Some(s) if s < size => Range::Part(s, size - 1),
            _ => Range::Unsatisfiable,
        },
        (s, e) => match (num(s), num(e)) {
            (Some(s), Some(e)) if s <= e && s < size => Range::Part(s, e.min(size - 1)),
            _ => Range::Unsatisfiable,
        },
    }
}

pub async fn get(ctx: &Ctx, digest: &str) -> ApiResult {
    let d: Digest = digest.parse().map_err(|e: ferry::digest::DigestError| {
        ApiError::new(Code::DigestInvalid).detail(e.to_string())
    })?;
    let path = ctx.state.store.blob_path(&d);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(Code::BlobUnknown).detail(d.to_string()))
        }
        Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
    };
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?
        .len();
    let digest_header = HeaderValue::from_str(&d.to_string()).expect("digest header");
    let etag = HeaderValue::from_str(&format!("\"{d}\"")).expect("etag header");

    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert("docker-content-digest", digest_header.clone());
    h.insert(header::ETAG, etag.clone());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );

    if ctx
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| v == etag || v == digest_header)
    {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    let range = match ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range(v, size),
        None => Range::Full,
    };
    let (start, len) = match range {
        Range::Full => (0, size),
        Range::Part(s, e) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {s}-{e}/{size}")).expect("header"),
            );
            (s, e - s + 1)
        }
        Range::Unsatisfiable => {
            return Err(ApiError::new(Code::RangeInvalid)
                .detail(format!("the blob has {size} bytes"))
                .with_header(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("header"),
                ))
        }
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if ctx.method == Method::HEAD {
        // A push that finds the blob here skips it: gc must not take it before the
        // manifest lands (crate::gc). Best effort: a failure costs only that.
        if !ctx.state.read_only {
            let _ = ctx.state.store.touch_blob(&d);
        }
        return Ok(resp);
    }
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    }
    *resp.body_mut() = stream(ctx.state.clone(), file.take(len));
    Ok(resp)
}

fn stream(state: Arc<State>, reader: tokio::io::Take<tokio::fs::File>) -> Body {
    let s = ReaderStream::with_capacity(reader, CHUNK).map(move |chunk| {
        if let Ok(c) = &chunk {
            state
                .metrics
                .blob_bytes
                .fetch_add(c.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    Body::from_stream(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), Range::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-0", 100), Range::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Range::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0,5-6", 100), Range::Full);
        assert_eq!(parse_range("items=0-1", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=+1-2", 100), Range::Unsatisfiable);
    }
}
