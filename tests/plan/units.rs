use super::*;

#[test]
fn systemd_analyze_verify_accepts_every_rendered_unit() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let units = s.path("plan/master1/etc/systemd/system");
    let names = [
        "containerd.service",
        "etcd.service",
        "ferry-etcd-snapshot.service",
        "ferry-etcd-snapshot.timer",
        "kubelet.service",
        "ferry-registry.service",
    ];
    for n in names {
        assert!(units.join(n).is_file(), "{n}");
    }
    assert!(s
        .path("plan/worker1/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
        .is_file());
    assert!(!s
        .path("plan/worker1/etc/systemd/system/ferry-registry.service")
        .exists());
    // verify wants each ExecStart to be executable: the node's own planned
    // /usr/local/bin, bound there in this mount namespace only.
    let script = format!(
        "set -e\nmount --bind '{}' /usr/local/bin\ncd '{}'\nsystemd-analyze verify {}\n",
        s.path("plan/master1/usr/local/bin").display(),
        units.display(),
        names.join(" ")
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubeadm_configs_pin_the_rendered_ca_and_share_one_bootstrap_token() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let init = s.read("plan/master1/etc/kubernetes/ferry/kubeadm-init.yaml");
    let join_cp = s.read("plan/master2/etc/kubernetes/ferry/kubeadm-join.yaml");
    let join_worker = s.read("plan/worker1/etc/kubernetes/ferry/kubeadm-join.yaml");
    assert!(!s
        .path("plan/master1/etc/kubernetes/ferry/kubeadm-join.yaml")
        .exists());
    // What openssl says the CA's public-key hash is, as kubeadm computes it.
    let hash = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1",
            s.path("plan/master1/etc/kubernetes/pki/ca.crt").display()
        ))
        .output()
        .unwrap();
    let hash = format!("sha256:{}", String::from_utf8_lossy(&hash.stdout).trim());
    assert_eq!(hash.len(), 71, "{hash}");
    for join in [&join_cp, &join_worker] {
        assert!(join.contains(&format!("- \"{hash}\"")), "{join}");
    }
    assert!(join_cp.contains("controlPlane:") && !join_worker.contains("controlPlane:"));
    // One token, of kubeadm's form, in the init config and every join.
    let token = s.read("ferry.state/bootstrap-token").trim().to_string();
    let (a, b) = token.split_once('.').unwrap();
    assert!(a.len() == 6 && b.len() == 16, "{token}");
    assert!(token
        .chars()
        .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
    for text in [&init, &join_cp, &join_worker] {
        assert!(text.contains(&format!("token: \"{token}\"")), "{text}");
    }
    for needle in [
        "kubernetesVersion: v1.31.14".to_string(),
        format!("controlPlaneEndpoint: \"{}:6443\"", w.vip()),
        "imageRepository: registry.k8s.io".to_string(),
        "encryptionAlgorithm: ECDSA-P256".to_string(),
        format!("- https://{}:2379", w.addr("master2")),
        "certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt".to_string(),
        format!("- \"{}\"", w.vip()),
        "cgroupDriver: systemd".to_string(),
        "serverTLSBootstrap: true".to_string(),
        "- 169.254.20.10".to_string(),
        "memory.available: 300Mi".to_string(),
        "mode: ipvs".to_string(),
        "strictARP: true".to_string(),
    ] {
        assert!(init.contains(needle.as_str()), "{needle}:\n{init}");
    }
    // Every document parses as YAML and names its kind.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\nfor p in sys.argv[1:]:\n  print(p, [d['kind'] for d in yaml.safe_load_all(open(p))])",
        ])
        .arg(s.path("plan/master1/etc/kubernetes/ferry/kubeadm-init.yaml"))
        .arg(s.path("plan/worker1/etc/kubernetes/ferry/kubeadm-join.yaml"))
        .output()
        .unwrap();
    let kinds = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        kinds.contains("['InitConfiguration', 'ClusterConfiguration', 'KubeletConfiguration', 'KubeProxyConfiguration']"),
        "{kinds}"
    );
    assert!(kinds.contains("['JoinConfiguration']"), "{kinds}");
}

/// Checks every key of the YAML documents in the files named on its command line
/// against the key schemas of kubeadm 1.31's configuration types (tests/data/
/// kubeadm-1.31, from the v1.31 Go types: see SOURCES.md there); prints one line
/// per unknown key and exits 1 if there is any.
const KEY_CHECK: &str = r#"
import json, sys, yaml
data = sys.argv[1]
schemas = {}
for f in ["kubeadm-v1beta4-keys.json", "kubelet-v1beta1-keys.json", "kubeproxy-v1alpha1-keys.json"]:
    schemas.update(json.load(open(f"{data}/{f}")))
bad = []
def walk(value, schema, path):
    if isinstance(schema, str):
        if isinstance(value, dict) and not schema.startswith("map["):
            bad.append(f"{path}: a map where the type is {schema}")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            bad.append(f"{path}: not a list"); return
        for i, v in enumerate(value):
            walk(v, schema[0], f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        bad.append(f"{path}: not a map"); return
    for k, v in value.items():
        if k not in schema:
            bad.append(f"{path}.{k}: no such key")
        else:
            walk(v, schema[k], f"{path}.{k}")
for name in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(name)):
        if doc is None:
            continue
        kind = doc.get("kind")
        if kind not in schemas:
            bad.append(f"{name}: kind {kind} is not a kubeadm 1.31 configuration"); continue
        walk(doc, schemas[kind], f"{name}: {kind}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;

fn key_check(files: &[PathBuf]) -> std::process::Output {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kubeadm-1.31");
    Command::new("python3")
        .arg("-c")
        .arg(KEY_CHECK)
        .arg(data)
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn every_kubeadm_kubelet_and_kube_proxy_key_exists_in_kubeadm_1_31() {
    let w = world();
    let s = &w.s;
    w.plan("plan").success();
    let files: Vec<PathBuf> = ["master1", "master2", "worker1"]
        .iter()
        .flat_map(|n| {
            ["kubeadm-init.yaml", "kubeadm-join.yaml"]
                .iter()
                .map(move |f| s.path(&format!("plan/{n}/etc/kubernetes/ferry/{f}")))
        })
        .filter(|p| p.exists())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let out = key_check(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a key 1.31 does not have (kubelet's crashLoopBackOff came
    // in 1.32), a misspelt nested one, and a list where a map belongs.
    let init = std::fs::read_to_string(&files[0]).unwrap();
    let wrong = s.write(
        "wrong.yaml",
        &init
            .replace(
                "cgroupDriver: systemd",
                "cgroupDriver: systemd\ncrashLoopBackOff: {}",
            )
            .replace("advertiseAddress:", "advertizeAddress:"),
    );
    let out = key_check(&[wrong]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("KubeletConfiguration.crashLoopBackOff: no such key"),
        "{text}"
    );
    assert!(
        text.contains("localAPIEndpoint.advertizeAddress: no such key"),
        "{text}"
    );
}

/// Regression: a lone node's plan refreshed the bootstrap token in a join phase no
/// node joins in. The refresh comes when a node is added, which changes the first
/// control plane's plan, so install runs it before the join.
#[test]
fn the_bootstrap_token_is_refreshed_only_when_a_node_joins() {
    let s = Session::new();
    let site = common::cluster::site();
    let plan = || {
        s.installer(&[
            "plan",
            "cluster.toml",
            "--store",
            site.to_str().unwrap(),
            "--out",
            "plan",
            "--pki",
            "pki",
        ])
        .success()
    };
    s.installer(&["init-cluster", "--nodes", "1"]).success();
    plan();
    let steps = s.read("plan/node1/steps");
    assert!(steps.contains("kubeadm init --config"), "{steps}");
    assert!(!steps.contains("kubeadm token"), "{steps}");
    assert!(!steps.contains("[join]"), "{steps}");
    // kubeadm init still makes the cluster's one token, named in its config.
    let token = s.read("ferry.state/bootstrap-token").trim().to_string();
    assert!(s
        .read("plan/node1/etc/kubernetes/ferry/kubeadm-init.yaml")
        .contains(&format!("token: \"{token}\"")));

    let mut inv = s.read("cluster.toml");
    inv.push_str(
        "\n[[nodes]]\nname = \"worker1\"\naddress = \"192.168.10.12\"\nroles = [\"worker\"]\n",
    );
    s.write("cluster.toml", &inv);
    plan();
    let steps = s.read("plan/node1/steps");
    let join = steps.split("[join]").nth(1).expect("a join phase");
    assert!(
        join.contains(&format!("kubeadm token create {token} ")),
        "{steps}"
    );
}
