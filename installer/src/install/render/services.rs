//! systemd units every node or the registry node gets: the kubelet's unit and
//! kubeadm's drop-in (the ones kubernetes/release ships in its DEB packages,
//! `cmd/kubepkg/templates/latest/deb/kubelet/lib/systemd/system/kubelet.service` and
//! `deb/kubeadm/10-kubeadm.conf`, as the kubeadm documentation quotes them, with
//! the binary in /usr/local/bin where install puts it), and `ferry-registry.service`,
//! the site registry over the unpacked bundle.

use std::net::IpAddr;

use super::{put, Tree};

const KUBELET: &str = "\
# Written by ferry-installer plan (kubernetes/release's kubelet.service).
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
";

const KUBEADM_DROPIN: &str = "\
# Written by ferry-installer plan (kubernetes/release's 10-kubeadm.conf).
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"
# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
";

/// The kubelet's unit and kubeadm's drop-in.
pub fn kubelet(tree: &mut Tree) {
    put(tree, "etc/systemd/system/kubelet.service", KUBELET.into());
    put(
        tree,
        "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        KUBEADM_DROPIN.into(),
    );
}

/// `ferry-registry.service` on the registry node `name` at `address`:`port`.
pub fn registry(name: &str, address: IpAddr, port: u16, tree: &mut Tree) {
    put(
        tree,
        "etc/systemd/system/ferry-registry.service",
        format!(
            r#"# Written by ferry-installer plan: the site registry, over the unpacked bundle.
[Unit]
Description=Ferry site registry (ferry-installer serve)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/ferry-installer serve --store /var/lib/ferry/store --pki /var/lib/ferry/pki --addr {bind}:{port} --san {name} --san {address}
Restart=on-failure
RestartSec=5s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"#,
            bind = if address.is_ipv6() { "[::]" } else { "0.0.0.0" }
        ),
    );
}
