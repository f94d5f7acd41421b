//! `verify`, `unpack` and `inspect`: the installer's side of the bundle archive.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use ferry::archive::inspect::Summary;
use ferry::archive::parts::PartReader;
use ferry::archive::{unpack, ArchiveError};
use ferry::progress::{human_bytes, Report};
use ferry::signing::PublicKey;
use ferry::store::Store;

/// Exit code for a bundle that was refused (signature or content).
pub const REFUSED: u8 = 3;

/// Prints a refusal and gives its exit code; other errors go up as usual.
fn refused(bundle: &Path, e: ArchiveError) -> anyhow::Result<ExitCode> {
    match e {
        ArchiveError::Io { .. } | ArchiveError::Store(_) => {
            Err(anyhow::Error::new(e).context(format!("bundle {}", bundle.display())))
        }
        e => {
            eprintln!("error: bundle {} refused: {e}", bundle.display());
            Ok(ExitCode::from(REFUSED))
        }
    }
}

/// Runs one streaming pass over `bundle` (`verify`, or `unpack` into `store`) with a
/// progress display, and says what came of it.
fn stream(
    bundle: &Path,
    key: &Path,
    store: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let key = PublicKey::load(key)?;
    let report = Report::new(quiet);
    let reader = match PartReader::open(bundle, Some(&key)) {
        Ok(r) => r,
        Err(e) => return refused(bundle, e),
    };
    let store = store
        .map(|s| Store::open(s).with_context(|| format!("store {}", s.display())))
        .transpose()?;
    let what = if store.is_some() {
        "unpacking"
    } else {
        "verifying"
    };
    let mut started = false;
    let progress = |done, total| {
        if !started {
            report.start(what, total);
            started = true;
        }
        report.set(done);
    };
    let result = match &store {
        Some(store) => unpack::unpack(reader, &key, store, progress),
        None => unpack::verify(reader, &key, progress),
    };
    report.finish();
    let o = match result {
        Ok(o) => o,
        Err(e) => return refused(bundle, e),
    };
    let m = &o.head.manifest;
    report.info(&match &store {
        Some(store) => format!(
            "unpacked {} {} into {}: {} image(s); {} blob(s), {} written; {} blob(s), {} already there",
            m.name,
            m.version,
            store.root().display(),
            m.images.len(),
            o.blobs_written,
            human_bytes(o.bytes_written),
            o.blobs_present,
            human_bytes(o.bytes_present)
        ),
        None => format!(
            "bundle {} {} is intact: signed by {}, {} entries, {} checked",
            m.name,
            m.version,
            o.head.key_id,
            m.entries.len(),
            human_bytes(m.content_size())
        ),
    });
    Ok(ExitCode::SUCCESS)
}

pub fn verify(bundle: &Path, key: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    stream(bundle, key, None, quiet)
}

pub fn unpack(bundle: &Path, key: &Path, store: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    stream(bundle, key, Some(store), quiet)
}

pub fn inspect(bundle: &Path, key: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let key = key.map(PublicKey::load).transpose()?;
    let (head, size) = match ferry::archive::inspect::read(bundle, key.as_ref()) {
        Ok(read) => read,
        Err(e) => return refused(bundle, e),
    };
    let summary = Summary::new(&head, size);
    if json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
