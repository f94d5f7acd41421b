//! Mirror rules at work: a flattening mirror after a dead one, a stale mirror
//! refused against the lock, a mirror lacking blobs (said once, counted at the
//! end), a private CA, redirects to object storage, and mirrors that hang.

use super::*;

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
    // Both images are resolved at once: whichever fails first is said.
    assert!(
        run.stderr
            .contains(&format!("{dead}/coredns/coredns failed"))
            || run.stderr.contains(&format!("{dead}/pause failed")),
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

    // The stale mirror comes first: refused by name (the first of its four tags as
    // it happens, all four counted at the end), the upstream serves the locked bytes.
    let run = pull_locked(&s, "both.toml", "store").success();
    let refusals: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" refused: "))
        .collect();
    assert_eq!(refusals.len(), 1, "{}", run.stderr);
    let warning = refusals[0];
    assert!(warning.contains(&stale.url()), "{warning}");
    let pairs = [
        (&good.alpha, &other.alpha),
        (&good.beta, &other.beta),
        (&good.gamma, &other.gamma),
        (&good.delta, &other.delta),
    ];
    assert!(
        pairs
            .iter()
            .any(|(g, o)| warning.contains(g.digest()) && warning.contains(o.digest())),
        "{warning}"
    );
    assert!(
        run.stderr.contains(&format!(
            "note: {} served other bytes than those asked for 4 manifests (stale or altered)",
            stale.url()
        )),
        "{}",
        run.stderr
    );
    // --verbose says each refusal, alpha's among them.
    let run = s
        .bundler(&[
            "pull",
            "spec.toml",
            "--lock",
            "spec.lock",
            "--mirrors",
            "both.toml",
            "--store",
            "store-verbose",
            "--verbose",
        ])
        .success();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains(&format!("{HOST}/apps/alpha:v1")) && l.contains("refused"))
        .unwrap_or_else(|| panic!("no refusal for alpha:\n{}", run.stderr));
    assert!(
        warning.contains(&stale.url())
            && warning.contains(good.alpha.digest())
            && warning.contains(other.alpha.digest()),
        "{warning}"
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.contains(" refused: "))
            .count(),
        4,
        "{}",
        run.stderr
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
fn mirrors_that_hang_cost_about_one_head_start_per_run() {
    let reg = Registry::start();
    let f = fixture(31);
    push_fixture(&reg.url(), "apps/", &f);
    let (hole, hole2) = (BlackHole::new(), BlackHole::new());
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
        assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f), "{name}");
        (took, format!("{}{}", lock.stderr, pull.stderr))
    };
    let run = |name: &str, endpoints: Vec<String>, args: &[&str]| {
        let rules = mirrors(&[Rule {
            host: HOST,
            endpoints: endpoints.into_iter().map(|u| (u, None, false)).collect(),
        }]);
        run_with(name, rules, args)
    };
    let (direct, _) = run("direct", vec![reg.url()], &[]);
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
        // The default connect timeout (3 s) is never waited for: after the head
        // start (0.25 s) the next endpoint is asked too, and a hanging endpoint
        // passed over once gets no head start while its probe has not answered.
        let (took, stderr) = run(name, endpoints, &["--verbose"]);
        eprintln!("{name}: {took:?} (direct: {direct:?})");
        assert!(
            stderr.contains(&format!(
                "decision: {}: no answer within 250 ms; starting",
                hole.url()
            )),
            "{name}: {stderr}"
        );
        assert!(
            took < direct + std::time::Duration::from_secs(2),
            "{name}: {took:?} against {direct:?} direct\n{stderr}"
        );
        let noted = |what: &str| stderr.contains(&format!("note: {} {what}", hole.url()));
        assert!(
            noted("was skipped") || noted("did not answer in time"),
            "{name}: {stderr}"
        );
    }
    // With the head start out of the way, a connect timeout of the endpoint's own
    // in mirrors.toml (0.5 s) wins over the command line's default (3 s), and the
    // endpoint is skipped by the whole run once it has passed.
    let rules = format!(
        "[[registry]]\nhost = \"{HOST}\"\nskip_upstream = true\nendpoints = [\n  {{ url = \"{}\", connect_timeout = 0.5 }},\n  {{ url = \"{}\" }},\n]\n",
        hole.url(),
        reg.url()
    );
    let (took, stderr) = run_with("its own timeout", rules, &["--head-start", "30"]);
    eprintln!("its own timeout: {took:?} (direct: {direct:?})");
    assert!(
        took < direct + std::time::Duration::from_secs(3),
        "{took:?} against {direct:?} direct\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("note: {} was skipped", hole.url())),
        "{stderr}"
    );
}

#[test]
fn a_mirror_that_stalls_after_the_manifest_costs_about_one_stall_timeout() {
    let reg = Registry::start();
    let f = fixture(37);
    push_fixture(&reg.url(), "apps/", &f);
    // Manifests pass; every blob answers its head, then nothing.
    let stalling = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            stall_blobs: true,
            ..ProxyOptions::default()
        },
    );
    let stalling_url = format!("http://{}", stalling.addr());
    Session::new().bundler(&["--version"]).success();
    let run = |endpoints: Vec<String>| {
        let s = Session::new();
        s.write("spec.toml", &fixture_spec());
        s.write(
            "mirrors.toml",
            &mirrors(&[Rule {
                host: HOST,
                endpoints: endpoints.into_iter().map(|u| (u, None, false)).collect(),
            }]),
        );
        s.bundler(&LOCK).success();
        let t = std::time::Instant::now();
        let pull = s
            .bundler(&[&LOCKED_PULL[..], &["--stall-timeout", "1"]].concat())
            .success();
        let took = t.elapsed();
        assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));
        (took, pull.stderr)
    };
    let (direct, _) = run(vec![reg.url()]);
    let (took, stderr) = run(vec![stalling_url.clone(), reg.url()]);
    eprintln!("a mirror that stalls: {took:?} (direct: {direct:?})");
    // One stall timeout (1 s) for the downloads under way when it stalled; the
    // rest go straight to the next endpoint. 2 s of slack.
    assert!(
        took < direct + std::time::Duration::from_secs(3),
        "{took:?} against {direct:?} direct\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "note: {stalling_url} was skipped (it stalled after"
        )),
        "{stderr}"
    );
}

#[test]
fn a_mirror_far_slower_than_upstream_is_left_mid_blob() {
    let reg = Registry::start();
    // Three 12 MiB layers: 12 s each through a mirror serving 1 MiB/s.
    let layers: Vec<Vec<u8>> = (0..3).map(|i| layer(700 + i, 12 << 20)).collect();
    let img = Image::single(platform_image(Flavor::Oci, "linux", "amd64", None, layers));
    image::push(&reg.url(), "apps/big", "v1", &img);
    let slow = Proxy::throttled(&reg.addr(), 1 << 20);
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/apps/big:v1")]),
    );
    s.write(
        "mirrors.toml",
        &mirrors(&[Rule {
            host: HOST,
            endpoints: vec![(slow.url(), None, false), (reg.url(), None, false)],
        }]),
    );
    // The binaries are built by the first run of a test process: not timed.
    s.bundler(&LOCK).success();
    let t = std::time::Instant::now();
    let pull = s
        .bundler(&[&LOCKED_PULL[..], &["--verbose"]].concat())
        .success();
    let took = t.elapsed();
    eprintln!("through a mirror at 1 MiB/s with a fast upstream: {took:?}");
    let want: BTreeSet<String> = std::iter::once(img.digest().to_string())
        .chain(img.platforms[0].blobs().map(|b| b.digest.clone()))
        .collect();
    assert_eq!(stored_blobs(&s.path("store")), want);
    // One transfer leaves after the 2 s window to learn the upstream's speed; the
    // others leave at their next check (1 s later) once it is known. Without
    // leaving, 12 s.
    assert!(
        took < std::time::Duration::from_secs(6),
        "{took:?}\n{}",
        pull.stderr
    );
    assert!(
        pull.stderr
            .contains(&format!("decision: {}: moving blob ", slow.url()))
            && pull.stderr.contains(&format!(" to {} with ", reg.url())),
        "{}",
        pull.stderr
    );
    assert!(
        pull.stderr
            .contains(&format!("note: {} was left mid-transfer (", slow.url())),
        "{}",
        pull.stderr
    );
    // Each layer went on from where it stopped: asked once through the mirror and
    // once directly, with a Range (206). registry:2 logs the mirror's request only
    // once the proxy has noticed that its client left, which may be after the pull
    // ended.
    for l in &img.platforms[0].layers {
        let served = reg.served_eventually("GET", &format!("/blobs/{}", l.digest), 2);
        assert_eq!(served.len(), 2, "{served:?}");
        assert!(
            served.iter().any(|(status, _)| *status == 206),
            "{served:?}"
        );
    }
}

/// The lines of `stderr` that name `url`.
fn lines_naming<'a>(stderr: &'a str, url: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(url)).collect()
}

#[test]
fn a_mirror_lacking_many_blobs_is_warned_of_once_and_counted_at_the_end() {
    const MISSING: usize = 20;
    let upstream = Registry::start();
    let layers: Vec<Vec<u8>> = (0..MISSING as u64).map(|i| layer(800 + i, 4096)).collect();
    let img = Image::single(platform_image(Flavor::Oci, "linux", "amd64", None, layers));
    image::push(&upstream.url(), "apps/many", "v1", &img);
    // A mirror synced half-way: the manifest and the config, none of the layers.
    let gappy = Proxy::start(
        &upstream.addr(),
        ProxyOptions {
            fail_first: img.platforms[0]
                .layers
                .iter()
                .map(|l| (l.digest.clone(), 404, 1000, None))
                .collect(),
            ..ProxyOptions::default()
        },
    );
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/apps/many:v1")]),
    );
    s.write("up.toml", &direct_mirrors(upstream.url()));
    s.write("gappy.toml", &direct_mirrors(gappy.url()));
    s.write(
        "both.toml",
        &mirrors(&[Rule {
            host: HOST,
            endpoints: vec![(gappy.url(), None, false), (upstream.url(), None, false)],
        }]),
    );
    s.bundler(&["lock", "spec.toml", "--mirrors", "up.toml"])
        .success();
    let layer_lines = |stderr: &str| -> usize {
        // Warnings and notes; an error line names its blob by design.
        let named: Vec<&str> = lines_naming(stderr, &gappy.url())
            .into_iter()
            .filter(|l| !l.starts_with("error:"))
            .collect();
        img.platforms[0]
            .layers
            .iter()
            .filter(|l| named.iter().any(|n| n.contains(&l.digest[7..19])))
            .count()
    };

    // By default: the first missing blob is said as it happens, the others only
    // counted in the end-of-run note; the upstream serves them all.
    let run = pull_locked(&s, "both.toml", "store").success();
    let named = lines_naming(&run.stderr, &gappy.url());
    assert!(
        named.len() <= 3 && layer_lines(&run.stderr) == 1,
        "one line per kind of failure, not one per blob:\n{}",
        run.stderr
    );
    let note = named
        .iter()
        .find(|l| l.starts_with("note:") && l.contains("(HTTP 404)"))
        .unwrap_or_else(|| panic!("no note for the mirror:\n{}", run.stderr));
    assert!(note.contains(&format!("{MISSING} blobs")), "{note}");
    assert_eq!(
        stored_blobs(&s.path("store")).len(),
        MISSING + 2,
        "{}",
        run.stderr
    );

    // --verbose: each one.
    let run = s
        .bundler(&[
            "pull",
            "spec.toml",
            "--lock",
            "spec.lock",
            "--mirrors",
            "both.toml",
            "--store",
            "store-verbose",
            "--verbose",
        ])
        .success();
    assert_eq!(layer_lines(&run.stderr), MISSING, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{MISSING} blobs")),
        "{}",
        run.stderr
    );

    // Only the mirror: the run fails, and its error names the image and a blob in
    // full; still one line for the mirror's missing blobs before it.
    let run = pull_locked(&s, "gappy.toml", "store-gappy").failure();
    let err = run.error_line();
    assert!(
        err.contains(&format!("cannot pull image {HOST}/apps/many:v1"))
            && img.platforms[0]
                .layers
                .iter()
                .any(|l| err.contains(&format!("blob {}", l.digest))),
        "{err}"
    );
    assert_eq!(layer_lines(&run.stderr), 1, "{}", run.stderr);
}
