//! The release specs Ferry ships (`manifests/*.toml`) and the examples in README.md:
//! every spec parses, every upstream registry and file host in it has a rule in the
//! built-in `mirrors.toml` (or `lock` could not use the China mirrors for it), every
//! file is pinned for every platform it lists, and the Kubernetes 1.31 spec is the
//! image set kubeadm 1.31 pulls plus the addons, with the node binaries.

use std::path::{Path, PathBuf};

use ferry::spec::Spec;
use ferry_bundler::mirrors::MirrorRules;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `manifests/*.toml`, sorted.
fn shipped_specs() -> Vec<PathBuf> {
    let dir = repo_root().join("manifests");
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    specs.sort();
    specs
}

#[test]
fn every_image_of_every_shipped_spec_parses_and_its_host_has_a_default_mirror_rule() {
    let specs = shipped_specs();
    assert!(
        specs.iter().any(|p| p.ends_with("kubernetes-1.31.toml")),
        "{specs:?}"
    );
    let rules = MirrorRules::defaults();
    assert!(
        rules.rule("registry.example.invalid").is_none(),
        "the check is real"
    );
    let mut missing = Vec::new();
    for path in &specs {
        let spec = Spec::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!spec.images.is_empty(), "{} names no image", path.display());
        for image in &spec.images {
            let host = image.reference.registry();
            if rules.rule(host).is_none() {
                missing.push(format!("{}: {} ({host})", path.display(), image.reference));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "images whose upstream host has no rule in mirrors.toml:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_file_of_every_shipped_spec_is_pinned_per_platform_and_its_host_has_a_rule() {
    let rules = MirrorRules::defaults();
    assert!(
        rules.file_rule("files.example.invalid").is_none(),
        "the check is real"
    );
    let mut problems = Vec::new();
    for path in shipped_specs() {
        let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for file in &spec.files {
            for target in file.targets() {
                let url = file.url_for(target.as_ref());
                let host = url
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .unwrap();
                if rules.file_rule(host).is_none() {
                    problems.push(format!(
                        "{}: {url}: no [[files]] rule for {host}",
                        path.display()
                    ));
                }
                // Binaries and archives are pinned from upstream for every platform;
                // only platform-independent manifests may wait for `lock`.
                if let (Some(platform), None) = (&target, file.pin(target.as_ref())) {
                    problems.push(format!(
                        "{}: file {} {} has no sha256 for {platform}",
                        path.display(),
                        file.name,
                        file.version,
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn kubernetes_1_31_is_what_kubeadm_pulls_plus_the_addons_and_the_node_binaries() {
    let spec = Spec::load(&repo_root().join("manifests/kubernetes-1.31.toml")).unwrap();
    assert_eq!(spec.name, "kubernetes");
    assert_eq!(spec.version, "1.31.14");
    let platforms: Vec<String> = spec.platforms.iter().map(ToString::to_string).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let images: Vec<String> = spec
        .images
        .iter()
        .map(|i| i.reference.to_string())
        .collect();
    // `kubeadm config images list --kubernetes-version v1.31.14` (see the spec's
    // comments for where each version comes from):
    let kubeadm = [
        "registry.k8s.io/kube-apiserver:v1.31.14",
        "registry.k8s.io/kube-controller-manager:v1.31.14",
        "registry.k8s.io/kube-scheduler:v1.31.14",
        "registry.k8s.io/kube-proxy:v1.31.14",
        "registry.k8s.io/pause:3.10",
        "registry.k8s.io/etcd:3.5.24-0",
        "registry.k8s.io/coredns/coredns:v1.11.3",
    ];
    let addons = [
        "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0",
        "docker.io/calico/cni:v3.29.7",
        "docker.io/calico/node:v3.29.7",
        "docker.io/calico/kube-controllers:v3.29.7",
        "registry.k8s.io/metrics-server/metrics-server:v0.7.0",
        "ghcr.io/postfinance/kubelet-csr-approver:v1.1.0",
    ];
    let want: Vec<&str> = kubeadm.iter().chain(&addons).copied().collect();
    assert_eq!(images, want);
    for name in &images[..4] {
        assert!(name.ends_with(&format!(":v{}", spec.version)), "{name}");
    }
    for image in &spec.images {
        assert_eq!(image.platforms, spec.platforms, "{}", image.reference);
    }
    let files: Vec<String> = spec
        .files
        .iter()
        .map(|f| format!("{} {}", f.name, f.version))
        .collect();
    assert_eq!(
        files,
        [
            "kubelet 1.31.14",
            "kubeadm 1.31.14",
            "kubectl 1.31.14",
            "containerd 1.7.27",
            "runc 1.2.6",
            "cni-plugins 1.4.1",
            "crictl 1.31.1",
            "helm 3.16.4",
            "etcd 3.5.29",
            "calico.yaml 3.29.7",
            "nodelocaldns.yaml 1.31.14",
            "metrics-server-components.yaml 0.7.0",
        ]
    );
    // The Kubernetes binaries carry the spec's version; the rest are per platform too.
    for f in &spec.files[..3] {
        assert_eq!(f.version, spec.version, "{}", f.name);
    }
    for f in &spec.files[..9] {
        assert_eq!(f.platforms, spec.platforms, "{}", f.name);
    }
    let charts: Vec<String> = spec
        .charts
        .iter()
        .map(|c| format!("{} {}", c.name, c.version))
        .collect();
    assert_eq!(charts, ["kubelet-csr-approver 1.1.0"]);
}

/// The ```toml blocks of README.md: a spec (`name = ...`) or mirror rules.
fn readme_toml_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_toml_examples_in_the_readme_parse() {
    let blocks = readme_toml_blocks();
    let (mut specs, mut rules) = (0, 0);
    for block in &blocks {
        if block.starts_with("[registry]") {
            // An inventory's registry section: the example inventory with it instead.
            let example = ferry_installer::install::example::example(3);
            let start = example.find("[registry]").unwrap();
            let end = start + example[start..].find("\n[ha]").unwrap();
            let inv = format!("{}{block}{}", &example[..start], &example[end..]);
            ferry_installer::install::inventory::Inventory::parse(Path::new("README.md"), &inv)
                .unwrap_or_else(|e| panic!("{e}\n{inv}"));
        } else if block.starts_with("server = ") {
            // A hosts.toml as plan writes it for a pushed-to registry.
            let t: toml::Table = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
            assert_eq!(t["override_path"].as_bool(), Some(true), "{block}");
        } else if block.contains("[[registry]]") || block.starts_with("[[files]]") {
            MirrorRules::parse(Path::new("README.md"), block)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
            rules += 1;
        } else {
            Spec::parse(Path::new("README.md"), block).unwrap_or_else(|e| panic!("{e}\n{block}"));
            specs += 1;
        }
    }
    assert!(specs >= 1 && rules >= 1, "{blocks:?}");
}
