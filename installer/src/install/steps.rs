//! A node's steps: the commands `install` runs there, in phases that order them
//! across the cluster (every node is prepared before etcd starts, etcd before
//! `kubeadm init`, the first control plane before any join, control planes join
//! one at a time before the workers, and addons come last). Written by `plan` as
//! `OUT/<node>/steps`, one `[phase]` header per phase and one command per line,
//! and read back by `install`.

use std::collections::BTreeMap;
use std::fmt;

/// When a step runs, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Every node at once: host tuning, containerd, the site registry, haproxy and
    /// keepalived.
    Prepare,
    /// The etcd members at once (a member waits for its peers).
    Etcd,
    /// The first control plane: `kubeadm init`.
    Init,
    /// The other control planes, one at a time, then the workers.
    Join,
    /// The first control plane, once every node has joined.
    Addons,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Prepare,
        Phase::Etcd,
        Phase::Init,
        Phase::Join,
        Phase::Addons,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Etcd => "etcd",
            Phase::Init => "init",
            Phase::Join => "join",
            Phase::Addons => "addons",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A node's steps by phase, each phase's in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps(pub BTreeMap<Phase, Vec<String>>);

impl Steps {
    pub fn push(&mut self, phase: Phase, step: impl Into<String>) {
        self.0.entry(phase).or_default().push(step.into());
    }

    pub fn extend(&mut self, phase: Phase, steps: impl IntoIterator<Item = String>) {
        self.0.entry(phase).or_default().extend(steps);
    }

    /// The steps of one phase (none: empty).
    pub fn of(&self, phase: Phase) -> &[String] {
        self.0.get(&phase).map_or(&[], Vec::as_slice)
    }

    /// The `steps` file.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (phase, steps) in &self.0 {
            if steps.is_empty() {
                continue;
            }
            out.push_str(&format!("[{phase}]\n"));
            for s in steps {
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }

    /// Reads a `steps` file; errors name the line.
    pub fn parse(text: &str) -> Result<Steps, String> {
        let mut steps = Steps::default();
        let mut phase = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                phase = Some(
                    Phase::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| format!("line {}: no phase [{name}]", i + 1))?,
                );
                continue;
            }
            let p = phase.ok_or_else(|| format!("line {}: a step before any [phase]", i + 1))?;
            steps.push(p, line);
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_render_in_phase_order_and_read_back() {
        let mut s = Steps::default();
        s.push(Phase::Join, "kubeadm join");
        s.push(Phase::Prepare, "swapoff -a");
        s.push(Phase::Prepare, "sysctl --system");
        let text = s.render();
        assert_eq!(
            text,
            "[prepare]\nswapoff -a\nsysctl --system\n[join]\nkubeadm join\n"
        );
        assert_eq!(Steps::parse(&text).unwrap(), s);
        assert_eq!(
            Steps::parse("swapoff -a\n").unwrap_err(),
            "line 1: a step before any [phase]"
        );
        assert_eq!(
            Steps::parse("[later]\nx\n").unwrap_err(),
            "line 1: no phase [later]"
        );
    }
}
