//! `push`: copies a store into a site's existing registry (Harbor, registry:2,
//! another `ferry-installer serve`), byte for byte, so every digest there is the
//! upstream one and nodes still pull by upstream names.
//!
//! A push runs in four passes over the store's images, each in parallel: blobs
//! (skipped when the repository has them, mounted when another repository of the
//! registry got them earlier in the run, else uploaded), platform manifests by
//! digest, top-level manifests by tag, and a read-back of every manifest whose
//! digest must match. An interrupted push is resumed by running it again: what
//! landed is found by `HEAD` and not sent again.

mod bundle;
mod command;
mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry::manifest::{Descriptor, Manifest};
use ferry::store::{Store, StoreError};
use ferry::Digest;
use ferry_client::{BlobSource, Client, Endpoint, FetchError, Upload};
use futures_util::{StreamExt as _, TryStreamExt as _};

pub use bundle::push_bundle;
pub use command::{run, PushArgs};
pub use target::{Target, TargetError, FLATTEN_SEPARATOR};

/// How a push runs.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// Requests in flight at once.
    pub jobs: usize,
    /// Blobs larger than this go in chunks of this size.
    pub chunk: u64,
}

/// The default chunk: large enough that its round trip costs little next to its
/// bytes, small enough that a cut connection loses little.
pub const DEFAULT_CHUNK: u64 = 64 << 20;

/// What a push did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub images: usize,
    pub blobs_pushed: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub bytes_sent: u64,
    pub manifests_pushed: usize,
    pub manifests_present: usize,
    pub manifests_checked: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{image}: {what}: {source}")]
    Registry {
        image: String,
        what: String,
        source: FetchError,
    },
    #[error(
        "{image}: the registry holds other bytes for manifest {digest} (they hash to {actual})"
    )]
    Mismatch {
        image: String,
        digest: Digest,
        actual: Digest,
    },
    /// One image's; gathered into [`PushError::PartialIndexes`].
    #[error("{image}: the registry refused index {digest}, which names platforms the store does not hold ({missing})")]
    PartialIndex {
        image: String,
        digest: Digest,
        missing: String,
    },
    #[error("the registry refused {count} index(es) naming platforms the store does not hold, and pushed the rest: {images}; bundle every platform of these images, or let nodes pull from `ferry-installer serve`")]
    PartialIndexes {
        count: usize,
        images: String,
        summary: Box<Summary>,
    },
    #[error("{0}: its name is not NAME:TAG")]
    Name(String),
    #[error(transparent)]
    Bundle(#[from] ferry::archive::ArchiveError),
    #[error("a delta bundle needs its base: unpack it onto the store that holds the base, and push the store")]
    Delta,
    #[error("cannot reach the registry: {0}")]
    Unreachable(FetchError),
    #[error("{place} lacks blob {digest}, which its images need")]
    Missing { digest: Digest, place: String },
}

/// One image (or file, or chart) of the store, as it is pushed.
struct Image {
    /// The store's name, `registry.k8s.io/pause:3.10`.
    label: String,
    endpoint: Endpoint,
    /// `None` for a manifest the store names by digest: pushed by it alone.
    tag: Option<String>,
    top: Descriptor,
    top_bytes: Bytes,
    /// The platform manifests the store holds, with their bytes.
    children: Vec<(Descriptor, Bytes)>,
    /// Entries of the index the store does not hold, as `os/arch` (or digests).
    missing: Vec<String>,
    /// Configs and layers of every child, each once.
    blobs: BTreeMap<Digest, u64>,
}

impl Image {
    /// Makes a registry's refusal of `what` (for this image) a push error.
    fn failed(&self, what: String) -> impl FnOnce(FetchError) -> PushError + '_ {
        move |source| PushError::Registry {
            image: self.label.clone(),
            what,
            source,
        }
    }
}

/// What a push will send: every image of a store, mapped to its repository.
pub struct Plan {
    images: Vec<Image>,
}

/// What a plan is read from: the images by name, and their manifests' bytes.
pub(crate) struct Source<'a> {
    pub index: BTreeMap<String, Descriptor>,
    /// A blob's bytes, if the source has it (manifests only are asked for).
    pub manifest: &'a dyn Fn(&Digest) -> Result<Option<Bytes>, PushError>,
    /// Whether the source has a blob.
    pub has: &'a dyn Fn(&Digest) -> bool,
    /// The source, for messages: "store DIR", "bundle FILE".
    pub name: String,
}

impl Plan {
    /// Reads every image of the store and what it needs.
    pub fn read(store: &Store, target: &Target) -> Result<Plan, PushError> {
        let manifest = |d: &Digest| -> Result<Option<Bytes>, PushError> {
            if !store.has_blob(d) {
                return Ok(None);
            }
            Ok(Some(Bytes::from(store.read_blob(d)?)))
        };
        let has = |d: &Digest| store.has_blob(d);
        Plan::from_source(
            &Source {
                index: store.images()?,
                manifest: &manifest,
                has: &has,
                name: format!("store {}", store.root().display()),
            },
            target,
        )
    }

    pub(crate) fn from_source(source: &Source<'_>, target: &Target) -> Result<Plan, PushError> {
        Ok(Plan {
            images: images(source, target)?,
        })
    }

    /// Checks that the registry answers, with the first repository's credentials,
    /// before any blob is named in an error.
    pub(crate) async fn ping(&self, client: &Client) -> Result<(), PushError> {
        match self.images.first() {
            Some(image) => client
                .ping(&image.endpoint)
                .await
                .map_err(PushError::Unreachable),
            None => Ok(()),
        }
    }

    /// The bytes of every blob in every repository it goes to: the progress
    /// total (a blob already there or mounted counts as done when found so).
    pub fn bytes(&self) -> u64 {
        self.images.iter().flat_map(|i| i.blobs.values()).sum()
    }
}

fn images(source: &Source<'_>, target: &Target) -> Result<Vec<Image>, PushError> {
    let missing_blob = |digest: &Digest| PushError::Missing {
        digest: digest.clone(),
        place: source.name.clone(),
    };
    let mut out = Vec::new();
    for (label, top) in &source.index {
        // `REPO:TAG`, or `REPO@DIGEST` for a manifest pushed by digest (a signature
        // pushed to `serve`): that one goes by digest alone.
        let (name, tag) = match label.split_once('@') {
            Some((name, _)) => (name, None),
            None => label
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map(|(name, tag)| (name, Some(tag.to_string())))
                .ok_or_else(|| PushError::Name(label.clone()))?,
        };
        let top_bytes = (source.manifest)(&top.digest)?.ok_or_else(|| missing_blob(&top.digest))?;
        let manifest_error = |error| StoreError::Manifest {
            digest: top.digest.clone(),
            error,
        };
        let mut children = Vec::new();
        let mut missing = Vec::new();
        match Manifest::parse(&top_bytes, Some(top.media_type.as_ref())).map_err(manifest_error)? {
            Manifest::Index { entries, .. } => {
                for entry in entries {
                    match (source.manifest)(&entry.descriptor.digest)? {
                        Some(bytes) => children.push((entry.descriptor, bytes)),
                        None => missing.push(entry.platform.map_or_else(
                            || entry.descriptor.digest.to_string(),
                            |p| p.to_string(),
                        )),
                    }
                }
            }
            Manifest::Image { .. } => {}
        }
        let mut blobs = BTreeMap::new();
        let platforms: Vec<&Descriptor> = if children.is_empty() {
            vec![top]
        } else {
            children.iter().map(|(d, _)| d).collect()
        };
        for p in platforms {
            let bytes = if p.digest == top.digest {
                &top_bytes
            } else {
                &children.iter().find(|(d, _)| d == p).expect("a child").1
            };
            for d in ferry::store::platform_blobs(p, bytes)? {
                if !(source.has)(&d.digest) {
                    return Err(missing_blob(&d.digest));
                }
                blobs.insert(d.digest, d.size);
            }
        }
        out.push(Image {
            endpoint: Endpoint {
                base_url: target.base_url.clone(),
                repository: target.repository(name),
                upstream: false,
                connect_timeout: None,
            },
            tag,
            label: label.clone(),
            top: top.clone(),
            top_bytes,
            children,
            missing,
            blobs,
        });
    }
    Ok(out)
}

/// What happened to one blob in one repository.
enum BlobOutcome {
    Present,
    Pushed,
    Mounted,
}

/// Pushes every image of `store` to `target`. `progress` is told of bytes as they
/// are sent (and of blobs already there, by their size).
pub async fn push(
    store: &Store,
    plan: &Plan,
    client: &Client,
    options: PushOptions,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Summary, PushError> {
    plan.ping(client).await?;
    let mut summary = Summary {
        images: plan.images.len(),
        ..Summary::default()
    };
    blobs(
        plan,
        client,
        options,
        progress,
        Some(store),
        &HashMap::new(),
        &mut summary,
    )
    .await?;
    manifests(plan, client, options.jobs.max(1), &mut summary).await?;
    Ok(summary)
}

/// Every blob of every image into its repository: skipped when there, mounted
/// from the repository that got it first (`landed` names, by digest, a repository
/// known to hold it already), else uploaded from `store`; without a store, a blob
/// that cannot be mounted fails.
async fn blobs(
    plan: &Plan,
    client: &Client,
    options: PushOptions,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
    store: Option<&Store>,
    landed: &HashMap<Digest, String>,
    summary: &mut Summary,
) -> Result<(), PushError> {
    let images = &plan.images;
    let jobs = options.jobs.max(1);
    // Blobs, largest first so the long uploads start early. A blob several
    // repositories share is uploaded once and mounted into the others.
    let mut tasks: Vec<(&Image, Digest, u64)> = Vec::new();
    for image in images {
        for (digest, size) in &image.blobs {
            tasks.push((image, digest.clone(), *size));
        }
    }
    tasks.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    let homes: HashMap<Digest, Arc<tokio::sync::OnceCell<String>>> = tasks
        .iter()
        .map(|(_, d, _)| {
            let cell = tokio::sync::OnceCell::new_with(landed.get(d).cloned());
            (d.clone(), Arc::new(cell))
        })
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let counter: ferry_client::Sent = {
        let (sent, progress) = (Arc::clone(&sent), Arc::clone(&progress));
        Arc::new(move |n| {
            sent.fetch_add(n, Ordering::Relaxed);
            progress(n);
        })
    };
    let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(tasks.iter())
        .map(|(image, digest, size)| {
            let (home, counter, progress) = (&homes[digest], &counter, &progress);
            async move {
                let fail = |what: String| image.failed(what);
                let ep = &image.endpoint;
                // Where `landed` says it is, it was seen or sent this run: no need
                // to ask the registry again.
                let known = landed.get(digest) == Some(&ep.repository);
                if known
                    || client
                        .has_blob(ep, digest)
                        .await
                        .map_err(fail(format!("blob {digest}")))?
                {
                    progress(*size);
                    return Ok::<_, PushError>(BlobOutcome::Present);
                }
                let source = store.map(|store| BlobSource {
                    path: store.blob_path(digest),
                    digest: digest.clone(),
                    size: *size,
                });
                let unsent = || FetchError::Protocol {
                    what: format!("blob {digest}"),
                    reason: "the registry lacks it and would not mount it; push from an unpacked store instead".into(),
                };
                let from = home
                    .get_or_try_init(|| async {
                        let source = source.as_ref().ok_or_else(unsent)?;
                        let session = client.start_upload(ep).await?;
                        client
                            .upload(ep, session, source, options.chunk, counter)
                            .await?;
                        Ok(ep.repository.clone())
                    })
                    .await
                    .map_err(fail(format!("upload of blob {digest}")))?;
                if from == &ep.repository {
                    return Ok(BlobOutcome::Pushed);
                }
                match client
                    .mount(ep, digest, from)
                    .await
                    .map_err(fail(format!("mount of blob {digest} from {from}")))?
                {
                    Upload::Mounted => {
                        progress(*size);
                        Ok(BlobOutcome::Mounted)
                    }
                    Upload::Session(session) => {
                        let source = source
                            .as_ref()
                            .ok_or_else(unsent)
                            .map_err(fail(format!("mount of blob {digest} from {from}")))?;
                        client
                            .upload(ep, session, source, options.chunk, counter)
                            .await
                            .map_err(fail(format!("upload of blob {digest}")))?;
                        Ok(BlobOutcome::Pushed)
                    }
                }
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    for outcome in outcomes {
        match outcome {
            BlobOutcome::Present => summary.blobs_present += 1,
            BlobOutcome::Mounted => summary.blobs_mounted += 1,
            BlobOutcome::Pushed => summary.blobs_pushed += 1,
        }
    }
    summary.bytes_sent = sent.load(Ordering::Relaxed);
    Ok(())
}

/// Platform manifests, then top-level ones, then every manifest read back.
async fn manifests(
    plan: &Plan,
    client: &Client,
    jobs: usize,
    summary: &mut Summary,
) -> Result<(), PushError> {
    let images = &plan.images;
    // Platform manifests by digest, then the top-level ones by tag: a registry
    // checks that what a manifest names is there.
    let children: Vec<(&Image, &Descriptor, &Bytes)> = images
        .iter()
        .flat_map(|i| i.children.iter().map(move |(d, b)| (i, d, b)))
        .collect();
    let pushed: Vec<bool> = futures_util::stream::iter(children.iter())
        .map(|(image, d, bytes)| put_manifest(client, image, d, None, bytes))
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    count(summary, &pushed);
    // A registry that checks an index's entries (registry:2, Harbor) refuses one
    // whose platforms the store lacks: the rest is pushed, and those named.
    let mut refused = Vec::new();
    let pushed: Vec<bool> = futures_util::stream::iter(images.iter())
        .map(|image| {
            put_manifest(
                client,
                image,
                &image.top,
                image.tag.as_deref(),
                &image.top_bytes,
            )
        })
        .buffer_unordered(jobs)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| match r {
            Err(PushError::PartialIndex { image, missing, .. }) => {
                refused.push((image, missing));
                Ok(false)
            }
            other => other,
        })
        .collect::<Result<_, _>>()?;
    count(summary, &pushed);
    summary.manifests_present -= refused.len();

    // Every manifest read back by digest: the registry must hold the same bytes.
    let all: Vec<(&Image, &Digest)> = images
        .iter()
        .flat_map(|i| {
            let top = (!refused.iter().any(|(r, _)| r == &i.label)).then_some((i, &i.top.digest));
            top.into_iter()
                .chain(i.children.iter().map(move |(d, _)| (i, &d.digest)))
        })
        .collect();
    let checked: Vec<()> = futures_util::stream::iter(all.iter())
        .map(|(image, digest)| async move {
            let bytes = client
                .read_back(&image.endpoint, digest)
                .await
                .map_err(image.failed(format!("reading back manifest {digest}")))?;
            let actual = Digest::of(&bytes);
            if &actual != *digest {
                return Err(PushError::Mismatch {
                    image: image.label.clone(),
                    digest: (*digest).clone(),
                    actual,
                });
            }
            Ok(())
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    summary.manifests_checked = checked.len();
    if !refused.is_empty() {
        refused.sort();
        let images: Vec<String> = refused
            .iter()
            .map(|(image, missing)| format!("{image} (lacks {missing})"))
            .collect();
        return Err(PushError::PartialIndexes {
            count: refused.len(),
            images: images.join("; "),
            summary: Box::new(summary.clone()),
        });
    }
    Ok(())
}

fn count(summary: &mut Summary, pushed: &[bool]) {
    for p in pushed {
        if *p {
            summary.manifests_pushed += 1;
        } else {
            summary.manifests_present += 1;
        }
    }
}

/// Puts one manifest under `tag` (else its digest) unless the registry has it there
/// already; whether it was sent.
async fn put_manifest(
    client: &Client,
    image: &Image,
    manifest: &Descriptor,
    tag: Option<&str>,
    bytes: &Bytes,
) -> Result<bool, PushError> {
    let fail = |what: String| image.failed(what);
    let digest = &manifest.digest;
    let reference = tag.map_or_else(|| digest.to_string(), str::to_string);
    let there = match tag {
        None => client
            .has_manifest(&image.endpoint, digest)
            .await
            .map_err(fail(format!("manifest {digest}")))?,
        Some(tag) => {
            client
                .tag_digest(&image.endpoint, tag)
                .await
                .map_err(fail(format!("tag {reference}")))?
                .as_ref()
                == Some(digest)
        }
    };
    if there {
        return Ok(false);
    }
    let result = client
        .put_manifest(
            &image.endpoint,
            &reference,
            manifest.media_type.as_ref(),
            bytes.clone(),
        )
        .await;
    match result {
        Ok(()) => Ok(true),
        Err(FetchError::Status {
            code: Some(code), ..
        }) if code == "MANIFEST_BLOB_UNKNOWN"
            && !image.missing.is_empty()
            && digest == &image.top.digest =>
        {
            Err(PushError::PartialIndex {
                image: image.label.clone(),
                digest: digest.clone(),
                missing: image.missing.join(", "),
            })
        }
        Err(source) => Err(fail(format!("manifest {reference}"))(source)),
    }
}
