//! `ferry-installer plan` end to end, against real programs wherever they run
//! here: a release unpacked into a site store and a cluster inventory give every
//! node its tree (the same bytes every time, programs hard-linked from one
//! checked copy); what the bundle or inventory lacks is refused by name; and the
//! rendered trees are taken by the real containerd, etcd, openssl, haproxy,
//! keepalived, systemd and kubernetes-validate (one module each). The nodes are
//! network namespaces on one bridge with no route out (`ferry_testkit::nodes`);
//! a node's programs run with its tree at the real paths.

#[path = "../common/mod.rs"]
mod common;

mod addons;
mod containerd;
mod etcd;
mod ha;
mod pki;
mod state;
mod units;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Session;
use ferry_testkit::image::Image;
use ferry_testkit::nodes::Nodes;

/// Every file under `dir`, by relative path: its sha256 (hex).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    common::files_under(dir)
        .into_iter()
        .map(|(rel, p)| {
            let digest = ferry::Digest::of(&std::fs::read(&p).unwrap());
            (rel, digest.hex().to_string())
        })
        .collect()
}

struct World {
    s: Session,
    images: Vec<(String, Image)>,
    /// The site store (shared by every test of the run: read it only).
    site: PathBuf,
    /// The site registry's port on master1.
    port: u16,
    /// master1, master2, master3 (control planes and etcd) and worker1, each a
    /// network namespace of its own.
    nodes: Nodes,
}

/// The release of `common::cluster` and the example 4-node inventory
/// (`init-cluster --nodes 4`) on test nodes: their addresses, the VIP a spare one
/// on their network; the site registry on master1.
fn world() -> World {
    let site = common::cluster::site();
    let s = Session::new();
    let nodes = Nodes::new(&["master1", "master2", "master3", "worker1"]);
    common::cluster::inventory_on(&s, &nodes, &["master1", "master2", "master3", "worker1"]);
    World {
        s,
        images: common::cluster::images(),
        site,
        port: 5000,
        nodes,
    }
}

impl World {
    /// A node's address.
    fn addr(&self, node: &str) -> String {
        self.nodes.node(node).address.to_string()
    }

    /// The VIP.
    fn vip(&self) -> String {
        self.nodes.spare_address().to_string()
    }

    fn plan(&self, out: &str) -> common::Run {
        self.s.installer(&[
            "plan",
            "cluster.toml",
            "--store",
            self.site.to_str().unwrap(),
            "--out",
            out,
            "--pki",
            "pki",
        ])
    }
}

/// A self-signed certificate and key, `NAME.crt` and `NAME.key` in the session.
fn self_signed(s: &Session, name: &str, cn: &str) {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
        ])
        .arg(s.path(&format!("{name}.key")))
        .arg("-out")
        .arg(s.path(&format!("{name}.crt")))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// Child processes, killed on drop.
struct Members(Vec<std::process::Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn every_node_gets_its_tree_the_same_bytes_every_time() {
    let w = world();
    let s = &w.s;
    let run = w.plan("plan").success();
    assert!(run.stdout.contains("planned 4 node(s)"), "{}", run.stdout);
    let first = tree(&s.path("plan"));
    for node in ["master1", "master2", "master3", "worker1"] {
        for file in [
            "etc/containerd/config.toml",
            "etc/containerd/certs.d/registry.k8s.io/hosts.toml",
            "etc/containerd/certs.d/docker.io/hosts.toml",
            "etc/containerd/certs.d/ferry-site-ca.crt",
            "etc/crictl.yaml",
            "etc/sysctl.d/99-ferry-kubernetes.conf",
            "etc/modules-load.d/ferry-kubernetes.conf",
            "steps",
        ] {
            assert!(
                first.contains_key(&format!("{node}/{file}")),
                "{node}/{file}"
            );
        }
    }
    let hosts = s.read("plan/master2/etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(
        hosts.contains(&format!(
            "server = \"https://{}:{}\"",
            w.addr("master1"),
            w.port
        )),
        "{hosts}"
    );
    // The registry node gets the site CA and a certificate of its own, never the
    // CA's key; no other node gets them.
    for f in ["ca.pem", "registry.pem", "registry.key"] {
        assert!(
            first.contains_key(&format!("master1/var/lib/ferry/pki/{f}")),
            "{f}"
        );
        assert!(
            !first.contains_key(&format!("master2/var/lib/ferry/pki/{f}")),
            "{f}"
        );
    }
    assert!(!first
        .keys()
        .any(|k| k.ends_with("ca.key") && k.contains("var/lib/ferry")));
    let key = std::fs::metadata(s.path("plan/master1/var/lib/ferry/pki/registry.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
    // What names the bootstrap token is readable by root alone.
    for f in [
        "master1/etc/kubernetes/ferry/kubeadm-init.yaml",
        "worker1/etc/kubernetes/ferry/kubeadm-join.yaml",
        "master1/steps",
        "worker1/steps",
    ] {
        let mode = std::fs::metadata(s.path(&format!("plan/{f}")))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // Steps come in phases, in the order install runs them.
    let steps = s.read("plan/master1/steps");
    let at = |p: &str| steps.find(p).unwrap_or_else(|| panic!("{p} in {steps}"));
    assert!(at("[prepare]\n") < at("[etcd]\n"));
    assert!(at("[etcd]\n") < at("[init]\n"));
    assert!(at("[init]\n") < at("[addons]\n"));
    assert!(s
        .read("plan/worker1/steps")
        .contains("[join]\ntest -f /etc/kubernetes/kubelet.conf || kubeadm join"));
    // A second plan is byte-identical, and never mints a new CA.
    let ca = std::fs::read(s.path("pki/ca.pem")).unwrap();
    w.plan("plan").success();
    assert_eq!(tree(&s.path("plan")), first);
    assert_eq!(std::fs::read(s.path("pki/ca.pem")).unwrap(), ca);
}

#[test]
fn a_node_arch_the_bundle_lacks_is_refused_naming_the_node() {
    let w = world();
    let inv = w.s.read("cluster.toml");
    let i = inv.find("name = \"worker1\"").unwrap();
    let fixed = format!(
        "{}{}",
        &inv[..i],
        inv[i..].replacen("arch = \"amd64\"", "arch = \"arm64\"", 1)
    );
    w.s.write("cluster.toml", &fixed);
    let line = w.plan("plan").failure().error_line().to_string();
    assert!(
        line.contains("node worker1: arch arm64 is not in the bundle (it has amd64)"),
        "{line}"
    );
    assert!(!w.s.path("plan").exists(), "a refused plan left files");
    // Nor was a CA or any cluster state made for it.
    assert!(!w.s.path("pki").exists(), "a refused plan made the site CA");
    assert!(
        !w.s.path("ferry.state").exists(),
        "a refused plan made cluster state"
    );
    // Every problem is named at once.
    let j = fixed.find("name = \"master3\"").unwrap();
    let two = format!(
        "{}{}",
        &fixed[..j],
        fixed[j..].replacen("arch = \"amd64\"", "arch = \"arm64\"", 1)
    );
    w.s.write("cluster.toml", &two);
    let line = w.plan("plan").failure().error_line().to_string();
    for node in ["master3", "worker1"] {
        assert!(
            line.contains(&format!("node {node}: arch arm64 is not in the bundle")),
            "{line}"
        );
    }
}

/// Regression: plan named only the first program and the first addon file a
/// bundle lacked, so each rerun found one more. Every one is named at once.
#[test]
fn everything_the_bundle_lacks_is_named_at_once() {
    let w = world();
    let s = &w.s;
    s.tool(
        "cp",
        &[
            "-a",
            w.site.to_str().unwrap(),
            s.path("gappy").to_str().unwrap(),
        ],
    );
    let gone = [
        "files/kubelet:",
        "files/kubeadm:",
        "files/calico.yaml:",
        "files/nodelocaldns.yaml:",
        "charts/kubelet-csr-approver:",
    ];
    let mut index: serde_json::Value = serde_json::from_str(&s.read("gappy/index.json")).unwrap();
    index["manifests"].as_array_mut().unwrap().retain(|m| {
        let name = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        !gone.iter().any(|g| name.starts_with(g))
    });
    s.write("gappy/index.json", &index.to_string());
    let run = s
        .installer(&[
            "plan",
            "cluster.toml",
            "--store",
            "gappy",
            "--out",
            "plan",
            "--pki",
            "pki",
        ])
        .failure();
    let line = run.error_line();
    assert!(line.contains("(5 problems)"), "{line}");
    for lacked in [
        "kubelet ",
        "kubeadm ",
        "calico.yaml",
        "nodelocaldns.yaml",
        "kubelet-csr-approver",
    ] {
        assert!(line.contains(lacked), "{lacked}: {line}");
    }
    assert!(!s.path("plan").exists() && !s.path("pki").exists());
}

/// Regression: `plan --out DIR` replaced whatever DIR held (the inventory, the
/// cluster's state, anything) with the plan. Only an earlier plan is replaced.
#[test]
fn an_out_directory_that_is_not_a_plan_is_refused_and_left_alone() {
    let w = world();
    let s = &w.s;
    s.write("precious/notes.txt", "keep me");
    let line = w.plan("precious").failure().error_line().to_string();
    assert!(
        line.contains("--out precious: it holds notes.txt, which is not a node's plan"),
        "{line}"
    );
    assert_eq!(s.read("precious/notes.txt"), "keep me");
    assert!(!s.path("pki").exists(), "refused, yet the site CA was made");
    // The directory holding the inventory, and the current directory.
    for out in [".", s.path("").to_str().unwrap()] {
        let line = w.plan(out).failure().error_line().to_string();
        assert!(line.contains("--out "), "{line}");
    }
    assert!(s.path("cluster.toml").is_file());
    // An empty directory and an earlier plan are fine; the earlier plan is
    // replaced whole, and nothing is left beside it.
    std::fs::create_dir(s.path("empty")).unwrap();
    w.plan("empty").success();
    std::fs::create_dir(s.path("empty/master1/stale")).unwrap();
    w.plan("empty").success();
    assert!(!s.path("empty/master1/stale").exists());
    let left: Vec<_> = std::fs::read_dir(s.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".empty"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_node_gets_its_programs_from_the_release_hard_linked_from_one_copy() {
    let w = world();
    w.plan("plan").success();
    let every = [
        "usr/local/bin/kubelet",
        "usr/local/bin/kubeadm",
        "usr/local/bin/runc",
        "usr/local/bin/containerd",
        "usr/local/bin/containerd-shim-runc-v2",
        "usr/local/bin/ctr",
        "usr/local/bin/crictl",
        "opt/cni/bin/bridge",
        "opt/cni/bin/host-local",
        "opt/cni/bin/loopback",
        "opt/cni/bin/portmap",
    ];
    let control_plane = ["usr/local/bin/kubectl", "usr/local/bin/helm"];
    let etcd = [
        "usr/local/bin/etcd",
        "usr/local/bin/etcdctl",
        "usr/local/bin/etcdutl",
    ];
    let node = |n: &str, f: &str| w.s.path(&format!("plan/{n}/{f}"));
    for n in ["master1", "master2", "master3", "worker1"] {
        for f in every {
            let meta = std::fs::metadata(node(n, f)).unwrap_or_else(|e| panic!("{n}/{f}: {e}"));
            assert_eq!(meta.mode() & 0o777, 0o755, "{n}/{f}");
            // One copy on disk for every node: a hard link each.
            assert_eq!(
                meta.ino(),
                std::fs::metadata(node("master1", f)).unwrap().ino()
            );
            assert_eq!(meta.nlink(), 4, "{n}/{f}");
        }
        let cp = n != "worker1";
        for f in control_plane.iter().chain(&etcd) {
            assert_eq!(node(n, f).exists(), cp, "{n}/{f}");
        }
    }
    // The bytes are the programs the release packed, unpacked from its archives.
    for (tree, original) in [
        ("usr/local/bin/containerd", "/usr/bin/containerd".into()),
        ("usr/local/bin/runc", "/usr/sbin/runc".into()),
        ("opt/cni/bin/portmap", "/usr/lib/cni/portmap".into()),
        ("usr/local/bin/etcd", common::cluster::etcd_bin("etcd")),
    ] {
        assert!(
            std::fs::read(
                node("worker1", tree)
                    .to_str()
                    .unwrap()
                    .replace("worker1", "master1")
            )
            .unwrap()
                == std::fs::read(&original).unwrap(),
            "{tree} differs from {}",
            original.display()
        );
    }
    assert_eq!(
        std::fs::read(node("master1", "usr/local/bin/kubelet")).unwrap(),
        common::cluster::stand_in("kubelet")
    );
    // The registry node runs this very ferry-installer; no other node gets it.
    assert_eq!(
        std::fs::read(node("master1", "usr/local/bin/ferry-installer")).unwrap(),
        std::fs::read(common::bin_path("ferry-installer")).unwrap()
    );
    assert!(!node("master2", "usr/local/bin/ferry-installer").exists());
    // Nothing of the unpacking is left beside the plan.
    let beside: Vec<_> = std::fs::read_dir(w.s.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".plan"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    assert!(!w.s.path("plan/.programs").exists());
}
