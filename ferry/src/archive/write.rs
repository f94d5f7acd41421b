//! Writing a bundle, beside the code that reads it: which entries a bundle carries
//! (the store's layout cut to the spec's images), the signed manifest, the archive
//! (see [`super::pack`]) and the detached `.minisig` of the file or of each part.
//! The output appears only once complete; then the other form of the same output
//! (split or not) an earlier build left is removed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::pack::{pack, PackEntry, PackOptions, Source};
use super::parts::{self, PartWriter};
use super::{
    ArchiveError, BaseBundle, BundleChart, BundleFile, BundleImage, BundleManifest, Entry, Head,
    FORMAT_VERSION,
};
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::signing::SecretKey;
use crate::store::{self, Store};

/// What goes into a bundle.
pub struct Contents<'a> {
    pub name: String,
    pub version: String,
    pub platforms: Vec<Platform>,
    /// The release spec's and the lock's text, carried as they are.
    pub spec: String,
    pub lock: String,
    pub images: Vec<BundleImage>,
    pub files: Vec<BundleFile>,
    pub charts: Vec<BundleChart>,
    /// `index.json` entries: image name and top-level descriptor.
    pub index: Vec<(String, Descriptor)>,
    /// Every blob the images need, once, with its size.
    pub blobs: BTreeMap<Digest, u64>,
    /// Where the blobs are.
    pub store: &'a Store,
    /// For a delta: the head of the bundle it builds on.
    pub base: Option<&'a Head>,
}

/// Where and how to write it.
pub struct Output<'a> {
    pub path: &'a Path,
    pub key: &'a SecretKey,
    /// Cut into parts of at most this many bytes.
    pub split: Option<u64>,
    pub pack: PackOptions,
}

/// What was written.
pub struct Written {
    pub manifest: BundleManifest,
    /// The bundle, or its parts in order.
    pub paths: Vec<PathBuf>,
    /// Bytes of the file(s).
    pub size: u64,
}

/// The archive path of a blob.
pub fn blob_entry_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The entries of a bundle of `contents`: `index.json`, `oci-layout` and every blob
/// its base does not carry, sorted by path; and the blobs left to the base.
fn entries(contents: &Contents<'_>) -> (Vec<PackEntry>, Vec<Entry>) {
    // Everything the base carries, or itself leaves to its own base.
    let in_base: HashSet<&str> = contents
        .base
        .iter()
        .flat_map(|h| h.manifest.entries.iter().chain(&h.manifest.external))
        .map(|e| e.path.as_str())
        .collect();
    let index_bytes = store::render_index(&contents.index);
    let bytes_entry = |path: &str, bytes: Vec<u8>| PackEntry {
        entry: Entry {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: Digest::of(&bytes),
        },
        source: Source::Bytes(bytes),
    };
    let mut sources = vec![
        bytes_entry("index.json", index_bytes),
        bytes_entry("oci-layout", store::LAYOUT_BYTES.to_vec()),
    ];
    let mut external = Vec::new();
    for (digest, size) in &contents.blobs {
        let entry = Entry {
            path: blob_entry_path(digest),
            size: *size,
            sha256: digest.clone(),
        };
        if in_base.contains(entry.path.as_str()) {
            external.push(entry);
        } else {
            sources.push(PackEntry {
                entry,
                source: Source::File(contents.store.blob_path(digest)),
            });
        }
    }
    sources.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    external.sort_by(|a, b| a.path.cmp(&b.path));
    (sources, external)
}

/// Writes the bundle of `contents` to `out`, signed, and its `.minisig` file(s).
pub fn write(
    contents: Contents<'_>,
    out: Output<'_>,
    progress: &dyn Progress,
) -> Result<Written, ArchiveError> {
    let (sources, external) = entries(&contents);
    let manifest = BundleManifest {
        format: FORMAT_VERSION,
        name: contents.name,
        version: contents.version,
        platforms: contents.platforms,
        spec: contents.spec,
        lock: contents.lock,
        base: contents.base.map(|h| BaseBundle {
            name: h.manifest.name.clone(),
            version: h.manifest.version.clone(),
            manifest: h.id.clone(),
        }),
        images: contents.images,
        files: contents.files,
        charts: contents.charts,
        entries: sources.iter().map(|s| s.entry.clone()).collect(),
        external,
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).expect("a bundle manifest serialises");
    manifest_bytes.push(b'\n');
    let id = Digest::of(&manifest_bytes);
    let label = format!("{} {} {}", manifest.name, manifest.version, id);
    let signature = out
        .key
        .sign(
            &manifest_bytes[..],
            &format!("ferry bundle manifest {label}"),
        )
        .map_err(ArchiveError::io(super::MANIFEST_ENTRY))?;

    // Hash and write the compressed output on a thread of its own.
    let writer = crate::pipe::write_behind(PartWriter::new(out.path, out.split));
    let finished = pack(
        writer,
        &manifest_bytes,
        &signature,
        &sources,
        &out.pack,
        progress,
    )
    .map_err(|e| match e {
        ArchiveError::Output { entry, error, .. } => ArchiveError::Output {
            output: out.path.to_path_buf(),
            entry,
            error,
        },
        e => e,
    })?;
    let io = |error| ArchiveError::Output {
        output: out.path.to_path_buf(),
        entry: None,
        error,
    };
    let parts = finished.finish().and_then(PartWriter::finish).map_err(io)?;
    let count = parts.len();
    let mut paths = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let comment = if out.split.is_some() {
            parts::part_comment(&label, i + 1, count)
        } else {
            format!("ferry bundle {label}")
        };
        let sig = out.key.sign_hash(&part.prehash, &comment);
        let sig_path = parts::signature_path(&part.path);
        let tmp = sig_path.with_extension("minisig.tmp");
        std::fs::write(&tmp, sig).map_err(ArchiveError::io(&tmp))?;
        std::fs::rename(&tmp, &sig_path).map_err(ArchiveError::io(&sig_path))?;
        std::fs::rename(&part.tmp, &part.path).map_err(ArchiveError::io(&part.path))?;
        paths.push(part.path.clone());
    }
    remove_other_forms(out.path, out.split.map(|_| count))?;
    Ok(Written {
        manifest,
        paths,
        size: parts.iter().map(|p| p.size).sum(),
    })
}

/// Removes what an earlier build of `path` in another form left beside the new
/// one, which would otherwise pass for it, validly signed: with `parts` (this
/// build's count) the unsplit `OUT` and parts above the count, without, every
/// part. Only the output's own forms go, each with its `.minisig`: `OUT`,
/// `OUT.NNN` (three digits or more).
fn remove_other_forms(path: &Path, parts: Option<usize>) -> Result<(), ArchiveError> {
    let mut stale = Vec::new();
    if parts.is_some() {
        stale.push(path.to_path_buf());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let listed = std::fs::read_dir(dir).map_err(ArchiveError::io(dir))?;
    for entry in listed {
        let name = entry.map_err(ArchiveError::io(dir))?.file_name();
        let index = name
            .to_str()
            .and_then(|n| n.strip_prefix(base)?.strip_prefix('.'))
            .filter(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|i| parts.is_none_or(|count| i > count)) {
            stale.push(path.with_file_name(&name));
        }
    }
    for file in stale {
        for gone in [parts::signature_path(&file), file] {
            match std::fs::remove_file(&gone) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ArchiveError::io(&gone)(e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
