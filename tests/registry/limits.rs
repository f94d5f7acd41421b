//! `serve` under hostile or heavy use: bad requests, mutated requests, idle
//! connections, metrics and logs, signals and bad command lines.

use super::*;

/// Holds N idle TCP connections to ADDR (sending nothing) until its stdin closes;
/// prints "ready" once they are all open. Python, to raise its own open-file limit.
const IDLE_HOLDER: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
held = []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((host, int(port)), timeout=10)
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"#;

#[test]
fn hostile_requests_get_precise_errors_and_nothing_outside_the_store() {
    let s = Session::new();
    let f = filled_store(&s);
    s.write("secret.txt", "outside the store");
    let srv = Serve::start(
        &s,
        &["--store", "store", "--tls", "off", "--client-timeout", "2"],
    );
    let a = srv.addr().to_string();
    let a = a.as_str();
    let blob = &f.delta.platforms[0].layers[1];
    let size = blob.data.len();
    let zero = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for (method, target, headers, status, code) in [
        (
            "GET",
            "/v2/../secret.txt/manifests/1".to_string(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/../../secret.txt/tags/list".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/%2e%2e/%2e%2e/blobs/".to_string() + zero,
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/pause/manifests/3.10?ns=../..".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/Pause/manifests/3.10".into(),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/{}/tags/list", "a/".repeat(200) + "b"),
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            // Slashes split it into path segments: no such route, as in registry:2.
            "/v2/registry.k8s.io/delta/blobs/sha256:../../../../secret.txt".into(),
            vec![],
            404,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        (
            "HEAD",
            "/v2/registry.k8s.io/delta/manifests/sha256:ZZ".into(),
            vec![],
            400,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/manifests/sha256:ZZ".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        // Not a valid tag: no manifest is called that (the OCI conformance suite
        // and registry:2 say 404).
        (
            "GET",
            "/v2/registry.k8s.io/delta/manifests/.INVALID_MANIFEST_NAME".into(),
            vec![],
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "HEAD",
            "/v2/registry.k8s.io/delta/manifests/.INVALID_MANIFEST_NAME".into(),
            vec![],
            404,
            "",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/referrers/sha1:00".into(),
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", format!("bytes={size}-"))],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", "bytes=500-100".into())],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            blob_url("registry.k8s.io/delta", &blob.digest),
            vec![("Range", "bytes=99999999999999999999999999-".into())],
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            "/v2/_catalog?n=-1".into(),
            vec![],
            400,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            "DELETE",
            "/v2/registry.k8s.io/pause/manifests/3.10".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
        (
            "PUT",
            "/v2/registry.k8s.io/pause/manifests/3.10".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/registry.k8s.io/delta/blobs/uploads/not-a-uuid".into(),
            vec![],
            405,
            "UNSUPPORTED",
        ),
    ] {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = raw(a, method, &target, &hs, b"");
        assert_eq!(r.status, status, "{method} {target}: {}", r.text());
        if code.is_empty() {
            assert!(!r.text().contains("{"), "{method} {target}: {}", r.text());
        } else {
            assert_eq!(r.code(), code, "{method} {target}");
        }
        if status == 416 {
            assert_eq!(r.header("Content-Range"), Some(format!("bytes */{size}")));
        }
        assert!(!r.text().contains("outside the store"));
    }
    assert_eq!(get(a, "/v3/").status, 404);
    assert_eq!(get(a, "/etc/passwd").status, 404);

    // Oversized request headers: refused by the HTTP layer.
    let big = "x".repeat(1 << 20);
    let mut c = TcpStream::connect(a).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "{head}"
    );

    // A client that stalls mid-headers is cut off after --client-timeout, and does
    // not hold up anyone else meanwhile.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(get(a, "/v2/").status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "stalled client kept for {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    // A client that stops reading a blob is dropped too (the write times out).
    let mut lazy = TcpStream::connect(a).unwrap();
    lazy.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            blob_url("registry.k8s.io/delta", &blob.digest)
        )
        .as_bytes(),
    )
    .unwrap();

    // Still serving, never panicked.
    assert_eq!(get(a, "/v2/registry.k8s.io/delta/tags/list").status, 200);
    drop(lazy);
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}

#[test]
fn mutated_requests_get_an_answer_below_500_and_touch_nothing_outside_the_store() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let s = Session::new();
    let f = filled_store(&s);
    s.write("secret.txt", "outside the store");
    let srv = serve_for_alice(&s);
    let a = srv.addr().to_string();
    let outside = |s: &Session| -> Vec<String> {
        common::files_under(&s.path(""))
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| !rel.starts_with("store/") && !rel.starts_with("serve"))
            .collect()
    };
    let before = outside(&s);
    let index = s.read("store/index.json");
    let digest = f.pause.platforms[0].layers[0].digest.clone();
    let segment = prop_oneof![
        Just("v2".to_string()),
        Just("registry.k8s.io".to_string()),
        Just("pause".to_string()),
        Just("library".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("manifests".to_string()),
        Just("blobs".to_string()),
        Just("uploads".to_string()),
        Just("tags".to_string()),
        Just("list".to_string()),
        Just("referrers".to_string()),
        Just("3.10".to_string()),
        Just(digest.clone()),
        Just(format!("{}x", &digest[..20])),
        "[a-zA-Z0-9._~:@%-]{0,24}",
    ];
    let header = prop_oneof![
        Just(("Accept", ACCEPT_ALL.to_string())),
        "[ -~]{0,40}".prop_map(|v| ("Accept", v)),
        "bytes=[0-9]{0,6}-[0-9]{0,6}".prop_map(|v| ("Range", v)),
        "[0-9]{0,6}-[0-9]{0,6}".prop_map(|v| ("Content-Range", v)),
        "[ -~]{0,30}".prop_map(|v| ("Content-Type", v)),
        "[ -~]{0,30}".prop_map(|v| ("Authorization", v)),
    ];
    let request = (
        prop_oneof![
            Just("GET"),
            Just("HEAD"),
            Just("PUT"),
            Just("POST"),
            Just("PATCH"),
            Just("DELETE")
        ],
        proptest::collection::vec(segment, 1..7),
        "(\\?[a-z]{1,6}=[a-zA-Z0-9:._%-]{0,20})?",
        proptest::collection::vec(header, 0..3),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    // A fixed seed: the same cases in every run, so CI is never at the mercy of
    // the draw (a failing case is then the same one each time, to be looked at).
    let config = Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&request, |(method, segments, query, headers, body)| {
            let target = format!("/{}{query}", segments.join("/"));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = raw(&a, method, &target, &headers, &body);
            prop_assert!(
                r.status < 500,
                "{method} {target} {headers:?}: {}",
                r.status
            );
            Ok(())
        })
        .unwrap();
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    assert_eq!(outside(&s), before, "files appeared outside the store");
    assert_eq!(s.read("secret.txt"), "outside the store");
    assert_eq!(
        s.read("store/index.json"),
        index,
        "an anonymous request changed the store"
    );
}

#[test]
fn two_thousand_idle_connections_do_not_starve_a_client() {
    let s = Session::new();
    let f = filled_store(&s);
    // The default limit, 1024 connections: 2,000 idle ones are more than it holds.
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr().to_string();
    let a = a.as_str();
    s.write("idle.py", IDLE_HOLDER);
    let opened = Instant::now();
    let mut holder = Command::new("python3")
        .arg(s.path("idle.py"))
        .args([a, "2000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the idle connections did not open");
    eprintln!("2000 idle connections opened in {:?}", opened.elapsed());

    // A client pulls an image (its manifest and every blob) while they are held.
    let t = Instant::now();
    let image = &f.delta;
    let r = raw(
        a,
        "GET",
        "/v2/registry.k8s.io/delta/manifests/1.0",
        &[("Accept", ACCEPT_ALL)],
        b"",
    );
    assert_eq!(r.status, 200);
    for b in image.platforms[0].blobs() {
        let r = get(a, &blob_url("registry.k8s.io/delta", &b.digest));
        assert_eq!((r.status, r.body.len()), (200, b.data.len()));
    }
    let took = t.elapsed();
    let metrics = String::from_utf8_lossy(&get(a, "/metrics").body).into_owned();
    let open = metrics
        .lines()
        .find(|l| l.starts_with("ferry_registry_connections "))
        .unwrap_or_default()
        .to_string();
    eprintln!("2000 idle connections held; a pull took {took:?}; {open}");
    assert!(took < Duration::from_secs(1), "the pull took {took:?}");
    let t = Instant::now();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    eprintln!("closed in {:?}", t.elapsed());
}

#[test]
fn metrics_count_requests_and_bytes_and_each_request_has_one_log_line() {
    let s = Session::new();
    let f = filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    let a = srv.addr().to_string();
    let blob = &f.delta.platforms[0].layers[1];
    for _ in 0..3 {
        assert_eq!(
            raw(
                &a,
                "GET",
                "/v2/registry.k8s.io/pause/manifests/3.10",
                &[("Accept", ACCEPT_ALL)],
                b""
            )
            .status,
            200
        );
    }
    assert_eq!(
        get(&a, &blob_url("registry.k8s.io/delta", &blob.digest)).status,
        200
    );
    assert_eq!(
        get(&a, "/v2/registry.k8s.io/pause/manifests/nope").status,
        404
    );
    let m = get(&a, "/metrics").text();
    assert!(
        m.contains(
            "ferry_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "ferry_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"404\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("ferry_registry_requests_total{route=\"blob\",method=\"GET\",status=\"200\"} 1"),
        "{m}"
    );
    let served = m
        .lines()
        .find_map(|l| l.strip_prefix("ferry_registry_bytes_served_total{route=\"blob\"} "))
        .unwrap();
    assert_eq!(served, blob.data.len().to_string());
    assert!(m.contains("ferry_registry_manifests 8"), "{m}");
    // One access-log line per request, in combined format (the one registry:2 uses).
    std::thread::sleep(Duration::from_millis(200));
    let log = srv.log();
    let lines: Vec<_> = log
        .lines()
        .filter_map(ferry_testkit::registry::parse_access_line)
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.target == "/v2/registry.k8s.io/pause/manifests/3.10" && l.status == 200)
            .count(),
        3,
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.status == 404 && l.target.ends_with("/nope")),
        "{log}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let s = Session::new();
    filled_store(&s);
    let srv = Serve::start(&s, &["--store", "store", "--tls", "off"]);
    assert_eq!(get(srv.addr(), "/v2/").status, 200);
    let st = srv.terminate();
    assert!(st.success(), "{st}");
}

#[test]
fn bad_command_lines_fail_with_one_error_line() {
    let s = Session::new();
    let out = Command::new(installer())
        .args(["serve", "--store", "nothere", "--tls", "off"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: nothere is not a store"), "{err}");
    // A directory that is not a store is refused and left as it was (it used to be
    // served as an empty registry and littered with oci-layout, blobs/ and .ferry/).
    std::fs::create_dir(s.path("plain")).unwrap();
    s.write("plain/notes.txt", "mine");
    let out = Command::new(installer())
        .args(["serve", "--store", "plain", "--tls", "off", "--pki", "pki"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: plain is not a store (no oci-layout file)"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(s.path("plain"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["notes.txt"],
        "serve littered a directory that is not a store"
    );
    assert!(!s.path("pki").exists(), "a refused serve made a PKI");
    // A port in use is said before the site CA is made (it used to leave a new CA).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    std::fs::create_dir(s.path("served")).unwrap();
    s.write("served/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    let out = Command::new(installer())
        .args([
            "serve", "--store", "served", "--pki", "newpki", "--addr", &addr,
        ])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("listening on {addr}")), "{err}");
    assert!(
        !s.path("newpki").exists(),
        "a serve that could not listen made a CA"
    );
    drop(taken);
    // Flags are checked before the store is looked at; a flag's bad value is a
    // bad command line (exit 2), a missing file a failure (exit 1).
    std::fs::create_dir(s.path("store")).unwrap();
    // htpasswd's own default scheme, which registry:2 refuses too.
    let md5 = Command::new("htpasswd")
        .args(["-mbn", "alice", "secret"])
        .output()
        .unwrap();
    std::fs::write(s.path("md5.htpasswd"), md5.stdout).unwrap();
    for (args, needle, code) in [
        (
            vec!["--tls", "bogus"],
            "--tls must be auto, off or CERT,KEY",
            2,
        ),
        (vec!["--auth-pull"], "--auth-pull needs --htpasswd", 2),
        (vec!["--htpasswd", "missing"], "missing", 1),
        (
            vec!["--htpasswd", "md5.htpasswd"],
            "md5.htpasswd line 1: user alice's hash is MD5 (htpasswd -m, its default), not bcrypt: make it again with `htpasswd -Bbn alice PASSWORD`",
            1,
        ),
    ] {
        let out = Command::new(installer())
            .args(["serve", "--store", "store"])
            .args(&args)
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}
