//! The addons a cluster gets, applied from its first control plane once kubeadm
//! has made the control plane: Calico, NodeLocal DNSCache and metrics-server
//! from the bundle's pinned manifests, kubelet-csr-approver from its chart in the
//! site registry. Every image the rendered addons run must be in the bundle: the
//! plan refuses, naming each one, before any node is touched.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use ferry::Reference;

use super::contents::Contents;
use super::inventory::{Inventory, ProxyMode};
use super::render::{self, addons::NodeLocalDns, Tree};

/// Where a control plane keeps the addons it applies.
const DIR: &str = "etc/kubernetes/addons";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// The release spec's names for the addon manifests and the chart.
const CALICO: &str = "calico.yaml";
const NODELOCALDNS: &str = "nodelocaldns.yaml";
const METRICS_SERVER: &str = "metrics-server-components.yaml";
const CSR_APPROVER: &str = "kubelet-csr-approver";

/// The kube-dns Service's address: the 10th of the service CIDR, as kubeadm
/// gives it (cmd/kubeadm/app/constants GetDNSIP).
fn kube_dns(service_cidr: &ipnet::IpNet) -> anyhow::Result<IpAddr> {
    let too_small = || anyhow!("kubernetes: service_cidr {service_cidr} is too small");
    let dns = match service_cidr.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(10).ok_or_else(too_small)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(10).ok_or_else(too_small)?.into()),
    };
    if !service_cidr.contains(&dns) {
        return Err(too_small());
    }
    Ok(dns)
}

/// What of the addons' manifests and chart the bundle lacks, each said: [`render`]
/// stops at the first.
pub fn lacking(bundle: &Contents) -> Vec<String> {
    let mut out: Vec<String> = [CALICO, NODELOCALDNS, METRICS_SERVER]
        .into_iter()
        .filter_map(|f| bundle.file_text(f).err())
        .map(|e| format!("{e:#}"))
        .collect();
    out.extend(bundle.chart(CSR_APPROVER).err().map(|e| format!("{e:#}")));
    out
}

/// The addons' files (under the first control plane's root) and the steps that
/// apply them there and wait until every node is Ready and every addon runs. `registry` is the site registry's `https://host:port`.
pub fn render(
    bundle: &Contents,
    inventory: &Inventory,
    registry: &str,
) -> anyhow::Result<(Tree, Vec<String>)> {
    let k = &inventory.kubernetes;
    let mut tree = Tree::new();
    let mut steps = Vec::new();
    let mut images: Vec<(String, String)> = Vec::new();
    let mut add = |file: &str, text: String, tree: &mut Tree| -> anyhow::Result<()> {
        let found = ferry::addons::images(&text).map_err(|e| anyhow!("{file}: {e}"))?;
        images.extend(found.into_iter().map(|i| (file.to_string(), i)));
        let path = format!("{DIR}/{file}");
        steps.push(format!("{KUBECTL} apply --server-side -f /{path}"));
        render::put(tree, &path, text);
        Ok(())
    };

    let (_, calico) = bundle.file_text(CALICO)?;
    let calico = render::addons::calico(&calico, &k.pod_cidr.to_string(), k.cni_mtu)
        .map_err(|e| anyhow!("file {CALICO}: {e}"))?;
    add("calico.yaml", calico, &mut tree)?;

    let (_, dns) = bundle.file_text(NODELOCALDNS)?;
    let dns = render::addons::nodelocaldns(
        &dns,
        &NodeLocalDns {
            domain: &k.dns_domain,
            kube_dns: kube_dns(&k.service_cidr)?,
            ipvs: k.proxy_mode == ProxyMode::Ipvs,
        },
    )
    .map_err(|e| anyhow!("file {NODELOCALDNS}: {e}"))?;
    add("nodelocaldns.yaml", dns, &mut tree)?;

    // metrics-server as upstream ships it: the kubelets' serving certificates are
    // signed by the cluster CA (serverTLSBootstrap, approved by
    // kubelet-csr-approver), so it needs no --kubelet-insecure-tls.
    let (_, metrics) = bundle.file_text(METRICS_SERVER)?;
    add("metrics-server.yaml", metrics, &mut tree)?;

    let (version, tgz) = bundle.chart(CSR_APPROVER)?;
    let found = ferry::addons::chart_images(&tgz, CSR_APPROVER)
        .map_err(|e| anyhow!("chart {CSR_APPROVER} {version}: {e}"))?;
    images.extend(found.into_iter().map(|i| (CSR_APPROVER.to_string(), i)));
    let values = render::addons::csr_approver_values(&inventory.nodes, &k.dns_domain)
        .map_err(|e| anyhow!("chart {CSR_APPROVER}: {e}"))?;
    let values_path = format!("{DIR}/{CSR_APPROVER}.values.yaml");
    render::put(&mut tree, &values_path, values);
    let host = registry
        .strip_prefix("https://")
        .unwrap_or(registry)
        .trim_end_matches('/');
    steps.push(format!(
        "helm upgrade --install {CSR_APPROVER} oci://{host}/charts/{CSR_APPROVER} --version {version} --namespace kube-system --values /{values_path} --ca-file /{} --kubeconfig /etc/kubernetes/admin.conf",
        render::containerd::CA_PATH
    ));
    // Done when every node is Ready and every addon runs everywhere it should
    // (the kube-system workloads: CoreDNS, Calico, NodeLocal DNSCache,
    // metrics-server, kubelet-csr-approver).
    steps.push(format!(
        "{KUBECTL} wait --for=condition=Ready nodes --all --timeout=15m"
    ));
    steps.push(format!(
        "{KUBECTL} -n kube-system rollout status daemonset --timeout=15m"
    ));
    steps.push(format!(
        "{KUBECTL} -n kube-system rollout status deployment --timeout=15m"
    ));

    let have: BTreeSet<String> = bundle.images.iter().map(|r| r.to_string()).collect();
    let mut missing = Vec::new();
    for (file, image) in &images {
        let known = image
            .parse::<Reference>()
            .is_ok_and(|r| have.contains(&r.to_string()));
        let line = format!("{image} (in {file})");
        if !known && !missing.contains(&line) {
            missing.push(line);
        }
    }
    if !missing.is_empty() {
        bail!(
            "the addons run images the bundle lacks: {}; add them to the release spec's images",
            missing.join(", ")
        );
    }
    Ok((tree, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_is_the_tenth_address_of_the_service_cidr() {
        let dns = |c: &str| kube_dns(&c.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(dns("10.233.0.0/18").unwrap(), "10.233.0.10");
        assert_eq!(dns("10.96.0.0/12").unwrap(), "10.96.0.10");
        assert_eq!(dns("fd00:10:96::/112").unwrap(), "fd00:10:96::a");
        assert!(dns("10.0.0.0/29").is_err());
    }
}
