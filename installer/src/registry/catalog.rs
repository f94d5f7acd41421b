//! The registry's in-memory view of the store: every repository, its tags and every
//! manifest reachable from them, with the manifest bytes themselves.
//!
//! Manifests are a few hundred bytes to a few KiB and are what nodes ask for most
//! often, so they are answered from memory with precomputed headers; blobs are not
//! kept here (they stream from their files). The view is rebuilt from `index.json`
//! at start, after every push, and when `index.json` changes on disk (an unpack
//! into a served store), and swapped in whole, so a request always sees one
//! consistent state.
//!
//! A repository holds the manifests its tags point at and everything reachable
//! from them (index -> platform manifests), which is what registry:2 links to a
//! repository: `GET /v2/<repo>/manifests/<digest>` answers exactly those.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use axum::http::HeaderValue;
use bytes::Bytes;
use ferry::manifest::MAX_MANIFEST_BYTES;
use ferry::store::{Store, StoreError};
use ferry::{Digest, Reference};
use serde_json::Value;

/// How deep an index may nest other indexes before we stop following it.
const MAX_DEPTH: usize = 4;

/// One manifest, ready to be sent.
#[derive(Debug)]
pub struct ManifestEntry {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub content_type: HeaderValue,
    pub digest_header: HeaderValue,
    pub etag: HeaderValue,
    /// For an index: its entries, with platform, for clients that cannot read lists.
    pub children: Vec<Child>,
    /// The `subject` this manifest refers to (referrers API).
    pub subject: Option<Digest>,
    /// `artifactType`, else the config's media type (referrers API).
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Child {
    pub digest: Digest,
    pub media_type: String,
    pub platform: Option<ferry::Platform>,
}

/// One repository.
#[derive(Debug, Default, Clone)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    pub manifests: HashSet<Digest>,
    /// subject digest -> manifests in this repository that refer to it.
    pub referrers: HashMap<Digest, Vec<Digest>>,
    /// The name as `index.json` spells it (`files/kubelet`, not the resolved
    /// `docker.io/files/kubelet`), for `/v2/_catalog`.
    pub shown: String,
}

/// A consistent snapshot of everything the store serves.
#[derive(Debug, Default)]
pub struct Catalog {
    pub repos: BTreeMap<String, Repo>,
    pub manifests: HashMap<Digest, Arc<ManifestEntry>>,
}

impl Catalog {
    /// The manifest `digest` if repository `repo` can reach it.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Option<&Arc<ManifestEntry>> {
        let r = self.repos.get(repo)?;
        if !r.manifests.contains(digest) {
            return None;
        }
        self.manifests.get(digest)
    }

    /// Adds manifest `digest` (and what it reaches) to `repo`, reading blobs from the
    /// store unless they are already known. Missing blobs are skipped: a bundle may
    /// hold only some platforms of an index.
    fn add(
        &mut self,
        store: &Store,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        depth: usize,
    ) -> Result<bool, StoreError> {
        let entry = match self.manifests.get(digest) {
            Some(e) => e.clone(),
            None => {
                if !store.has_blob(digest) {
                    return Ok(false);
                }
                let path = store.blob_path(digest);
                let len = std::fs::metadata(&path)
                    .map_err(|error| StoreError::Io {
                        path: path.clone(),
                        error,
                    })?
                    .len();
                if len > MAX_MANIFEST_BYTES as u64 {
                    ferry_cli::say!("warning: manifest {digest} is larger than 4 MiB; not served");
                    return Ok(false);
                }
                let bytes = store.read_blob(digest)?;
                let e = Arc::new(entry(digest, media_type, Bytes::from(bytes)));
                self.manifests.insert(digest.clone(), e.clone());
                e
            }
        };
        let r = self.repos.entry(repo.to_string()).or_default();
        if !r.manifests.insert(digest.clone()) {
            return Ok(true);
        }
        if let Some(s) = &entry.subject {
            r.referrers
                .entry(s.clone())
                .or_default()
                .push(digest.clone());
        }
        if depth < MAX_DEPTH {
            for c in &entry.children {
                self.add(store, repo, &c.digest, &c.media_type, depth + 1)?;
            }
        }
        Ok(true)
    }
}

fn entry(digest: &Digest, media_type: &str, bytes: Bytes) -> ManifestEntry {
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let media_type = if media_type.is_empty() {
        doc["mediaType"].as_str().unwrap_or_default().to_string()
    } else {
        media_type.to_string()
    };
    let children = doc["manifests"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|m| {
                    Some(Child {
                        digest: m["digest"].as_str()?.parse().ok()?,
                        media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
                        platform: m["platform"]["os"].as_str().map(|os| {
                            ferry::Platform::new(
                                os,
                                m["platform"]["architecture"].as_str().unwrap_or_default(),
                                m["platform"]["variant"].as_str(),
                            )
                        }),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let subject = doc["subject"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok());
    let artifact_type = doc["artifactType"]
        .as_str()
        .or_else(|| doc["config"]["mediaType"].as_str())
        .map(str::to_string);
    let annotations = doc.get("annotations").filter(|a| a.is_object()).cloned();
    let d = digest.to_string();
    ManifestEntry {
        content_type: HeaderValue::from_str(&media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        digest_header: HeaderValue::from_str(&d).expect("a digest is a header value"),
        etag: HeaderValue::from_str(&format!("\"{d}\"")).expect("a digest is a header value"),
        digest: digest.clone(),
        media_type,
        bytes,
        children,
        subject,
        artifact_type,
        annotations,
    }
}

/// `name` without its tag or digest.
fn repository_part(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// What identifies one version of `index.json` (atomic rewrites change the inode).
type Stamp = Option<(SystemTime, u64, u64)>;

/// The live catalog and how to refresh it.
pub struct Images {
    store: Store,
    current: RwLock<Arc<Catalog>>,
    /// Held while rebuilding, so two reloads never interleave.
    stamp: Mutex<Stamp>,
}

impl Images {
    /// Builds the first catalog from the store.
    pub fn load(store: Store) -> Result<Images, StoreError> {
        let images = Images {
            store,
            current: RwLock::new(Arc::new(Catalog::default())),
            stamp: Mutex::new(None),
        };
        images.reload()?;
        Ok(images)
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Catalog> {
        self.current.read().expect("catalog lock").clone()
    }

    fn index_stamp(&self) -> Stamp {
        let m = std::fs::metadata(self.store.root().join("index.json")).ok()?;
        Some((m.modified().ok()?, m.ino(), m.len()))
    }

    /// Rebuilds the catalog from `index.json` (blocking file I/O).
    pub fn reload(&self) -> Result<(), StoreError> {
        let mut stamp = self.stamp.lock().expect("stamp lock");
        // Stat before reading: a change that lands after the read shows up as a
        // different stamp at the next check instead of being missed.
        let new_stamp = self.index_stamp();
        let old = self.get();
        // Reuse parsed manifests from the previous snapshot (blobs never change);
        // whatever no repository reaches any more is dropped at the end.
        let mut cat = Catalog {
            repos: BTreeMap::new(),
            manifests: old.manifests.clone(),
        };
        for (name, desc) in self.store.images()? {
            let r: Reference = match name.parse() {
                Ok(r) => r,
                Err(e) => {
                    ferry_cli::say!("warning: index.json entry {name:?} is not served: {e}");
                    continue;
                }
            };
            let repo = r.name();
            let media_type = desc.media_type.to_string();
            if !cat.add(&self.store, &repo, &desc.digest, &media_type, 0)? {
                ferry_cli::say!(
                    "warning: index.json names {name} but manifest {} is missing",
                    desc.digest
                );
                continue;
            }
            let entry = cat.repos.get_mut(&repo).expect("added above");
            if entry.shown.is_empty() {
                entry.shown = repository_part(&name).to_string();
            }
            if let Some(tag) = r.tag() {
                entry.tags.insert(tag.to_string(), desc.digest.clone());
            }
        }
        let reachable: HashSet<&Digest> = cat.repos.values().flat_map(|r| &r.manifests).collect();
        let keep: HashSet<Digest> = reachable.into_iter().cloned().collect();
        cat.manifests.retain(|d, _| keep.contains(d));
        *self.current.write().expect("catalog lock") = Arc::new(cat);
        *stamp = new_stamp;
        Ok(())
    }

    /// Reloads if `index.json` changed since the last load.
    pub fn reload_if_changed(&self) -> Result<bool, StoreError> {
        let changed = *self.stamp.lock().expect("stamp lock") != self.index_stamp();
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// Number of repositories and of manifests (for the start-up line and /metrics).
    pub fn counts(&self) -> (usize, usize) {
        let c = self.get();
        (c.repos.len(), c.manifests.len())
    }
}
