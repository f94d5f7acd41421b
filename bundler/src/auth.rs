//! Registry credentials and authentication challenges.
//!
//! Credentials come from `--cred HOST=USER:PASSWORD` flags first, then from
//! `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`), looked up by the host
//! actually contacted, since a mirror has its own accounts. Challenges are the
//! `WWW-Authenticate` header of a 401: `Basic` or `Bearer realm=…,service=…,scope=…`.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;

/// A user name and password for one registry host.
#[derive(Clone)]
pub struct Basic {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({}:***)", self.user)
    }
}

/// Credentials by registry host.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_host: HashMap<String, Basic>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("--cred {0:?}: expected HOST=USER:PASSWORD")]
    Flag(String),
    #[error("{}: {message}", path.display())]
    DockerConfig { path: PathBuf, message: String },
}

impl Credentials {
    /// Parses `HOST=USER:PASSWORD` flags, then adds what the docker config holds for
    /// hosts the flags did not name.
    pub fn load(flags: &[String]) -> Result<Credentials, CredentialError> {
        let mut creds = Credentials::default();
        for flag in flags {
            let (host, userpass) = flag
                .split_once('=')
                .ok_or_else(|| CredentialError::Flag(flag.clone()))?;
            let (user, password) = userpass
                .split_once(':')
                .ok_or_else(|| CredentialError::Flag(flag.clone()))?;
            creds.by_host.insert(
                host.to_string(),
                Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                },
            );
        }
        if let Some(path) = docker_config_path() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                creds.add_docker_config(&path, &text)?;
            }
        }
        Ok(creds)
    }

    fn add_docker_config(
        &mut self,
        path: &std::path::Path,
        text: &str,
    ) -> Result<(), CredentialError> {
        let err = |message: String| CredentialError::DockerConfig {
            path: path.to_path_buf(),
            message,
        };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Ok(());
        };
        for (key, entry) in auths {
            let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| err(format!("auths.{key}.auth is not base64 of USER:PASSWORD")))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| err(format!("auths.{key}.auth is not base64 of USER:PASSWORD")))?;
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(key)
                .to_string();
            self.by_host.entry(host).or_insert(Basic {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        Ok(())
    }

    /// The credentials for the host (`host[:port]`) being contacted.
    pub fn for_host(&self, host: &str) -> Option<&Basic> {
        self.by_host.get(host).or_else(|| match host {
            // Docker Hub's API host goes by several names in docker's config.
            "registry-1.docker.io" | "docker.io" => self
                .by_host
                .get("index.docker.io")
                .or_else(|| self.by_host.get("docker.io"))
                .or_else(|| self.by_host.get("registry-1.docker.io")),
            _ => None,
        })
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// Parses `key="value",key2=value2`, with quoted values that may hold commas.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn reads_docker_config_and_flags() {
        let mut c = Credentials::load(&["127.0.0.1:5000=al:pa:ss".into()]).unwrap();
        assert_eq!(c.for_host("127.0.0.1:5000").unwrap().password, "pa:ss");
        c.add_docker_config(
            std::path::Path::new("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        assert_eq!(c.for_host("registry-1.docker.io").unwrap().user, "u");
        assert!(Credentials::load(&["nohost".into()]).is_err());
    }
}
