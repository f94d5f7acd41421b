//! `ferry-installer reset NODE...`: undoes an install on some nodes, as
//! kubespray's reset does: `kubeadm reset`, the plan's services stopped and
//! disabled, every file the plan put there removed, and the data the cluster's
//! programs made (/etc/kubernetes, etcd's, the kubelet's and containerd's data,
//! the site store and install records under /var/lib/ferry). Nothing else on the
//! node is touched.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};

use super::inventory::Inventory;
use super::transport::{quote, Input, SshOptions, Transport};

/// The services a plan may start, stopped in this order.
const SERVICES: &[&str] = &[
    "kubelet",
    "ferry-etcd-snapshot.timer",
    "etcd",
    "keepalived",
    "haproxy",
    "ferry-registry",
    "containerd",
];

/// What the cluster's programs made on a node, beyond the plan's files.
const DATA: &[&str] = &[
    "/etc/kubernetes",
    "/var/lib/etcd",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/lib/ferry",
];

/// The script that resets a node whose planned files are `files`.
pub fn script(files: &[String]) -> String {
    let mut s = String::from(
        "if [ -x /usr/local/bin/kubeadm ]; then /usr/local/bin/kubeadm reset -f; fi\n",
    );
    for unit in SERVICES {
        s.push_str(&format!(
            "systemctl disable --now {unit} 2>/dev/null || true\n"
        ));
    }
    for f in files {
        s.push_str(&format!("rm -f {}\n", quote(f)));
    }
    for d in DATA {
        s.push_str(&format!("rm -rf {d}\n"));
    }
    s.push_str("systemctl daemon-reload 2>/dev/null || true\n");
    s
}

/// Resets `names` (nodes of `inventory`) whose plan is in `state`'s, and records
/// each in the state (see [`super::state::record_reset`]).
pub fn reset(
    inventory: &Inventory,
    names: &[String],
    state: &Path,
    ssh: &SshOptions,
) -> anyhow::Result<()> {
    let plan_dir = state.join("plan");
    std::fs::create_dir_all(&ssh.control_dir)
        .with_context(|| format!("creating {}", ssh.control_dir.display()))?;
    // Each node in turn; one that fails does not keep the others as they were.
    let mut failed = Vec::new();
    for name in names {
        if let Err(e) = reset_one(inventory, name, &plan_dir, state, ssh) {
            failed.push(format!("{e:#}"));
        }
    }
    if !failed.is_empty() {
        let done = names.len() - failed.len();
        bail!(
            "{}{}",
            failed.join("; "),
            if done > 0 {
                format!(" (the other {done} node(s) were reset)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn reset_one(
    inventory: &Inventory,
    name: &str,
    plan_dir: &Path,
    state: &Path,
    ssh: &SshOptions,
) -> anyhow::Result<()> {
    let node = inventory
        .nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| anyhow!("node {name} is not in the inventory"))?;
    let root = plan_dir.join(name);
    let files: Vec<String> = super::plan::written_files(&root)
        .with_context(|| {
            format!(
                "node {name}: no plan in {} (reset removes what install put there)",
                root.display()
            )
        })?
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let transport = Transport::for_node(node, ssh);
    let out = transport
        .run(&script(&files), Input::None)
        .with_context(|| format!("node {name} ({})", transport.describe()))?;
    transport.close();
    if !out.status.success() {
        bail!(
            "node {name}: reset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    super::state::record_reset(state, name)?;
    ferry_cli::say!("{name}: reset ({} planned file(s) removed)", files.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_script_removes_only_what_the_plan_and_its_programs_made() {
        let s = script(&["/usr/local/bin/kubelet".into(), "/etc/it's.conf".into()]);
        assert!(s.starts_with(
            "if [ -x /usr/local/bin/kubeadm ]; then /usr/local/bin/kubeadm reset -f; fi\n"
        ));
        assert!(s.contains("rm -f '/usr/local/bin/kubelet'\n"));
        assert!(s.contains("rm -f '/etc/it'\\''s.conf'\n"));
        assert!(s.contains("systemctl disable --now containerd"));
        assert!(!s.contains("rm -rf /etc\n") && !s.contains("rm -rf /var/lib\n"));
    }
}
