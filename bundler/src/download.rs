//! Downloading one blob (or file) into the store. The endpoints are raced for a
//! first answer (Happy Eyeballs); the bytes go into the blob's partial file and are
//! hashed as they come; a dropped connection resumes with `Range`, and so does a
//! move to the next endpoint after a stall or when this one serves far slower than
//! another; the blob becomes visible only once its digest checks. The size may be
//! unknown (a file `lock` pins by its sha256 alone): then the answers say it.
//! [`hash`] reads a file the same way and keeps nothing, for `lock`; without a
//! digest to check (a file the spec does not pin) its bytes must all come from one
//! endpoint.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry::digest::Hasher;
use ferry::manifest::Descriptor;
use ferry::store::Store;
use ferry::Digest;
use ferry_cli::Report;
use ferry_client::{Asked, Client, Endpoint, FetchError, Problem, RetryPolicy, ATTEMPTS};
use reqwest::{Response, StatusCode};

use crate::failures::{self, EndpointFailure};

/// Where a blob can be downloaded from: a registry's blob endpoint, or a file URL
/// (a file's bytes are the layer of its artifact).
#[derive(Clone, PartialEq)]
pub(crate) enum Source {
    Blob(Endpoint),
    File(Endpoint),
}

impl Source {
    fn endpoint(&self) -> &Endpoint {
        let (Source::Blob(e) | Source::File(e)) = self;
        e
    }

    /// What it is asked for, to count its failures by.
    fn asked(&self) -> Asked {
        match self {
            Source::Blob(_) => Asked::Blob,
            Source::File(_) => Asked::File,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.endpoint().fmt(f)
    }
}

/// One blob to download, with every endpoint that can serve it.
pub(crate) struct BlobJob {
    pub digest: Digest,
    /// `None` for a file known by its digest alone.
    pub size: Option<u64>,
    /// What messages call it: `blob 1a2b3c4d5e6f`, or the file it is.
    pub what: String,
    pub endpoints: Vec<Source>,
}

impl BlobJob {
    /// A blob a manifest describes.
    pub fn blob(descriptor: &Descriptor, endpoints: Vec<Source>) -> BlobJob {
        BlobJob {
            digest: descriptor.digest.clone(),
            size: Some(descriptor.size),
            what: format!("blob {}", descriptor.digest.short()),
            endpoints,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum BlobError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("served {actual} for blob {expected}")]
    WrongDigest { expected: Digest, actual: Digest },
    #[error("served {actual}, not the pinned {expected}")]
    WrongFile { expected: Digest, actual: Digest },
    #[error("served more than the {size} bytes the manifest gives for blob {digest}")]
    TooLong { digest: Digest, size: u64 },
    /// A whole answer, shorter than the blob: another file, not a dropped
    /// connection (with the bytes of another endpoint before it, no digest of its
    /// own to give).
    #[error("served {served} bytes, not {size}")]
    Short { served: u64, size: u64 },
    #[error("connection dropped {ATTEMPTS} times: {0}")]
    Dropped(String),
    #[error("{0}")]
    Stalled(String),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    /// Writing to this machine's disk failed (full, read-only, broken): no endpoint
    /// is at fault and none can help, so the run stops. What reached the disk stays
    /// in the partial file, for a rerun to resume from.
    #[error("{}: {error}", path.display())]
    Disk {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Every endpoint failed: what each did.
    #[error("{0}")]
    Endpoints(String),
}

/// The one line a failed write into `store` ends the run with: which store, that
/// its disk is full if it is, and `left` (what was still to fetch), if known.
pub(crate) fn disk_error(store: &Store, e: &DownloadError, left: Option<u64>) -> anyhow::Error {
    let root = store.root().display();
    let full = matches!(e, DownloadError::Disk { error, .. }
        if matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded));
    if !full {
        return anyhow::anyhow!("cannot write to the store {root}: {e}");
    }
    let left = match left {
        Some(n) if n > 0 => format!(", and {} is still to fetch", ferry_cli::human_bytes(n)),
        _ => String::new(),
    };
    anyhow::anyhow!(
        "the disk holding the store {root} is full ({e}){left}: make room, or pull into a --store elsewhere; a rerun resumes where this one stopped"
    )
}

impl From<BlobError> for DownloadError {
    fn from(e: BlobError) -> DownloadError {
        match e {
            BlobError::Io { path, error } => DownloadError::Disk { path, error },
            other => DownloadError::Endpoints(other.to_string()),
        }
    }
}

impl EndpointFailure for BlobError {
    fn problem(&self) -> Option<Problem> {
        match self {
            BlobError::Fetch(e) => Some(e.problem()),
            BlobError::WrongDigest { .. }
            | BlobError::WrongFile { .. }
            | BlobError::TooLong { .. }
            | BlobError::Short { .. } => Some(Problem::WrongBytes),
            BlobError::Dropped(_) => Some(Problem::Broken),
            // It was left alone for a while, as one that cannot be connected to.
            BlobError::Stalled(_) => Some(Problem::Unavailable),
            // This machine's disk, not the endpoint.
            BlobError::Io { .. } => None,
        }
    }
}

/// How a transfer from one endpoint ended, short of an error.
enum Received {
    Complete,
    /// Left for the candidate at this index, which serves (or may serve) faster.
    MovedTo(usize),
}

/// The blob's partial file, what of it is hashed, and where its bytes came from.
struct Partial {
    /// `None` when the bytes are only hashed.
    out: Option<std::io::BufWriter<std::fs::File>>,
    hasher: Hasher,
    path: PathBuf,
    what: String,
    /// `None` until known: from the job, else from an answer's length.
    size: Option<u64>,
    /// Bytes came from an earlier run or from more than one endpoint: a wrong
    /// digest may be another's fault.
    mixed: bool,
    fetched: u64,
    /// The endpoints that served what is hashed, in turn.
    served: Vec<String>,
}

impl Partial {
    /// Nothing yet; the bytes go to `out`, if any.
    fn new(out: Option<std::fs::File>, path: PathBuf, what: &str, size: Option<u64>) -> Partial {
        // Chunks are written on the worker itself: each `write_all` only copies into
        // this 1 MiB buffer, and the write(2) of a full buffer hands the page cache at
        // most 1 MiB, well under a millisecond; a trip to the blocking pool per chunk
        // would cost more. What can wait on the disk (fsync, rename) runs on the
        // blocking pool.
        Partial {
            out: out.map(|file| std::io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Hasher::new(),
            path,
            what: what.to_string(),
            size,
            mixed: false,
            fetched: 0,
            served: Vec::new(),
        }
    }

    fn io(&self, error: std::io::Error) -> BlobError {
        BlobError::Io {
            path: self.path.clone(),
            error,
        }
    }

    fn flush(&mut self) -> Result<(), BlobError> {
        let flushed = self.out.as_mut().map_or(Ok(()), |out| out.flush());
        flushed.map_err(|e| self.io(e))
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let written = self.out.as_mut().map_or(Ok(()), |out| out.write_all(chunk));
        written.map_err(|e| self.io(e))?;
        self.hasher.update(chunk);
        Ok(())
    }

    /// Drops every byte kept so far.
    fn truncate(&mut self, report: &Report) -> Result<(), BlobError> {
        self.flush()?;
        if let Some(out) = self.out.as_mut() {
            let file = out.get_mut();
            let emptied = file
                .set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop));
            emptied.map_err(|e| self.io(e))?;
        }
        report.sub(self.hasher.len());
        self.hasher = Hasher::new();
        self.mixed = false;
        self.served.clear();
        Ok(())
    }
}

/// Downloads one blob, from whichever of its endpoints answers well first, moving
/// on mid-blob when one stalls or is far slower than another; returns the bytes
/// fetched. The error names what each endpoint did.
pub(crate) async fn download(
    client: &Client,
    store: &Store,
    job: &BlobJob,
    report: &Report,
) -> Result<u64, DownloadError> {
    let path = store.partial_path(&job.digest);
    let io = |error: std::io::Error| DownloadError::Disk {
        path: path.clone(),
        error,
    };
    let Some(mut file) = lock_partial(store, &job.digest, job.size)
        .await
        .map_err(io)?
    else {
        return Ok(0);
    };
    let size = job.size;
    let (file, hasher) = blocking(move || {
        let hasher = resume_point(&mut file, size)?;
        Ok((file, hasher))
    })
    .await
    .map_err(io)?;
    report.add(hasher.len());
    let mut partial = Partial::new(Some(file), path.clone(), &job.what, size);
    partial.mixed = !hasher.is_empty();
    partial.hasher = hasher;
    let result = fetch(
        client,
        Some(&job.digest),
        &job.endpoints,
        &mut partial,
        report,
    )
    .await;
    let Partial {
        out, hasher, path, ..
    } = partial;
    let out = out.expect("made with a file");
    let written = out.into_inner().map_err(|e| io(e.into_error()));
    let file = match result.and(written) {
        Ok(file) => file,
        Err(e) => {
            if hasher.is_empty() {
                // Nothing worth resuming: leave no trace.
                blocking(move || std::fs::remove_file(&path)).await.ok();
            }
            return Err(e);
        }
    };
    // The fsync and the rename (with its directory fsync) can each wait on the disk.
    let (store, digest) = (store.clone(), job.digest.clone());
    let fetched = partial.fetched;
    let committed = blocking(move || {
        file.sync_all()?;
        drop(file);
        Ok(store.commit_partial(&digest))
    })
    .await;
    match committed {
        Ok(Ok(())) => Ok(fetched),
        Ok(Err(ferry::store::StoreError::Io { path, error })) => {
            Err(DownloadError::Disk { path, error })
        }
        Ok(Err(e)) => Err(DownloadError::Endpoints(e.to_string())),
        Err(e) => Err(io(e)),
    }
}

/// What [`hash`] found.
pub(crate) struct Hashed {
    pub digest: Digest,
    pub size: u64,
    /// The endpoints that served it, in turn.
    pub served: Vec<String>,
}

/// Reads a file from `endpoints` as [`download`] does, keeping nothing: its digest,
/// size and who served it. With `want`, an endpoint serving other bytes is passed
/// over for the next; without, the first whole answer is taken.
pub(crate) async fn hash(
    client: &Client,
    want: Option<&Digest>,
    what: &str,
    endpoints: &[Source],
    report: &Report,
) -> Result<Hashed, DownloadError> {
    let mut partial = Partial::new(None, PathBuf::new(), what, None);
    let (digest, size) = fetch(client, want, endpoints, &mut partial, report).await?;
    Ok(Hashed {
        digest,
        size,
        served: partial.served,
    })
}

/// Fills `partial` from `endpoints` with bytes hashing to `want` (any bytes, if
/// `None`, as long as one endpoint served them all); returns their digest and
/// size. The error names what each endpoint did, or the local write that failed:
/// that stops at once, as no endpoint is to blame and none can help.
async fn fetch(
    client: &Client,
    want: Option<&Digest>,
    endpoints: &[Source],
    partial: &mut Partial,
    report: &Report,
) -> Result<(Digest, u64), DownloadError> {
    // Endpoints left lately for being slow go last.
    let (mut candidates, demoted): (Vec<&Source>, Vec<&Source>) =
        endpoints.iter().partition(|s| !client.demote(s.endpoint()));
    candidates.extend(demoted);
    let what = partial.what.clone();
    let mut each_failure = Vec::new();
    // Each failure goes into the error, should every endpoint fail; a warning
    // says only the first of its kind from an endpoint (each, when verbose).
    let mut fail = |source: &Source, e: &dyn EndpointFailure| {
        failures::warn(client, report, source.endpoint(), source.asked(), e, || {
            format!("{what} from {source} failed: {e}")
        });
        each_failure.push(format!("{source}: {e}"));
    };
    let mut started_over = false;
    // What an earlier run left may be the whole blob already.
    let mut complete = match (partial.size, want) {
        (Some(size), _) => partial.hasher.len() == size,
        (None, Some(want)) => {
            !partial.hasher.is_empty() && partial.hasher.clone().finish() == *want
        }
        (None, None) => false,
    };
    loop {
        if complete {
            complete = false;
            partial.flush()?;
            let received = partial.hasher.len();
            let actual = std::mem::take(&mut partial.hasher).finish();
            let Some(want) = want.filter(|w| **w != actual) else {
                return Ok((actual, received));
            };
            report.sub(received);
            let mixed = partial.mixed;
            partial.truncate(report)?;
            if mixed && !started_over {
                // What was kept came from elsewhere (and is gone now): ask again
                // from zero, every endpoint.
                started_over = true;
                continue;
            }
            // The endpoint in front served the whole blob: its fault.
            let expected = want.clone();
            let e = match candidates[0] {
                Source::Blob(_) => BlobError::WrongDigest { expected, actual },
                Source::File(_) => BlobError::WrongFile { expected, actual },
            };
            fail(candidates[0], &e);
            candidates.remove(0);
        }
        if candidates.is_empty() {
            return Err(DownloadError::Endpoints(each_failure.join("; ")));
        }
        if want.is_none() {
            // Nothing can tell bytes from two endpoints apart: one serves them all.
            partial.truncate(report)?;
        }
        // Whatever is still buffered goes to the disk first, so the next endpoint is
        // asked from the bytes the partial file holds.
        partial.flush()?;
        let offset = partial.hasher.len();
        let raced = client
            .first_ok(
                &candidates,
                |s| s.endpoint(),
                |s| open(client, s, want, offset),
            )
            .await;
        for (i, e) in &raced.errors {
            fail(candidates[*i], e);
        }
        let Some((i, response)) = raced.won else {
            return Err(DownloadError::Endpoints(each_failure.join("; ")));
        };
        // The winner goes first: a wrong digest is blamed on candidates[0].
        let source = candidates.remove(i);
        let mut failed: Vec<usize> = raced.errors.iter().map(|(j, _)| *j).collect();
        failed.sort_unstable_by(|a, b| b.cmp(a));
        for j in failed {
            candidates.remove(if j > i { j - 1 } else { j });
        }
        candidates.insert(0, source);
        if offset > 0 {
            partial.mixed = true;
        }
        match receive(client, &candidates, want, partial, response, report).await {
            Ok(Received::Complete) => complete = true,
            Ok(Received::MovedTo(j)) => {
                let next = candidates.remove(j);
                candidates.insert(0, next);
            }
            Err(BlobError::Io { path, error }) => {
                return Err(DownloadError::Disk { path, error });
            }
            Err(e) => {
                if matches!(
                    e,
                    BlobError::TooLong { .. }
                        | BlobError::Short { .. }
                        | BlobError::WrongDigest { .. }
                        | BlobError::WrongFile { .. }
                ) {
                    // Bytes that cannot all be the blob's: none is kept.
                    partial.truncate(report)?;
                }
                fail(source, &e);
                candidates.remove(0);
            }
        }
    }
}

/// Asks `source` for the blob `digest` (a file needs none) from byte `offset`.
async fn open(
    client: &Client,
    source: &Source,
    digest: Option<&Digest>,
    offset: u64,
) -> Result<Response, FetchError> {
    match (source, digest) {
        (Source::File(endpoint), _) => client.file(endpoint, offset).await,
        (Source::Blob(endpoint), Some(digest)) => client.blob(endpoint, digest, offset).await,
        (Source::Blob(endpoint), None) => Err(FetchError::Protocol {
            what: endpoint.to_string(),
            reason: "a blob is asked for by its digest".into(),
        }),
    }
}

/// Streams `response` (from `candidates[0]`) into `partial`, asking the same
/// endpoint again from where it stopped when the connection drops. Leaves the
/// endpoint for another candidate when it serves far slower than that one does,
/// if there is a `digest` to check the bytes of two endpoints against.
async fn receive(
    client: &Client,
    candidates: &[&Source],
    digest: Option<&Digest>,
    partial: &mut Partial,
    mut response: Response,
    report: &Report,
) -> Result<Received, BlobError> {
    let source = candidates[0];
    let endpoint = source.endpoint();
    let may_move = digest.is_some();
    let mut drops = 0;
    loop {
        let offset = partial.hasher.len();
        let from_start = response.status() != StatusCode::PARTIAL_CONTENT
            || !response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        if from_start && offset > 0 {
            // The server ignored the Range: start over.
            partial.truncate(report)?;
        }
        if partial.served.last() != Some(&source.to_string()) {
            partial.served.push(source.to_string());
        }
        // Without a size from the job, this answer's length says where the end is.
        let total = partial.size.or_else(|| {
            let length = response.content_length()?;
            Some(partial.hasher.len() + length)
        });
        // What this answer says it holds, to tell a body that ended where it said
        // it would from one cut off.
        let length = response.content_length();
        let started = Instant::now();
        let begun_at = partial.hasher.len();
        let mut checked = started;
        let ended_short = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if let (Some(size), Some(digest)) = (partial.size, digest) {
                        if partial.hasher.len() + chunk.len() as u64 > size {
                            return Err(BlobError::TooLong {
                                digest: digest.clone(),
                                size,
                            });
                        }
                    }
                    partial.write(&chunk)?;
                    partial.fetched += chunk.len() as u64;
                    report.add(chunk.len() as u64);
                    if may_move && checked.elapsed() >= Duration::from_secs(1) {
                        checked = Instant::now();
                        let here = partial.hasher.len() - begun_at;
                        let left = total.map(|t| t.saturating_sub(partial.hasher.len()));
                        if let Some(j) =
                            faster(client, candidates, partial, here, started.elapsed(), left)
                        {
                            partial.flush()?;
                            return Ok(Received::MovedTo(j));
                        }
                    }
                }
                Ok(None) => break total.is_some_and(|t| partial.hasher.len() < t),
                Err(e) if e.is_timeout() => {
                    // It stalled: the next endpoint goes on from here, and the
                    // other downloads leave this one alone for a while.
                    partial.flush()?;
                    let why = format!("it stalled after {} bytes", partial.hasher.len());
                    client.give_up(endpoint, why.clone());
                    return Err(BlobError::Stalled(why));
                }
                Err(e) if drops + 1 >= RetryPolicy::RESUME.attempts => {
                    partial.flush()?;
                    return Err(BlobError::Dropped(FetchError::from(e).to_string()));
                }
                Err(_) => break true,
            }
        };
        let took = started.elapsed();
        let here = partial.hasher.len() - begun_at;
        // Small transfers say more about latency than about speed.
        if took >= Duration::from_millis(500) || here >= 1 << 20 {
            client.record_speed(endpoint, here, took);
        }
        if !ended_short {
            partial.flush()?;
            return Ok(Received::Complete);
        }
        if length == Some(here) {
            // All it said it would send, and still short: another file, which
            // asking again would only fetch again.
            partial.flush()?;
            let served = partial.hasher.len();
            let Some(expected) = digest.filter(|_| begun_at == 0).cloned() else {
                let size = total.unwrap_or_default();
                return Err(BlobError::Short { served, size });
            };
            let actual = partial.hasher.clone().finish();
            return Err(match source {
                Source::Blob(_) => BlobError::WrongDigest { expected, actual },
                Source::File(_) => BlobError::WrongFile { expected, actual },
            });
        }
        // A dropped connection or a short body: resume from what arrived.
        partial.flush()?;
        drops += 1;
        if drops >= RetryPolicy::RESUME.attempts {
            return Err(BlobError::Dropped(format!(
                "the body ended after {} of {} bytes",
                partial.hasher.len(),
                total.unwrap_or_default()
            )));
        }
        tokio::time::sleep(RetryPolicy::RESUME.delay(drops)).await;
        response = open(client, source, digest, partial.hasher.len()).await?;
    }
}

/// The candidate to move the rest of the blob (`left` bytes, if known) to, if this
/// transfer (`here` bytes in `took`) is far slower than another (see
/// [`Client::faster`]).
fn faster(
    client: &Client,
    candidates: &[&Source],
    partial: &Partial,
    here: u64,
    took: Duration,
    left: Option<u64>,
) -> Option<usize> {
    let others: Vec<&Endpoint> = candidates[1..].iter().map(|s| s.endpoint()).collect();
    client
        .faster(
            candidates[0].endpoint(),
            &others,
            here,
            took,
            left?,
            &partial.what,
        )
        .map(|j| j + 1)
}

/// Opens the partial file of a blob for this process alone. Another pull into the
/// same store may be writing it: then wait, and skip the download if that pull
/// finishes the blob. Returns `None` when the blob is already in the store.
async fn lock_partial(
    store: &Store,
    digest: &Digest,
    size: Option<u64>,
) -> std::io::Result<Option<std::fs::File>> {
    let path = store.partial_path(digest);
    // A blob of another size than its manifest gives (cut short) is fetched
    // again; the new one replaces it.
    let has = || {
        std::fs::metadata(store.blob_path(digest))
            .is_ok_and(|m| m.is_file() && size.is_none_or(|s| m.len() == s))
    };
    loop {
        if has() {
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
            Ok(()) if has() => return Ok(None),
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Hashes what an earlier run left of a blob, so the download can resume after it.
fn resume_point(file: &mut std::fs::File, size: Option<u64>) -> std::io::Result<Hasher> {
    let mut hasher = Hasher::new();
    if let Some(size) = size {
        if file.metadata()?.len() > size {
            file.set_len(0)?;
        }
    }
    std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, &mut *file),
        &mut hasher,
    )?;
    file.seek(SeekFrom::Start(hasher.len()))?;
    Ok(hasher)
}

/// Runs blocking file-system work (reading, fsync, rename) on tokio's blocking pool,
/// so that it does not stall the workers driving the other downloads. A panic in
/// `work` is passed on as if it had happened here.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
