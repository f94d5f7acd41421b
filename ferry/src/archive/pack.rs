//! Writing a bundle archive: a deterministic tar of the signed manifest, its signature
//! and the entries, compressed by multi-threaded zstd with fixed parameters.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::{ArchiveError, Entry, MANIFEST_ENTRY, SIGNATURE_ENTRY};
use crate::digest::Hasher;

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A store blob, re-checked against its digest as it is packed.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PackEntry {
    pub entry: Entry,
    pub source: Source,
}

/// Compression and metadata settings. The same settings give the same bytes.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// zstd level.
    pub level: i32,
    /// zstd worker threads. zstd's multi-threaded output does not depend on the
    /// number of workers, so this only changes speed, never bytes.
    pub threads: u32,
    /// mtime of every entry (SOURCE_DATE_EPOCH, or 0).
    pub mtime: u64,
}

/// The default zstd level, chosen by `benches/bundle_vs_tar_zstd.sh`: bundles are
/// mostly already-compressed layers, where higher levels buy little and cost a lot.
pub const DEFAULT_LEVEL: i32 = 3;

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Hashes and counts what passes through, so a store blob is checked as it is packed.
struct Checked<'a, R> {
    inner: R,
    hasher: Hasher,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Writes the archive into `out` and returns it once the zstd frame is complete.
/// `progress` is told the bytes of each entry as they are packed.
pub fn pack<W: Write>(
    out: W,
    manifest_bytes: &[u8],
    signature: &str,
    entries: &[PackEntry],
    options: &PackOptions,
    progress: &dyn Fn(u64),
) -> Result<W, ArchiveError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| ArchiveError::Io {
            path: PathBuf::from(what),
            source: e,
        }
    };
    let mut encoder = zstd::stream::write::Encoder::new(out, options.level).map_err(io("zstd"))?;
    encoder
        .multithread(options.threads.max(1))
        .map_err(io("zstd"))?;
    encoder.include_checksum(true).map_err(io("zstd"))?;
    let mut tar = tar::Builder::new(encoder);
    for (path, bytes) in [
        (MANIFEST_ENTRY, manifest_bytes),
        (SIGNATURE_ENTRY, signature.as_bytes()),
    ] {
        tar.append_data(&mut header(bytes.len() as u64, options.mtime), path, bytes)
            .map_err(io(path))?;
    }
    for e in entries {
        let mut h = header(e.entry.size, options.mtime);
        match &e.source {
            Source::Bytes(bytes) => {
                tar.append_data(&mut h, &e.entry.path, &bytes[..])
                    .map_err(io(&e.entry.path))?;
                progress(bytes.len() as u64);
            }
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(ArchiveError::io(path))?;
                let len = file.metadata().map_err(ArchiveError::io(path))?.len();
                if len != e.entry.size {
                    return Err(ArchiveError::WrongSize {
                        path: path.display().to_string(),
                        expected: e.entry.size,
                        actual: len,
                    });
                }
                let mut reader = Checked {
                    inner: std::io::BufReader::with_capacity(1 << 20, file),
                    hasher: Hasher::new(),
                    progress,
                };
                tar.append_data(&mut h, &e.entry.path, &mut reader)
                    .map_err(io(&e.entry.path))?;
                let actual = reader.hasher.finish();
                if actual != e.entry.sha256 {
                    return Err(ArchiveError::Altered {
                        path: path.display().to_string(),
                        expected: e.entry.sha256.clone(),
                        actual,
                    });
                }
            }
        }
    }
    let encoder = tar.into_inner().map_err(io("tar"))?;
    encoder.finish().map_err(io("zstd"))
}
