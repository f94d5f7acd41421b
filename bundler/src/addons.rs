//! The images an addon manifest runs: a Kubernetes YAML a spec carries as a file
//! (calico.yaml, nodelocaldns.yaml, components.yaml), parsed, not grepped, so a
//! bundle that lacks one of them is refused at build time rather than discovered
//! missing on a site.

use yaml_rust2::{Yaml, YamlLoader};

/// Whether a file is a manifest to look into, by its name.
pub fn is_manifest(file_name: &str) -> bool {
    file_name.ends_with(".yaml") || file_name.ends_with(".yml")
}

/// Every `image` of every container, init container and ephemeral container of
/// every object in `text` (all documents), in order, each once.
pub fn images(text: &str) -> Result<Vec<String>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in &docs {
        walk(doc, &mut out);
    }
    Ok(out)
}

fn walk(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::Hash(map) => {
            for (key, value) in map {
                let is_containers = matches!(
                    key.as_str(),
                    Some("containers" | "initContainers" | "ephemeralContainers")
                );
                if let (true, Yaml::Array(list)) = (is_containers, value) {
                    for c in list {
                        if let Some(image) = c["image"].as_str() {
                            if !out.iter().any(|i| i == image) {
                                out.push(image.to_string());
                            }
                        }
                    }
                }
                walk(value, out);
            }
        }
        Yaml::Array(list) => list.iter().for_each(|n| walk(n, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_images_of_every_workload_in_every_document() {
        let yaml = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: not-a-pod }
data:
  image: docker.io/not/this:1
---
apiVersion: apps/v1
kind: DaemonSet
spec:
  template:
    spec:
      initContainers:
        - name: install-cni
          image: docker.io/calico/cni:v3.29.7
      containers:
        - name: calico-node
          image: docker.io/calico/node:v3.29.7
        - name: again
          image: docker.io/calico/node:v3.29.7
---
kind: List
items:
  - kind: Deployment
    spec: { template: { spec: { containers: [ { name: x, image: "registry.k8s.io/metrics-server/metrics-server:v0.7.0" } ] } } }
"#;
        assert_eq!(
            images(yaml).unwrap(),
            [
                "docker.io/calico/cni:v3.29.7",
                "docker.io/calico/node:v3.29.7",
                "registry.k8s.io/metrics-server/metrics-server:v0.7.0"
            ]
        );
        assert!(images("a: [").is_err());
    }
}
