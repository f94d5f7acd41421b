//! Preflight: what a node must offer before anything is changed anywhere, checked
//! on every node that has not been installed yet: the architecture the plan is
//! for, the OS programs the plan and kubeadm need (kubeadm 1.31's own preflight
//! refuses a node without conntrack; kube-proxy in IPVS mode needs ipset and
//! ipvsadm; HA control planes need haproxy and keepalived), the ports the
//! node's services will take, room in /var/lib, and that the node reaches the
//! registry node (or the site's registry); and, across the nodes, their
//! clocks ([`skew`]). Swap on is refused, as kubeadm's own preflight does (the
//! plan also turns it off, for good measure). Every problem is printed, one per
//! line, as `problem: ...`.

use super::inventory::{HaMode, Inventory, Node, ProxyMode, RegistryPlace, Role};

/// Free space /var/lib needs, in KiB (images, etcd's data, the store's copy).
const MIN_FREE_KIB: u64 = 2 * 1024 * 1024;

/// The ports `node` will listen on, by what takes them.
fn ports(inventory: &Inventory, node: &Node) -> Vec<(u16, &'static str)> {
    let mut out = node.service_ports();
    if let RegistryPlace::Node { node: r, port } = &inventory.registry {
        if r == &node.name {
            out.push((*port, "the site registry"));
        }
    }
    out
}

/// The OS programs `node` needs.
fn programs(inventory: &Inventory, node: &Node) -> Vec<&'static str> {
    let mut out = vec![
        "conntrack",
        "iptables",
        "mount",
        "nsenter",
        "socat",
        "sha256sum",
    ];
    if inventory.kubernetes.proxy_mode == ProxyMode::Ipvs {
        out.extend(["ipset", "ipvsadm"]);
    }
    if node.has(Role::ControlPlane) && inventory.ha.mode == HaMode::HaproxyKeepalived {
        out.extend(["haproxy", "keepalived"]);
    }
    out
}

/// The host and port of an `https://` URL (443 when it names none).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (v6, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    (
        host.to_string(),
        port.and_then(|p| p.parse().ok()).unwrap_or(443),
    )
}

/// The script that checks `node`; it prints `problem: ...` lines and nothing else.
pub fn script(inventory: &Inventory, node: &Node) -> String {
    let machine = match node.arch.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    let mut s = format!(
        "[ \"$(uname -s)\" = Linux ] || echo \"problem: the OS is $(uname -s), not Linux\"\nm=$(uname -m); [ \"$m\" = {machine} ] || echo \"problem: the machine is $m, the plan is for {arch}\"\n",
        arch = node.arch
    );
    // kubeadm's preflight refuses swap, and the kubelet will not start with it.
    s.push_str(
        "sw=$(swapon --noheadings --show=NAME 2>/dev/null | tr '\\n' ' ' | sed 's/ *$//'); [ -z \"$sw\" ] || echo \"problem: swap is on ($sw): the kubelet needs it off: swapoff -a, and take it out of /etc/fstab\"\n",
    );
    for p in programs(inventory, node) {
        s.push_str(&format!(
            "command -v {p} >/dev/null 2>&1 || echo 'problem: {p} is not installed (the OS package {p})'\n"
        ));
    }
    for (port, what) in ports(inventory, node) {
        s.push_str(&format!(
            "[ -z \"$(ss -Hltn 'sport = :{port}' 2>/dev/null)\" ] || echo 'problem: port {port} (for {what}) is taken'\n"
        ));
    }
    s.push_str(&format!(
        "free=$(df -Pk /var/lib | awk 'NR==2 {{print $4}}'); [ \"${{free:-0}}\" -ge {MIN_FREE_KIB} ] || echo \"problem: /var/lib has $((${{free:-0}} / 1024)) MiB free, at least {} MiB are needed\"\n",
        MIN_FREE_KIB / 1024
    ));
    // The registry's port is not served yet: the registry node's SSH port tells
    // whether the network lets this node reach it at all.
    let registry = match &inventory.registry {
        RegistryPlace::Node { node: r, .. } if r != &node.name => {
            inventory.nodes.iter().find(|n| &n.name == r).map(|n| {
                (
                    format!("the registry node {}", n.name),
                    n.address.to_string(),
                    n.ssh.port,
                )
            })
        }
        RegistryPlace::External { url, .. } => {
            let (host, port) = host_port(url);
            Some((format!("the registry {url}"), host, port))
        }
        _ => None,
    };
    if let Some((what, host, port)) = registry {
        s.push_str(&format!(
            "if command -v bash >/dev/null 2>&1; then timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null || echo 'problem: cannot reach {what} ({host} port {port})'; fi\n"
        ));
    }
    s.push_str("true\n");
    s
}

/// The most the nodes' clocks may differ by, in seconds (etcd and certificates
/// suffer beyond it).
pub const MAX_SKEW: i64 = 30;

/// The problem with the nodes' clocks (`name`, seconds since the epoch), if any.
pub fn skew(clocks: &[(String, i64)]) -> Option<String> {
    let min = clocks.iter().min_by_key(|(_, t)| *t)?;
    let max = clocks.iter().max_by_key(|(_, t)| *t)?;
    (max.1 - min.1 > MAX_SKEW).then(|| {
        format!(
            "the clocks of {} and {} differ by {} s (more than {MAX_SKEW} s): sync them (chrony, NTP)",
            min.0,
            max.0,
            max.1 - min.1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_url_gives_its_host_and_port() {
        assert_eq!(
            host_port("https://harbor.site/k8s"),
            ("harbor.site".into(), 443)
        );
        assert_eq!(
            host_port("https://10.0.0.5:5000"),
            ("10.0.0.5".into(), 5000)
        );
        assert_eq!(
            host_port("https://[fd00::5]:5000/x"),
            ("fd00::5".into(), 5000)
        );
        assert_eq!(host_port("https://[fd00::5]"), ("fd00::5".into(), 443));
    }

    #[test]
    fn clocks_further_apart_than_the_limit_are_a_problem() {
        let c = |v: &[(&str, i64)]| {
            v.iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect::<Vec<_>>()
        };
        assert_eq!(skew(&c(&[("a", 100), ("b", 120)])), None);
        assert_eq!(
            skew(&c(&[("a", 100), ("b", 200), ("c", 150)])).unwrap(),
            "the clocks of a and b differ by 100 s (more than 30 s): sync them (chrony, NTP)"
        );
    }

    #[test]
    fn a_busy_port_and_a_missing_program_are_each_a_problem_line() {
        let text = crate::install::example::example(4);
        let inv = Inventory::parse(std::path::Path::new("c.toml"), &text).unwrap();
        let master = &inv.nodes[0];
        let checks = script(&inv, master);
        for want in [
            "6443",
            "2380",
            "haproxy",
            "keepalived",
            "ipvsadm",
            "/var/lib",
        ] {
            assert!(checks.contains(want), "{want} in {checks}");
        }
        let worker = &inv.nodes[3];
        assert!(!script(&inv, worker).contains("haproxy"));
        // It runs, and says nothing of a program that is there.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(checks.replace("command -v haproxy", "command -v no-such-program-here"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains("problem: haproxy is not installed"), "{text}");
        assert!(text.lines().all(|l| l.starts_with("problem: ")), "{text}");
    }
}
