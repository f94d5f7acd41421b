//! Host tuning every node gets: kernel parameters, the modules to load at boot and
//! process limits, from kubespray's and kubeasz's defaults for Kubernetes nodes.

use super::{put, Tree};

/// `etc/sysctl.d/99-ferry-kubernetes.conf`: forwarding and bridged traffic for the
/// CNI, conntrack and socket backlogs for busy nodes, TCP keepalive suited to ipvs
/// (idle connections outlive ipvs' 900 s timeout otherwise), no swapping, and
/// neighbour tables sized for large clusters.
const SYSCTL: &str = "\
# Written by ferry-installer plan.
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.netfilter.nf_conntrack_max = 1000000
net.core.somaxconn = 32768
net.ipv4.tcp_max_syn_backlog = 8096
net.ipv4.tcp_tw_reuse = 1
net.ipv4.tcp_keepalive_time = 600
net.ipv4.tcp_keepalive_intvl = 30
net.ipv4.tcp_keepalive_probes = 10
vm.swappiness = 0
vm.max_map_count = 655360
fs.file-max = 6553600
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 1048576
net.ipv4.neigh.default.gc_thresh1 = 4096
net.ipv4.neigh.default.gc_thresh2 = 8192
net.ipv4.neigh.default.gc_thresh3 = 16384
";

/// `etc/modules-load.d/ferry-kubernetes.conf`: overlayfs for containerd,
/// br_netfilter for the bridge sysctls, ipvs and its schedulers for kube-proxy.
const MODULES: &str = "\
# Written by ferry-installer plan.
overlay
br_netfilter
ip_vs
ip_vs_rr
ip_vs_wrr
ip_vs_sh
nf_conntrack
";

/// `etc/security/limits.d/99-ferry.conf`.
const LIMITS: &str = "\
# Written by ferry-installer plan.
*    soft nofile 1048576
*    hard nofile 1048576
*    soft nproc  unlimited
*    hard nproc  unlimited
root soft nofile 1048576
root hard nofile 1048576
";

/// The host tuning files.
pub fn render(tree: &mut Tree) {
    put(tree, "etc/sysctl.d/99-ferry-kubernetes.conf", SYSCTL.into());
    put(
        tree,
        "etc/modules-load.d/ferry-kubernetes.conf",
        MODULES.into(),
    );
    put(tree, "etc/security/limits.d/99-ferry.conf", LIMITS.into());
}

/// The steps that make the tuning take effect now, before anything needs it.
pub fn steps() -> Vec<String> {
    vec![
        "swapoff -a".into(),
        "sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@# \\1@' /etc/fstab".into(),
        "systemctl restart systemd-modules-load.service".into(),
        "sysctl --system".into(),
    ]
}
