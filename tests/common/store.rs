//! Reading what a run left in an OCI layout store: the names in its index.json and
//! the blobs it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// `ref.name` -> (mediaType, digest) from the store's index.json.
pub fn index_entries(store: &Path) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(store.join("index.json")).expect("index.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                (
                    m["mediaType"].as_str().unwrap().to_string(),
                    m["digest"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The store's index.json: ref name -> digest.
pub fn index_digests(store: &Path) -> BTreeMap<String, String> {
    index_entries(store)
        .into_iter()
        .map(|(name, (_, digest))| (name, digest))
        .collect()
}

/// The ref names in the store's index.json.
pub fn index_names(store: &Path) -> BTreeSet<String> {
    index_entries(store).into_keys().collect()
}

/// The hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Every file under blobs/sha256, checked to hash to its own name.
pub fn stored_blobs(store: &Path) -> BTreeSet<String> {
    let dir = store.join("blobs/sha256");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert_eq!(sha256_file(&e.path()), name, "blob {name} is corrupt");
            format!("sha256:{name}")
        })
        .collect()
}
