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

fn open(bundle: &Path, key: &PublicKey) -> Result<PartReader, ArchiveError> {
    PartReader::open(bundle, Some(key))
}

pub fn verify(bundle: &Path, key: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let key = PublicKey::load(key)?;
    let report = Report::new(quiet);
    let reader = match open(bundle, &key) {
        Ok(r) => r,
        Err(e) => return refused(bundle, e),
    };
    let mut started = false;
    let result = unpack::verify(reader, &key, |done, total| {
        if !started {
            report.start("verifying", total);
            started = true;
        }
        report.set(done);
    });
    report.finish();
    match result {
        Ok(o) => {
            report.info(&format!(
                "bundle {} {} is intact: signed by {}, {} entries, {} checked",
                o.head.manifest.name,
                o.head.manifest.version,
                o.head.key_id,
                o.head.manifest.entries.len(),
                human_bytes(o.head.manifest.content_size())
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(bundle, e),
    }
}

pub fn unpack(bundle: &Path, key: &Path, store: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let key = PublicKey::load(key)?;
    let report = Report::new(quiet);
    let reader = match open(bundle, &key) {
        Ok(r) => r,
        Err(e) => return refused(bundle, e),
    };
    let store = Store::open(store).with_context(|| format!("store {}", store.display()))?;
    let mut started = false;
    let result = unpack::unpack(reader, &key, &store, |done, total| {
        if !started {
            report.start("unpacking", total);
            started = true;
        }
        report.set(done);
    });
    report.finish();
    match result {
        Ok(o) => {
            report.info(&format!(
                "unpacked {} {} into {}: {} image(s); {} blob(s), {} written; {} blob(s), {} already there",
                o.head.manifest.name,
                o.head.manifest.version,
                store.root().display(),
                o.head.manifest.images.len(),
                o.blobs_written,
                human_bytes(o.bytes_written),
                o.blobs_present,
                human_bytes(o.bytes_present)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(bundle, e),
    }
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
