//! Lock and pull as a user runs them: digests kept, shared layers stored once,
//! clear errors for bad input, two pulls sharing a store, progress.

use super::*;

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
    for (name, media_type, image) in [
        ("alpha:v1", ferry::media::DOCKER_LIST, &f.alpha),
        ("beta:v2", ferry::media::OCI_INDEX, &f.beta),
        ("gamma:1.0", ferry::media::DOCKER_MANIFEST, &f.gamma),
        ("delta:1.0", ferry::media::OCI_MANIFEST, &f.delta),
    ] {
        assert_eq!(
            entries[&format!("{HOST}/apps/{name}")],
            (media_type.to_string(), image.digest().to_string())
        );
    }
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
        "version = 1\nname = \"test\"\nspec_version = \"1.0.0\"\n",
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
