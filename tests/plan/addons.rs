use super::*;

/// `kubernetes-validate --strict` (PyPI) of `files` against Kubernetes 1.31's schemas.
fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.31.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate) is missing")
}

#[test]
fn addons_are_rendered_from_the_bundle_and_validate_against_kubernetes_1_31() {
    let w = world();
    let s = &w.s;
    s.write(
        "cluster.toml",
        &s.read("cluster.toml")
            .replace("cni_mtu = 0", "cni_mtu = 1450"),
    );
    w.plan("plan").success();
    let dir = "etc/kubernetes/addons";
    let names = [
        "calico.yaml",
        "nodelocaldns.yaml",
        "metrics-server.yaml",
        "kubelet-csr-approver.values.yaml",
    ];
    for n in names {
        assert!(s.path(&format!("plan/master1/{dir}/{n}")).is_file(), "{n}");
        assert!(!s.path(&format!("plan/master2/{dir}/{n}")).exists(), "{n}");
    }
    let manifests: Vec<PathBuf> = names[..3]
        .iter()
        .map(|n| s.path(&format!("plan/master1/{dir}/{n}")))
        .collect();
    let out = validate(&manifests);
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator can fail: a field no Deployment has.
    let broken = s.write(
        "broken.yaml",
        &s.read(&format!("plan/master1/{dir}/metrics-server.yaml"))
            .replace("serviceAccountName:", "serviceAcountName:"),
    );
    assert!(!validate(&[broken]).status.success());

    // What was edited, read back by a YAML parser that is not ours (PyYAML).
    let facts = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import sys, yaml
d = sys.argv[1]
docs = [x for x in yaml.safe_load_all(open(f"{d}/calico.yaml")) if x]
cm = next(x for x in docs if x["kind"] == "ConfigMap" and x["metadata"]["name"] == "calico-config")
ds = next(x for x in docs if x["kind"] == "DaemonSet" and x["metadata"]["name"] == "calico-node")
node = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "calico-node")
env = {e["name"]: e.get("value") for e in node["env"]}
print("veth_mtu", cm["data"]["veth_mtu"])
print("pool", env["CALICO_IPV4POOL_CIDR"])
print("ipip", env["CALICO_IPV4POOL_IPIP"])
dns = [x for x in yaml.safe_load_all(open(f"{d}/nodelocaldns.yaml")) if x]
core = next(x for x in dns if x["kind"] == "ConfigMap")["data"]["Corefile"]
print("corefile", core.replace("\n", "|"))
v = yaml.safe_load(open(f"{d}/kubelet-csr-approver.values.yaml"))
print("regex", v["providerRegex"])
print("prefixes", ",".join(v["providerIpPrefixes"]))
print("bypass", v["bypassDnsResolution"])
"#,
        )
        .arg(s.path(&format!("plan/master1/{dir}")))
        .output()
        .unwrap();
    let facts = String::from_utf8_lossy(&facts.stdout);
    for want in [
        "veth_mtu 1450\n",
        "pool 10.233.64.0/18\n",
        // Upstream's own setting, kept.
        "ipip Always\n",
        "regex ^(master1|master2|master3|worker1)$\n",
        "bypass True\n",
        &format!(
            "prefixes {}/32,{}/32,{}/32,{}/32\n",
            w.addr("master1"),
            w.addr("master2"),
            w.addr("master3"),
            w.addr("worker1")
        ),
    ] {
        assert!(facts.contains(want), "{want:?} in\n{facts}");
    }
    // kube-proxy is in IPVS mode: node-local-dns binds the link-local address only
    // and forwards cluster names to kube-dns (the 10th service address).
    let core = facts.lines().find(|l| l.starts_with("corefile")).unwrap();
    assert!(core.contains("cluster.local:53 {"), "{core}");
    assert!(core.contains("bind 169.254.20.10|"), "{core}");
    assert!(core.contains("forward . 10.233.0.10 {"), "{core}");
    assert!(
        !core
            .replace("__PILLAR__UPSTREAM__SERVERS__", "")
            .contains("__PILLAR__"),
        "{core}"
    );

    // master1 makes the cluster, then applies the addons; the others join.
    let steps = s.read("plan/master1/steps");
    let init = steps.find("kubeadm init --config").expect(&steps);
    let calico = steps
        .find("apply --server-side -f /etc/kubernetes/addons/calico.yaml")
        .expect(&steps);
    assert!(init < calico, "{steps}");
    assert!(
        steps.contains(&format!(
            "helm upgrade --install kubelet-csr-approver oci://{}:{}/charts/kubelet-csr-approver --version 1.2.10 ",
            w.addr("master1"),
            w.port
        )),
        "{steps}"
    );
    let join = s.read("plan/worker1/steps");
    assert!(join.contains("kubeadm join --config"), "{join}");
    assert!(!join.contains("addons"), "{join}");
}

#[test]
fn an_image_an_addon_runs_that_the_bundle_lacks_is_refused_by_name() {
    let w = world();
    let lacking = common::cluster::site_lacking();
    let run = w.s.installer(&[
        "plan",
        "cluster.toml",
        "--store",
        lacking.to_str().unwrap(),
        "--out",
        "plan",
        "--pki",
        "pki",
    ]);
    let line = run.failure().error_line().to_string();
    assert!(
        line.contains(&format!(
            "the addons run images the bundle lacks: {} (in calico.yaml)",
            common::cluster::LEFT_OUT
        )),
        "{line}"
    );
    assert!(!w.s.path("plan").exists(), "a refused plan left files");
}

#[test]
fn a_store_with_two_releases_plans_the_one_named() {
    let w = world();
    let s = &w.s;
    for b in [
        common::cluster::bundle().0,
        common::cluster::bundle_lacking(),
    ] {
        unpack_into(s, &b, "two");
    }
    let plan = |release: Option<&str>| {
        let mut args = vec![
            "plan",
            "cluster.toml",
            "--store",
            "two",
            "--out",
            "plan",
            "--pki",
            "pki",
        ];
        if let Some(r) = release {
            args.extend(["--release", r]);
        }
        s.installer(&args)
    };
    let line = plan(None).failure().error_line().to_string();
    assert!(
        line.contains(
            "holds releases test:1.0.0, test:1.0.1: choose one with --release NAME:VERSION"
        ),
        "{line}"
    );
    plan(Some("test:1.0.0")).success();
    // The other release is the one without calico/node: planning it says so.
    let line = plan(Some("test:1.0.1")).failure().error_line().to_string();
    assert!(line.contains(common::cluster::LEFT_OUT), "{line}");
    let line = plan(Some("test:2.0.0")).failure().error_line().to_string();
    assert!(
        line.contains("holds no release test:2.0.0 (it holds test:1.0.0, test:1.0.1)"),
        "{line}"
    );
}

#[test]
fn a_tag_a_later_release_moved_is_named_at_unpack_and_refused_by_plan_until_unpacked_again() {
    let w = world();
    let s = &w.s;
    let bundle = common::cluster::bundle().0;
    let unpack = |b: &std::path::Path| unpack_into(s, b, "three");
    let plan = |release: &str| plan_release(s, "three", release);
    assert!(!unpack(&bundle).stderr.contains("warning"));
    let busybox = "docker.io/library/busybox:1.36";
    let index = |release: &str| -> serde_json::Value {
        serde_json::from_str(&s.read("three/index.json"))
            .unwrap_or_else(|e| panic!("{release}: {e}"))
    };
    let digest_of = |v: &serde_json::Value| -> String {
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == busybox)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let old = digest_of(&index("test 1.0.0"));
    let moved = unpack(&common::cluster::bundle_moved());
    let new = digest_of(&index("test 1.0.2"));
    assert_ne!(old, new);
    assert!(
        moved.stderr.contains(&format!(
            "warning: {busybox} moved to {new} (test 1.0.2) from {old} (test 1.0.0): test 1.0.0 no longer plans until its bundle is unpacked again"
        )),
        "{}",
        moved.stderr
    );
    assert_eq!(
        moved.stderr.matches("warning:").count(),
        1,
        "{}",
        moved.stderr
    );
    plan("test:1.0.2").success();
    let line = plan("test:1.0.0").failure().error_line().to_string();
    assert!(
        line.contains(&format!(
            "three no longer holds test 1.0.0 as it was unpacked: {busybox} is {new} (test 1.0.2's), not {old}; unpack test 1.0.0's bundle again"
        )),
        "{line}"
    );
    // Unpacked again, the older release has its tag back, and the later one is refused.
    assert!(unpack(&bundle)
        .stderr
        .contains(&format!("{busybox} moved to {old} (test 1.0.0)")));
    plan("test:1.0.0").success();
    plan("test:1.0.2").failure();
}

#[test]
fn gc_retire_drops_the_names_only_that_release_gives_and_gc_takes_their_blobs() {
    let w = world();
    let s = &w.s;
    let bundle = common::cluster::bundle().0;
    let unpack = |b: &std::path::Path| unpack_into(s, b, "st");
    unpack(&bundle);
    unpack(&common::cluster::bundle_moved());
    let busybox = "docker.io/library/busybox:1.36";
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc", "--store", "st", "--grace", "0s"];
        args.extend(extra);
        s.installer(&args)
    };
    let index = s.read("st/index.json");
    // The dry run names what would go, and changes nothing.
    let dry = gc(&["--retire", "test:1.0.2", "--dry-run"]).success();
    assert!(
        dry.stderr.contains(&format!("would drop {busybox}\n")),
        "{}",
        dry.stderr
    );
    assert_eq!(
        dry.stderr.matches("would drop").count(),
        1,
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains("would retire test:1.0.2: 1 name(s); "),
        "{}",
        dry.stderr
    );
    // Both busybox images: 1.0.0's, unreached since the move, and 1.0.2's.
    assert!(
        dry.stderr.contains("would remove 6 blob(s)"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        s.read("st/index.json"),
        index,
        "a dry run changed index.json"
    );

    let done = gc(&["--retire", "test:1.0.2"]).success();
    assert!(
        done.stderr.contains("retired test:1.0.2: 1 name(s); "),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("removed 6 blob(s)"), "{}", done.stderr);
    let index = s.read("st/index.json");
    assert!(!index.contains(busybox), "{index}");
    assert!(index.contains("docker.io/calico/node:v3.29.7"), "{index}");
    let plan = |release: &str| plan_release(s, "st", release);
    let line = plan("test:1.0.2").failure().error_line().to_string();
    assert!(
        line.contains("st holds no release test:1.0.2 (it holds test:1.0.0)"),
        "{line}"
    );
    let line = plan("test:1.0.0").failure().error_line().to_string();
    assert!(line.contains(&format!("{busybox} is gone")), "{line}");
    unpack(&bundle);
    plan("test:1.0.0").success();

    let line = gc(&["--retire", "test:9"])
        .failure()
        .error_line()
        .to_string();
    assert!(
        line.contains("st holds no release test:9 (it holds test:1.0.0)"),
        "{line}"
    );
    gc(&["--retire", "test"]).usage();
}

/// `ferry-installer unpack BUNDLE --store STORE`, signed by the cluster release's key.
fn unpack_into(s: &common::Session, bundle: &std::path::Path, store: &str) -> common::Run {
    let key = common::cluster::bundle().1;
    s.installer(&[
        "unpack",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        store,
    ])
    .success()
}

/// `ferry-installer plan cluster.toml --store STORE --release RELEASE`, not yet checked.
fn plan_release(s: &common::Session, store: &str, release: &str) -> common::Run {
    s.installer(&[
        "plan",
        "cluster.toml",
        "--store",
        store,
        "--out",
        "plan",
        "--pki",
        "pki",
        "--release",
        release,
    ])
}
