//! `ferry-installer install` end to end, over SSH: five test nodes (network
//! namespaces with no route out, each running a real sshd with its own host key,
//! and starting empty), the test release, and stand-ins for what cannot run here
//! (tests/data/standins: systemctl starts the units' real programs; kubeadm,
//! kubectl and helm check what they are given and record it). What is proven by
//! real programs: OpenSSH, the files on every node, containerd pulling every image
//! from the site registry the registry node runs, etcd forming one cluster,
//! haproxy and keepalived holding the VIP. What only by the stand-ins' records:
//! the order of kubeadm init and joins, and the addons being applied after them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Session;
use ferry_testkit::nodes::Nodes;

const NODES: [&str; 5] = ["master1", "master2", "master3", "worker1", "worker2"];

struct Cluster {
    s: Session,
    nodes: Nodes,
    sshds: Vec<Child>,
    site: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.sshds {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Five empty nodes, each with sshd; the client's key, known_hosts and config
/// (`ssh.conf`) in the session; the example inventory for 5 nodes on them.
fn cluster() -> Cluster {
    let site = common::cluster::site();
    let s = Session::new();
    let nodes = Nodes::new(&NODES);
    keygen(&s.path("id"));
    let mut known = String::new();
    let mut sshds = Vec::new();
    for n in NODES {
        let key = s.path(&format!("host-{n}"));
        keygen(&key);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        known.push_str(&format!("{} {}\n", nodes.node(n).address, public.join(" ")));
        sshds.push(nodes.node(n).sshd(
            &key,
            &s.path("id.pub"),
            &common::cluster::standins().join("node"),
            &[(
                "FERRY_STANDIN_LOG",
                s.path("standins.log").to_str().unwrap(),
            )],
        ));
    }
    s.write("known_hosts", &known);
    s.write(
        "ssh.conf",
        &format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
            s.path("id").display(),
            s.path("known_hosts").display()
        ),
    );
    common::cluster::inventory_on(&s, &nodes, &NODES);
    let c = Cluster {
        s,
        nodes,
        sshds,
        site,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in NODES {
        while !c.ssh(n, "true").status.success() {
            assert!(Instant::now() < deadline, "sshd on {n} did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c
}

impl Cluster {
    fn addr(&self, node: &str) -> String {
        self.nodes.node(node).address.to_string()
    }

    /// `script` on `node` over SSH, as the test's own client.
    fn ssh(&self, node: &str, script: &str) -> std::process::Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.s.path("ssh.conf"))
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
            .arg(format!("root@{}", self.addr(node)))
            .arg(script)
            .output()
            .unwrap()
    }

    /// `ssh` that must succeed; its stdout.
    fn ok(&self, node: &str, script: &str) -> String {
        let out = self.ssh(node, script);
        assert!(
            out.status.success(),
            "{node}: `{script}`: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn install(&self, extra: &[&str]) -> common::Run {
        let mut args = vec![
            "install",
            "cluster.toml",
            "--store",
            self.site.to_str().unwrap(),
            "--pki",
            "pki",
            "--ssh-config",
            "ssh.conf",
        ];
        args.extend_from_slice(extra);
        self.s.installer(&args)
    }

    /// The stand-ins' records, one call a line: `HOST PROGRAM ARGS`.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.s.path("standins.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Retries `check` for up to 30 s.
    fn eventually(&self, what: &str, check: impl Fn() -> Result<(), String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match check() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}

/// Every file of a node's plan as `sha256 mode /path` lines, sorted.
fn planned(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out: Vec<String> = common::files_under(dir)
        .into_iter()
        .filter(|(rel, _)| rel != "steps")
        .map(|(rel, p)| {
            let mode = std::fs::metadata(&p).unwrap().mode() & 0o7777;
            let digest = ferry::Digest::of(&std::fs::read(&p).unwrap());
            format!("{} {:o} /{rel}", digest.hex(), mode)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn install_over_ssh_makes_the_cluster_in_order_and_a_rerun_changes_nothing() {
    let c = cluster();
    let run = c.install(&[]).success();
    assert!(run.stdout.contains("installed 5 node(s)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("/etc/kubernetes/admin.conf on master1"),
        "{}",
        run.stdout
    );

    // Every node holds exactly the planned files, digests and modes, as its own
    // sha256sum and stat say.
    for n in NODES {
        let want = planned(&c.s.path(&format!("ferry.state/plan/{n}")));
        let paths: Vec<&str> = want.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        let got = c.ok(
            n,
            &format!(
                "for f in {}; do printf '%s %s %s\\n' \"$(sha256sum < $f | cut -c1-64)\" \"$(stat -c %a $f)\" $f; done | sort",
                paths.join(" ")
            ),
        );
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got, want, "{n}");
    }

    // kubeadm: init on master1, then the control planes join one at a time, then
    // the workers; the addons after every join.
    let calls = c.calls();
    let kubeadm: Vec<&str> = calls
        .iter()
        .filter(|l| l.contains(" kubeadm init") || l.contains(" kubeadm join"))
        .map(|l| l.split(" --config").next().unwrap())
        .collect();
    assert_eq!(kubeadm.len(), 5, "{calls:#?}");
    assert_eq!(
        kubeadm[..3],
        [
            "master1 kubeadm init",
            "master2 kubeadm join",
            "master3 kubeadm join"
        ]
    );
    let mut workers = kubeadm[3..].to_vec();
    workers.sort();
    assert_eq!(workers, ["worker1 kubeadm join", "worker2 kubeadm join"]);
    let last_join = calls
        .iter()
        .rposition(|l| l.contains(" kubeadm join"))
        .unwrap();
    let first_addon = calls
        .iter()
        .position(|l| l.starts_with("master1 kubectl") || l.starts_with("master1 helm"))
        .expect("addons applied");
    assert!(first_addon > last_join, "{calls:#?}");
    assert!(calls
        .iter()
        .any(|l| l.starts_with("master1 helm upgrade --install kubelet-csr-approver")));
    // The bootstrap token is made valid again before anyone joins, and install
    // waits for every node and addon last.
    let at = |p: &str| {
        calls
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {calls:#?}"))
    };
    assert!(at("master1 kubeadm init") < at("master1 kubeadm token create"));
    assert!(at("master1 kubeadm token create") < at("master2 kubeadm join"));
    let wait = at(
        "master1 kubectl --kubeconfig /etc/kubernetes/admin.conf wait --for=condition=Ready nodes --all",
    );
    assert!(wait > first_addon, "{calls:#?}");

    // The real programs the units started: containerd on every node pulls every
    // image by its upstream name from the registry master1 runs.
    let images: Vec<String> = common::cluster::images()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for n in NODES {
        let pulls: Vec<String> = images
            .iter()
            .map(|r| format!("ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d --snapshotter native --platform linux/amd64 {r} >/dev/null"))
            .collect();
        c.ok(n, &format!("set -e; {}", pulls.join("; ")));
    }
    // etcd: one healthy cluster of three, over mutual TLS.
    let pki = "/etc/kubernetes/pki/etcd";
    let endpoints: Vec<String> = ["master1", "master2", "master3"]
        .iter()
        .map(|n| format!("https://{}:2379", c.addr(n)))
        .collect();
    c.eventually("etcd health", || {
        let out = c.ssh(
            "master1",
            &format!(
                "ETCDCTL_API=3 etcdctl --endpoints={} --cacert={pki}/ca.crt --cert={pki}/healthcheck-client.crt --key={pki}/healthcheck-client.key endpoint health --cluster",
                endpoints.join(",")
            ),
        );
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    // keepalived holds the VIP and haproxy forwards to the apiservers.
    let vip = c.nodes.spare_address();
    c.eventually("an apiserver through the VIP", || {
        let out = c.ssh(
            "worker1",
            &format!("curl -sk --max-time 3 https://{vip}:6443/readyz"),
        );
        let body = String::from_utf8_lossy(&out.stdout);
        body.starts_with("master")
            .then_some(())
            .ok_or_else(|| format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
    });

    // Again: nothing is sent and nothing runs.
    let before = c.calls().len();
    let run = c.install(&[]).success();
    assert!(
        run.stdout.contains("nothing to do: all 5 node(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(c.calls().len(), before, "a rerun ran something");
    // A dry run says so and changes nothing.
    let run = c.install(&["--dry-run"]).success();
    assert!(
        run.stdout
            .contains("worker2: 0 file(s) would change, nothing would run")
            && run
                .stdout
                .contains("dry run: no node was changed (this host holds the store"),
        "{}",
        run.stdout
    );
    assert_eq!(c.calls().len(), before);
}

/// No node holds anything of the plan.
fn untouched(c: &Cluster) {
    for n in NODES {
        c.ok(
            n,
            "test ! -e /etc/kubernetes && test ! -e /etc/containerd/certs.d && test ! -e /usr/local/bin/kubeadm && test ! -e /var/lib/ferry",
        );
    }
}

#[test]
fn a_failure_on_one_node_names_the_node_step_and_output_and_a_rerun_finishes() {
    let c = cluster();
    c.ok("worker2", "echo kubeadm > /etc/ferry-test-fail");
    let run = c.install(&[]).failure();
    let line = run.error_line();
    for want in [
        "node worker2: [join]: `test -f /etc/kubernetes/kubelet.conf || kubeadm join --config /etc/kubernetes/ferry/kubeadm-join.yaml` exited with 1",
        "kubeadm: injected failure",
        "ferry.state/logs; rerun the same command to continue",
    ] {
        assert!(line.contains(want), "{want:?} in {line}");
    }
    let log = c.s.read("ferry.state/logs/worker2.log");
    assert!(log.contains("kubeadm: injected failure\n[exit 1]"), "{log}");
    // The fault goes; the rerun gets as far as the addons, where master1 fails.
    c.ok("worker2", "rm /etc/ferry-test-fail");
    c.ok("master1", "echo kubectl > /etc/ferry-test-fail");
    let line = c.install(&[]).failure().error_line().to_string();
    assert!(line.contains("node master1: [addons]"), "{line}");
    // Every other node is through and recorded: the last rerun runs master1's
    // steps alone (it restarted every node's services).
    c.ok("master1", "rm /etc/ferry-test-fail");
    let before = c.calls().len();
    let run = c.install(&[]).success();
    assert!(
        run.stdout.contains("installed 1 node(s) (4 unchanged)"),
        "{}",
        run.stdout
    );
    let calls = c.calls();
    assert!(
        calls[before..].iter().all(|l| l.starts_with("master1 ")),
        "{:#?}",
        &calls[before..]
    );
    let count = |p: &str| calls.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("master1 kubeadm init"), 1, "{calls:#?}");
    assert_eq!(count("master2 kubeadm join"), 1, "{calls:#?}");
    // The failed attempt and the one that worked.
    assert_eq!(count("worker2 kubeadm join"), 2, "{calls:#?}");
    c.ok("worker2", "test -f /etc/kubernetes/kubelet.conf");
}

#[test]
fn an_unknown_host_key_or_a_failed_preflight_is_refused_before_anything_changes() {
    let c = cluster();
    // worker1's host key is not known: refused, on no node anything changed.
    let known = c.s.read("known_hosts");
    let w1 = format!("{} ", c.addr("worker1"));
    c.s.write(
        "known_hosts",
        &known
            .lines()
            .filter(|l| !l.starts_with(&w1))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let line = c.install(&[]).failure().error_line().to_string();
    assert!(line.contains("node worker1"), "{line}");
    assert!(line.contains("Host key verification failed"), "{line}");
    assert!(line.contains("nothing was changed on any node"), "{line}");
    // ssh's own failure is said as one, not as the script's exit 255.
    assert!(line.contains("the SSH connection failed"), "{line}");
    assert!(!line.contains("while IFS="), "{line}");
    c.s.write("known_hosts", &known);
    untouched(&c);

    // Preflight: every problem of every node at once. worker2's kubelet port is taken;
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &c.nodes.node("worker2").netns, "python3", "-c"])
        .arg(format!(
            "import socket, time\ns = socket.socket()\ns.bind(('{}', 10250))\ns.listen()\ntime.sleep(120)",
            c.addr("worker2")
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ok("worker2", "ss -Hltn 'sport = :10250'").is_empty() {
        assert!(Instant::now() < deadline, "the listener did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // master2 has swap on, master3 lacks keepalived (hidden in its view), and
    // worker1's network does not let it reach the registry node.
    c.ok("master3", "mount --bind /dev/null /usr/sbin/keepalived");
    c.ok("master2", "echo /dev/vdb > /etc/ferry-test-swap");
    let blocked = Command::new("ip")
        .args(["netns", "exec", &c.nodes.node("worker1").netns])
        .args([
            "iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "22", "-d",
        ])
        .arg(c.addr("master1"))
        .args(["-j", "REJECT"])
        .status()
        .unwrap();
    assert!(blocked.success());
    let line = c.install(&[]).failure().error_line().to_string();
    let _ = listener.kill();
    let _ = listener.wait();
    for want in [
        "preflight: ",
        "master2: swap is on (/dev/vdb): the kubelet needs it off",
        "master3: keepalived is not installed (the OS package keepalived)",
        &format!(
            "worker1: cannot reach the registry node master1 ({} port 22)",
            c.addr("master1")
        ),
        "worker2: port 10250 (for the kubelet) is taken",
        "; nothing was changed on any node",
    ] {
        assert!(line.contains(want), "{want:?} in {line}");
    }
    untouched(&c);
}

#[test]
fn a_node_added_to_the_inventory_is_joined_and_the_others_are_left_as_they_are() {
    let c = cluster();
    let full = c.s.read("cluster.toml");
    let last = full.rfind("\n[[nodes]]").unwrap();
    assert!(full[last..].contains("name = \"worker2\""));
    c.s.write("cluster.toml", &full[..last + 1]);
    let run = c.install(&[]).success();
    assert!(run.stdout.contains("installed 4 node(s)"), "{}", run.stdout);
    c.ok("worker2", "test ! -e /usr/local/bin/kubeadm");
    let before = c.calls();

    c.s.write("cluster.toml", &full);
    let run = c.install(&[]).success();
    // worker2 joins; master1 re-applies the addon whose values name every node;
    // nobody else runs a thing.
    assert!(
        run.stdout.contains("installed 2 node(s) (3 unchanged)"),
        "{}",
        run.stdout
    );
    let after = c.calls();
    let new: Vec<&String> = after[before.len()..].iter().collect();
    assert!(
        new.iter().any(|l| l.starts_with("worker2 kubeadm join")),
        "{new:#?}"
    );
    assert!(!new.iter().any(|l| l.contains("kubeadm init")), "{new:#?}");
    for n in ["master2", "master3", "worker1"] {
        assert!(
            !new.iter().any(|l| l.starts_with(&format!("{n} "))),
            "{n}: {new:#?}"
        );
    }
    let values = c.ok(
        "master1",
        "cat /etc/kubernetes/addons/kubelet-csr-approver.values.yaml",
    );
    assert!(values.contains("worker2"), "{values}");

    // Regression: dropped from the inventory again, worker2 was left joined and
    // unmentioned, and its plan went, so reset could no longer clean it. Refused,
    // saying how to go about it; nothing is changed.
    c.s.write("cluster.toml", &full[..last + 1]);
    let before = c.calls().len();
    let line = c.install(&[]).failure().error_line().to_string();
    assert!(
        line.contains("node worker2 is in the last install's plan but not in cluster.toml: reset it first (ferry-installer reset cluster.toml worker2 --yes"),
        "{line}"
    );
    assert_eq!(c.calls().len(), before);
    assert!(c.s.path("ferry.state/plan/worker2/steps").is_file());
}

#[test]
fn reset_removes_what_install_put_on_a_node_and_nothing_else() {
    let c = cluster();
    c.install(&[]).success();
    c.ok(
        "worker1",
        "echo mine > /etc/operator-notes && mkdir -p /opt/tools && echo x > /opt/tools/x",
    );
    // Without --yes and with no terminal to ask on, nothing happens.
    let line =
        c.s.installer(&[
            "reset",
            "cluster.toml",
            "worker1",
            "--ssh-config",
            "ssh.conf",
        ])
        .failure()
        .error_line()
        .to_string();
    assert!(line.contains("pass --yes"), "{line}");
    c.ok("worker1", "test -x /usr/local/bin/kubelet");

    c.s.installer(&[
        "reset",
        "cluster.toml",
        "worker1",
        "--yes",
        "--ssh-config",
        "ssh.conf",
    ])
    .success();
    // The state no longer holds worker1 as installed (at its address, which a
    // later inventory is checked against).
    assert!(!c.s.path("ferry.state/installed-at/worker1").exists());
    assert_eq!(
        c.s.read("ferry.state/installed-at/worker2"),
        c.addr("worker2")
    );
    let planned = planned(&c.s.path("ferry.state/plan/worker1"));
    for line in &planned {
        let path = line.rsplit(' ').next().unwrap();
        c.ok("worker1", &format!("test ! -e {path}"));
    }
    c.ok(
        "worker1",
        "test ! -e /etc/kubernetes && test ! -e /var/lib/ferry && test ! -e /var/lib/containerd && ! systemctl is-active containerd",
    );
    // What was not the plan's stays, and the other nodes are as they were.
    assert_eq!(
        c.ok("worker1", "cat /etc/operator-notes /opt/tools/x"),
        "mine\nx\n"
    );
    c.ok(
        "worker2",
        "test -x /usr/local/bin/kubelet && test -f /etc/kubernetes/kubelet.conf",
    );
    assert!(c.calls().iter().any(|l| l == "worker1 kubeadm reset -f"));
    let before = c.calls().len();

    // The next install puts it back. master1's plan is unchanged, yet it renews
    // the bootstrap token before worker1 joins: the token lives 24 hours, and a
    // node is often joined again days after the install.
    let run = c.install(&[]).success();
    assert!(
        run.stdout.contains("installed 1 node(s) (4 unchanged)"),
        "{}",
        run.stdout
    );
    c.ok("worker1", "test -f /etc/kubernetes/kubelet.conf");
    let calls = c.calls().split_off(before);
    let at = |prefix: &str| calls.iter().position(|l| l.starts_with(prefix));
    let renewed = at("master1 kubeadm token create").unwrap_or_else(|| panic!("{calls:#?}"));
    let joined = at("worker1 kubeadm join").unwrap_or_else(|| panic!("{calls:#?}"));
    assert!(renewed < joined, "{calls:#?}");
    for n in ["master2", "master3", "worker2"] {
        assert!(
            !calls.iter().any(|l| l.starts_with(&format!("{n} "))),
            "{n}: {calls:#?}"
        );
    }

    // Regression: the first control plane reset and installed again ran `kubeadm
    // init` (reset had removed admin.conf, its guard), which would start a second
    // cluster beside the one master2 and master3 carry on. master2 now takes the
    // first control plane's part (its init finds the cluster there), renews the
    // token, and master1 joins again as a control plane.
    c.s.installer(&[
        "reset",
        "cluster.toml",
        "master1",
        "--yes",
        "--ssh-config",
        "ssh.conf",
    ])
    .success();
    let before = c.calls().len();
    c.install(&[]).success();
    let calls = c.calls().split_off(before);
    let at = |prefix: &str| calls.iter().position(|l| l.starts_with(prefix));
    assert!(
        !calls.iter().any(|l| l.contains("kubeadm init")),
        "{calls:#?}"
    );
    let renewed = at("master2 kubeadm token create").unwrap_or_else(|| panic!("{calls:#?}"));
    let joined = at("master1 kubeadm join").unwrap_or_else(|| panic!("{calls:#?}"));
    assert!(renewed < joined, "{calls:#?}");
    c.ok("master1", "test -f /etc/kubernetes/admin.conf");
    // master2 keeps that part: the next install has nothing to do.
    let run = c.install(&[]).success();
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);

    // Regression: a reset of several nodes stopped at the first it could not
    // reach, and did not say which were left. The others are reset, and said.
    let ssh_rule = |op: &str| {
        let ok = Command::new("ip")
            .args(["netns", "exec", &c.nodes.node("worker1").netns])
            .args([
                "iptables", op, "INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "iptables {op}");
    };
    ssh_rule("-I");
    let line =
        c.s.installer(&[
            "reset",
            "cluster.toml",
            "worker1",
            "worker2",
            "--yes",
            "--ssh-config",
            "ssh.conf",
        ])
        .failure()
        .error_line()
        .to_string();
    ssh_rule("-D");
    assert!(line.contains("node worker1"), "{line}");
    assert!(line.ends_with("(the other 1 node(s) were reset)"), "{line}");
    c.ok("worker2", "test ! -e /etc/kubernetes/kubelet.conf");
    c.ok("worker1", "test -f /etc/kubernetes/kubelet.conf");
}

#[test]
fn a_single_node_installs_itself_from_the_bundle_without_ssh() {
    let (bundle, key) = common::cluster::bundle();
    let s = Session::new();
    let nodes = Nodes::new(&["node1"]);
    let node = nodes.node("node1");
    common::cluster::inventory_on(&s, &nodes, &["node1"]);
    // ferry-installer runs on the node itself, which starts empty, with the signed
    // bundle (verified and unpacked into a store of its own); there is no sshd
    // anywhere, so anything but the local transport would fail.
    let images: Vec<String> = common::cluster::images()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let pulls: Vec<String> = images
        .iter()
        .map(|r| format!("ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d --snapshotter native --platform linux/amd64 {r} >/dev/null || exit 1"))
        .collect();
    let pki = "/etc/kubernetes/pki/etcd";
    let script = format!(
        "cd '{dir}'\n'{bin}' install cluster.toml --bundle '{bundle}' --key '{key}' --store store --pki pki || exit 1\n{pulls}\nfor i in $(seq 50); do ETCDCTL_API=3 etcdctl --endpoints=https://{addr}:2379 --cacert={pki}/ca.crt --cert={pki}/healthcheck-client.crt --key={pki}/healthcheck-client.key endpoint health && break; sleep 0.3; done\n'{bin}' install cluster.toml --store store --pki pki\n",
        dir = s.dir.path().display(),
        bin = common::bin_path("ferry-installer").display(),
        bundle = bundle.display(),
        key = key.display(),
        pulls = pulls.join("\n"),
        addr = node.address,
    );
    let out = node
        .empty(&common::cluster::standins().join("node"), &script)
        .env("FERRY_STANDIN_LOG", s.path("standins.log"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("installed 1 node(s)"), "{stdout}");
    assert!(stdout.contains("is healthy"), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing to do: all 1 node(s)"), "{stdout}");
    assert!(!stderr.contains("ssh"), "{stderr}");
    let calls = s.read("standins.log");
    assert!(calls.contains("node1 kubeadm init --config"), "{calls}");
    assert!(!calls.contains("kubeadm join"), "{calls}");
}
