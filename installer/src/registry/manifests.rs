//! `GET`/`HEAD`/`PUT /v2/<name>/manifests/<tag or digest>`.
//!
//! Pulls are answered from the in-memory catalog, byte-exact, with the stored
//! media type. `Accept` is honoured as registry:2 does it, by tag only: an OCI
//! manifest or index is 404 MANIFEST_UNKNOWN to a client that does not accept its
//! type; a Docker manifest list goes to a client that cannot read lists as its
//! linux/amd64 manifest. (registry:2 would convert a Docker schema 2 manifest to
//! signed schema 1 for a client that accepts neither; Ferry serves upstream bytes
//! only, so that case is 404 MANIFEST_UNKNOWN with a detail saying why.) A client
//! that sends no `Accept` at all gets the manifest as stored, as distribution v3
//! answers; a reference that is not a valid tag is 404 MANIFEST_UNKNOWN.
//!
//! Pushes check the document, that every blob it references is in the store, and
//! the digest when pushed by digest; then the manifest is stored as a blob and,
//! pushed by tag, named `<repository>:<tag>` in `index.json`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use ferry::manifest::{Descriptor, MAX_MANIFEST_BYTES};
use ferry::{media, Digest};
use serde_json::Value;

use super::catalog::ManifestEntry;
use super::error::{ApiError, ApiResult, Code};
use super::router::Ctx;
use super::{names, uploads};

/// What the client's `Accept` headers allow (registry:2's reading: no q-values).
#[derive(Default)]
struct Accepts {
    /// Whether the client sent any `Accept` at all.
    any: bool,
    docker_manifest: bool,
    docker_list: bool,
    oci_manifest: bool,
    oci_index: bool,
}

fn accepts(headers: &HeaderMap) -> Accepts {
    let mut a = Accepts::default();
    for v in headers.get_all(header::ACCEPT) {
        a.any = true;
        for t in v.to_str().unwrap_or_default().split(',') {
            match t.split(';').next().unwrap_or_default().trim() {
                media::DOCKER_MANIFEST => a.docker_manifest = true,
                media::DOCKER_LIST => a.docker_list = true,
                media::OCI_MANIFEST => a.oci_manifest = true,
                media::OCI_INDEX => a.oci_index = true,
                _ => {}
            }
        }
    }
    a
}

fn unknown(detail: String) -> ApiError {
    ApiError::new(Code::ManifestUnknown).detail(detail)
}

/// Picks what to send for a request by tag, following registry:2's Accept rules.
fn negotiate<'a>(
    cat: &'a super::catalog::Catalog,
    repo: &str,
    entry: &'a std::sync::Arc<ManifestEntry>,
    a: &Accepts,
) -> Result<&'a std::sync::Arc<ManifestEntry>, ApiError> {
    // A client that states no preference gets the manifest as stored, with its
    // own media type (as distribution v3 answers).
    if !a.any {
        return Ok(entry);
    }
    let t = entry.media_type.as_str();
    if t == media::OCI_MANIFEST && !a.oci_manifest {
        return Err(unknown(format!(
            "the manifest is {t}, which the Accept header does not allow"
        )));
    }
    if t == media::OCI_INDEX && !a.oci_index {
        return Err(unknown(format!(
            "the manifest is {t}, which the Accept header does not allow"
        )));
    }
    if t == media::DOCKER_MANIFEST && !a.docker_manifest {
        return Err(unknown(
            "Docker schema 2 manifest, and the Accept header allows only schema 1, which Ferry does not convert to".into(),
        ));
    }
    if t == media::DOCKER_LIST && !a.docker_list {
        let child = entry
            .children
            .iter()
            .find(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .ok_or_else(|| unknown("the manifest list has no linux/amd64 entry".into()))?;
        let m = cat
            .manifest(repo, &child.digest)
            .ok_or_else(|| unknown(format!("{} is not in the store", child.digest)))?;
        return match m.media_type.as_str() {
            media::DOCKER_MANIFEST if a.docker_manifest => Ok(m),
            media::OCI_MANIFEST if a.oci_manifest => Ok(m),
            media::OCI_MANIFEST => Err(unknown(
                "OCI manifest found, but accept header does not support OCI manifests".into(),
            )),
            _ => Err(unknown(
                "the Accept header allows only schema 1, which Ferry does not convert to".into(),
            )),
        };
    }
    Ok(entry)
}

pub fn get(ctx: &Ctx, reference: &str) -> ApiResult {
    let cat = ctx.state.images.get();
    let entry = if reference.contains(':') {
        let d: Digest = reference.parse().map_err(|e: ferry::digest::DigestError| {
            ApiError::new(Code::DigestInvalid).detail(e.to_string())
        })?;
        if !cat.repos.contains_key(&ctx.repo) {
            return Err(ApiError::new(Code::NameUnknown).detail(ctx.raw_name.clone()));
        }
        cat.manifest(&ctx.repo, &d)
            .ok_or_else(|| unknown(format!("unknown manifest {d}")))?
    } else {
        // No manifest has such a tag: 404, as registry:2 and the conformance
        // suite expect, not 400.
        if !names::valid_tag(reference) {
            return Err(unknown(format!("{reference:?} is not a valid tag")));
        }
        let repo = cat
            .repos
            .get(&ctx.repo)
            .ok_or_else(|| ApiError::new(Code::NameUnknown).detail(ctx.raw_name.clone()))?;
        let d = repo
            .tags
            .get(reference)
            .ok_or_else(|| unknown(format!("unknown tag={reference}")))?;
        let entry = cat
            .manifest(&ctx.repo, d)
            .ok_or_else(|| unknown(format!("unknown manifest {d}")))?;
        negotiate(&cat, &ctx.repo, entry, &accepts(&ctx.headers))?
    };
    let m = &ctx.state.metrics;
    let not_modified = ctx
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| v == entry.etag || v.as_bytes() == entry.digest_header.as_bytes());
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if ctx.method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        m.manifest_bytes.fetch_add(
            entry.bytes.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Response::new(Body::from(entry.bytes.clone()))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, entry.content_type.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.bytes.len()));
    h.insert("docker-content-digest", entry.digest_header.clone());
    h.insert(header::ETAG, entry.etag.clone());
    Ok(resp)
}

/// The blobs a manifest document needs before it can be stored.
fn references(media_type: &str, doc: &Value) -> Result<Vec<Digest>, ApiError> {
    let invalid = |d: String| ApiError::new(Code::ManifestInvalid).detail(d);
    let digest_of = |v: &Value| -> Result<Digest, ApiError> {
        v["digest"]
            .as_str()
            .ok_or_else(|| invalid("a descriptor has no digest".into()))?
            .parse()
            .map_err(|e: ferry::digest::DigestError| invalid(e.to_string()))
    };
    let mut out = Vec::new();
    let media_type = media::MediaType::from(media_type);
    if media::is_index(&media_type) {
        for m in doc["manifests"]
            .as_array()
            .ok_or_else(|| invalid("an index needs a manifests list".into()))?
        {
            out.push(digest_of(m)?);
        }
    } else if media::is_manifest(&media_type) {
        if !doc["config"].is_object() {
            return Err(invalid("an image manifest needs a config".into()));
        }
        out.push(digest_of(&doc["config"])?);
        for l in doc["layers"].as_array().into_iter().flatten() {
            // Foreign layers (with urls) live elsewhere by design.
            if l.get("urls").is_some_and(|u| u.is_array()) {
                continue;
            }
            out.push(digest_of(l)?);
        }
    } else if [media::DOCKER_SCHEMA1, media::DOCKER_SCHEMA1_SIGNED]
        .contains(&media_type.to_string().as_str())
    {
        return Err(invalid("Docker schema 1 manifests are not accepted".into()));
    } else {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type:?}"
        )));
    }
    Ok(out)
}

pub async fn put(ctx: &Ctx, reference: &str, body: Body) -> ApiResult {
    let by_digest = reference.contains(':');
    let want: Option<Digest> = if by_digest {
        Some(reference.parse().map_err(|e: ferry::digest::DigestError| {
            ApiError::new(Code::DigestInvalid).detail(e.to_string())
        })?)
    } else if names::valid_tag(reference) {
        None
    } else {
        return Err(ApiError::new(Code::ManifestInvalid)
            .detail(format!("{reference:?} is not a valid tag")));
    };
    if let Some(len) = ctx
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > MAX_MANIFEST_BYTES as u64 {
            return Err(too_large());
        }
    }
    let bytes = uploads::read_limited(body, MAX_MANIFEST_BYTES, ctx.state.body_timeout)
        .await?
        .ok_or_else(too_large)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(Code::ManifestInvalid).detail(format!("not JSON: {e}")))?;
    if !doc.is_object() {
        return Err(ApiError::new(Code::ManifestInvalid).detail("not a JSON object"));
    }
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|c| !c.is_empty());
    let declared = doc["mediaType"].as_str().map(str::to_string);
    let media_type = match (&declared, &content_type) {
        (Some(d), Some(c)) if d != c && c != "application/json" => {
            return Err(ApiError::new(Code::ManifestInvalid)
                .detail(format!("mediaType {d:?} does not match Content-Type {c:?}")))
        }
        (Some(d), _) => d.clone(),
        (None, Some(c)) if c != "application/json" => c.clone(),
        _ if doc.get("manifests").is_some() => media::OCI_INDEX.to_string(),
        _ => media::OCI_MANIFEST.to_string(),
    };
    if doc["schemaVersion"].as_u64() == Some(1) {
        return Err(ApiError::new(Code::ManifestInvalid)
            .detail("Docker schema 1 manifests are not accepted"));
    }
    let store = ctx.state.store.clone();
    for d in references(&media_type, &doc)? {
        if !store.has_blob(&d) {
            return Err(ApiError::new(Code::ManifestBlobUnknown).detail(d.to_string()));
        }
    }
    let digest = Digest::of(&bytes);
    if let Some(w) = &want {
        if w != &digest {
            return Err(ApiError::new(Code::DigestInvalid)
                .detail(format!("the manifest's digest is {digest}, not {w}")));
        }
    }
    let desc = Descriptor {
        media_type: media::MediaType::from(media_type.as_str()),
        digest: digest.clone(),
        size: bytes.len() as u64,
    };
    // A manifest pushed by digest (a signature, an SBOM) is named `REPO@DIGEST`:
    // in index.json like a tag, so it survives a restart and gc keeps its blobs.
    let name = if by_digest {
        format!("{}@{digest}", ctx.repo)
    } else {
        format!("{}:{reference}", ctx.repo)
    };
    let state = ctx.state.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ferry::store::StoreError> {
        state.store.put_blob(&desc.digest, &bytes)?;
        state.store.set_images(&[(name, desc)])?;
        state.images.reload()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;

    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    let d = HeaderValue::from_str(&digest.to_string()).expect("digest header");
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v2/{}/manifests/{digest}", ctx.raw_name))
            .expect("a valid name is a header value"),
    );
    h.insert("docker-content-digest", d);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    if let Some(s) = doc["subject"]["digest"].as_str() {
        if let Ok(v) = HeaderValue::from_str(s) {
            h.insert("oci-subject", v);
        }
    }
    Ok(r)
}

fn too_large() -> ApiError {
    ApiError::new(Code::ManifestInvalid)
        .detail(format!(
            "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        ))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}
