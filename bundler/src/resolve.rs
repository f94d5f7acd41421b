//! Resolving a spec into a lock: each tag to the digest of its top-level manifest,
//! each platform asked for to the digest of its platform manifest, and each file to
//! the sha256 of what its endpoints serve (kept in the store, when there is one, so
//! a pull does not fetch it again).

use crate::download::{self, BlobJob, Source};
use crate::mirrors::{Endpoint, MirrorRules};

use anyhow::{anyhow, bail};
use ferry::file_spec::FileSpec;
use ferry::lock::LockedFile;
use ferry::lock::{Lock, LockedImage, LockedPlatform, LOCK_VERSION};
use ferry::manifest::{Manifest, MAX_MANIFEST_BYTES};
use ferry::spec::{ImageSpec, Spec};
use ferry::store::Store;
use ferry::Digest;
use ferry::Platform;
use futures_util::{stream, StreamExt, TryStreamExt};

use crate::failures::{self, EndpointFailure};
use ferry_cli::Report;
use ferry_client::{Asked, Client, FetchError, Problem};

/// Why one endpoint could not answer for an image.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("served {actual} for {reference}, which the {source_of_truth} pins to {expected}")]
    WrongDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
        source_of_truth: &'static str,
    },
    #[error(transparent)]
    Manifest(#[from] ferry::manifest::ManifestError),
}

impl EndpointFailure for EndpointError {
    fn problem(&self) -> Option<Problem> {
        match self {
            EndpointError::Fetch(e) => Some(e.problem()),
            EndpointError::WrongDigest { .. } => Some(Problem::WrongBytes),
            EndpointError::Manifest(_) => Some(Problem::Broken),
        }
    }
}

/// A failure that no other endpoint can fix (the content itself is wrong for the spec).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Fetches the top-level manifest of `reference` from `endpoint` and checks it against
/// `expected` when the reference or the lock pins it.
pub async fn fetch_manifest(
    client: &Client,
    endpoint: &Endpoint,
    reference: &str,
    expected: Option<(&Digest, &'static str)>,
) -> Result<(bytes::Bytes, Option<String>, Digest), EndpointError> {
    let (bytes, content_type) = client.manifest(endpoint, reference).await?;
    let actual = Digest::of(&bytes);
    if let Some((expected, source_of_truth)) = expected {
        if &actual != expected {
            return Err(EndpointError::WrongDigest {
                reference: reference.to_string(),
                expected: expected.clone(),
                actual,
                source_of_truth,
            });
        }
    }
    Ok((bytes, content_type, actual))
}

/// Picks the entry of an index for each platform asked for.
fn pick_platforms(
    image: &ImageSpec,
    entries: &[ferry::manifest::IndexEntry],
) -> Result<Vec<LockedPlatform>, Fatal> {
    image
        .platforms
        .iter()
        .map(|p| {
            let entry = entries
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|offered| p.matches(offered))
                })
                .ok_or_else(|| {
                    let have: Vec<String> = entries
                        .iter()
                        .filter_map(|e| e.platform.as_ref())
                        .filter(|o| !o.os.is_empty() && o.os != "unknown")
                        .map(Platform::to_string)
                        .collect();
                    Fatal(format!(
                        "image {} has no {p} (it has: {})",
                        image.reference,
                        have.join(", ")
                    ))
                })?;
            if !ferry::media::is_manifest(&entry.descriptor.media_type) {
                return Err(Fatal(format!(
                    "image {}: the {p} entry is a {} (nested indexes are not supported)",
                    image.reference, entry.descriptor.media_type
                )));
            }
            Ok(LockedPlatform {
                platform: p.clone(),
                digest: entry.descriptor.digest.clone(),
                media_type: entry.descriptor.media_type.clone(),
                size: entry.descriptor.size,
            })
        })
        .collect()
}

/// Reads a single manifest's config to learn which platform it serves.
async fn config_platform(
    client: &Client,
    endpoint: &Endpoint,
    config: &ferry::manifest::Descriptor,
) -> Result<Platform, EndpointError> {
    if config.size > MAX_MANIFEST_BYTES as u64 {
        return Err(ferry::manifest::ManifestError::TooLarge.into());
    }
    let mut response = client.blob(endpoint, &config.digest, 0).await?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::from)? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > config.size {
            break;
        }
    }
    let actual = Digest::of(&body);
    if actual != config.digest {
        return Err(EndpointError::WrongDigest {
            reference: format!("config {}", config.digest),
            expected: config.digest.clone(),
            actual,
            source_of_truth: "manifest",
        });
    }
    Ok(ferry::manifest::config_platform(&body)?)
}

/// Resolves one image on one endpoint.
async fn resolve_on(
    client: &Client,
    endpoint: &Endpoint,
    image: &ImageSpec,
) -> Result<Result<LockedImage, Fatal>, EndpointError> {
    let reference = image.reference.manifest_reference();
    let pinned = image.reference.digest().map(|d| (d, "spec"));
    let (bytes, content_type, digest) =
        fetch_manifest(client, endpoint, &reference, pinned).await?;
    let manifest = Manifest::parse(&bytes, content_type.as_deref())?;
    let platforms = match &manifest {
        Manifest::Index { entries, .. } => match pick_platforms(image, entries) {
            Ok(p) => p,
            Err(fatal) => return Ok(Err(fatal)),
        },
        Manifest::Image { config, .. } => {
            let cp = config_platform(client, endpoint, config).await?;
            let mut out = Vec::new();
            for p in &image.platforms {
                if !p.matches(&cp) {
                    return Ok(Err(Fatal(format!(
                        "image {} is a single-platform image for {cp}; {p} was asked for",
                        image.reference
                    ))));
                }
                out.push(LockedPlatform {
                    platform: p.clone(),
                    digest: digest.clone(),
                    media_type: manifest.media_type().clone(),
                    size: bytes.len() as u64,
                });
            }
            out
        }
    };
    Ok(Ok(LockedImage {
        reference: image.reference.clone(),
        digest,
        media_type: manifest.media_type().clone(),
        size: bytes.len() as u64,
        platforms,
    }))
}

/// Races `endpoints` for `attempt` (see [`Client::first_ok`]), first saying which
/// are plain HTTP and then warning of those that failed (`what: endpoint failed`;
/// the first of each kind from an endpoint, see [`failures::warn`]), counted as
/// failures at something `asked` for: the first good answer, or what every
/// endpoint did, joined.
pub(crate) async fn first_answer<'e, T, E, Fut>(
    client: &Client,
    endpoints: &'e [Endpoint],
    what: &str,
    asked: Asked,
    report: &Report,
    attempt: impl FnMut(&'e Endpoint) -> Fut,
) -> Result<T, String>
where
    E: EndpointFailure,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    for endpoint in endpoints {
        if let Some(note) = client.insecure_note(endpoint) {
            report.info(&note);
        }
    }
    let raced = client.first_ok(endpoints, |e| e, attempt).await;
    let mut failed = Vec::new();
    for (i, e) in raced.errors {
        failures::warn(client, report, &endpoints[i], asked, &e, || {
            format!("{what}: {} failed: {e}", endpoints[i])
        });
        failed.push(format!("{}: {e}", endpoints[i]));
    }
    raced.won.map(|(_, value)| value).ok_or(failed.join("; "))
}

/// Resolves one image: its endpoints in order, each next one started too while
/// those before have not answered (see [`Client::first_ok`]).
pub async fn resolve_image(
    client: &Client,
    rules: &MirrorRules,
    image: &ImageSpec,
    report: &Report,
) -> anyhow::Result<LockedImage> {
    let endpoints = rules.endpoints(&image.reference);
    let what = image.reference.to_string();
    match first_answer(client, &endpoints, &what, Asked::Image, report, |e| {
        resolve_on(client, e, image)
    })
    .await
    {
        Ok(Ok(locked)) => Ok(locked),
        Ok(Err(fatal)) => Err(fatal.into()),
        Err(failures) => Err(Unresolved {
            reference: image.reference.to_string(),
            reason: format!("every endpoint failed ({failures})"),
        }
        .into()),
    }
}

/// An image no endpoint could resolve.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve image {reference}: {reason}")]
pub struct Unresolved {
    pub reference: String,
    pub reason: String,
}

/// One error for every image that failed: the error itself when it is one, else
/// `cannot resolve N images: A (why); B (why)`.
fn all_failures(mut errors: Vec<anyhow::Error>) -> anyhow::Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let each: Vec<String> = errors
        .iter()
        .map(|e| match e.downcast_ref::<Unresolved>() {
            Some(u) => format!("{} ({})", u.reference, u.reason),
            None => format!("{e:#}"),
        })
        .collect();
    anyhow!("cannot resolve {} images: {}", each.len(), each.join("; "))
}

/// Asks every endpoint of `image` for its tag and refuses when they disagree.
pub async fn cross_check(
    client: &Client,
    rules: &MirrorRules,
    image: &ImageSpec,
    report: &Report,
) -> anyhow::Result<()> {
    let reference = image.reference.manifest_reference();
    let mut seen: Vec<(Endpoint, Digest)> = Vec::new();
    for endpoint in rules.endpoints(&image.reference) {
        if let Some(note) = client.insecure_note(&endpoint) {
            report.info(&note);
        }
        match fetch_manifest(client, &endpoint, &reference, None).await {
            Ok((_, _, digest)) => seen.push((endpoint, digest)),
            Err(e) => failures::warn(client, report, &endpoint, Asked::Image, &e, || {
                format!(
                    "{}: {endpoint} not reachable for the cross-check: {e}",
                    image.reference
                )
            }),
        }
    }
    if seen.windows(2).any(|w| w[0].1 != w[1].1) {
        let list: Vec<String> = seen
            .iter()
            .map(|(e, d)| format!("{e} serves {d}"))
            .collect();
        bail!(
            "image {}: endpoints disagree ({}): a mirror is stale or altered",
            image.reference,
            list.join(", ")
        );
    }
    if seen.is_empty() {
        bail!(
            "image {}: no endpoint answered the cross-check",
            image.reference
        );
    }
    Ok(())
}

/// Resolves a whole spec into a lock, `jobs` images at a time.
pub async fn resolve(
    client: &Client,
    rules: &MirrorRules,
    spec: &Spec,
    jobs: usize,
    cross: bool,
    store: Option<&Store>,
    report: &Report,
) -> anyhow::Result<Lock> {
    // Every image is tried, so that one error names all that failed.
    let (images, failed): (Vec<_>, Vec<_>) = stream::iter(spec.images.iter())
        .map(|image| async move {
            if cross {
                cross_check(client, rules, image, report).await?;
            }
            let locked = resolve_image(client, rules, image, report).await?;
            report.info(&format!("locked {} -> {}", image.reference, locked.digest));
            anyhow::Ok(locked)
        })
        .buffered(jobs)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .partition(Result::is_ok);
    if !failed.is_empty() {
        return Err(all_failures(
            failed.into_iter().filter_map(Result::err).collect(),
        ));
    }
    let images: Vec<LockedImage> = images.into_iter().filter_map(Result::ok).collect();
    let targets: Vec<(&FileSpec, Option<Platform>)> = spec
        .files
        .iter()
        .flat_map(|f| f.targets().into_iter().map(move |t| (f, t)))
        .collect();
    let files: Vec<LockedFile> = stream::iter(targets)
        .map(|(file, target)| resolve_file(client, rules, file, target, store, report))
        .buffered(jobs)
        .try_collect()
        .await?;
    let charts = stream::iter(spec.charts.iter())
        .map(|chart| crate::charts::resolve_chart(client, rules, chart, store, report))
        .buffered(jobs)
        .try_collect()
        .await?;
    Ok(Lock {
        version: LOCK_VERSION,
        name: spec.name.clone(),
        spec_version: spec.version.clone(),
        images,
        files,
        charts,
    })
}

/// Downloads the file pinned to `pin` into `store`, unless it is there; its size.
async fn keep_file(
    client: &Client,
    store: &Store,
    endpoints: Vec<Source>,
    pin: &Digest,
    what: &str,
    report: &Report,
) -> anyhow::Result<u64> {
    let kept = |store: &Store| std::fs::metadata(store.blob_path(pin)).map(|m| m.len());
    if let Ok(size) = kept(store) {
        report.info(&format!("locked {what} -> {pin} (in the store already)"));
        return Ok(size);
    }
    let job = BlobJob {
        digest: pin.clone(),
        size: None,
        what: what.to_string(),
        endpoints,
    };
    match download::download(client, store, &job, report).await {
        Ok(_) => {}
        Err(e @ download::DownloadError::Disk { .. }) => {
            return Err(download::disk_error(store, &e, None));
        }
        Err(e) => return Err(unserved(what, pin, e)),
    }
    let size = kept(store).map_err(|e| anyhow!("{}: {e}", store.blob_path(pin).display()))?;
    report.info(&format!("locked {what} -> {pin}, kept in the store"));
    Ok(size)
}

/// No endpoint gave the bytes `pin` names.
fn unserved(what: &str, pin: &Digest, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{what}: no endpoint served the pinned sha256 {pin} ({e})")
}

/// Pins one file on one platform: downloads it from the first endpoint that serves
/// it and checks it against the spec's pin (an endpoint serving other bytes is
/// skipped for the next); without a pin, what was downloaded is pinned, with a
/// warning naming the file. A pinned file is downloaded into `store`, if given,
/// where the pull finds it (and the next lock too).
pub async fn resolve_file(
    client: &Client,
    rules: &MirrorRules,
    file: &FileSpec,
    platform: Option<Platform>,
    store: Option<&Store>,
    report: &Report,
) -> anyhow::Result<LockedFile> {
    let url = file.url_for(platform.as_ref());
    let what = match &platform {
        Some(p) => format!("file {} {} for {p}", file.name, file.version),
        None => format!("file {} {}", file.name, file.version),
    };
    let pin = file.pin(platform.as_ref());
    let endpoints = rules.file_endpoints(&url);
    for endpoint in &endpoints {
        if let Some(note) = client.insecure_note(endpoint) {
            report.info(&note);
        }
    }
    let sources: Vec<Source> = endpoints.into_iter().map(Source::File).collect();
    let locked = |sha256: Digest, size: u64| LockedFile {
        name: file.name.clone(),
        version: file.version.clone(),
        platform,
        url: url.clone(),
        sha256,
        size,
    };
    if let (Some(store), Some(pin)) = (store, pin) {
        let size = keep_file(client, store, sources, pin, &what, report).await?;
        return Ok(locked(pin.clone(), size));
    }
    let hashed = match download::hash(client, pin, &what, &sources, report).await {
        Ok(hashed) => hashed,
        Err(e) => match pin {
            Some(pin) => return Err(unserved(&what, pin, e)),
            None => bail!("{what}: every endpoint failed ({e})"),
        },
    };
    let (actual, served) = (hashed.digest, hashed.served.join(" then "));
    if pin.is_none() {
        report.warn(&format!(
            "{what} has no sha256 in the spec: pinned to {actual}, as {served} served it; copy upstream's pin into the spec"
        ));
    }
    report.info(&format!("locked {what} -> {actual}"));
    Ok(locked(actual, hashed.size))
}
