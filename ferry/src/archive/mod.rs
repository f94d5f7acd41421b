//! The bundle archive: one zstd-compressed tar that carries a release across the air gap.
//!
//! ```text
//! ferry-bundle.json           the bundle manifest: format, name, version, platforms,
//!                             spec, lock, images, and every entry's path, size, sha256
//! ferry-bundle.json.minisig   its minisign signature
//! blobs/sha256/<hex>          the OCI layout restricted to the spec's images,
//! index.json                  entries sorted by path
//! oci-layout
//! ```
//! Everything is deterministic (sorted entries, fixed mtime, uid/gid 0, fixed modes,
//! fixed zstd parameters), so one lock and one content give one byte sequence. The
//! reader trusts nothing before the manifest's signature checks out, then checks every
//! entry against it while streaming (see [`unpack`]).

pub mod pack;
pub mod parts;
pub mod releases;
pub mod unpack;
pub mod write;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;
use crate::signing::{PublicKey, SignError};

/// The format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The first entry: the bundle manifest.
pub const MANIFEST_ENTRY: &str = "ferry-bundle.json";
/// The second entry: the manifest's signature.
pub const SIGNATURE_ENTRY: &str = "ferry-bundle.json.minisig";
/// A manifest larger than this is refused before it is read.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
const MAX_SIGNATURE_BYTES: u64 = 4096;
/// `index.json` entries larger than this are refused (it is parsed in memory).
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// The signed description of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    pub platforms: Vec<Platform>,
    /// The release spec's text.
    pub spec: String,
    /// The lock's text.
    pub lock: String,
    /// For a delta bundle: the bundle it applies on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseBundle>,
    pub images: Vec<BundleImage>,
    /// The files it carries (as artifacts named `files/<name>:<version>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BundleFile>,
    /// The Helm charts it carries (as artifacts named `charts/<name>:<version>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<BundleChart>,
    /// Every entry after the signature, sorted by path.
    pub entries: Vec<Entry>,
    /// Blobs the images need that a delta leaves to its base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<Entry>,
}

/// The bundle a delta builds on, by the digest of its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseBundle {
    pub name: String,
    pub version: String,
    pub manifest: Digest,
}

/// One image of a bundle, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleImage {
    pub name: String,
    pub digest: Digest,
    pub media_type: crate::media::MediaType,
    pub platforms: Vec<Platform>,
    /// Bytes of every blob the image needs (manifests included), shared ones counted.
    pub size: u64,
}

/// One file of a bundle, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub name: String,
    pub version: String,
    /// The file name it is saved as (the last segment of its URL).
    pub file_name: String,
    /// Empty for a platform-independent file.
    pub platforms: Vec<Platform>,
    /// Bytes of the file on every platform.
    pub size: u64,
}

/// One Helm chart of a bundle, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleChart {
    pub name: String,
    pub version: String,
    /// Bytes of its .tgz.
    pub size: u64,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Writing the archive failed (its output, not a file that goes into it), while
    /// `entry` was written, if it was one's turn.
    #[error("{}: {error}{}", output.display(), entry.as_ref().map(|e| format!(" (writing entry {e})")).unwrap_or_default())]
    Output {
        output: PathBuf,
        entry: Option<String>,
        error: std::io::Error,
    },
    #[error("not a ferry bundle: {0}")]
    NotABundle(String),
    #[error("the bundle is not signed: its second entry is {0:?}, not {SIGNATURE_ENTRY}")]
    Unsigned(String),
    #[error("the bundle's signature does not check out: {0}")]
    Signature(SignError),
    #[error("the bundle manifest is invalid: {0}")]
    BadManifest(String),
    #[error("the bundle is truncated or corrupt: {0}")]
    Corrupt(String),
    #[error("{}: the bundle adds {} MiB, the disk has {} MiB free: make room or unpack elsewhere", store.display(), need.div_ceil(1 << 20), free >> 20)]
    NoSpace {
        store: PathBuf,
        need: u64,
        free: u64,
    },
    #[error("entry {path} was altered: sha256 {actual}, the manifest says {expected}")]
    Altered {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("entry {path} is not in the signed manifest")]
    Unexpected { path: String },
    #[error("entry {path} appears twice")]
    Duplicate { path: String },
    #[error("entry {path} is missing from the bundle")]
    Missing { path: String },
    #[error("entry {path:?} has an unsafe path")]
    UnsafePath { path: String },
    #[error("entry {path} is a {kind}, not a regular file")]
    NotRegular { path: String, kind: String },
    #[error("entry {path} is {actual} bytes, the manifest says {expected}")]
    WrongSize {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("this is a delta bundle on top of {name} {version} ({manifest}), which the store at {} does not hold: unpack that bundle first", store.display())]
    BaseMissing {
        name: String,
        version: String,
        manifest: Digest,
        store: PathBuf,
    },
    #[error("this is a delta bundle on top of {name} {version}, which the store at {} held, but {missing} of the files it takes from it are gone ({first}, ...; gc removes what DELETEs leave): unpack {name} {version}'s bundle again first", store.display())]
    BaseIncomplete {
        name: String,
        version: String,
        store: PathBuf,
        missing: usize,
        first: String,
    },
    #[error("store blob {} is {actual} bytes, not the {expected} its manifest gives: pull again, which fetches it anew", path.display())]
    ShortBlob {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("store blob {} is damaged: its bytes hash to {actual}, not the digest it is named by; delete it and pull again", path.display())]
    Damaged { path: PathBuf, actual: Digest },
    #[error("{0}")]
    Part(String),
    #[error("{} holds no release {release} (it holds {held})", store.display())]
    NoRelease {
        store: PathBuf,
        release: String,
        held: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<SignError> for ArchiveError {
    fn from(e: SignError) -> ArchiveError {
        ArchiveError::Signature(e)
    }
}

impl ArchiveError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let path = path.into();
        move |error| ArchiveError::Io { path, error }
    }
}

/// Whether `path` is one a bundle may hold: `oci-layout`, `index.json` or a blob.
pub fn valid_entry_path(path: &str) -> bool {
    match path.strip_prefix("blobs/sha256/") {
        Some(hex) => format!("sha256:{hex}").parse::<Digest>().is_ok(),
        None => path == "oci-layout" || path == "index.json",
    }
}

impl BundleManifest {
    /// `NAME:VERSION`, as `--release` names a release.
    pub fn release_arg(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// `NAME VERSION`, as messages name a release.
    pub fn release(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// Whether this release names image `name` at `digest`.
    pub fn names(&self, name: &str, digest: &Digest) -> bool {
        self.images
            .iter()
            .any(|i| i.name == name && i.digest == *digest)
    }

    /// Parses and checks manifest bytes: paths are safe, sorted and unique, and a blob's
    /// path names its own digest.
    pub fn parse(bytes: &[u8]) -> Result<BundleManifest, ArchiveError> {
        let m: BundleManifest =
            serde_json::from_slice(bytes).map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
        if m.format != FORMAT_VERSION {
            return Err(ArchiveError::BadManifest(format!(
                "format {} is not supported (this ferry reads format {FORMAT_VERSION})",
                m.format
            )));
        }
        for list in [&m.entries, &m.external] {
            for e in list {
                if !valid_entry_path(&e.path) {
                    return Err(ArchiveError::UnsafePath {
                        path: e.path.clone(),
                    });
                }
                if let Some(hex) = e.path.strip_prefix("blobs/sha256/") {
                    if e.sha256.hex() != hex {
                        return Err(ArchiveError::BadManifest(format!(
                            "entry {} does not carry its own digest",
                            e.path
                        )));
                    }
                }
            }
            if list.windows(2).any(|w| w[0].path >= w[1].path) {
                return Err(ArchiveError::BadManifest(
                    "entries are not sorted and unique".into(),
                ));
            }
        }
        Ok(m)
    }

    /// Total bytes of the entries.
    pub fn content_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Bytes the images would take without sharing blobs, minus what they take.
    pub fn dedup_savings(&self) -> u64 {
        let all: u64 = self.images.iter().map(|i| i.size).sum();
        let unique: u64 = self
            .entries
            .iter()
            .chain(self.external.iter())
            .filter(|e| e.path.starts_with("blobs/"))
            .map(|e| e.size)
            .sum();
        all.saturating_sub(unique)
    }
}

/// The head of a bundle: its manifest and signature, as read from the first two entries.
#[derive(Debug, Clone)]
pub struct Head {
    pub manifest: BundleManifest,
    pub manifest_bytes: Vec<u8>,
    pub signature: String,
    /// The digest of the manifest bytes: the bundle's identity (deltas name bases by it).
    pub id: Digest,
    /// Who signed it (minisign key id).
    pub key_id: String,
    /// Whether the signature was checked against a public key.
    pub verified: bool,
}

/// Reads a whole (small) entry, refusing one larger than `limit`.
pub(crate) fn read_small(
    entry: &mut tar::Entry<'_, impl Read>,
    path: &str,
    limit: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let size = entry
        .header()
        .size()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    if size > limit {
        return Err(ArchiveError::WrongSize {
            path: path.to_string(),
            expected: limit,
            actual: size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ArchiveError::Corrupt(format!("reading {path}: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(ArchiveError::Corrupt(format!("{path} is cut short")));
    }
    Ok(bytes)
}

/// The path of a tar entry, refusing absolute paths and `..`.
pub(crate) fn entry_path(entry: &tar::Entry<'_, impl Read>) -> Result<String, ArchiveError> {
    let raw = entry.path_bytes();
    let path = String::from_utf8_lossy(&raw).into_owned();
    if path.starts_with('/')
        || path.split('/').any(|c| c == ".." || c == ".")
        || path.contains('\\')
        || path.contains('\0')
    {
        return Err(ArchiveError::UnsafePath { path });
    }
    Ok(path)
}

/// Reads the manifest and signature entries from an open archive, checking the
/// signature with `key` when one is given.
pub(crate) fn read_head_entries<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    key: Option<&PublicKey>,
) -> Result<Head, ArchiveError> {
    let corrupt = |e: std::io::Error| ArchiveError::Corrupt(e.to_string());
    let mut first = entries
        .next()
        .ok_or_else(|| ArchiveError::NotABundle("the archive is empty".into()))?
        .map_err(corrupt)?;
    let path = entry_path(&first)?;
    if path != MANIFEST_ENTRY {
        return Err(ArchiveError::NotABundle(format!(
            "its first entry is {path:?}, not {MANIFEST_ENTRY}"
        )));
    }
    let manifest_bytes = read_small(&mut first, MANIFEST_ENTRY, MAX_MANIFEST_BYTES)?;
    drop(first);
    let mut second = match entries.next() {
        Some(e) => e.map_err(corrupt)?,
        None => return Err(ArchiveError::Unsigned("nothing".into())),
    };
    let path = entry_path(&second)?;
    if path != SIGNATURE_ENTRY {
        return Err(ArchiveError::Unsigned(path));
    }
    let signature = String::from_utf8(read_small(
        &mut second,
        SIGNATURE_ENTRY,
        MAX_SIGNATURE_BYTES,
    )?)
    .map_err(|_| ArchiveError::Signature(SignError::BadSignature))?;
    let key_id = crate::signing::signature_key_id(&signature)?;
    let verified = match key {
        Some(k) => {
            k.verify(&manifest_bytes[..], &signature)?;
            true
        }
        None => false,
    };
    // Parsed only once the signature holds (or for inspect, which says it is unverified).
    let manifest = BundleManifest::parse(&manifest_bytes)?;
    Ok(Head {
        id: Digest::of(&manifest_bytes),
        manifest,
        manifest_bytes,
        signature,
        key_id,
        verified,
    })
}

/// Reads the head of the bundle at `path` (or of its first part), checking its
/// signature when `key` is given; returns it with the size of the file(s).
pub fn read_head_of(path: &Path, key: Option<&PublicKey>) -> Result<(Head, u64), ArchiveError> {
    let reader = parts::PartReader::open(path, None)?;
    let size = reader.total_size();
    Ok((read_head(reader, key)?, size))
}

/// `input`, once its first bytes are those of a zstd frame; what it is instead
/// otherwise (a signature or a lock given for the bundle is a common slip).
pub(crate) fn zstd_input(mut input: impl Read) -> Result<impl Read, ArchiveError> {
    const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let mut first = Vec::with_capacity(32);
    (&mut input)
        .take(32)
        .read_to_end(&mut first)
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    // A skippable frame (0x184D2A5?, little-endian) may lead a zstd stream too.
    let skippable =
        first.len() >= 4 && first[0] & 0xf0 == 0x50 && first[1..4] == [0x2a, 0x4d, 0x18];
    if !(first.starts_with(&ZSTD) || skippable) {
        let what = if first.is_empty() {
            "the file is empty".to_string()
        } else if first.starts_with(b"untrusted comment:") {
            "it is a minisign signature: give the bundle it signs (.tar.zst)".to_string()
        } else if let Ok(text) = std::str::from_utf8(&first) {
            format!(
                "it is text ({:?}...), not zstd",
                text.lines().next().unwrap_or("")
            )
        } else {
            let hex: Vec<String> = first.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("it is not zstd (it starts with {})", hex.join(" "))
        };
        return Err(ArchiveError::NotABundle(what));
    }
    Ok(std::io::Cursor::new(first).chain(input))
}

/// Reads only the head of a bundle (for `inspect`): the rest is never decompressed.
pub fn read_head(input: impl Read, key: Option<&PublicKey>) -> Result<Head, ArchiveError> {
    let decoder = zstd::stream::read::Decoder::new(zstd_input(input)?)
        .map_err(|e| ArchiveError::NotABundle(format!("not zstd: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive
        .entries()
        .map_err(|e| ArchiveError::NotABundle(e.to_string()))?;
    read_head_entries(&mut entries, key)
}
