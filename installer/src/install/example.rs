//! The commented example inventory `ferry-installer init-cluster` writes: every
//! field, what it means and its default, for a cluster of N nodes, named after
//! the file it goes to.

use std::path::Path;

use super::inventory::valid_cluster_name;

/// The name `init-cluster` gives a cluster whose inventory is `output`: the
/// file's stem (`lab.toml`: `lab`), so that inventories side by side get state
/// directories of their own (`NAME.state`); [`DEFAULT_NAME`] for `cluster.toml`,
/// the default file, which says nothing of which cluster it is, and for a stem no
/// cluster may be named (`Site_A.toml`).
pub fn name_for(output: &Path) -> &str {
    match output.file_stem().and_then(|s| s.to_str()) {
        Some(stem) if stem != "cluster" && valid_cluster_name(stem) => stem,
        _ => DEFAULT_NAME,
    }
}

/// The name of a cluster nothing else names.
pub const DEFAULT_NAME: &str = "ferry";

/// The example `cluster.toml` for `nodes` nodes, named [`DEFAULT_NAME`].
pub fn example(nodes: usize) -> String {
    named(nodes, DEFAULT_NAME, Path::new("cluster.toml"))
}

/// The example inventory for `nodes` nodes, of the cluster `name`, to be written
/// to `output` (which its comments name): one node holds every role; from three
/// on, three control planes (also the etcd members) behind a VIP, the rest
/// workers.
pub fn named(nodes: usize, name: &str, output: &Path) -> String {
    let nodes = nodes.max(1);
    let ha = nodes >= 3;
    // 192.168.10.11 on, 250 addresses a /24, so any size gives valid addresses.
    let address = |i: usize| {
        let k = 10 + i;
        format!("192.168.{}.{}", 10 + k / 250, 1 + k % 250)
    };
    let endpoint = if ha {
        "192.168.10.10:6443".to_string()
    } else {
        format!("{}:6443", address(0))
    };
    let mut out = format!(
        r#"# The cluster inventory of ferry-installer: what `plan` renders for every node and
# `install` applies. Written by `ferry-installer init-cluster --nodes {nodes}`; edit the
# addresses, names and SSH access, then run:
#
#   ferry-installer plan {file} --store /var/lib/ferry/store --out plan/
#
# The cluster's name (lowercase letters, digits and '-'). Its state (CAs, keys,
# bootstrap token), made by the first plan and reused, is kept in {name}.state
# beside this file unless plan and install are given --state; the state records
# this name and control_plane_endpoint, and refuses another cluster's.
name = "{name}"

[kubernetes]
# host:port of the API server: the VIP with [ha] haproxy-keepalived, else the
# first control plane's address.
control_plane_endpoint = "{endpoint}"
# The pod and service networks (kubespray's defaults); they must not overlap each
# other nor hold a node's address or the VIP.
pod_cidr = "10.233.64.0/18"
service_cidr = "10.233.0.0/18"
dns_domain = "cluster.local"
# kube-proxy mode: "ipvs" (default) or "iptables".
proxy_mode = "ipvs"
# The CNI: "calico".
cni = "calico"
# The pods' MTU (Calico's veth_mtu): 0 lets Calico detect it from the nodes' own
# interfaces (its default); set it when an overlay or tunnel eats into the MTU.
cni_mtu = 0

[registry]
# The site registry (ferry-installer serve over the unpacked bundle) runs on this
# node, on this port, with TLS from the site CA...
node = "{first}"
port = 5000
# ...or use a registry the site already runs (Harbor, registry:2) instead of
# `node`, with the CA that signs its certificate:
# url = "https://harbor.site.lan/k8s"
# ca = "/etc/ssl/site-ca.pem"

[ha]
# "haproxy-keepalived": every control plane runs haproxy in front of all
# apiservers and keepalived holds the VIP; "none" for one control plane.
mode = "{mode}"
"#,
        file = output.display(),
        first = if ha { "master1" } else { "node1" },
        mode = if ha { "haproxy-keepalived" } else { "none" },
    );
    if ha {
        out.push_str(
            r#"# The virtual IP keepalived holds (free, outside the cluster networks), the
# interface it lives on, and the VRRP router id (1-255, unique on the segment).
vip = "192.168.10.10"
interface = "eth0"
virtual_router_id = 51
"#,
        );
    } else {
        out.push_str(
            "# vip = \"192.168.10.10\"\n# interface = \"eth0\"\n# virtual_router_id = 51\n",
        );
    }
    out.push_str(
        r#"
# Every node: name (as Kubernetes will know it), address, roles (any mix of
# "control-plane", "etcd", "worker"; an odd number of etcd members; a control plane
# that is also a worker runs workloads, one that is not keeps kubeadm's NoSchedule
# taint; at least one worker), arch ("amd64" or "arm64"), and SSH access (user,
# default root; port, default 22; key, default: the SSH client's own). A node
# whose address is this host is installed locally.
"#,
    );
    for i in 0..nodes {
        let (name, roles) = if !ha {
            match i {
                0 if nodes == 1 => (
                    "node1".to_string(),
                    r#"["control-plane", "etcd", "worker"]"#,
                ),
                0 => ("node1".to_string(), r#"["control-plane", "etcd"]"#),
                _ => (format!("worker{i}"), r#"["worker"]"#),
            }
        } else if i < 3 && nodes == 3 {
            // No node is left for workloads: the control planes take them.
            (
                format!("master{}", i + 1),
                r#"["control-plane", "etcd", "worker"]"#,
            )
        } else if i < 3 {
            (format!("master{}", i + 1), r#"["control-plane", "etcd"]"#)
        } else {
            (format!("worker{}", i - 2), r#"["worker"]"#)
        };
        out.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\naddress = \"{}\"\nroles = {roles}\narch = \"amd64\"\nssh = {{ user = \"root\", port = 22 }}\n",
            address(i)
        ));
    }
    out
}
