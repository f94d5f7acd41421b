//! Platforms (`linux/amd64`, `linux/arm/v7`): the one type for what a spec asks
//! for, what an index entry or an image config says it is, and the rule for
//! picking the matching entry out of a manifest list or OCI index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An `os/architecture[/variant]` triple.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected os/architecture[/variant], e.g. linux/amd64")]
pub struct PlatformError(pub String);

impl Platform {
    /// The platform an index entry or image config states, as it states it (not
    /// validated like a spec's: `unknown/unknown` attestation entries are kept),
    /// with the architecture's Go spelling and an empty variant as none.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: normalise_arch(architecture).to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// Whether `offered` (an index entry's or an image config's platform) serves
    /// this wanted platform. An unspecified variant asks for the architecture's
    /// default: `linux/arm64` accepts entries without a variant or with `v8`.
    pub fn matches(&self, offered: &Platform) -> bool {
        if self.os != offered.os || self.architecture != offered.architecture {
            return false;
        }
        let default_variant = match self.architecture.as_str() {
            "arm64" => Some("v8"),
            _ => None,
        };
        match (self.variant.as_deref(), offered.variant.as_deref()) {
            (None, None) => true,
            (None, Some(v)) => Some(v) == default_variant,
            (Some(want), None) => Some(want) == default_variant,
            (Some(want), Some(v)) => want == v,
        }
    }
}

fn normalise_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |s: &&str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(PlatformError(text.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: normalise_arch(parts[1]).to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Platform::new;
        let amd: Platform = "linux/amd64".parse().unwrap();
        assert!(amd.matches(&p("linux", "amd64", None)));
        assert!(amd.matches(&p("linux", "x86_64", Some(""))));
        assert!(!amd.matches(&p("linux", "arm64", None)));
        assert!(!amd.matches(&p("windows", "amd64", None)));
        let arm: Platform = "linux/arm64".parse().unwrap();
        assert!(arm.matches(&p("linux", "arm64", Some("v8"))));
        assert!(arm.matches(&p("linux", "aarch64", None)));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches(&p("linux", "arm", Some("v7"))));
        assert!(!v7.matches(&p("linux", "arm", Some("v6"))));
        assert_eq!(v7.to_string(), "linux/arm/v7");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/AMD64".parse::<Platform>().is_err());
    }
}
