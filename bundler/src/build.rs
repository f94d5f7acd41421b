//! `ferry-bundler build`: packs the store's copy of a locked spec into a signed,
//! reproducible bundle (optionally a delta on top of an older one, optionally split).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use ferry::archive::pack::{pack, PackEntry, PackOptions, Source};
use ferry::archive::parts::{self, PartReader, PartWriter};
use ferry::archive::{BaseBundle, BundleImage, BundleManifest, Entry, FORMAT_VERSION};
use ferry::lock::Lock;
use ferry::manifest::{Descriptor, Manifest};
use ferry::progress::{human_bytes, Report};
use ferry::signing::SecretKey;
use ferry::spec::Spec;
use ferry::store::{self, Store};
use ferry::Digest;

pub struct BuildOptions<'a> {
    pub spec_text: String,
    pub spec: &'a Spec,
    pub lock: &'a Lock,
    pub store: &'a Store,
    pub key: &'a SecretKey,
    pub out: &'a Path,
    pub base: Option<&'a Path>,
    pub split: Option<u64>,
    pub level: i32,
    pub report: &'a Report,
}

/// What the spec's images need from the store.
struct Closure {
    images: Vec<BundleImage>,
    /// Every blob, once, with its size.
    blobs: BTreeMap<Digest, u64>,
    /// The bundle's `index.json` entries.
    index: Vec<(String, Descriptor)>,
}

/// Every blob an image needs, for the platforms the spec asks for.
fn closure(store: &Store, lock: &Lock, spec: &Spec) -> anyhow::Result<Closure> {
    let mut images = Vec::new();
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut index = Vec::new();
    for wanted in &spec.images {
        let locked = lock
            .image(&wanted.reference)
            .ok_or_else(|| anyhow!("image {} is not in the lock", wanted.reference))?;
        let mut mine: BTreeMap<Digest, u64> = BTreeMap::new();
        let size_of = |d: &Digest| -> anyhow::Result<u64> {
            let path = store.blob_path(d);
            Ok(std::fs::metadata(&path)
                .with_context(|| {
                    format!(
                        "image {}: blob {d} is not in the store {} (run pull)",
                        wanted.reference,
                        store.root().display()
                    )
                })?
                .len())
        };
        mine.insert(locked.digest.clone(), size_of(&locked.digest)?);
        for p in &wanted.platforms {
            let lp = locked
                .platform(p)
                .ok_or_else(|| anyhow!("image {} has no {p} in the lock", wanted.reference))?;
            mine.insert(lp.digest.clone(), size_of(&lp.digest)?);
            let bytes = store.read_blob(&lp.digest)?;
            match Manifest::parse(&bytes, Some(&lp.media_type))
                .map_err(|e| anyhow!("image {} ({p}): {e}", wanted.reference))?
            {
                Manifest::Image { config, layers, .. } => {
                    for d in std::iter::once(config).chain(layers) {
                        mine.insert(d.digest.clone(), size_of(&d.digest)?);
                    }
                }
                Manifest::Index { .. } => bail!("image {} ({p}): nested index", wanted.reference),
            }
        }
        let name = wanted.reference.to_string();
        images.push(BundleImage {
            name: name.clone(),
            digest: locked.digest.clone(),
            media_type: locked.media_type.clone(),
            platforms: wanted.platforms.clone(),
            size: mine.values().sum(),
        });
        index.push((
            name,
            Descriptor {
                media_type: locked.media_type.clone(),
                digest: locked.digest.clone(),
                size: locked.size,
            },
        ));
        blobs.extend(mine);
    }
    Ok(Closure {
        images,
        blobs,
        index,
    })
}

/// Seconds since the epoch for every entry: `SOURCE_DATE_EPOCH`, else 0.
fn mtime() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        _ => Ok(0),
    }
}

/// Builds the bundle; returns the paths written (the bundle or its parts).
pub fn build(o: BuildOptions<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let Closure {
        images,
        blobs,
        index,
    } = closure(o.store, o.lock, o.spec)?;
    let base = match o.base {
        Some(path) => {
            let reader = PartReader::open(path, None)?;
            let head = ferry::archive::read_head(reader, None)
                .with_context(|| format!("base bundle {}", path.display()))?;
            Some(head)
        }
        None => None,
    };
    // Everything the base carries, or itself leaves to its own base.
    let in_base: std::collections::HashSet<&str> = base
        .iter()
        .flat_map(|h| h.manifest.entries.iter().chain(&h.manifest.external))
        .map(|e| e.path.as_str())
        .collect();
    let index_bytes = store::render_index(&index);
    let mut sources: Vec<PackEntry> = vec![
        PackEntry {
            entry: Entry {
                path: "index.json".into(),
                size: index_bytes.len() as u64,
                sha256: Digest::of(&index_bytes),
            },
            source: Source::Bytes(index_bytes),
        },
        PackEntry {
            entry: Entry {
                path: "oci-layout".into(),
                size: store::LAYOUT_BYTES.len() as u64,
                sha256: Digest::of(store::LAYOUT_BYTES),
            },
            source: Source::Bytes(store::LAYOUT_BYTES.to_vec()),
        },
    ];
    let mut external = Vec::new();
    for (digest, size) in &blobs {
        let entry = Entry {
            path: format!("blobs/sha256/{}", digest.hex()),
            size: *size,
            sha256: digest.clone(),
        };
        if in_base.contains(entry.path.as_str()) {
            external.push(entry);
        } else {
            sources.push(PackEntry {
                entry,
                source: Source::File(o.store.blob_path(digest)),
            });
        }
    }
    sources.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    external.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = BundleManifest {
        format: FORMAT_VERSION,
        name: o.spec.name.clone(),
        version: o.spec.version.clone(),
        platforms: o.spec.platforms.clone(),
        spec: o.spec_text.clone(),
        lock: o.lock.to_toml(),
        base: base.as_ref().map(|h| BaseBundle {
            name: h.manifest.name.clone(),
            version: h.manifest.version.clone(),
            manifest: h.id.clone(),
        }),
        images,
        entries: sources.iter().map(|s| s.entry.clone()).collect(),
        external,
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    manifest_bytes.push(b'\n');
    let id = Digest::of(&manifest_bytes);
    let label = format!("{} {} {}", manifest.name, manifest.version, id);
    let signature = o.key.sign(
        &manifest_bytes[..],
        &format!("ferry bundle manifest {label}"),
    )?;

    let total = manifest.content_size();
    o.report.start("packing", total);
    // Hash and write the compressed output on a thread of its own.
    let writer = ferry::pipe::write_behind(PartWriter::new(o.out, o.split));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let options = PackOptions {
        level: o.level,
        threads,
        mtime: mtime()?,
    };
    let result = pack(
        writer,
        &manifest_bytes,
        &signature,
        &sources,
        &options,
        &|n| o.report.add(n),
    );
    o.report.finish();
    let parts = result?
        .finish()
        .and_then(PartWriter::finish)
        .context("cannot finish the bundle")?;
    let count = parts.len();
    let mut written = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let comment = if o.split.is_some() {
            parts::part_comment(&label, i + 1, count)
        } else {
            format!("ferry bundle {label}")
        };
        let sig = o.key.sign_hash(&part.prehash, &comment);
        let sig_path = parts::signature_path(&part.path);
        let tmp = sig_path.with_extension("minisig.tmp");
        std::fs::write(&tmp, sig).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &sig_path)?;
        std::fs::rename(&part.tmp, &part.path)
            .with_context(|| format!("cannot write {}", part.path.display()))?;
        written.push(part.path.clone());
    }
    if o.split.is_some() {
        // Parts of an earlier, longer build would otherwise look like ours.
        let mut i = count + 1;
        while parts::part_path(o.out, i).exists() {
            let stale = parts::part_path(o.out, i);
            let _ = std::fs::remove_file(parts::signature_path(&stale));
            std::fs::remove_file(&stale)?;
            i += 1;
        }
    }
    let size: u64 = parts.iter().map(|p| p.size).sum();
    o.report.info(&format!(
        "wrote {} ({} image(s), {} entries, {} compressed to {}{})",
        written
            .first()
            .map_or(String::new(), |p| p.display().to_string()),
        manifest.images.len(),
        manifest.entries.len(),
        human_bytes(total),
        human_bytes(size),
        if count > 1 {
            format!(", {count} parts")
        } else {
            String::new()
        }
    ));
    Ok(written)
}
