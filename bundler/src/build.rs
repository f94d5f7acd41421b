//! `ferry-bundler build`: packs the store's copy of a locked spec into a signed,
//! reproducible bundle (optionally a delta on top of an older one, optionally split).
//! Which blobs each image needs is the store's to say; the bundle's layout and
//! signatures are the archive's (`ferry::archive::write`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use ferry::archive::pack::PackOptions;
use ferry::archive::write::{self, Contents, Output};
use ferry::archive::{BundleChart, BundleFile, BundleImage};
use ferry::lock::Lock;
use ferry::signing::SecretKey;
use ferry::spec::Spec;
use ferry::store::Store;
use ferry::Digest;
use ferry_cli::{human_bytes, Report};

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
    /// Every entry's mtime ([`source_date_epoch`]).
    pub mtime: u64,
    /// Build even when an addon manifest names an image the spec does not carry.
    pub allow_missing_images: bool,
    pub report: &'a Report,
}

/// Every image an addon manifest or a chart's default values of the lock name that
/// the spec does not carry, as `file NAME VERSION names IMAGE`. `tgzs` are the
/// charts' .tgz bytes, in the lock's order.
fn missing_images(o: &BuildOptions<'_>, tgzs: &[Vec<u8>]) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    let mut check = |what: String, image: String| {
        let carried = image
            .parse::<ferry::Reference>()
            .is_ok_and(|r| o.spec.images.iter().any(|i| i.reference == r));
        let line = format!("{what} names {image}");
        if !carried && !missing.contains(&line) {
            missing.push(line);
        }
    };
    for (c, tgz) in o.lock.charts.iter().zip(tgzs) {
        for image in crate::charts::images(tgz, &c.name)? {
            check(
                format!("chart {} {} (its values)", c.name, c.version),
                image,
            );
        }
    }
    for f in &o.lock.files {
        let file_name = ferry::file_spec::file_name(&f.url);
        if !ferry::addons::is_manifest(file_name) {
            continue;
        }
        let bytes = o.store.read_blob(&f.sha256)?;
        let text = String::from_utf8_lossy(&bytes);
        let images = ferry::addons::images(&text).map_err(|e| {
            anyhow!(
                "file {} {} ({file_name}) is not YAML: {e}",
                f.name,
                f.version
            )
        })?;
        for image in images {
            check(format!("file {} {}", f.name, f.version), image);
        }
    }
    Ok(missing)
}

/// Seconds since the epoch for every entry: `SOURCE_DATE_EPOCH`, else 0. Read
/// before a build starts, so a bad value is reported before any work.
pub fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
            anyhow!(
                "SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds since 1970 (unset it for 0)"
            )
        }),
        _ => Ok(0),
    }
}

/// Builds the bundle; returns the paths written (the bundle or its parts).
pub fn build(o: BuildOptions<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut index = Vec::new();
    for wanted in &o.spec.images {
        let locked = o
            .lock
            .image(&wanted.reference)
            .ok_or_else(|| anyhow!("image {} is not in the lock", wanted.reference))?;
        let platforms = wanted
            .platforms
            .iter()
            .map(|p| {
                locked
                    .platform(p)
                    .map(|lp| lp.descriptor())
                    .ok_or_else(|| anyhow!("image {} has no {p} in the lock", wanted.reference))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let top = locked.descriptor();
        let mine = o
            .store
            .closure(&top, &platforms)
            .with_context(|| format!("image {}", wanted.reference))?;
        let name = wanted.reference.to_string();
        images.push(BundleImage {
            name: name.clone(),
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            platforms: wanted.platforms.clone(),
            size: mine.values().sum(),
        });
        index.push((name, top));
        blobs.extend(mine);
    }
    let mut files = Vec::new();
    for (artifact, locked) in ferry::artifact::file_artifacts(&o.lock.files) {
        let mine = o
            .store
            .closure(&artifact.top, &artifact.platforms)
            .with_context(|| format!("file {}", artifact.name))?;
        files.push(BundleFile {
            name: locked[0].name.clone(),
            version: locked[0].version.clone(),
            file_name: ferry::artifact::file_name_of(&locked),
            platforms: locked.iter().filter_map(|f| f.platform.clone()).collect(),
            size: locked.iter().map(|f| f.size).sum(),
        });
        index.push((artifact.name, artifact.top));
        blobs.extend(mine);
    }
    let mut charts = Vec::new();
    let mut tgzs = Vec::new();
    for chart in &o.lock.charts {
        let tgz = crate::charts::tgz(o.store, chart)?;
        let (top, platforms) = if chart.is_oci() {
            // Kept as upstream made it, under its upstream name as well.
            index.push((chart.url.clone(), chart.manifest()));
            (chart.manifest(), vec![chart.manifest()])
        } else {
            let artifact = crate::charts::chart_artifact(chart, &tgz)?;
            (artifact.top, artifact.platforms)
        };
        let name = ferry::artifact::chart_ref_name(&chart.name, &chart.version);
        let mine = o
            .store
            .closure(&top, &platforms)
            .with_context(|| format!("chart {name}"))?;
        charts.push(BundleChart {
            name: chart.name.clone(),
            version: chart.version.clone(),
            size: tgz.len() as u64,
        });
        index.push((name, top));
        blobs.extend(mine);
        tgzs.push(tgz);
    }
    let missing = missing_images(&o, &tgzs)?;
    if !missing.is_empty() {
        if !o.allow_missing_images {
            bail!(
                "the spec does not carry images its addons run ({}): add them to `images`, or build with --allow-missing-images",
                missing.join("; ")
            );
        }
        for m in &missing {
            o.report
                .warn(&format!("{m}, which the bundle does not carry"));
        }
    }
    let base = match o.base {
        Some(path) => Some(
            ferry::archive::read_head_of(path, None)
                .with_context(|| format!("base bundle {}", path.display()))?
                .0,
        ),
        None => None,
    };
    if let Some(why) = base
        .as_ref()
        .and_then(|b| odd_base(&b.manifest, &o.spec.name, &o.spec.version))
    {
        o.report.warn(&why);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let result = write::write(
        Contents {
            name: o.spec.name.clone(),
            version: o.spec.version.clone(),
            platforms: o.spec.platforms.clone(),
            spec: o.spec_text.clone(),
            lock: o.lock.to_toml(),
            images,
            files,
            charts,
            index,
            blobs,
            store: o.store,
            base: base.as_ref(),
        },
        Output {
            path: o.out,
            key: o.key,
            split: o.split,
            pack: PackOptions {
                level: o.level,
                threads,
                mtime: o.mtime,
            },
        },
        o.report,
    );
    o.report.finish();
    if result.is_err() && ferry::interrupt::requested() {
        // Whatever the pack's last error, the signal is what stopped it; the
        // unfinished bundle went with the writer.
        return Err(anyhow::Error::new(ferry_cli::exit::Interrupted(format!(
            "build interrupted: the unfinished bundle was removed, and {} was not written",
            o.out.display()
        ))));
    }
    let written = result.map_err(|e| match e {
        // The archive names the file; said once.
        ferry::archive::ArchiveError::Io { path, error } if path == o.out => {
            output_failed(o.out, &error, None)
        }
        ferry::archive::ArchiveError::Output { entry, error, .. } => {
            output_failed(o.out, &error, entry.as_deref())
        }
        e => anyhow::Error::new(e).context(format!("cannot write the bundle {}", o.out.display())),
    })?;
    let m = &written.manifest;
    let count = written.paths.len();
    o.report.info(&format!(
        "wrote {} ({} image(s), {} file(s), {} chart(s), {} entries, {} compressed to {}{})",
        written
            .paths
            .first()
            .map_or(String::new(), |p| p.display().to_string()),
        m.images.len(),
        m.files.len(),
        m.charts.len(),
        m.entries.len(),
        human_bytes(m.content_size()),
        human_bytes(written.size),
        if count > 1 {
            format!(", {count} parts")
        } else {
            String::new()
        }
    ));
    Ok(written.paths)
}

/// The error line of a bundle `out` that could not be written (while `entry` was,
/// if known): a full disk is said as such.
fn output_failed(out: &Path, error: &std::io::Error, entry: Option<&str>) -> anyhow::Error {
    let at = entry.map_or_else(String::new, |e| format!(", writing entry {e}"));
    let full = matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    );
    if full {
        anyhow!(
            "cannot write the bundle {}: the disk is full ({error}{at}): make room, or write it elsewhere with -o",
            out.display()
        )
    } else {
        anyhow!("cannot write the bundle {}: {error}{at}", out.display())
    }
}

/// Why a delta's base is not what one would expect (an earlier version of the same
/// release), if it is not: the site unpacks the delta only onto that base.
fn odd_base(base: &ferry::archive::BundleManifest, name: &str, version: &str) -> Option<String> {
    let (b, v) = (&base.version, version);
    if base.name != name {
        return Some(format!(
            "the base is {} {b}, another release than {name}: sites unpack this delta only onto a store holding that one",
            base.name
        ));
    }
    if b == v {
        return Some(format!(
            "the base is {name} {v} itself: the delta carries only what a store holding it lacks"
        ));
    }
    let numbers = |s: &str| -> Option<Vec<u64>> {
        let core = s.split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    };
    match (numbers(b), numbers(v)) {
        (Some(nb), Some(nv)) if nb > nv => Some(format!(
            "the base {name} {b} is newer than {v}: this delta goes back to an older release"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod odd_base_tests {
    use super::odd_base;

    fn base(name: &str, version: &str) -> ferry::archive::BundleManifest {
        serde_json::from_value(serde_json::json!({
            "format": ferry::archive::FORMAT_VERSION, "name": name, "version": version,
            "platforms": [], "spec": "", "lock": "", "images": [], "entries": []
        }))
        .unwrap()
    }

    #[test]
    fn a_base_that_is_not_an_earlier_version_of_the_release_is_said_to_be_odd() {
        assert_eq!(odd_base(&base("k8s", "1.31.13"), "k8s", "1.31.14"), None);
        assert_eq!(odd_base(&base("k8s", "1.31.9"), "k8s", "1.31.10"), None);
        assert_eq!(odd_base(&base("k8s", "rc1"), "k8s", "1.0"), None);
        let why = |b: &str, bv: &str| odd_base(&base(b, bv), "k8s", "1.31.14").unwrap();
        assert!(why("k8s", "1.31.14").contains("itself"));
        assert!(why("k8s", "1.32.0").contains("goes back to an older release"));
        assert!(why("other", "1.0").contains("another release than k8s"));
    }
}
