//! The cluster inventory, `cluster.toml`: the cluster's name and networks, where
//! the site registry runs, how the API is made highly available, and every node
//! with its address, roles, architecture and SSH access. Parsing checks everything
//! that can be checked without the bundle; each refusal is one line naming the
//! file, the node and the field.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ferry::toml_file::{self, TomlError};
use ipnet::IpNet;
use serde::Deserialize;

/// A parsed, checked inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub name: String,
    pub kubernetes: Kubernetes,
    pub registry: RegistryPlace,
    pub ha: Ha,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// `host:port` of the API: the VIP, or the first control plane's address.
    pub control_plane_endpoint: String,
    #[serde(default = "default_pod_cidr", deserialize_with = "cidr")]
    pub pod_cidr: IpNet,
    #[serde(default = "default_service_cidr", deserialize_with = "cidr")]
    pub service_cidr: IpNet,
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
    #[serde(default)]
    pub proxy_mode: ProxyMode,
    #[serde(default)]
    pub cni: Cni,
    /// The pods' MTU; 0: the CNI detects it.
    #[serde(default)]
    pub cni_mtu: u32,
}

impl Kubernetes {
    /// `control_plane_endpoint` as host and port (`None` when it is not host:port).
    pub fn endpoint(&self) -> Option<(&str, u16)> {
        let (h, p) = self.control_plane_endpoint.rsplit_once(':')?;
        Some((h, p.parse().ok()?)).filter(|(h, _)| !h.is_empty())
    }
}

// kubespray's defaults (roles/kubespray_defaults/defaults/main/main.yml:
// kube_pods_subnet, kube_service_addresses, dns_domain).
fn default_pod_cidr() -> IpNet {
    "10.233.64.0/18".parse().expect("a valid CIDR")
}
fn default_service_cidr() -> IpNet {
    "10.233.0.0/18".parse().expect("a valid CIDR")
}
fn default_dns_domain() -> String {
    "cluster.local".into()
}

/// A CIDR, refused with its text (serde's own message, "invalid IP address
/// syntax", blames the address for a bad prefix length).
fn cidr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a network such as 10.233.64.0/18 or fd00:10::/64"
        ))
    })
}

/// An IP address, refused with its text.
fn ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an IP address")))
}

fn optional_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    ip(d).map(Some)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Ipvs,
    Iptables,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    #[default]
    Calico,
}

/// Where the site registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPlace {
    /// `ferry-installer serve` on one of the nodes.
    Node { node: String, port: u16 },
    /// A registry the site already runs (Harbor, registry:2), and the CA it uses.
    External { url: String, ca: Option<PathBuf> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha {
    pub mode: HaMode,
    pub vip: Option<IpAddr>,
    pub interface: Option<String>,
    pub virtual_router_id: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum HaMode {
    /// Every control plane runs haproxy in front of all apiservers; keepalived
    /// holds the VIP.
    #[serde(rename = "haproxy-keepalived")]
    HaproxyKeepalived,
    #[default]
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Etcd,
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::ControlPlane => "control-plane",
            Role::Etcd => "etcd",
            Role::Worker => "worker",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub key: Option<PathBuf>,
}

fn default_user() -> String {
    "root".into()
}
fn default_port() -> u16 {
    22
}

impl Default for Ssh {
    fn default() -> Ssh {
        Ssh {
            user: default_user(),
            port: default_port(),
            key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
    pub roles: Vec<Role>,
    /// `amd64` or `arm64`, as Go and Kubernetes spell it.
    pub arch: String,
    pub ssh: Ssh,
    /// Per-node overrides (kubelet and host settings), kept for the renderers.
    pub overrides: BTreeMap<String, toml::Value>,
}

impl Node {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The ports the cluster's own services take on this node, by what takes them
    /// (kubeadm 1.31's defaults; the site registry's port aside).
    pub fn service_ports(&self) -> Vec<(u16, &'static str)> {
        let mut out = vec![(10250, "the kubelet"), (10256, "kube-proxy")];
        if self.has(Role::ControlPlane) {
            out.extend([
                (6443, "kube-apiserver"),
                (10257, "kube-controller-manager"),
                (10259, "kube-scheduler"),
            ]);
        }
        if self.has(Role::Etcd) {
            out.extend([(2379, "etcd (clients)"), (2380, "etcd (peers)")]);
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Toml(#[from] TomlError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    name: String,
    kubernetes: Kubernetes,
    registry: RawRegistry,
    #[serde(default)]
    ha: RawHa,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    node: Option<String>,
    #[serde(default = "default_registry_port")]
    port: u16,
    url: Option<String>,
    ca: Option<PathBuf>,
}

fn default_registry_port() -> u16 {
    5000
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHa {
    #[serde(default)]
    mode: HaMode,
    #[serde(default, deserialize_with = "optional_ip")]
    vip: Option<IpAddr>,
    interface: Option<String>,
    virtual_router_id: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    #[serde(deserialize_with = "ip")]
    address: IpAddr,
    roles: Vec<Role>,
    #[serde(default = "default_arch")]
    arch: String,
    #[serde(default)]
    ssh: Ssh,
    #[serde(default)]
    overrides: BTreeMap<String, toml::Value>,
}

fn default_arch() -> String {
    "amd64".into()
}

/// A node name as Kubernetes takes it (an RFC 1123 DNS label, lowercase).
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` may be a cluster's name (the inventory's `name`): a node
/// name's rules, as it names the state directory and kubeadm's `clusterName`.
pub fn valid_cluster_name(name: &str) -> bool {
    valid_node_name(name)
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Inventory {
    /// Reads and checks the inventory at `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        Inventory::parse(path, &toml_file::read(path, "inventory")?)
    }

    /// Parses and checks inventory text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
        let raw: RawInventory = toml_file::parse(path, text)?;
        let invalid = |message: String| InventoryError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if !valid_cluster_name(&raw.name) {
            return Err(invalid(format!(
                "name {:?}: a cluster name is lowercase letters, digits and '-'",
                raw.name
            )));
        }
        let k = &raw.kubernetes;
        for (field, net) in [("pod_cidr", &k.pod_cidr), ("service_cidr", &k.service_cidr)] {
            if net.trunc() != *net {
                return Err(invalid(format!(
                    "kubernetes: {field} {net} has host bits set: the network is {}",
                    net.trunc()
                )));
            }
        }
        if overlap(&k.pod_cidr, &k.service_cidr) {
            return Err(invalid(format!(
                "kubernetes: pod_cidr {} and service_cidr {} overlap",
                k.pod_cidr, k.service_cidr
            )));
        }
        let (endpoint_host, _) = k.endpoint().ok_or_else(|| {
            invalid(format!(
                "kubernetes: control_plane_endpoint {:?} must be host:port, e.g. 192.168.10.10:6443",
                k.control_plane_endpoint
            ))
        })?;

        let mut nodes: Vec<Node> = Vec::new();
        let mut addresses = HashSet::new();
        for n in raw.nodes {
            let who = format!("node {}", n.name);
            if !valid_node_name(&n.name) {
                return Err(invalid(format!(
                    "node {:?}: name must be lowercase letters, digits and '-' (63 at most), as Kubernetes takes it",
                    n.name
                )));
            }
            if nodes.iter().any(|m| m.name == n.name) {
                return Err(invalid(format!("{who}: name is used by two nodes")));
            }
            if !addresses.insert(n.address) {
                let other = nodes.iter().find(|m| m.address == n.address).expect("seen");
                return Err(invalid(format!(
                    "{who}: address {} is also node {}'s",
                    n.address, other.name
                )));
            }
            for net in [&k.pod_cidr, &k.service_cidr] {
                if net.contains(&n.address) {
                    return Err(invalid(format!(
                        "{who}: address {} falls inside {net}, a cluster network",
                        n.address
                    )));
                }
            }
            if n.roles.is_empty() {
                return Err(invalid(format!(
                    "{who}: roles is empty: give control-plane, etcd and/or worker"
                )));
            }
            if n.ssh.port == 0 {
                return Err(invalid(format!("{who}: ssh port 0 is not a port")));
            }
            if !matches!(n.arch.as_str(), "amd64" | "arm64") {
                return Err(invalid(format!(
                    "{who}: arch {:?} must be amd64 or arm64",
                    n.arch
                )));
            }
            let mut roles = n.roles;
            roles.sort();
            roles.dedup();
            nodes.push(Node {
                name: n.name,
                address: n.address,
                roles,
                arch: n.arch,
                ssh: n.ssh,
                overrides: n.overrides,
            });
        }
        // One address family: kubeadm's single-stack cluster takes its family from
        // the service network.
        let v4 = k.service_cidr.addr().is_ipv4();
        let family = |ip: &IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        let cluster_family = family(&k.service_cidr.addr());
        if k.pod_cidr.addr().is_ipv4() != v4 {
            return Err(invalid(format!(
                "kubernetes: pod_cidr {} is {}, service_cidr {} is {cluster_family}: give both in one family",
                k.pod_cidr,
                family(&k.pod_cidr.addr()),
                k.service_cidr
            )));
        }
        if let Some(n) = nodes.iter().find(|n| n.address.is_ipv4() != v4) {
            return Err(invalid(format!(
                "node {}: address {} is {}, but the cluster is {cluster_family} (service_cidr {}): give the node's {cluster_family} address",
                n.name,
                n.address,
                family(&n.address),
                k.service_cidr
            )));
        }
        let count = |r: Role| nodes.iter().filter(|n| n.has(r)).count();
        if count(Role::ControlPlane) == 0 {
            return Err(invalid(
                "no node has the control-plane role: give at least one".into(),
            ));
        }
        if count(Role::Worker) == 0 {
            return Err(invalid(
                "no node has the worker role: the addons (metrics-server and others) would have nowhere to run; add \"worker\" to the control planes' roles to run workloads on them".into(),
            ));
        }
        let etcd = count(Role::Etcd);
        if etcd == 0 || etcd % 2 == 0 {
            return Err(invalid(format!(
                "{etcd} nodes have the etcd role: etcd needs an odd number (1, 3, 5) to keep quorum"
            )));
        }

        let registry = match (raw.registry.node, raw.registry.url) {
            (Some(node), None) => {
                if !nodes.iter().any(|n| n.name == node) {
                    return Err(invalid(format!(
                        "registry: node {node:?} is not one of the nodes"
                    )));
                }
                if raw.registry.ca.is_some() {
                    return Err(invalid(
                        "registry: ca is for an existing registry (url); the site registry on a node uses the site CA".into(),
                    ));
                }
                let port = raw.registry.port;
                let on = nodes.iter().find(|n| n.name == node).expect("checked above");
                if let Some((_, what)) = on.service_ports().into_iter().find(|(p, _)| *p == port) {
                    return Err(invalid(format!(
                        "registry: port {port} on node {node} is {what}'s: choose another (the default is {})",
                        default_registry_port()
                    )));
                }
                if port == 0 {
                    return Err(invalid("registry: port 0 is not a port".into()));
                }
                RegistryPlace::Node {
                    node,
                    port: raw.registry.port,
                }
            }
            (None, Some(url)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(format!(
                        "registry: url {url:?} must start with https:// or http://"
                    )));
                }
                RegistryPlace::External {
                    url: url.trim_end_matches('/').to_string(),
                    ca: raw.registry.ca,
                }
            }
            _ => {
                return Err(invalid(
                    "registry: give either node (the site registry runs there) or url (an existing registry)".into(),
                ))
            }
        };

        let ha = Ha {
            mode: raw.ha.mode,
            vip: raw.ha.vip,
            interface: raw.ha.interface,
            virtual_router_id: raw.ha.virtual_router_id.unwrap_or(51),
        };
        if ha.mode == HaMode::HaproxyKeepalived {
            let vip = ha.vip.ok_or_else(|| {
                invalid(
                    "ha: mode haproxy-keepalived needs vip, the address keepalived holds".into(),
                )
            })?;
            if ha.interface.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    "ha: mode haproxy-keepalived needs interface, where the VIP lives (e.g. eth0)"
                        .into(),
                ));
            }
            if vip.is_ipv4() != v4 {
                return Err(invalid(format!(
                    "ha: vip {vip} is {}, but the cluster is {cluster_family}: give an {cluster_family} address of the nodes' network",
                    family(&vip)
                )));
            }
            if let Some(n) = nodes.iter().find(|n| n.address == vip) {
                return Err(invalid(format!(
                    "ha: vip {vip} is node {}'s address; the VIP must be free",
                    n.name
                )));
            }
            for net in [&k.pod_cidr, &k.service_cidr] {
                if net.contains(&vip) {
                    return Err(invalid(format!(
                        "ha: vip {vip} falls inside {net}, a cluster network"
                    )));
                }
            }
            if endpoint_host.trim_matches(['[', ']']) != vip.to_string() {
                return Err(invalid(format!(
                    "kubernetes: control_plane_endpoint {} should name the VIP {vip} when ha is haproxy-keepalived",
                    k.control_plane_endpoint
                )));
            }
        } else if let Some(vip) = ha.vip {
            return Err(invalid(format!(
                "ha: vip {vip} is given but mode is none: set mode = \"haproxy-keepalived\" or drop vip"
            )));
        }

        Ok(Inventory {
            name: raw.name,
            kubernetes: raw.kubernetes,
            registry,
            ha,
            nodes,
        })
    }

    /// The architectures its nodes run, sorted.
    pub fn arches(&self) -> Vec<&str> {
        let mut a: Vec<&str> = self.nodes.iter().map(|n| n.arch.as_str()).collect();
        a.sort();
        a.dedup();
        a
    }
}
