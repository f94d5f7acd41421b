//! The cluster's addons, from the bundle's pinned upstream manifests and charts,
//! rendered by editing the parsed YAML (never by replacing text in it): Calico
//! with the pod CIDR and MTU, NodeLocal DNSCache with its `__PILLAR__`
//! placeholders filled as the Kubernetes documentation says for the proxy mode,
//! and the values kubelet-csr-approver is installed with.

use std::net::IpAddr;

use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use crate::install::inventory::Node;

/// NodeLocal DNSCache's link-local address (the Kubernetes documentation's
/// example, and what every node's kubelet is given as its cluster DNS).
pub const NODE_LOCAL_DNS: &str = "169.254.20.10";

fn load(text: &str) -> Result<Vec<Yaml>, String> {
    YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))
}

fn emit(docs: &[Yaml]) -> Result<String, String> {
    let mut out = String::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline_strings(true);
        emitter.dump(doc).map_err(|e| e.to_string())?;
        out.push('\n');
    }
    Ok(out)
}

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

/// The value at `path` of nested maps.
fn at<'a>(mut y: &'a mut Yaml, path: &[&str]) -> Option<&'a mut Yaml> {
    for k in path {
        y = match y {
            Yaml::Hash(h) => h.get_mut(&key(k))?,
            _ => return None,
        };
    }
    Some(y)
}

fn is(doc: &Yaml, kind: &str, name: &str) -> bool {
    doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
}

/// The container `name` of a workload's pod template.
fn container<'a>(doc: &'a mut Yaml, name: &str) -> Option<&'a mut Yaml> {
    match at(doc, &["spec", "template", "spec", "containers"])? {
        Yaml::Array(list) => list.iter_mut().find(|c| c["name"].as_str() == Some(name)),
        _ => None,
    }
}

/// Sets (or adds) the environment variable `name` of a container.
fn set_env(container: &mut Yaml, name: &str, value: &str) -> Result<(), String> {
    let Yaml::Hash(c) = container else {
        return Err("a container is not a map".into());
    };
    let env = c
        .entry(key("env"))
        .or_insert_with(|| Yaml::Array(Vec::new()));
    let Yaml::Array(env) = env else {
        return Err("a container's env is not a list".into());
    };
    env.retain(|e| e["name"].as_str() != Some(name));
    let mut var = yaml_rust2::yaml::Hash::new();
    var.insert(key("name"), key(name));
    var.insert(key("value"), key(value));
    env.push(Yaml::Hash(var));
    Ok(())
}

/// Calico's manifest with the IPv4 pool on the pod CIDR (`CALICO_IPV4POOL_CIDR`
/// of the calico-node container, which upstream leaves commented out) and the
/// pods' MTU (`veth_mtu` of the calico-config ConfigMap; 0 lets Calico detect it).
pub fn calico(text: &str, pod_cidr: &str, mtu: u32) -> Result<String, String> {
    let mut docs = load(text)?;
    let (mut pool, mut veth) = (false, false);
    for doc in &mut docs {
        if is(doc, "ConfigMap", "calico-config") {
            let mtu_value = at(doc, &["data", "veth_mtu"])
                .ok_or("the calico-config ConfigMap has no data.veth_mtu")?;
            *mtu_value = Yaml::String(mtu.to_string());
            veth = true;
        }
        if is(doc, "DaemonSet", "calico-node") {
            let c = container(doc, "calico-node")
                .ok_or("the calico-node DaemonSet has no calico-node container")?;
            set_env(c, "CALICO_IPV4POOL_CIDR", pod_cidr)?;
            pool = true;
        }
    }
    match (pool, veth) {
        (false, _) => Err("it has no calico-node DaemonSet".into()),
        (_, false) => Err("it has no calico-config ConfigMap".into()),
        _ => emit(&docs),
    }
}

/// What fills NodeLocal DNSCache's placeholders.
pub struct NodeLocalDns<'a> {
    pub domain: &'a str,
    /// The kube-dns Service's address (the 10th of the service CIDR, as kubeadm
    /// gives it).
    pub kube_dns: IpAddr,
    pub ipvs: bool,
}

/// Replaces the placeholders in every string of the document, as the Kubernetes
/// documentation's `sed` lines do (tasks/administer-cluster/nodelocaldns):
/// with kube-proxy in IPVS mode node-local-dns listens on the link-local address
/// only and forwards to kube-dns itself; in iptables mode it also takes the
/// kube-dns address and fills `__PILLAR__CLUSTER__DNS__` at run time.
/// `__PILLAR__UPSTREAM__SERVERS__` is always filled by node-cache at run time.
fn pillars(y: &mut Yaml, p: &NodeLocalDns<'_>) {
    match y {
        Yaml::String(s) if s.contains("__PILLAR__") => {
            let kube_dns = p.kube_dns.to_string();
            let mut t = s
                .replace("__PILLAR__LOCAL__DNS__", NODE_LOCAL_DNS)
                .replace("__PILLAR__DNS__DOMAIN__", p.domain);
            if p.ipvs {
                t = t
                    .replace(",__PILLAR__DNS__SERVER__", "")
                    .replace(" __PILLAR__DNS__SERVER__", "")
                    .replace("__PILLAR__DNS__SERVER__", "")
                    .replace("__PILLAR__CLUSTER__DNS__", &kube_dns);
            } else {
                t = t.replace("__PILLAR__DNS__SERVER__", &kube_dns);
            }
            *s = t;
        }
        Yaml::Hash(h) => h.iter_mut().for_each(|(_, v)| pillars(v, p)),
        Yaml::Array(a) => a.iter_mut().for_each(|v| pillars(v, p)),
        _ => {}
    }
}

/// The placeholders node-cache fills itself at run time.
const RUNTIME_PILLARS: &[&str] = &["__PILLAR__UPSTREAM__SERVERS__", "__PILLAR__CLUSTER__DNS__"];

fn leftover(y: &Yaml, p: &NodeLocalDns<'_>, out: &mut Vec<String>) {
    match y {
        Yaml::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("__PILLAR__") {
                let tail = &rest[i + "__PILLAR__".len()..];
                // A placeholder runs on in capitals and underscores.
                let end = tail
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(tail.len());
                let name = format!("__PILLAR__{}", &tail[..end]);
                let runtime = RUNTIME_PILLARS.contains(&name.as_str())
                    && (name.contains("UPSTREAM") || !p.ipvs);
                if !runtime && !out.contains(&name) {
                    out.push(name);
                }
                rest = &tail[end..];
            }
        }
        Yaml::Hash(h) => h.iter().for_each(|(_, v)| leftover(v, p, out)),
        Yaml::Array(a) => a.iter().for_each(|v| leftover(v, p, out)),
        _ => {}
    }
}

/// NodeLocal DNSCache's manifest with its placeholders filled.
pub fn nodelocaldns(text: &str, p: &NodeLocalDns<'_>) -> Result<String, String> {
    let mut docs = load(text)?;
    docs.iter_mut().for_each(|d| pillars(d, p));
    let mut left = Vec::new();
    docs.iter().for_each(|d| leftover(d, p, &mut left));
    if !left.is_empty() {
        return Err(format!(
            "it has placeholders no one fills: {}",
            left.join(", ")
        ));
    }
    emit(&docs)
}

/// The values kubelet-csr-approver is installed with: it approves a kubelet's
/// serving certificate only for the inventory's node names and addresses
/// (`providerRegex`, `providerIpPrefixes`), without DNS, which an air-gapped site
/// may not have for its nodes (`bypassDnsResolution`).
pub fn csr_approver_values(nodes: &[Node], domain: &str) -> Result<String, String> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.replace('.', "\\.")).collect();
    let mut values = yaml_rust2::yaml::Hash::new();
    let mut global = yaml_rust2::yaml::Hash::new();
    global.insert(key("clusterDomain"), key(domain));
    values.insert(key("global"), Yaml::Hash(global));
    values.insert(
        key("providerRegex"),
        key(&format!("^({})$", names.join("|"))),
    );
    values.insert(
        key("providerIpPrefixes"),
        Yaml::Array(
            nodes
                .iter()
                .map(|n| match n.address {
                    IpAddr::V4(a) => key(&format!("{a}/32")),
                    IpAddr::V6(a) => key(&format!("{a}/128")),
                })
                .collect(),
        ),
    );
    values.insert(key("bypassDnsResolution"), Yaml::Boolean(true));
    let text = emit(&[Yaml::Hash(values)])?;
    Ok(format!(
        "# Written by ferry-installer plan: helm values for kubelet-csr-approver.\n{text}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALICO: &str = r#"
kind: ConfigMap
apiVersion: v1
metadata:
  name: calico-config
  namespace: kube-system
data:
  veth_mtu: "0"
  cni_network_config: |-
    {
      "name": "k8s-pod-network"
    }
---
kind: DaemonSet
apiVersion: apps/v1
metadata:
  name: calico-node
spec:
  template:
    spec:
      containers:
        - name: calico-node
          image: docker.io/calico/node:v3.29.7
          env:
            - name: CALICO_IPV4POOL_IPIP
              value: "Always"
"#;

    #[test]
    fn calico_gets_the_pod_cidr_and_mtu_in_its_parsed_documents() {
        let out = calico(CALICO, "10.233.64.0/18", 1450).unwrap();
        let docs = YamlLoader::load_from_str(&out).unwrap();
        assert_eq!(docs[0]["data"]["veth_mtu"].as_str(), Some("1450"));
        // A multi-line string stays one.
        assert!(docs[0]["data"]["cni_network_config"]
            .as_str()
            .unwrap()
            .contains("\"name\": \"k8s-pod-network\""));
        let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["name"].as_str(), Some("CALICO_IPV4POOL_IPIP"));
        assert_eq!(env[1]["name"].as_str(), Some("CALICO_IPV4POOL_CIDR"));
        assert_eq!(env[1]["value"].as_str(), Some("10.233.64.0/18"));
        // Rendering its own output again changes nothing.
        assert_eq!(calico(&out, "10.233.64.0/18", 1450).unwrap(), out);
        assert_eq!(
            calico("kind: ConfigMap\n", "10.0.0.0/16", 0).unwrap_err(),
            "it has no calico-node DaemonSet"
        );
    }

    const NODELOCALDNS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: node-local-dns
data:
  Corefile: |
    __PILLAR__DNS__DOMAIN__:53 {
        bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
        forward . __PILLAR__CLUSTER__DNS__
    }
    .:53 {
        forward . __PILLAR__UPSTREAM__SERVERS__
    }
---
apiVersion: apps/v1
kind: DaemonSet
spec:
  template:
    spec:
      containers:
        - name: node-cache
          args: [ "-localip", "__PILLAR__LOCAL__DNS__,__PILLAR__DNS__SERVER__" ]
"#;

    #[test]
    fn nodelocaldns_placeholders_are_filled_for_the_proxy_mode() {
        let p = |ipvs| NodeLocalDns {
            domain: "cluster.local",
            kube_dns: "10.96.0.10".parse().unwrap(),
            ipvs,
        };
        let out = nodelocaldns(NODELOCALDNS, &p(true)).unwrap();
        let docs = YamlLoader::load_from_str(&out).unwrap();
        let core = docs[0]["data"]["Corefile"].as_str().unwrap();
        assert!(core.contains("cluster.local:53 {"), "{core}");
        assert!(core.contains("bind 169.254.20.10\n"), "{core}");
        assert!(core.contains("forward . 10.96.0.10\n"), "{core}");
        assert!(core.contains("__PILLAR__UPSTREAM__SERVERS__"), "{core}");
        let args = &docs[1]["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[1].as_str(), Some("169.254.20.10"));

        let out = nodelocaldns(NODELOCALDNS, &p(false)).unwrap();
        let docs = YamlLoader::load_from_str(&out).unwrap();
        let core = docs[0]["data"]["Corefile"].as_str().unwrap();
        assert!(core.contains("bind 169.254.20.10 10.96.0.10\n"), "{core}");
        assert!(
            core.contains("forward . __PILLAR__CLUSTER__DNS__"),
            "{core}"
        );
        let args = &docs[1]["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[1].as_str(), Some("169.254.20.10,10.96.0.10"));

        let unknown = NODELOCALDNS.replace("cluster.local", "__PILLAR__NEW__THING__");
        let unknown = unknown.replace("__PILLAR__DNS__DOMAIN__", "__PILLAR__NEW__THING__");
        assert_eq!(
            nodelocaldns(&unknown, &p(true)).unwrap_err(),
            "it has placeholders no one fills: __PILLAR__NEW__THING__"
        );
    }
}
