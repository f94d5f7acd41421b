//! kubeadm's configuration (API `kubeadm.k8s.io/v1beta4`, the one 1.31 uses): on the
//! first control plane InitConfiguration + ClusterConfiguration, with the
//! KubeletConfiguration and KubeProxyConfiguration every node shares; on the other
//! nodes a JoinConfiguration (with `controlPlane` on control planes) that finds the
//! cluster by the bootstrap token and the CA's public-key hash. etcd is external
//! (the members `plan` renders); images keep their upstream names
//! (`imageRepository: registry.k8s.io`, which containerd's hosts.toml sends to the
//! site registry); keys are ECDSA P-256, as the CAs `plan` makes.

use std::net::IpAddr;

use super::addons::NODE_LOCAL_DNS;
use super::{host, put, Tree};
use crate::install::inventory::{Node, Role};

/// What every node's kubeadm configuration shares.
pub struct Cluster<'a> {
    pub name: &'a str,
    /// `v1.31.14`.
    pub version: &'a str,
    pub endpoint: &'a str,
    pub pod_cidr: &'a str,
    pub service_cidr: &'a str,
    pub dns_domain: &'a str,
    pub ipvs: bool,
    /// `abcdef.0123456789abcdef`.
    pub token: &'a str,
    /// `sha256:<hex>` of the cluster CA's public key.
    pub ca_hash: &'a str,
    pub etcd: &'a [IpAddr],
    /// The VIP (if any) and every control plane's name and address.
    pub cert_sans: &'a [String],
    /// Whether each apiserver binds only its node's address: haproxy holds the
    /// endpoint (VIP:port) on the same hosts, so the wildcard is not free.
    pub bind_node_address: bool,
}

/// The step that makes the first control plane (done once: kubeadm init leaves
/// admin.conf).
pub const INIT: &str = "test -f /etc/kubernetes/admin.conf || kubeadm init --config /etc/kubernetes/ferry/kubeadm-init.yaml";
/// The step that joins any other node (done once: a joined kubelet has
/// kubelet.conf).
pub const JOIN: &str = "test -f /etc/kubernetes/kubelet.conf || kubeadm join --config /etc/kubernetes/ferry/kubeadm-join.yaml";

/// The step on the first control plane that makes the bootstrap token valid
/// for joins again (it lives 24 hours from `kubeadm init`): the same token (the
/// join configurations name it), deleted if it still exists and created anew.
pub fn token_refresh(token: &str) -> String {
    let id = token.split('.').next().unwrap_or(token);
    format!(
        "kubeadm token delete {id} --kubeconfig /etc/kubernetes/admin.conf >/dev/null 2>&1; kubeadm token create {token} --ttl 24h0m0s --kubeconfig /etc/kubernetes/admin.conf"
    )
}

/// Where the kubeadm patches of a control plane live.
const PATCHES: &str = "etc/kubernetes/ferry/patches";

/// The `patches` stanza of a control plane's Init/JoinConfiguration (indented by
/// `indent`), and the patch it names: kubeadm's own way to give one node's static
/// pod a flag (`kube-apiserver0+json.json`, a JSON patch on its manifest).
fn bind_patch(c: &Cluster<'_>, me: &Node, indent: &str, tree: &mut Tree) -> String {
    if !c.bind_node_address {
        return String::new();
    }
    put(
        tree,
        &format!("{PATCHES}/kube-apiserver0+json.json"),
        format!(
            "[{{\"op\": \"add\", \"path\": \"/spec/containers/0/command/-\", \"value\": \"--bind-address={}\"}}]\n",
            me.address
        ),
    );
    format!("{indent}patches:\n{indent}  directory: /{PATCHES}\n")
}

fn components(c: &Cluster<'_>) -> String {
    format!(
        r#"---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
serializeImagePulls: false
serverTLSBootstrap: true
clusterDNS:
  - {NODE_LOCAL_DNS}
clusterDomain: {domain}
evictionHard:
  memory.available: 300Mi
  nodefs.available: "10%"
  imagefs.available: "15%"
  nodefs.inodesFree: "5%"
kubeReserved:
  cpu: 500m
  memory: 1000Mi
  pid: "1000"
systemReserved:
  cpu: 500m
  memory: 1000Mi
  pid: "1000"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: {mode}
ipvs:
  strictARP: true
clusterCIDR: {pods}
"#,
        domain = c.dns_domain,
        mode = if c.ipvs { "ipvs" } else { "iptables" },
        pods = c.pod_cidr
    )
}

fn node_registration(me: &Node) -> String {
    // kubeadm v1beta4 NodeRegistrationOptions.taints: "If this field is unset,
    // i.e. nil, it will be defaulted with a control-plane taint for control-plane
    // nodes. If you don't want to taint your control-plane node, set this field to
    // an empty list, i.e. `taints: []` in the YAML file." (kubeadm-config.v1beta4)
    let taints = if me.has(Role::ControlPlane) && me.has(Role::Worker) {
        "  taints: []\n"
    } else {
        ""
    };
    format!(
        "nodeRegistration:\n  name: {}\n  criSocket: unix:///run/containerd/containerd.sock\n{taints}  kubeletExtraArgs:\n    - name: node-ip\n      value: \"{}\"\n",
        me.name, me.address
    )
}

/// The first control plane's `kubeadm init` configuration.
pub fn init(c: &Cluster<'_>, me: &Node, tree: &mut Tree) {
    let endpoints: Vec<String> = c
        .etcd
        .iter()
        .map(|a| format!("    - https://{}:2379", host(*a)))
        .collect();
    let sans: Vec<String> = c
        .cert_sans
        .iter()
        .map(|s| format!("    - \"{s}\""))
        .collect();
    let text = format!(
        r#"# Written by ferry-installer plan: kubeadm init --config this-file
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: "{token}"
    ttl: 24h0m0s
    usages: [signing, authentication]
    groups: [system:bootstrappers:kubeadm:default-node-token]
localAPIEndpoint:
  advertiseAddress: {addr}
  bindPort: 6443
{reg}{patches}---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: {name}
kubernetesVersion: {version}
controlPlaneEndpoint: "{endpoint}"
imageRepository: registry.k8s.io
encryptionAlgorithm: ECDSA-P256
certificatesDir: /etc/kubernetes/pki
networking:
  podSubnet: {pods}
  serviceSubnet: {services}
  dnsDomain: {domain}
etcd:
  external:
    endpoints:
{endpoints}
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
apiServer:
  certSANs:
{sans}
{components}"#,
        token = c.token,
        addr = me.address,
        reg = node_registration(me),
        patches = bind_patch(c, me, "", tree),
        name = c.name,
        version = c.version,
        endpoint = c.endpoint,
        pods = c.pod_cidr,
        services = c.service_cidr,
        domain = c.dns_domain,
        endpoints = endpoints.join("\n"),
        sans = sans.join("\n"),
        components = components(c)
    );
    // It holds the bootstrap token: readable by root alone.
    tree.insert(
        "etc/kubernetes/ferry/kubeadm-init.yaml".into(),
        (text.into_bytes(), 0o600),
    );
}

/// Another node's `kubeadm join` configuration (`controlPlane` on a control plane).
/// (The kubelet and kube-proxy configurations come from the cluster on join.)
pub fn join(c: &Cluster<'_>, me: &Node, tree: &mut Tree) {
    let control_plane = me.has(Role::ControlPlane);
    let cp = if control_plane {
        format!(
            "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {}\n    bindPort: 6443\n{}",
            me.address,
            bind_patch(c, me, "", tree)
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"# Written by ferry-installer plan: kubeadm join --config this-file
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "{endpoint}"
    token: "{token}"
    caCertHashes:
      - "{hash}"
{reg}{cp}"#,
        endpoint = c.endpoint,
        token = c.token,
        hash = c.ca_hash,
        reg = node_registration(me),
    );
    // It holds the bootstrap token: readable by root alone.
    tree.insert(
        "etc/kubernetes/ferry/kubeadm-join.yaml".into(),
        (text.into_bytes(), 0o600),
    );
}
