//! The proxy's own tests: its HTTP helpers, and each behaviour against a fake
//! upstream.

use super::http::copy_chunked;
use super::*;

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
    assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
}

#[test]
fn repo_names_from_paths() {
    assert_eq!(
        repo_name("/v2/library/busybox/manifests/1.36"),
        Some("library/busybox")
    );
    assert_eq!(repo_name("/v2/x/blobs/uploads/abc"), Some("x"));
    assert_eq!(repo_name("/v2/a/tags/list"), Some("a"));
    assert_eq!(repo_name("/v2/"), None);
    assert_eq!(repo_name("/v2/_catalog"), None);
}

#[test]
fn chunked_copy_stops_at_terminator() {
    let input = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\nNEXT";
    let mut r = io::BufReader::new(&input[..]);
    let mut out = Vec::new();
    copy_chunked(&mut r, &mut out).unwrap();
    assert_eq!(out, &input[..input.len() - 4]);
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "NEXT");
}

/// A one-shot upstream that answers every connection with `response`.
fn fake_upstream(response: &'static [u8]) -> String {
    let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let _ = read_head(&mut r);
            let _ = s.write_all(response);
        }
    });
    addr
}

fn raw_get(addr: &str, method: &str, path: &str, extra: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn forwards_rewrites_location_and_drops_mid_body() {
    let up = fake_upstream(
        b"HTTP/1.1 202 Accepted\r\nLocation: http://UP/v2/x/blobs/uploads/1?_state=a\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n0123456789",
    );
    // `Location` here names another host, so it must pass through unchanged.
    let proxy = Proxy::start(
        &up,
        ProxyOptions {
            drop_after_bytes: vec![("/drop".into(), 4)],
            fail_first: vec![("/fail".into(), 429, 1, Some(1))],
            ..Default::default()
        },
    );
    let full = String::from_utf8(raw_get(
        &proxy.addr(),
        "GET",
        "/v2/ok",
        "Range: bytes=1-\r\n",
    ))
    .unwrap();
    assert!(full.starts_with("HTTP/1.1 202 Accepted\r\n"), "{full}");
    assert!(full.contains("Connection: close\r\n"));
    assert!(!full.contains("keep-alive"));
    assert!(full.ends_with("\r\n\r\n0123456789"));
    assert!(full.contains("Location: http://UP/v2/x/blobs/uploads/1?_state=a\r\n"));

    let cut = String::from_utf8(raw_get(&proxy.addr(), "GET", "/v2/drop", "")).unwrap();
    assert!(cut.ends_with("\r\n\r\n0123"), "{cut}");
    // Only the first matching request is cut.
    let again = String::from_utf8(raw_get(&proxy.addr(), "GET", "/v2/drop", "")).unwrap();
    assert!(again.ends_with("0123456789"));

    let head = String::from_utf8(raw_get(&proxy.addr(), "HEAD", "/v2/ok", "")).unwrap();
    assert!(head.ends_with("\r\n\r\n"), "HEAD must have no body: {head}");

    let failed = String::from_utf8(raw_get(&proxy.addr(), "GET", "/v2/fail", "")).unwrap();
    assert!(failed.starts_with("HTTP/1.1 429 "));
    assert!(failed.contains("Retry-After: 1\r\n"));
    assert!(failed.contains("TOOMANYREQUESTS"));
    let passed = String::from_utf8(raw_get(&proxy.addr(), "GET", "/v2/fail", "")).unwrap();
    assert!(passed.starts_with("HTTP/1.1 202 "));

    let reqs = proxy.requests();
    assert_eq!(reqs[0], "GET /v2/ok Range=bytes=1-");
    assert_eq!(reqs.len(), 6);
}

#[test]
fn location_pointing_at_upstream_is_rewritten() {
    let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let up = l.local_addr().unwrap().to_string();
    let up2 = up.clone();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let h = read_head(&mut r).unwrap().unwrap();
        assert_eq!(h.header("Host"), Some(up2.as_str()));
        write!(s, "HTTP/1.1 202 Accepted\r\nLocation: http://{up2}/v2/x/blobs/uploads/1?_state=a\r\nContent-Length: 0\r\n\r\n").unwrap();
    });
    let proxy = Proxy::start(&up, ProxyOptions::default());
    let resp = String::from_utf8(raw_get(
        &proxy.addr(),
        "POST",
        "/v2/x/blobs/uploads/",
        "Content-Length: 0\r\n",
    ))
    .unwrap();
    assert!(
        resp.contains(&format!(
            "Location: http://{}/v2/x/blobs/uploads/1?_state=a\r\n",
            proxy.addr()
        )),
        "{resp}"
    );
}

#[test]
fn bearer_flow_without_upstream_calls() {
    let up = fake_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    let proxy = Proxy::start(
        &up,
        ProxyOptions {
            bearer: Some(("u".into(), "p".into())),
            ..Default::default()
        },
    );
    let r = String::from_utf8(raw_get(&proxy.addr(), "GET", "/v2/a/b/manifests/1", "")).unwrap();
    assert!(r.starts_with("HTTP/1.1 401 "));
    assert!(r.contains(&format!(
        "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"ferry-test\",scope=\"repository:a/b:pull\"",
        proxy.addr()
    )));
    assert!(r.contains("\"UNAUTHORIZED\""));

    let bad = String::from_utf8(raw_get(
        &proxy.addr(),
        "GET",
        "/token?scope=x",
        "Authorization: Basic eDp5\r\n",
    ))
    .unwrap();
    assert!(bad.starts_with("HTTP/1.1 401 "));
    let good = String::from_utf8(raw_get(
        &proxy.addr(),
        "GET",
        "/token?service=ferry-test&scope=repository:a/b:pull",
        &format!("Authorization: Basic {}\r\n", base64_encode(b"u:p")),
    ))
    .unwrap();
    let body = good.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let token = v["token"].as_str().unwrap();
    assert_eq!(v["access_token"], v["token"]);
    assert_eq!(v["expires_in"], 300);
    assert_eq!(proxy.token_requests(), 2);

    let ok = String::from_utf8(raw_get(
        &proxy.addr(),
        "GET",
        "/v2/a/b/manifests/1",
        &format!("Authorization: Bearer {token}\r\n"),
    ))
    .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert_eq!(proxy.count("Authorization=Bearer"), 1);

    proxy.expire_tokens();
    let expired = String::from_utf8(raw_get(
        &proxy.addr(),
        "GET",
        "/v2/a/b/manifests/1",
        &format!("Authorization: Bearer {token}\r\n"),
    ))
    .unwrap();
    assert!(expired.starts_with("HTTP/1.1 401 "));
}

#[test]
fn throttle_slows_bodies() {
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n".to_vec();
    response.extend_from_slice(&[b'x'; 2000]);
    let up = fake_upstream(Box::leak(response.into_boxed_slice()));
    let proxy = Proxy::start(
        &up,
        ProxyOptions {
            throttle_bytes_per_sec: Some(10_000),
            ..Default::default()
        },
    );
    let started = Instant::now();
    let r = raw_get(&proxy.addr(), "GET", "/v2/big", "");
    assert!(r.ends_with(&[b'x'; 2000]));
    // 2000 bytes at 10 kB/s: about 0.2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}
