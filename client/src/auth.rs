//! Registry credentials and authentication challenges.
//!
//! Credentials are looked up by the host actually contacted, since a mirror has its
//! own accounts, and the first source that has some for it wins:
//!
//! 1. the command line: `--cred HOST=USER:PASSWORD`, or `--user HOST=USER` with the
//!    password from `--password-stdin` or `FERRY_REGISTRY_PASSWORD`;
//! 2. `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`): the credential helper
//!    that `credHelpers` names for the host, then the one `credsStore` names, then
//!    `auths`.
//!
//! A helper is the program `docker-credential-NAME`, asked with docker's protocol:
//! `get` as its argument, the server on stdin, `{"ServerURL","Username","Secret"}`
//! as JSON on stdout, or "credentials not found in native keychain" and a failure
//! status when it has none (then the next source is asked). Helpers run only for a
//! host that asks for credentials, at most once per host and run.
//!
//! Challenges are the `WWW-Authenticate` header of a 401: `Basic` or
//! `Bearer realm=…,service=…,scope=…`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

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

/// What a credential helper answered for one host.
type HelperAnswer = Result<Option<Basic>, CredentialError>;

/// Credentials by registry host.
#[derive(Debug, Default)]
pub struct Credentials {
    /// From the command line.
    by_host: HashMap<String, Basic>,
    /// `auths` of the docker config.
    auths: HashMap<String, Basic>,
    /// `credHelpers` of the docker config: a helper name by host.
    helpers: HashMap<String, String>,
    /// `credsStore` of the docker config.
    store: Option<String>,
    /// What the helpers answered, by host, so each host's are run once.
    answers: Mutex<HashMap<String, Arc<OnceLock<HelperAnswer>>>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// A malformed `--cred`; the value is never shown, it may hold a password.
    #[error("--cred {shown}: expected HOST=USER:PASSWORD ({reason})")]
    Flag {
        /// `HOST=…` when the value names a host, else `…`.
        shown: String,
        reason: &'static str,
    },
    #[error("--user {0:?}: expected HOST=USER")]
    User(String),
    #[error("{0}")]
    Login(String),
    #[error("{}: {message}", path.display())]
    DockerConfig { path: PathBuf, message: String },
    #[error("credential helper {helper} for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
}

/// Splits a `--cred HOST=USER:PASSWORD` value; an error shows at most its host.
pub fn parse_cred(flag: &str) -> Result<(&str, Basic), CredentialError> {
    let Some((host, userpass)) = flag.split_once('=') else {
        return Err(CredentialError::Flag {
            shown: "…".into(),
            reason: "no '=' after the host; the value is not shown, it may hold a password",
        });
    };
    let bad = |reason| CredentialError::Flag {
        shown: format!("{host}=…"),
        reason,
    };
    if host.is_empty() {
        return Err(CredentialError::Flag {
            shown: "=…".into(),
            reason: "no host before '='",
        });
    }
    let (user, password) = userpass
        .split_once(':')
        .ok_or_else(|| bad("no ':' between user and password; the rest is not shown"))?;
    Ok((
        host,
        Basic {
            user: user.to_string(),
            password: password.to_string(),
        },
    ))
}

/// What a credential helper prints, with a failure status, when it has nothing for
/// the server (docker-credential-helpers' `errCredentialsNotFoundMessage`).
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// The server a credential helper is asked about for `host`: docker logs in to
/// Docker Hub as `https://index.docker.io/v1/` and to other registries by host.
fn helper_server(host: &str) -> &str {
    match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => "https://index.docker.io/v1/",
        _ => host,
    }
}

/// `host[:port]` of a docker config key (`https://index.docker.io/v1/` or a host).
fn config_host(key: &str) -> String {
    key.trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(key)
        .to_string()
}

/// The entry of `map` for `host`, trying the other names of Docker Hub's API host.
fn lookup<'a, T>(map: &'a HashMap<String, T>, host: &str) -> Option<&'a T> {
    map.get(host).or_else(|| match host {
        "registry-1.docker.io" | "docker.io" => map
            .get("index.docker.io")
            .or_else(|| map.get("docker.io"))
            .or_else(|| map.get("registry-1.docker.io")),
        _ => None,
    })
}

/// Asks `docker-credential-NAME get` for the credentials of `host`.
fn run_helper(name: &str, host: &str) -> HelperAnswer {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }

    let helper = format!("docker-credential-{name}");
    let fail = |message: String| CredentialError::Helper {
        helper: helper.clone(),
        host: host.to_string(),
        message,
    };
    let mut child = Command::new(&helper)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading has answered all the same.
        let _ = stdin.write_all(helper_server(host).as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.trim() == HELPER_NOT_FOUND {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        return Err(fail(format!("`get` failed ({}){said}", out.status)));
    }
    let answer: Answer = serde_json::from_str(&stdout)
        .map_err(|e| fail(format!("`get` printed no credentials JSON ({e})")))?;
    if answer.username == "<token>" {
        return Err(fail(
            "it holds an identity token, and ferry-bundler needs a user name and password".into(),
        ));
    }
    Ok(Some(Basic {
        user: answer.username,
        password: answer.secret,
    }))
}

impl Credentials {
    /// Parses `HOST=USER:PASSWORD` flags, then adds what the docker config holds for
    /// hosts the flags did not name.
    pub fn load(flags: &[String]) -> Result<Credentials, CredentialError> {
        let mut creds = Credentials::default();
        for flag in flags {
            let (host, basic) = parse_cred(flag)?;
            creds.by_host.insert(host.to_string(), basic);
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
        if let Some(store) = v.get("credsStore") {
            let name = store
                .as_str()
                .ok_or_else(|| err("credsStore is not a string".into()))?;
            self.store = Some(name.to_string()).filter(|n| !n.is_empty());
        }
        if let Some(helpers) = v.get("credHelpers") {
            let helpers = helpers
                .as_object()
                .ok_or_else(|| err("credHelpers is not an object".into()))?;
            for (key, name) in helpers {
                let name = name
                    .as_str()
                    .ok_or_else(|| err(format!("credHelpers.{key} is not a string")))?;
                if !name.is_empty() {
                    self.helpers.insert(config_host(key), name.to_string());
                }
            }
        }
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
            self.auths.entry(config_host(key)).or_insert(Basic {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        Ok(())
    }

    /// Adds `--user HOST=USER` with its password (from [`Self::login_password`]).
    pub fn add_login(&mut self, login: &str, password: String) -> Result<(), CredentialError> {
        let (host, user) = login
            .split_once('=')
            .filter(|(h, u)| !h.is_empty() && !u.is_empty() && !u.contains(':'))
            .ok_or_else(|| CredentialError::User(login.to_string()))?;
        if self.by_host.contains_key(host) {
            return Err(CredentialError::Login(format!(
                "{host} is given both --cred and --user: keep one"
            )));
        }
        self.by_host.insert(
            host.to_string(),
            Basic {
                user: user.to_string(),
                password,
            },
        );
        Ok(())
    }

    /// The password for `--user`: the first line of standard input with
    /// `--password-stdin`, else `FERRY_REGISTRY_PASSWORD`.
    pub fn login_password(stdin: bool) -> Result<String, CredentialError> {
        let fail = |m: &str| CredentialError::Login(m.to_string());
        let password = if stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CredentialError::Login(format!("--password-stdin: {e}")))?;
            line.trim_end_matches(['\n', '\r']).to_string()
        } else {
            std::env::var("FERRY_REGISTRY_PASSWORD").map_err(|_| {
                fail("--user needs a password: pipe it to --password-stdin or set FERRY_REGISTRY_PASSWORD")
            })?
        };
        if password.is_empty() {
            return Err(fail(if stdin {
                "--password-stdin: no password on standard input"
            } else {
                "FERRY_REGISTRY_PASSWORD is empty"
            }));
        }
        Ok(password)
    }

    /// The credentials for the host (`host[:port]`) being contacted. This may run
    /// credential helpers, which block: call it off the async workers.
    pub fn for_host(&self, host: &str) -> Result<Option<Basic>, CredentialError> {
        if let Some(found) = lookup(&self.by_host, host) {
            return Ok(Some(found.clone()));
        }
        let answer = Arc::clone(
            self.answers
                .lock()
                .unwrap()
                .entry(host.to_string())
                .or_default(),
        );
        // Tasks asking for the same host at once wait here for one helper run.
        answer
            .get_or_init(|| {
                if let Some(name) = lookup(&self.helpers, host) {
                    if let Some(found) = run_helper(name, host)? {
                        return Ok(Some(found));
                    }
                }
                if let Some(name) = &self.store {
                    if let Some(found) = run_helper(name, host)? {
                        return Ok(Some(found));
                    }
                }
                Ok(lookup(&self.auths, host).cloned())
            })
            .clone()
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
        let found = |c: &Credentials, host: &str| c.for_host(host).unwrap().unwrap();
        assert_eq!(found(&c, "127.0.0.1:5000").password, "pa:ss");
        c.add_docker_config(
            std::path::Path::new("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        assert_eq!(found(&c, "registry-1.docker.io").user, "u");
        assert!(Credentials::load(&["nohost".into()]).is_err());
    }

    #[test]
    fn flags_come_before_helpers_and_a_failing_helper_is_one_line_naming_it_and_the_host() {
        let mut c = Credentials::default();
        c.add_docker_config(
            std::path::Path::new("config.json"),
            r#"{"auths":{"a.io":{"auth":"dTpw"},"b.io":{"auth":"dTpw"}},
                "credHelpers":{"https://b.io":"ferry-test-absent-helper"},
                "credsStore":"ferry-test-absent-store"}"#,
        )
        .unwrap();
        c.by_host.insert(
            "c.io".into(),
            Basic {
                user: "carol".into(),
                password: "pw".into(),
            },
        );
        // The command line wins without asking any helper.
        assert_eq!(c.for_host("c.io").unwrap().unwrap().user, "carol");
        // credHelpers for b.io comes first, then credsStore, then auths: a helper that
        // cannot run is an error, not a silent fall back to auths.
        for (host, helper) in [
            ("b.io", "docker-credential-ferry-test-absent-helper"),
            ("a.io", "docker-credential-ferry-test-absent-store"),
        ] {
            let e = c.for_host(host).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "credential helper {helper} for {host}: cannot run it"
                )),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        // Asked once per host: the answer is kept.
        assert_eq!(c.answers.lock().unwrap().len(), 2);
        assert_eq!(helper_server("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(helper_server("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn user_flags_are_host_equals_user_and_name_a_host_once() {
        let mut c = Credentials::load(&["c.io=carol:pw".into()]).unwrap();
        c.add_login("d.io=dave", "pw:with:colons".into()).unwrap();
        let d = c.for_host("d.io").unwrap().unwrap();
        assert_eq!(
            (d.user.as_str(), d.password.as_str()),
            ("dave", "pw:with:colons")
        );
        assert!(matches!(
            c.add_login("c.io=carol", "pw".into()),
            Err(CredentialError::Login(_))
        ));
        for bad in ["e.io", "=u", "e.io=", "e.io=u:p"] {
            assert!(
                matches!(c.add_login(bad, "pw".into()), Err(CredentialError::User(_))),
                "{bad}"
            );
        }
    }
}
