//! `ferry-bundler lock` and `pull` against real registry:2 upstreams on loopback:
//! mirror rewriting, fallback, lock enforcement, resumption, auth and faults.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::store::{index_entries, stored_blobs};
use common::{four_kinds, mirror_to, mirrors, spec, Rule, Run, Session, LOCK, LOCKED_PULL};
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::proxy::{Proxy, ProxyOptions};
use ferry_testkit::registry::{dead_url, Registry, RegistryOptions};

const HOST: &str = "registry.example.io";

/// The images every test pulls: both media-type families, lists and single
/// manifests, and one layer shared by three images.
struct Fixture {
    alpha: Image, // Docker manifest list, amd64 + arm64/v8
    beta: Image,  // OCI index, amd64 + arm64
    gamma: Image, // single Docker manifest, amd64
    delta: Image, // single OCI manifest, amd64
}

fn fixture(seed: u64) -> Fixture {
    let [alpha, beta, gamma, delta] = four_kinds(
        layer(seed, 64 * 1024),
        seed * 100,
        [300_000, 200_000, 100_000, 100_000, 50_000, 70_000],
    );
    Fixture {
        alpha,
        beta,
        gamma,
        delta,
    }
}

fn push_fixture(url: &str, repo_prefix: &str, f: &Fixture) {
    image::push(url, &format!("{repo_prefix}alpha"), "v1", &f.alpha);
    image::push(url, &format!("{repo_prefix}beta"), "v2", &f.beta);
    image::push(url, &format!("{repo_prefix}gamma"), "1.0", &f.gamma);
    image::push(url, &format!("{repo_prefix}delta"), "1.0", &f.delta);
}

fn fixture_spec() -> String {
    spec(
        &["linux/amd64", "linux/arm64"],
        &[
            &format!("{HOST}/apps/alpha:v1"),
            &format!("{HOST}/apps/beta:v2"),
            &format!("{{ ref = \"{HOST}/apps/gamma:1.0\", platforms = [\"linux/amd64\"] }}"),
            &format!("{{ ref = \"{HOST}/apps/delta:1.0\", platforms = [\"linux/amd64\"] }}"),
        ],
    )
}

/// Every blob digest a full pull of the fixture must store, once each.
fn expected_blobs(f: &Fixture) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for img in [&f.alpha, &f.beta, &f.gamma, &f.delta] {
        set.insert(img.digest().to_string());
        for p in &img.platforms {
            set.insert(p.manifest.digest.clone());
            for b in p.blobs() {
                set.insert(b.digest.clone());
            }
        }
    }
    set
}

fn direct_mirrors(url: String) -> String {
    mirror_to(HOST, url)
}

/// `ferry-bundler pull spec.toml --lock spec.lock --mirrors MIRRORS --store STORE`
fn pull_locked(s: &Session, mirrors: &str, store: &str) -> Run {
    s.bundler(&[
        "pull",
        "spec.toml",
        "--lock",
        "spec.lock",
        "--mirrors",
        mirrors,
        "--store",
        store,
    ])
}

/// `ferry-bundler pull spec.toml --mirrors mirrors.toml --store STORE EXTRA...`
fn pull(s: &Session, store: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "pull",
        "spec.toml",
        "--mirrors",
        "mirrors.toml",
        "--store",
        store,
    ];
    args.extend_from_slice(extra);
    s.bundler(&args)
}

#[test]
fn lock_and_pull_keep_upstream_digests_and_store_shared_layers_once() {
    let reg = Registry::start();
    let f = fixture(1);
    push_fixture(&reg.url(), "apps/", &f);
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(reg.url()));

    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
    let lock = s.read("spec.lock");
    for (img, platforms) in [(&f.alpha, 2), (&f.beta, 2), (&f.gamma, 1), (&f.delta, 1)] {
        assert!(
            lock.contains(img.digest()),
            "lock lacks {}:\n{lock}",
            img.digest()
        );
        for p in img.platforms.iter().take(platforms) {
            assert!(
                lock.contains(&p.manifest.digest),
                "lock lacks {}",
                p.platform()
            );
        }
    }

    let run = pull_locked(&s, "mirrors.toml", "store").success();
    assert!(run.stderr.contains("pulled 4 image(s)"), "{}", run.stderr);
    let store = s.path("store");
    let entries = index_entries(&store);
    assert_eq!(
        entries[&format!("{HOST}/apps/alpha:v1")],
        (
            ferry::media::DOCKER_LIST.to_string(),
            f.alpha.digest().to_string()
        )
    );
    assert_eq!(
        entries[&format!("{HOST}/apps/beta:v2")],
        (
            ferry::media::OCI_INDEX.to_string(),
            f.beta.digest().to_string()
        )
    );
    assert_eq!(
        entries[&format!("{HOST}/apps/gamma:1.0")],
        (
            ferry::media::DOCKER_MANIFEST.to_string(),
            f.gamma.digest().to_string()
        )
    );
    assert_eq!(
        entries[&format!("{HOST}/apps/delta:1.0")],
        (
            ferry::media::OCI_MANIFEST.to_string(),
            f.delta.digest().to_string()
        )
    );
    // Byte-exact top-level manifests, every blob once, nothing extra.
    assert_eq!(
        std::fs::read(store.join("blobs/sha256").join(&f.alpha.digest()[7..])).unwrap(),
        f.alpha.top.data
    );
    assert_eq!(stored_blobs(&store), expected_blobs(&f));
    let shared = &f.alpha.platforms[0].layers[0].digest;
    assert_eq!(
        reg.count_requests("GET", &format!("/blobs/{shared}")),
        1,
        "the shared layer was fetched more than once"
    );

    // Standard tools read the layout.
    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "umoci ls: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let listed = String::from_utf8_lossy(&ls.stdout);
    for name in entries.keys() {
        assert!(
            listed.lines().any(|l| l == name),
            "umoci ls lacks {name}:\n{listed}"
        );
    }
    for (name, want) in [
        (format!("{HOST}/apps/beta:v2"), &f.beta.top.digest),
        (format!("{HOST}/apps/delta:1.0"), &f.delta.top.digest),
    ] {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:{name}", store.display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Digest"].as_str(), Some(want.as_str()), "{name}");
        assert_eq!(v["Architecture"].as_str(), Some("amd64"));
    }

    // A second pull finds everything in the store and fetches nothing.
    let before = reg.count_requests("GET", "/blobs/");
    let run = pull_locked(&s, "mirrors.toml", "store").success();
    assert_eq!(
        reg.count_requests("GET", "/blobs/"),
        before,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("0 blob(s), 0 B fetched"),
        "{}",
        run.stderr
    );
}

#[test]
fn flattening_mirror_answers_for_registry_k8s_io_after_a_dead_endpoint() {
    let reg = Registry::start();
    let f = fixture(2);
    image::push(&reg.url(), "google_containers/coredns", "v1.11.3", &f.alpha);
    image::push(&reg.url(), "google_containers/pause", "3.10", &f.delta);
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(
            &["linux/amd64", "linux/arm64"],
            &[
                "registry.k8s.io/coredns/coredns:v1.11.3",
                "{ ref = \"registry.k8s.io/pause:3.10\", platforms = [\"linux/amd64\"] }",
            ],
        ),
    );
    let dead = dead_url();
    s.write(
        "mirrors.toml",
        &mirrors(&[Rule {
            host: "registry.k8s.io",
            endpoints: vec![
                (dead.clone(), None, false),
                (reg.url(), Some("google_containers"), true),
            ],
        }]),
    );
    let run = pull(&s, "store", &[]).success();
    assert!(
        run.stderr
            .contains(&format!("{dead}/coredns/coredns failed")),
        "the dead endpoint is not named:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("plain HTTP"), "{}", run.stderr);
    let entries = index_entries(&s.path("store"));
    assert_eq!(
        entries["registry.k8s.io/coredns/coredns:v1.11.3"].1,
        f.alpha.digest()
    );
    assert_eq!(entries["registry.k8s.io/pause:3.10"].1, f.delta.digest());
    assert!(reg.count_requests("GET", "/v2/google_containers/coredns/manifests/v1.11.3") >= 1);
}

#[test]
fn a_mirror_serving_other_bytes_under_the_tag_is_refused_against_the_lock() {
    let upstream = Registry::start();
    let stale = Registry::start();
    let good = fixture(3);
    let other = fixture(4);
    push_fixture(&upstream.url(), "apps/", &good);
    push_fixture(&stale.url(), "apps/", &other);
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("up.toml", &direct_mirrors(upstream.url()));
    s.write("stale.toml", &direct_mirrors(stale.url()));
    s.write(
        "both.toml",
        &mirrors(&[Rule {
            host: HOST,
            endpoints: vec![(stale.url(), None, false), (upstream.url(), None, false)],
        }]),
    );
    s.bundler(&["lock", "spec.toml", "--mirrors", "up.toml"])
        .success();

    // The stale mirror comes first: refused by name, the upstream serves the locked bytes.
    let run = pull_locked(&s, "both.toml", "store").success();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains(&format!("{HOST}/apps/alpha:v1")) && l.contains("refused"))
        .unwrap_or_else(|| panic!("no refusal for alpha:\n{}", run.stderr));
    assert!(warning.contains(&stale.url()), "{warning}");
    assert!(
        warning.contains(good.alpha.digest()) && warning.contains(other.alpha.digest()),
        "{warning}"
    );
    assert_eq!(
        index_entries(&s.path("store"))[&format!("{HOST}/apps/alpha:v1")].1,
        good.alpha.digest()
    );

    // Only the stale mirror: nothing it serves is accepted, and the store names nothing.
    let run = pull_locked(&s, "stale.toml", "store2").failure();
    let err = run.error_line();
    assert!(err.contains("cannot pull image"), "{err}");
    assert!(err.contains(&stale.url()), "{err}");
    assert!(!s.path("store2/index.json").exists() || index_entries(&s.path("store2")).is_empty());
    for blob in stored_blobs(&s.path("store2")) {
        assert!(
            !expected_blobs(&other).contains(&blob) || expected_blobs(&good).contains(&blob),
            "stale content {blob} stored"
        );
    }

    // The cross-check asks both and refuses, naming them.
    let run = s
        .bundler(&[
            "lock",
            "spec.toml",
            "--mirrors",
            "both.toml",
            "--cross-check",
            "-o",
            "x.lock",
        ])
        .failure();
    let err = run.error_line();
    assert!(
        err.contains("disagree") && err.contains(&stale.url()) && err.contains(&upstream.url()),
        "{err}"
    );
    assert!(!s.path("x.lock").exists());
    // Agreeing endpoints pass the cross-check.
    s.bundler(&[
        "lock",
        "spec.toml",
        "--mirrors",
        "up.toml",
        "--cross-check",
        "-o",
        "y.lock",
    ])
    .success();
    assert_eq!(s.read("y.lock"), s.read("spec.lock"));
}

#[test]
fn missing_platforms_are_clear_errors() {
    let reg = Registry::start();
    let f = fixture(5);
    push_fixture(&reg.url(), "apps/", &f);
    let s = Session::new();
    s.write("mirrors.toml", &direct_mirrors(reg.url()));
    s.write(
        "a.toml",
        &spec(&["linux/s390x"], &[&format!("{HOST}/apps/alpha:v1")]),
    );
    let run = s
        .bundler(&["lock", "a.toml", "--mirrors", "mirrors.toml"])
        .failure();
    let err = run.error_line();
    assert!(
        err.contains(&format!("{HOST}/apps/alpha:v1")) && err.contains("no linux/s390x"),
        "{err}"
    );
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64/v8"),
        "{err}"
    );

    s.write(
        "b.toml",
        &spec(&["linux/arm64"], &[&format!("{HOST}/apps/gamma:1.0")]),
    );
    let run = s
        .bundler(&[
            "pull",
            "b.toml",
            "--mirrors",
            "mirrors.toml",
            "--store",
            "store",
        ])
        .failure();
    let err = run.error_line();
    assert!(
        err.contains("single-platform image for linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(!s.path("b.lock").exists());
}

#[test]
fn bad_specs_and_rules_are_one_line_errors_naming_the_culprit() {
    let s = Session::new();
    s.write(
        "unknown.toml",
        "name = \"x\"\nversion = \"1\"\nplatforms = [\"linux/amd64\"]\nimagez = []\n",
    );
    let run = s.bundler(&["lock", "unknown.toml"]).failure();
    assert!(
        run.error_line().contains("unknown.toml:4") && run.error_line().contains("imagez"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    s.write(
        "badref.toml",
        &spec(&["linux/amd64"], &["registry.k8s.io/Pause:3.10"]),
    );
    let run = s
        .bundler(&["pull", "badref.toml", "--store", "store"])
        .failure();
    assert!(
        run.error_line().contains("registry.k8s.io/Pause:3.10"),
        "{}",
        run.stderr
    );
    assert!(
        !s.path("store").exists(),
        "a bad spec must not create the store"
    );

    s.write(
        "m.toml",
        "[[registry]]\nhost = \"x.io\"\nendpoints = [{ url = \"ftp://x\" }]\n",
    );
    s.write("ok.toml", &spec(&["linux/amd64"], &["x.io/a:1"]));
    let run = s
        .bundler(&["lock", "ok.toml", "--mirrors", "m.toml"])
        .failure();
    assert!(
        run.error_line().contains("m.toml") && run.error_line().contains("ftp://x"),
        "{}",
        run.stderr
    );

    let run = s.bundler(&["lock", "missing.toml"]).failure();
    assert!(run.error_line().contains("missing.toml"), "{}", run.stderr);

    s.write(
        "lockless.toml",
        &spec(&["linux/amd64"], &["x.io/a:1", "x.io/b:1"]),
    );
    s.write(
        "l.lock",
        "version = 1\nname = \"x\"\nspec_version = \"1\"\n",
    );
    let run = s
        .bundler(&[
            "pull",
            "lockless.toml",
            "--lock",
            "l.lock",
            "--store",
            "store",
        ])
        .failure();
    assert!(
        run.error_line().contains("x.io/a:1") && run.error_line().contains("not in the lock"),
        "{}",
        run.stderr
    );
}

#[test]
fn bearer_token_auth_with_credentials() {
    let reg = Registry::start();
    let f = fixture(6);
    push_fixture(&reg.url(), "apps/", &f);
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            bearer: Some(("ferry".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(proxy.url()));

    let run = s
        .bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .failure();
    assert!(run.error_line().contains("--cred"), "{}", run.stderr);

    let cred = format!("{}=ferry:s3cret", proxy.addr());
    pull(&s, "store", &["--cred", &cred]).success();
    assert!(proxy.token_requests() >= 1);
    assert!(proxy.count("Authorization=Bearer") > 0);
    assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));

    // The same credentials from ~/.docker/config.json.
    let auth = "ZmVycnk6czNjcmV0"; // base64("ferry:s3cret")
    s.write(
        ".docker/config.json",
        &format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            proxy.addr()
        ),
    );
    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
}

#[test]
fn throttling_errors_and_dropped_connections_are_retried_and_resumed() {
    let reg = Registry::start();
    let f = fixture(7);
    push_fixture(&reg.url(), "apps/", &f);
    let big = f.alpha.platforms[0].layers[1].digest.clone();
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            fail_first: vec![
                ("/manifests/".into(), 429, 2, Some(1)),
                ("/blobs/".into(), 503, 2, None),
            ],
            drop_after_bytes: vec![(format!("/blobs/{big}"), 100_000)],
            ..Default::default()
        },
    );
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(proxy.url()));
    pull(&s, "store", &[]).success();
    assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));
    // The dropped blob was resumed from where the connection died, not fetched again.
    assert_eq!(
        proxy.count(&format!(
            "GET /v2/apps/alpha/blobs/{big} Range=bytes=100000-"
        )),
        1,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(
        reg.served("GET", &format!("/blobs/{big}"))
            .iter()
            .filter(|(st, _)| *st == 206)
            .count(),
        1
    );
}

#[test]
fn a_pull_killed_at_several_points_resumes_without_fetching_finished_blobs_again() {
    // kill -9 while the first layer is still partial, after two layers, after five.
    for kill_after in [0, 2, 5] {
        interrupted_pull(kill_after);
    }
}

/// Pulls eight 1 MiB layers through a 4 MiB/s proxy (about two seconds), kills the
/// pull (SIGKILL) once `kill_after` layers are in the store (0: once a partial
/// download exists), pulls again, and checks the store is exact: every blob of
/// the image and nothing else, each hashing to its name, nothing partial or
/// temporary left, no finished blob fetched twice.
fn interrupted_pull(kill_after: usize) {
    let reg = Registry::start();
    let layers: Vec<Vec<u8>> = (0..8).map(|i| layer(800 + i, 1 << 20)).collect();
    let (img, _proxy, s) = locked_behind_a_slow_proxy(&reg, "big", Flavor::Oci, layers);

    let layer_digests: Vec<String> = img.platforms[0]
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    let committed = |layers: &[String]| -> Vec<String> {
        layers
            .iter()
            .filter(|d| s.path("store/blobs/sha256").join(&d[7..]).exists())
            .cloned()
            .collect()
    };
    let dir_is_empty = |rel: &str| {
        std::fs::read_dir(s.path(rel))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    };
    let mut child = s.spawn_bundler(&[&LOCKED_PULL[..], &["--jobs", "2"]].concat());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = || {
        if kill_after == 0 {
            !dir_is_empty("store/.ferry/partial")
        } else {
            committed(&layer_digests).len() >= kill_after
        }
    };
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "kill point {kill_after} not reached in 30 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull finished before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = committed(&layer_digests);
    assert!(
        done_before.len() < layer_digests.len(),
        "the pull finished before the kill"
    );
    assert!(
        !s.path("store/index.json").exists(),
        "an unfinished image is named in index.json"
    );

    pull_locked(&s, "mirrors.toml", "store").success();
    assert_eq!(
        index_entries(&s.path("store"))[&format!("{HOST}/apps/big:v1")].1,
        img.digest()
    );
    for d in &layer_digests {
        let gets = reg.count_requests("GET", &format!("/blobs/{d}"));
        if done_before.contains(d) {
            assert_eq!(
                gets, 1,
                "kill after {kill_after}: finished blob {d} was fetched again"
            );
        } else {
            assert!(gets >= 1);
        }
    }
    let expected: BTreeSet<String> = std::iter::once(img.digest().to_string())
        .chain(img.unique_blobs().iter().map(|b| b.digest.clone()))
        .collect();
    assert_eq!(
        stored_blobs(&s.path("store")),
        expected,
        "kill after {kill_after}"
    );
    for rel in [
        "store/.ferry/partial",
        "store/.ferry/tmp",
        "store/.ferry/staging",
    ] {
        assert!(
            dir_is_empty(rel),
            "kill after {kill_after}: {rel} is not empty"
        );
    }
}

/// `HOST/apps/NAME:v1`, one linux/amd64 image of `layers`, pushed to `reg`, and a
/// session where it is locked through a 4 MiB/s proxy in front of `reg` (the mirror).
fn locked_behind_a_slow_proxy(
    reg: &Registry,
    name: &str,
    flavor: Flavor,
    layers: Vec<Vec<u8>>,
) -> (Image, Proxy, Session) {
    let img = Image::single(platform_image(flavor, "linux", "amd64", None, layers));
    image::push(&reg.url(), &format!("apps/{name}"), "v1", &img);
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            throttle_bytes_per_sec: Some(4 << 20),
            ..Default::default()
        },
    );
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/apps/{name}:v1")]),
    );
    s.write("mirrors.toml", &direct_mirrors(proxy.url()));
    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
    (img, proxy, s)
}

#[test]
fn https_with_a_private_ca() {
    let plain = Registry::start();
    let f = fixture(8);
    push_fixture(&plain.url(), "apps/", &f);
    let s = Session::new();
    common::private_ca(&s);
    let tls = Registry::start_with(&RegistryOptions {
        tls: Some((s.path("server.pem"), s.path("server.key"))),
        storage: Some(plain.storage_dir()),
        ..RegistryOptions::default()
    });
    assert!(tls.url().starts_with("https://"));
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(tls.url()));

    let run = s
        .bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .failure();
    assert!(
        run.error_line().to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );

    let run = pull(&s, "store", &["--ca-cert", "ca.pem"]).success();
    assert!(!run.stderr.contains("plain HTTP"), "{}", run.stderr);
    assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));
}

#[test]
fn blobs_redirected_to_object_storage_are_followed() {
    let reg = Registry::start();
    let f = fixture(9);
    push_fixture(&reg.url(), "apps/", &f);
    // The registry answers blob GETs with 307 to another host, behind token auth.
    let front = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            bearer: Some(("u".into(), "p".into())),
            redirect_blobs_to: Some(reg.url()),
            ..Default::default()
        },
    );
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(front.url()));
    let cred = format!("{}=u:p", front.addr());
    pull(&s, "store", &["--cred", &cred]).success();
    assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));
    let layer = &f.beta.platforms[1].layers[0].digest;
    assert_eq!(front.count(&format!("GET /v2/apps/beta/blobs/{layer}")), 1);
    assert_eq!(
        reg.count_requests("GET", &format!("/v2/apps/beta/blobs/{layer}")),
        1
    );
}

#[test]
fn two_pulls_into_one_store_share_the_work() {
    let reg = Registry::start();
    let layers: Vec<Vec<u8>> = (0..6).map(|i| layer(900 + i, 512 << 10)).collect();
    let (img, _proxy, s) = locked_behind_a_slow_proxy(&reg, "both", Flavor::Docker, layers);
    let mut a = s.spawn_bundler(&LOCKED_PULL);
    let mut b = s.spawn_bundler(&LOCKED_PULL);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let want: BTreeSet<String> = std::iter::once(img.digest().to_string())
        .chain(img.platforms[0].blobs().map(|b| b.digest.clone()))
        .collect();
    assert_eq!(stored_blobs(&s.path("store")), want);
    for l in &img.platforms[0].layers {
        assert_eq!(
            reg.count_requests("GET", &format!("/blobs/{}", l.digest)),
            1,
            "layer {} fetched twice",
            l.digest
        );
    }
    assert_eq!(index_entries(&s.path("store")).len(), 1);
}

#[test]
fn progress_is_reported_in_plain_lines_and_quiet_is_silent() {
    let reg = Registry::start();
    let f = fixture(10);
    push_fixture(&reg.url(), "apps/", &f);
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(reg.url()));
    let run = pull(&s, "a", &[]).success();
    // Not a terminal: plain lines, the last one with the whole transfer.
    let last = run
        .stderr
        .lines()
        .rfind(|l| l.starts_with("progress: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    let total = last
        .trim_start_matches("progress: ")
        .split(" of ")
        .collect::<Vec<_>>();
    assert_eq!(total[0], total[1].split(" (").next().unwrap(), "{last}");
    assert!(
        run.stderr
            .contains("locked registry.example.io/apps/alpha:v1 -> sha256:"),
        "{}",
        run.stderr
    );
    let run = pull(&s, "b", &["--quiet"]).success();
    assert_eq!(run.stderr, "");
    assert_eq!(stored_blobs(&s.path("b")), expected_blobs(&f));

    // On a terminal (a pty from util-linux `script`): one bar with bytes, rate and ETA.
    let command = format!(
        "{} pull spec.toml --mirrors mirrors.toml --store c",
        common::bin_path("ferry-bundler").display()
    );
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(s.dir.path())
        .env("DOCKER_CONFIG", s.path(".docker"))
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("pulling [") && screen.contains("ETA"),
        "{screen}"
    );
    assert!(
        !screen.contains("progress: "),
        "plain lines on a terminal:\n{screen}"
    );
    assert!(screen.contains("pulled 4 image(s)"), "{screen}");
}

/// A real registry:2 that asks for HTTP Basic credentials (htpasswd with the user
/// alice, password s3cret), serving the storage of `plain`: the kit pushes
/// anonymously, so images go into `plain` and are pulled from here. Killed on drop.
struct BasicAuthRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl BasicAuthRegistry {
    fn start(plain: &Registry) -> BasicAuthRegistry {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let users = Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .expect("htpasswd (apache2-utils)");
        assert!(users.status.success());
        std::fs::write(dir.path().join("users"), &users.stdout).unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{ level: error }}\n\
                     storage: {{ filesystem: {{ rootdirectory: {} }} }}\n\
                     http: {{ addr: 127.0.0.1:{port}, secret: ferry-e2e }}\n\
                     auth: {{ htpasswd: {{ realm: ferry-e2e, path: {} }} }}\n",
                    plain.storage_dir().display(),
                    dir.path().join("users").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting registry:2");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = c.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                    let mut head = String::new();
                    let _ = c.read_to_string(&mut head);
                    if head.starts_with("HTTP/1.0 401") && head.contains("Basic realm") {
                        return BasicAuthRegistry {
                            child,
                            port,
                            _dir: dir,
                        };
                    }
                    last = head;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("registry:2 with htpasswd did not come up: {last}");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for BasicAuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture pushed into a registry:2 that asks for Basic auth, and a session whose
/// spec and mirrors point at it.
fn behind_basic_auth(seed: u64) -> (Fixture, Registry, BasicAuthRegistry, Session) {
    let plain = Registry::start();
    let f = fixture(seed);
    push_fixture(&plain.url(), "apps/", &f);
    let reg = BasicAuthRegistry::start(&plain);
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write(
        "mirrors.toml",
        &direct_mirrors(format!("http://{}", reg.addr())),
    );
    (f, plain, reg, s)
}

/// Writes `bin/docker-credential-NAME`, a shell script speaking the credential-helper
/// protocol: `get` reads the server from stdin, logs it to `NAME.asked`, and prints
/// alice's credentials for `knows`, else "credentials not found" and fails.
fn credential_helper(s: &Session, name: &str, knows: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let log = s.path(&format!("{name}.asked"));
    let path = s.write(
        &format!("bin/docker-credential-{name}"),
        &format!(
            "#!/bin/sh\n\
             [ \"$1\" = get ] || {{ echo \"unsupported: $1\" >&2; exit 2; }}\n\
             server=$(cat)\n\
             echo \"$server\" >> '{log}'\n\
             if [ \"$server\" = '{knows}' ]; then\n\
               printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"%s\"}}\\n' \"$server\" '{secret}'\n\
             else\n\
               echo 'credentials not found in native keychain'; exit 1\n\
             fi\n",
            log = log.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The servers helper `name` was asked about, in order.
fn asked(s: &Session, name: &str) -> Vec<String> {
    std::fs::read_to_string(s.path(&format!("{name}.asked")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cred_helpers_and_creds_store_from_docker_config_log_in_by_the_helper_protocol() {
    let (f, _plain, reg, s) = behind_basic_auth(11);
    let addr = reg.addr();
    let path = format!(
        "{}:{}",
        s.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pull_into = |store: &str, extra: &[&str]| {
        let mut args = vec![
            "pull",
            "spec.toml",
            "--mirrors",
            "mirrors.toml",
            "--store",
            store,
        ];
        args.extend_from_slice(extra);
        s.bundler_env(&args, &[("PATH", &path)])
    };
    let config = |json: String| s.write(".docker/config.json", &json);
    credential_helper(&s, "ferryknows", &addr, "s3cret");
    credential_helper(&s, "ferryother", "other.example.io", "s3cret");
    credential_helper(&s, "ferrywrong", &addr, "wrong");

    // Without credentials the registry refuses the pull.
    let run = pull_into("none", &[]).failure();
    assert!(
        run.error_line()
            .contains(&format!("no credentials for {addr}")),
        "{}",
        run.stderr
    );

    // credHelpers names a helper for the host: it is asked once, for this host.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferryknows"}}}}"#));
    pull_into("by-helper", &[]).success();
    assert_eq!(stored_blobs(&s.path("by-helper")), expected_blobs(&f));
    assert_eq!(asked(&s, "ferryknows"), [addr.as_str()]);

    // A helper that has nothing for the host: no credentials, so refused.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferryother"}}}}"#));
    let run = pull_into("helper-lacks", &[]).failure();
    assert!(
        run.error_line().contains("no credentials"),
        "{}",
        run.stderr
    );
    assert_eq!(asked(&s, "ferryother"), [addr.as_str()]);

    // credsStore serves every host; it comes before auths (whose password is wrong).
    let wrong = "YWxpY2U6d3Jvbmc="; // base64("alice:wrong")
    config(format!(
        r#"{{"credsStore":"ferryknows","auths":{{"{addr}":{{"auth":"{wrong}"}}}}}}"#
    ));
    pull_into("by-store", &[]).success();
    assert_eq!(stored_blobs(&s.path("by-store")), expected_blobs(&f));
    assert_eq!(asked(&s, "ferryknows").len(), 2);
    // ... and the pull is refused when auths is all there is.
    config(format!(r#"{{"auths":{{"{addr}":{{"auth":"{wrong}"}}}}}}"#));
    pull_into("by-auths", &[]).failure();

    // credHelpers[host] comes before credsStore: here it gives a wrong password.
    config(format!(
        r#"{{"credHelpers":{{"{addr}":"ferrywrong"}},"credsStore":"ferryknows"}}"#
    ));
    let run = pull_into("helper-first", &[]).failure();
    assert!(run.error_line().contains("401"), "{}", run.stderr);
    assert_eq!(asked(&s, "ferrywrong"), [addr.as_str()]);
    // --cred comes before both, and no helper is run.
    let cred = format!("{addr}=alice:s3cret");
    pull_into("by-flag", &["--cred", &cred]).success();
    assert_eq!(asked(&s, "ferrywrong").len(), 1);
    assert_eq!(asked(&s, "ferryknows").len(), 2);

    // A helper that cannot be run or fails: one error line naming it and the host.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferrymissing"}}}}"#));
    let run = pull_into("missing", &[]).failure();
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "credential helper docker-credential-ferrymissing for {addr}: cannot run it"
        )),
        "{}",
        run.stderr
    );
    s.write(
        "bin/docker-credential-ferryfails",
        "#!/bin/sh\necho 'keychain is locked' >&2\necho 'second line' >&2\nexit 3\n",
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            s.path("bin/docker-credential-ferryfails"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    config(r#"{"credsStore":"ferryfails"}"#.to_string());
    let run = pull_into("fails", &[]).failure();
    assert!(
        run.error_line().contains(&format!(
            "credential helper docker-credential-ferryfails for {addr}: `get` failed (exit status: 3): keychain is locked"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("second line"), "{}", run.stderr);
}

#[test]
fn a_password_from_stdin_or_the_environment_stays_off_the_command_line() {
    let (f, _plain, reg, s) = behind_basic_auth(12);
    let user = format!("{}=alice", reg.addr());
    let args = |store: &'static str| {
        vec![
            "pull".to_string(),
            "spec.toml".into(),
            "--mirrors".into(),
            "mirrors.toml".into(),
            "--store".into(),
            store.into(),
            "--user".into(),
            user.clone(),
        ]
    };
    let env_pull = |store: &'static str, password: Option<&str>| {
        let args = args(store);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match password {
            Some(p) => s.bundler_env(&args, &[("FERRY_REGISTRY_PASSWORD", p)]),
            None => s.bundler(&args),
        }
    };
    // `ferry-bundler pull ... --user HOST=alice --password-stdin`, `stdin` piped in, and
    // a wrong FERRY_REGISTRY_PASSWORD that stdin must win over.
    let stdin_pull = |store: &'static str, stdin: &str| {
        use std::io::Write as _;
        let mut child = Command::new(common::bin_path("ferry-bundler"))
            .args(args(store))
            .arg("--password-stdin")
            .current_dir(s.dir.path())
            .env("DOCKER_CONFIG", s.path(".docker"))
            .env("FERRY_REGISTRY_PASSWORD", "wrong")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // The environment variable.
    env_pull("by-env", Some("s3cret")).success();
    assert_eq!(stored_blobs(&s.path("by-env")), expected_blobs(&f));
    let run = env_pull("env-wrong", Some("wrong")).failure();
    assert!(run.error_line().contains("401"), "{}", run.stderr);
    let run = env_pull("env-none", None).failure();
    assert!(
        run.error_line().contains("--password-stdin")
            && run.error_line().contains("FERRY_REGISTRY_PASSWORD"),
        "{}",
        run.stderr
    );

    // Standard input: its first line, with or without the newline.
    for (store, stdin) in [("by-stdin", "s3cret\n"), ("by-stdin-bare", "s3cret")] {
        let (status, stderr) = stdin_pull(store, stdin);
        assert!(status.success(), "{stderr}");
        assert_eq!(stored_blobs(&s.path(store)), expected_blobs(&f));
    }
    let (status, stderr) = stdin_pull("stdin-wrong", "wrong\n");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    let (status, stderr) = stdin_pull("stdin-empty", "");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: --password-stdin: no password on standard input"),
        "{stderr}"
    );

    // --password-stdin means nothing without --user; --user takes HOST=USER.
    let run = s.bundler(&["pull", "spec.toml", "--store", "x", "--password-stdin"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let run = s
        .bundler_env(
            &["pull", "spec.toml", "--store", "x", "--user", "alice"],
            &[("FERRY_REGISTRY_PASSWORD", "s3cret")],
        )
        .failure();
    assert!(
        run.error_line()
            .contains("--user \"alice\": expected HOST=USER"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_blob_served_with_other_bytes_or_too_many_is_refused_and_its_partial_file_removed() {
    let reg = Registry::start();
    let f = fixture(13);
    push_fixture(&reg.url(), "apps/", &f);
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/apps/gamma:1.0")]),
    );
    s.write("mirrors.toml", &direct_mirrors(reg.url()));
    // registry:2 serves what its storage holds without checking it again.
    let layer = &f.gamma.platforms[0].layers[0];
    let data = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex())
        .join("data");
    let partials = |store: &str| {
        std::fs::read_dir(s.path(store).join(".ferry/partial"))
            .map(|d| d.count())
            .unwrap_or(0)
    };

    let mut other = layer.data.clone();
    other[100] ^= 1;
    std::fs::write(&data, &other).unwrap();
    let run = pull(&s, "other", &[]).failure();
    assert!(
        run.stderr.contains(&format!("for blob {}", layer.digest))
            && run.stderr.contains("served sha256:"),
        "{}",
        run.stderr
    );
    assert_eq!(partials("other"), 0);

    let mut longer = layer.data.clone();
    longer.extend_from_slice(&[0; 4096]);
    std::fs::write(&data, &longer).unwrap();
    let run = pull(&s, "longer", &[]).failure();
    assert!(
        run.stderr.contains(&format!(
            "served more than the {} bytes the manifest gives for blob {}",
            layer.data.len(),
            layer.digest
        )),
        "{}",
        run.stderr
    );
    assert_eq!(partials("longer"), 0);

    // With the true bytes back, the same stores complete.
    std::fs::write(&data, &layer.data).unwrap();
    pull(&s, "other", &[]).success();
    assert!(s.path("other/blobs/sha256").join(layer.hex()).exists());
}

/// A loopback port whose SYNs are dropped (iptables), as a blocked mirror behaves
/// behind a national firewall: connections hang until their timeout. The rule goes
/// when this does.
struct BlackHole {
    port: u16,
}

impl BlackHole {
    fn new() -> BlackHole {
        let port = ferry_testkit::registry::free_port();
        let ok = Command::new("iptables")
            .args(["-I", "INPUT", "-i", "lo", "-p", "tcp", "--dport"])
            .arg(port.to_string())
            .args(["-j", "DROP"])
            .status()
            .expect("iptables (CI runs as root)");
        assert!(ok.success(), "iptables could not add the DROP rule");
        BlackHole { port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(["-D", "INPUT", "-i", "lo", "-p", "tcp", "--dport"])
            .arg(self.port.to_string())
            .args(["-j", "DROP"])
            .status();
    }
}

#[test]
fn mirrors_that_hang_cost_about_one_connect_timeout_per_run() {
    let reg = Registry::start();
    let f = fixture(31);
    push_fixture(&reg.url(), "apps/", &f);
    let (hole, hole2) = (BlackHole::new(), BlackHole::new());
    let timeout = ["--connect-timeout", "1"];
    // The binaries are built by the first run of a test process: not timed.
    Session::new().bundler(&["--version"]).success();
    // lock + pull into a fresh store through `rules`; the time it took.
    let run_with = |name: &str, rules: String, args: &[&str]| {
        let s = Session::new();
        s.write("spec.toml", &fixture_spec());
        s.write("mirrors.toml", &rules);
        let t = std::time::Instant::now();
        let lock = s.bundler(&[&LOCK[..], args].concat()).success();
        let pull = s.bundler(&[&LOCKED_PULL[..], args].concat()).success();
        let took = t.elapsed();
        let entries = index_entries(&s.path("store"));
        for (image, img) in [("alpha:v1", &f.alpha), ("beta:v2", &f.beta)] {
            assert_eq!(
                entries[&format!("{HOST}/apps/{image}")].1,
                img.digest(),
                "{name}"
            );
        }
        stored_blobs(&s.path("store"));
        (took, format!("{}{}", lock.stderr, pull.stderr))
    };
    let run = |name: &str, endpoints: Vec<String>| {
        let rules = mirrors(&[Rule {
            host: HOST,
            endpoints: endpoints.into_iter().map(|u| (u, None, false)).collect(),
        }]);
        run_with(name, rules, &timeout)
    };
    let (direct, _) = run("direct", vec![reg.url()]);
    for (name, endpoints) in [
        ("the first hangs", vec![hole.url(), reg.url()]),
        (
            "a middle one hangs",
            vec![dead_url(), hole.url(), reg.url()],
        ),
        (
            "all but the last hang",
            vec![hole.url(), hole2.url(), reg.url()],
        ),
    ] {
        let (took, stderr) = run(name, endpoints);
        eprintln!("{name}: {took:?} (direct: {direct:?})");
        // Two commands, each paying one connect timeout (1 s) per hanging endpoint
        // at most, whatever the number of downloads.
        assert!(
            took < direct + std::time::Duration::from_secs(7),
            "{name}: {took:?} against {direct:?} direct\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("note: {} was skipped", hole.url())),
            "{name}: {stderr}"
        );
    }
    // A timeout of the endpoint's own in mirrors.toml (0.5 s) wins over the
    // command line's default (3 s).
    let rules = format!(
        "[[registry]]\nhost = \"{HOST}\"\nskip_upstream = true\nendpoints = [\n  {{ url = \"{}\", connect_timeout = 0.5 }},\n  {{ url = \"{}\" }},\n]\n",
        hole.url(),
        reg.url()
    );
    let (took, stderr) = run_with("its own timeout", rules, &[]);
    eprintln!("its own timeout: {took:?} (direct: {direct:?})");
    assert!(
        took < direct + std::time::Duration::from_secs(3),
        "{took:?} against {direct:?} direct\n{stderr}"
    );
}
