//! Release specs (`manifests/*.toml`): what a bundle holds, by name and version.
//!
//! ```toml
//! name = "kubernetes"
//! version = "1.31.4"
//! platforms = ["linux/amd64", "linux/arm64"]
//! images = [
//!   "registry.k8s.io/kube-apiserver:v1.31.4",
//!   { ref = "registry.k8s.io/dns/k8s-dns-node-cache:1.23.1", platforms = ["linux/amd64"] },
//! ]
//! ```
//! Parsing is strict: an unknown key or a reference that does not parse is an error
//! that names the file, the line and the offending text.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::file_spec::{ChartSpec, FileSpec, RawChart, RawFile};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::toml_file::{self, TomlError};

/// A parsed, validated release spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub version: String,
    pub platforms: Vec<Platform>,
    pub images: Vec<ImageSpec>,
    /// Files to carry (binaries, archives, manifests), see [`crate::file_spec`].
    pub files: Vec<FileSpec>,
    /// Helm charts to carry.
    pub charts: Vec<ChartSpec>,
}

/// One image a spec asks for, with the platforms wanted for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    pub reference: Reference,
    pub platforms: Vec<Platform>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Toml(#[from] TomlError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    version: String,
    platforms: Vec<Platform>,
    #[serde(default)]
    images: Vec<RawImage>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    charts: Vec<RawChart>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawImage {
    Plain(String),
    Table(RawImageTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImageTable {
    #[serde(rename = "ref")]
    reference: String,
    platforms: Option<Vec<Platform>>,
}

impl Spec {
    /// Reads and validates the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        Spec::parse(path, &toml_file::read(path, "spec")?)
    }

    /// Parses spec text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml_file::parse(path, text).map_err(|e| match e {
            TomlError::Syntax { path, line, message }
                if message.starts_with("data did not match any variant") =>
            {
                TomlError::Syntax {
                    path,
                    line,
                    message: "an image is a reference string or a table { ref = \"…\", platforms = [\"os/arch\"] } with no other keys".into(),
                }
            }
            e => e,
        })?;
        let invalid = |message: String| SpecError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        check_word("name", &raw.name, "").map_err(invalid)?;
        check_word("version", &raw.version, "+").map_err(invalid)?;
        if raw.platforms.is_empty() {
            return Err(invalid(
                "`platforms` is empty: name at least one, e.g. \"linux/amd64\"".into(),
            ));
        }
        let mut images: Vec<ImageSpec> = Vec::new();
        for raw_image in raw.images {
            let (text, platforms) = match raw_image {
                RawImage::Plain(s) => (s, None),
                RawImage::Table(t) => (t.reference, t.platforms),
            };
            let reference: Reference = text
                .parse()
                .map_err(|e: crate::reference::ReferenceError| invalid(e.to_string()))?;
            if reference.tag().is_none() && reference.digest().is_none() {
                return Err(invalid(format!(
                    "image {text:?} has neither a tag nor a digest: pin it, e.g. {text}:1.0"
                )));
            }
            let platforms = platforms.unwrap_or_else(|| raw.platforms.clone());
            if platforms.is_empty() {
                return Err(invalid(format!("image {text:?} has an empty `platforms`")));
            }
            if images.iter().any(|i| i.reference == reference) {
                return Err(invalid(format!("image {reference} is listed twice")));
            }
            images.push(ImageSpec {
                reference,
                platforms,
            });
        }
        let mut files: Vec<FileSpec> = Vec::new();
        for f in raw.files {
            let f = f.check(&raw.platforms).map_err(invalid)?;
            if files
                .iter()
                .any(|g| g.name == f.name && g.version == f.version)
            {
                return Err(invalid(format!(
                    "file {} {} is listed twice",
                    f.name, f.version
                )));
            }
            files.push(f);
        }
        let mut charts: Vec<ChartSpec> = Vec::new();
        for c in raw.charts {
            let c = c.check().map_err(invalid)?;
            if charts
                .iter()
                .any(|d| d.name == c.name && d.version == c.version)
            {
                return Err(invalid(format!(
                    "chart {} {} is listed twice",
                    c.name, c.version
                )));
            }
            charts.push(c);
        }
        Ok(Spec {
            name: raw.name,
            version: raw.version,
            platforms: raw.platforms,
            images,
            files,
            charts,
        })
    }
}

/// Checks a release's `name` or `version`: ASCII letters, digits, `.`, `_`, `-`
/// and the characters in `extra`, starting with a letter or digit, 128 at most.
/// Both travel in file names, in the bundle's `name:version` and in the site's
/// `--release`, where a `/`, a `:` or a space would be taken apart.
fn check_word(field: &str, value: &str, extra: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c);
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "`{field}` {value:?} has {bad:?}: use letters, digits, '.', '_', '-'{}",
            extra
                .chars()
                .map(|c| format!(", '{c}'"))
                .collect::<String>()
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "`{field}` {value:?} must start with a letter or a digit"
        ));
    }
    if value.len() > 128 {
        return Err(format!(
            "`{field}` is {} characters long; 128 at most",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("k.toml"), text)
    }

    #[test]
    fn parses_the_documented_example() {
        let spec = parse(
            r#"
name = "kubernetes"
version = "1.31.4"
platforms = ["linux/amd64", "linux/arm64"]
images = [
  "registry.k8s.io/kube-apiserver:v1.31.4",
  "busybox:1.36",
  { ref = "registry.k8s.io/dns/k8s-dns-node-cache:1.23.1", platforms = ["linux/amd64"] },
]
"#,
        )
        .unwrap();
        assert_eq!(spec.images.len(), 3);
        assert_eq!(
            spec.images[1].reference.to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(spec.images[0].platforms.len(), 2);
        assert_eq!(
            spec.images[2].platforms,
            vec!["linux/amd64".parse().unwrap()]
        );
    }

    #[test]
    fn errors_name_the_file_line_and_culprit() {
        let e =
            parse("name = \"k\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\nimagez = []\n")
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("k.toml:4:"), "{e}");
        assert!(e.contains("imagez"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = parse("name = \"k\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\nimages = [\"Bad Ref:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Bad Ref:1"), "{e}");

        let e = parse("name = \"k\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\nimages = [{ ref = \"a:1\", platfroms = [] }]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("k.toml:4:"), "{e}");

        let e = parse(
            "name = \"k\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\nimages = [\"a\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("neither a tag nor a digest"), "{e}");

        for (name, version, culprit) in [
            ("../k", "1", "'/'"),
            ("k", "1.0/x", "'/'"),
            ("k8s:prod", "1", "':'"),
            ("k", "1 2", "' '"),
            (".k", "1", "must start"),
            ("", "1", "`name` is empty"),
        ] {
            let e = parse(&format!(
                "name = {name:?}\nversion = {version:?}\nplatforms = [\"linux/amd64\"]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("k.toml: `"), "{e}");
            assert!(e.contains(culprit), "{e}");
        }
        parse("name = \"kube_1.31\"\nversion = \"v1.31.4-rc.1+ferry.2\"\nplatforms = [\"linux/amd64\"]\n")
            .unwrap();

        let e = parse("name = \"k\"\nversion = \"1\"\nplatforms = [\"linux\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux"), "{e}");
    }
}
