//! `ferry-installer push` into real registries: registry:2 with htpasswd and TLS
//! from a private CA, registry:2 behind the kit's token server, and another
//! `ferry-installer serve`. skopeo reads back what landed, and containerd pulls it
//! by upstream names through the hosts.toml `plan` renders for such a registry.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::containerd::Containerd;
use common::serve::Serve;
use common::store::index_digests;
use common::{four_kinds, mirrors, once_per_run, spec, Rule, Session, LOCKED_PULL};
use ferry_testkit::image::{self, layer};
use ferry_testkit::proxy::{Proxy, ProxyOptions};
use ferry_testkit::registry::{Registry, RegistryOptions};

/// The multi-platform images of the world, by store name, with the seed
/// registry's repository for each.
const IMAGES: [(&str, &str); 4] = [
    ("registry.k8s.io/multi/list:1", "multi/list"),
    ("quay.io/multi/index:2", "multi/index"),
    ("docker.io/library/single:1", "library/single"),
    ("registry.k8s.io/single-oci:1.0", "single-oci"),
];

/// The store every push sends (made once per run; read it only): one image of
/// each kind, two of them for linux/amd64 and linux/arm64, three sharing a layer,
/// pulled by the bundler; and the release's images, files and charts
/// (`common::cluster::site`) merged in.
fn world() -> PathBuf {
    once_per_run("push-world", |dir| {
        let s = Session::new();
        let reg = Registry::start();
        let kinds = four_kinds(
            layer(7, 32 * 1024),
            900,
            [40_000, 30_000, 20_000, 20_000, 50_000, 300_000],
        );
        let mut names = Vec::new();
        for ((name, repo), img) in IMAGES.iter().zip(&kinds) {
            let tag = name.rsplit_once(':').unwrap().1;
            image::push(&reg.url(), repo, tag, img);
            names.push(if img.is_multi() {
                name.to_string()
            } else {
                format!("{{ ref = \"{name}\", platforms = [\"linux/amd64\"] }}")
            });
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        s.write("spec.toml", &spec(&["linux/amd64", "linux/arm64"], &names));
        let rule = |host| Rule {
            host,
            endpoints: vec![(reg.url(), None, false)],
        };
        s.write(
            "mirrors.toml",
            &mirrors(&[rule("registry.k8s.io"), rule("quay.io"), rule("docker.io")]),
        );
        s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
            .success();
        s.bundler(&LOCKED_PULL).success();
        // The release's store merged in: its blobs and its index entries.
        let site = common::cluster::site();
        let store = s.path("store");
        for entry in std::fs::read_dir(site.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let to = store.join("blobs/sha256").join(entry.file_name());
            if !to.exists() {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
        let index = |p: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(p.join("index.json")).unwrap()).unwrap()
        };
        let mut merged = index(&store);
        let extra = index(&site)["manifests"].as_array().unwrap().clone();
        merged["manifests"].as_array_mut().unwrap().extend(extra);
        std::fs::write(
            store.join("index.json"),
            serde_json::to_vec_pretty(&merged).unwrap(),
        )
        .unwrap();
        std::fs::rename(&store, dir.join("store")).unwrap();
    })
    .join("store")
}

/// The manifests of a store: (name, top digest, the platform manifests it holds).
fn manifests(store: &Path) -> Vec<(String, String, Vec<String>)> {
    index_digests(store)
        .into_iter()
        .map(|(name, digest)| {
            let blob = |d: &str| store.join("blobs/sha256").join(&d[7..]);
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
            let children = doc["manifests"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|c| c["digest"].as_str().unwrap().to_string())
                        .filter(|d| blob(d).exists())
                        .collect()
                })
                .unwrap_or_default();
            (name, digest, children)
        })
        .collect()
}

/// `skopeo inspect --raw` of `reference` (`docker://` is added).
fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks with skopeo that every manifest of `store` is at `registry/prefix/<name>`
/// with the store's very bytes, by tag and by digest.
fn assert_byte_exact(store: &Path, at: &str, extra: &[&str]) -> usize {
    let mut checked = 0;
    for (name, digest, children) in manifests(store) {
        // `REPO:TAG`, or `REPO@DIGEST` for a manifest `serve` took by digest.
        let (repo, reference) = match name.split_once('@') {
            Some((repo, digest)) => (repo, format!("@{digest}")),
            None => {
                let (repo, tag) = name.rsplit_once(':').unwrap();
                (repo, format!(":{tag}"))
            }
        };
        let stored = |d: &str| std::fs::read(store.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(
            skopeo_raw(&format!("{at}/{repo}{reference}"), extra),
            stored(&digest),
            "{name}"
        );
        for child in children {
            assert_eq!(
                skopeo_raw(&format!("{at}/{repo}@{child}"), extra),
                stored(&child),
                "{name}@{child}"
            );
            checked += 1;
        }
        checked += 1;
    }
    checked
}

/// alice's password in every registry that asks for one.
const PASSWORD: &str = "s3cret";

/// A registry:2 asking alice for Basic credentials, serving TLS with a
/// certificate from the session's private CA (`ca.pem`).
fn basic_tls_registry(s: &Session) -> Registry {
    common::private_ca(s);
    let users = std::process::Command::new("htpasswd")
        .args(["-Bbn", "alice", PASSWORD])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(users.status.success());
    std::fs::write(s.path("users.htpasswd"), &users.stdout).unwrap();
    std::fs::create_dir_all(s.path("certs")).unwrap();
    std::fs::copy(s.path("ca.pem"), s.path("certs/ca.crt")).unwrap();
    Registry::start_with(&RegistryOptions {
        tls: Some((s.path("server.pem"), s.path("server.key"))),
        htpasswd: Some(s.path("users.htpasswd")),
        ..RegistryOptions::default()
    })
}

/// The closing line's counts, by name.
fn counts(line: &str) -> BTreeMap<&'static str, usize> {
    // "pushed N image(s) to T: blobs N sent (SIZE), N already there, N mounted;
    // manifests N sent, N already there; N read back, all match"
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches([',', ';']).parse().ok())
        .collect();
    let names = [
        "images",
        "blobs sent",
        "blobs already there",
        "blobs mounted",
        "manifests sent",
        "manifests already there",
        "read back",
    ];
    assert_eq!(numbers.len(), names.len(), "{line}");
    names.into_iter().zip(numbers).collect()
}

fn push_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("pushed "))
        .unwrap_or_else(|| panic!("no closing line:\n{stderr}"))
}

#[test]
fn push_to_registry2_with_basic_auth_and_a_private_ca_is_byte_exact_and_a_second_push_sends_nothing(
) {
    let s = Session::new();
    let store = world();
    let reg = basic_tls_registry(&s);
    let to = format!("https://{}/k8s", reg.addr());
    let store_arg = store.to_str().unwrap();
    let cred = format!("alice:{PASSWORD}");
    let args = [
        "push",
        "--store",
        store_arg,
        "--to",
        &to,
        "--cred",
        &cred,
        "--ca-cert",
        "ca.pem",
    ];
    let run = s.installer(&args).success();
    let first = counts(push_line(&run.stderr));
    let images = index_digests(&store).len();
    assert_eq!(first["images"], images, "{}", run.stderr);
    // Three images share a layer: sent once, mounted into the other repositories.
    assert!(first["blobs mounted"] >= 2, "{}", run.stderr);
    assert_eq!(first["blobs already there"], 0, "{}", run.stderr);
    assert!(run.stderr.contains("all match"), "{}", run.stderr);

    // Every manifest, by tag and by digest, has the store's bytes.
    let creds = format!("--creds=alice:{PASSWORD}");
    let cert_dir = format!("--cert-dir={}", s.path("certs").display());
    let checked = assert_byte_exact(&store, &format!("{}/k8s", reg.addr()), &[&creds, &cert_dir]);
    assert!(
        checked > images,
        "multi-platform images have platform manifests"
    );

    // Again: nothing is uploaded, no manifest is put.
    let before: Vec<usize> = ["POST", "PATCH", "PUT"]
        .iter()
        .map(|m| reg.count_requests(m, "/v2/"))
        .collect();
    let run = s.installer(&args).success();
    let after: Vec<usize> = ["POST", "PATCH", "PUT"]
        .iter()
        .map(|m| reg.count_requests(m, "/v2/"))
        .collect();
    assert_eq!(
        before, after,
        "a second push wrote to the registry:\n{}",
        run.stderr
    );
    let second = counts(push_line(&run.stderr));
    assert_eq!(second["blobs sent"], 0, "{}", run.stderr);
    assert_eq!(second["manifests sent"], 0, "{}", run.stderr);
    assert_eq!(
        second["blobs already there"],
        first["blobs sent"] + first["blobs mounted"],
        "{}",
        run.stderr
    );
}

#[test]
fn wrong_credentials_an_unknown_ca_and_a_partial_index_each_fail_in_one_line() {
    let s = Session::new();
    let store = world();
    let reg = basic_tls_registry(&s);
    let to = format!("https://{}/k8s", reg.addr());
    let store_arg = store.to_str().unwrap();
    let host = reg.addr();
    // Each error says what to do; a flag's bad value is a usage error (exit 2),
    // and never echoes a password.
    let cred_hint = format!("no credentials for {host} (add them to ~/.docker/config.json or pass --cred {host}=USER:PASSWORD)");
    for (extra, expect, code) in [
        (
            vec!["--cred", "alice:wrong", "--ca-cert", "ca.pem"],
            format!("{host} refused the credentials"),
            1,
        ),
        (vec!["--ca-cert", "ca.pem"], cred_hint, 1),
        (
            vec!["--cred", "alice:s3cret"],
            "UnknownIssuer (its certificate's CA is not trusted here: give it with --ca-cert FILE)"
                .to_string(),
            1,
        ),
        (
            vec!["--cred", "alice:s3cret", "--ca-cert", "server.key"],
            "server.key".to_string(),
            1,
        ),
        (
            vec!["--cred", "alice/s3cret", "--ca-cert", "ca.pem"],
            "--cred: expected USER:PASSWORD".to_string(),
            2,
        ),
    ] {
        let args = [&["push", "--store", store_arg, "--to", &to][..], &extra].concat();
        let run = s.installer(&args);
        assert_eq!(run.status.code(), Some(code), "{extra:?}: {}", run.stderr);
        let line = run.error_line();
        assert!(line.contains(&expect), "{extra:?}: {line}\n{}", run.stderr);
        assert!(!line.contains("s3cret"), "{extra:?}: {line}");
    }
    // As that hint spells it, HOST=USER:PASSWORD (regression: refused with 401);
    // under another prefix, so the partial push below still has work.
    s.installer(&[
        "push",
        "--store",
        store_arg,
        "--to",
        &format!("https://{host}/other"),
        "--cred",
        &format!("{host}=alice:{PASSWORD}"),
        "--ca-cert",
        "ca.pem",
        "--quiet",
    ])
    .success();
    // Nothing listening: the registry is named unreachable, not a blob.
    let closed = format!(
        "http://127.0.0.1:{}/k8s",
        ferry_testkit::registry::free_port()
    );
    let run = s
        .installer(&["push", "--store", store_arg, "--to", &closed])
        .failure();
    assert!(
        run.error_line()
            .contains("cannot reach the registry: cannot connect")
            && !run.error_line().contains("blob"),
        "{}",
        run.stderr
    );
    // https:// to a plain-HTTP server; and a ferry-installer serve without
    // --htpasswd, which takes no pushes.
    let plain = Serve::start(&s, &["--store", store_arg, "--tls", "off"]);
    for (scheme, expect) in [
        (
            "https",
            "(it does not speak TLS: for a plain-HTTP registry use http://)",
        ),
        (
            "http",
            "the registry takes no pushes (HTTP 405); `ferry-installer serve` takes them only with --htpasswd",
        ),
    ] {
        let to = format!("{scheme}://{}/k8s", plain.addr());
        let run = s
            .installer(&["push", "--store", store_arg, "--to", &to])
            .failure();
        assert!(run.error_line().contains(expect), "{}", run.stderr);
    }
    drop(plain);
    let run = s
        .installer(&["push", "--store", store_arg, "--to", "harbor.site/k8s"])
        .usage();
    assert!(
        run.error_line().contains("--to \"harbor.site/k8s\""),
        "{}",
        run.stderr
    );

    // A store that holds only some platforms of an index: registry:2 refuses the
    // index (it checks every entry is there); the rest lands, and the error names
    // the image and what it lacks.
    s.tool("cp", &["-a", store_arg, "partial"]);
    let list = manifests(&store)
        .into_iter()
        .find(|(n, _, _)| n == IMAGES[0].0)
        .unwrap();
    std::fs::remove_file(s.path("partial/blobs/sha256").join(&list.2[1][7..])).unwrap();
    let run = s
        .installer(&[
            "push",
            "--store",
            "partial",
            "--to",
            &to,
            "--cred",
            "alice:s3cret",
            "--ca-cert",
            "ca.pem",
        ])
        .failure();
    let line = run.error_line();
    assert!(
        line.contains("refused 1 index(es)")
            && line.contains(&format!("{} (lacks linux/arm64/v8)", IMAGES[0].0)),
        "{}",
        run.stderr
    );
    // The other images are there.
    let creds = format!("--creds=alice:{PASSWORD}");
    let cert_dir = format!("--cert-dir={}", s.path("certs").display());
    let (repo, tag) = IMAGES[1].0.rsplit_once(':').unwrap();
    skopeo_raw(&format!("{host}/k8s/{repo}:{tag}"), &[&creds, &cert_dir]);
}

#[test]
fn push_through_a_token_server_rides_out_server_errors() {
    let s = Session::new();
    let store = world();
    let reg = Registry::start();
    // Bearer tokens from the kit's token server; the first upload requests and
    // manifest requests answered 500 and 429 (with Retry-After) a few times.
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            bearer: Some(("bob".into(), "t0ken".into())),
            fail_first: vec![
                ("/blobs/uploads/".into(), 500, 3, None),
                ("/manifests/".into(), 429, 2, Some(1)),
            ],
            ..ProxyOptions::default()
        },
    );
    let to = format!("http://{}/mirror", proxy.addr());
    let run = s
        .installer(&[
            "push",
            "--store",
            store.to_str().unwrap(),
            "--to",
            &to,
            "--cred",
            "bob:t0ken",
            "--chunk-mib",
            "8",
        ])
        .success();
    assert!(run.stderr.contains("all match"), "{}", run.stderr);
    assert!(proxy.token_requests() > 0, "no token was asked for");
    // Blobs over 8 MiB went in chunks (the largest is 33 MiB: five of them).
    assert!(proxy.count("PATCH ") >= 5, "{:#?}", proxy.requests());
    // Straight from registry:2, behind the proxy: the store's bytes.
    assert_byte_exact(
        &store,
        &format!("{}/mirror", reg.addr()),
        &["--tls-verify=false"],
    );

    // Without credentials the token server says no: one line naming the host.
    let run = s
        .installer(&["push", "--store", store.to_str().unwrap(), "--to", &to])
        .failure();
    assert!(
        run.error_line()
            .contains(&format!("no credentials for {}", proxy.addr())),
        "{}",
        run.stderr
    );
}

#[test]
fn a_push_killed_midway_goes_on_without_sending_again_what_landed() {
    let s = Session::new();
    let store = world();
    let reg = Registry::start();
    // Manifest requests stall (503, Retry-After 30 s): the push is killed once
    // every blob has landed and before any manifest has.
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            fail_first: vec![("/manifests/".into(), 503, 1000, Some(30))],
            ..ProxyOptions::default()
        },
    );
    let store_arg = store.to_str().unwrap();
    let to = format!("http://{}/k8s", proxy.addr());
    let mut child = s.spawn_installer(
        &["push", "--store", store_arg, "--to", &to, "--jobs", "2"],
        "first.log",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.requests().iter().any(|r| r.contains("/manifests/")) {
        assert!(
            Instant::now() < deadline,
            "no manifest asked for: {}",
            s.read("first.log")
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            s.read("first.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let uploads = reg.count_requests("POST", "/blobs/uploads/");
    assert!(uploads > 0);
    assert_eq!(reg.count_requests("PUT", "/manifests/"), 0);

    // Again, straight to the registry: no blob is sent twice.
    let to = format!("http://{}/k8s", reg.addr());
    let run = s
        .installer(&["push", "--store", store_arg, "--to", &to])
        .success();
    let c = counts(push_line(&run.stderr));
    assert_eq!(c["blobs sent"], 0, "{}", run.stderr);
    assert_eq!(reg.count_requests("POST", "/blobs/uploads/"), uploads);
    assert!(c["manifests sent"] > 0, "{}", run.stderr);
    assert_byte_exact(
        &store,
        &format!("{}/k8s", reg.addr()),
        &["--tls-verify=false"],
    );
}

#[test]
fn a_second_site_registry_of_ferry_serve_takes_a_push() {
    let s = Session::new();
    let store = world();
    let users = std::process::Command::new("htpasswd")
        .args(["-Bbn", "alice", PASSWORD])
        .output()
        .unwrap();
    std::fs::write(s.path("users"), &users.stdout).unwrap();
    std::fs::create_dir_all(s.path("standby")).unwrap();
    std::fs::write(
        s.path("standby/oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    let srv = Serve::start(
        &s,
        &["--store", "standby", "--tls", "off", "--htpasswd", "users"],
    );
    let to = format!("http://{}", srv.addr());
    let run = s
        .installer(&[
            "push",
            "--store",
            store.to_str().unwrap(),
            "--to",
            &to,
            "--cred",
            "alice:s3cret",
        ])
        .success();
    assert!(
        run.stderr.contains("all match"),
        "{}\n{}",
        run.stderr,
        srv.log()
    );
    assert_byte_exact(&store, srv.addr(), &["--tls-verify=false"]);

    // A signature pushed to the standby by digest alone is kept there by that
    // digest, and goes on by it into the next registry (registry:2).
    let (name, digest) = index_digests(&s.path("standby"))
        .into_iter()
        .next()
        .unwrap();
    let bytes = std::fs::read(s.path(&format!("standby/blobs/sha256/{}", &digest[7..]))).unwrap();
    let mut sig: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    sig["annotations"] = serde_json::json!({ "org.example.signature": "yes" });
    std::fs::write(s.path("sig.json"), serde_json::to_vec(&sig).unwrap()).unwrap();
    let sig_digest = format!("sha256:{}", common::store::sha256_file(&s.path("sig.json")));
    let repo = name.rsplit_once(':').unwrap().0;
    let media_type = sig["mediaType"].as_str().unwrap();
    s.tool(
        "curl",
        &[
            "-fsS",
            "-u",
            "alice:s3cret",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
            "@sig.json",
            &format!("{to}/v2/{repo}/manifests/{sig_digest}"),
        ],
    );
    let names = common::store::index_names(&s.path("standby"));
    assert!(names.contains(&format!("{repo}@{sig_digest}")), "{names:?}");
    let reg = Registry::start();
    s.installer(&["push", "--store", "standby", "--to", &reg.url()])
        .success();
    let checked = assert_byte_exact(&s.path("standby"), &reg.addr(), &["--tls-verify=false"]);
    assert!(checked > names.len(), "{checked}");
}

#[test]
fn containerd_pulls_by_upstream_names_from_a_pushed_registry_through_the_planned_hosts_toml() {
    let s = Session::new();
    let site = common::cluster::site();
    common::private_ca(&s);
    let reg = Registry::start_with(&RegistryOptions {
        tls: Some((s.path("server.pem"), s.path("server.key"))),
        ..RegistryOptions::default()
    });
    let to = format!("https://{}/k8s/site", reg.addr());
    s.installer(&[
        "push",
        "--store",
        site.to_str().unwrap(),
        "--to",
        &to,
        "--ca-cert",
        "ca.pem",
    ])
    .success();

    // The plan for an inventory whose registry is that one, under its prefix.
    s.installer(&["init-cluster", "--nodes", "1"]).success();
    let inv = s.read("cluster.toml");
    let inv = inv.replace(
        "node = \"node1\"\nport = 5000\n",
        &format!("url = \"{to}\"\nca = \"ca.pem\"\n"),
    );
    assert!(inv.contains(&to), "{inv}");
    s.write("cluster.toml", &inv);
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
    .success();
    // The node's certs.d, with the CA path it names pointed into the plan tree.
    let certs = s.path("plan/node1/etc/containerd/certs.d");
    for (rel, path) in common::files_under(&certs) {
        if rel.ends_with("hosts.toml") {
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "\"/etc/containerd/certs.d/",
                &format!("\"{}/", certs.display()),
            );
            std::fs::write(&path, text).unwrap();
        }
    }
    let node = Containerd::start(&s.path("node"), &certs);
    let digests = index_digests(&site);
    for name in [
        "registry.k8s.io/pause:3.10",
        "docker.io/library/busybox:1.36",
    ] {
        let out = node.pull(&certs, None, name);
        assert!(
            out.status.success(),
            "ctr pull {name}:\n{}{}\ncontainerd:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
        let ls = String::from_utf8_lossy(&node.ctr(&["images", "ls"]).stdout).into_owned();
        let line = ls
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{ls}"));
        assert!(line.contains(&digests[name]), "{name}: {line}");
    }
    // By the prefixed paths push filled, never by bare names.
    let log = reg.access_log();
    assert!(
        log.contains("/v2/k8s/site/registry.k8s.io/pause/manifests/3.10"),
        "{log}"
    );
    assert!(
        log.contains("/v2/k8s/site/docker.io/library/busybox/manifests/1.36"),
        "{log}"
    );
}

#[test]
fn a_bundle_is_pushed_without_unpacking_and_a_tampered_one_sends_nothing() {
    let s = Session::new();
    let (bundle, key) = common::cluster::bundle();
    let reg = Registry::start();
    let to = format!("http://{}/k8s", reg.addr());
    let (b, k) = (bundle.to_str().unwrap(), key.to_str().unwrap());

    // A bundle with one byte changed halfway: refused (exit 3) before anything is sent.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(s.path("tampered.tar.zst"), &bytes).unwrap();
    let run = s
        .installer(&[
            "push",
            "--bundle",
            "tampered.tar.zst",
            "--key",
            k,
            "--to",
            &to,
        ])
        .refused();
    assert!(
        run.error_line().contains("tampered.tar.zst"),
        "{}",
        run.stderr
    );
    assert_eq!(
        reg.count_requests("POST", "/v2/") + reg.count_requests("PUT", "/v2/"),
        0,
        "a refused bundle sent something"
    );

    // The bundle itself: every manifest lands with the bytes the unpacked store
    // of the same release holds; again, nothing is sent.
    let run = s
        .installer(&[
            "push", "--bundle", b, "--key", k, "--to", &to, "--jobs", "3",
        ])
        .success();
    let first = counts(push_line(&run.stderr));
    assert!(
        first["blobs sent"] > 0 && first["blobs mounted"] > 0,
        "{}",
        run.stderr
    );
    let site = common::cluster::site();
    assert_byte_exact(
        &site,
        &format!("{}/k8s", reg.addr()),
        &["--tls-verify=false"],
    );
    let writes = reg.count_requests("PUT", "/v2/");
    let run = s
        .installer(&["push", "--bundle", b, "--key", k, "--to", &to])
        .success();
    assert_eq!(
        counts(push_line(&run.stderr))["blobs sent"],
        0,
        "{}",
        run.stderr
    );
    assert_eq!(reg.count_requests("PUT", "/v2/"), writes);
}
