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
use std::io::ErrorKind;
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

/// Every blob an image of the store reaches (but those named only in `without`):
/// each top-level manifest, the platform manifests it holds, and their configs
/// and layers.
pub fn reachable(
    store: &Store,
    without: &BTreeSet<String>,
) -> Result<BTreeSet<Digest>, StoreError> {
    let mut out = BTreeSet::new();
    let images = store.images()?;
    for top in images
        .iter()
        .filter(|(name, _)| !without.contains(*name))
        .map(|(_, top)| top)
    {
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
    _lock: Option<File>,
}

/// Holds gc off `store`, waiting for one under way (it takes seconds).
pub fn keep_blobs(store: &Store) -> Result<BlobsKept, StoreError> {
    let file = gc_lock(store)?;
    if let Some(file) = &file {
        let path = store.gc_lock_path();
        file.lock_shared()
            .map_err(|error| StoreError::Io { path, error })?;
    }
    Ok(BlobsKept { _lock: file })
}

/// The lock file gc and unpacks share; none on read-only media that lacks one,
/// where no unpack can run either.
fn gc_lock(store: &Store) -> Result<Option<File>, StoreError> {
    let path = store.gc_lock_path();
    let read_only = |e: &std::io::Error| e.kind() == ErrorKind::ReadOnlyFilesystem;
    if let Some(dir) = path.parent() {
        // A layout another tool made has no `.ferry` yet.
        match std::fs::create_dir_all(dir) {
            Ok(()) => {}
            Err(e) if read_only(&e) => return Ok(None),
            Err(error) => {
                return Err(StoreError::Io {
                    path: dir.to_path_buf(),
                    error,
                })
            }
        }
    }
    let opened = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path);
    match opened {
        Ok(file) => Ok(Some(file)),
        // A lock works on a file opened only to read as well.
        Err(e) if read_only(&e) => match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::Io { path, error }),
        },
        Err(error) => Err(StoreError::Io { path, error }),
    }
}

/// gc's hold on a store: no unpack runs while it lives.
#[must_use = "unpacks are held off only while this lives"]
pub struct Exclusive {
    _lock: Option<File>,
}

/// Takes `store` for gc (and what goes with it, such as retiring a release).
/// Refused ([`StoreError::Busy`]) while an unpack into the store runs.
pub fn exclusive(store: &Store) -> Result<Exclusive, StoreError> {
    let lock = gc_lock(store)?;
    match lock.as_ref().map(File::try_lock) {
        None | Some(Ok(())) => Ok(Exclusive { _lock: lock }),
        Some(Err(TryLockError::WouldBlock)) => Err(StoreError::Busy {
            root: store.root().to_path_buf(),
        }),
        Some(Err(TryLockError::Error(error))) => {
            let path = store.gc_lock_path();
            Err(StoreError::Io { path, error })
        }
    }
}

/// Finds the blobs no image reaches, older than `grace`, and removes them unless
/// `dry_run`. Blobs that only names in `without` reach count as unreached (a dry
/// run of retiring a release).
pub fn collect(
    store: &Store,
    grace: Duration,
    dry_run: bool,
    without: &BTreeSet<String>,
    _held: &Exclusive,
) -> Result<Collected, StoreError> {
    let keep = reachable(store, without)?;
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
