//! Credentials: an htpasswd file of bcrypt hashes (`htpasswd -Bbn user password`),
//! checked against HTTP Basic auth. Pushes always need valid credentials; pulls
//! need them only with `--auth-pull`.
//!
//! bcrypt is deliberately slow (tens of ms per check), and a push sends the same
//! credentials with every request, so a successful check is remembered as a
//! SHA-256 of `user:password` for the life of the process.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read htpasswd file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} line {line}: expected user:bcrypt-hash (make it with `htpasswd -Bbn USER PASSWORD`)")]
    Malformed { path: String, line: usize },
    #[error("{path} line {line}: user {user}'s hash is {kind}, not bcrypt: make it again with `htpasswd -Bbn {user} PASSWORD` (registry:2 takes bcrypt alone too)")]
    NotBcrypt {
        path: String,
        line: usize,
        user: String,
        kind: &'static str,
    },
    #[error("{path}: no users")]
    Empty { path: String },
}

/// The users allowed to push.
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
    /// Credentials were sent but are wrong.
    Rejected,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, AuthFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| AuthFileError::Read {
            path: p.clone(),
            error,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or(AuthFileError::Malformed {
                path: p.clone(),
                line: i + 1,
            })?;
            if user.is_empty() {
                return Err(AuthFileError::Malformed {
                    path: p.clone(),
                    line: i + 1,
                });
            }
            if !hash.starts_with("$2") {
                // The other schemes `htpasswd` makes, by their prefixes.
                let kind = match hash {
                    h if h.starts_with("$apr1$") => "MD5 (htpasswd -m, its default)",
                    h if h.starts_with("{SHA}") => "SHA-1 (htpasswd -s)",
                    h if h.starts_with("$5$") || h.starts_with("$6$") => "SHA-2 crypt",
                    _ => "plain text or crypt",
                };
                return Err(AuthFileError::NotBcrypt {
                    path: p.clone(),
                    line: i + 1,
                    user: user.to_string(),
                    kind,
                });
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(AuthFileError::Empty { path: p });
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Checks an `Authorization` header value. Runs bcrypt: call from a blocking task.
    pub fn check(&self, authorization: Option<&str>) -> Caller {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Caller::Anonymous;
        };
        let Some(hash) = self.users.get(&user) else {
            return Caller::Rejected;
        };
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}:{hash}")).into();
        if self.verified.lock().expect("auth cache").contains(&key) {
            return Caller::User(user);
        }
        if bcrypt::verify(&password, hash).unwrap_or(false) {
            let mut v = self.verified.lock().expect("auth cache");
            // Bounded: a flood of distinct valid passwords cannot exist, but be safe.
            if v.len() > 1024 {
                v.clear();
            }
            v.insert(key);
            Caller::User(user)
        } else {
            Caller::Rejected
        }
    }
}

/// `Basic base64(user:password)` -> (user, password). Empty credentials (which
/// containers/image sends when it has none) count as none.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    if u.is_empty() && p.is_empty() {
        return None;
    }
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_users_are_checked() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let f = std::env::temp_dir().join(format!("ferry-htpasswd-{}", std::process::id()));
        std::fs::write(&f, format!("alice:{hash}\n")).unwrap();
        let h = Htpasswd::load(&f).unwrap();
        std::fs::remove_file(&f).unwrap();
        let basic = |u: &str, p: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {b}")
        };
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret"))),
            Caller::User("alice".into())
        );
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret"))),
            Caller::User("alice".into())
        );
        assert_eq!(h.check(Some(&basic("alice", "wrong"))), Caller::Rejected);
        assert_eq!(h.check(Some(&basic("bob", "s3cret"))), Caller::Rejected);
        assert_eq!(h.check(Some(&basic("", ""))), Caller::Anonymous);
        assert_eq!(h.check(None), Caller::Anonymous);
    }
}
