//! Writing a bundle archive: a deterministic tar of the signed manifest, its signature
//! and the entries, compressed by multi-threaded zstd with fixed parameters.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::{ArchiveError, Entry, MANIFEST_ENTRY, SIGNATURE_ENTRY};
use crate::progress::{Progress, Silent};

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A store blob (verified when it entered the store).
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
pub const DEFAULT_LEVEL: i32 = 1;

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

/// Appends one tar entry: its header block, exactly `size` bytes from `data`, zero
/// padding to the next 512-byte block. Written by hand rather than through
/// `tar::Builder`, whose 8 KiB copies would feed the compressor in small pieces.
///
/// Store blobs are not hashed again here: the store only ever holds blobs that were
/// verified as they were written, and the installer checks every entry against the
/// signed manifest. Re-hashing cost a quarter of the packing time on two cores.
fn append(
    out: &mut impl Write,
    path: &str,
    size: u64,
    mtime: u64,
    mut data: impl Read,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let io = |e| ArchiveError::Io {
        path: PathBuf::from(path),
        error: e,
    };
    let mut h = header(size, mtime);
    h.set_path(path).map_err(io)?;
    h.set_cksum();
    out.write_all(h.as_bytes()).map_err(io)?;
    let mut done = 0u64;
    while done < size {
        let want = buf.len().min((size - done) as usize);
        let n = data.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            return Err(ArchiveError::WrongSize {
                path: path.to_string(),
                expected: size,
                actual: done,
            });
        }
        out.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress.advance(n as u64);
    }
    let padding = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..padding as usize]).map_err(io)?;
    Ok(())
}

/// Writes the archive into `out` and returns it once the zstd frame is complete.
/// `progress` is told the bytes of each entry as they are packed.
pub fn pack<W: Write>(
    out: W,
    manifest_bytes: &[u8],
    signature: &str,
    entries: &[PackEntry],
    options: &PackOptions,
    progress: &dyn Progress,
) -> Result<W, ArchiveError> {
    progress.start("packing", entries.iter().map(|e| e.entry.size).sum());
    let zstd_err = |e| ArchiveError::Io {
        path: PathBuf::from("zstd"),
        error: e,
    };
    let mut encoder = zstd::stream::write::Encoder::new(out, options.level).map_err(zstd_err)?;
    encoder
        .multithread(options.threads.max(1))
        .map_err(zstd_err)?;
    encoder.include_checksum(true).map_err(zstd_err)?;
    let mut buf = vec![0u8; 128 << 10];
    for (path, bytes) in [
        (MANIFEST_ENTRY, manifest_bytes),
        (SIGNATURE_ENTRY, signature.as_bytes()),
    ] {
        append(
            &mut encoder,
            path,
            bytes.len() as u64,
            options.mtime,
            bytes,
            &mut buf,
            &Silent,
        )?;
    }
    for e in entries {
        let size = e.entry.size;
        match &e.source {
            Source::Bytes(bytes) => append(
                &mut encoder,
                &e.entry.path,
                size,
                options.mtime,
                &bytes[..],
                &mut buf,
                progress,
            )?,
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(ArchiveError::io(path))?;
                let len = file.metadata().map_err(ArchiveError::io(path))?.len();
                if len != size {
                    return Err(ArchiveError::WrongSize {
                        path: path.display().to_string(),
                        expected: size,
                        actual: len,
                    });
                }
                append(
                    &mut encoder,
                    &e.entry.path,
                    size,
                    options.mtime,
                    file,
                    &mut buf,
                    progress,
                )?
            }
        }
    }
    // The end of a tar archive: two zero blocks.
    encoder.write_all(&[0u8; 1024]).map_err(zstd_err)?;
    encoder.finish().map_err(zstd_err)
}
