//! Pulling a locked image set into the store: manifests byte-exact, then every
//! config and layer once (deduplicated across images and across runs), downloaded
//! by a bounded pool, each verified against its digest before it becomes visible.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::download::{disk_error, download, BlobJob, DownloadError, Source};
use crate::mirrors::{Endpoint, MirrorRules};
use anyhow::{anyhow, bail};
use bytes::Bytes;
use ferry::lock::{Lock, LockedImage};
use ferry::manifest::Descriptor;
use ferry::store::Store;
use ferry::Digest;
use futures_util::{stream, StreamExt};

use crate::failures::{self, EndpointFailure};
use crate::resolve::{fetch_manifest, first_answer, EndpointError};
use ferry_cli::exit::Interrupted;
use ferry_cli::{human_bytes, Report};
use ferry_client::{Asked, Client, Problem};

/// What a plan brings into the store, to name and count it by.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Image,
    File,
    Chart,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::File => "file",
            Kind::Chart => "chart",
        }
    }
}

/// An image (or a file artifact) whose manifests are in the store, with the blobs
/// it still needs and where each can come from.
struct ImagePlan {
    kind: Kind,
    name: String,
    top: Descriptor,
    blobs: Vec<(Descriptor, Vec<Source>)>,
    /// A chart, whose artifact is made from its .tgz once that is in the store
    /// (`top` is known only then).
    chart: Option<ferry::lock::LockedChart>,
    /// More names for the same top manifest in `index.json`.
    aliases: Vec<String>,
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct Summary {
    pub images: usize,
    pub files: usize,
    pub charts: usize,
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
    pub blobs_reused: usize,
    pub bytes_reused: u64,
}

/// Gets a manifest into the store: from the store itself if it is already there,
/// else from the first endpoint that serves bytes hashing to `digest`.
/// With a tag, the tag is asked for first so a moved tag is reported by name.
async fn get_manifest(
    client: &Client,
    store: &Store,
    endpoints: &[Endpoint],
    image: &str,
    tag: Option<&str>,
    digest: &Digest,
    report: &Report,
) -> anyhow::Result<Bytes> {
    if store.has_blob(digest) {
        return Ok(Bytes::from(store.read_blob(digest)?));
    }
    let bytes = first_answer(
        client,
        endpoints,
        image,
        Asked::Manifest,
        report,
        |endpoint| manifest_from(client, endpoint, image, tag, digest, report),
    )
    .await
    .map_err(|failures| {
        anyhow!("cannot pull image {image}: no endpoint served {digest} ({failures})")
    })?;
    put_manifest(store, digest, &bytes).await?;
    Ok(bytes)
}

/// Why one endpoint gave no manifest: asking by tag failed, or asking by digest
/// did (after the tag served other bytes than the lock's, if it did).
#[derive(Debug, thiserror::Error)]
enum ManifestMiss {
    #[error(transparent)]
    Tag(EndpointError),
    #[error("{}(by digest) {error}", refused.as_ref().map(|r| format!("{r}; ")).unwrap_or_default())]
    Digest {
        refused: Option<EndpointError>,
        error: EndpointError,
    },
}

impl EndpointFailure for ManifestMiss {
    /// Counted as what ended the endpoint's try (a tag refused is counted
    /// when it is warned of).
    fn problem(&self) -> Option<Problem> {
        match self {
            ManifestMiss::Tag(e) | ManifestMiss::Digest { error: e, .. } => e.problem(),
        }
    }
}

/// One endpoint's try at a manifest: by tag first, if there is one, then by digest.
async fn manifest_from(
    client: &Client,
    endpoint: &Endpoint,
    image: &str,
    tag: Option<&str>,
    digest: &Digest,
    report: &Report,
) -> Result<Bytes, ManifestMiss> {
    let mut refused = None;
    if let Some(tag) = tag {
        match fetch_manifest(client, endpoint, tag, Some((digest, "lock"))).await {
            Ok((bytes, _, _)) => return Ok(bytes),
            Err(e @ EndpointError::WrongDigest { .. }) => {
                // The tag moved or the mirror is stale; the locked digest may still be there.
                failures::warn(client, report, endpoint, Asked::Manifest, &e, || {
                    format!("{image}: mirror {endpoint} refused: {e}")
                });
                refused = Some(e);
            }
            Err(e) => return Err(ManifestMiss::Tag(e)),
        }
    }
    let by_digest = digest.to_string();
    match fetch_manifest(client, endpoint, &by_digest, Some((digest, "lock"))).await {
        Ok((bytes, _, _)) => Ok(bytes),
        Err(error) => Err(ManifestMiss::Digest { refused, error }),
    }
}

/// Stores a verified manifest (write, fsync, rename, fsync of the directory).
async fn put_manifest(
    store: &Store,
    digest: &Digest,
    bytes: &Bytes,
) -> Result<(), ferry::store::StoreError> {
    let (store, digest, bytes) = (store.clone(), digest.clone(), bytes.clone());
    crate::download::blocking(move || store.put_blob(&digest, &bytes)).await
}

/// Brings an OCI chart's manifest into the store, with the blobs it needs: it is
/// kept under its upstream name and digest, and named `charts/<name>:<version>` too.
async fn fetch_oci_chart(
    client: &Client,
    rules: &MirrorRules,
    store: &Store,
    chart: &ferry::lock::LockedChart,
    report: &Report,
) -> anyhow::Result<ImagePlan> {
    let reference: ferry::Reference = chart
        .url
        .parse()
        .map_err(|e| anyhow!("chart {} {}: {e}", chart.name, chart.version))?;
    let endpoints = rules.endpoints(&reference);
    let top = chart.manifest();
    let bytes = get_manifest(
        client,
        store,
        &endpoints,
        &chart.url,
        reference.tag(),
        &top.digest,
        report,
    )
    .await?;
    let blobs = ferry::store::platform_blobs(&top, &bytes)?;
    let sources: Vec<Source> = endpoints.into_iter().map(Source::Blob).collect();
    Ok(ImagePlan {
        kind: Kind::Chart,
        name: reference.to_string(),
        top,
        blobs: blobs.into_iter().map(|b| (b, sources.clone())).collect(),
        chart: None,
        aliases: vec![ferry::artifact::chart_ref_name(&chart.name, &chart.version)],
    })
}

/// Brings the top-level and platform manifests of one image into the store.
async fn fetch_manifests(
    client: &Client,
    rules: &MirrorRules,
    store: &Store,
    locked: &LockedImage,
    report: &Report,
) -> anyhow::Result<ImagePlan> {
    let reference = &locked.reference;
    let name = reference.to_string();
    let endpoints = rules.endpoints(reference);
    get_manifest(
        client,
        store,
        &endpoints,
        &name,
        reference.tag(),
        &locked.digest,
        report,
    )
    .await?;
    let mut blobs = Vec::new();
    for p in locked.unique_platforms() {
        let bytes = get_manifest(client, store, &endpoints, &name, None, &p.digest, report).await?;
        blobs.extend(
            ferry::store::platform_blobs(&p.descriptor(), &bytes)
                .map_err(|e| anyhow!("image {name} ({}): {e}", p.platform))?,
        );
    }
    Ok(ImagePlan {
        kind: Kind::Image,
        chart: None,
        aliases: Vec::new(),
        name,
        top: locked.descriptor(),
        blobs: {
            let sources: Vec<Source> = endpoints.into_iter().map(Source::Blob).collect();
            blobs.into_iter().map(|b| (b, sources.clone())).collect()
        },
    })
}

/// Puts the manifests of every file artifact of `lock` into the store (they are
/// made from the lock) and plans the download of each file's bytes.
fn file_plans(rules: &MirrorRules, lock: &Lock, store: &Store) -> anyhow::Result<Vec<ImagePlan>> {
    let mut plans = Vec::new();
    for (artifact, files) in ferry::artifact::file_artifacts(&lock.files) {
        for (digest, bytes) in &artifact.blobs {
            store.put_blob(digest, bytes)?;
        }
        plans.push(ImagePlan {
            kind: Kind::File,
            chart: None,
            aliases: Vec::new(),
            name: artifact.name,
            top: artifact.top,
            blobs: files
                .iter()
                .map(|f| {
                    let layer = Descriptor {
                        media_type: ferry::artifact::FILE_LAYER_TYPE.into(),
                        digest: f.sha256.clone(),
                        size: f.size,
                    };
                    let sources = rules.file_endpoints(&f.url).into_iter().map(Source::File);
                    (layer, sources.collect())
                })
                .collect(),
        });
    }
    for chart in lock.charts.iter().filter(|c| !c.is_oci()) {
        let tgz = Descriptor {
            media_type: ferry::artifact::HELM_CHART_LAYER_TYPE.into(),
            digest: chart.sha256.clone(),
            size: chart.size,
        };
        let sources = rules
            .file_endpoints(&chart.url)
            .into_iter()
            .map(Source::File);
        plans.push(ImagePlan {
            kind: Kind::Chart,
            name: ferry::artifact::chart_ref_name(&chart.name, &chart.version),
            top: tgz.clone(),
            blobs: vec![(tgz, sources.collect())],
            chart: Some(chart.clone()),
            aliases: Vec::new(),
        });
    }
    Ok(plans)
}

/// Makes a chart's artifact from its .tgz in the store and puts its blobs there.
fn chart_into_store(store: &Store, chart: &ferry::lock::LockedChart) -> anyhow::Result<Descriptor> {
    let tgz = store.read_blob(&chart.sha256)?;
    let artifact = crate::charts::chart_artifact(chart, &tgz)?;
    for (digest, bytes) in &artifact.blobs {
        store.put_blob(digest, bytes)?;
    }
    Ok(artifact.top)
}

/// Whether `blob` is in the store whole: one of another size (cut short) is
/// fetched again, and replaced.
fn stored(store: &Store, blob: &Descriptor) -> bool {
    std::fs::metadata(store.blob_path(&blob.digest))
        .is_ok_and(|m| m.is_file() && m.len() == blob.size)
}

/// Counts a plan pulled whole.
fn count(summary: &mut Summary, kind: Kind) {
    match kind {
        Kind::Image => summary.images += 1,
        Kind::File => summary.files += 1,
        Kind::Chart => summary.charts += 1,
    }
}

/// Returns once the process is asked to stop (Ctrl-C, SIGTERM; see
/// `ferry_cli::interrupt::Catch`).
async fn asked_to_stop() {
    while !ferry::interrupt::requested() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Pulls every image of `lock` into `store`.
pub async fn pull(
    client: &Client,
    rules: &MirrorRules,
    lock: &Lock,
    store: &Store,
    jobs: usize,
    report: &Report,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut plans: Vec<anyhow::Result<ImagePlan>> = stream::iter(lock.images.iter())
        .map(|locked| fetch_manifests(client, rules, store, locked, report))
        .buffered(jobs)
        .collect()
        .await;
    for chart in lock.charts.iter().filter(|c| c.is_oci()) {
        plans.push(fetch_oci_chart(client, rules, store, chart, report).await);
    }

    let mut errors = Vec::new();
    let mut ready = Vec::new();
    // A few small manifests, fsynced: on this worker, but told it may block.
    match tokio::task::block_in_place(|| file_plans(rules, lock, store)) {
        Ok(files) => ready.extend(files),
        Err(e) => errors.push(format!("{e:#}")),
    }
    for plan in plans {
        match plan {
            Ok(p) => ready.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }

    let mut summary = Summary::default();
    let mut jobs_by_digest: BTreeMap<Digest, BlobJob> = BTreeMap::new();
    let mut present = std::collections::HashSet::new();
    for plan in &ready {
        for (blob, sources) in &plan.blobs {
            if present.contains(&blob.digest) {
                continue;
            }
            if !jobs_by_digest.contains_key(&blob.digest) && stored(store, blob) {
                present.insert(blob.digest.clone());
                summary.blobs_reused += 1;
                summary.bytes_reused += blob.size;
                continue;
            }
            let job = jobs_by_digest
                .entry(blob.digest.clone())
                .or_insert_with(|| BlobJob::blob(blob, Vec::new()));
            for s in sources {
                if !job.endpoints.contains(s) {
                    job.endpoints.push(s.clone());
                }
            }
        }
    }
    let total: u64 = jobs_by_digest.values().filter_map(|j| j.size).sum();
    report.start("pulling", total);
    // Largest first keeps the pool busy to the end instead of waiting on one big layer.
    let mut queue: Vec<&BlobJob> = jobs_by_digest.values().collect();
    queue.sort_by_key(|j| std::cmp::Reverse(j.size));
    let mut downloads = stream::iter(queue)
        .map(|job| async move {
            (
                job.digest.clone(),
                download(client, store, job, report).await,
            )
        })
        .buffer_unordered(jobs);
    let mut failed: HashMap<Digest, String> = HashMap::new();
    let mut done = std::collections::HashSet::new();
    loop {
        let next = tokio::select! {
            next = downloads.next() => next,
            () = asked_to_stop() => {
                // Ctrl-C or SIGTERM: every download stops where it is (dropped
                // with the stream), its bytes kept in its partial file.
                drop(downloads);
                report.finish();
                let kept = jobs_by_digest
                    .keys()
                    .next()
                    .and_then(|d| Some(store.partial_path(d).parent()?.to_path_buf()))
                    .unwrap_or_else(|| store.root().to_path_buf());
                return Err(anyhow::Error::new(Interrupted(format!(
                    "pull interrupted: what was downloaded is kept in {}, and a rerun resumes from it",
                    kept.display()
                ))));
            }
        };
        let Some((digest, result)) = next else {
            break;
        };
        match result {
            Ok(n) => {
                summary.blobs_fetched += 1;
                summary.bytes_fetched += n;
                done.insert(digest);
            }
            Err(e @ DownloadError::Disk { .. }) => {
                // This machine's disk, not an endpoint: the other downloads stop
                // here (dropped with the stream), each keeping what reached its
                // partial file, and nothing is retried elsewhere.
                drop(downloads);
                report.finish();
                let left: u64 = jobs_by_digest
                    .values()
                    .filter(|j| !done.contains(&j.digest))
                    .filter_map(|j| {
                        let kept =
                            std::fs::metadata(store.partial_path(&j.digest)).map_or(0, |m| m.len());
                        Some(j.size?.saturating_sub(kept))
                    })
                    .sum();
                return Err(disk_error(store, &e, Some(left)));
            }
            Err(e) => {
                failed.insert(digest, e.to_string());
            }
        }
    }
    drop(downloads);
    report.finish();

    let mut complete = Vec::new();
    for plan in ready {
        match plan
            .blobs
            .iter()
            .map(|(b, _)| b)
            .find(|b| failed.contains_key(&b.digest))
        {
            Some(b) => errors.push(match plan.kind {
                Kind::Image => format!(
                    "cannot pull image {}: blob {} failed ({})",
                    plan.name, b.digest, failed[&b.digest]
                ),
                // Its one layer is the file (or the .tgz) itself.
                kind => format!(
                    "cannot pull {} {} ({}): {}",
                    kind.word(),
                    plan.name,
                    b.digest,
                    failed[&b.digest]
                ),
            }),
            None => match &plan.chart {
                None => {
                    count(&mut summary, plan.kind);
                    for alias in &plan.aliases {
                        complete.push((alias.clone(), plan.top.clone()));
                    }
                    complete.push((plan.name, plan.top));
                }
                Some(chart) => match tokio::task::block_in_place(|| chart_into_store(store, chart))
                {
                    Ok(top) => {
                        count(&mut summary, plan.kind);
                        complete.push((plan.name, top));
                    }
                    Err(e) => errors.push(format!("cannot pull {}: {e:#}", plan.name)),
                },
            },
        }
    }
    if !complete.is_empty() {
        store.set_images(&complete)?;
    }
    report.info(&format!(
        "pulled {} image(s), {} file(s), {} chart(s) into {}: {} blob(s), {} fetched in {:.1}s; {} blob(s), {} already in the store",
        summary.images,
        summary.files,
        summary.charts,
        store.root().display(),
        summary.blobs_fetched,
        human_bytes(summary.bytes_fetched),
        started.elapsed().as_secs_f64(),
        summary.blobs_reused,
        human_bytes(summary.bytes_reused),
    ));
    if !errors.is_empty() {
        for e in &errors[1..] {
            report.info(&format!("error: {e}"));
        }
        bail!("{}", errors[0]);
    }
    Ok(summary)
}
