//! A cluster's state directory (`NAME.state` beside the inventory, or `--state`):
//! the CAs, keys and bootstrap token `plan` makes once and reuses, the last plan
//! and the install logs, and `cluster`, the record of which cluster they belong
//! to.
//!
//! Reusing another cluster's state would give a new cluster that cluster's CA,
//! keys and token without a word, so `plan` and `install` check the record before
//! anything in the state is made or changed ([`State::open`]), and write it when
//! the state is first used ([`State::claim`]). The record holds what stays the
//! same for the life of a cluster and sets it apart from its neighbours: its name
//! (kubeadm's `clusterName`, etcd's cluster token) and its
//! `control_plane_endpoint` (where kubeadm's certificates, kubeconfigs and every
//! join point). Nodes are not in it: control planes and workers come and go while
//! the CAs stay.
//!
//! ```text
//! STATE/
//!   cluster          name and control_plane_endpoint, TOML (this module)
//!   pki/             the cluster PKI (crate::pki::cluster)
//!   bootstrap-token  registry/  plan/  logs/
//! ```
//!
//! A state an older ferry made has no record: it is adopted (the record written)
//! rather than refused.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use ferry::toml_file::{self, TomlError};
use serde::{Deserialize, Serialize};

use super::inventory::Inventory;

/// The record's file name inside the state directory.
pub const RECORD: &str = "cluster";

/// Which cluster a state directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    pub control_plane_endpoint: String,
}

impl Identity {
    /// The identity of the cluster `inventory` describes.
    pub fn of(inventory: &Inventory) -> Identity {
        Identity {
            name: inventory.name.clone(),
            control_plane_endpoint: inventory.kubernetes.control_plane_endpoint.clone(),
        }
    }

    /// What differs from `other` (the inventory's), each as `field A, but FILE has
    /// B`; empty when both are the same cluster. Endpoints are compared as
    /// addresses, so `[fd00::1]:6443` and `[fd00:0::1]:6443` are one.
    fn differences(&self, other: &Identity, inventory: &Path) -> Vec<String> {
        let file = inventory.display();
        let mut out = Vec::new();
        if self.name != other.name {
            out.push(format!(
                "name {:?}, but {file} has {:?}",
                self.name, other.name
            ));
        }
        if endpoint_key(&self.control_plane_endpoint) != endpoint_key(&other.control_plane_endpoint)
        {
            out.push(format!(
                "control_plane_endpoint {}, but {file} has {}",
                self.control_plane_endpoint, other.control_plane_endpoint
            ));
        }
        out
    }
}

/// `host:port` in one spelling: an address host as its canonical text, a name in
/// lowercase.
fn endpoint_key(endpoint: &str) -> String {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    };
    format!("{host}:{port}")
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state was made for another cluster.
    #[error(
        "the state {state} holds the CAs, keys and token of another cluster ({differs}): give {inventory} a state of its own ({remedy}), or delete {record} if it is the same cluster",
        state = state.display(),
        inventory = inventory.display(),
        record = state.join(RECORD).display(),
        differs = differs.join("; "),
    )]
    Another {
        state: PathBuf,
        inventory: PathBuf,
        differs: Vec<String>,
        /// How to give the inventory its own state.
        remedy: &'static str,
    },
    #[error("another plan, install or reset is using {}: wait for it to end", state.display())]
    Busy { state: PathBuf },
    #[error(transparent)]
    Record(#[from] TomlError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the state records the nodes `reset` has reset and not installed again.
const RESET: &str = "reset";

/// Where the state records the control plane that ran `kubeadm init`, and keeps
/// the bootstrap token and the addons (see [`first_control_plane`]).
const FIRST: &str = "first-control-plane";

/// Records that `node` was reset. If it was the first control plane, the cluster
/// lives on in the others, and another takes that part: `kubeadm init` on the
/// reset one would start a second cluster beside the live one.
pub fn record_reset(dir: &Path, node: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let path = dir.join(RESET).join(node);
    std::fs::create_dir_all(dir.join(RESET))
        .and_then(|()| std::fs::write(&path, b""))
        .with_context(|| format!("recording the reset in {}", path.display()))?;
    let _ = std::fs::remove_file(dir.join(INSTALLED_AT).join(node));
    if first_recorded(dir).as_deref() == Some(node) {
        let first = dir.join(FIRST);
        std::fs::remove_file(&first).with_context(|| format!("removing {}", first.display()))?;
    }
    Ok(())
}

/// Where the state records the address each installed node was installed at.
const INSTALLED_AT: &str = "installed-at";

/// Records that `node` is installed, at `address`, and forgets a reset of it.
/// Best effort: the record only feeds a warning ([`moved_addresses`]).
pub fn installed(dir: &Path, node: &str, address: IpAddr) {
    let _ = std::fs::remove_file(dir.join(RESET).join(node));
    let _ = std::fs::create_dir_all(dir.join(INSTALLED_AT))
        .and_then(|()| std::fs::write(dir.join(INSTALLED_AT).join(node), address.to_string()));
}

/// The nodes of `inventory` installed at another address than it gives them now:
/// `(node, installed at)`. kubeadm keeps the address a node joined with, so the
/// new one takes effect only once the node is reset and joined again.
pub fn moved_addresses(dir: &Path, inventory: &Inventory) -> Vec<(String, IpAddr)> {
    inventory
        .nodes
        .iter()
        .filter_map(|n| {
            let then: IpAddr = std::fs::read_to_string(dir.join(INSTALLED_AT).join(&n.name))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (then != n.address).then(|| (n.name.clone(), then))
        })
        .collect()
}

fn first_recorded(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(FIRST)).ok()?;
    Some(text.trim().to_string()).filter(|n| !n.is_empty())
}

/// The control plane (of `control_planes`, in inventory order) that plans
/// `kubeadm init` (a no-op once the cluster is there), renews the bootstrap
/// token and applies the addons: the one recorded, while it has not been reset;
/// else the first not reset (the first of all when every one was: the cluster
/// is made anew). Recorded for the next plans.
pub fn first_control_plane(dir: &Path, control_planes: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let reset: std::collections::BTreeSet<String> = std::fs::read_dir(dir.join(RESET))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let live: Vec<&str> = control_planes
        .iter()
        .copied()
        .filter(|n| !reset.contains(*n))
        .collect();
    let recorded = first_recorded(dir);
    let first = recorded
        .clone()
        .filter(|r| live.contains(&r.as_str()))
        .or_else(|| live.first().map(|n| n.to_string()))
        .unwrap_or_else(|| control_planes[0].to_string());
    if recorded.as_deref() != Some(first.as_str()) {
        let path = dir.join(FIRST);
        std::fs::write(&path, format!("{first}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(first)
}

/// The state's lock file (see [`State::lock`]).
const LOCK: &str = ".lock";

/// A state held by one command ([`State::lock`]) while this lives.
#[must_use = "the state is held only while this lives"]
pub struct StateLock(#[allow(dead_code)] std::fs::File);

/// What the state directory was when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Missing or empty: a new cluster's.
    New,
    /// Recorded as this cluster's.
    Ours,
    /// Used, without a record: an older ferry made it.
    Unrecorded,
}

/// A state directory checked against an inventory.
#[derive(Debug)]
pub struct State {
    pub dir: PathBuf,
    pub identity: Identity,
    pub found: Found,
}

impl State {
    /// Checks `dir` against the cluster of `inventory` (read from `inventory_path`,
    /// which errors name), changing nothing. `given`: whether the user named the
    /// directory (`--state`), for the remedy a refusal suggests.
    pub fn open(
        dir: &Path,
        inventory_path: &Path,
        inventory: &Inventory,
        given: bool,
    ) -> Result<State, StateError> {
        let identity = Identity::of(inventory);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let record = dir.join(RECORD);
        let found = match std::fs::read_to_string(&record) {
            Ok(text) => {
                let recorded: Identity = toml_file::parse(&record, &text)?;
                let differs = recorded.differences(&identity, inventory_path);
                if !differs.is_empty() {
                    return Err(StateError::Another {
                        state: dir.to_path_buf(),
                        inventory: inventory_path.to_path_buf(),
                        differs,
                        remedy: if given {
                            "another --state DIR"
                        } else {
                            "--state DIR, or a different name"
                        },
                    });
                }
                Found::Ours
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_dir(dir) {
                Ok(mut entries) => {
                    // The lock file of a run that made nothing else is no content.
                    if entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK)) {
                        Found::Unrecorded
                    } else {
                        Found::New
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::New,
                Err(e) => return Err(io(dir)(e)),
            },
            Err(e) => return Err(io(&record)(e)),
        };
        Ok(State {
            dir: dir.to_path_buf(),
            identity,
            found,
        })
    }

    /// Holds the state for this command alone: two plans at once would make two
    /// different CAs into the same files, and two installs would drive the same
    /// nodes. A second one is refused rather than made to wait without a word.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        self.make_dir()?;
        let path = self.dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy {
                state: self.dir.clone(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// Makes the state's directory, 0700: it holds keys.
    fn make_dir(&self) -> Result<(), StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// Records the cluster in the state (making the directory, 0700: it will hold
    /// keys) unless it is recorded already. Called once everything that can be
    /// checked without touching the state has been.
    pub fn claim(&self) -> Result<(), StateError> {
        if self.found == Found::Ours {
            return Ok(());
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        self.make_dir()?;
        let text = format!(
            "# The cluster this state (its CAs, keys and bootstrap token) belongs to:\n\
             # ferry-installer plan and install refuse an inventory of another cluster.\n{}",
            toml::to_string(&self.identity).expect("two strings serialise")
        );
        // Written whole or not at all: a torn record would refuse the cluster itself.
        let record = self.dir.join(RECORD);
        let tmp = self
            .dir
            .join(format!(".{RECORD}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &record).map_err(io(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, endpoint: &str) -> Identity {
        Identity {
            name: name.into(),
            control_plane_endpoint: endpoint.into(),
        }
    }

    #[test]
    fn a_node_installed_at_another_address_is_found_until_it_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::parse(
            Path::new("cluster.toml"),
            &super::super::example::example(4),
        )
        .unwrap();
        let worker = &inv.nodes[3];
        installed(dir.path(), &worker.name, worker.address);
        assert!(moved_addresses(dir.path(), &inv).is_empty());
        let then: IpAddr = "192.168.10.99".parse().unwrap();
        installed(dir.path(), &worker.name, then);
        assert_eq!(
            moved_addresses(dir.path(), &inv),
            [(worker.name.clone(), then)]
        );
        record_reset(dir.path(), &worker.name).unwrap();
        assert!(moved_addresses(dir.path(), &inv).is_empty());
    }

    #[test]
    fn an_endpoint_spelled_another_way_is_the_same_cluster() {
        let inv = Path::new("c.toml");
        let a = identity("a", "[fd00:0::1]:6443");
        assert!(a
            .differences(&identity("a", "[fd00::1]:6443"), inv)
            .is_empty());
        assert!(identity("a", "API.lan:6443")
            .differences(&identity("a", "api.lan:6443"), inv)
            .is_empty());
        let other = a.differences(&identity("b", "[fd00::1]:443"), inv);
        assert_eq!(
            other,
            [
                "name \"a\", but c.toml has \"b\"",
                "control_plane_endpoint [fd00:0::1]:6443, but c.toml has [fd00::1]:443"
            ]
        );
    }
}
