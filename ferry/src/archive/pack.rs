//! Writing a bundle archive: a deterministic tar of the signed manifest, its signature
//! and the entries, as a sequence of zstd frames with fixed parameters.
//!
//! Layers and release archives are compressed already: compressing them again
//! costs most of a pack and saves nothing. So runs of entries that start like a
//! compressed stream (gzip, zstd, xz, bzip2) go into frames of raw blocks, which
//! cost a copy to write and to read; everything else (manifests, configs, plain
//! binaries, YAML) into frames compressed by multi-threaded zstd. Concatenated
//! frames are one zstd stream to every decoder (`zstd -dc BUNDLE | tar -t`), and
//! the choice depends only on the entries' bytes, so bundles stay reproducible.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::{ArchiveError, Entry, MANIFEST_ENTRY, SIGNATURE_ENTRY};
use crate::pipe::HashBehind;
use crate::progress::{Progress, Silent};

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A store blob, checked against its digest again as it is packed.
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
/// A store blob's bytes also go to `hash`, so a blob damaged since it was verified
/// into the store is not signed into a bundle the site would refuse.
#[allow(clippy::too_many_arguments)]
fn append(
    out: &mut impl Write,
    path: &str,
    size: u64,
    mtime: u64,
    mut data: impl Read,
    buf: &mut [u8],
    progress: &dyn Progress,
    mut hash: Option<&mut HashBehind>,
) -> Result<(), ArchiveError> {
    let io = |e| ArchiveError::Io {
        path: PathBuf::from(path),
        error: e,
    };
    // A failed write is the output's (a full disk), not the entry's.
    let written = |error| output_error(Some(path), error);
    let mut h = header(size, mtime);
    h.set_path(path).map_err(io)?;
    h.set_cksum();
    out.write_all(h.as_bytes()).map_err(written)?;
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
        if let Some(hash) = hash.as_deref_mut() {
            hash.update(&buf[..n]);
        }
        out.write_all(&buf[..n]).map_err(written)?;
        done += n as u64;
        progress.advance(n as u64);
    }
    let padding = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..padding as usize])
        .map_err(written)?;
    Ok(())
}

/// A failed write of the archive (while `entry` was written, if one was); the
/// output is named by the caller, which knows it.
fn output_error(entry: Option<&str>, error: std::io::Error) -> ArchiveError {
    ArchiveError::Output {
        output: PathBuf::new(),
        entry: entry.map(str::to_string),
        error,
    }
}

/// Whether data starting with `head` is a compressed stream, which zstd cannot
/// shrink: gzip, zstd, xz or bzip2 magic.
fn compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || head.starts_with(b"BZh")
}

/// The largest block of a zstd frame (RFC 8878, Block_Maximum_Size).
const BLOCK: usize = 128 << 10;

/// A zstd frame of raw (stored) blocks (RFC 8878, section 3.1.1): a header naming
/// a 128 KiB window, then each block with its 3-byte header, then the content
/// checksum (the low 32 bits of XXH64), so that a changed byte in a tar header or
/// padding, which no sha256 covers, is caught as in a compressed frame.
struct RawFrame<W: Write> {
    out: W,
    checksum: xxhash_rust::xxh64::Xxh64,
    block: Vec<u8>,
    /// A full block held back until it is known whether it is the last.
    pending: Option<Vec<u8>>,
}

impl<W: Write> RawFrame<W> {
    fn new(mut out: W) -> std::io::Result<RawFrame<W>> {
        // Magic, Frame_Header_Descriptor 0x04 (a content checksum; no single
        // segment, content size or dictionary), Window_Descriptor: exponent 7
        // (2^17 = 128 KiB).
        out.write_all(&[0x28, 0xb5, 0x2f, 0xfd, 0x04, 7 << 3])?;
        Ok(RawFrame {
            out,
            checksum: xxhash_rust::xxh64::Xxh64::new(0),
            block: Vec::with_capacity(BLOCK),
            pending: None,
        })
    }

    fn emit(&mut self, data: &[u8], last: bool) -> std::io::Result<()> {
        // Block_Header: Last_Block (bit 0), Block_Type 0 = Raw (bits 1-2), Block_Size.
        let header = (data.len() as u32) << 3 | u32::from(last);
        self.out.write_all(&header.to_le_bytes()[..3])?;
        self.out.write_all(data)
    }

    fn finish(mut self) -> std::io::Result<W> {
        let rest = std::mem::take(&mut self.block);
        match self.pending.take() {
            Some(full) if rest.is_empty() => self.emit(&full, true)?,
            Some(full) => {
                self.emit(&full, false)?;
                self.emit(&rest, true)?;
            }
            None => self.emit(&rest, true)?,
        }
        let sum = self.checksum.digest() as u32;
        self.out.write_all(&sum.to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for RawFrame<W> {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let n = data.len();
        self.checksum.update(data);
        while !data.is_empty() {
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
                if let Some(before) = self.pending.replace(full) {
                    self.emit(&before, false)?;
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The frame being written: compressed, or raw blocks.
enum Frame<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Raw(RawFrame<W>),
}

impl<W: Write> Frame<W> {
    fn zstd(out: W, options: &PackOptions) -> std::io::Result<Frame<W>> {
        let mut encoder = zstd::stream::write::Encoder::new(out, options.level)?;
        encoder.multithread(options.threads.max(1))?;
        encoder.include_checksum(true)?;
        Ok(Frame::Zstd(encoder))
    }

    fn is_raw(&self) -> bool {
        matches!(self, Frame::Raw(_))
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Frame::Zstd(e) => e.finish(),
            Frame::Raw(r) => r.finish(),
        }
    }

    /// This frame if it is of the kind wanted, else the next one.
    fn into_kind(self, raw: bool, options: &PackOptions) -> std::io::Result<Frame<W>> {
        if self.is_raw() == raw {
            return Ok(self);
        }
        let out = self.finish()?;
        if raw {
            Ok(Frame::Raw(RawFrame::new(out)?))
        } else {
            Frame::zstd(out, options)
        }
    }
}

impl<W: Write> Write for Frame<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Frame::Zstd(e) => e.write(data),
            Frame::Raw(r) => r.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Frame::Zstd(e) => e.flush(),
            Frame::Raw(r) => r.flush(),
        }
    }
}

/// Writes the archive into `out` and returns it once the last frame is complete.
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
    let zstd_err = |e| output_error(None, e);
    let mut frame = Frame::zstd(out, options).map_err(zstd_err)?;
    let mut buf = vec![0u8; 128 << 10];
    for (path, bytes) in [
        (MANIFEST_ENTRY, manifest_bytes),
        (SIGNATURE_ENTRY, signature.as_bytes()),
    ] {
        append(
            &mut frame,
            path,
            bytes.len() as u64,
            options.mtime,
            bytes,
            &mut buf,
            &Silent,
            None,
        )?;
    }
    // On a thread of its own: packing waits on the BLAKE2b of the signature, and
    // the other core has room for this.
    // Digests are checked as they come, without the copy waiting for each one; all
    // before the archive is finished.
    let mut hash = crate::pipe::hash_behind();
    let mut hashing: VecDeque<&PackEntry> = VecDeque::new();
    for e in entries {
        let size = e.entry.size;
        // The first bytes say which kind of frame the entry goes in.
        let mut head = [0u8; 6];
        let (n, data): (usize, Box<dyn Read>) = match &e.source {
            Source::Bytes(bytes) => {
                let n = bytes.len().min(head.len());
                head[..n].copy_from_slice(&bytes[..n]);
                (n, Box::new(&bytes[n..]))
            }
            Source::File(path) => {
                let mut file = std::fs::File::open(path).map_err(ArchiveError::io(path))?;
                let len = file.metadata().map_err(ArchiveError::io(path))?.len();
                if len != size {
                    return Err(ArchiveError::ShortBlob {
                        path: path.clone(),
                        expected: size,
                        actual: len,
                    });
                }
                let n = read_up_to(&mut file, &mut head).map_err(ArchiveError::io(path))?;
                // Ctrl-C (when the binary catches it) stops the pack at its next read.
                let file = crate::interrupt::Interruptible::new(file, crate::interrupt::flag());
                (n, Box::new(file))
            }
        };
        frame = frame
            .into_kind(compressed(&head[..n]), options)
            .map_err(zstd_err)?;
        let file = match &e.source {
            Source::File(path) => Some(path),
            Source::Bytes(_) => None,
        };
        append(
            &mut frame,
            &e.entry.path,
            size,
            options.mtime,
            (&head[..n]).chain(data),
            &mut buf,
            progress,
            file.is_some().then_some(&mut hash),
        )?;
        if let Some(path) = file {
            hash.end().map_err(ArchiveError::io(path))?;
            hashing.push_back(e);
            check_hashed(&mut hash, &mut hashing, false)?;
        }
    }
    check_hashed(&mut hash, &mut hashing, true)?;
    // The end of a tar archive: two zero blocks.
    frame.write_all(&[0u8; 1024]).map_err(zstd_err)?;
    frame.finish().map_err(zstd_err)
}

/// Compares the digests `hash` has ready (all of them, if `wait`) with the store
/// blobs `hashing` holds, oldest first.
fn check_hashed(
    hash: &mut HashBehind,
    hashing: &mut VecDeque<&PackEntry>,
    wait: bool,
) -> Result<(), ArchiveError> {
    while let Some(e) = hashing.front() {
        let Source::File(path) = &e.source else {
            unreachable!("only store blobs are hashed")
        };
        let Some(actual) = hash.ended(wait).map_err(ArchiveError::io(path))? else {
            return Ok(());
        };
        if actual != e.entry.sha256 {
            return Err(ArchiveError::Damaged {
                path: path.clone(),
                actual,
            });
        }
        hashing.pop_front();
    }
    Ok(())
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_are_zstd_that_decodes_back_with_compressed_ones_around_them() {
        let options = PackOptions {
            level: 3,
            threads: 1,
            mtime: 0,
        };
        let gz: Vec<u8> = [0x1f, 0x8b]
            .into_iter()
            .chain((0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8))
            .collect();
        let text = b"plain text ".repeat(10_000);
        for sizes in [
            vec![0usize],
            vec![1],
            vec![BLOCK],
            vec![BLOCK + 1, 2 * BLOCK],
        ] {
            let mut frame = Frame::zstd(Vec::new(), &options).unwrap();
            let mut want = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                frame.write_all(&text[..100]).unwrap();
                want.extend_from_slice(&text[..100]);
                frame = frame.into_kind(true, &options).unwrap();
                let data = &gz[..(*n).min(gz.len())];
                frame.write_all(data).unwrap();
                want.extend_from_slice(data);
                if i % 2 == 0 {
                    frame = frame.into_kind(false, &options).unwrap();
                }
            }
            let bytes = frame.finish().unwrap();
            assert_eq!(zstd::decode_all(&bytes[..]).unwrap(), want, "{sizes:?}");
        }
        // Raw blocks cost their size plus 3 bytes each, and the frame 10.
        let mut raw = RawFrame::new(Vec::new()).unwrap();
        raw.write_all(&gz).unwrap();
        let mut out = raw.finish().unwrap();
        assert_eq!(out.len(), gz.len() + 10 + 3 * gz.len().div_ceil(BLOCK));
        // A changed byte of the content fails the frame's checksum.
        out[1000] ^= 1;
        assert!(zstd::decode_all(&out[..]).is_err());
        assert!(compressed(&gz) && !compressed(&text));
    }
}
