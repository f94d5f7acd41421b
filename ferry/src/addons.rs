//! The images an addon runs: a Kubernetes YAML a spec carries as a file
//! (calico.yaml, nodelocaldns.yaml, components.yaml) or a Helm chart's default
//! values, parsed, not grepped, so a bundle that lacks one of them is refused at
//! build time, and a plan that would run one is refused, rather than discovered
//! missing on a site.

use std::io::Read as _;

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

/// The images a chart's default values name: every `image:` that is a reference
/// string, or a map of `repository` (with `registry`, and `tag` or the chart's
/// `appVersion`, as charts conventionally default it, or `digest`).
pub fn values_images(values: &str, app_version: Option<&str>) -> Result<Vec<String>, String> {
    let docs = YamlLoader::load_from_str(values).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in &docs {
        walk_values(doc, app_version, &mut out);
    }
    Ok(out)
}

/// The text of the member `path` of a chart's .tgz, if it has one.
pub fn chart_member(tgz: &[u8], path: &str) -> Result<Option<String>, String> {
    let bad = |e: std::io::Error| format!("the .tgz is not a gzip tar: {e}");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.path_bytes().as_ref() == path.as_bytes() {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("reading {path}: {e}"))?;
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// The images chart `name`'s default values name (see [`values_images`]), as its
/// .tgz holds them.
pub fn chart_images(tgz: &[u8], name: &str) -> Result<Vec<String>, String> {
    let chart = chart_member(tgz, &format!("{name}/Chart.yaml"))?.unwrap_or_default();
    let app_version = YamlLoader::load_from_str(&chart)
        .ok()
        .and_then(|d| d.first().and_then(|y| scalar(&y["appVersion"])));
    match chart_member(tgz, &format!("{name}/values.yaml"))? {
        Some(values) => values_images(&values, app_version.as_deref())
            .map_err(|e| format!("{name}/values.yaml: {e}")),
        None => Ok(Vec::new()),
    }
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()).filter(|s| !s.is_empty()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn walk_values(node: &Yaml, app_version: Option<&str>, out: &mut Vec<String>) {
    match node {
        Yaml::Hash(map) => {
            for (key, value) in map {
                if key.as_str() == Some("image") {
                    let image = match value {
                        Yaml::String(s) if !s.is_empty() => Some(s.clone()),
                        Yaml::Hash(_) => scalar(&value["repository"]).map(|repo| {
                            let mut image = match scalar(&value["registry"]) {
                                Some(registry) => format!("{registry}/{repo}"),
                                None => repo,
                            };
                            let tag = scalar(&value["tag"]).or(app_version.map(str::to_string));
                            if let Some(tag) = tag {
                                image = format!("{image}:{tag}");
                            }
                            if let Some(digest) = scalar(&value["digest"]) {
                                image = format!("{image}@{digest}");
                            }
                            image
                        }),
                        _ => None,
                    };
                    if let Some(image) = image.filter(|i| !out.contains(i)) {
                        out.push(image);
                    }
                }
                walk_values(value, app_version, out);
            }
        }
        Yaml::Array(list) => list.iter().for_each(|n| walk_values(n, app_version, out)),
        _ => {}
    }
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

    #[test]
    fn finds_the_images_chart_values_name() {
        let values = r#"
image:
  repository: ghcr.io/postfinance/kubelet-csr-approver
  tag: ""
sidecar:
  image: { registry: registry.k8s.io, repository: sig-storage/livenessprobe, tag: v2.14.0 }
other:
  image: docker.io/library/busybox:1.36
empty:
  image: ""
"#;
        assert_eq!(
            values_images(values, Some("v1.1.0")).unwrap(),
            [
                "ghcr.io/postfinance/kubelet-csr-approver:v1.1.0",
                "registry.k8s.io/sig-storage/livenessprobe:v2.14.0",
                "docker.io/library/busybox:1.36"
            ]
        );
    }
}
