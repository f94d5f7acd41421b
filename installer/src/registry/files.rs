//! `GET /files/<name>/<version>/<os>/<arch>/<file name>` (and
//! `/files/<name>/<version>/<file name>` for a platform-independent file): a file
//! of the store by plain HTTP, for a node or a person with curl and no OCI client.
//! The file is the layer of its artifact `files/<name>:<version>` (see
//! `ferry::artifact`); the answer is that blob's, with Range, `ETag` (the sha256)
//! and `Content-Length`.

use std::sync::Arc;

use axum::http::request::Parts;
use ferry::{Digest, Reference};

use super::error::{ApiError, ApiResult, Code};
use super::router::{Ctx, Query, State};

fn unknown(what: String) -> ApiError {
    ApiError::new(Code::NameUnknown).detail(what)
}

/// The layer digest of the file `path` names, if the store holds it.
fn find(state: &State, path: &str) -> Result<Digest, ApiError> {
    let parts: Vec<&str> = path.split('/').collect();
    let (name, version, platform, file_name) = match parts[..] {
        [n, v, os, arch, f] => (n, v, Some((os, arch)), f),
        [n, v, f] => (n, v, None, f),
        _ => {
            return Err(unknown(
                "expected /files/NAME/VERSION/OS/ARCH/FILE or /files/NAME/VERSION/FILE".into(),
            ))
        }
    };
    let reference: Reference = ferry::artifact::file_ref_name(name, version)
        .parse()
        .map_err(|_| unknown(format!("no file {name} {version}")))?;
    let catalog = state.images.get();
    let repo = reference.name();
    let top = catalog
        .repos
        .get(&repo)
        .and_then(|r| r.tags.get(version))
        .and_then(|d| catalog.manifest(&repo, d))
        .ok_or_else(|| unknown(format!("no file {name} {version} in this store")))?;
    let manifest = match platform {
        None if top.children.is_empty() => top.clone(),
        None => {
            return Err(unknown(format!(
                "file {name} {version} is per platform: ask for /files/{name}/{version}/OS/ARCH/{file_name}"
            )))
        }
        Some((os, arch)) => {
            let child = top
                .children
                .iter()
                .find(|c| {
                    c.platform
                        .as_ref()
                        .is_some_and(|p| p.os == os && p.architecture == arch)
                })
                .ok_or_else(|| unknown(format!("file {name} {version} has no {os}/{arch}")))?;
            catalog
                .manifest(&repo, &child.digest)
                .ok_or_else(|| unknown(format!("file {name} {version} for {os}/{arch} is not in this store")))?
                .clone()
        }
    };
    let layer = ferry::artifact::file_layer(&manifest.bytes)
        .ok_or_else(|| ApiError::internal(format!("file {name} {version}: no layer")))?;
    if layer.title != file_name {
        return Err(unknown(format!(
            "file {name} {version} is not called {file_name:?}"
        )));
    }
    Ok(layer.digest)
}

/// Serves the file at `path` (after `/files/`).
pub async fn get(state: &Arc<State>, path: &str, parts: Parts) -> ApiResult {
    let digest = find(state, path)?;
    let ctx = Ctx {
        state: state.clone(),
        method: parts.method,
        headers: parts.headers,
        query: Query::parse(None),
        repo: String::new(),
        raw_name: String::new(),
    };
    super::blobs::get(&ctx, &digest.to_string()).await
}
