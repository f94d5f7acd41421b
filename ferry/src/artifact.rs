//! Files as OCI artifacts in the store, with ORAS conventions, so a file travels
//! through the same lock, store, bundle, signature and registry as an image:
//!
//! - one image manifest per file and platform: `artifactType`
//!   [`FILE_ARTIFACT_TYPE`], the empty config (`{}`, [`EMPTY_CONFIG_TYPE`]) and one
//!   layer holding the file's exact bytes, so the layer digest **is** upstream's
//!   sha256, titled with the file name (`org.opencontainers.image.title`, which
//!   `oras pull` saves it as);
//! - for a file with platforms, an image index over those manifests with a
//!   `platform` per entry; a platform-independent file is the manifest alone;
//! - named `files/<name>:<version>` in `index.json` and in the registry.
//!
//! The bytes are a pure function of the lock (name, version, platform, file name,
//! sha256, size): every build makes the same manifests, so bundles stay
//! reproducible and the lock needs no digests of its own for them.
//!
//! Helm charts are artifacts as `helm push` makes them (helm.sh/helm/v3
//! pkg/registry): config [`HELM_CONFIG_TYPE`] holding the chart's metadata as JSON,
//! one layer [`HELM_CHART_LAYER_TYPE`] holding the .tgz, the metadata's annotations
//! on the manifest, named `charts/<name>:<version>`; `org.opencontainers.image.created`
//! is left out so the same chart gives the same manifest.

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::lock::LockedFile;
use crate::manifest::Descriptor;
use crate::media::{MediaType, OCI_INDEX, OCI_MANIFEST};

/// The `artifactType` of a file's manifests and index.
pub const FILE_ARTIFACT_TYPE: &str = "application/vnd.ferry.file.v1";
/// The media type of the layer that holds a file's bytes.
pub const FILE_LAYER_TYPE: &str = "application/octet-stream";
/// The OCI empty descriptor's media type, for the config of an artifact.
pub const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The annotation that names a layer's file (and the artifact's title).
pub const TITLE: &str = "org.opencontainers.image.title";
const VERSION: &str = "org.opencontainers.image.version";

/// Helm's chart config media type (pkg/registry `ConfigMediaType`).
pub const HELM_CONFIG_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// Helm's chart content media type (pkg/registry `ChartLayerMediaType`).
pub const HELM_CHART_LAYER_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// The name of a chart in `index.json` and the registry: `charts/<name>:<version>`.
pub fn chart_ref_name(name: &str, version: &str) -> String {
    format!("charts/{name}:{version}")
}

/// A chart's artifact: `config` is its metadata as JSON, `chart` the .tgz's digest
/// and size, `annotations` those `helm push` puts on the manifest.
pub fn chart_artifact(
    name: &str,
    version: &str,
    chart: (&Digest, u64),
    config: Vec<u8>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Artifact {
    let config_d = descriptor(HELM_CONFIG_TYPE, &config);
    let manifest = bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": HELM_CONFIG_TYPE,
            "digest": config_d.digest.to_string(),
            "size": config_d.size,
        },
        "layers": [{
            "mediaType": HELM_CHART_LAYER_TYPE,
            "digest": chart.0.to_string(),
            "size": chart.1,
        }],
        "annotations": annotations,
    }));
    let top = descriptor(OCI_MANIFEST, &manifest);
    Artifact {
        name: chart_ref_name(name, version),
        platforms: vec![top.clone()],
        blobs: vec![(config_d.digest, config), (top.digest.clone(), manifest)],
        top,
    }
}

/// The name of a file in `index.json` and the registry: `files/<name>:<version>`.
pub fn file_ref_name(name: &str, version: &str) -> String {
    format!("files/{name}:{version}")
}

/// A file's bytes as its manifest names them: the one layer's digest and size, and
/// the file name it is titled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayer {
    pub digest: Digest,
    pub size: u64,
    pub title: String,
}

/// The layer of a file's platform manifest (as [`file_artifact`] makes them), or
/// `None` if `manifest` is not one.
pub fn file_layer(manifest: &[u8]) -> Option<FileLayer> {
    let doc: Value = serde_json::from_slice(manifest).ok()?;
    let layer = &doc["layers"][0];
    Some(FileLayer {
        digest: layer["digest"].as_str()?.parse().ok()?,
        size: layer["size"].as_u64()?,
        title: layer["annotations"][TITLE].as_str()?.to_string(),
    })
}

/// A made artifact: its top descriptor, the descriptor of each platform manifest,
/// and every manifest and config blob (the file's own bytes are not among them).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub top: Descriptor,
    pub platforms: Vec<Descriptor>,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

fn bytes(v: &Value) -> Vec<u8> {
    // serde_json's map is sorted by key: the same value gives the same bytes.
    serde_json::to_vec(v).expect("JSON serialises")
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: MediaType::from(media_type),
        digest: Digest::of(data),
        size: data.len() as u64,
    }
}

/// The manifest of one file on one platform.
fn file_manifest(file: &LockedFile) -> Vec<u8> {
    let title = crate::file_spec::file_name(&file.url);
    bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": FILE_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_TYPE,
            "digest": Digest::of(EMPTY_CONFIG).to_string(),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": FILE_LAYER_TYPE,
            "digest": file.sha256.to_string(),
            "size": file.size,
            "annotations": { TITLE: title },
        }],
        "annotations": { TITLE: title, VERSION: file.version },
    }))
}

/// The artifact of one file (`name`, `version`) from its locked platforms: all
/// entries must name the same file; they are taken in the order given.
pub fn file_artifact(entries: &[&LockedFile]) -> Artifact {
    let first = entries.first().expect("an artifact has at least one file");
    let name = file_ref_name(&first.name, &first.version);
    let empty = (Digest::of(EMPTY_CONFIG), EMPTY_CONFIG.to_vec());
    if entries.len() == 1 && first.platform.is_none() {
        let manifest = file_manifest(first);
        let top = descriptor(OCI_MANIFEST, &manifest);
        return Artifact {
            name,
            platforms: vec![top.clone()],
            blobs: vec![empty, (top.digest.clone(), manifest)],
            top,
        };
    }
    let mut blobs = vec![empty];
    let mut platforms = Vec::new();
    let mut list = Vec::new();
    for file in entries {
        let manifest = file_manifest(file);
        let d = descriptor(OCI_MANIFEST, &manifest);
        let mut platform = json!({});
        if let Some(p) = &file.platform {
            platform = json!({ "os": p.os, "architecture": p.architecture });
            if let Some(v) = &p.variant {
                platform["variant"] = json!(v);
            }
        }
        list.push(json!({
            "mediaType": OCI_MANIFEST,
            "artifactType": FILE_ARTIFACT_TYPE,
            "digest": d.digest.to_string(),
            "size": d.size,
            "platform": platform,
        }));
        blobs.push((d.digest.clone(), manifest));
        platforms.push(d);
    }
    let index = bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": FILE_ARTIFACT_TYPE,
        "manifests": list,
        "annotations": {
            TITLE: file_name_of(entries),
            VERSION: first.version,
        },
    }));
    let top = descriptor(OCI_INDEX, &index);
    blobs.push((top.digest.clone(), index));
    Artifact {
        name,
        top,
        platforms,
        blobs,
    }
}

/// What the files of one artifact are called together: the file name they share,
/// or, where each platform's is its own (`tool-amd64`, `tool-arm64`), that name
/// as a template in the spec's spelling (`tool-{arch}`), else each name in turn,
/// joined by `, `. Each platform's own name is its layer's title.
pub fn file_name_of(entries: &[&LockedFile]) -> String {
    let names: Vec<&str> = entries
        .iter()
        .map(|f| crate::file_spec::file_name(&f.url))
        .collect();
    let Some(first) = names.first() else {
        return String::new();
    };
    if names.iter().all(|n| n == first) {
        return first.to_string();
    }
    let templates: Vec<String> = entries
        .iter()
        .zip(&names)
        .map(|(f, n)| match &f.platform {
            Some(p) => n.replace(&p.architecture, "{arch}").replace(&p.os, "{os}"),
            None => n.to_string(),
        })
        .collect();
    if templates.iter().all(|t| *t == templates[0]) {
        return templates[0].clone();
    }
    let mut each: Vec<&str> = Vec::new();
    for n in names {
        if !each.contains(&n) {
            each.push(n);
        }
    }
    each.join(", ")
}

/// Every file artifact of a lock, one per (name, version), in lock order.
pub fn file_artifacts(files: &[LockedFile]) -> Vec<(Artifact, Vec<&LockedFile>)> {
    let mut groups: Vec<Vec<&LockedFile>> = Vec::new();
    for f in files {
        match groups
            .iter_mut()
            .find(|g| g[0].name == f.name && g[0].version == f.version)
        {
            Some(g) => g.push(f),
            None => groups.push(vec![f]),
        }
    }
    groups.into_iter().map(|g| (file_artifact(&g), g)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn locked(platform: Option<&str>, bytes: &[u8]) -> LockedFile {
        LockedFile {
            name: "kubelet".into(),
            version: "1.31.14".into(),
            platform: platform.map(|p| p.parse().unwrap()),
            url: "https://dl.k8s.io/release/v1.31.14/bin/linux/amd64/kubelet".into(),
            sha256: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn a_file_is_an_index_of_one_manifest_per_platform_whose_layer_is_the_file() {
        let amd = locked(Some("linux/amd64"), b"amd");
        let arm = locked(Some("linux/arm64"), b"arm");
        let a = file_artifact(&[&amd, &arm]);
        assert_eq!(a.name, "files/kubelet:1.31.14");
        assert_eq!(a.top.media_type, MediaType::ImageIndex);
        let index = &a.blobs.iter().find(|(d, _)| d == &a.top.digest).unwrap().1;
        match Manifest::parse(index, None).unwrap() {
            Manifest::Index { entries, .. } => {
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[1].platform, Some("linux/arm64".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        let m = &a
            .blobs
            .iter()
            .find(|(d, _)| d == &a.platforms[0].digest)
            .unwrap()
            .1;
        match Manifest::parse(m, None).unwrap() {
            Manifest::Image { config, layers, .. } => {
                assert_eq!(config.digest, Digest::of(b"{}"));
                assert_eq!(layers[0].digest, Digest::of(b"amd"));
                assert_eq!(layers[0].size, 3);
            }
            other => panic!("{other:?}"),
        }
        let v: Value = serde_json::from_slice(m).unwrap();
        assert_eq!(v["artifactType"], FILE_ARTIFACT_TYPE);
        let layer = file_layer(m).unwrap();
        assert_eq!((layer.digest, layer.size), (Digest::of(b"amd"), 3));
        assert_eq!(layer.title, "kubelet");
        assert_eq!(file_layer(index), None);
        assert_eq!(v["layers"][0]["annotations"][TITLE], "kubelet");
        // The same lock gives the same bytes.
        assert_eq!(file_artifact(&[&amd, &arm]).top, a.top);
    }

    #[test]
    fn a_platform_independent_file_is_one_manifest() {
        let yaml = LockedFile {
            url: "https://example.com/v1/calico.yaml".into(),
            ..locked(None, b"kind: List")
        };
        let a = file_artifact(&[&yaml]);
        assert_eq!(a.top.media_type, MediaType::ImageManifest);
        assert_eq!(a.platforms, vec![a.top.clone()]);
        let v: Value = serde_json::from_slice(&a.blobs[1].1).unwrap();
        assert_eq!(v["layers"][0]["annotations"][TITLE], "calico.yaml");
    }

    #[test]
    fn files_named_per_platform_are_called_by_a_template_and_each_layer_by_its_own() {
        let with_url = |platform, bytes: &[u8], url: &str| LockedFile {
            url: url.into(),
            ..locked(Some(platform), bytes)
        };
        let amd = with_url("linux/amd64", b"amd", "https://x.io/v1/tool-linux-amd64");
        let arm = with_url("linux/arm64", b"arm", "https://x.io/v1/tool-linux-arm64");
        let a = file_artifact(&[&amd, &arm]);
        let index: Value = serde_json::from_slice(&a.blobs.last().unwrap().1).unwrap();
        assert_eq!(index["annotations"][TITLE], "tool-{os}-{arch}");
        let m = &a
            .blobs
            .iter()
            .find(|(d, _)| *d == a.platforms[1].digest)
            .unwrap()
            .1;
        assert_eq!(file_layer(m).unwrap().title, "tool-linux-arm64");
        // Names no template covers are each said; one shared name is that name.
        let odd = with_url("linux/arm64", b"arm", "https://x.io/v1/tool.arm");
        assert_eq!(file_name_of(&[&amd, &odd]), "tool-linux-amd64, tool.arm");
        assert_eq!(
            file_name_of(&[&locked(Some("linux/amd64"), b"a")]),
            "kubelet"
        );
    }
}
