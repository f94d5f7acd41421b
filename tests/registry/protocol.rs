//! The distribution API in detail, by raw HTTP: names and headers against
//! registry:2, pushes and uploads of every kind, deletes and gc.

use super::*;

#[test]
fn every_spelling_of_a_name_reaches_the_same_image_and_headers_match_registry2() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr();
    let accept = [("Accept", ACCEPT_ALL)];
    let pause = f.pause.digest();
    for target in [
        "/v2/registry.k8s.io/pause/manifests/3.10",
        "/v2/pause/manifests/3.10?ns=registry.k8s.io",
        &format!("/v2/pause/manifests/{pause}?ns=registry.k8s.io"),
    ] {
        let r = raw(a, "GET", target, &accept, b"");
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(sha256(&r.body), pause, "{target}");
        assert_eq!(r.header("Docker-Content-Digest").as_deref(), Some(pause));
        assert_eq!(
            r.header("Content-Type").as_deref(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json")
        );
        assert_eq!(r.header("Content-Length"), Some(r.body.len().to_string()));
        assert_eq!(
            r.header("Docker-Distribution-API-Version").as_deref(),
            Some("registry/2.0")
        );
    }
    for target in [
        "/v2/busybox/manifests/1.36",
        "/v2/library/busybox/manifests/1.36",
        "/v2/busybox/manifests/1.36?ns=docker.io",
        "/v2/docker.io/library/busybox/manifests/1.36",
    ] {
        let r = raw(a, "GET", target, &accept, b"");
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(sha256(&r.body), f.busybox.digest(), "{target}");
    }
    // Platform manifests by digest, reachable through the index of their repository...
    let arm = &f.pause.platforms[1].manifest;
    let r = raw(
        a,
        "GET",
        &format!("/v2/registry.k8s.io/pause/manifests/{}", arm.digest),
        &accept,
        b"",
    );
    assert_eq!((r.status, r.body.clone()), (200, arm.data.clone()));
    // ...but not from another repository.
    let r = raw(
        a,
        "GET",
        &format!("/v2/registry.k8s.io/delta/manifests/{}", arm.digest),
        &accept,
        b"",
    );
    assert_eq!((r.status, r.code()), (404, "MANIFEST_UNKNOWN".into()));
    // HEAD: same headers, no body.
    let r = raw(
        a,
        "HEAD",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &accept,
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some(f.pause.top.data.len().to_string())
    );
    assert!(r.body.is_empty());
    // Conditional GET.
    let etag = format!("\"{pause}\"");
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &[("Accept", ACCEPT_ALL), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(r.status, 304);

    // Accept rules (registry:2's): an OCI index to a client that does not take it...
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/apps/beta/manifests/v2",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!((r.status, r.code()), (404, "MANIFEST_UNKNOWN".into()));
    // ...a Docker list to a client that cannot read lists: its linux/amd64 manifest.
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/pause/manifests/3.10",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, f.pause.platforms[0].manifest.data);
    // ...by digest, Accept does not matter.
    let r = raw(
        a,
        "GET",
        &format!(
            "/v2/registry.k8s.io/apps/beta/manifests/{}",
            f.beta.digest()
        ),
        &[],
        b"",
    );
    assert_eq!(sha256(&r.body), f.beta.digest());

    // Blobs: full, HEAD, ranges.
    let big = &f.delta.platforms[0].layers[1];
    let blob = format!("/v2/registry.k8s.io/delta/blobs/{}", big.digest);
    let r = get(a, &blob);
    assert_eq!((r.status, r.body == big.data), (200, true));
    assert_eq!(
        r.header("Docker-Content-Digest").as_deref(),
        Some(big.digest.as_str())
    );
    let r = raw(a, "HEAD", &blob, &[], b"");
    assert_eq!(
        (r.status, r.header("Content-Length")),
        (200, Some(big.data.len().to_string()))
    );
    let r = raw(a, "GET", &blob, &[("Range", "bytes=100-199")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, big.data[100..200]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 100-199/{}", big.data.len()))
    );
    let r = raw(a, "GET", &blob, &[("Range", "bytes=-10")], b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &big.data[big.data.len() - 10..])
    );

    // Tags and catalog with pagination.
    let r = get(a, "/v2/registry.k8s.io/pause/tags/list");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["3.10"]));
    let r = get(a, "/v2/_catalog?n=2");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["docker.io/library/busybox", "registry.k8s.io/apps/beta"])
    );
    assert_eq!(
        r.header("Link").as_deref(),
        Some("</v2/_catalog?last=registry.k8s.io/apps/beta&n=2>; rel=\"next\"")
    );
    let r = get(a, "/v2/_catalog?n=2&last=registry.k8s.io/apps/beta");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["registry.k8s.io/delta", "registry.k8s.io/pause"])
    );
    assert_eq!(r.header("Link"), None);

    // Errors: registry:2's codes and statuses.
    for (target, status, code) in [
        ("/v2/registry.k8s.io/nothere/manifests/1", 404, "NAME_UNKNOWN"),
        ("/v2/registry.k8s.io/pause/manifests/9.9", 404, "MANIFEST_UNKNOWN"),
        ("/v2/registry.k8s.io/nothere/tags/list", 404, "NAME_UNKNOWN"),
        ("/v2/registry.k8s.io/pause/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", 404, "BLOB_UNKNOWN"),
    ] {
        let r = get(a, target);
        assert_eq!((r.status, r.code()), (status, code.to_string()), "{target}");
    }
    let r = get(a, "/v2/");
    assert_eq!((r.status, r.text()), (200, "{}".to_string()));
}

#[test]
fn skopeo_pushes_into_the_store_with_credentials_and_is_refused_without() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = serve_for_alice(&s);
    let a = srv.addr().to_string();
    // Pulls stay anonymous with an htpasswd file: the source comes from ferry itself.
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/registry.k8s.io/apps/beta:v2"),
        &format!("oci:{}:beta", s.path("src").display()),
    ]));
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{a}/registry.k8s.io/pause:3.10"),
        &format!("dir:{}", s.path("pause-dir").display()),
    ]));
    let push = |src: &str, dest: &str, creds: Option<&str>| {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if let Some(cr) = creds {
            c.arg(format!("--dest-creds={cr}"));
        }
        c.arg(src)
            .arg(format!("docker://{a}/{dest}"))
            .output()
            .unwrap()
    };
    let src = format!("oci:{}:beta", s.path("src").display());
    for creds in [None, Some("alice:wrong"), Some("mallory:s3cret")] {
        let out = push(&src, "site/app:v1", creds);
        assert!(!out.status.success(), "push with {creds:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("unauthorized") || err.contains("authentication required"),
            "{err}"
        );
    }
    assert!(!index_digests(&s.path("store")).contains_key("docker.io/site/app:v1"));

    // With credentials: an OCI index (children pushed by digest) and a Docker list.
    let out = push(&src, "site/app:v1", Some("alice:s3cret"));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    let out = push(
        &format!("dir:{}", s.path("pause-dir").display()),
        "site.lan/infra/pause:3.10",
        Some("alice:s3cret"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = index_digests(&s.path("store"));
    assert_eq!(index["docker.io/site/app:v1"], f.beta.digest());
    assert_eq!(index["site.lan/infra/pause:3.10"], f.pause.digest());
    // And they pull back, byte-exact, by every spelling.
    for (i, (name, digest)) in [
        ("site/app:v1", f.beta.digest()),
        ("docker.io/site/app:v1", f.beta.digest()),
        ("site.lan/infra/pause:3.10", f.pause.digest()),
    ]
    .into_iter()
    .enumerate()
    {
        let out = s.path(&format!("o{}", i + 1));
        skopeo_check(&["--tls-verify=false"], &a, name, digest, &out);
    }
    // The access log names the user who pushed.
    assert!(srv.log().contains(" - alice ["), "{}", srv.log());
}

#[test]
fn uploads_monolithic_chunked_and_mounted_are_verified_and_atomic() {
    let s = Session::new();
    filled_store(&s);
    let srv = serve_for_alice(&s);
    let a = srv.addr().to_string();
    let a = a.as_str();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = sha256(&data);

    // Monolithic: POST ?digest= with the body.
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/mono/blobs/uploads/?digest={d}"),
        &[ALICE],
        &data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Locations name the repository as the client did, not as it resolves.
    assert_eq!(r.header("Location"), Some(blob_url("site/mono", &d)));
    assert_eq!(get(a, &blob_url("site/mono", &d)).body, data);

    // Chunked: POST, PATCH, PATCH, PUT; the Range replies track the size.
    let data2: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    let d2 = sha256(&data2);
    let r = raw(a, "POST", "/v2/site/chunky/blobs/uploads/", &[ALICE], b"");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range").as_deref(), Some("0-0"));
    let loc = r.header("Location").unwrap();
    assert!(loc.starts_with("/v2/site/chunky/blobs/uploads/"), "{loc}");
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "0-99999")],
        &data2[..100_000],
    );
    assert_eq!(
        (r.status, r.header("Range").as_deref()),
        (202, Some("0-99999"))
    );
    // A chunk that does not continue where the upload is: 416.
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "5-10")],
        &data2[5..11],
    );
    assert_eq!((r.status, r.code()), (416, "RANGE_INVALID".to_string()));
    // A chunk whose Content-Range announces another length than its body: 416,
    // before a byte of it is taken.
    let r = raw(
        a,
        "PATCH",
        &loc,
        &[ALICE, ("Content-Range", "100000-100099")],
        &data2[100_000..100_050],
    );
    assert_eq!((r.status, r.code()), (416, "RANGE_INVALID".to_string()));
    assert!(r.text().contains("announces 100 bytes"), "{}", r.text());
    let r = raw(a, "GET", &loc, &[ALICE], b"");
    assert_eq!(
        (r.status, r.header("Range").as_deref()),
        (204, Some("0-99999"))
    );
    // Not in the store before the PUT.
    assert_eq!(get(a, &blob_url("site/chunky", &d2)).status, 404);
    let r = raw(a, "PATCH", &loc, &[ALICE], &data2[100_000..]);
    assert_eq!(r.status, 202);
    let r = raw(a, "PUT", &format!("{loc}?digest={d2}"), &[ALICE], b"");
    assert_eq!(
        (r.status, r.header("Docker-Content-Digest")),
        (201, Some(d2.clone()))
    );
    assert_eq!(get(a, &blob_url("site/chunky", &d2)).body, data2);

    // A digest that does not match: 400 DIGEST_INVALID, nothing stored, session gone.
    let r = raw(a, "POST", "/v2/site/bad/blobs/uploads/", &[ALICE], b"");
    let loc = r.header("Location").unwrap();
    let wrong = sha256(b"something else");
    let r = raw(
        a,
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[ALICE],
        b"these bytes",
    );
    assert_eq!((r.status, r.code()), (400, "DIGEST_INVALID".to_string()));
    assert!(!s
        .path(&format!("store/blobs/sha256/{}", &wrong[7..]))
        .exists());
    assert!(!s
        .path(&format!(
            "store/blobs/sha256/{}",
            &sha256(b"these bytes")[7..]
        ))
        .exists());
    assert_eq!(raw(a, "GET", &loc, &[ALICE], b"").status, 404);

    // Cross-repository mount of a blob the store has.
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/other/blobs/uploads/?mount={d}&from=site/mono"),
        &[ALICE],
        b"",
    );
    assert_eq!(
        (r.status, r.header("Docker-Content-Digest")),
        (201, Some(d.clone()))
    );

    // Manifests: blobs must exist, digests must match, size is bounded.
    let config = sha256(b"{}");
    let r = raw(
        a,
        "POST",
        &format!("/v2/site/art/blobs/uploads/?digest={config}"),
        &[ALICE],
        b"{}",
    );
    assert_eq!(r.status, 201);
    let missing = sha256(b"missing layer");
    let manifest = |layer: &str, size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{layer}","size":{size}}}]}}"#
        )
    };
    let ct = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
    let r = raw(
        a,
        "PUT",
        "/v2/site/art/manifests/v1",
        &[ALICE, ct],
        manifest(&missing, 13).as_bytes(),
    );
    assert_eq!(
        (r.status, r.code()),
        (400, "MANIFEST_BLOB_UNKNOWN".to_string())
    );
    let good = manifest(&d, data.len());
    let r = raw(
        a,
        "PUT",
        &format!("/v2/site/art/manifests/{wrong}"),
        &[ALICE, ct],
        good.as_bytes(),
    );
    assert_eq!((r.status, r.code()), (400, "DIGEST_INVALID".to_string()));
    let huge = vec![b' '; 5 << 20];
    let r = raw(a, "PUT", "/v2/site/art/manifests/v1", &[ALICE, ct], &huge);
    assert_eq!((r.status, r.code()), (413, "MANIFEST_INVALID".to_string()));
    let r = raw(
        a,
        "PUT",
        "/v2/site/art/manifests/v1",
        &[ALICE, ct],
        good.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256(good.as_bytes()))
    );

    // Referrers: an artifact whose subject is that manifest.
    let subject = sha256(good.as_bytes());
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":{}}}}}"#,
        good.len()
    );
    let sig_digest = sha256(sig.as_bytes());
    let r = raw(
        a,
        "PUT",
        &format!("/v2/site/art/manifests/{sig_digest}"),
        &[ALICE, ct],
        sig.as_bytes(),
    );
    assert_eq!(
        (r.status, r.header("OCI-Subject")),
        (201, Some(subject.clone()))
    );
    let r = get(a, &format!("/v2/site/art/referrers/{subject}"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], sig_digest.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let r = get(
        a,
        &format!("/v2/site/art/referrers/{subject}?artifactType=other/type"),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert_eq!(
        r.header("OCI-Filters-Applied").as_deref(),
        Some("artifactType")
    );

    // A crash mid-upload leaves nothing visible, and a restart cleans up.
    let r = raw(a, "POST", "/v2/site/crash/blobs/uploads/", &[ALICE], b"");
    let loc = r.header("Location").unwrap();
    let r = raw(a, "PATCH", &loc, &[ALICE], b"half a blob");
    assert_eq!(r.status, 202);
    let uploads = s.path("store/.ferry/uploads");
    // Each serve keeps its sessions in a directory of its own, under a lock.
    let sessions = || -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = std::fs::read_dir(&uploads)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| {
                let n = std::fs::read_dir(&p).unwrap().count();
                (p.file_name().unwrap().to_string_lossy().into_owned(), n)
            })
            .collect();
        out.sort();
        out
    };
    let crashed = sessions();
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    assert_eq!(crashed[0].1, 1, "{crashed:?}");
    drop(srv); // SIGKILL
    assert!(!s
        .path(&format!(
            "store/blobs/sha256/{}",
            &sha256(b"half a blob")[7..]
        ))
        .exists());
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    // The next serve reclaims what the killed one left, and starts with nothing.
    let now = sessions();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, crashed[0].0);
    assert_eq!(now[0].1, 0);
    assert!(!uploads.join(format!("{}.lock", crashed[0].0)).exists());
    // Without --htpasswd, pushing is refused outright.
    let r = raw(
        srv.addr(),
        "POST",
        "/v2/site/x/blobs/uploads/",
        &[ALICE],
        b"",
    );
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    // What was pushed survived the restart (named in index.json).
    // With no Accept at all, the manifest as stored, with its own type
    // (distribution v3's answer; registry:2 2.8 said 404).
    let r = get(srv.addr(), "/v2/site/art/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, good.as_bytes());
    let r = raw(
        srv.addr(),
        "GET",
        "/v2/site/art/manifests/v1",
        &[("Accept", ACCEPT_ALL)],
        b"",
    );
    assert_eq!(r.body, good.as_bytes());
    // So did the signature pushed by digest (it was kept in memory alone, and
    // lost), and gc keeps it: index.json names it by its digest.
    let names = common::store::index_names(&s.path("store"));
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("site/art@{sig_digest}"))),
        "{names:?}"
    );
    s.installer(&["gc", "--store", "store", "--grace", "0s"])
        .success();
    let r = raw(
        srv.addr(),
        "GET",
        &format!("/v2/site/art/manifests/{sig_digest}"),
        &[("Accept", ACCEPT_ALL)],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, sig.as_bytes()));
    let r = get(srv.addr(), &format!("/v2/site/art/referrers/{subject}"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], sig_digest.as_str());
}

#[test]
fn deletes_and_gc_remove_an_old_image_while_serve_keeps_serving_the_rest() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = serve_for_alice(&s);
    let a = srv.addr().to_string();
    let a = a.as_str();
    let delta = "/v2/registry.k8s.io/delta/manifests/1.0";

    // Deletes need push credentials.
    assert_eq!(raw(a, "DELETE", delta, &[], b"").status, 401);
    // A tag: gone from the tag list and from index.json; the other images stay.
    let r = raw(a, "DELETE", delta, &[ALICE], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        raw(a, "GET", delta, &[("Accept", ACCEPT_ALL)], b"").status,
        404
    );
    let tags =
        String::from_utf8_lossy(&get(a, "/v2/registry.k8s.io/delta/tags/list").body).into_owned();
    assert!(!tags.contains("\"1.0\""), "{tags}");
    assert!(!common::store::index_names(&s.path("store")).contains("registry.k8s.io/delta:1.0"));
    assert_eq!(raw(a, "DELETE", delta, &[ALICE], b"").status, 404);
    // By digest: every tag pointing at it goes.
    let beta = format!(
        "/v2/registry.k8s.io/apps/beta/manifests/{}",
        f.beta.digest()
    );
    assert_eq!(raw(a, "DELETE", &beta, &[ALICE], b"").status, 202);
    assert_eq!(
        raw(
            a,
            "GET",
            "/v2/registry.k8s.io/apps/beta/manifests/v2",
            &[("Accept", ACCEPT_ALL)],
            b""
        )
        .status,
        404
    );
    // A blob pause still uses is kept (405, naming it); one only delta used goes.
    let shared = &f.pause.platforms[0].layers[0];
    let r = raw(
        a,
        "DELETE",
        &blob_url("registry.k8s.io/pause", &shared.digest),
        &[ALICE],
        b"",
    );
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    assert!(r.text().contains("registry.k8s.io/pause"), "{}", r.text());
    let own = f.delta.platforms[0].layers.last().unwrap();
    let url = blob_url("registry.k8s.io/delta", &own.digest);
    assert_eq!(raw(a, "DELETE", &url, &[ALICE], b"").status, 202);
    assert_eq!(get(a, &url).status, 404);

    // gc: a dry run says what would go and removes nothing; then it goes, while
    // serve runs, and every blob of the remaining images is still served.
    let before = common::store::stored_blobs(&s.path("store"));
    let run = s
        .installer(&["gc", "--store", "store", "--dry-run", "--grace", "0s"])
        .success();
    assert!(run.stderr.contains("would remove"), "{}", run.stderr);
    assert_eq!(common::store::stored_blobs(&s.path("store")), before);
    // With the default grace (1 h) the freshly unpacked blobs are all young.
    let run = s.installer(&["gc", "--store", "store"]).success();
    assert!(run.stderr.contains("removed 0 blob(s)"), "{}", run.stderr);
    // Hours later, a push finds one of beta's blobs here (HEAD) and skips it: gc
    // leaves that one be for its manifest to come, and takes beta's others.
    s.tool(
        "sh",
        &[
            "-c",
            "find store/blobs -type f -exec touch -d '3 hours ago' {} +",
        ],
    );
    let beta_blobs: Vec<_> = f.beta.platforms[1].blobs().collect();
    let (asked, others) = beta_blobs.split_last().unwrap();
    assert!(!others.is_empty());
    let url = blob_url("registry.k8s.io/apps/beta", &asked.digest);
    assert_eq!(raw(a, "HEAD", &url, &[ALICE], b"").status, 200);
    s.installer(&["gc", "--store", "store"]).success();
    let kept = common::store::stored_blobs(&s.path("store"));
    assert!(
        kept.contains(&asked.digest),
        "the blob a push found was taken"
    );
    for b in others {
        assert!(!kept.contains(&b.digest), "{} was kept", b.digest);
    }
    let run = s
        .installer(&["gc", "--store", "store", "--grace", "0s"])
        .success();
    let after = common::store::stored_blobs(&s.path("store"));
    assert!(after.len() < before.len(), "{}", run.stderr);
    for img in [&f.pause, &f.busybox] {
        for p in &img.platforms {
            for b in p.blobs() {
                assert!(after.contains(&b.digest), "{} was collected", b.digest);
            }
        }
    }
    for b in f.beta.platforms[1].blobs() {
        assert!(
            !after.contains(&b.digest),
            "{} of a deleted image was kept",
            b.digest
        );
    }
    for (name, img) in [
        ("registry.k8s.io/pause", &f.pause),
        ("docker.io/library/busybox", &f.busybox),
    ] {
        for p in &img.platforms {
            for b in p.blobs() {
                assert_eq!(
                    get(a, &blob_url(name, &b.digest)).status,
                    200,
                    "{name} {}",
                    b.digest
                );
            }
        }
    }

    // --read-only: deletes (and pushes) are refused.
    drop(srv);
    let srv = Serve::start(
        &s,
        &[
            "--store",
            "store",
            "--tls",
            "off",
            "--htpasswd",
            users(&s),
            "--read-only",
        ],
    );
    // Its first line says so (it said "push with credentials").
    assert!(
        srv.log().contains("; push disabled (--read-only)"),
        "{}",
        srv.log()
    );
    let pause = "/v2/registry.k8s.io/pause/manifests/3.10";
    let r = raw(srv.addr(), "DELETE", pause, &[ALICE], b"");
    assert_eq!((r.status, r.code()), (405, "UNSUPPORTED".to_string()));
    assert_eq!(
        raw(srv.addr(), "GET", pause, &[("Accept", ACCEPT_ALL)], b"").status,
        200
    );
}
