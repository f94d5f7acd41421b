//! Where a push goes: a registry's base URL and a path prefix, and how an
//! upstream name maps to a repository there.
//!
//! The mapping keeps the upstream host: `registry.k8s.io/pause` pushed to
//! `https://harbor.site/k8s` lands in `k8s/registry.k8s.io/pause`, so names from
//! different upstream registries never collide, and a node's containerd reaches it
//! by the upstream name through a `hosts.toml` whose host URL carries the path
//! (`https://harbor.site/v2/k8s/registry.k8s.io`, `override_path = true`).
//! Files and charts are `k8s/files/<name>` and `k8s/charts/<name>`.
//!
//! `--flatten`, for registries that allow only `project/repository`, joins the
//! upstream name's components with `__` (`k8s/registry.k8s.io__pause`). Flattened
//! names cannot be reached through `hosts.toml` (containerd appends the image's
//! path with its slashes), so nodes should not pull from a flattened registry.

use std::fmt;

/// A registry to push into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `scheme://host[:port]`.
    pub base_url: String,
    /// The path under which repositories go, without slashes at its ends; may be empty.
    pub prefix: String,
    pub flatten: bool,
}

/// The separator `--flatten` puts between an upstream name's components; the
/// distribution grammar allows `__` inside a path component.
pub const FLATTEN_SEPARATOR: &str = "__";

#[derive(Debug, thiserror::Error)]
#[error("--to {url:?}: {reason}")]
pub struct TargetError {
    url: String,
    reason: String,
}

impl Target {
    /// Parses `https://host[:port][/prefix]` (or `http://` for a plain-HTTP registry).
    pub fn parse(url: &str, flatten: bool) -> Result<Target, TargetError> {
        let fail = |reason: &str| TargetError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "https" || *s == "http")
            .ok_or_else(|| {
                fail("expected https://HOST[:PORT][/PREFIX] (or http:// for a plain-HTTP registry)")
            })?;
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(fail("expected a host (no user, query or fragment)"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            let probe = format!("{host}/{prefix}/x");
            if probe.parse::<ferry::Reference>().is_err() || prefix.contains("//") {
                return Err(fail(
                    "the prefix must be lowercase path components ([a-z0-9._-], separated by /)",
                ));
            }
        }
        Ok(Target {
            base_url: format!("{scheme}://{host}"),
            prefix,
            flatten,
        })
    }

    /// The repository that upstream name `name` (`registry.k8s.io/pause`,
    /// `files/kubelet`) is pushed to.
    pub fn repository(&self, name: &str) -> String {
        let name = if self.flatten {
            name.replace('/', FLATTEN_SEPARATOR)
        } else {
            name.to_string()
        };
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The host[:port] contacted.
    pub fn host(&self) -> &str {
        self.base_url
            .split_once("://")
            .map_or(&*self.base_url, |(_, h)| h)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{}", self.base_url)
        } else {
            write!(f, "{}/{}", self.base_url, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_upstream_names_under_the_prefix_keeping_the_host() {
        let t = Target::parse("https://harbor.site/k8s/", false).unwrap();
        assert_eq!(t.base_url, "https://harbor.site");
        assert_eq!(t.host(), "harbor.site");
        assert_eq!(
            t.repository("registry.k8s.io/pause"),
            "k8s/registry.k8s.io/pause"
        );
        assert_eq!(t.repository("files/kubelet"), "k8s/files/kubelet");
        assert_eq!(t.to_string(), "https://harbor.site/k8s");
        let flat = Target::parse("http://127.0.0.1:5000/k8s", true).unwrap();
        assert_eq!(
            flat.repository("docker.io/calico/node"),
            "k8s/docker.io__calico__node"
        );
        let bare = Target::parse("https://r.site:5443", false).unwrap();
        assert_eq!(bare.repository("quay.io/a/b"), "quay.io/a/b");
        // Every mapped name is a valid repository name.
        for name in ["k8s/registry.k8s.io/pause", "k8s/docker.io__calico__node"] {
            assert!(format!("r.site/{name}").parse::<ferry::Reference>().is_ok());
        }
    }

    #[test]
    fn refuses_what_is_not_a_registry_url() {
        for bad in [
            "harbor.site/k8s",
            "ftp://harbor.site",
            "https://",
            "https://u:p@harbor.site",
            "https://harbor.site/K8S",
            "https://harbor.site/a//b",
        ] {
            let e = Target::parse(bad, false).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--to {bad:?}: ")), "{e}");
        }
    }
}
