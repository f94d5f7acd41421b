//! What a release spec asks for besides images: files (`[[files]]`: binaries,
//! archives and manifests, kept as upstream publishes them, pinned by upstream's
//! own sha256) and Helm charts (`[[charts]]`).
//!
//! ```toml
//! [[files]]
//! name = "kubelet"
//! version = "1.31.14"
//! url = "https://dl.k8s.io/release/v{version}/bin/{os}/{arch}/kubelet"
//! sha256 = { "linux/amd64" = "…", "linux/arm64" = "…" }   # platforms: the spec's
//!
//! [[files]]
//! name = "calico.yaml"
//! version = "3.29.3"
//! url = "https://raw.githubusercontent.com/projectcalico/calico/v{version}/manifests/calico.yaml"
//! platforms = []                                           # platform-independent
//! sha256 = "…"
//!
//! [[charts]]
//! name = "kubelet-csr-approver"
//! version = "1.2.10"
//! repo = "https://postfinance.github.io/kubelet-csr-approver"   # or oci = "oci://host/path"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::platform::Platform;

/// One file a spec asks for, on each of its platforms (or once, platform-independent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub name: String,
    pub version: String,
    /// The URL template: `{version}`, `{os}` and `{arch}` are filled in.
    pub url: String,
    /// Empty for a platform-independent file.
    pub platforms: Vec<Platform>,
    /// Upstream's sha256 per platform (`None` for a platform-independent file);
    /// a platform without a pin is pinned by `lock` from what it downloads.
    pub pins: BTreeMap<Option<Platform>, Digest>,
}

/// One Helm chart a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSpec {
    pub name: String,
    pub version: String,
    pub source: ChartSource,
}

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A classic Helm repository: its `index.yaml` gives the .tgz URL and digest.
    Repo(String),
    /// An OCI registry: `oci://host/path` (the chart is `path/NAME:VERSION`).
    Oci(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    name: String,
    version: String,
    url: String,
    platforms: Option<Vec<Platform>>,
    sha256: Option<RawPins>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPins {
    One(String),
    PerPlatform(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChart {
    name: String,
    version: String,
    repo: Option<String>,
    oci: Option<String>,
}

/// A name that can be a path component and part of a repository name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn pin(file: &str, what: &str, text: &str) -> Result<Digest, String> {
    format!("sha256:{}", text.trim_start_matches("sha256:"))
        .parse()
        .map_err(|_| format!("file {file}: sha256 {what}{text:?} is not 64 lowercase hex digits"))
}

impl RawFile {
    pub(crate) fn check(self, spec_platforms: &[Platform]) -> Result<FileSpec, String> {
        let who = format!("{} {}", self.name, self.version);
        if !valid_name(&self.name) {
            return Err(format!(
                "file {:?}: a name is lowercase letters, digits, '.', '_' and '-' (it names the file in the registry)",
                self.name
            ));
        }
        if !crate::reference::valid_tag(&self.version) {
            return Err(format!(
                "file {}: version {:?} must be usable as a tag ([A-Za-z0-9_.-], 128 at most)",
                self.name, self.version
            ));
        }
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!(
                "file {who}: url {:?} must be https:// or http://",
                self.url
            ));
        }
        let mut rest = self.url.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("file {who}: url has an unclosed '{{'"))?;
            let key = &rest[open + 1..open + close];
            if !matches!(key, "version" | "os" | "arch") {
                return Err(format!(
                    "file {who}: url names {{{key}}}; only {{version}}, {{os}} and {{arch}} are filled in"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        let platforms = self.platforms.unwrap_or_else(|| spec_platforms.to_vec());
        let mut pins = BTreeMap::new();
        if platforms.is_empty() {
            if self.url.contains("{os}") || self.url.contains("{arch}") {
                return Err(format!(
                    "file {who}: platforms = [] (platform-independent) but the url names {{os}} or {{arch}}"
                ));
            }
            match self.sha256 {
                None => {}
                Some(RawPins::One(text)) => {
                    pins.insert(None, pin(&who, "", &text)?);
                }
                Some(RawPins::PerPlatform(_)) => {
                    return Err(format!(
                    "file {who}: a platform-independent file takes one sha256 string, not a table"
                ))
                }
            }
        } else {
            match self.sha256 {
                None => {}
                Some(RawPins::One(_)) => {
                    return Err(format!(
                        "file {who}: give one sha256 per platform, sha256 = {{ \"{}\" = \"…\" }}, or platforms = [] for a platform-independent file",
                        platforms[0]
                    ))
                }
                Some(RawPins::PerPlatform(table)) => {
                    for (key, text) in table {
                        let p: Platform = key
                            .parse()
                            .map_err(|e: crate::platform::PlatformError| format!("file {who}: {e}"))?;
                        if !platforms.contains(&p) {
                            return Err(format!(
                                "file {who}: sha256 names {p}, which is not one of its platforms"
                            ));
                        }
                        let d = pin(&who, &format!("for {p} "), &text)?;
                        pins.insert(Some(p), d);
                    }
                }
            }
        }
        Ok(FileSpec {
            name: self.name,
            version: self.version,
            url: self.url,
            platforms,
            pins,
        })
    }
}

impl RawChart {
    pub(crate) fn check(self) -> Result<ChartSpec, String> {
        let who = format!("chart {} {}", self.name, self.version);
        if !valid_name(&self.name) {
            return Err(format!(
                "chart {:?}: a name is lowercase letters, digits, '.', '_' and '-'",
                self.name
            ));
        }
        if !crate::reference::valid_tag(&self.version) {
            return Err(format!("{who}: version must be usable as a tag"));
        }
        let source = match (self.repo, self.oci) {
            (Some(r), None) if r.starts_with("https://") || r.starts_with("http://") => {
                ChartSource::Repo(r.trim_end_matches('/').to_string())
            }
            (None, Some(o)) if o.starts_with("oci://") && o.len() > "oci://".len() => {
                ChartSource::Oci(o.trim_end_matches('/').to_string())
            }
            (Some(r), None) => return Err(format!("{who}: repo {r:?} must be an http(s) URL")),
            (None, Some(o)) => return Err(format!("{who}: oci {o:?} must be oci://host/path")),
            _ => return Err(format!("{who}: give exactly one of `repo` or `oci`")),
        };
        Ok(ChartSpec {
            name: self.name,
            version: self.version,
            source,
        })
    }
}

impl FileSpec {
    /// The platforms to fetch: each of `platforms`, or `[None]` when independent.
    pub fn targets(&self) -> Vec<Option<Platform>> {
        if self.platforms.is_empty() {
            vec![None]
        } else {
            self.platforms.iter().cloned().map(Some).collect()
        }
    }

    /// The URL for `platform`, the template filled in.
    pub fn url_for(&self, platform: Option<&Platform>) -> String {
        let mut url = self.url.replace("{version}", &self.version);
        if let Some(p) = platform {
            url = url
                .replace("{os}", &p.os)
                .replace("{arch}", &p.architecture);
        }
        url
    }

    pub fn pin(&self, platform: Option<&Platform>) -> Option<&Digest> {
        self.pins.get(&platform.cloned())
    }
}

/// The file name a URL downloads to: its last path segment.
pub fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawFile {
        toml::from_str(toml_text).unwrap()
    }

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn files_fill_their_template_per_platform() {
        let platforms: Vec<Platform> = vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm64".parse().unwrap(),
        ];
        let f = raw(&format!(
            "name = \"kubelet\"\nversion = \"1.31.14\"\nurl = \"https://dl.k8s.io/release/v{{version}}/bin/{{os}}/{{arch}}/kubelet\"\nsha256 = {{ \"linux/arm64\" = \"{HEX}\" }}\n"
        ))
        .check(&platforms)
        .unwrap();
        assert_eq!(f.targets().len(), 2);
        assert_eq!(
            f.url_for(Some(&platforms[1])),
            "https://dl.k8s.io/release/v1.31.14/bin/linux/arm64/kubelet"
        );
        assert!(f.pin(Some(&platforms[0])).is_none());
        assert_eq!(f.pin(Some(&platforms[1])).unwrap().hex(), HEX);
        assert_eq!(file_name(&f.url_for(Some(&platforms[0]))), "kubelet");
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_field() {
        let p: Vec<Platform> = vec!["linux/amd64".parse().unwrap()];
        let e = |t: &str| raw(t).check(&p).unwrap_err();
        assert!(
            e("name = \"x\"\nversion = \"1\"\nurl = \"https://h/{os}\"\nplatforms = []\n")
                .contains("platform-independent")
        );
        assert!(
            e("name = \"x\"\nversion = \"1\"\nurl = \"https://h/{flavour}\"\n")
                .contains("{flavour}")
        );
        assert!(
            e("name = \"x\"\nversion = \"1\"\nurl = \"https://h/a\"\nsha256 = \"abc\"\n")
                .contains("one sha256 per platform")
        );
        assert!(e(&format!("name = \"x\"\nversion = \"1\"\nurl = \"https://h/a\"\nsha256 = {{ \"linux/arm64\" = \"{HEX}\" }}\n")).contains("linux/arm64"));
        assert!(e("name = \"x\"\nversion = \"1\"\nurl = \"https://h/a\"\nsha256 = { \"linux/amd64\" = \"nothex\" }\n").contains("\"nothex\""));
        assert!(e("name = \"X Y\"\nversion = \"1\"\nurl = \"https://h/a\"\n").contains("X Y"));
        assert!(e("name = \"x\"\nversion = \"1\"\nurl = \"ftp://h/a\"\n").contains("ftp://h/a"));
    }
}
