//! Helm charts from classic repositories: `lock` reads the repository's
//! `index.yaml` for the chart's .tgz URL and digest and pins the .tgz by its sha256
//! (checked against the index); `pull` and `build` make the chart's OCI artifact
//! from the .tgz, as `helm push` does (see `ferry::artifact`), so `helm pull
//! oci://SITE/charts/NAME --version V` works against the site registry.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _};
use ferry::artifact::{self, Artifact};
use ferry::file_spec::{ChartSource, ChartSpec};
use ferry::lock::LockedChart;
use ferry::store::Store;
use ferry::Digest;
use ferry_cli::Report;
use serde::Serialize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::failures::EndpointFailure;
use crate::mirrors::{Endpoint, MirrorRules};
use crate::resolve::first_answer;
use ferry_client::{Asked, Client, FetchError, Problem};

/// `index.yaml` larger than this is refused (it is read whole).
const MAX_INDEX: usize = 64 << 20;

/// Why one endpoint's answer for a chart's `index.yaml` or .tgz was not taken.
#[derive(Debug, thiserror::Error)]
enum ChartFileError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("larger than {MAX_INDEX} bytes")]
    TooLarge,
    #[error("not YAML: {0}")]
    NotYaml(String),
    #[error("served {actual}, the index gives {expected}")]
    WrongSha { actual: Digest, expected: Digest },
}

impl EndpointFailure for ChartFileError {
    fn problem(&self) -> Option<Problem> {
        Some(match self {
            ChartFileError::Fetch(e) => e.problem(),
            ChartFileError::TooLarge | ChartFileError::NotYaml(_) => Problem::Broken,
            ChartFileError::WrongSha { .. } => Problem::WrongBytes,
        })
    }
}

/// A whole (small) download.
async fn fetch(client: &Client, endpoint: &Endpoint) -> Result<Vec<u8>, ChartFileError> {
    let mut response = client.file(endpoint, 0).await?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::from)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_INDEX {
            return Err(ChartFileError::TooLarge);
        }
    }
    Ok(body)
}

/// What `check` makes of the first endpoint's answer for `url` that it accepts.
async fn fetch_checked<T>(
    client: &Client,
    rules: &MirrorRules,
    url: &str,
    what: &str,
    report: &Report,
    check: impl Fn(Vec<u8>) -> Result<T, ChartFileError>,
) -> anyhow::Result<T> {
    let endpoints = rules.file_endpoints(url);
    first_answer(client, &endpoints, what, Asked::File, report, |e| async {
        fetch(client, e).await.and_then(&check)
    })
    .await
    .map_err(|failures| anyhow!("{what}: every endpoint failed ({failures})"))
}

/// Pins one chart: its entry in the repository's `index.yaml`, then its .tgz,
/// whose sha256 must be the one the index gives.
///
/// With a `store`, the .tgz is kept there for the pull (and found there by the
/// next lock): it crosses the network once.
pub async fn resolve_chart(
    client: &Client,
    rules: &MirrorRules,
    chart: &ChartSpec,
    store: Option<&Store>,
    report: &Report,
) -> anyhow::Result<LockedChart> {
    let what = format!("chart {} {}", chart.name, chart.version);
    let repo = match &chart.source {
        ChartSource::Repo(r) => r,
        ChartSource::Oci(o) => return resolve_oci_chart(client, rules, chart, o, report).await,
    };
    let docs = fetch_checked(
        client,
        rules,
        &format!("{repo}/index.yaml"),
        &format!("{what}: index.yaml"),
        report,
        |b| {
            YamlLoader::load_from_str(&String::from_utf8_lossy(&b))
                .map_err(|e| ChartFileError::NotYaml(e.to_string()))
        },
    )
    .await?;
    let entries = docs
        .first()
        .and_then(|d| d["entries"][chart.name.as_str()].as_vec())
        .ok_or_else(|| anyhow!("{what}: {repo}/index.yaml has no chart {}", chart.name))?;
    let entry = entries
        .iter()
        .find(|e| e["version"].as_str() == Some(chart.version.as_str()))
        .ok_or_else(|| {
            let have: Vec<&str> = entries
                .iter()
                .filter_map(|e| e["version"].as_str())
                .collect();
            anyhow!(
                "{what}: {repo}/index.yaml has no version {} (it has {})",
                chart.version,
                have.join(", ")
            )
        })?;
    let listed = entry["urls"][0]
        .as_str()
        .ok_or_else(|| anyhow!("{what}: {repo}/index.yaml gives no URL"))?;
    let url = if listed.starts_with("https://") || listed.starts_with("http://") {
        listed.to_string()
    } else {
        format!("{repo}/{}", listed.trim_start_matches("./"))
    };
    let pinned: Option<Digest> = entry["digest"]
        .as_str()
        .map(|d| format!("sha256:{}", d.trim_start_matches("sha256:")).parse())
        .transpose()
        .map_err(|e| anyhow!("{what}: {repo}/index.yaml digest: {e}"))?;
    let kept = match (store, &pinned) {
        (Some(store), Some(pin)) if store.has_blob(pin) => {
            Some((store.read_blob(pin)?, pin.clone()))
        }
        _ => None,
    };
    let already = kept.is_some();
    let (tgz, sha256) = match kept {
        Some(kept) => kept,
        None => {
            fetch_checked(client, rules, &url, &what, report, |b| {
                let actual = Digest::of(&b);
                match &pinned {
                    Some(d) if &actual != d => Err(ChartFileError::WrongSha {
                        actual,
                        expected: d.clone(),
                    }),
                    _ => Ok((b, actual)),
                }
            })
            .await?
        }
    };
    // Its metadata must be readable, or the site could not use it.
    metadata(&tgz, &chart.name).with_context(|| what.clone())?;
    if let Some(store) = store.filter(|_| !already) {
        store.put_blob(&sha256, &tgz)?;
    }
    let how = if already {
        " (in the store already)"
    } else {
        ""
    };
    report.info(&format!("locked {what} -> {sha256}{how}"));
    Ok(LockedChart {
        name: chart.name.clone(),
        version: chart.version.clone(),
        repo: repo.clone(),
        url,
        sha256,
        size: tgz.len() as u64,
    })
}

/// Pins a chart in an OCI registry by its manifest's digest, through the registry
/// mirror rules of its host; it must be a Helm chart (Helm's config media type).
async fn resolve_oci_chart(
    client: &Client,
    rules: &MirrorRules,
    chart: &ChartSpec,
    oci: &str,
    report: &Report,
) -> anyhow::Result<LockedChart> {
    let what = format!("chart {} {}", chart.name, chart.version);
    let text = format!(
        "{}/{}:{}",
        oci.trim_start_matches("oci://"),
        chart.name,
        chart.version
    );
    let reference: ferry::Reference = text.parse().map_err(|e| anyhow!("{what}: {oci}: {e}"))?;
    let endpoints = rules.endpoints(&reference);
    let (bytes, _, digest) =
        first_answer(client, &endpoints, &what, Asked::Manifest, report, |e| {
            crate::resolve::fetch_manifest(client, e, &chart.version, None)
        })
        .await
        .map_err(|failures| anyhow!("{what}: every endpoint failed ({failures})"))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if doc["config"]["mediaType"] != artifact::HELM_CONFIG_TYPE {
        bail!(
            "{what}: {reference} is not a Helm chart (its config is {})",
            doc["config"]["mediaType"]
        );
    }
    report.info(&format!("locked {what} -> {digest}"));
    Ok(LockedChart {
        name: chart.name.clone(),
        version: chart.version.clone(),
        repo: oci.to_string(),
        url: reference.to_string(),
        sha256: digest,
        size: bytes.len() as u64,
    })
}

/// The .tgz of a chart in the store: the blob itself, or an OCI chart's layer.
pub fn tgz(store: &ferry::store::Store, chart: &LockedChart) -> anyhow::Result<Vec<u8>> {
    let what = || format!("chart {} {}", chart.name, chart.version);
    let digest = if chart.is_oci() {
        store
            .platform_blobs(&chart.manifest())
            .with_context(what)?
            .into_iter()
            .find(|d| d.media_type.as_ref() == artifact::HELM_CHART_LAYER_TYPE)
            .ok_or_else(|| anyhow!("{}: its manifest has no chart layer", what()))?
            .digest
    } else {
        chart.sha256.clone()
    };
    store.read_blob(&digest).with_context(what)
}

/// A chart maintainer, as Helm's `chart.Maintainer` serialises.
#[derive(Serialize)]
struct Maintainer {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// Chart.yaml as Helm's `chart.Metadata` serialises it to JSON for the chart's
/// OCI config: the same keys, in its field order, empty ones left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    home: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keywords: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    maintainers: Vec<Maintainer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deprecated: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_version: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

/// A scalar as text (versions may be written as numbers).
fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn texts(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| v.iter().filter_map(text).collect())
        .unwrap_or_default()
}

/// The images the chart's default values name (see `ferry::addons::chart_images`).
pub fn images(tgz: &[u8], name: &str) -> anyhow::Result<Vec<String>> {
    ferry::addons::chart_images(tgz, name).map_err(|e| anyhow!(e))
}

/// The chart's metadata from `<name>/Chart.yaml` in the .tgz: the config JSON of
/// its artifact and the annotations `helm push` puts on its manifest.
pub fn metadata(tgz: &[u8], name: &str) -> anyhow::Result<(Vec<u8>, BTreeMap<String, String>)> {
    let wanted = format!("{name}/Chart.yaml");
    let source = ferry::addons::chart_member(tgz, &wanted)
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("the .tgz has no {wanted}"))?;
    let docs = YamlLoader::load_from_str(&source).map_err(|e| anyhow!("{wanted}: {e}"))?;
    let y = docs.first().ok_or_else(|| anyhow!("{wanted} is empty"))?;
    let annotations: BTreeMap<String, String> = y["annotations"]
        .as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), text(v)?)))
                .collect()
        })
        .unwrap_or_default();
    let maintainers: Vec<Maintainer> = y["maintainers"]
        .as_vec()
        .map(|v| {
            v.iter()
                .map(|m| Maintainer {
                    name: text(&m["name"]),
                    email: text(&m["email"]),
                    url: text(&m["url"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let meta = Metadata {
        name: text(&y["name"]),
        home: text(&y["home"]),
        sources: texts(&y["sources"]),
        version: text(&y["version"]),
        description: text(&y["description"]),
        keywords: texts(&y["keywords"]),
        maintainers,
        icon: text(&y["icon"]),
        api_version: text(&y["apiVersion"]),
        condition: text(&y["condition"]),
        tags: text(&y["tags"]),
        app_version: text(&y["appVersion"]),
        deprecated: y["deprecated"].as_bool().unwrap_or(false),
        annotations: annotations.clone(),
        kube_version: text(&y["kubeVersion"]),
        kind: text(&y["type"]),
    };
    if meta.name.as_deref() != Some(name) {
        bail!(
            "{wanted} names the chart {:?}",
            meta.name.unwrap_or_default()
        );
    }
    // The manifest annotations of `helm push` (pkg/registry generateOCIAnnotations),
    // without `created`: the chart's own annotations, then the fixed keys over them.
    let mut on_manifest = annotations;
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            on_manifest.insert(k.to_string(), v.clone());
        }
    };
    put(
        "org.opencontainers.image.description",
        meta.description.as_ref(),
    );
    put("org.opencontainers.image.title", meta.name.as_ref());
    put("org.opencontainers.image.version", meta.version.as_ref());
    put("org.opencontainers.image.url", meta.home.as_ref());
    put("org.opencontainers.image.source", meta.sources.first());
    let authors: Vec<String> = meta
        .maintainers
        .iter()
        .map(|m| match (&m.name, &m.email) {
            (Some(n), Some(e)) => format!("{n} ({e})"),
            (Some(n), None) => n.clone(),
            (None, Some(e)) => format!("({e})"),
            (None, None) => String::new(),
        })
        .filter(|a| !a.is_empty())
        .collect();
    let authors = authors.join(", ");
    put("org.opencontainers.image.authors", Some(&authors));
    let config = serde_json::to_vec(&meta).expect("chart metadata serialises");
    Ok((config, on_manifest))
}

/// The artifact of a locked chart from its .tgz bytes.
pub fn chart_artifact(chart: &LockedChart, tgz: &[u8]) -> anyhow::Result<Artifact> {
    let (config, annotations) = metadata(tgz, &chart.name)
        .with_context(|| format!("chart {} {}", chart.name, chart.version))?;
    Ok(artifact::chart_artifact(
        &chart.name,
        &chart.version,
        (&chart.sha256, chart.size),
        config,
        &annotations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_sha_names_each_digest_once() {
        let (actual, expected) = (Digest::of(b"a"), Digest::of(b"b"));
        let e = ChartFileError::WrongSha { actual, expected };
        let text = e.to_string();
        assert!(text.starts_with("served sha256:"), "{text}");
        assert!(!text.contains("sha256 sha256:"), "{text}");
    }
}
