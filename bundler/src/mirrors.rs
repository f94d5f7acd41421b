//! Mirror rules (`mirrors.toml`): for each upstream registry host, the ordered list of
//! endpoints to try, each with an optional repository rewrite; for each upstream
//! file host, the URL prefixes that replace `https://HOST`.
//!
//! Rules are data so that China-friendly mirrors, a corporate proxy and the loopback
//! registries of the tests all go through one mechanism. The upstream host is tried
//! last unless `skip_upstream = true`. `connect_timeout` (seconds) on an endpoint,
//! or on a rule for all of its endpoints and its upstream, replaces the command
//! line's for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use ferry_client::Endpoint;

use ferry::reference::{Reference, DOCKER_HUB};
use ferry::toml_file::{self, TomlError};

/// The rules shipped with Ferry (`bundler/mirrors.toml`, linked as the workspace's
/// `mirrors.toml`).
pub const DEFAULT_RULES: &str = include_str!("../mirrors.toml");

/// A set of mirror rules.
#[derive(Debug, Clone, Default)]
pub struct MirrorRules {
    hosts: Vec<HostRule>,
    files: Vec<FileHostRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    registry: Vec<HostRule>,
    #[serde(default)]
    files: Vec<FileHostRule>,
}

/// The mirrors of one upstream file host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHostRule {
    pub host: String,
    /// URL prefixes that replace `https://HOST`, in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    #[serde(default)]
    pub skip_upstream: bool,
    /// Seconds a connection to its mirrors and upstream may take to open.
    pub connect_timeout: Option<f64>,
}

/// The endpoints for one upstream host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRule {
    pub host: String,
    /// The upstream's own API base URL, when it is not `https://<host>`.
    pub upstream: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<EndpointRule>,
    #[serde(default)]
    pub skip_upstream: bool,
    /// Seconds a connection to its endpoints and upstream may take to open.
    pub connect_timeout: Option<f64>,
}

/// One mirror of an upstream host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRule {
    pub url: String,
    pub prefix: Option<String>,
    #[serde(default)]
    pub flatten: bool,
    /// Seconds a connection may take to open (else the rule's, else the command line's).
    pub connect_timeout: Option<f64>,
}

/// A `connect_timeout` already checked when the rules were read.
fn checked(seconds: Option<f64>) -> Option<Duration> {
    timeout(seconds).ok().flatten()
}

/// A `connect_timeout` of the rules as a duration: more than 0, at most 600 s.
fn timeout(seconds: Option<f64>) -> Result<Option<Duration>, String> {
    match seconds {
        None => Ok(None),
        Some(s) if s > 0.0 && s <= 600.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(format!(
            "connect_timeout = {s} must be between 0 and 600 seconds"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Toml(#[from] TomlError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("endpoint url {url:?} must start with https:// or http://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!(
            "endpoint url {url:?} must be scheme://host[:port]; put a path in `prefix`"
        ));
    }
    Ok(())
}

impl MirrorRules {
    /// The rules shipped with Ferry.
    pub fn defaults() -> MirrorRules {
        MirrorRules::parse(Path::new("<built-in mirrors.toml>"), DEFAULT_RULES)
            .expect("the built-in mirrors.toml is valid")
    }

    /// Reads rules from `path`; they replace the defaults entirely.
    pub fn load(path: &Path) -> Result<MirrorRules, MirrorError> {
        MirrorRules::parse(path, &toml_file::read(path, "mirror rules")?)
    }

    pub fn parse(path: &Path, text: &str) -> Result<MirrorRules, MirrorError> {
        let raw: RawRules = toml_file::parse(path, text)?;
        let invalid = |message: String| MirrorError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for rule in &raw.registry {
            if !seen.insert(rule.host.as_str()) {
                return Err(invalid(format!(
                    "host {:?} has two [[registry]] rules",
                    rule.host
                )));
            }
            if rule.host.is_empty() || rule.host.contains('/') {
                return Err(invalid(format!(
                    "host {:?} must be a registry host name such as registry.k8s.io",
                    rule.host
                )));
            }
            timeout(rule.connect_timeout)
                .map_err(|m| invalid(format!("host {}: {m}", rule.host)))?;
            for e in &rule.endpoints {
                check_url(&e.url).map_err(|m| invalid(format!("host {}: {m}", rule.host)))?;
                timeout(e.connect_timeout)
                    .map_err(|m| invalid(format!("host {}: {m}", rule.host)))?;
                if let Some(p) = &e.prefix {
                    if p.is_empty()
                        || p.starts_with('/')
                        || p.ends_with('/')
                        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                    {
                        return Err(invalid(format!(
                            "host {}: prefix {p:?} must be a relative path like google_containers",
                            rule.host
                        )));
                    }
                }
            }
            if let Some(u) = &rule.upstream {
                check_url(u).map_err(|m| invalid(format!("host {}: {m}", rule.host)))?;
            }
            if rule.skip_upstream && rule.endpoints.is_empty() {
                return Err(invalid(format!(
                    "host {}: skip_upstream = true with no endpoints leaves nowhere to pull from",
                    rule.host
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for rule in &raw.files {
            if !seen.insert(rule.host.as_str()) {
                return Err(invalid(format!(
                    "host {:?} has two [[files]] rules",
                    rule.host
                )));
            }
            if rule.host.is_empty() || rule.host.contains('/') {
                return Err(invalid(format!(
                    "[[files]] host {:?} must be a host name such as dl.k8s.io",
                    rule.host
                )));
            }
            timeout(rule.connect_timeout)
                .map_err(|m| invalid(format!("[[files]] host {}: {m}", rule.host)))?;
            for m in &rule.mirrors {
                let ok = (m.starts_with("https://") || m.starts_with("http://"))
                    && !m.ends_with('/')
                    && !m.contains('?');
                if !ok {
                    return Err(invalid(format!(
                        "[[files]] host {}: mirror {m:?} must be an http(s) URL prefix with no trailing /",
                        rule.host
                    )));
                }
            }
            if rule.skip_upstream && rule.mirrors.is_empty() {
                return Err(invalid(format!(
                    "[[files]] host {}: skip_upstream = true with no mirrors leaves nowhere to download from",
                    rule.host
                )));
            }
        }
        Ok(MirrorRules {
            hosts: raw.registry,
            files: raw.files,
        })
    }

    /// The rule for an upstream file host, if any.
    pub fn file_rule(&self, host: &str) -> Option<&FileHostRule> {
        self.files.iter().find(|r| r.host == host)
    }

    /// Where to download the file at `url`, in order: each mirror of its host, then
    /// `url` itself unless the rule skips upstream. Each is an [`Endpoint`] whose
    /// `repository` holds the path (so it prints as the URL it fetches).
    pub fn file_endpoints(&self, url: &str) -> Vec<Endpoint> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let rule = self.file_rule(host);
        let mut out: Vec<Endpoint> = rule
            .map(|r| {
                r.mirrors
                    .iter()
                    .map(|m| {
                        let (m_scheme, m_rest) = m.split_once("://").expect("checked");
                        let (m_host, m_path) = m_rest.split_once('/').unwrap_or((m_rest, ""));
                        let repository = if m_path.is_empty() {
                            path.to_string()
                        } else {
                            format!("{m_path}/{path}")
                        };
                        Endpoint {
                            base_url: format!("{m_scheme}://{m_host}"),
                            repository,
                            upstream: false,
                            connect_timeout: checked(r.connect_timeout),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !rule.is_some_and(|r| r.skip_upstream) {
            out.push(Endpoint {
                base_url: format!("{scheme}://{host}"),
                repository: path.to_string(),
                upstream: true,
                connect_timeout: checked(rule.and_then(|r| r.connect_timeout)),
            });
        }
        out
    }

    /// The rule for an upstream host, if any.
    pub fn rule(&self, host: &str) -> Option<&HostRule> {
        self.hosts.iter().find(|r| r.host == host)
    }

    /// Every upstream host that has a rule.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|r| r.host.as_str())
    }

    /// The endpoints to try for `reference`, in order.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let host = reference.registry();
        let repo = reference.repository();
        let rule = self.rule(host);
        let mut out: Vec<Endpoint> = rule
            .map(|r| {
                r.endpoints
                    .iter()
                    .map(|e| {
                        let tail = if e.flatten {
                            repo.rsplit('/').next().unwrap_or(repo)
                        } else {
                            repo
                        };
                        let repository = match &e.prefix {
                            Some(p) => format!("{p}/{tail}"),
                            None => tail.to_string(),
                        };
                        Endpoint {
                            base_url: e.url.trim_end_matches('/').to_string(),
                            repository,
                            upstream: false,
                            connect_timeout: checked(e.connect_timeout.or(r.connect_timeout)),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !rule.is_some_and(|r| r.skip_upstream) {
            let base_url = match rule.and_then(|r| r.upstream.as_deref()) {
                Some(u) => u.trim_end_matches('/').to_string(),
                None if host == DOCKER_HUB => "https://registry-1.docker.io".to_string(),
                None => format!("https://{host}"),
            };
            out.push(Endpoint {
                base_url,
                repository: repo.to_string(),
                upstream: true,
                connect_timeout: checked(rule.and_then(|r| r.connect_timeout)),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(rules: &MirrorRules, r: &str) -> Vec<String> {
        rules
            .endpoints(&r.parse().unwrap())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_rewrite_and_fall_back_to_upstream() {
        let rules = MirrorRules::defaults();
        assert_eq!(
            ep(&rules, "registry.k8s.io/coredns/coredns:v1.11.3"),
            [
                "https://registry.aliyuncs.com/google_containers/coredns",
                "https://k8s.m.daocloud.io/coredns/coredns",
                "https://m.daocloud.io/registry.k8s.io/coredns/coredns",
                "https://registry.k8s.io/coredns/coredns",
            ]
        );
        let hub = ep(&rules, "busybox:1");
        assert_eq!(
            hub.last().unwrap(),
            "https://registry-1.docker.io/library/busybox"
        );
        for host in [
            "registry.k8s.io",
            "docker.io",
            "quay.io",
            "ghcr.io",
            "gcr.io",
        ] {
            assert!(rules.rule(host).is_some(), "{host}");
        }
        assert_eq!(ep(&rules, "example.com/a/b:1"), ["https://example.com/a/b"]);
    }

    #[test]
    fn file_urls_go_to_their_host_mirrors_then_upstream() {
        let rules = MirrorRules::defaults();
        let urls: Vec<String> = rules
            .file_endpoints("https://dl.k8s.io/release/v1.31.14/bin/linux/amd64/kubelet")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "https://files.m.daocloud.io/dl.k8s.io/release/v1.31.14/bin/linux/amd64/kubelet",
                "https://dl.k8s.io/release/v1.31.14/bin/linux/amd64/kubelet",
            ]
        );
        let local = MirrorRules::parse(
            Path::new("m.toml"),
            "[[files]]\nhost = \"get.helm.sh\"\nmirrors = [\"http://127.0.0.1:9/x\"]\nskip_upstream = true\n",
        )
        .unwrap();
        let urls: Vec<String> = local
            .file_endpoints("https://get.helm.sh/helm-v3.16.4-linux-amd64.tar.gz")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            urls,
            ["http://127.0.0.1:9/x/helm-v3.16.4-linux-amd64.tar.gz"]
        );
        let e = MirrorRules::parse(
            Path::new("m.toml"),
            "[[files]]\nhost = \"a.io\"\nmirrors = [\"https://m.io/\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("https://m.io/"), "{e}");
    }

    #[test]
    fn skip_upstream_and_errors() {
        let rules = MirrorRules::parse(
            Path::new("m.toml"),
            "[[registry]]\nhost = \"registry.k8s.io\"\nskip_upstream = true\nendpoints = [{ url = \"http://127.0.0.1:5000/\" }]\n",
        )
        .unwrap();
        assert_eq!(
            ep(&rules, "registry.k8s.io/pause:3.10"),
            ["http://127.0.0.1:5000/pause"]
        );
        let e = MirrorRules::parse(
            Path::new("m.toml"),
            "[[registry]]\nhost = \"x.io\"\nendpoint = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("m.toml:3:") && e.contains("endpoint"), "{e}");
        let e = MirrorRules::parse(
            Path::new("m.toml"),
            "[[registry]]\nhost = \"x.io\"\nendpoints = [{ url = \"ftp://x\" }]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ftp://x"), "{e}");
    }

    #[test]
    fn connect_timeouts_go_to_their_endpoints_and_the_rules_to_the_rest() {
        let rules = MirrorRules::parse(
            Path::new("m.toml"),
            "[[registry]]\nhost = \"x.io\"\nconnect_timeout = 2\nendpoints = [{ url = \"https://a.io\", connect_timeout = 0.5 }, { url = \"https://b.io\" }]\n\n[[files]]\nhost = \"dl.x.io\"\nmirrors = [\"https://f.io\"]\nconnect_timeout = 4\n",
        )
        .unwrap();
        let t = |e: &Endpoint| e.connect_timeout.map(|d| d.as_secs_f64());
        let eps = rules.endpoints(&"x.io/a:1".parse().unwrap());
        assert_eq!(
            eps.iter().map(t).collect::<Vec<_>>(),
            [Some(0.5), Some(2.0), Some(2.0)]
        );
        let files = rules.file_endpoints("https://dl.x.io/k");
        assert_eq!(
            files.iter().map(t).collect::<Vec<_>>(),
            [Some(4.0), Some(4.0)]
        );
        let other = MirrorRules::parse(Path::new("m.toml"), "").unwrap();
        assert_eq!(t(&other.endpoints(&"x.io/a:1".parse().unwrap())[0]), None);
        for bad in ["0", "-1", "601"] {
            let e = MirrorRules::parse(
                Path::new("m.toml"),
                &format!("[[registry]]\nhost = \"x.io\"\nendpoints = [{{ url = \"https://a.io\", connect_timeout = {bad} }}]\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("connect_timeout") && e.starts_with("m.toml"),
                "{e}"
            );
        }
    }
}
