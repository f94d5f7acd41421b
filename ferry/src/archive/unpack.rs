//! Verifying and unpacking a bundle in one streaming pass.
//!
//! The signature over the manifest is checked before anything else is trusted. Then
//! every entry is hashed against the manifest as it is decompressed; blobs the store
//! lacks are written into a staging directory of the store and fsynced. Only when the whole archive
//! has checked out (no entry missing, altered, extra, duplicated, oversized or of the
//! wrong kind, nothing after its end) are they renamed into `blobs/sha256/` and named
//! in `index.json`. A refused bundle leaves nothing of itself visible in the store.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use super::{entry_path, read_head_entries, ArchiveError, Entry, Head, MAX_INDEX_BYTES};
use crate::digest::Digest;
use crate::direct::{DirectWriter, Flusher};
use crate::pipe::HashBehind;
use crate::progress::Progress;
use crate::signing::PublicKey;
use crate::store::{ClaimedDir, Store};

/// What a verify or unpack did.
#[derive(Debug)]
pub struct Outcome {
    pub head: Head,
    /// Blobs written into the store.
    pub blobs_written: usize,
    pub bytes_written: u64,
    /// Blobs the store already held (checked in the bundle, not written again).
    pub blobs_present: usize,
    pub bytes_present: u64,
    /// Names the store gave another manifest before this unpack moved them.
    pub moved: Vec<Moved>,
}

/// A name (`docker.io/library/busybox:1.36`) an unpack took from the manifest
/// the store named by it: two releases that carry one tag with other content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub name: String,
    pub from: Digest,
    pub to: Digest,
}

/// Removes the staging directory however the unpack ends.
/// Flushes staged files to disk on a thread of its own, so the disk writes one blob
/// while the next is decompressed and hashed. Every file is synced before any is
/// renamed into place.
struct Syncer {
    tx: SyncSender<(io::Result<File>, PathBuf)>,
    thread: std::thread::JoinHandle<Result<(), ArchiveError>>,
}

impl Syncer {
    fn start() -> Syncer {
        // Bounded: each queued file holds a descriptor.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(io::Result<File>, PathBuf)>(32);
        let thread = std::thread::spawn(move || {
            for (file, path) in rx {
                file.and_then(|f| f.sync_all())
                    .map_err(ArchiveError::io(&path))?;
            }
            Ok(())
        });
        Syncer { tx, thread }
    }

    /// Whether a file could not be written or synced: while `self` holds a sender,
    /// that is the only way the thread ends.
    fn failed(&self) -> bool {
        self.thread.is_finished()
    }

    /// Where the file written at `path` goes once written (or the error in writing
    /// it). Once the thread has stopped, `finish` says why.
    fn taker(&self, path: &Path) -> impl FnOnce(io::Result<File>) + Send + 'static {
        let (tx, path) = (self.tx.clone(), path.to_path_buf());
        move |file| {
            let _ = tx.send((file, path));
        }
    }

    fn finish(self) -> Result<(), ArchiveError> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| ArchiveError::Corrupt("the sync thread panicked".into()))?
    }
}

fn kind_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Fifo => "fifo".into(),
        other => format!("{other:?}"),
    }
}

/// Which side of a copy failed: reading the bundle is its fault, writing the
/// store is this host's (a full disk is not a corrupt bundle).
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies an entry's bytes (hashed as they are read) into `out`.
fn copy(from: &mut impl Read, out: &mut dyn Write, buf: &mut [u8]) -> Result<(), CopyError> {
    loop {
        let n = from.read(buf).map_err(CopyError::Read)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

/// The bytes free for an unprivileged writer on the filesystem holding `dir`;
/// `None` for one that has no size to say (ramfs reports 0 blocks in all).
fn free_bytes(dir: &std::path::Path) -> io::Result<Option<u64>> {
    let st = rustix::fs::statvfs(dir)?;
    if st.f_blocks == 0 {
        return Ok(None);
    }
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// Checks a bundle without writing anything. `progress` hears of "verifying" once
/// the signed manifest gives the total, then of every byte checked.
pub fn verify(
    input: impl Read + Send + 'static,
    key: &PublicKey,
    progress: &dyn Progress,
) -> Result<Outcome, ArchiveError> {
    run(input, key, None, progress)
}

/// Checks a bundle and adds it to `store` ("unpacking", as [`verify`]).
pub fn unpack(
    input: impl Read + Send + 'static,
    key: &PublicKey,
    store: &Store,
    progress: &dyn Progress,
) -> Result<Outcome, ArchiveError> {
    run(input, key, Some(store), progress)
}

/// What [`stream`] hands a consumer: one verified-as-read entry of the bundle.
pub struct EntryReader<'a> {
    /// The entry as the signed manifest names it.
    pub entry: &'a Entry,
    inner: &'a mut dyn Read,
    hasher: &'a mut HashBehind,
    progress: &'a dyn Progress,
}

impl EntryReader<'_> {
    /// The whole entry, if it is at most `limit` bytes.
    pub fn read_all(&mut self, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if self.entry.size > limit {
            return Err(ArchiveError::WrongSize {
                path: self.entry.path.clone(),
                expected: limit,
                actual: self.entry.size,
            });
        }
        let mut bytes = Vec::with_capacity(self.entry.size as usize);
        self.read_to_end(&mut bytes)
            .map_err(|e| ArchiveError::Corrupt(format!("reading {}: {e}", self.entry.path)))?;
        Ok(bytes)
    }
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Streams a bundle, checking it as [`verify`] does, and hands every entry to
/// `each` as it is read. Whatever of an entry `each` leaves unread is read (and
/// hashed) after it; an entry whose bytes do not match the signed manifest is an
/// error once it has been read, so `each` must not act on an entry's bytes as
/// trusted before the whole bundle has checked out. Returns the head once
/// everything has. `each`'s own errors abort the stream.
pub fn stream(
    input: impl Read + Send + 'static,
    key: &PublicKey,
    what: &str,
    progress: &dyn Progress,
    before: &mut dyn FnMut(&Head) -> Result<(), ArchiveError>,
    each: &mut dyn FnMut(EntryReader<'_>) -> Result<(), ArchiveError>,
) -> Result<Head, ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    let decoder = zstd::stream::read::Decoder::new(super::zstd_input(input)?)
        .map_err(|e| ArchiveError::NotABundle(format!("not zstd: {e}")))?;
    // Decompress on one core while this one hashes and writes.
    let mut archive = tar::Archive::new(crate::pipe::read_ahead(decoder));
    let mut entries = archive
        .entries()
        .map_err(|e| ArchiveError::NotABundle(e.to_string()))?;
    let head = read_head_entries(&mut entries, Some(key))?;
    before(&head)?;
    let manifest = &head.manifest;
    progress.start(what, manifest.content_size());
    let expected: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut buf = vec![0u8; 1 << 18];
    let mut last: Option<String> = None;
    // SHA-256 runs on a thread of its own: this one only copies the bytes.
    let mut hasher = crate::pipe::hash_behind();
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry_path(&entry)?;
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(ArchiveError::NotRegular {
                path,
                kind: kind_name(kind),
            });
        }
        let want = *expected
            .get(path.as_str())
            .ok_or_else(|| ArchiveError::Unexpected { path: path.clone() })?;
        if !seen.insert(path.clone()) {
            return Err(ArchiveError::Duplicate { path });
        }
        // A bundle is written in the manifest's (sorted) order: anything else was
        // not made by `build`, even if every byte checks out.
        if let Some(last) = last.as_ref().filter(|l| path.as_str() < l.as_str()) {
            return Err(ArchiveError::Corrupt(format!(
                "entries out of order: {path} after {last}"
            )));
        }
        last = Some(path.clone());
        let size = entry.header().size().map_err(corrupt)?;
        if size != want.size {
            // Refused before a byte of it is read: no decompression bomb gets far.
            return Err(ArchiveError::WrongSize {
                path,
                expected: want.size,
                actual: size,
            });
        }
        {
            // Never more than the entry holds, whatever `each` asks for.
            let mut limited = (&mut entry).take(want.size);
            each(EntryReader {
                entry: want,
                inner: &mut limited,
                hasher: &mut hasher,
                progress,
            })?;
            loop {
                let n = limited.read(&mut buf).map_err(corrupt)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                progress.advance(n as u64);
            }
        }
        let len = hasher.len();
        let actual = hasher.finish().map_err(corrupt)?;
        if len != want.size {
            return Err(ArchiveError::Corrupt(format!("{path} is cut short")));
        }
        if actual != want.sha256 {
            return Err(ArchiveError::Altered {
                path,
                expected: want.sha256.clone(),
                actual,
            });
        }
    }
    if let Some(missing) = manifest.entries.iter().find(|e| !seen.contains(&e.path)) {
        return Err(ArchiveError::Missing {
            path: missing.path.clone(),
        });
    }
    // Past the tar's end there may only be its zero padding, up to the end of the
    // zstd frame, whose checksum is checked by reading it to the end.
    let mut rest = archive.into_inner();
    loop {
        let n = rest.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(ArchiveError::Corrupt(
                "data after the end of the archive".into(),
            ));
        }
    }
    Ok(head)
}

/// Before an unpack into `s` writes anything: its base is there (for a delta),
/// what a killed unpack left is reclaimed, the disk has room; then a staging
/// directory of its own.
fn prepare(s: &Store, head: &Head) -> Result<ClaimedDir, ArchiveError> {
    let manifest = &head.manifest;
    if let Some(base) = &manifest.base {
        let missing_base = || ArchiveError::BaseMissing {
            name: base.name.clone(),
            version: base.version.clone(),
            manifest: base.manifest.clone(),
            store: s.root().to_path_buf(),
        };
        // What the delta takes from its base is what it needs: a store that holds
        // all of it (its base, or its own release unpacked in full) takes it.
        let gone: Vec<&str> = manifest
            .external
            .iter()
            .filter(|e| !fs::metadata(s.root().join(&e.path)).is_ok_and(|m| m.len() == e.size))
            .map(|e| e.path.as_str())
            .collect();
        if !gone.is_empty() && !s.bundle_record(&base.manifest).is_file() {
            return Err(missing_base());
        }
        if let Some(first) = gone.first() {
            return Err(ArchiveError::BaseIncomplete {
                name: base.name.clone(),
                version: base.version.clone(),
                store: s.root().to_path_buf(),
                missing: gone.len(),
                first: first.to_string(),
            });
        }
    }
    // What an unpack killed midway left is reclaimed first; its space counts.
    s.reclaim_staging().map_err(ArchiveError::Store)?;
    // What this bundle adds, against what the store's disk has: refused up
    // front with the numbers rather than halfway through.
    let need: u64 = manifest
        .entries
        .iter()
        .filter(|e| !s.has_blob(&e.sha256))
        .map(|e| e.size)
        .sum();
    let free = free_bytes(s.root()).map_err(ArchiveError::io(s.root()))?;
    if let Some(free) = free.filter(|free| need > *free) {
        return Err(ArchiveError::NoSpace {
            store: s.root().to_path_buf(),
            need,
            free,
        });
    }
    s.claim_staging(&format!("{}-{}", &head.id.hex()[..16], std::process::id()))
        .map_err(ArchiveError::Store)
}

fn run(
    input: impl Read + Send + 'static,
    key: &PublicKey,
    store: Option<&Store>,
    progress: &dyn Progress,
) -> Result<Outcome, ArchiveError> {
    // The blobs found already there stay until the commit names them.
    let _kept = store
        .map(crate::gc::keep_blobs)
        .transpose()
        .map_err(ArchiveError::Store)?;
    let staging: std::cell::OnceCell<ClaimedDir> = std::cell::OnceCell::new();
    let mut staged: Vec<(PathBuf, Digest)> = Vec::new();
    let mut syncer = store.map(|_| Syncer::start());
    let mut index_bytes: Option<Vec<u8>> = None;
    let mut outcome_written = (0usize, 0u64);
    let mut outcome_present = (0usize, 0u64);
    let mut moved = Vec::new();
    let mut buf = vec![0u8; 1 << 18];
    let mut flusher = Flusher::for_many_files();
    let what = if store.is_some() {
        "unpacking"
    } else {
        "verifying"
    };
    let head = stream(
        input,
        key,
        what,
        progress,
        &mut |head| {
            if let Some(s) = store {
                let _ = staging.set(prepare(s, head)?);
            }
            Ok(())
        },
        &mut |mut entry| {
            let path = entry.entry.path.clone();
            let size = entry.entry.size;
            if path == "index.json" || path == "oci-layout" {
                let bytes = entry.read_all(MAX_INDEX_BYTES)?;
                if path == "index.json" {
                    index_bytes = Some(bytes);
                }
                return Ok(());
            }
            let digest = entry.entry.sha256.clone();
            match (store, staging.get()) {
                (Some(s), Some(stage)) if !s.has_blob(&digest) => {
                    let tmp = stage.path().join(digest.hex());
                    // Around the page cache: see `crate::direct`.
                    let mut out = DirectWriter::create_with(&tmp, &mut flusher)
                        .map_err(ArchiveError::io(&tmp))?;
                    copy(&mut entry, &mut out, &mut buf).map_err(|e| match e {
                        CopyError::Read(e) => ArchiveError::Corrupt(e.to_string()),
                        CopyError::Write(e) => ArchiveError::io(&tmp)(e),
                    })?;
                    // Written, then synced, by threads of their own while the next
                    // entry is read.
                    let taker = syncer.as_ref().map(|s| s.taker(&tmp));
                    out.finish_then(taker.expect("a store has a syncer"))
                        .map_err(ArchiveError::io(&tmp))?;
                    if syncer.as_ref().is_some_and(Syncer::failed) {
                        let stopped = syncer.take().expect("checked above").finish();
                        return Err(stopped.err().unwrap_or_else(|| {
                            ArchiveError::Corrupt("the sync thread stopped".into())
                        }));
                    }
                    staged.push((tmp, digest));
                    outcome_written = (outcome_written.0 + 1, outcome_written.1 + size);
                }
                _ => outcome_present = (outcome_present.0 + 1, outcome_present.1 + size),
            }
            Ok(())
        },
    )?;
    if let Some(stage) = staging.get() {
        // A failure here is this host's, not the bundle's.
        flusher.wait().map_err(ArchiveError::io(stage.path()))?;
    }
    if let Some(syncer) = syncer {
        syncer.finish()?;
    }
    if let Some(store) = store {
        let images = match &index_bytes {
            Some(bytes) => crate::store::parse_index(bytes)
                .map_err(|e| ArchiveError::BadManifest(format!("index.json: {e}")))?,
            None => Vec::new(),
        };
        moved = commit(store, &staged, &head, &images)?;
    }
    drop(staging);
    Ok(Outcome {
        head,
        blobs_written: outcome_written.0,
        bytes_written: outcome_written.1,
        blobs_present: outcome_present.0,
        bytes_present: outcome_present.1,
        moved,
    })
}

/// Moves verified blobs into place, names the images and records the bundle;
/// returns the names it moved from another manifest.
fn commit(
    store: &Store,
    staged: &[(PathBuf, Digest)],
    head: &Head,
    images: &[(String, crate::manifest::Descriptor)],
) -> Result<Vec<Moved>, ArchiveError> {
    store.adopt_blobs(staged)?;
    let mut moved = Vec::new();
    if !images.is_empty() {
        let before = store.images()?;
        moved = images
            .iter()
            .filter_map(|(name, desc)| {
                let old = before.get(name).filter(|old| old.digest != desc.digest)?;
                Some(Moved {
                    name: name.clone(),
                    from: old.digest.clone(),
                    to: desc.digest.clone(),
                })
            })
            .collect();
        store.set_images(images)?;
    }
    store.record_bundle(&head.id, &head.manifest_bytes)?;
    Ok(moved)
}
