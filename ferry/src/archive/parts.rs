//! Bundles cut into parts (`--split 4G`): `NAME.001`, `NAME.002`, … each with its own
//! minisign signature, whose trusted comment says which bundle it belongs to and
//! which part of how many it is. A reader given the first part finds the rest and
//! says which part is missing or wrong.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::ArchiveError;
use crate::direct::DirectWriter;
use crate::signing::{Prehash, PublicKey};

/// The path of part `index` (1-based) of the bundle `base`.
pub fn part_path(base: &Path, index: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{index:03}"));
    PathBuf::from(s)
}

/// The detached signature file of `path`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// The trusted comment of a part's signature.
pub fn part_comment(bundle: &str, index: usize, count: usize) -> String {
    format!("ferry bundle {bundle} part {index}/{count}")
}

fn parse_part_comment(comment: &str) -> Option<(String, usize, usize)> {
    let rest = comment.strip_prefix("ferry bundle ")?;
    let (bundle, part) = rest.rsplit_once(" part ")?;
    let (i, n) = part.split_once('/')?;
    Some((bundle.to_string(), i.parse().ok()?, n.parse().ok()?))
}

/// One finished output file: where it was written, where it goes, its BLAKE2b-512.
pub struct Part {
    pub tmp: PathBuf,
    pub path: PathBuf,
    pub prehash: [u8; 64],
    pub size: u64,
}

/// Writes output into one file, or into parts of at most `limit` bytes, under
/// temporary names; nothing is held in memory but the current part's hash state.
pub struct PartWriter {
    base: PathBuf,
    limit: Option<u64>,
    /// The part being written: the file (its writes made on a thread of its own,
    /// so that hashing here and writing there overlap), its temp and final paths,
    /// the prehash of its bytes so far and their count.
    current: Option<(DirectWriter, PathBuf, PathBuf, Prehash, u64)>,
    done: Vec<Part>,
    finished: bool,
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(s)
}

impl PartWriter {
    pub fn new(base: &Path, limit: Option<u64>) -> PartWriter {
        PartWriter {
            base: base.to_path_buf(),
            limit: limit.filter(|l| *l > 0),
            current: None,
            done: Vec::new(),
            finished: false,
        }
    }

    fn open_next(&mut self) -> io::Result<()> {
        let path = match self.limit {
            Some(_) => part_path(&self.base, self.done.len() + 1),
            None => self.base.clone(),
        };
        let tmp = tmp_name(&path);
        let file = DirectWriter::create(&tmp)?;
        self.current = Some((file, tmp, path, Prehash::default(), 0));
        Ok(())
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some((w, tmp, path, prehash, size)) = self.current.take() {
            // Out of `current`, the temp file is this code's to remove if it fails
            // (the last write of a full disk fails here).
            let synced = w.finish().and_then(|(file, _)| file.sync_all());
            if let Err(e) = synced {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            self.done.push(Part {
                tmp,
                path,
                prehash: prehash.finish(),
                size,
            });
        }
        Ok(())
    }

    /// Flushes and fsyncs the last part; returns every part, still under temp names.
    pub fn finish(mut self) -> io::Result<Vec<Part>> {
        if self.current.is_none() && self.done.is_empty() {
            self.open_next()?;
        }
        self.close_current()?;
        self.finished = true;
        Ok(std::mem::take(&mut self.done))
    }
}

impl Drop for PartWriter {
    /// A writer dropped before `finish` (a failed build) leaves no temp files behind.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some((_, tmp, ..)) = self.current.take() {
            let _ = std::fs::remove_file(tmp);
        }
        for p in &self.done {
            let _ = std::fs::remove_file(&p.tmp);
        }
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ctrl-C (when the binary catches it) stops the output at its next write:
        // compressing can keep the reads long done.
        if crate::interrupt::requested() {
            return Err(io::Error::other(crate::interrupt::Interrupted));
        }
        if self.current.is_none() {
            self.open_next()?;
        }
        let room = match (self.limit, &self.current) {
            (Some(limit), Some((.., size))) => limit - size,
            _ => u64::MAX,
        };
        if room == 0 {
            self.close_current()?;
            return self.write(buf);
        }
        let n = (buf.len() as u64).min(room) as usize;
        let (w, _, _, prehash, size) = self.current.as_mut().expect("opened above");
        w.write_all(&buf[..n])?;
        prehash.update(&buf[..n]);
        *size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((w, ..)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Reads a bundle given its file, or its first part: all parts in turn, each checked
/// against its signature when its last byte has been read.
pub struct PartReader {
    parts: Vec<PathBuf>,
    signatures: Vec<String>,
    bundle: String,
    key: Option<PublicKey>,
    index: usize,
    current: Option<(io::BufReader<File>, Prehash)>,
}

fn part_error(message: String) -> io::Error {
    io::Error::other(message)
}

impl PartReader {
    /// Opens `path`. A name ending in `.001` is the first part of a split bundle:
    /// the others are found beside it, and each is checked against its signature
    /// (with `key`; without one, only their presence is checked).
    pub fn open(path: &Path, key: Option<&PublicKey>) -> Result<PartReader, ArchiveError> {
        let name = path.to_string_lossy();
        let Some(base) = name.strip_suffix(".001") else {
            let first = part_path(path, 1);
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && first.is_file() => {
                    return Err(ArchiveError::io(path)(std::io::Error::new(
                        e.kind(),
                        format!(
                            "it was split into parts: give the first, {}",
                            first.display()
                        ),
                    )))
                }
                Err(e) => return Err(ArchiveError::io(path)(e)),
            };
            // A later part given for the bundle: its signature says which it is.
            let named = std::fs::read_to_string(signature_path(path))
                .ok()
                .and_then(|sig| crate::signing::trusted_comment(&sig))
                .and_then(|c| parse_part_comment(&c));
            if let Some((_, i, count)) = named.filter(|(_, _, count)| *count > 1) {
                // Parts are found by the names the build gave them: NAME.001, ...
                let numbered = name
                    .rsplit_once('.')
                    .filter(|(_, n)| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
                let fix = match numbered {
                    Some((base, _)) => format!("give the first, {base}.001"),
                    None => format!(
                        "the parts must keep the names the build gave them (NAME.001 to NAME.{count:03}): give the first"
                    ),
                };
                return Err(ArchiveError::io(path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("it is part {i} of {count} of a split bundle: {fix}"),
                )));
            }
            // Linux opens a directory; reading it would fail as if the bundle
            // were corrupt, and a directory is no refused bundle.
            if file.metadata().map_err(ArchiveError::io(path))?.is_dir() {
                return Err(ArchiveError::io(path)(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "it is a directory, not a bundle",
                )));
            }
            // Read through the file opened here: a pipe (mkfifo) opened twice
            // loses its writer at the first close and waits forever at the next.
            return Ok(PartReader {
                parts: vec![path.to_path_buf()],
                signatures: Vec::new(),
                bundle: String::new(),
                key: None,
                index: 0,
                current: Some((
                    io::BufReader::with_capacity(1 << 20, file),
                    Prehash::default(),
                )),
            });
        };
        let base = PathBuf::from(base);
        let first_sig = signature_path(path);
        let text = std::fs::read_to_string(&first_sig).map_err(|_| {
            ArchiveError::Part(format!(
                "part 1 ({}) has no signature file {}",
                path.display(),
                first_sig.display()
            ))
        })?;
        let comment = crate::signing::trusted_comment(&text).ok_or_else(|| {
            ArchiveError::Part(format!("{} is not a part signature", first_sig.display()))
        })?;
        let (bundle, i, count) = parse_part_comment(&comment).ok_or_else(|| {
            ArchiveError::Part(format!(
                "{} does not name a bundle part",
                first_sig.display()
            ))
        })?;
        if i != 1 || count == 0 {
            return Err(ArchiveError::Part(format!(
                "{} is part {i} of {count}, not the first",
                path.display()
            )));
        }
        let mut parts = Vec::new();
        let mut signatures = Vec::new();
        for index in 1..=count {
            let p = part_path(&base, index);
            if !p.is_file() {
                return Err(ArchiveError::Part(format!(
                    "part {index} of {count} ({}) is missing",
                    p.display()
                )));
            }
            let sig = std::fs::read_to_string(signature_path(&p)).map_err(|_| {
                ArchiveError::Part(format!(
                    "part {index} of {count} ({}) has no signature file",
                    p.display()
                ))
            })?;
            // Checked for good when the part has been read; a part whose
            // signature names another place is said before any byte is read
            // (swapped parts, or one of another bundle, fail to decompress first).
            let named = crate::signing::trusted_comment(&sig).unwrap_or_default();
            if named != part_comment(&bundle, index, count) {
                return Err(ArchiveError::Part(format!(
                    "part {index} of {count} ({}) is signed as {named:?}: a part out of order, or of another bundle",
                    p.display()
                )));
            }
            parts.push(p);
            signatures.push(sig);
        }
        if part_path(&base, count + 1).exists() {
            return Err(ArchiveError::Part(format!(
                "{} is there, but the bundle has {count} parts: it belongs to another bundle",
                part_path(&base, count + 1).display()
            )));
        }
        Ok(PartReader {
            parts,
            signatures,
            bundle,
            key: key.cloned(),
            index: 0,
            current: None,
        })
    }

    /// The files read, in order.
    pub fn parts(&self) -> &[PathBuf] {
        &self.parts
    }

    /// Total size of all parts.
    pub fn total_size(&self) -> u64 {
        self.parts
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn check_part(&self, index: usize, prehash: [u8; 64]) -> io::Result<()> {
        let (Some(key), Some(sig)) = (&self.key, self.signatures.get(index)) else {
            return Ok(());
        };
        let count = self.parts.len();
        let path = self.parts[index].display();
        let comment = key.verify_hash(&prehash, sig).map_err(|e| {
            part_error(format!(
                "part {} of {count} ({path}) is wrong: {e}",
                index + 1
            ))
        })?;
        if comment != part_comment(&self.bundle, index + 1, count) {
            return Err(part_error(format!(
                "part {} of {count} ({path}) is wrong: it is signed as {comment:?}",
                index + 1
            )));
        }
        Ok(())
    }
}

/// The first part of the split bundle `path` whose bytes its signature does not
/// cover, said as [`PartReader`] says it: for naming the part at fault once a
/// stream through them failed (a part's check comes only at its end, and a
/// swapped or damaged part usually fails to decompress before that).
pub fn wrong_part(path: &Path, key: &PublicKey) -> Option<String> {
    let mut reader = PartReader::open(path, Some(key)).ok()?;
    if reader.signatures.is_empty() {
        return None;
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
}

impl Read for PartReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                if self.index >= self.parts.len() {
                    return Ok(0);
                }
                let file = File::open(&self.parts[self.index])?;
                self.current = Some((
                    io::BufReader::with_capacity(1 << 20, file),
                    Prehash::default(),
                ));
            }
            let checked = self.key.is_some() && !self.signatures.is_empty();
            let (reader, prehash) = self.current.as_mut().expect("opened above");
            let n = reader.read(buf)?;
            if n > 0 {
                // Only parts carry signatures to check: a whole bundle's detached
                // signature is for `minisign`, its content is covered from inside.
                if checked {
                    prehash.update(&buf[..n]);
                }
                return Ok(n);
            }
            let (_, prehash) = self.current.take().expect("present");
            self.check_part(self.index, prehash.finish())?;
            self.index += 1;
        }
    }
}
