//! Garbage collection of a store: the blobs no image of `index.json` reaches
//! (left by deleted images or releases, or by pushes that never named an image).
//!
//! It is safe while `serve` runs or a push is under way: a blob younger than the
//! grace period is kept, so the blobs of an image whose manifest has not been put
//! yet (or whose unpack has just renamed them into place) are never taken.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

/// What a collection found (and, unless it was a dry run, removed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Blobs no image reaches and older than the grace period.
    pub removed: Vec<(Digest, u64)>,
    /// Unreached blobs kept because they are younger than the grace period.
    pub young: usize,
    /// Blobs images reach.
    pub kept: usize,
}

impl Collected {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|(_, s)| s).sum()
    }
}

/// Every blob an image of the store reaches: each top-level manifest, the
/// platform manifests it holds, and their configs and layers.
pub fn reachable(store: &Store) -> Result<BTreeSet<Digest>, StoreError> {
    let mut out = BTreeSet::new();
    for top in store.images()?.values() {
        out.insert(top.digest.clone());
        let bytes = store.read_blob(&top.digest)?;
        let parsed = Manifest::parse(&bytes, Some(top.media_type.as_ref())).map_err(|error| {
            StoreError::Manifest {
                digest: top.digest.clone(),
                error,
            }
        })?;
        match parsed {
            Manifest::Index { entries, .. } => {
                for e in entries
                    .iter()
                    .filter(|e| store.has_blob(&e.descriptor.digest))
                {
                    out.insert(e.descriptor.digest.clone());
                    out.extend(
                        store
                            .platform_blobs(&e.descriptor)?
                            .into_iter()
                            .map(|d| d.digest),
                    );
                }
            }
            Manifest::Image { .. } => {
                out.extend(
                    crate::store::platform_blobs(top, &bytes)?
                        .into_iter()
                        .map(|d| d.digest),
                );
            }
        }
    }
    Ok(out)
}

/// Finds the blobs no image reaches, older than `grace`, and removes them unless
/// `dry_run`.
pub fn collect(store: &Store, grace: Duration, dry_run: bool) -> Result<Collected, StoreError> {
    let keep = reachable(store)?;
    let now = SystemTime::now();
    let mut found = Collected::default();
    for (digest, meta) in store.blobs()? {
        if keep.contains(&digest) {
            found.kept += 1;
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        if age < grace {
            found.young += 1;
            continue;
        }
        if !dry_run {
            store.remove_blob(&digest)?;
        }
        found.removed.push((digest, meta.len()));
    }
    Ok(found)
}
