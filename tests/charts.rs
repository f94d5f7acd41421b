//! Helm charts end to end: a classic chart repository (index.yaml + .tgz on the
//! loopback file server) -> `lock` (pinned by the .tgz sha256, checked against the
//! index) -> `build` -> `unpack` -> `serve`, then the served artifact is what
//! Helm's pkg/registry writes (media types, config, annotations), the ORAS Python
//! client pulls the .tgz by `charts/<name>:<version>`, and Helm's own code
//! (PyPI helm-sdkpy) shows the chart and its values from `oci://`.

mod common;

use std::process::Command;

use common::serve::Serve;
use common::Session;
use ferry_testkit::charts::{chart_tgz, index_yaml};
use ferry_testkit::{Fault, FileServer};
use sha2::{Digest as _, Sha256};

const HOST: &str = "charts.example.test";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

struct World {
    s: Session,
    files: FileServer,
    tgz: Vec<u8>,
}

fn world() -> World {
    let s = Session::new();
    let files = FileServer::start();
    let tgz = chart_tgz("mychart", "0.1.0", "v1.2.3", "ghcr.io/example/app:v1.2.3");
    files.put("/repo/mychart-0.1.0.tgz", tgz.clone());
    files.put(
        "/repo/index.yaml",
        index_yaml("mychart", "0.1.0", "mychart-0.1.0.tgz", &sha(&tgz)).into_bytes(),
    );
    s.write(
        "spec.toml",
        &format!(
            "name = \"charts\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\n\n[[charts]]\nname = \"mychart\"\nversion = \"0.1.0\"\nrepo = \"https://{HOST}/repo\"\n"
        ),
    );
    s.write(
        "mirrors.toml",
        &format!(
            "[[files]]\nhost = \"{HOST}\"\nmirrors = [\"{}\"]\nskip_upstream = true\n",
            files.url()
        ),
    );
    World { s, files, tgz }
}

fn lock(w: &World) -> common::Run {
    w.s.bundler(&common::LOCK)
}

fn curl_json(url: &str, accept: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sSf", "-H", &format!("Accept: {accept}"), url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const HELM_SHOW: &str = r#"
import asyncio, sys
from helm_sdkpy import Configuration, Show
config = Configuration(plain_http=True, kubeconfig=sys.argv[2])
show = Show(config)
print(asyncio.run(show.chart(sys.argv[1])))
print("---values---")
print(asyncio.run(show.values(sys.argv[1])))
"#;

/// What Helm's own code (helm-sdkpy `Show`) prints of the chart at `oci_url`: its
/// Chart.yaml, then its values.
fn helm_show(s: &Session, oci_url: &str) -> String {
    let kubeconfig = s.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    );
    let out = Command::new("python3")
        .args(["-c", HELM_SHOW])
        .arg(oci_url)
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm show {oci_url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_chart_from_a_classic_repository_is_served_as_helm_oci_and_helm_shows_it() {
    let w = world();
    let s = &w.s;
    lock(&w).success();
    let lock_text = s.read("spec.lock");
    assert!(
        lock_text.contains(&format!("sha256:{}", sha(&w.tgz))),
        "{lock_text}"
    );
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let build = common::build_args("spec.toml", "spec.lock", "b.tar.zst");
    // The chart's values run an image the spec does not carry: refused, named.
    let refused = s.bundler(&build).failure();
    assert!(
        refused
            .error_line()
            .contains("chart mychart 0.1.0 (its values) names ghcr.io/example/app:v1.2.3"),
        "{}",
        refused.stderr
    );
    let mut allowed = build.to_vec();
    allowed.push("--allow-missing-images");
    s.bundler(&allowed).success();
    let inspect = s.bundler(&["inspect", "b.tar.zst"]).success();
    assert!(
        inspect.stdout.contains("charts/mychart:0.1.0"),
        "{}",
        inspect.stdout
    );
    s.installer(&["unpack", "b.tar.zst", "--key", "k.pub", "--store", "site"])
        .success();

    let srv = Serve::start(s, &["--store", "site", "--tls", "off"]);
    let base = format!("http://{}", srv.addr());
    // What Helm's pkg/registry pushes: an OCI manifest whose config and layer carry
    // Helm's media types, the layer being the .tgz itself.
    let m = curl_json(
        &format!("{base}/v2/charts/mychart/manifests/0.1.0"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    assert_eq!(m["layers"][0]["digest"], format!("sha256:{}", sha(&w.tgz)));
    let a = &m["annotations"];
    assert_eq!(a["org.opencontainers.image.title"], "mychart");
    assert_eq!(a["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(
        a["org.opencontainers.image.url"],
        "https://example.test/mychart"
    );
    assert_eq!(
        a["org.opencontainers.image.source"],
        "https://example.test/mychart/src"
    );
    assert_eq!(
        a["org.opencontainers.image.authors"],
        "Ferry Tests (tests@example.test)"
    );
    assert_eq!(a["example.test/kind"], "test");
    assert!(a.get("org.opencontainers.image.created").is_none(), "{a}");
    let config = curl_json(
        &format!(
            "{base}/v2/charts/mychart/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    assert_eq!(config["name"], "mychart");
    assert_eq!(config["version"], "0.1.0");
    assert_eq!(config["appVersion"], "v1.2.3");
    assert_eq!(config["apiVersion"], "v2");
    assert_eq!(config["type"], "application");
    assert_eq!(config["maintainers"][0]["email"], "tests@example.test");

    // ORAS pulls the .tgz by name; it holds the chart.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, oras.provider\nr = oras.provider.Registry(hostname=sys.argv[1], insecure=True)\nprint(r.pull(target=sys.argv[1] + '/charts/mychart:0.1.0', outdir=sys.argv[2])[0])",
            srv.addr(),
        ])
        .arg(s.path("oras"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(sha(&std::fs::read(&pulled).unwrap()), sha(&w.tgz));
    let list = Command::new("tar")
        .args(["-tzf", &pulled])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l == "mychart/Chart.yaml"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    // Helm's own code resolves the chart from the site registry.
    let text = helm_show(s, &format!("oci://{}/charts/mychart:0.1.0", srv.addr()));
    assert!(
        text.contains("name: mychart") && text.contains("version: 0.1.0"),
        "{text}"
    );
    assert!(text.contains("repository: ghcr.io/example/app"), "{text}");
}

#[test]
fn a_chart_whose_tgz_does_not_match_its_index_is_refused() {
    let w = world();
    w.files.fault(
        "/repo/mychart-0.1.0.tgz",
        Fault::Serve(b"not the chart".to_vec()),
    );
    let run = lock(&w).failure();
    let line = run.error_line();
    assert!(line.contains("chart mychart 0.1.0"), "{line}");
    assert!(
        line.contains(&sha(&w.tgz)),
        "the index's digest is named: {line}"
    );
    assert!(!w.s.path("spec.lock").exists());
}

#[test]
fn lock_keeps_the_chart_in_the_store_so_it_is_fetched_once() {
    let w = world();
    let s = &w.s;
    let tgz = "/repo/mychart-0.1.0.tgz";
    let mut keep = common::LOCK.to_vec();
    keep.extend(["--store", "store"]);
    s.bundler(&keep).success();
    assert_eq!(w.files.count(tgz), 1, "{:?}", w.files.requests());
    let blob = s.path(&format!("store/blobs/sha256/{}", sha(&w.tgz)));
    assert_eq!(std::fs::read(blob).unwrap(), w.tgz);
    // The pull makes the chart's artifact from it without asking again.
    s.bundler(&common::LOCKED_PULL).success();
    assert_eq!(w.files.count(tgz), 1, "{:?}", w.files.requests());
    // The next lock reads the index again (the pin comes from there), not the .tgz,
    // and pins the same.
    let locked = s.read("spec.lock");
    keep.splice(5..6, ["again.lock"]);
    let again = s.bundler(&keep).success();
    assert!(
        again.stderr.contains("chart mychart 0.1.0 -> sha256:")
            && again.stderr.contains("(in the store already)"),
        "{}",
        again.stderr
    );
    assert_eq!(w.files.count(tgz), 1, "{:?}", w.files.requests());
    assert_eq!(w.files.count("/repo/index.yaml"), 2);
    assert_eq!(s.read("again.lock"), locked);
}

#[test]
fn a_chart_version_the_index_lacks_is_refused_listing_what_it_has() {
    let w = world();
    w.s.write(
        "spec.toml",
        &format!(
            "name = \"charts\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\n\n[[charts]]\nname = \"mychart\"\nversion = \"9.9.9\"\nrepo = \"https://{HOST}/repo\"\n"
        ),
    );
    let line = lock(&w).failure().error_line().to_string();
    assert!(
        line.contains("has no version 9.9.9 (it has 0.1.0, 0.0.1)"),
        "{line}"
    );
}

#[test]
fn a_chart_from_an_oci_registry_keeps_its_upstream_manifest_and_name() {
    use ferry_testkit::image::{push_blob, push_manifest, Blob};
    use ferry_testkit::registry::Registry;

    let s = Session::new();
    let reg = Registry::start();
    // A chart as `helm push` leaves it in a registry: Helm's config and layer types.
    let tgz = chart_tgz("ocichart", "0.2.0", "v2.0.0", "ghcr.io/example/oci:v2.0.0");
    let config = Blob::new(
        "application/vnd.cncf.helm.config.v1+json",
        br#"{"name":"ocichart","version":"0.2.0","appVersion":"v2.0.0","apiVersion":"v2"}"#
            .to_vec(),
    );
    let layer = Blob::new(
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        tgz.clone(),
    );
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "annotations": {"org.opencontainers.image.created": "2025-01-01T00:00:00Z"},
        }))
        .unwrap(),
    );
    push_blob(&reg.url(), "charts/ocichart", &config);
    push_blob(&reg.url(), "charts/ocichart", &layer);
    push_manifest(&reg.url(), "charts/ocichart", "0.2.0", &manifest);
    s.write(
        "spec.toml",
        "name = \"charts\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\n\n[[charts]]\nname = \"ocichart\"\nversion = \"0.2.0\"\noci = \"oci://oci.example.test/charts\"\n",
    );
    s.write(
        "mirrors.toml",
        &format!(
            "[[registry]]\nhost = \"oci.example.test\"\nskip_upstream = true\nendpoints = [{{ url = \"{}\" }}]\n",
            reg.url()
        ),
    );
    s.bundler(&common::LOCK).success();
    assert!(
        s.read("spec.lock").contains(&manifest.digest),
        "pinned by the manifest digest"
    );
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    let mut build = common::build_args("spec.toml", "spec.lock", "b.tar.zst");
    build.push("--allow-missing-images");
    s.bundler(&build).success();
    s.installer(&["unpack", "b.tar.zst", "--key", "k.pub", "--store", "site"])
        .success();
    drop(reg);

    let srv = Serve::start(&s, &["--store", "site", "--tls", "off"]);
    let base = format!("http://{}", srv.addr());
    // Byte-exact under both names: the upstream one and charts/<name>.
    for path in ["oci.example.test/charts/ocichart", "charts/ocichart"] {
        let out = Command::new("curl")
            .args([
                "-sSf",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!("{base}/v2/{path}/manifests/0.2.0"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
        assert_eq!(out.stdout, manifest.data, "{path}");
    }
    let text = helm_show(&s, &format!("oci://{}/charts/ocichart:0.2.0", srv.addr()));
    assert!(text.contains("name: ocichart"), "{text}");
}
