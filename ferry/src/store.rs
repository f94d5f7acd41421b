//! The store: an OCI image layout on disk, content-addressed and written atomically.
//!
//! ```text
//! DIR/
//!   oci-layout                 {"imageLayoutVersion":"1.0.0"}
//!   index.json                 one entry per image, named by its full upstream
//!                              reference (org.opencontainers.image.ref.name)
//!   blobs/sha256/<hex>         manifests, configs, layers: verified before they appear
//!   .ferry/partial/<hex>       downloads under way; resumed with Range, never served
//!   .ferry/tmp/                temporary files (NAME.PID.SEQ.tmp), renamed into place
//!                              once complete; a gone writer's are reclaimed
//!   .ferry/staging/<run>/      blobs of a bundle being unpacked, until it checks out
//!   .ferry/uploads/            pushes to the site registry under way
//!   .ferry/bundles/<id>.json   the manifest of every bundle unpacked here (deltas
//!                              name their base by it)
//!   .ferry/lock                held while index.json is rewritten
//!   .ferry/gc.lock             shared by unpacks, taken alone by gc (crate::gc)
//! ```
//! This module owns every path in that tree: other code asks the store for them.
//! A blob becomes visible only after its digest matched: it is written to a temporary
//! name, fsynced and renamed. `index.json` names an image only once every blob it
//! needs is present, so a store is consistent at every instant.
//!
//! Only [`Store::create`] (pull, unpack) makes a store, in a new or empty
//! directory; [`Store::open`] (serve, inspect, plan) refuses a directory that is
//! not one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::ImageIndex;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest, ManifestError};

mod index;
use index::{empty_index, index_bytes, named_descriptor};
pub use index::{parse_index, render_index};

/// Whether no process `pid` runs on this machine (so a temporary file it names is
/// a leftover); `false` when it cannot tell (no /proc) or the process is this one.
pub fn process_is_gone(pid: u32) -> bool {
    pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

/// The annotation that names an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout { path: PathBuf, reason: String },
    #[error("{} is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{} is not a store (no oci-layout file): pull or unpack into it first", path.display())]
    NotAStore { path: PathBuf },
    #[error("{} is not empty and not a store (no oci-layout file): name a new or empty directory, or an existing store", path.display())]
    NotEmpty { path: PathBuf },
    #[error("an unpack into {} is under way: run gc once it is done", root.display())]
    Busy { root: PathBuf },
    #[error("blob {expected} does not match its content (got {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is not in the store {} (pull, or unpack its bundle, again)", root.display())]
    Missing { digest: Digest, root: PathBuf },
    #[error("manifest {digest}: {error}")]
    Manifest {
        digest: Digest,
        error: ManifestError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Flushes a directory entry to disk, so a rename survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Store {
    /// Opens the store at `root`, making it (an empty layout) if it does not exist
    /// or is an empty directory. A directory holding anything else without an
    /// `oci-layout` file is refused and left as it was: its files are someone's.
    pub fn create(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        if root.exists() && !root.is_dir() {
            return Err(StoreError::NotALayout {
                path: root.to_path_buf(),
                reason: "it is a file, not a directory".into(),
            });
        }
        fs::create_dir_all(root).map_err(io_err(root))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            // What a create interrupted before it wrote oci-layout leaves is no
            // one else's.
            let ours = |name: &std::ffi::OsStr| name == "blobs" || name == ".ferry";
            for entry in fs::read_dir(root).map_err(io_err(root))? {
                if !ours(&entry.map_err(io_err(root))?.file_name()) {
                    return Err(StoreError::NotEmpty {
                        path: root.to_path_buf(),
                    });
                }
            }
            store.private_dirs()?;
            store.write_atomic(&layout, LAYOUT.as_bytes())?;
        }
        Store::open(root)
    }

    /// Opens an existing store; a directory without an OCI layout is refused and
    /// left as it was.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        let layout = root.join("oci-layout");
        let text = match fs::read_to_string(&layout) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(&layout)(e)),
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StoreError::NotALayout {
                path: layout.clone(),
                reason: e.to_string(),
            })?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(StoreError::NotALayout {
                path: layout,
                reason: "imageLayoutVersion is not 1.0.0".into(),
            });
        }
        store.private_dirs()?;
        Ok(store)
    }

    fn private_dirs(&self) -> Result<(), StoreError> {
        for dir in [self.blob_dir(), self.partial_dir(), self.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn partial_dir(&self) -> PathBuf {
        self.root.join(".ferry").join("partial")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.private("tmp")
    }

    /// The lock `gc` takes alone and unpacks share (see `crate::gc`).
    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.private("gc.lock")
    }

    fn private(&self, name: &str) -> PathBuf {
        self.root.join(".ferry").join(name)
    }

    /// A new directory for the blobs of one unpack (`run` names it), on the same
    /// file system as the blobs so they can be renamed into place.
    pub fn staging_dir(&self, run: &str) -> PathBuf {
        self.private("staging").join(run)
    }

    /// Makes the staging directory of one unpack, owned by this process for as
    /// long as the returned value lives (see [`Store::reclaim_staging`]).
    pub fn claim_staging(&self, run: &str) -> Result<ClaimedDir, StoreError> {
        self.claim("staging", run)
    }

    /// Removes the staging directories whose owner is gone: what an unpack killed
    /// midway left. Returns how many.
    pub fn reclaim_staging(&self) -> Result<usize, StoreError> {
        self.reclaim("staging")
    }

    /// Makes the upload directory of one `serve`, owned by this process for as
    /// long as the returned value lives.
    pub fn claim_uploads(&self, run: &str) -> Result<ClaimedDir, StoreError> {
        self.claim("uploads", run)
    }

    /// Removes the files of `.ferry/tmp` whose writer is gone (its process id is
    /// in the name, `NAME.PID.SEQ.tmp`): what a run killed mid-write left. Returns
    /// how many.
    pub fn reclaim_tmp(&self) -> Result<usize, StoreError> {
        let dir = self.tmp_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            let pid = name.to_str().and_then(|n| {
                let mut parts = n.strip_suffix(".tmp")?.rsplit('.');
                parts.next()?.parse::<u64>().ok()?;
                parts.next()?.parse::<u32>().ok()
            });
            if pid.is_some_and(process_is_gone) {
                let path = dir.join(&name);
                fs::remove_file(&path).map_err(io_err(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the upload directories whose `serve` is gone. Returns how many.
    pub fn reclaim_uploads(&self) -> Result<usize, StoreError> {
        self.reclaim("uploads")
    }

    /// `.ferry/<area>/<run>`, owned by this process: a lock on `<run>.lock` beside
    /// it says so, taken before the directory exists, so [`Store::reclaim`] never
    /// takes a live one for stale.
    fn claim(&self, area: &str, run: &str) -> Result<ClaimedDir, StoreError> {
        let parent = self.private(area);
        let dir = parent.join(run);
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let lock_path = parent.join(format!("{run}.lock"));
        let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(ClaimedDir {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// Removes the directories of `.ferry/<area>` whose owner is gone (their lock
    /// is free, or they have none).
    fn reclaim(&self, area: &str) -> Result<usize, StoreError> {
        let parent = self.private(area);
        let entries = match fs::read_dir(&parent) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&parent)(e)),
        };
        let mut reclaimed = 0;
        for entry in entries.filter_map(|e| e.ok()) {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let lock_path = parent.join(format!("{name}.lock"));
            let held = match fs::OpenOptions::new().write(true).open(&lock_path) {
                Ok(f) => match f.try_lock() {
                    Ok(()) => false,
                    Err(fs::TryLockError::WouldBlock) => true,
                    Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(io_err(&lock_path)(e)),
            };
            if !held {
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
                let _ = fs::remove_file(&lock_path);
                reclaimed += 1;
            }
        }
        Ok(reclaimed)
    }

    /// Where the site registry keeps pushes under way.
    pub fn uploads_dir(&self) -> PathBuf {
        self.private("uploads")
    }

    /// Where the manifest of bundle `id` is kept once it is unpacked here.
    pub fn bundle_record(&self, id: &Digest) -> PathBuf {
        self.private("bundles").join(format!("{}.json", id.hex()))
    }

    /// The manifests of every bundle unpacked here, as recorded, in file name order.
    pub fn bundle_records(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let dir = self.private("bundles");
        let mut paths: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        paths.sort();
        paths
            .iter()
            .map(|p| fs::read(p).map_err(io_err(p)))
            .collect()
    }

    /// Records that the bundle `id` (its manifest bytes) is unpacked here.
    pub fn record_bundle(&self, id: &Digest, manifest: &[u8]) -> Result<(), StoreError> {
        let record = self.bundle_record(id);
        let dir = record.parent().expect("records live in a directory");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        self.write_atomic(&record, manifest)
    }

    /// Forgets that bundle `id` was unpacked here (its release is retired).
    pub fn forget_bundle(&self, id: &Digest) -> Result<(), StoreError> {
        let record = self.bundle_record(id);
        match fs::remove_file(&record) {
            Ok(()) => sync_dir(record.parent().expect("records live in a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&record)(e)),
        }
    }

    /// Moves verified, fsynced files into place as blobs, then makes the renames
    /// durable. The caller has checked each file against its digest.
    pub fn adopt_blobs(&self, files: &[(PathBuf, Digest)]) -> Result<(), StoreError> {
        for (file, digest) in files {
            let to = self.blob_path(digest);
            fs::rename(file, &to).map_err(io_err(&to))?;
        }
        sync_dir(&self.blob_dir())
    }

    /// The config and layers of the platform manifest `manifest`, read from the store.
    pub fn platform_blobs(&self, manifest: &Descriptor) -> Result<Vec<Descriptor>, StoreError> {
        platform_blobs(manifest, &self.read_blob(&manifest.digest)?)
    }

    /// Every blob an image needs for some of its platforms: the top-level manifest,
    /// each platform manifest and their configs and layers, each once, with sizes.
    /// Every one must be in the store.
    pub fn closure(
        &self,
        top: &Descriptor,
        platforms: &[Descriptor],
    ) -> Result<BTreeMap<Digest, u64>, StoreError> {
        let mut blobs = BTreeMap::new();
        blobs.insert(top.digest.clone(), top.size);
        for p in platforms {
            blobs.insert(p.digest.clone(), p.size);
            for d in self.platform_blobs(p)? {
                blobs.insert(d.digest, d.size);
            }
        }
        for digest in blobs.keys() {
            if !self.has_blob(digest) {
                return Err(StoreError::Missing {
                    digest: digest.clone(),
                    root: self.root.clone(),
                });
            }
        }
        Ok(blobs)
    }

    /// Where the blob `digest` lives once complete.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Where an unfinished download of `digest` is kept between runs.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.partial_dir().join(digest.hex())
    }

    /// Whether the blob is present (it was verified when it was written).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a whole blob; for manifests and configs, which are small.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing {
                digest: digest.clone(),
                root: self.root.clone(),
            },
            _ => io_err(&path)(e),
        })
    }

    /// Writes `bytes` as blob `expected` after checking they hash to it.
    pub fn put_blob(&self, expected: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if self.has_blob(expected) {
            return Ok(());
        }
        self.write_atomic(&self.blob_path(expected), bytes)
    }

    /// Moves a finished, already verified download from its partial path into place.
    /// The caller has checked the digest while writing and has fsynced the file.
    pub fn commit_partial(&self, digest: &Digest) -> Result<(), StoreError> {
        let from = self.partial_path(digest);
        let to = self.blob_path(digest);
        fs::rename(&from, &to).map_err(io_err(&to))?;
        sync_dir(&self.blob_dir())
    }

    /// Writes a file under the store atomically: temp name, fsync, rename, fsync dir.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.tmp_dir().join(format!(
            "{}.{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }

    /// The images listed in `index.json`, by reference name.
    pub fn images(&self) -> Result<BTreeMap<String, Descriptor>, StoreError> {
        let index = self.read_index()?;
        let mut out = BTreeMap::new();
        for d in index.manifests() {
            let name = d.annotations().as_ref().and_then(|a| a.get(REF_NAME));
            if let Some(name) = name {
                let digest = d.digest().try_into().map_err(|e| StoreError::Damaged {
                    path: self.root.join("index.json"),
                    reason: format!("{e}"),
                })?;
                out.insert(
                    name.clone(),
                    Descriptor {
                        media_type: d.media_type().clone(),
                        digest,
                        size: d.size(),
                    },
                );
            }
        }
        Ok(out)
    }

    fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            // serde_json's error names the field and line; oci-spec's says only
            // "serde failed".
            Ok(bytes) => {
                serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| StoreError::Damaged {
                    path,
                    reason: e.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(empty_index()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Names `descriptor` as image `name` in `index.json`, replacing any earlier entry
    /// of that name. The blobs it needs must already be in the store.
    pub fn set_images(&self, images: &[(String, Descriptor)]) -> Result<(), StoreError> {
        // Names already as asked need no lock and no write, so a complete store
        // on read-only media (a shared cache) can still be built from.
        let now = self.images()?;
        if images.iter().all(|(n, d)| now.get(n) == Some(d)) {
            return Ok(());
        }
        // Two pulls into one store must not lose each other's index entries.
        let lock = self.lock_index()?;
        let index = self.read_index()?;
        let mut entries: BTreeMap<String, oci_spec::image::Descriptor> = BTreeMap::new();
        let mut unnamed = Vec::new();
        for d in index.manifests() {
            match d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
                Some(n) => {
                    entries.insert(n.clone(), d.clone());
                }
                None => unnamed.push(d.clone()),
            }
        }
        for (name, desc) in images {
            entries.insert(name.clone(), named_descriptor(name, desc));
        }
        let mut manifests = unnamed;
        manifests.extend(entries.into_values());
        let bytes = index_bytes(manifests);
        self.write_atomic(&self.root.join("index.json"), &bytes)?;
        drop(lock);
        Ok(())
    }

    /// Holds the store's lock, taken while `index.json` is read and rewritten.
    fn lock_index(&self) -> Result<fs::File, StoreError> {
        let lock_path = self.private("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        Ok(lock)
    }

    /// Drops the images named `names` from `index.json` (their blobs stay until a
    /// `gc`); returns how many were there.
    pub fn remove_images(&self, names: &[String]) -> Result<usize, StoreError> {
        let lock = self.lock_index()?;
        let index = self.read_index()?;
        let before = index.manifests().len();
        let kept: Vec<oci_spec::image::Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                !d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| names.contains(n))
            })
            .cloned()
            .collect();
        let removed = before - kept.len();
        if removed > 0 {
            self.write_atomic(&self.root.join("index.json"), &index_bytes(kept))?;
        }
        drop(lock);
        Ok(removed)
    }

    /// Every blob file of the store, with its metadata.
    pub fn blobs(&self) -> Result<Vec<(Digest, fs::Metadata)>, StoreError> {
        let dir = self.blob_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if meta.is_file() {
                out.push((digest, meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Makes blob `digest` young for `gc` (its modification time is now): a push
    /// that found it already there counts on it until its manifest lands.
    pub fn touch_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        File::open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .map_err(io_err(&path))
    }

    /// Removes a blob file (the caller has made sure nothing needs it).
    pub fn remove_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

/// A directory this process owns in the store (an unpack's staging, a serve's
/// uploads; see [`Store::claim_staging`]); removed with its lock when dropped.
pub struct ClaimedDir {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: fs::File,
}

impl ClaimedDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ClaimedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// The config and layers of the platform manifest `manifest`, whose bytes the caller
/// holds (see [`Store::platform_blobs`]).
pub fn platform_blobs(manifest: &Descriptor, bytes: &[u8]) -> Result<Vec<Descriptor>, StoreError> {
    let parse_error = |error| StoreError::Manifest {
        digest: manifest.digest.clone(),
        error,
    };
    let media_type = manifest.media_type.to_string();
    match Manifest::parse(bytes, Some(&media_type)).map_err(parse_error)? {
        Manifest::Image { config, layers, .. } => {
            Ok(std::iter::once(config).chain(layers).collect())
        }
        Manifest::Index { .. } => Err(parse_error(ManifestError::Malformed(
            "a platform manifest is an index (nested indexes are not supported)".into(),
        ))),
    }
}

/// The `oci-layout` file's bytes.
pub const LAYOUT_BYTES: &[u8] = LAYOUT.as_bytes();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media;

    #[test]
    fn a_claimed_directory_is_kept_while_its_owner_lives_and_reclaimed_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let live = store.claim_staging("live").unwrap();
        // Left by an unpack that is gone: a lock nobody holds, and one with none.
        drop(std::fs::File::create(store.staging_dir("dead").with_extension("lock")).unwrap());
        std::fs::create_dir_all(store.staging_dir("dead")).unwrap();
        std::fs::create_dir_all(store.staging_dir("older")).unwrap();
        assert_eq!(store.reclaim_staging().unwrap(), 2);
        assert!(live.path().is_dir(), "a live claim was reclaimed");
        assert!(!store.staging_dir("dead").exists() && !store.staging_dir("older").exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
        assert_eq!(store.reclaim_staging().unwrap(), 0);
    }

    #[test]
    fn blobs_are_verified_and_index_entries_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let bytes = b"{\"hello\":1}";
        let d = Digest::of(bytes);
        let wrong = Digest::of(b"other");
        assert!(matches!(
            store.put_blob(&wrong, bytes),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.has_blob(&wrong));
        store.put_blob(&d, bytes).unwrap();
        assert_eq!(store.read_blob(&d).unwrap(), bytes);

        let desc = |digest: &Digest| Descriptor {
            media_type: media::DOCKER_LIST.into(),
            digest: digest.clone(),
            size: 11,
        };
        store
            .set_images(&[("registry.k8s.io/pause:3.10".into(), desc(&d))])
            .unwrap();
        store
            .set_images(&[
                ("registry.k8s.io/pause:3.10".into(), desc(&wrong)),
                ("docker.io/library/busybox:1".into(), desc(&d)),
            ])
            .unwrap();
        let images = store.images().unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images["registry.k8s.io/pause:3.10"].digest, wrong);
        assert_eq!(
            images["docker.io/library/busybox:1"].media_type.to_string(),
            media::DOCKER_LIST
        );
        // A second open keeps what is there.
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.images().unwrap().len(), 2);
        assert!(fs::read_dir(dir.path().join(".ferry/tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn open_refuses_a_directory_that_is_not_a_store_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["notes.txt"]);
        assert!(Store::open(&dir.path().join("missing")).is_err());
        let e = Store::create(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::NotEmpty { .. }), "{e}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["notes.txt"]);
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        Store::create(&empty).unwrap();
        Store::open(&empty).unwrap();
        Store::create(&empty).unwrap();
        Store::create(&dir.path().join("new/store")).unwrap();
        let e = Store::create(&dir.path().join("notes.txt")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("notes.txt is not an OCI image layout: it is a file, not a directory"),
            "{e}"
        );
    }
}
