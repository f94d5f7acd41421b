//! `GET /v2/<name>/referrers/<digest>` (OCI distribution-spec 1.1): an image index
//! listing the manifests of the repository whose `subject` is that digest,
//! optionally filtered by `artifactType`. An unknown subject has no referrers: an
//! empty index, not an error.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response};
use ferry::{media, Digest};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Code};
use super::router::Ctx;

pub fn get(ctx: &Ctx, digest: &str) -> ApiResult {
    let d: Digest = digest.parse().map_err(|e: ferry::digest::DigestError| {
        ApiError::new(Code::DigestInvalid).detail(e.to_string())
    })?;
    let filter = ctx.query.get("artifactType").filter(|f| !f.is_empty());
    let cat = ctx.state.images.get();
    let mut list: Vec<Value> = Vec::new();
    if let Some(repo) = cat.repos.get(&ctx.repo) {
        for r in repo.referrers.get(&d).into_iter().flatten() {
            let Some(m) = cat.manifests.get(r) else {
                continue;
            };
            if filter.is_some() && m.artifact_type.as_deref() != filter {
                continue;
            }
            let mut desc = json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                desc["artifactType"] = json!(t);
            }
            if let Some(a) = &m.annotations {
                desc["annotations"] = a.clone();
            }
            list.push(desc);
        }
    }
    list.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": list,
    }))
    .expect("json");
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::OCI_INDEX),
    );
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
