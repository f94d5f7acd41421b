//! Self-tests of the kit against the real peers: registry:2 and skopeo.
//!
//! They check that what [`crate::image::push`] stores is byte-identical to what a
//! standard client reads back (digest of the raw manifest), directly and through a
//! bearer-auth [`crate::proxy::Proxy`].

use std::process::Command;

use crate::image::{self, layer, platform_image, Flavor, Image};
use crate::proxy::{Proxy, ProxyOptions};
use crate::registry::Registry;
use crate::sha256_digest;

/// `skopeo inspect --raw` of `docker://<host>/<reference>` over plain HTTP.
fn skopeo_raw(host: &str, reference: &str, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--raw"]);
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    } else {
        cmd.arg("--no-creds");
    }
    // An empty auth file keeps the caller's own registry logins out of the test.
    let auth = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(auth.path(), "{}").unwrap();
    cmd.arg("--authfile").arg(auth.path());
    cmd.arg(format!("docker://{host}/{reference}"));
    let out = cmd.output().expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn multi_docker() -> Image {
    let amd = platform_image(
        Flavor::Docker,
        "linux",
        "amd64",
        None,
        vec![layer(1, 4096), layer(2, 100)],
    );
    let arm = platform_image(
        Flavor::Docker,
        "linux",
        "arm64",
        Some("v8"),
        vec![layer(1, 4096), layer(3, 100)],
    );
    Image::multi(Flavor::Docker, vec![amd, arm])
}

#[test]
fn pushed_images_read_back_byte_identical_with_skopeo() {
    let reg = Registry::start();
    let multi = multi_docker();
    image::push(&reg.url(), "e2e/multi", "v1", &multi);

    let single = Image::single(platform_image(
        Flavor::Oci,
        "linux",
        "amd64",
        None,
        vec![layer(7, 2048)],
    ));
    let stats = image::push_with_stats(&reg.url(), "e2e/single", "1.0", &single);
    assert_eq!((stats.blobs_uploaded, stats.manifests), (2, 1));

    let raw = skopeo_raw(&reg.addr(), "e2e/multi:v1", None);
    assert_eq!(sha256_digest(&raw), multi.digest());
    let raw = skopeo_raw(&reg.addr(), "e2e/single:1.0", None);
    assert_eq!(sha256_digest(&raw), single.digest());
    // A platform manifest by digest, too.
    let arm = &multi.platforms[1].manifest;
    let raw = skopeo_raw(&reg.addr(), &format!("e2e/multi@{}", arm.digest), None);
    assert_eq!(raw, arm.data);

    // The shared layer was uploaded once and then found by HEAD.
    assert_eq!(
        reg.count_requests("PUT", &multi.platforms[0].layers[0].digest),
        1
    );
    assert!(reg.count_requests("HEAD", "/v2/e2e/multi/blobs/") >= 5);
    assert_eq!(
        reg.served("PUT", "/v2/e2e/multi/manifests/v1"),
        vec![(201, 0)]
    );
    // Pushing again uploads nothing.
    let again = image::push_with_stats(&reg.url(), "e2e/multi", "v1", &multi);
    assert_eq!(again.blobs_uploaded, 0);
    assert_eq!(again.blobs_skipped, 5); // 2 configs + 3 distinct layers

    // Logs are synchronised: a GET is visible immediately after it returned.
    let layer0 = &multi.platforms[0].layers[0];
    let url = format!("{}/v2/e2e/multi/blobs/{}", reg.url(), layer0.digest);
    let body = ureq::get(&url).call().unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut body.into_reader(), &mut data).unwrap();
    assert_eq!(data, layer0.data);
    assert_eq!(
        reg.served("GET", &format!("/blobs/{}", layer0.digest)),
        vec![(200, layer0.size())]
    );
    assert!(!reg.access_log().contains("ferry-testkit-log-sync"));
}

#[test]
fn skopeo_goes_through_bearer_proxy() {
    let reg = Registry::start();
    let img = multi_docker();
    image::push(&reg.url(), "e2e/auth", "v1", &img);
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            bearer: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
    );

    let raw = skopeo_raw(&proxy.addr(), "e2e/auth:v1", Some("alice:s3cret"));
    assert_eq!(sha256_digest(&raw), img.digest());
    assert!(proxy.token_requests() >= 1);
    assert!(proxy.count("Authorization=Bearer") >= 1);
    assert!(proxy
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /v2/e2e/auth/manifests/v1")
            && r.contains("Authorization=Bearer")));
    // Only authorised requests reached the registry.
    assert_eq!(reg.count_requests("GET", "/v2/e2e/auth/manifests/v1"), 1);

    // Wrong password: the token endpoint refuses, skopeo fails.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            "--creds",
            "alice:wrong",
        ])
        .arg(format!("docker://{}/e2e/auth:v1", proxy.addr()))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn pushes_go_through_the_proxy_thanks_to_location_rewriting() {
    // Uploads through the proxy: Location must be rewritten to the proxy, or the PUT
    // would bypass it.
    let reg = Registry::start();
    let proxy = Proxy::start(&reg.addr(), ProxyOptions::default());
    let img = Image::single(platform_image(
        Flavor::Oci,
        "linux",
        "amd64",
        None,
        vec![layer(5, 300)],
    ));
    image::push(&proxy.url(), "e2e/via-proxy", "v1", &img);
    assert_eq!(proxy.count("PUT /v2/e2e/via-proxy/blobs/uploads/"), 2);
    let raw = skopeo_raw(&reg.addr(), "e2e/via-proxy:v1", None);
    assert_eq!(sha256_digest(&raw), img.digest());
}

#[test]
fn dropped_blob_download_resumes_with_range_through_the_proxy() {
    let reg = Registry::start();
    let img = Image::single(platform_image(
        Flavor::Oci,
        "linux",
        "amd64",
        None,
        vec![layer(11, 200_000)],
    ));
    image::push(&reg.url(), "e2e/drop", "v1", &img);
    let big = &img.platforms[0].layers[0];
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            drop_after_bytes: vec![(format!("/blobs/{}", big.digest), 50_000)],
            fail_first: vec![("/manifests/".into(), 429, 1, Some(1))],
            ..Default::default()
        },
    );
    let url = format!("{}/v2/e2e/drop/blobs/{}", proxy.url(), big.digest);

    // The first manifest request gets the injected 429 with Retry-After.
    match ureq::get(&format!("{}/v2/e2e/drop/manifests/v1", proxy.url())).call() {
        Err(ureq::Error::Status(429, r)) => assert_eq!(r.header("Retry-After"), Some("1")),
        other => panic!("expected 429, got {other:?}"),
    }

    // The first blob GET is cut after 50 000 body bytes: reading fails short.
    let resp = ureq::get(&url).call().unwrap();
    let mut first = Vec::new();
    let cut = std::io::Read::read_to_end(&mut resp.into_reader(), &mut first);
    assert!(cut.is_err() || first.len() < big.data.len());
    assert_eq!(first.len(), 50_000);

    // Resuming with Range gets the rest (206) and the whole matches the digest.
    let resp = ureq::get(&url)
        .set("Range", &format!("bytes={}-", first.len()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 206);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut rest).unwrap();
    first.extend(rest);
    assert_eq!(sha256_digest(&first), big.digest);

    assert_eq!(
        proxy.count(&format!("{} Range=bytes=50000-", big.digest)),
        1
    );
    // The registry logs a request when it ends, and the cut one may end last, even
    // after this test has asked for the log.
    let served = reg.served_eventually("GET", &format!("/blobs/{}", big.digest), 2);
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(served.contains(&(206, big.size() - 50_000)), "{served:?}");
    // It logs what it wrote into the socket (here the whole blob, since loopback
    // buffers absorb it), not what the client received.
    let whole = served.iter().find(|(status, _)| *status == 200);
    assert!(whole.is_some_and(|(_, n)| *n >= 50_000), "{served:?}");
}
