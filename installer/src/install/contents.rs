//! What a plan takes from the store: the platforms, images, files and charts of
//! the bundles unpacked into it, and a file's or chart's bytes by name. Everything
//! a node gets comes through here, so the plan names the one thing a store lacks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{anyhow, bail, Context as _};
use ferry::archive::BundleManifest;
use ferry::artifact::{file_layer, file_ref_name, FileLayer};
use ferry::manifest::Manifest;
use ferry::store::Store;
use ferry::Reference;

/// A file by name and arch (`None`: platform-independent).
type FileKey = (String, Option<String>);

/// The store's bundles, as the plan sees them.
pub struct Contents<'s> {
    store: &'s Store,
    /// Every architecture some bundle carries.
    pub arches: BTreeSet<String>,
    /// Every image, by its upstream name.
    pub images: Vec<Reference>,
    /// File name -> the versions the bundles carry.
    files: BTreeMap<String, BTreeSet<String>>,
    /// Chart name -> the versions the bundles carry.
    charts: BTreeMap<String, BTreeSet<String>>,
    /// The store's `index.json`, read once.
    index: BTreeMap<String, ferry::manifest::Descriptor>,
    /// `(file, arch)` -> what [`Contents::file`] found: every node of an arch asks
    /// for the same programs.
    found: std::sync::Mutex<HashMap<FileKey, (String, FileLayer)>>,
}

/// How many changed names an error lists before it counts the rest.
const LISTED: usize = 3;

/// Refuses a release whose images the store no longer names at the digests its
/// bundle did: a later release moved a tag, or a DELETE removed one. Its nodes
/// would pull other content, or nothing.
fn changed_since_unpacked(
    store: &Store,
    index: &BTreeMap<String, ferry::manifest::Descriptor>,
    mine: &[BundleManifest],
    others: &[BundleManifest],
) -> anyhow::Result<()> {
    let mut changed: BTreeMap<&str, String> = BTreeMap::new();
    for i in mine.iter().flat_map(|m| &m.images) {
        match index.get(&i.name) {
            Some(now) if now.digest == i.digest => {}
            Some(now) => {
                let by = others
                    .iter()
                    .find(|o| o.names(&i.name, &now.digest))
                    .map_or_else(String::new, |o| format!(" ({}'s)", o.release()));
                changed.insert(
                    &i.name,
                    format!("{} is {}{by}, not {}", i.name, now.digest, i.digest),
                );
            }
            None => {
                changed.insert(&i.name, format!("{} is gone", i.name));
            }
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let release = mine[0].release();
    let mut listed: Vec<String> = changed.into_values().collect();
    let more = listed.len().saturating_sub(LISTED);
    listed.truncate(LISTED);
    if more > 0 {
        listed.push(format!("and {more} more"));
    }
    bail!(
        "{} no longer holds {release} as it was unpacked: {}; unpack {release}'s bundle again",
        store.root().display(),
        listed.join("; ")
    )
}

impl<'s> Contents<'s> {
    /// Reads the bundle records of `store`: those of `release` (`NAME:VERSION`, as
    /// `inspect` shows a bundle), or of the one release the store holds.
    pub fn read(store: &'s Store, release: Option<&str>) -> anyhow::Result<Contents<'s>> {
        let manifests: Vec<BundleManifest> = ferry::archive::releases::unpacked(store)
            .with_context(|| format!("{}: a bundle record", store.root().display()))?;
        if manifests.is_empty() {
            bail!(
                "{} holds no unpacked bundle: ferry-installer unpack BUNDLE --store {} first",
                store.root().display(),
                store.root().display()
            );
        }
        let releases: BTreeSet<String> =
            manifests.iter().map(BundleManifest::release_arg).collect();
        let chosen = match release {
            Some(r) if releases.contains(r) => r.to_string(),
            Some(r) => bail!(
                "{} holds no release {r} (it holds {})",
                store.root().display(),
                releases.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None if releases.len() == 1 => releases.into_iter().next().expect("one"),
            None => bail!(
                "{} holds releases {}: choose one with --release NAME:VERSION",
                store.root().display(),
                releases.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let mut contents = Contents {
            store,
            arches: BTreeSet::new(),
            images: Vec::new(),
            files: BTreeMap::new(),
            charts: BTreeMap::new(),
            index: store.images()?,
            found: std::sync::Mutex::new(HashMap::new()),
        };
        let (mine, others): (Vec<BundleManifest>, Vec<BundleManifest>) = manifests
            .into_iter()
            .partition(|m| m.release_arg() == chosen);
        changed_since_unpacked(store, &contents.index, &mine, &others)?;
        for m in mine {
            contents
                .arches
                .extend(m.platforms.iter().map(|p| p.architecture.clone()));
            for f in m.files {
                contents.files.entry(f.name).or_default().insert(f.version);
            }
            for c in m.charts {
                contents.charts.entry(c.name).or_default().insert(c.version);
            }
            for i in m.images {
                if i.name.starts_with("files/") || i.name.starts_with("charts/") {
                    continue;
                }
                if let Ok(r) = i.name.parse::<Reference>() {
                    if !contents.images.contains(&r) {
                        contents.images.push(r);
                    }
                }
            }
        }
        contents.images.sort_by_key(|r| r.to_string());
        Ok(contents)
    }

    /// The one version of a file or chart the bundles carry.
    fn version<'a>(
        what: &str,
        name: &str,
        versions: &'a BTreeMap<String, BTreeSet<String>>,
    ) -> anyhow::Result<&'a str> {
        let all = versions.get(name).ok_or_else(|| {
            anyhow!("the bundle has no {what} {name}: add it to the release spec's [[{what}s]]")
        })?;
        if all.len() > 1 {
            bail!(
                "the store holds {what} {name} in versions {}: plan from a store with one release",
                all.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(all.iter().next().expect("a recorded file has a version"))
    }

    /// Whether the bundles carry a file of this name.
    pub fn has_file(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// The layer of file `name` for `arch` (`None`: a platform-independent file),
    /// with the version it is.
    pub fn file(&self, name: &str, arch: Option<&str>) -> anyhow::Result<(String, FileLayer)> {
        let key = (name.to_string(), arch.map(str::to_string));
        if let Some(found) = self.found.lock().expect("the lookup cache").get(&key) {
            return Ok(found.clone());
        }
        let found = self.look_up(name, arch)?;
        self.found
            .lock()
            .expect("the lookup cache")
            .insert(key, found.clone());
        Ok(found)
    }

    fn look_up(&self, name: &str, arch: Option<&str>) -> anyhow::Result<(String, FileLayer)> {
        let version = Self::version("file", name, &self.files)?;
        let reference = file_ref_name(name, version);
        let what = match arch {
            Some(a) => format!("file {name} {version} (linux/{a})"),
            None => format!("file {name} {version}"),
        };
        let top = self
            .index
            .get(&reference)
            .ok_or_else(|| anyhow!("{what}: not in the store's index.json"))?;
        let bytes = self
            .store
            .read_blob(&top.digest)
            .with_context(|| what.clone())?;
        let manifest = match Manifest::parse(&bytes, Some(top.media_type.as_ref())) {
            Ok(Manifest::Index { entries, .. }) => {
                let arch = arch.ok_or_else(|| anyhow!("{what} is per platform"))?;
                let entry = entries
                    .iter()
                    .find(|e| {
                        e.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                    })
                    .ok_or_else(|| anyhow!("{what}: the bundle has it for no linux/{arch}"))?;
                self.store
                    .read_blob(&entry.descriptor.digest)
                    .with_context(|| what.clone())?
            }
            _ => bytes,
        };
        let layer = file_layer(&manifest).ok_or_else(|| anyhow!("{what}: not a file artifact"))?;
        Ok((version.to_string(), layer))
    }

    /// The text of a platform-independent file (an addon manifest).
    pub fn file_text(&self, name: &str) -> anyhow::Result<(FileLayer, String)> {
        let (version, layer) = self.file(name, None)?;
        let bytes = self
            .store
            .read_blob(&layer.digest)
            .with_context(|| format!("file {name} {version}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("file {name} {version} is not UTF-8 text"))?;
        Ok((layer, text))
    }

    /// The version of chart `name` the bundle carries, and its .tgz.
    pub fn chart(&self, name: &str) -> anyhow::Result<(String, Vec<u8>)> {
        let version = Self::version("chart", name, &self.charts)?;
        let what = format!("chart {name} {version}");
        let top = self
            .index
            .get(&ferry::artifact::chart_ref_name(name, version))
            .ok_or_else(|| anyhow!("{what}: not in the store's index.json"))?;
        let manifest = self
            .store
            .read_blob(&top.digest)
            .with_context(|| what.clone())?;
        let layer = match Manifest::parse(&manifest, Some(top.media_type.as_ref())) {
            Ok(Manifest::Image { layers, .. }) => layers.into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| anyhow!("{what}: not a chart artifact"))?;
        let tgz = self
            .store
            .read_blob(&layer.digest)
            .with_context(|| what.clone())?;
        Ok((version.to_string(), tgz))
    }

    /// The path of a blob in the store.
    pub fn blob_path(&self, digest: &ferry::Digest) -> std::path::PathBuf {
        self.store.blob_path(digest)
    }
}
