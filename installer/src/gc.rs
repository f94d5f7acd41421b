//! `ferry-installer gc`: removes the blobs of a store that no image reaches (see
//! `ferry::gc`), and says what it removed or would.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use ferry::store::Store;
use ferry_cli::{human_bytes, Report};

/// Runs `gc` on `store`.
pub fn run(store: &Path, grace: Duration, dry_run: bool, quiet: bool) -> anyhow::Result<()> {
    let report = Report::new(quiet);
    let s = Store::open(store).with_context(|| format!("store {}", store.display()))?;
    let found = ferry::gc::collect(&s, grace, dry_run).map_err(|e| match e {
        // It names the store already.
        ferry::store::StoreError::Busy { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("store {}", store.display())),
    })?;
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
