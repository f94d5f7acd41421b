//! Pushing straight from a signed bundle, without unpacking it into a store, in
//! two streaming passes over it.
//!
//! The first checks the signature and every byte, as `verify` does, and keeps the
//! manifests: nothing is sent before the whole bundle has checked out. Then the
//! registry is asked which blobs it has. The second pass streams the bundle again
//! (checking it again: the file may have changed in between) and uploads each
//! blob the registry lacks into the first repository that needs it, small ones
//! several at a time from memory, large ones streamed as they are read. Blobs are
//! then mounted into the other repositories and the manifests pushed, as from a
//! store.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry::archive::parts::PartReader;
use ferry::archive::unpack::{stream, EntryReader};
use ferry::archive::ArchiveError;
use ferry::manifest::MAX_MANIFEST_BYTES;
use ferry::progress::Progress;
use ferry::signing::PublicKey;
use ferry::Digest;
use ferry_client::{Client, Endpoint, FetchError};
use futures_util::StreamExt as _;

use super::{blobs, manifests, Plan, PushError, PushOptions, Source, Summary, Target};

/// Blobs up to this size are read whole and uploaded while the next ones are read.
const SMALL: u64 = 4 << 20;

/// What the first pass keeps: the index and every JSON-looking small blob (the
/// manifests among them), and the size of every blob.
#[derive(Default)]
struct Kept {
    index: Option<Vec<u8>>,
    json: HashMap<Digest, Bytes>,
    blobs: HashMap<Digest, u64>,
}

/// Pushes the bundle at `path`, signed by `key`, to `target`.
pub async fn push_bundle(
    path: &Path,
    key: &PublicKey,
    target: &Target,
    client: Arc<Client>,
    options: PushOptions,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<Summary, PushError> {
    // Pass 1: check everything, keep the manifests.
    let kept = {
        let (path, key, progress) = (path.to_path_buf(), key.clone(), Arc::clone(&progress));
        tokio::task::spawn_blocking(move || first_pass(&path, &key, &*progress))
            .await
            .expect("the first pass does not panic")?
    };
    let index = match &kept.index {
        Some(bytes) => ferry::store::parse_index(bytes).map_err(|e| {
            PushError::Bundle(ArchiveError::BadManifest(format!("index.json: {e}")))
        })?,
        None => Vec::new(),
    };
    let manifest = |d: &Digest| Ok(kept.json.get(d).cloned());
    let has = |d: &Digest| kept.blobs.contains_key(d);
    let plan = Plan::from_source(
        &Source {
            index: index.into_iter().collect::<BTreeMap<_, _>>(),
            manifest: &manifest,
            has: &has,
            name: format!("bundle {}", path.display()),
        },
        target,
    )?;

    plan.ping(&client).await?;
    // Which blobs the registry has somewhere they are needed, and which it lacks.
    let mut wanted: BTreeMap<Digest, Vec<Endpoint>> = BTreeMap::new();
    for image in &plan.images {
        for digest in image.blobs.keys() {
            wanted
                .entry(digest.clone())
                .or_default()
                .push(image.endpoint.clone());
        }
    }
    let found: Vec<(Digest, Option<String>)> = futures_util::stream::iter(wanted.iter())
        .map(|(digest, endpoints)| {
            let client = &client;
            async move {
                for ep in endpoints {
                    if client
                        .has_blob(ep, digest)
                        .await
                        .map_err(|source| PushError::Registry {
                            image: ep.repository.clone(),
                            what: format!("blob {digest}"),
                            source,
                        })?
                    {
                        return Ok::<_, PushError>((digest.clone(), Some(ep.repository.clone())));
                    }
                }
                Ok((digest.clone(), None))
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut landed: HashMap<Digest, String> = HashMap::new();
    let mut needed: HashMap<Digest, Endpoint> = HashMap::new();
    for (digest, home) in found {
        match home {
            Some(repo) => {
                landed.insert(digest, repo);
            }
            None => {
                let ep = wanted[&digest][0].clone();
                needed.insert(digest, ep);
            }
        }
    }

    // Pass 2: upload what the registry lacks as the bundle streams by.
    let mut summary = Summary {
        images: plan.images.len(),
        ..Summary::default()
    };
    if !needed.is_empty() {
        let sent = {
            let (path, key, progress) = (path.to_path_buf(), key.clone(), Arc::clone(&progress));
            let (client, needed) = (Arc::clone(&client), needed.clone());
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                second_pass(&path, &key, &*progress, &handle, client, &needed, options)
            })
            .await
            .expect("the second pass does not panic")?
        };
        summary.blobs_pushed = needed.len();
        summary.bytes_sent = sent;
        for (digest, ep) in needed {
            landed.insert(digest, ep.repository);
        }
    }
    let pushed = summary.blobs_pushed;
    let bytes = summary.bytes_sent;
    blobs(
        &plan,
        &client,
        options,
        Arc::new(|_| {}),
        None,
        &landed,
        &mut summary,
    )
    .await?;
    // The blobs of pass 2 were found where they were sent, not already there.
    summary.blobs_present -= pushed;
    summary.blobs_pushed = pushed;
    summary.bytes_sent = bytes;
    manifests(&plan, &client, options.jobs.max(1), &mut summary).await?;
    Ok(summary)
}

fn first_pass(path: &Path, key: &PublicKey, progress: &dyn Progress) -> Result<Kept, PushError> {
    let mut kept = Kept::default();
    let mut delta = false;
    let reader = PartReader::open(path, Some(key))?;
    let streamed = stream(
        reader,
        key,
        "verifying",
        progress,
        &mut |head| {
            if head.manifest.base.is_some() {
                // Refused from its signed head, before the rest is read.
                delta = true;
                return Err(ArchiveError::Part("a delta bundle".into()));
            }
            for e in &head.manifest.entries {
                if e.path.starts_with("blobs/") {
                    kept.blobs.insert(e.sha256.clone(), e.size);
                }
            }
            Ok(())
        },
        &mut |mut entry: EntryReader<'_>| {
            if entry.entry.path == "index.json" {
                kept.index = Some(entry.read_all(ferry::archive::MAX_INDEX_BYTES)?);
            } else if entry.entry.path.starts_with("blobs/")
                && entry.entry.size <= MAX_MANIFEST_BYTES as u64
            {
                let digest = entry.entry.sha256.clone();
                let bytes = entry.read_all(MAX_MANIFEST_BYTES as u64)?;
                if bytes.first() == Some(&b'{') {
                    kept.json.insert(digest, Bytes::from(bytes));
                }
            }
            Ok(())
        },
    );
    if delta {
        return Err(PushError::Delta);
    }
    streamed?;
    Ok(kept)
}

/// Streams the bundle again and uploads the `needed` blobs; returns the bytes sent.
fn second_pass(
    path: &Path,
    key: &PublicKey,
    progress: &dyn Progress,
    handle: &tokio::runtime::Handle,
    client: Arc<Client>,
    needed: &HashMap<Digest, Endpoint>,
    options: PushOptions,
) -> Result<u64, PushError> {
    let permits = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
    let mut tasks = Vec::new();
    let failed: Arc<Mutex<Option<(Digest, FetchError)>>> = Arc::default();
    let mut sent = 0;
    let reader = PartReader::open(path, Some(key))?;
    let result = stream(
        reader,
        key,
        "pushing",
        progress,
        &mut |_| Ok(()),
        &mut |mut entry| {
            let Some(ep) = needed.get(&entry.entry.sha256) else {
                return Ok(());
            };
            let (digest, size) = (entry.entry.sha256.clone(), entry.entry.size);
            let permit = handle
                .block_on(Arc::clone(&permits).acquire_owned())
                .expect("the semaphore is never closed");
            let (client, ep, failed) = (Arc::clone(&client), ep.clone(), Arc::clone(&failed));
            let upload = |body: ferry_client::Body| {
                let digest = digest.clone();
                async move {
                    if let Err(e) = client.upload_stream(&ep, &digest, size, body).await {
                        failed.lock().unwrap().get_or_insert((digest, e));
                    }
                    drop(permit);
                }
            };
            if size <= SMALL {
                let bytes = entry.read_all(SMALL)?;
                tasks.push(handle.spawn(upload(ferry_client::Body::from(bytes))));
            } else {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
                let body = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (chunk, rx))
                });
                tasks.push(handle.spawn(upload(ferry_client::Body::wrap_stream(body))));
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                    if n == 0
                        || tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                    {
                        break;
                    }
                }
            }
            sent += size;
            Ok(())
        },
    );
    for task in tasks {
        handle.block_on(task).expect("an upload does not panic");
    }
    if let Some((digest, source)) = failed.lock().unwrap().take() {
        return Err(PushError::Registry {
            image: needed[&digest].repository.clone(),
            what: format!("upload of blob {digest}"),
            source,
        });
    }
    result?;
    Ok(sent)
}
