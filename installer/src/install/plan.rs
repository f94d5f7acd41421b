//! `ferry-installer plan`: every node's files, rendered from the inventory and the
//! store's bundle into `OUT/<node>/` as the node's filesystem would hold them,
//! with `OUT/<node>/steps`, the commands `install` runs there, by phase (see
//! [`super::steps`]). The same
//! inventory, store and site PKI give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};

use super::contents::Contents;
use super::programs::{self, Programs};
use super::steps::{Phase, Steps};

use super::inventory::{HaMode, Inventory, Node, RegistryPlace, Role};
use super::render::{self, containerd::Containerd, Tree};
use crate::pki::cluster::{ClusterPki, EtcdMember};
use ferry::Reference;

/// One node's plan.
pub struct NodePlan {
    pub files: Tree,
    /// Its programs, hard-linked from one unpacked copy when written.
    pub programs: Programs,
    pub steps: Steps,
}

/// The cluster PKI files a node gets, in kubeadm's layout under
/// `etc/kubernetes/pki`: the CAs and service-account keys on control planes (kubeadm
/// makes the rest from them), with the apiserver's etcd client certificate; the
/// etcd CA and the member's own server, peer and healthcheck certificates on etcd
/// nodes. Keys are 0600.
fn pki_files(pki: &ClusterPki, node: &Node, tree: &mut Tree) -> anyhow::Result<()> {
    let mut add = |to: &str, from: &str| -> anyhow::Result<()> {
        let mode = if to.ends_with(".key") { 0o600 } else { 0o644 };
        tree.insert(format!("etc/kubernetes/pki/{to}"), (pki.read(from)?, mode));
        Ok(())
    };
    if node.has(Role::ControlPlane) {
        for f in [
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "sa.key",
            "sa.pub",
            "etcd/ca.crt",
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
        ] {
            add(f, f)?;
        }
    }
    if node.has(Role::Etcd) {
        for f in [
            "etcd/ca.crt",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
        ] {
            add(f, f)?;
        }
        for f in ["server.crt", "server.key", "peer.crt", "peer.key"] {
            add(
                &format!("etcd/{f}"),
                &format!("nodes/{}/etcd/{f}", node.name),
            )?;
        }
    }
    Ok(())
}

/// The site registry's certificate and key, for the node that runs it.
pub struct RegistryTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Checks that the bundle holds everything the inventory's nodes need, before any
/// key or certificate is made for them: every problem is named at once, so one
/// rerun suffices.
pub fn check(inventory: &Inventory, bundle: &Contents) -> anyhow::Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let mut say = |p: String| {
        if !problems.contains(&p) {
            problems.push(p);
        }
    };
    for n in &inventory.nodes {
        if !bundle.arches.contains(&n.arch) {
            say(format!(
                "node {}: arch {} is not in the bundle (it has {})",
                n.name,
                n.arch,
                bundle.arches.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for repository in ["pause", "kube-apiserver"] {
        if let Err(e) = kubernetes_image(bundle, repository) {
            say(e.to_string());
        }
    }
    // Programs by what decides them (arch, roles): a thousand workers ask once.
    let mut asked = BTreeSet::new();
    for n in &inventory.nodes {
        if asked.insert((n.arch.clone(), n.roles.clone())) && bundle.arches.contains(&n.arch) {
            let lacks = programs::lacking(bundle, n);
            if lacks.is_empty() {
                // What else there is to find: an archive where a program is expected.
                if let Err(e) = programs::for_node(bundle, n, false) {
                    say(format!("{e:#}"));
                }
            }
            for lack in lacks {
                say(lack);
            }
        }
    }
    let addons = super::addons::lacking(bundle);
    if addons.is_empty() {
        // What else rendering finds: images the addons run that the bundle lacks.
        if let Err(e) = super::addons::render(bundle, inventory, "") {
            say(format!("{e:#}"));
        }
    }
    for lack in addons {
        say(lack);
    }
    match problems.len() {
        0 => Ok(()),
        1 => bail!("{}", problems[0]),
        n => bail!(
            "the bundle lacks what the inventory needs ({n} problems): {}",
            problems.join("; ")
        ),
    }
}

/// `registry.k8s.io/REPOSITORY` as the bundle carries it, which every plan needs.
fn kubernetes_image<'b>(bundle: &'b Contents, repository: &str) -> anyhow::Result<&'b Reference> {
    bundle
        .images
        .iter()
        .find(|r| r.registry() == "registry.k8s.io" && r.repository() == repository)
        .ok_or_else(|| no_kubernetes_image(repository))
}

/// What the lack of [`kubernetes_image`] `repository` means for a plan.
fn no_kubernetes_image(repository: &str) -> anyhow::Error {
    match repository {
        "pause" => anyhow!("the bundle has no registry.k8s.io/pause image (the sandbox image)"),
        _ => {
            anyhow!("the bundle has no registry.k8s.io/{repository} image: which Kubernetes is it?")
        }
    }
}

/// Plans every node. `ca_pem` is the CA the site registry's certificate chains to;
/// `state` the cluster's state directory (its PKI is made there once). The caller
/// runs [`check`] first, before that CA is made.
pub fn plan(
    inventory: &Inventory,
    bundle: &Contents,
    ca_pem: &str,
    registry_tls: Option<&RegistryTls>,
    state: &Path,
) -> anyhow::Result<BTreeMap<String, NodePlan>> {
    let (registry, pushed_under) = match &inventory.registry {
        RegistryPlace::Node { node, port } => {
            let n = inventory
                .nodes
                .iter()
                .find(|n| &n.name == node)
                .expect("checked when the inventory was read");
            (format!("https://{}:{port}", render::host(n.address)), None)
        }
        RegistryPlace::External { url, .. } => {
            let target = crate::push::Target::parse(url, false)
                .map_err(|e| anyhow!("registry: url: {e}"))?;
            (target.base_url, Some(target.prefix))
        }
    };
    let hosts: Vec<String> = bundle
        .images
        .iter()
        .map(|r| r.registry().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sandbox = kubernetes_image(bundle, "pause")?.to_string();

    let mut common = Tree::new();
    render::containerd::render(
        &Containerd {
            registry: &registry,
            pushed_under: pushed_under.as_deref(),
            ca_pem,
            hosts: &hosts,
            sandbox_image: &sandbox,
        },
        &mut common,
    );
    render::host::render(&mut common);
    render::services::containerd(&mut common);
    render::services::kubelet(&mut common);
    let mut steps = Steps::default();
    steps.extend(Phase::Prepare, render::host::steps());
    steps.push(Phase::Prepare, "systemctl daemon-reload");
    steps.push(Phase::Prepare, "systemctl enable --now containerd");
    steps.push(Phase::Prepare, "systemctl restart containerd");

    let etcd_nodes: Vec<&Node> = inventory
        .nodes
        .iter()
        .filter(|n| n.has(Role::Etcd))
        .collect();
    let control_planes: Vec<&Node> = inventory
        .nodes
        .iter()
        .filter(|n| n.has(Role::ControlPlane))
        .collect();
    let first = super::state::first_control_plane(
        state,
        &control_planes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
    )?;
    let members: Vec<EtcdMember<'_>> = etcd_nodes
        .iter()
        .map(|n| EtcdMember {
            name: &n.name,
            address: n.address,
        })
        .collect();
    let pki = ClusterPki::ensure(state, &members).context("making the cluster PKI")?;
    let version = kubernetes_image(bundle, "kube-apiserver")?
        .tag()
        .map(str::to_string)
        .ok_or_else(|| no_kubernetes_image("kube-apiserver"))?;
    let token = pki.bootstrap_token()?;
    let ca_hash = pki.ca_cert_hash()?;
    let etcd_addresses: Vec<std::net::IpAddr> = etcd_nodes.iter().map(|n| n.address).collect();
    let mut cert_sans: Vec<String> = inventory.ha.vip.iter().map(|v| v.to_string()).collect();
    for n in &control_planes {
        cert_sans.push(n.name.clone());
        cert_sans.push(n.address.to_string());
    }
    let k = &inventory.kubernetes;
    let (pod_cidr, service_cidr) = (k.pod_cidr.to_string(), k.service_cidr.to_string());
    let cluster = render::kubeadm::Cluster {
        name: &inventory.name,
        version: &version,
        endpoint: &k.control_plane_endpoint,
        pod_cidr: &pod_cidr,
        service_cidr: &service_cidr,
        dns_domain: &k.dns_domain,
        ipvs: k.proxy_mode == super::inventory::ProxyMode::Ipvs,
        token: &token,
        ca_hash: &ca_hash,
        etcd: &etcd_addresses,
        cert_sans: &cert_sans,
        bind_node_address: inventory.ha.mode == HaMode::HaproxyKeepalived,
    };
    let (_, endpoint_port) = k.endpoint().expect("checked when the inventory was read");
    // Charts are where push put them: under the prefix, if any.
    let charts_at = match pushed_under.as_deref() {
        Some(prefix) if !prefix.is_empty() => format!("{registry}/{prefix}"),
        _ => registry.clone(),
    };
    let (addon_files, addon_steps) = super::addons::render(bundle, inventory, &charts_at)?;
    let mut plans = BTreeMap::new();
    for n in &inventory.nodes {
        let mut files = common.clone();
        let mut node_steps = steps.clone();
        pki_files(&pki, n, &mut files).with_context(|| format!("node {}", n.name))?;
        let runs_registry =
            matches!(&inventory.registry, RegistryPlace::Node { node, .. } if node == &n.name);
        let programs = programs::for_node(bundle, n, runs_registry)?;
        if let RegistryPlace::Node { node, port } = &inventory.registry {
            if node == &n.name {
                let tls = registry_tls.ok_or_else(|| {
                    anyhow!(
                        "node {}: runs the site registry, but it has no certificate",
                        n.name
                    )
                })?;
                render::services::registry(n.address, *port, &mut files);
                files.insert(
                    format!("{}/ca.pem", render::services::REGISTRY_PKI),
                    (ca_pem.as_bytes().to_vec(), 0o644),
                );
                files.insert(
                    format!("{}/registry.pem", render::services::REGISTRY_PKI),
                    (tls.cert.clone(), 0o644),
                );
                files.insert(
                    format!("{}/registry.key", render::services::REGISTRY_PKI),
                    (tls.key.clone(), 0o600),
                );
                node_steps.push(Phase::Prepare, "systemctl enable --now ferry-registry");
                node_steps.push(Phase::Prepare, "systemctl restart ferry-registry");
            }
        }
        if let (true, Some(vip), Some(interface)) = (
            n.has(Role::ControlPlane) && inventory.ha.mode == HaMode::HaproxyKeepalived,
            inventory.ha.vip,
            inventory.ha.interface.as_deref(),
        ) {
            let rank = control_planes
                .iter()
                .position(|b| b.name == n.name)
                .expect("every control plane is a backend");
            render::ha::render(
                &n.name,
                rank,
                vip,
                endpoint_port,
                interface,
                inventory.ha.virtual_router_id,
                &control_planes,
                &mut files,
            );
            node_steps.extend(Phase::Prepare, render::ha::steps());
        }
        if n.has(Role::Etcd) {
            render::etcd::render(n, &etcd_nodes, &inventory.name, &mut files);
            node_steps.extend(Phase::Etcd, render::etcd::steps());
        }
        // The inventory has a control plane: checked when it was read.
        if n.name == first {
            render::kubeadm::init(&cluster, n, &mut files);
            node_steps.push(Phase::Init, render::kubeadm::INIT);
            // Nodes that join later need the token alive (it lives 24h from init).
            // A lone node has no one to join: kubeadm init's own token does for
            // it, and adding a node changes this plan, so the refresh comes then.
            if inventory.nodes.len() > 1 {
                node_steps.push(Phase::Join, render::kubeadm::token_refresh(&token));
            }
            files.extend(addon_files.clone());
            node_steps.extend(Phase::Addons, addon_steps.iter().cloned());
        } else {
            render::kubeadm::join(&cluster, n, &mut files);
            node_steps.push(Phase::Join, render::kubeadm::JOIN);
        }
        plans.insert(
            n.name.clone(),
            NodePlan {
                files,
                programs,
                steps: node_steps,
            },
        );
    }
    Ok(plans)
}

/// The files of one node's written plan (`out/<node>`), without its `steps`: the
/// absolute path each will have on the node, and where it is here; sorted.
pub fn written_files(root: &Path) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if std::fs::symlink_metadata(&p)?.is_dir() {
                dirs.push(p);
                continue;
            }
            let rel = p.strip_prefix(root).expect("under the root");
            if rel != Path::new("steps") {
                out.push((format!("/{}", rel.display()), p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the plans into `out` (`out/<node>/...` and `out/<node>/steps`), replacing
/// an earlier plan there only once the new one is complete. Programs are unpacked
/// from `bundle` once and hard-linked into every node that runs them.
pub fn write(
    out: &Path,
    bundle: &Contents,
    plans: &BTreeMap<String, NodePlan>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("plan");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> anyhow::Result<()> {
        for (node, plan) in plans {
            let root = tmp.join(node);
            for (path, (bytes, mode)) in &plan.files {
                let file = root.join(path);
                std::fs::create_dir_all(file.parent().expect("files live in directories"))?;
                std::fs::write(&file, bytes)
                    .with_context(|| format!("writing {}", file.display()))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
            }
            std::fs::create_dir_all(&root)?;
            // The steps name the bootstrap token: readable by their owner alone.
            let steps = root.join("steps");
            std::fs::write(&steps, plan.steps.render())?;
            std::fs::set_permissions(&steps, std::fs::Permissions::from_mode(0o600))?;
        }
        let cache = tmp.join(".programs");
        let programs = plans
            .iter()
            .map(|(node, plan)| (node.clone(), &plan.programs))
            .collect();
        programs::install(bundle, &programs, &tmp, &cache)?;
        std::fs::remove_dir_all(&cache).with_context(|| format!("removing {}", cache.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The earlier plan is moved aside, not deleted, until the new one is in place.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let replaced = out.exists();
    if replaced {
        std::fs::rename(out, &old).with_context(|| format!("replacing {}", out.display()))?;
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        if replaced {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("writing {}", out.display()));
    }
    if replaced {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Refuses an output directory that is not an earlier plan: `write` replaces it
/// whole, and a mistyped `--out` must not take an inventory, the cluster's state or
/// anything else with it. A plan is a directory of node directories, each holding
/// its `steps`; an empty or missing directory is fine too.
pub fn check_out(out: &Path) -> anyhow::Result<()> {
    let refuse = |why: &str| {
        anyhow!(
            "--out {}: {why}; plan replaces the whole directory, so name a new or empty \
             one, or an earlier plan",
            out.display()
        )
    };
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("--out {}", out.display())),
    };
    if !meta.is_dir() {
        return Err(refuse("it is not a directory"));
    }
    let here = std::env::current_dir().context("the current directory")?;
    let full = out
        .canonicalize()
        .with_context(|| format!("--out {}", out.display()))?;
    if here.starts_with(&full) {
        return Err(refuse("it holds the current directory"));
    }
    for entry in std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))? {
        let entry = entry.with_context(|| format!("--out {}", out.display()))?;
        let path = entry.path();
        if !path.is_dir() || !path.join("steps").is_file() {
            return Err(refuse(&format!(
                "it holds {}, which is not a node's plan",
                entry.file_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}
