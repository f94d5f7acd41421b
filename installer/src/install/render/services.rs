//! systemd units every node or the registry node gets: containerd's own unit (the
//! `containerd.service` of containerd/containerd at v1.7.27, verbatim: it runs
//! /usr/local/bin/containerd, where the release archive's binaries go), the
//! kubelet's unit and
//! kubeadm's drop-in (the ones kubernetes/release ships in its DEB packages,
//! `cmd/kubepkg/templates/latest/deb/kubelet/lib/systemd/system/kubelet.service` and
//! `deb/kubeadm/10-kubeadm.conf`, as the kubeadm documentation quotes them, with
//! the binary in /usr/local/bin where install puts it), and `ferry-registry.service`,
//! the site registry over the unpacked bundle.

use std::net::IpAddr;

use super::{put, Tree};

/// containerd/containerd v1.7.27 `containerd.service` (commit 05044ec0a9a7), verbatim.
const CONTAINERD: &str = r#"# Copyright The containerd Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
#uncomment to enable the experimental sbservice (sandboxed) version of containerd/cri integration
#Environment="ENABLE_CRI_SANDBOXES=sandboxed"
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd

Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=infinity
# Comment TasksMax if your systemd version does not supports it.
# Only systemd 226 and above support this version.
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"#;

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

/// containerd's unit.
pub fn containerd(tree: &mut Tree) {
    put(
        tree,
        "etc/systemd/system/containerd.service",
        CONTAINERD.into(),
    );
}

/// The kubelet's unit and kubeadm's drop-in.
pub fn kubelet(tree: &mut Tree) {
    put(tree, "etc/systemd/system/kubelet.service", KUBELET.into());
    put(
        tree,
        "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        KUBEADM_DROPIN.into(),
    );
}

/// Where the registry node keeps the site CA and its certificate and key.
pub const REGISTRY_PKI: &str = "var/lib/ferry/pki";

/// `ferry-registry.service` on the registry node, listening on `port` of every
/// address (its certificate names the node's `name` and `address`, see plan).
pub fn registry(address: IpAddr, port: u16, tree: &mut Tree) {
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
ExecStart=/usr/local/bin/ferry-installer serve --store /var/lib/ferry/store --tls /{REGISTRY_PKI}/registry.pem,/{REGISTRY_PKI}/registry.key --addr {bind}:{port}
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
