//! Repository names as clients send them, resolved to the names the store uses.
//!
//! The store names images by full upstream reference (`registry.k8s.io/pause:3.10`,
//! `docker.io/library/busybox:1.36`). Clients reach them three ways, all resolved
//! here to the same repository key (`registry.k8s.io/pause`):
//!
//! - `/v2/registry.k8s.io/pause/…`: the first component looks like a host, kept;
//! - `/v2/pause/…?ns=registry.k8s.io`: containerd talking to a mirror;
//! - `/v2/busybox/…`, `/v2/library/busybox/…`, `?ns=docker.io`: Docker Hub short
//!   names, normalised like docker does.
//!
//! Validation goes through [`ferry::Reference`], whose grammar has no `..`, no empty
//! component and no characters outside `[a-z0-9._-/]`, so a resolved name can never
//! address anything outside the store.

use ferry::Reference;

use super::error::{ApiError, Code};

/// registry:2 refuses repository names longer than this.
const MAX_NAME: usize = 255;

fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Resolves the `<name>` of a `/v2/<name>/…` path (and the `ns` query parameter,
/// if any) to the full repository name the store uses.
pub fn resolve(name: &str, ns: Option<&str>) -> Result<String, ApiError> {
    let invalid = |why: &str| ApiError::new(Code::NameInvalid).detail(format!("{name:?}: {why}"));
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid("a repository name has 1 to 255 characters"));
    }
    // A ':' or '@' here would be read as a tag or digest by the reference parser.
    if name.contains(['@', ':'])
        && !name
            .split_once('/')
            .is_some_and(|(first, rest)| looks_like_host(first) && !rest.contains([':', '@']))
    {
        return Err(invalid("a repository name has no ':' or '@'"));
    }
    let full = match ns {
        Some(ns) if !ns.is_empty() => {
            if !looks_like_host(ns) || ns.contains(['/', '@']) {
                return Err(invalid("ns must be a registry host"));
            }
            format!("{ns}/{name}")
        }
        _ => name.to_string(),
    };
    let r: Reference = full
        .parse()
        .map_err(|e: ferry::reference::ReferenceError| invalid(&e.reason))?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(invalid("a repository name has no tag or digest"));
    }
    Ok(r.name())
}

/// A tag, as `ferry::Reference` accepts it (so it can be stored as a reference name).
pub use ferry::reference::valid_tag;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_spellings_reach_the_same_repository() {
        let ok = |n, ns| resolve(n, ns).unwrap();
        assert_eq!(ok("registry.k8s.io/pause", None), "registry.k8s.io/pause");
        assert_eq!(
            ok("pause", Some("registry.k8s.io")),
            "registry.k8s.io/pause"
        );
        assert_eq!(ok("busybox", None), "docker.io/library/busybox");
        assert_eq!(ok("library/busybox", None), "docker.io/library/busybox");
        assert_eq!(
            ok("busybox", Some("docker.io")),
            "docker.io/library/busybox"
        );
        assert_eq!(
            ok("docker.io/library/busybox", None),
            "docker.io/library/busybox"
        );
        assert_eq!(ok("myteam/app", None), "docker.io/myteam/app");
        assert_eq!(ok("127.0.0.1:5000/x/y", None), "127.0.0.1:5000/x/y");
        assert_eq!(
            ok("coredns/coredns", Some("registry.k8s.io")),
            "registry.k8s.io/coredns/coredns"
        );
    }

    #[test]
    fn hostile_names_are_invalid() {
        for (n, ns) in [
            ("../../etc", None),
            ("a/../b", None),
            ("a//b", None),
            ("A", None),
            ("a:b", None),
            ("a@sha256:00", None),
            ("%2e%2e/x", None),
            ("x", Some("notahost")),
            ("x", Some("a.b/c")),
            ("", None),
        ] {
            let e = resolve(n, ns).unwrap_err();
            assert_eq!(e.code, Code::NameInvalid, "{n:?} {ns:?}");
        }
        assert!(resolve(&"a".repeat(300), None).is_err());
    }
}
