//! The releases a store holds: the bundle records its unpacks left, and retiring
//! one (the inverse of an unpack's naming: its names go, its blobs are left for gc).

use std::collections::BTreeSet;

use super::{ArchiveError, BundleManifest};
use crate::artifact::{chart_ref_name, file_ref_name};
use crate::digest::Digest;
use crate::store::Store;

/// The releases unpacked into `store`, as its bundle records hold them (a release
/// unpacked as a delta and again in full is there twice).
pub fn unpacked(store: &Store) -> Result<Vec<BundleManifest>, ArchiveError> {
    Ok(records(store)?.into_iter().map(|(_, m)| m).collect())
}

/// The bundle records of `store`, each with its bundle's id.
fn records(store: &Store) -> Result<Vec<(Digest, BundleManifest)>, ArchiveError> {
    store
        .bundle_records()?
        .iter()
        .map(|bytes| Ok((Digest::of(bytes), BundleManifest::parse(bytes)?)))
        .collect()
}

/// What retiring a release takes from the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retired {
    /// `index.json` names that go: the release's, unless another release names
    /// the same content or a later one has moved them.
    pub names: BTreeSet<String>,
    /// Names of the release that stay, because another release names them too.
    pub shared: usize,
}

/// Retires release `release` (`NAME:VERSION`) from `store`: drops the names only it
/// gave, then its bundle records, unless `dry_run`. Its blobs stay until a gc.
pub fn retire(store: &Store, release: &str, dry_run: bool) -> Result<Retired, ArchiveError> {
    let (mine, others): (Vec<_>, Vec<_>) = records(store)?
        .into_iter()
        .partition(|(_, m)| m.release_arg() == release);
    if mine.is_empty() {
        let held: BTreeSet<String> = others.iter().map(|(_, m)| m.release_arg()).collect();
        return Err(ArchiveError::NoRelease {
            store: store.root().to_path_buf(),
            release: release.to_string(),
            held: held.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    let index = store.images()?;
    let mut retired = Retired::default();
    let mut seen = BTreeSet::new();
    let mut consider = |name: String, still_named: bool, mine_now: bool| {
        if !mine_now || !seen.insert(name.clone()) {
            return;
        }
        if still_named {
            retired.shared += 1;
        } else {
            retired.names.insert(name);
        }
    };
    for (_, m) in &mine {
        for i in &m.images {
            let now = index.get(&i.name).is_some_and(|d| d.digest == i.digest);
            let shared = others.iter().any(|(_, o)| o.names(&i.name, &i.digest));
            consider(i.name.clone(), shared, now);
        }
        // Files and charts are recorded by version: a version names one content.
        for f in &m.files {
            let name = file_ref_name(&f.name, &f.version);
            let shared = others.iter().any(|(_, o)| {
                o.files
                    .iter()
                    .any(|g| g.name == f.name && g.version == f.version)
            });
            let now = index.contains_key(&name);
            consider(name, shared, now);
        }
        for c in &m.charts {
            let name = chart_ref_name(&c.name, &c.version);
            let shared = others.iter().any(|(_, o)| {
                o.charts
                    .iter()
                    .any(|d| d.name == c.name && d.version == c.version)
            });
            let now = index.contains_key(&name);
            consider(name, shared, now);
        }
    }
    if !dry_run {
        let names: Vec<String> = retired.names.iter().cloned().collect();
        store.remove_images(&names)?;
        for (id, _) in &mine {
            store.forget_bundle(id)?;
        }
    }
    Ok(retired)
}
