//! `verify` and `unpack`: the installer's side of the bundle archive, one streaming
//! pass each, with progress.

use std::path::Path;

use anyhow::Context as _;
use ferry::archive::parts::PartReader;
use ferry::archive::unpack;
use ferry::interrupt::Interruptible;
use ferry::signing::PublicKey;
use ferry::store::Store;
use ferry_cli::exit::Interrupted;
use ferry_cli::{human_bytes, Refused, Report};

/// Runs one streaming pass over `bundle` (`verify`, or `unpack` into `store`) with a
/// progress display, and says what came of it.
fn stream(bundle: &Path, key: &Path, store: Option<&Path>, quiet: bool) -> anyhow::Result<()> {
    let key = PublicKey::load(key)?;
    let report = Report::new(quiet);
    let reader = PartReader::open(bundle, Some(&key)).map_err(|e| Refused::classify(bundle, e))?;
    // Ctrl-C stops the stream at its next read, and the store is cleaned below.
    let _catch = ferry_cli::interrupt::Catch::new().context("catching Ctrl-C")?;
    let reader = Interruptible::new(reader, ferry::interrupt::flag());
    // A store this unpack makes is removed again if the bundle is refused: an
    // empty layout left behind would be served as an empty registry.
    let made = store.filter(|s| !s.exists());
    let into = store.map(Path::to_path_buf);
    let store = store
        .map(|s| Store::create(s).with_context(|| format!("store {}", s.display())))
        .transpose()?;
    let result = match &store {
        Some(store) => unpack::unpack(reader, &key, store, &report),
        None => unpack::verify(reader, &key, &report),
    };
    report.finish();
    let o = match result {
        Ok(o) => o,
        Err(e) => {
            let removed = made.is_some();
            if let Some(made) = made {
                drop(store);
                let _ = std::fs::remove_dir_all(made);
            }
            if ferry::interrupt::requested() {
                // Whatever the stream's last error, the signal is what stopped it.
                return Err(anyhow::Error::new(Interrupted(match into {
                    Some(into) if removed => format!(
                        "unpack of {} interrupted: the store {} it had made was removed",
                        bundle.display(),
                        into.display()
                    ),
                    Some(into) => format!(
                        "unpack of {} interrupted: nothing of it was added to {}",
                        bundle.display(),
                        into.display()
                    ),
                    None => format!(
                        "verify of {} interrupted: the bundle was not checked to its end",
                        bundle.display()
                    ),
                })));
            }
            // A part that fails to decompress is found by its signature.
            let e = match e {
                ferry::archive::ArchiveError::Corrupt(_) => {
                    match ferry::archive::parts::wrong_part(bundle, &key) {
                        Some(why) => ferry::archive::ArchiveError::Part(why),
                        None => e,
                    }
                }
                e => e,
            };
            return Err(Refused::classify(bundle, e));
        }
    };
    let m = &o.head.manifest;
    if let Some(store) = &store {
        moved(store, m, &o.moved);
    }
    report.info(&match &store {
        Some(store) => format!(
            "unpacked {} {} into {}: {} image(s), {} file(s), {} chart(s); {} blob(s), {} written; {} blob(s), {} already there",
            m.name,
            m.version,
            store.root().display(),
            m.images.len(),
            m.files.len(),
            m.charts.len(),
            o.blobs_written,
            human_bytes(o.bytes_written),
            o.blobs_present,
            human_bytes(o.bytes_present)
        ),
        None => format!(
            "bundle {} {} is intact: signed by {}, {} entries, {} checked{}",
            m.name,
            m.version,
            o.head.key_id,
            m.entries.len(),
            human_bytes(m.content_size()),
            m.base.as_ref().map_or_else(String::new, |b| format!(
                "; a delta: it unpacks only into a store holding {} {}",
                b.name, b.version
            ))
        ),
    });
    Ok(())
}

/// Warns of each name the unpack took from another release's manifest: nodes
/// pulling that tag now get this release's, and plan refuses the other release.
fn moved(store: &Store, m: &ferry::archive::BundleManifest, moved: &[unpack::Moved]) {
    if moved.is_empty() {
        return;
    }
    let releases = ferry::archive::releases::unpacked(store).unwrap_or_default();
    for mv in moved {
        let owner = releases.iter().find(|r| r.names(&mv.name, &mv.from));
        ferry_cli::say!(
            "warning: {} moved to {} ({}) from {}{}",
            mv.name,
            mv.to,
            m.release(),
            mv.from,
            owner.map_or_else(String::new, |o| format!(
                " ({0}): {0} no longer plans until its bundle is unpacked again",
                o.release()
            ))
        );
    }
}

/// `verify`: checks the signature and every byte, writing nothing.
pub fn verify(bundle: &Path, key: &Path, quiet: bool) -> anyhow::Result<()> {
    stream(bundle, key, None, quiet)
}

/// `unpack`: verifies and adds the bundle to `store` (made if missing).
pub fn unpack(bundle: &Path, key: &Path, store: &Path, quiet: bool) -> anyhow::Result<()> {
    stream(bundle, key, Some(store), quiet)
}
