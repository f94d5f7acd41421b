//! Pulling a locked image set into the store: manifests byte-exact, then every
//! config and layer once (deduplicated across images and across runs), downloaded
//! by a bounded pool, each verified against its digest before it becomes visible.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::{Duration, Instant};

use crate::mirrors::{Endpoint, MirrorRules};
use anyhow::{anyhow, bail};
use bytes::Bytes;
use ferry::digest::Hasher;
use ferry::lock::{Lock, LockedImage};
use ferry::manifest::Descriptor;
use ferry::store::Store;
use ferry::Digest;
use futures_util::{stream, StreamExt};
use reqwest::StatusCode;

use crate::resolve::{fetch_manifest, EndpointError};
use ferry_cli::{human_bytes, Report};
use ferry_client::{Client, FetchError, RetryPolicy, ATTEMPTS};

/// An image (or a file artifact) whose manifests are in the store, with the blobs
/// it still needs and where each can come from.
struct ImagePlan {
    name: String,
    top: Descriptor,
    blobs: Vec<(Descriptor, Vec<Source>)>,
    /// A chart, whose artifact is made from its .tgz once that is in the store
    /// (`top` is known only then).
    chart: Option<ferry::lock::LockedChart>,
    /// More names for the same top manifest in `index.json`.
    aliases: Vec<String>,
}

/// Where a blob can be downloaded from: a registry's blob endpoint, or a file URL
/// (a file's bytes are the layer of its artifact).
#[derive(Clone, PartialEq)]
enum Source {
    Blob(Endpoint),
    File(Endpoint),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Blob(e) | Source::File(e) => e.fmt(f),
        }
    }
}

/// One blob to download, with every endpoint that can serve it.
struct BlobJob {
    descriptor: Descriptor,
    endpoints: Vec<Source>,
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct Summary {
    pub images: usize,
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
    pub blobs_reused: usize,
    pub bytes_reused: u64,
}

#[derive(Debug, thiserror::Error)]
enum BlobError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("served {actual} for blob {expected}")]
    WrongDigest {
        expected: Digest,
        actual: Digest,
        /// The download continued bytes kept from an earlier attempt (perhaps
        /// another endpoint's), so the fault may lie there, not here.
        resumed: bool,
    },
    #[error("served more than the {size} bytes the manifest gives for blob {digest}")]
    TooLong { digest: Digest, size: u64 },
    #[error("connection dropped {ATTEMPTS} times: {0}")]
    Dropped(String),
    #[error("{0}")]
    Stalled(String),
    #[error(transparent)]
    Store(#[from] ferry::store::StoreError),
    #[error("{}: {error}", path.display())]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
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
    let mut failures = Vec::new();
    for endpoint in endpoints {
        if let Some(note) = client.insecure_note(endpoint) {
            report.info(&note);
        }
        if let Some(tag) = tag {
            match fetch_manifest(client, endpoint, tag, Some((digest, "lock"))).await {
                Ok((bytes, _, _)) => {
                    put_manifest(store, digest, &bytes).await?;
                    return Ok(bytes);
                }
                Err(e @ EndpointError::WrongDigest { .. }) => {
                    // The tag moved or the mirror is stale; the locked digest may still be there.
                    report.warn(&format!("{image}: mirror {endpoint} refused: {e}"));
                    failures.push(format!("{endpoint}: {e}"));
                }
                Err(e) => {
                    report.warn(&format!("{image}: {endpoint} failed: {e}"));
                    failures.push(format!("{endpoint}: {e}"));
                    continue;
                }
            }
        }
        match fetch_manifest(
            client,
            endpoint,
            &digest.to_string(),
            Some((digest, "lock")),
        )
        .await
        {
            Ok((bytes, _, _)) => {
                put_manifest(store, digest, &bytes).await?;
                return Ok(bytes);
            }
            Err(e) => {
                if tag.is_none() {
                    report.warn(&format!("{image}: {endpoint} failed: {e}"));
                }
                failures.push(format!("{endpoint} (by digest): {e}"));
            }
        }
    }
    bail!(
        "cannot pull image {image}: no endpoint served {digest} ({})",
        failures.join("; ")
    )
}

/// Runs blocking file-system work (reading, fsync, rename) on tokio's blocking pool,
/// so that it does not stall the workers driving the other downloads. A panic in
/// `work` is passed on as if it had happened here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Stores a verified manifest (write, fsync, rename, fsync of the directory).
async fn put_manifest(
    store: &Store,
    digest: &Digest,
    bytes: &Bytes,
) -> Result<(), ferry::store::StoreError> {
    let (store, digest, bytes) = (store.clone(), digest.clone(), bytes.clone());
    blocking(move || store.put_blob(&digest, &bytes)).await
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

/// Opens the partial file of a blob for this process alone. Another pull into the
/// same store may be writing it: then wait, and skip the download if that pull
/// finishes the blob. Returns `None` when the blob is already in the store.
async fn lock_partial(store: &Store, digest: &Digest) -> std::io::Result<Option<std::fs::File>> {
    let path = store.partial_path(digest);
    loop {
        if store.has_blob(digest) {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            // The holder may have committed the blob just before letting go.
            Ok(()) if store.has_blob(digest) => return Ok(None),
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Hashes what an earlier run left of a blob, so the download can resume after it.
fn resume_point(file: &mut std::fs::File, size: u64) -> std::io::Result<Hasher> {
    let mut hasher = Hasher::new();
    if file.metadata()?.len() > size {
        file.set_len(0)?;
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    file.seek(SeekFrom::Start(hasher.len()))?;
    Ok(hasher)
}

/// Downloads one blob from one endpoint into its partial file, resuming with `Range`
/// after an earlier run or a dropped connection, then verifies and commits it.
async fn download_from(
    client: &Client,
    store: &Store,
    source: &Source,
    blob: &Descriptor,
    report: &Report,
) -> Result<u64, BlobError> {
    let path = store.partial_path(&blob.digest);
    let io = |error| BlobError::Io {
        path: path.clone(),
        error,
    };
    let Some(mut file) = lock_partial(store, &blob.digest).await.map_err(io)? else {
        return Ok(0);
    };
    let size = blob.size;
    let (file, mut hasher) = blocking(move || {
        let hasher = resume_point(&mut file, size)?;
        Ok((file, hasher))
    })
    .await
    .map_err(io)?;
    let resumed = !hasher.is_empty();
    report.add(hasher.len());
    // Chunks are written on the worker itself: each `write_all` only copies into this
    // 1 MiB buffer, and the write(2) of a full buffer (or a flush) hands the page
    // cache at most 1 MiB, which takes well under a millisecond; a trip to the
    // blocking pool per chunk would cost more than it saves. What can wait on the
    // disk (fsync, rename) and reading back a partial file run on the blocking pool.
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut fetched = 0u64;
    let mut drops = 0;
    while hasher.len() < blob.size {
        let offset = hasher.len();
        let mut response = match source {
            Source::Blob(endpoint) => client.blob(endpoint, &blob.digest, offset).await?,
            Source::File(endpoint) => client.file(endpoint, offset).await?,
        };
        let from_start = response.status() != StatusCode::PARTIAL_CONTENT
            || !response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        if from_start && offset > 0 {
            // The server ignored the Range: start over.
            out.flush().map_err(io)?;
            out.get_mut().set_len(0).map_err(io)?;
            out.get_mut().seek(SeekFrom::Start(0)).map_err(io)?;
            hasher = Hasher::new();
            report.sub(offset);
        }
        let ended_short = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if hasher.len() + chunk.len() as u64 > blob.size {
                        let path = path.clone();
                        blocking(move || {
                            drop(out);
                            let _ = std::fs::remove_file(&path);
                        })
                        .await;
                        return Err(BlobError::TooLong {
                            digest: blob.digest.clone(),
                            size: blob.size,
                        });
                    }
                    out.write_all(&chunk).map_err(io)?;
                    hasher.update(&chunk);
                    fetched += chunk.len() as u64;
                    report.add(chunk.len() as u64);
                }
                Ok(None) => break hasher.len() < blob.size,
                Err(e) if e.is_timeout() => {
                    // It stalled: the next endpoint goes on from here, and the
                    // other downloads leave this one alone for a while.
                    out.flush().map_err(io)?;
                    let (Source::Blob(endpoint) | Source::File(endpoint)) = source;
                    let why = format!("it stalled after {} bytes", hasher.len());
                    client.give_up(endpoint, why.clone());
                    return Err(BlobError::Stalled(why));
                }
                Err(e) if drops + 1 >= RetryPolicy::RESUME.attempts => {
                    out.flush().map_err(io)?;
                    return Err(BlobError::Dropped(FetchError::from(e).to_string()));
                }
                Err(_) => break true,
            }
        };
        if ended_short {
            // A dropped connection or a short body: resume from what arrived.
            out.flush().map_err(io)?;
            drops += 1;
            if drops >= RetryPolicy::RESUME.attempts {
                return Err(BlobError::Dropped(format!(
                    "the body ended after {} of {} bytes",
                    hasher.len(),
                    blob.size
                )));
            }
            tokio::time::sleep(RetryPolicy::RESUME.delay(drops)).await;
        }
    }
    out.flush().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    let actual = hasher.finish();
    if actual != blob.digest {
        let path = path.clone();
        blocking(move || {
            drop(file);
            let _ = std::fs::remove_file(&path);
        })
        .await;
        report.sub(blob.size);
        return Err(BlobError::WrongDigest {
            expected: blob.digest.clone(),
            actual,
            resumed,
        });
    }
    // The fsync and the rename (with its directory fsync) can each wait on the disk.
    let (store, digest) = (store.clone(), blob.digest.clone());
    let committed = blocking(move || {
        file.sync_all()?;
        drop(file);
        Ok(store.commit_partial(&digest))
    })
    .await;
    committed.map_err(io)??;
    Ok(fetched)
}

/// Downloads one blob, trying each endpoint that can serve it in turn.
async fn download(
    client: &Client,
    store: &Store,
    job: &BlobJob,
    report: &Report,
) -> Result<u64, String> {
    let mut failures = Vec::new();
    for endpoint in &job.endpoints {
        let mut result = download_from(client, store, endpoint, &job.descriptor, report).await;
        if let Err(BlobError::WrongDigest { resumed: true, .. }) = &result {
            // What was kept came from elsewhere (and is gone now): ask again from zero.
            result = download_from(client, store, endpoint, &job.descriptor, report).await;
        }
        match result {
            Ok(n) => return Ok(n),
            Err(e) => {
                report.warn(&format!(
                    "blob {} from {endpoint} failed: {e}",
                    job.descriptor.digest.short()
                ));
                failures.push(format!("{endpoint}: {e}"));
            }
        }
    }
    Err(failures.join("; "))
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
            if !jobs_by_digest.contains_key(&blob.digest) && store.has_blob(&blob.digest) {
                present.insert(blob.digest.clone());
                summary.blobs_reused += 1;
                summary.bytes_reused += blob.size;
                continue;
            }
            let job = jobs_by_digest
                .entry(blob.digest.clone())
                .or_insert_with(|| BlobJob {
                    descriptor: blob.clone(),
                    endpoints: Vec::new(),
                });
            for s in sources {
                if !job.endpoints.contains(s) {
                    job.endpoints.push(s.clone());
                }
            }
        }
    }
    let total: u64 = jobs_by_digest.values().map(|j| j.descriptor.size).sum();
    report.start("pulling", total);
    // Largest first keeps the pool busy to the end instead of waiting on one big layer.
    let mut queue: Vec<&BlobJob> = jobs_by_digest.values().collect();
    queue.sort_by_key(|j| std::cmp::Reverse(j.descriptor.size));
    let results: Vec<(Digest, Result<u64, String>)> = stream::iter(queue)
        .map(|job| async move {
            (
                job.descriptor.digest.clone(),
                download(client, store, job, report).await,
            )
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    report.finish();

    let mut failed: HashMap<Digest, String> = HashMap::new();
    for (digest, result) in results {
        match result {
            Ok(n) => {
                summary.blobs_fetched += 1;
                summary.bytes_fetched += n;
            }
            Err(e) => {
                failed.insert(digest, e);
            }
        }
    }

    let mut complete = Vec::new();
    for plan in ready {
        match plan
            .blobs
            .iter()
            .map(|(b, _)| b)
            .find(|b| failed.contains_key(&b.digest))
        {
            Some(b) => errors.push(format!(
                "cannot pull image {}: blob {} failed ({})",
                plan.name, b.digest, failed[&b.digest]
            )),
            None => match &plan.chart {
                None => {
                    for alias in &plan.aliases {
                        complete.push((alias.clone(), plan.top.clone()));
                    }
                    complete.push((plan.name, plan.top));
                }
                Some(chart) => match tokio::task::block_in_place(|| chart_into_store(store, chart))
                {
                    Ok(top) => complete.push((plan.name, top)),
                    Err(e) => errors.push(format!("cannot pull {}: {e:#}", plan.name)),
                },
            },
        }
    }
    summary.images = complete.len();
    if !complete.is_empty() {
        store.set_images(&complete)?;
    }
    report.info(&format!(
        "pulled {} image(s) into {}: {} blob(s), {} fetched in {:.1}s; {} blob(s), {} already in the store",
        summary.images,
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
