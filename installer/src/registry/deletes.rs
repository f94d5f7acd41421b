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
use std::collections::BTreeMap;

use ferry::manifest::Descriptor;
use ferry::store::StoreError;
use ferry::{Digest, Reference};

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
    let by = if reference.contains(':') {
        By::Digest(reference.parse().map_err(|e: ferry::digest::DigestError| {
            ApiError::new(Code::DigestInvalid).detail(e.to_string())
        })?)
    } else {
        if !names::valid_tag(reference) || !repo.tags.contains_key(reference) {
            return Err(unknown_manifest(format!("unknown tag={reference}")));
        }
        By::Tag(reference.to_string())
    };
    let state = ctx.state.clone();
    let repo = ctx.repo.clone();
    let removed = tokio::task::spawn_blocking(move || -> Result<usize, StoreError> {
        let names = index_names(&state.store.images()?, &repo, &by);
        if names.is_empty() {
            return Ok(0);
        }
        let removed = state.store.remove_images(&names)?;
        state.images.reload()?;
        Ok(removed)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    if removed == 0 {
        return Err(unknown_manifest(format!(
            "{reference} is not a manifest of {} (a platform manifest goes with its index)",
            ctx.raw_name
        )));
    }
    Ok(accepted())
}

/// What a manifest DELETE names.
enum By {
    Tag(String),
    Digest(Digest),
}

/// The `index.json` names of repository `repo` that `by` deletes: the tag, or
/// every tag pointing at the digest and a manifest pushed by it. The store spells
/// names as they came (`files/kubelet:1.31.14`, `busybox:1.36`), and the request's
/// repository is resolved (`docker.io/files/kubelet`), so names are compared
/// resolved.
fn index_names(images: &BTreeMap<String, Descriptor>, repo: &str, by: &By) -> Vec<String> {
    images
        .iter()
        .filter(|(name, desc)| {
            let Ok(r) = name.parse::<Reference>() else {
                return false;
            };
            r.name() == repo
                && match by {
                    By::Tag(tag) => r.tag() == Some(tag.as_str()),
                    By::Digest(d) => desc.digest == *d,
                }
        })
        .map(|(name, _)| name.clone())
        .collect()
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
