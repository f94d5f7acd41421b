//! Lock files: every image of a spec pinned to the digest of its top-level manifest
//! (index or single manifest) and, per platform asked for, of its platform manifest.
//!
//! A pull with a lock refuses any content that does not hash to these digests,
//! whichever mirror served it; that is what makes two bundles built from one lock equal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::media::MediaType;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::spec::Spec;

/// The lock format version this code writes and reads.
pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    /// The spec's `name` and `version`, for a human reading the lock.
    pub name: String,
    pub spec_version: String,
    #[serde(default, rename = "image")]
    pub images: Vec<LockedImage>,
    #[serde(default, rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LockedFile>,
    #[serde(default, rename = "chart", skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<LockedChart>,
}

/// One Helm chart: from a classic repository, pinned by its .tgz's sha256; from an
/// OCI registry (`repo` starting `oci://`), pinned by its manifest's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedChart {
    pub name: String,
    pub version: String,
    /// The repository (`repo` or `oci` in the spec).
    pub repo: String,
    /// The .tgz URL its `index.yaml` gives; for an OCI chart, its reference
    /// (`host/path/name:version`).
    pub url: String,
    /// The .tgz's sha256; for an OCI chart, its manifest's digest.
    pub sha256: Digest,
    pub size: u64,
}

impl LockedChart {
    /// Whether it comes from an OCI registry (kept there under its upstream name,
    /// manifest and digest unchanged).
    pub fn is_oci(&self) -> bool {
        self.repo.starts_with("oci://")
    }

    /// An OCI chart's manifest.
    pub fn manifest(&self) -> Descriptor {
        Descriptor {
            media_type: MediaType::ImageManifest,
            digest: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// One file on one platform (or platform-independent), pinned by upstream's sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    pub name: String,
    pub version: String,
    /// `None` for a platform-independent file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Upstream's URL (mirrors are tried before it, by the mirror rules).
    pub url: String,
    pub sha256: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The reference as the spec names it (normalised).
    #[serde(rename = "ref")]
    pub reference: Reference,
    /// The top-level manifest or index.
    pub digest: Digest,
    pub media_type: MediaType,
    pub size: u64,
    #[serde(default)]
    pub platforms: Vec<LockedPlatform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlatform {
    pub platform: Platform,
    /// The platform's image manifest (equal to the top digest for a single manifest).
    pub digest: Digest,
    pub media_type: MediaType,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Toml(#[from] crate::toml_file::TomlError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Lock {
    pub fn load(path: &Path) -> Result<Lock, LockError> {
        let text = crate::toml_file::read(path, "lock")?;
        let lock: Lock = crate::toml_file::parse(path, &text)?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "lock version {} is not supported (this ferry reads version {LOCK_VERSION})",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// The lock as TOML text, with a header saying where it came from.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("a lock serialises");
        format!(
            "# Written by `ferry-bundler lock`: every image and file pinned by digest. Do not edit.\n{body}"
        )
    }

    /// The locked file `name` `version` for `platform`.
    pub fn file(
        &self,
        name: &str,
        version: &str,
        platform: Option<&Platform>,
    ) -> Option<&LockedFile> {
        self.files
            .iter()
            .find(|f| f.name == name && f.version == version && f.platform.as_ref() == platform)
    }

    pub fn image(&self, reference: &Reference) -> Option<&LockedImage> {
        self.images.iter().find(|i| &i.reference == reference)
    }

    /// Checks that the lock was written for `spec`'s release (name and version) and
    /// pins every image, file and platform it asks for, and
    /// that a file's pin in the spec is the one locked.
    pub fn covers(&self, spec: &Spec, path: &Path) -> Result<(), LockError> {
        let invalid = |message: String| LockError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.name != spec.name || self.spec_version != spec.version {
            return Err(invalid(format!(
                "the lock is for {} {}, the spec for {} {}: run `ferry-bundler lock` again",
                self.name, self.spec_version, spec.name, spec.version
            )));
        }
        for wanted in &spec.images {
            let locked = self.image(&wanted.reference).ok_or_else(|| {
                invalid(format!(
                    "image {} is not in the lock: run `ferry-bundler lock` again",
                    wanted.reference
                ))
            })?;
            for p in &wanted.platforms {
                if locked.platform(p).is_none() {
                    return Err(invalid(format!(
                        "image {} has no {p} entry in the lock: run `ferry-bundler lock` again",
                        wanted.reference
                    )));
                }
            }
        }
        for chart in &spec.charts {
            if !self
                .charts
                .iter()
                .any(|c| c.name == chart.name && c.version == chart.version)
            {
                return Err(invalid(format!(
                    "chart {} {} is not in the lock: run `ferry-bundler lock` again",
                    chart.name, chart.version
                )));
            }
        }
        for file in &spec.files {
            for target in file.targets() {
                let what = match &target {
                    Some(p) => format!("file {} {} for {p}", file.name, file.version),
                    None => format!("file {} {}", file.name, file.version),
                };
                let locked = self
                    .file(&file.name, &file.version, target.as_ref())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{what} is not in the lock: run `ferry-bundler lock` again"
                        ))
                    })?;
                if let Some(pin) = file.pin(target.as_ref()) {
                    if pin != &locked.sha256 {
                        return Err(invalid(format!(
                            "{what}: the spec pins {pin}, the lock {}: run `ferry-bundler lock` again",
                            locked.sha256
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl LockedImage {
    /// The descriptor of the top-level manifest or index.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    pub fn platform(&self, platform: &Platform) -> Option<&LockedPlatform> {
        self.platforms.iter().find(|p| &p.platform == platform)
    }

    /// The platform entries with distinct manifests: a single-manifest image locked
    /// for several platforms names one manifest several times.
    pub fn unique_platforms(&self) -> Vec<&LockedPlatform> {
        let mut out: Vec<&LockedPlatform> = Vec::new();
        for p in &self.platforms {
            if !out.iter().any(|q| q.digest == p.digest) {
                out.push(p);
            }
        }
        out
    }
}

impl LockedPlatform {
    /// The descriptor of the platform manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let d = Digest::of(b"x");
        let lock = Lock {
            version: LOCK_VERSION,
            name: "k".into(),
            spec_version: "1".into(),
            images: vec![LockedImage {
                reference: "registry.k8s.io/pause:3.10".parse().unwrap(),
                digest: d.clone(),
                media_type: MediaType::ImageIndex,
                size: 10,
                platforms: vec![LockedPlatform {
                    platform: "linux/arm64".parse().unwrap(),
                    digest: d,
                    media_type: MediaType::ImageManifest,
                    size: 5,
                }],
            }],
            files: Vec::new(),
            charts: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        std::fs::write(&path, lock.to_toml()).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), lock);
        std::fs::write(&path, lock.to_toml().replace("version = 1", "version = 9")).unwrap();
        assert!(Lock::load(&path)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
