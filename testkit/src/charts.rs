//! Helm charts made by the test: a packaged chart (.tgz, as `helm package` lays it
//! out: `<name>/Chart.yaml`, `values.yaml`, `templates/`) and the `index.yaml` of a
//! classic chart repository that lists it.

use std::io::Write as _;

/// A packaged chart whose values name `image`.
pub fn chart_tgz(name: &str, version: &str, app_version: &str, image: &str) -> Vec<u8> {
    let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let files = [
        (
            "Chart.yaml",
            format!(
                "apiVersion: v2\nname: {name}\ndescription: A chart made by the test\ntype: application\nversion: {version}\nappVersion: \"{app_version}\"\nhome: https://example.test/{name}\nsources:\n  - https://example.test/{name}/src\nmaintainers:\n  - name: Ferry Tests\n    email: tests@example.test\nannotations:\n  example.test/kind: test\n"
            ),
        ),
        (
            "values.yaml",
            format!("image:\n  repository: {repository}\n  tag: \"{tag}\"\nreplicas: 1\n"),
        ),
        (
            "templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicas }}\n  template:\n    spec:\n      containers:\n        - name: app\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n".to_string(),
        ),
    ];
    let mut tar = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{name}/{path}"), text.as_bytes())
            .expect("appending to a tar in memory");
    }
    let tar = tar.into_inner().expect("finishing a tar in memory");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

/// A repository `index.yaml` listing one chart version at `url` (relative to the
/// repository or absolute), with the .tgz's sha256 hex `digest`.
pub fn index_yaml(name: &str, version: &str, url: &str, digest: &str) -> String {
    format!(
        "apiVersion: v1\nentries:\n  {name}:\n    - apiVersion: v2\n      name: {name}\n      version: {version}\n      digest: {digest}\n      urls:\n        - {url}\n    - apiVersion: v2\n      name: {name}\n      version: 0.0.1\n      digest: 0000000000000000000000000000000000000000000000000000000000000000\n      urls:\n        - {name}-0.0.1.tgz\ngenerated: \"2026-01-01T00:00:00Z\"\n"
    )
}
