//! Garbage collection of a store: the blobs no image of `index.json` reaches
//! (left by deleted images or releases, or by pushes that never named an image).
//!
//! It is safe while `serve` runs or a push is under way: a blob younger than the
//! grace period is kept, so the blobs of an image whose manifest has not been put
//! yet (or whose unpack has just renamed them into place) are never taken, and
//! `serve` makes a blob a push finds already there (`HEAD`, a mount) young again.
//! An unpack counts on the unreached blobs it finds "already there" until it names
//! them at its end, however old they are: it holds [`keep_blobs`] throughout, and
//! gc does not run while any unpack does.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
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

/// Held (shared) by an unpack from before it looks for blobs already in the
/// store until it has named them in `index.json`: no gc runs meanwhile.
#[must_use = "gc is held off only while this lives"]
pub struct BlobsKept {
    _lock: File,
}

/// Holds gc off `store`, waiting for one under way (it takes seconds).
pub fn keep_blobs(store: &Store) -> Result<BlobsKept, StoreError> {
    let file = gc_lock(store)?;
    let path = store.gc_lock_path();
    file.lock_shared()
        .map_err(|error| StoreError::Io { path, error })?;
    Ok(BlobsKept { _lock: file })
}

fn gc_lock(store: &Store) -> Result<File, StoreError> {
    let path = store.gc_lock_path();
    if let Some(dir) = path.parent() {
        // A layout another tool made has no `.ferry` yet.
        std::fs::create_dir_all(dir).map_err(|error| StoreError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| StoreError::Io { path, error })
}

/// Finds the blobs no image reaches, older than `grace`, and removes them unless
/// `dry_run`. Refused ([`StoreError::Busy`]) while an unpack into the store runs.
pub fn collect(store: &Store, grace: Duration, dry_run: bool) -> Result<Collected, StoreError> {
    let lock = gc_lock(store)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StoreError::Busy {
                root: store.root().to_path_buf(),
            })
        }
        Err(TryLockError::Error(error)) => {
            let path = store.gc_lock_path();
            return Err(StoreError::Io { path, error });
        }
    }
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
