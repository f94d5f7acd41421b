//! Faults on the way: throttling, errors and dropped connections retried and
//! resumed, a pull killed midway, a blob with other bytes.

use super::*;

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
