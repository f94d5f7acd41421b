//! Test nodes on this one machine: a network namespace per node, each with its
//! own address on one bridge, and no route out (anything off the bridge is
//! "network is unreachable"); a command runs in a node's namespace with a private
//! mount view where a rendered tree appears at its real paths (/etc, /opt,
//! /usr/local, with /var/lib and /run empty). Needs root. Everything is removed
//! on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A set of nodes on a bridge of their own (10.213.N.0/24; the host is .1).
pub struct Nodes {
    bridge: String,
    net: u8,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// One node: its name, network namespace and address.
pub struct Node {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    /// Where its writable layers live (an overlay's upper dir for /etc, ...).
    state: PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A number that differs between processes and calls.
fn unique() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 20)
}

impl Nodes {
    /// Makes a node per name, addressed 10.213.N.11, .12, ... in order.
    pub fn new(names: &[&str]) -> Nodes {
        // The kernel refuses a second bridge of the same name: that is the lock
        // between test processes choosing N.
        let net = (0..=255u8)
            .find(|n| ip(&["link", "add", &format!("ferrytb{n}"), "type", "bridge"]).is_ok())
            .expect("no free test bridge ferrytb0..255 (ip link add needs root)");
        let bridge = format!("ferrytb{net}");
        let mut nodes = Nodes {
            bridge: bridge.clone(),
            net,
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        ip(&["addr", "add", &format!("10.213.{net}.1/24"), "dev", &bridge]).unwrap();
        ip(&["link", "set", &bridge, "up"]).unwrap();
        for (i, name) in names.iter().enumerate() {
            let netns = format!("ferry-{net}-{name}");
            // A torn-down namespace can keep its veth for a while after the test:
            // host-side names are unique to this process and moment.
            let veth = format!("fv{:08x}{i:02}", unique());
            let address = Ipv4Addr::new(10, 213, net, 11 + i as u8);
            ip(&["netns", "add", &netns]).unwrap();
            // Pushed now, so drop removes it even if a step below fails.
            let state = nodes.dir.path().join(name);
            std::fs::create_dir_all(&state).unwrap();
            nodes.nodes.push(Node {
                name: name.to_string(),
                netns: netns.clone(),
                address,
                state,
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ])
            .unwrap();
            ip(&["link", "set", &veth, "master", &bridge, "up"]).unwrap();
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ])
            .unwrap();
            ip(&["-n", &netns, "link", "set", "eth0", "up"]).unwrap();
            ip(&["-n", &netns, "link", "set", "lo", "up"]).unwrap();
        }
        nodes
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no test node {name}"))
    }

    /// An address on the nodes' network that no node has (for a VIP): .10.
    pub fn spare_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, 10)
    }

    /// The host's own address on the bridge.
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, 1)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.nodes {
            // Whatever still runs in the namespace goes with it.
            let _ = Command::new("ip")
                .args(["netns", "pids", &n.netns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = ip(&["netns", "del", &n.netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

impl Node {
    /// `sh -c script` in this node: its network namespace, its hostname, and a
    /// private mount view where `tree` (a rendered node root, if given) is where
    /// the node would hold it: its etc/ copied over an overlay of the host's /etc
    /// (one of its own per command: commands see the tree, not each other's writes),
    /// its opt/ on an empty /opt, its var/lib on an empty /var/lib (containerd's
    /// snapshotter will not run on an overlay), its usr/local at /usr/local; /run
    /// is an empty tmpfs.
    pub fn command(&self, tree: Option<&Path>, script: &str) -> Command {
        // Every command has its own overlay layers: overlayfs refuses two mounts
        // that share an upper directory.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let layers = self.state.join(
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        );
        let s = layers.display();
        let prelude = format!(
            "set -e\nhostname '{name}'\nmkdir -p '{s}/etc-upper' '{s}/etc-work'\nmount -t overlay overlay -o lowerdir=/etc,upperdir='{s}/etc-upper',workdir='{s}/etc-work' /etc\nmount -t tmpfs tmpfs /opt\nmount -t tmpfs tmpfs /var/lib\nmount -t tmpfs tmpfs /run\n",
            name = self.name
        );
        self.shell(prelude, tree, script)
    }

    /// `sshd` serving this node, for install tests: the node starts empty (the
    /// host's /etc under an overlay; empty /opt, /var/lib, /run, /root and
    /// /usr/local) with the programs of `standins` first on PATH (in
    /// /usr/local/sbin), and every session in that one view, so what one session
    /// writes the next sees. `env` is set in every session (sshd `SetEnv`).
    pub fn sshd(
        &self,
        host_key: &Path,
        authorized_keys: &Path,
        standins: &Path,
        env: &[(&str, &str)],
    ) -> std::process::Child {
        let config = self.state.join("sshd_config");
        let mut text = format!(
            "ListenAddress {}\nPort 22\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile /run/sshd.pid\nSubsystem sftp internal-sftp\nMaxSessions 100\nMaxStartups 100\n",
            self.address,
            host_key.display(),
            authorized_keys.display()
        );
        for (k, v) in env {
            text.push_str(&format!("SetEnv {k}={v}\n"));
        }
        std::fs::write(&config, text).expect("writing sshd_config");
        self.empty(
            standins,
            &format!(
                "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f '{}'",
                config.display()
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(self.state.join("sshd.log")).expect("the sshd log"))
        .spawn()
        .expect("starting sshd")
    }

    /// `sh -c script` in this node as it is before anything is installed (the
    /// view `sshd` gives its sessions: empty /usr/local, /opt, /var/lib, /run and
    /// /root; the host's /etc under an overlay; `standins` in /usr/local/sbin).
    pub fn empty(&self, standins: &Path, script: &str) -> Command {
        self.command(
            None,
            &format!(
                "set -e\nmount -t tmpfs tmpfs /usr/local\nmkdir -p /usr/local/sbin /usr/local/bin\ncp -a '{}/.' /usr/local/sbin/\nmount -t tmpfs tmpfs /root\nexport PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nset +e\n{script}",
                standins.display()
            ),
        )
    }

    fn shell(&self, mut prelude: String, tree: Option<&Path>, script: &str) -> Command {
        if let Some(tree) = tree {
            let t = tree.display();
            prelude.push_str(&format!(
                "[ ! -d '{t}/etc' ] || cp -a '{t}/etc/.' /etc/\n[ ! -d '{t}/opt' ] || cp -a '{t}/opt/.' /opt/\n[ ! -d '{t}/var/lib' ] || cp -a '{t}/var/lib/.' /var/lib/\n[ ! -d '{t}/usr/local' ] || mount --bind '{t}/usr/local' /usr/local\n"
            ));
        }
        prelude.push_str("set +e\n");
        prelude.push_str(script);
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.netns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            &prelude,
        ]);
        cmd
    }
}
