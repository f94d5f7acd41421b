//! `DELETE` of manifests (by tag or digest) and blobs, for a site removing old
//! releases; with push credentials, and refused (405) under `--read-only`.
//!
//! The store names images, not repository links: deleting a tag drops its
//! `index.json` entry, deleting a manifest by digest drops every tag of the
//! repository that points at it (and a manifest pushed there by digest). Blobs
//! are shared by every repository, so a blob that some manifest still needs is
//! not deleted (405, naming one that does); others are removed at once. What the
//! deleted manifests leave unreferenced is removed by `ferry-installer gc`.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use ferry::manifest::Descriptor;
use ferry::Digest;

use super::error::{ApiError, ApiResult, Code};
use super::names;
use super::router::Ctx;

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn unknown_manifest(detail: String) -> ApiError {
    ApiError::new(Code::ManifestUnknown).detail(detail)
}

/// `DELETE /v2/<name>/manifests/<tag|digest>`.
pub async fn manifest(ctx: &Ctx, reference: &str) -> ApiResult {
    let cat = ctx.state.images.get();
    let repo = cat
        .repos
        .get(&ctx.repo)
        .ok_or_else(|| ApiError::new(Code::NameUnknown).detail(ctx.raw_name.clone()))?;
    let names: Vec<String> = if reference.contains(':') {
        let d: Digest = reference.parse().map_err(|e: ferry::digest::DigestError| {
            ApiError::new(Code::DigestInvalid).detail(e.to_string())
        })?;
        let mut names: Vec<String> = repo
            .tags
            .iter()
            .filter(|(_, t)| **t == d)
            .map(|(tag, _)| format!("{}:{tag}", ctx.repo))
            .collect();
        // A manifest pushed here by digest is named by it.
        let pinned = format!("{}@{d}", ctx.repo);
        if ctx
            .state
            .store
            .images()
            .is_ok_and(|i| i.contains_key(&pinned))
        {
            names.push(pinned);
        }
        names
    } else {
        if !names::valid_tag(reference) || !repo.tags.contains_key(reference) {
            return Err(unknown_manifest(format!("unknown tag={reference}")));
        }
        vec![format!("{}:{reference}", ctx.repo)]
    };
    if names.is_empty() {
        return Err(unknown_manifest(format!(
            "{reference} is not a manifest of {} (a platform manifest goes with its index)",
            ctx.raw_name
        )));
    }
    let state = ctx.state.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ferry::store::StoreError> {
        state.store.remove_images(&names)?;
        state.images.reload()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(accepted())
}

/// `DELETE /v2/<name>/blobs/<digest>`.
pub async fn blob(ctx: &Ctx, digest: &str) -> ApiResult {
    let d: Digest = digest.parse().map_err(|e: ferry::digest::DigestError| {
        ApiError::new(Code::DigestInvalid).detail(e.to_string())
    })?;
    if !ctx.state.store.has_blob(&d) {
        return Err(ApiError::new(Code::BlobUnknown).detail(d.to_string()));
    }
    let cat = ctx.state.images.get();
    let user = cat.manifests.values().find(|m| {
        if m.digest == d {
            return true;
        }
        if !m.children.is_empty() {
            return false;
        }
        let desc = Descriptor {
            media_type: ferry::media::MediaType::from(m.media_type.as_str()),
            digest: m.digest.clone(),
            size: m.bytes.len() as u64,
        };
        ferry::store::platform_blobs(&desc, &m.bytes)
            .is_ok_and(|blobs| blobs.iter().any(|b| b.digest == d))
    });
    if let Some(m) = user {
        let image = cat
            .repos
            .iter()
            .find(|(_, r)| r.manifests.contains(&m.digest))
            .map_or_else(|| m.digest.to_string(), |(name, _)| name.clone());
        return Err(ApiError::new(Code::Unsupported).detail(format!(
            "{d} is still used by {image}: delete its manifests first"
        )));
    }
    let state = ctx.state.clone();
    tokio::task::spawn_blocking(move || state.store.remove_blob(&d))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(accepted())
}
