//! `ferry-installer gc`: removes the blobs of a store that no image reaches (see
//! `ferry::gc`), and says what it removed or would.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use ferry::store::Store;
use ferry_cli::{human_bytes, Report};

/// Runs `gc` on `store`, retiring release `retire` (`NAME:VERSION`) first.
pub fn run(
    store: &Path,
    grace: Duration,
    dry_run: bool,
    retire: Option<&str>,
    quiet: bool,
) -> anyhow::Result<()> {
    let report = Report::new(quiet);
    let s = Store::open(store).with_context(|| format!("store {}", store.display()))?;
    let busy = |e: ferry::store::StoreError| match e {
        // It names the store already.
        ferry::store::StoreError::Busy { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("store {}", store.display())),
    };
    let held = ferry::gc::exclusive(&s).map_err(busy)?;
    let mut without = BTreeSet::new();
    if let Some(release) = retire {
        let retired = ferry::archive::releases::retire(&s, release, dry_run)?;
        if dry_run {
            for name in &retired.names {
                report.info(&format!("would drop {name}"));
            }
        }
        report.info(&format!(
            "{} {release}: {} name(s){}",
            if dry_run { "would retire" } else { "retired" },
            retired.names.len(),
            if retired.shared > 0 {
                format!("; {} kept, another release names them too", retired.shared)
            } else {
                String::new()
            }
        ));
        // A dry run leaves index.json as it is: its names count as gone.
        if dry_run {
            without = retired.names;
        }
    }
    let found = ferry::gc::collect(&s, grace, dry_run, &without, &held).map_err(busy)?;
    if dry_run {
        for (digest, size) in &found.removed {
            report.info(&format!("would remove {digest} ({})", human_bytes(*size)));
        }
    }
    report.info(&format!(
        "{} {} blob(s) ({}) no image reaches; kept {} that images reach and {} younger than {}",
        if dry_run { "would remove" } else { "removed" },
        found.removed.len(),
        human_bytes(found.bytes()),
        found.kept,
        found.young,
        humantime::format_duration(grace),
    ));
    Ok(())
}
