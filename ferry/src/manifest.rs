//! Reading image manifests, manifest lists / OCI indexes and image configs, in both
//! the OCI and Docker schema 2 media types. Parsing goes through `oci-spec`; the bytes
//! themselves are never re-serialised, so digests stay those of upstream.

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest::Digest;
use crate::media::{self, MediaType};
use crate::platform::Platform;

/// Manifests larger than this are refused (registry:2 uses the same bound).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A content descriptor: what a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
}

/// One entry of an index, with the platform it says it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
}

/// A parsed top-level or platform manifest.
#[derive(Debug, Clone)]
pub enum Manifest {
    Index {
        media_type: MediaType,
        entries: Vec<IndexEntry>,
    },
    Image {
        media_type: MediaType,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// The fields of an image config that say which platform it is for.
#[derive(Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The platform an image config says it is for.
pub fn config_platform(bytes: &[u8]) -> Result<Platform, ManifestError> {
    let c: ConfigPlatform = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Malformed(format!("image config: {e}")))?;
    Ok(Platform::new(&c.os, &c.architecture, c.variant.as_deref()))
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error(
        "Docker schema 1 manifests are not supported (the image is too old to be stored unchanged)"
    )]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedType(String),
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("malformed manifest: {0}")]
    BadDigest(crate::digest::DigestError),
}

impl From<crate::digest::DigestError> for ManifestError {
    fn from(e: crate::digest::DigestError) -> ManifestError {
        ManifestError::BadDigest(e)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

fn descriptor(d: &oci_spec::image::Descriptor) -> Result<Descriptor, ManifestError> {
    Ok(Descriptor {
        media_type: d.media_type().clone(),
        digest: d.digest().try_into()?,
        size: d.size(),
    })
}

impl Manifest {
    /// Parses manifest bytes. The media type comes from the document's own
    /// `mediaType`, else from the registry's `Content-Type`, else from its shape.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if probe.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        let content_type = content_type
            .map(|c| MediaType::from(c.split(';').next().unwrap_or(c).trim()))
            .filter(|c| media::is_index(c) || media::is_manifest(c));
        let media_type = match (probe.media_type, content_type) {
            (Some(m), _) => MediaType::from(m.as_str()),
            (None, Some(c)) => c,
            (None, None) if probe.manifests.is_some() => MediaType::ImageIndex,
            (None, None) if probe.layers.is_some() => MediaType::ImageManifest,
            (None, None) => return Err(ManifestError::Malformed("no mediaType".into())),
        };
        // serde_json's own error, not oci-spec's wrapper, whose text is only
        // "serde failed": the field and the line are what a reader can act on.
        let malformed = |e: serde_json::Error| ManifestError::Malformed(e.to_string());
        if media::is_index(&media_type) {
            let index = serde_json::from_slice::<ImageIndex>(bytes).map_err(malformed)?;
            let entries = index
                .manifests()
                .iter()
                .map(|d| {
                    let platform = d.platform().as_ref().map(|p| {
                        Platform::new(
                            &p.os().to_string(),
                            &p.architecture().to_string(),
                            p.variant().as_deref(),
                        )
                    });
                    Ok(IndexEntry {
                        descriptor: descriptor(d)?,
                        platform,
                    })
                })
                .collect::<Result<_, ManifestError>>()?;
            Ok(Manifest::Index {
                media_type,
                entries,
            })
        } else if media::is_manifest(&media_type) {
            let m = serde_json::from_slice::<ImageManifest>(bytes).map_err(malformed)?;
            Ok(Manifest::Image {
                media_type,
                config: descriptor(m.config())?,
                layers: m
                    .layers()
                    .iter()
                    .map(descriptor)
                    .collect::<Result<_, _>>()?,
            })
        } else if [media::DOCKER_SCHEMA1, media::DOCKER_SCHEMA1_SIGNED]
            .contains(&media_type.to_string().as_str())
        {
            Err(ManifestError::Schema1)
        } else {
            Err(ManifestError::UnsupportedType(media_type.to_string()))
        }
    }

    pub fn media_type(&self) -> &MediaType {
        match self {
            Manifest::Index { media_type, .. } | Manifest::Image { media_type, .. } => media_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn reads_docker_lists_and_oci_manifests() {
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","size":7,"digest":"{D}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            media::DOCKER_LIST,
            media::DOCKER_MANIFEST
        );
        match Manifest::parse(list.as_bytes(), None).unwrap() {
            Manifest::Index {
                media_type,
                entries,
            } => {
                assert_eq!(media_type.to_string(), media::DOCKER_LIST);
                assert_eq!(entries[0].platform, Some("linux/arm64/v8".parse().unwrap()));
                assert_eq!(entries[0].descriptor.size, 7);
            }
            other => panic!("{other:?}"),
        }
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{D}"}},"layers":[]}}"#
        );
        let parsed = Manifest::parse(m.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.media_type(), &MediaType::ImageManifest);
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(Manifest::parse(b"not json", None).is_err());
    }
}
