//! Rendering: pure functions from the inventory and the bundle's contents to the
//! files a node gets, one module per kind of file. Nothing here touches a host;
//! `plan` writes what these return.

pub mod addons;
pub mod containerd;
pub mod etcd;
pub mod ha;
pub mod host;
pub mod kubeadm;
pub mod services;

use std::collections::BTreeMap;

/// A node's files: path under the node's root (no leading `/`) -> bytes and mode.
pub type Tree = BTreeMap<String, (Vec<u8>, u32)>;

/// An address as the host part of a URL (`[::1]` for IPv6).
pub fn host(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// Adds a text file with mode 0644.
pub fn put(tree: &mut Tree, path: &str, text: String) {
    tree.insert(path.to_string(), (text.into_bytes(), 0o644));
}
