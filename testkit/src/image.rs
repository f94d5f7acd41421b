//! Deterministic generated images, and pushing them over the Registry HTTP API V2.
//!
//! An image is built bottom-up:
//!
//! 1. [`layer`] makes a gzip'd tar holding one file of seeded random bytes.
//! 2. [`platform_image`] wraps layers in a config (with the real `diff_ids`) and a
//!    manifest, for one platform.
//! 3. [`Image::multi`] puts several platform images under an index / manifest list;
//!    [`Image::single`] uses the lone manifest as the top.
//!
//! Every byte is a function of the inputs (seeds, sizes, platforms, flavor): fixed
//! timestamps, fixed tar headers, a fixed gzip header and key-sorted JSON. The same
//! call gives the same digests on every run, which keeps test expectations and
//! benchmark specs stable.
//!
//! [`push`] uploads with the simplest protocol the spec allows and registry:2 accepts:
//! a monolithic upload (`POST .../blobs/uploads/` then `PUT <Location>&digest=`),
//! skipping blobs that `HEAD` reports as present, then manifests by digest and the
//! top manifest by tag.

use std::io::{Read, Write};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use crate::rng::{self, XorShift};
use crate::sha256_digest;

/// Docker schema 2 media types.
pub mod docker {
    pub const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// OCI image-spec media types.
pub mod oci {
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// Fixed creation time for configs and history, so configs are reproducible.
pub const CREATED: &str = "2024-01-01T00:00:00Z";

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Docker schema 2 (manifest list, `vnd.docker.*` types).
    Docker,
    /// OCI image-spec (image index, `vnd.oci.*` types).
    Oci,
}

impl Flavor {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Flavor::Docker => docker::MANIFEST,
            Flavor::Oci => oci::MANIFEST,
        }
    }

    pub fn index_type(self) -> &'static str {
        match self {
            Flavor::Docker => docker::MANIFEST_LIST,
            Flavor::Oci => oci::INDEX,
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            Flavor::Docker => docker::CONFIG,
            Flavor::Oci => oci::CONFIG,
        }
    }

    pub fn layer_type(self) -> &'static str {
        match self {
            Flavor::Docker => docker::LAYER,
            Flavor::Oci => oci::LAYER,
        }
    }
}

/// A content-addressed blob: a layer, a config, a manifest or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    pub data: Vec<u8>,
    pub media_type: String,
}

impl Blob {
    /// Wraps `data`, computing its digest.
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            digest: sha256_digest(&data),
            data,
            media_type: media_type.to_string(),
        }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The OCI/Docker descriptor `{mediaType, digest, size}` pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size(),
        })
    }

    /// The hex part of the digest (the file name in an OCI layout's `blobs/sha256/`).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// Derives a layer seed from coordinates, e.g. `seed(&[image, platform, layer])`.
/// Different coordinates give unrelated seeds; the same ones always the same seed.
pub fn seed(parts: &[u64]) -> u64 {
    rng::mix(parts)
}

/// Above this size layers are stored uncompressed inside the gzip stream: the data is
/// random, so deflate would burn CPU for nothing on benchmark-sized layers.
const STORE_ONLY_ABOVE: usize = 1 << 20;

/// A gzip'd tar holding one file, `blob-<seed>.bin`, of `size` pseudo-random
/// (incompressible) bytes derived from `seed`. Deterministic: same inputs, same bytes.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    let mut content = vec![0u8; size];
    XorShift::new(seed).fill(&mut content);
    let name = format!("blob-{seed:016x}.bin");
    let level = if size > STORE_ONLY_ABOVE {
        Compression::none()
    } else {
        Compression::fast()
    };
    layer_with_files_level(&[(&name, &content)], level)
}

/// A gzip'd tar of the given regular files (`path`, contents), in this order, with
/// fixed metadata (mode 0644, uid/gid 0, mtime 2024-01-01). Parent directories are
/// not added as entries. For tests that need a layer with known file contents.
pub fn layer_with_files(files: &[(&str, &[u8])]) -> Vec<u8> {
    layer_with_files_level(files, Compression::default())
}

fn layer_with_files_level(files: &[(&str, &[u8])], level: Compression) -> Vec<u8> {
    // GzBuilder with no file name and mtime 0 keeps the gzip header constant.
    let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
    let mut builder = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_704_067_200); // 2024-01-01T00:00:00Z
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *data)
            .expect("writing a tar entry to memory");
    }
    let gz: GzEncoder<Vec<u8>> = builder.into_inner().expect("finishing tar");
    gz.finish().expect("finishing gzip")
}

/// `sha256:` of the uncompressed tar inside a gzip'd layer: the layer's `diff_id`.
pub fn diff_id(gzipped_layer: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut decoder = flate2::read::GzDecoder::new(gzipped_layer);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = decoder.read(&mut buf).expect("layer is not valid gzip");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// One platform's manifest with its config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl PlatformImage {
    /// `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn platform(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.arch, v),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    /// Config, then layers (the blobs a manifest references).
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Manifest + config + layers bytes.
    pub fn total_size(&self) -> u64 {
        self.manifest.size() + self.blobs().map(Blob::size).sum::<u64>()
    }
}

/// Builds one platform's image from gzip'd layers (see [`layer`]).
///
/// The config carries `architecture`, `os`, `variant` (if any), a fixed `created`,
/// one history entry per layer and `rootfs.diff_ids` computed by decompressing each
/// layer, so tools that verify diff_ids (umoci, containerd) accept the image.
pub fn platform_image(
    flavor: Flavor,
    os: &str,
    arch: &str,
    variant: Option<&str>,
    layers: Vec<Vec<u8>>,
) -> PlatformImage {
    let layers: Vec<Blob> = layers
        .into_iter()
        .map(|data| Blob::new(flavor.layer_type(), data))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| diff_id(&l.data)).collect();
    let history: Vec<Value> = (0..layers.len())
        .map(
            |i| json!({"created": CREATED, "created_by": format!("ferry-testkit generated layer {i}")}),
        )
        .collect();
    let mut config = json!({
        "architecture": arch,
        "os": os,
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = Blob::new(flavor.config_type(), to_json(&config));

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": flavor.manifest_type(),
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    PlatformImage {
        manifest: Blob::new(flavor.manifest_type(), to_json(&manifest)),
        config,
        layers,
        os: os.to_string(),
        arch: arch.to_string(),
        variant: variant.map(str::to_string),
    }
}

/// Compact JSON with sorted keys (serde_json's default map is a BTreeMap), so the
/// bytes, and therefore the digest, do not depend on insertion order.
fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialising JSON")
}

/// A pushable image: the top manifest (index/list, or a single manifest) and its
/// platform images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The index / manifest list for [`Image::multi`]; the platform manifest itself
    /// for [`Image::single`].
    pub top: Blob,
    pub platforms: Vec<PlatformImage>,
}

impl Image {
    /// An index (OCI) or manifest list (Docker) over `platforms`, with a `platform`
    /// object (`architecture`, `os`, `variant` if any) on each descriptor.
    pub fn multi(flavor: Flavor, platforms: Vec<PlatformImage>) -> Image {
        let manifests: Vec<Value> = platforms
            .iter()
            .map(|p| {
                let mut d = p.manifest.descriptor();
                let mut platform = json!({"architecture": p.arch, "os": p.os});
                if let Some(v) = &p.variant {
                    platform["variant"] = json!(v);
                }
                d["platform"] = platform;
                d
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": flavor.index_type(),
            "manifests": manifests,
        });
        Image {
            top: Blob::new(flavor.index_type(), to_json(&index)),
            platforms,
        }
    }

    /// A single-platform image: the platform manifest is the top.
    pub fn single(platform: PlatformImage) -> Image {
        Image {
            top: platform.manifest.clone(),
            platforms: vec![platform],
        }
    }

    /// Digest of the top manifest (what a tag resolves to).
    pub fn digest(&self) -> &str {
        &self.top.digest
    }

    /// Whether the top is an index / manifest list.
    pub fn is_multi(&self) -> bool {
        self.top.media_type == docker::MANIFEST_LIST || self.top.media_type == oci::INDEX
    }

    /// The platform image for `os/arch` (and `variant`, when given).
    pub fn platform(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<&PlatformImage> {
        self.platforms.iter().find(|p| {
            p.os == os && p.arch == arch && (variant.is_none() || p.variant.as_deref() == variant)
        })
    }

    /// Every config and layer blob, each digest once (shared layers are listed once).
    pub fn unique_blobs(&self) -> Vec<&Blob> {
        let mut seen = std::collections::HashSet::new();
        self.platforms
            .iter()
            .flat_map(PlatformImage::blobs)
            .filter(|b| seen.insert(b.digest.as_str()))
            .collect()
    }

    /// Bytes of all unique blobs plus all manifests (the top counted once).
    pub fn total_size(&self) -> u64 {
        let blobs: u64 = self.unique_blobs().iter().map(|b| b.size()).sum();
        let manifests: u64 = self.platforms.iter().map(|p| p.manifest.size()).sum();
        let top = if self.is_multi() { self.top.size() } else { 0 };
        blobs + manifests + top
    }
}

/// What one [`push_with_stats`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Blobs uploaded (not already present).
    pub blobs_uploaded: usize,
    /// Blobs skipped because `HEAD` found them.
    pub blobs_skipped: usize,
    /// Manifests put (platform manifests + top).
    pub manifests: usize,
    /// Bytes sent in blob uploads and manifest puts.
    pub bytes_uploaded: u64,
}

fn agent() -> ureq::Agent {
    // Generous per-read/write timeouts (not a total one): benchmark blobs can be large.
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .redirects(0)
        .user_agent("ferry-testkit/0.1")
        .build()
}

/// Pushes every blob, each platform manifest (by digest), then the top manifest
/// under `tag`. Panics on any registry error.
pub fn push(registry_url: &str, repo: &str, tag: &str, image: &Image) {
    push_with_stats(registry_url, repo, tag, image);
}

/// [`push`], reporting what was uploaded and what was already there.
pub fn push_with_stats(registry_url: &str, repo: &str, tag: &str, image: &Image) -> PushStats {
    let agent = agent();
    let mut stats = PushStats::default();
    for blob in image.unique_blobs() {
        if push_blob_with(&agent, registry_url, repo, blob) {
            stats.blobs_uploaded += 1;
            stats.bytes_uploaded += blob.size();
        } else {
            stats.blobs_skipped += 1;
        }
    }
    if image.is_multi() {
        for p in &image.platforms {
            push_manifest_with(&agent, registry_url, repo, &p.manifest.digest, &p.manifest);
            stats.manifests += 1;
            stats.bytes_uploaded += p.manifest.size();
        }
    }
    push_manifest_with(&agent, registry_url, repo, tag, &image.top);
    stats.manifests += 1;
    stats.bytes_uploaded += image.top.size();
    stats
}

/// Uploads one blob unless `HEAD` says it is already in `repo`.
/// Returns `true` when it was uploaded, `false` when skipped.
pub fn push_blob(registry_url: &str, repo: &str, blob: &Blob) -> bool {
    push_blob_with(&agent(), registry_url, repo, blob)
}

fn push_blob_with(agent: &ureq::Agent, registry_url: &str, repo: &str, blob: &Blob) -> bool {
    let base = registry_url.trim_end_matches('/');
    let blob_url = format!("{base}/v2/{repo}/blobs/{}", blob.digest);
    match agent.head(&blob_url).call() {
        Ok(r) if r.status() == 200 => return false,
        Ok(_) | Err(ureq::Error::Status(404, _)) => {}
        Err(e) => panic!("HEAD {blob_url}: {}", describe(e)),
    }

    let start_url = format!("{base}/v2/{repo}/blobs/uploads/");
    let resp = agent
        .post(&start_url)
        .send_bytes(&[])
        .unwrap_or_else(|e| panic!("POST {start_url}: {}", describe(e)));
    let location = resp
        .header("Location")
        .unwrap_or_else(|| panic!("POST {start_url}: {} without Location", resp.status()))
        .to_string();
    // registry:2 answers with an absolute URL built from our Host header; the spec also
    // allows a path. The upload state lives in the query (`?_state=...`), so the
    // digest is appended with `&` then.
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={}", blob.digest);
    let resp = agent
        .put(&put_url)
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&blob.data)
        .unwrap_or_else(|e| panic!("PUT blob {} to {repo}: {}", blob.digest, describe(e)));
    assert_eq!(resp.status(), 201, "PUT blob {} to {repo}", blob.digest);
    true
}

/// Puts `manifest` (a manifest or an index) at `repo:reference` with its media type as
/// `Content-Type`, and checks the registry computed the same digest.
pub fn push_manifest(registry_url: &str, repo: &str, reference: &str, manifest: &Blob) {
    push_manifest_with(&agent(), registry_url, repo, reference, manifest)
}

fn push_manifest_with(
    agent: &ureq::Agent,
    registry_url: &str,
    repo: &str,
    reference: &str,
    manifest: &Blob,
) {
    let url = format!(
        "{}/v2/{repo}/manifests/{reference}",
        registry_url.trim_end_matches('/')
    );
    let resp = agent
        .put(&url)
        .set("Content-Type", &manifest.media_type)
        .send_bytes(&manifest.data)
        .unwrap_or_else(|e| panic!("PUT {url}: {}", describe(e)));
    assert_eq!(resp.status(), 201, "PUT {url}");
    if let Some(d) = resp.header("Docker-Content-Digest") {
        assert_eq!(
            d, manifest.digest,
            "registry computed another digest for {url}"
        );
    }
}

/// An error with the registry's JSON error body, when there is one.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            format!("HTTP {code}: {body}")
        }
        other => other.to_string(),
    }
}

/// Gzips `data` in memory with a constant header (mtime 0), so the output is
/// reproducible; for tests that need arbitrary compressed layers.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(data).expect("gzip to memory");
    gz.finish().expect("gzip to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untar(gz: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    #[test]
    fn layers_are_deterministic_and_hold_one_file_of_the_size() {
        let a = layer(42, 10_000);
        assert_eq!(a, layer(42, 10_000));
        assert_ne!(a, layer(43, 10_000));
        let files = untar(&a);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].1.len(), 10_000);
        // Incompressible: deflate cannot shrink random bytes.
        assert!(a.len() > 10_000);
    }

    #[test]
    fn big_layers_are_stored_and_still_valid_gzip() {
        let size = STORE_ONLY_ABOVE + 17;
        let l = layer(1, size);
        assert_eq!(untar(&l)[0].1.len(), size);
        assert_eq!(l, layer(1, size));
    }

    #[test]
    fn empty_layer_is_valid() {
        let files = untar(&layer(0, 0));
        assert_eq!(files[0].1.len(), 0);
    }

    #[test]
    fn layer_with_files_keeps_paths_and_contents() {
        let l = layer_with_files(&[("etc/hello", b"hi\n"), ("bin/x", b"")]);
        let files = untar(&l);
        assert_eq!(files[0], ("etc/hello".to_string(), b"hi\n".to_vec()));
        assert_eq!(files[1].0, "bin/x");
    }

    #[test]
    fn config_diff_ids_are_sha256_of_uncompressed_tar() {
        let l0 = layer(1, 3000);
        let l1 = layer(2, 5000);
        let p = platform_image(
            Flavor::Oci,
            "linux",
            "arm64",
            Some("v8"),
            vec![l0.clone(), l1],
        );
        let config: Value = serde_json::from_slice(&p.config.data).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&l0[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], json!(sha256_digest(&raw)));
        assert_ne!(config["rootfs"]["diff_ids"][0], json!(p.layers[0].digest));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["created"], CREATED);
        assert_eq!(p.config.media_type, oci::CONFIG);
        assert_eq!(p.platform(), "linux/arm64/v8");
    }

    #[test]
    fn manifest_references_config_and_layers() {
        let p = platform_image(Flavor::Docker, "linux", "amd64", None, vec![layer(1, 100)]);
        let m: Value = serde_json::from_slice(&p.manifest.data).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], docker::MANIFEST);
        assert_eq!(m["config"]["digest"], json!(p.config.digest));
        assert_eq!(m["config"]["mediaType"], docker::CONFIG);
        assert_eq!(m["config"]["size"], json!(p.config.data.len()));
        assert_eq!(m["layers"][0]["digest"], json!(p.layers[0].digest));
        assert_eq!(m["layers"][0]["mediaType"], docker::LAYER);
        assert_eq!(p.manifest.digest, sha256_digest(&p.manifest.data));
        let config: Value = serde_json::from_slice(&p.config.data).unwrap();
        assert!(config.get("variant").is_none());
    }

    #[test]
    fn index_shape_has_platforms_per_descriptor() {
        let amd = platform_image(Flavor::Oci, "linux", "amd64", None, vec![layer(1, 10)]);
        let arm = platform_image(Flavor::Oci, "linux", "arm", Some("v7"), vec![layer(2, 10)]);
        let img = Image::multi(Flavor::Oci, vec![amd.clone(), arm.clone()]);
        assert!(img.is_multi());
        assert_eq!(img.top.media_type, oci::INDEX);
        let idx: Value = serde_json::from_slice(&img.top.data).unwrap();
        assert_eq!(idx["schemaVersion"], 2);
        assert_eq!(idx["mediaType"], oci::INDEX);
        let ms = idx["manifests"].as_array().unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0]["digest"], json!(amd.manifest.digest));
        assert_eq!(ms[0]["mediaType"], oci::MANIFEST);
        assert_eq!(
            ms[0]["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(
            ms[1]["platform"],
            json!({"architecture": "arm", "os": "linux", "variant": "v7"})
        );
        assert_eq!(img.digest(), sha256_digest(&img.top.data));
        assert_eq!(
            img.platform("linux", "arm", None).unwrap().manifest,
            arm.manifest
        );

        let list = Image::multi(Flavor::Docker, vec![amd]);
        let l: Value = serde_json::from_slice(&list.top.data).unwrap();
        assert_eq!(l["mediaType"], docker::MANIFEST_LIST);
    }

    #[test]
    fn single_image_top_is_the_manifest_and_shared_layers_count_once() {
        let shared = layer(9, 50);
        let p = platform_image(
            Flavor::Oci,
            "linux",
            "amd64",
            None,
            vec![shared.clone(), shared],
        );
        let img = Image::single(p.clone());
        assert!(!img.is_multi());
        assert_eq!(img.digest(), p.manifest.digest);
        assert_eq!(img.unique_blobs().len(), 2); // config + one layer
    }

    #[test]
    fn whole_images_are_reproducible() {
        let build = || {
            let ps = ["amd64", "arm64"]
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    platform_image(
                        Flavor::Docker,
                        "linux",
                        a,
                        None,
                        vec![layer(seed(&[i as u64]), 64)],
                    )
                })
                .collect();
            Image::multi(Flavor::Docker, ps)
        };
        assert_eq!(build().digest(), build().digest());
    }
}
