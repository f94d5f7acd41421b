//! A small threaded HTTP/1.1 reverse proxy for fault-injection and auth tests.
//!
//! registry:2 on its own cannot easily be made to demand bearer tokens (that needs a
//! separate token server with signing keys), answer 429 with `Retry-After`, send bodies
//! slowly, or cut a connection in the middle of a blob. [`Proxy`] sits in front of a
//! real registry on loopback and adds exactly those behaviours, chosen by
//! [`ProxyOptions`]; everything else is forwarded byte for byte.
//!
//! Design, kept deliberately simple (std threads, no async runtime):
//!
//! - One thread accepts; each client connection gets its own thread and serves exactly
//!   one request. Every response carries `Connection: close`, so clients reconnect for
//!   the next request. That removes all keep-alive bookkeeping, and the end of an
//!   upstream body of unknown length (chunked) is simply EOF.
//! - Each forwarded request opens a fresh upstream connection, with `Host` rewritten to
//!   the upstream and `Connection: close` forced. Request bodies are passed through by
//!   `Content-Length` or chunk framing.
//! - registry:2 builds absolute `Location` URLs from the `Host` it sees, i.e. the
//!   upstream's; those are rewritten to point back at the proxy so uploads keep going
//!   through it.
//! - `Expect: 100-continue` is answered by the proxy itself and not forwarded, so a
//!   client waiting for the interim response never deadlocks against a proxy that is
//!   waiting for the body.
//!
//! Order of decisions for each request: token endpoint, then bearer check, then
//! `fail_first`, then forwarding (with `drop_after_bytes` and throttling applied to the
//! response body). Failures are injected only into requests that passed the auth
//! check, so an unauthenticated probe does not use up a failure meant for the real
//! request.

mod http;

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{copy_request_body, error_body, is_hop_header, read_head, respond, Head};

/// The `service` the proxy's bearer challenge names.
pub const SERVICE: &str = "ferry-test";

/// Per-read/write socket timeout, so a stuck peer cannot keep a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does besides forwarding. `Default` forwards everything unchanged.
#[derive(Debug, Default, Clone)]
pub struct ProxyOptions {
    /// `(user, password)`: require bearer tokens on `/v2/` and serve `GET /token`,
    /// which issues them against HTTP Basic credentials.
    pub bearer: Option<(String, String)>,
    /// `(path substring, status, times, Retry-After seconds)`: the first `times`
    /// requests whose target contains the substring get `status` with a registry-style
    /// JSON error body instead of being forwarded.
    pub fail_first: Vec<(String, u16, usize, Option<u32>)>,
    /// Limit every response body to about this many bytes per second.
    pub throttle_bytes_per_sec: Option<u64>,
    /// `(path substring, bytes)`: for the first non-`HEAD` request whose target contains
    /// the substring, close the connection after that many response body bytes.
    pub drop_after_bytes: Vec<(String, usize)>,
    /// Base URL (e.g. another server's `http://127.0.0.1:PORT`): answer every blob
    /// `GET` with `307 Temporary Redirect` to the same path there, as registries that
    /// keep blobs in object storage do.
    pub redirect_blobs_to: Option<String>,
    /// Answer every blob `GET` with its response head, then send nothing more
    /// (until the client leaves or the proxy stops): a mirror that stalls after
    /// the manifest.
    pub stall_blobs: bool,
}

/// A running proxy on `127.0.0.1:<random port>`; stops accepting on drop.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept_thread: Option<JoinHandle<()>>,
}

struct State {
    upstream: String,
    self_addr: String,
    opts: ProxyOptions,
    requests: Mutex<Vec<String>>,
    token_requests: AtomicUsize,
    /// Remaining injections per `fail_first` rule (same order).
    fail_remaining: Mutex<Vec<usize>>,
    /// Whether each `drop_after_bytes` rule is still armed (same order).
    drop_armed: Mutex<Vec<bool>>,
    tokens: Mutex<HashSet<String>>,
    token_counter: AtomicU64,
    stopping: AtomicBool,
}

/// Locks, ignoring poisoning: a panicking connection thread must not break the
/// assertions a test makes afterwards.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Proxy {
    /// A proxy to `upstream_addr` that serves every body at about `bytes_per_sec`:
    /// a slow mirror.
    pub fn throttled(upstream_addr: &str, bytes_per_sec: u64) -> Proxy {
        Proxy::start(
            upstream_addr,
            ProxyOptions {
                throttle_bytes_per_sec: Some(bytes_per_sec),
                ..ProxyOptions::default()
            },
        )
    }

    /// Starts a proxy forwarding to `upstream_addr` (`127.0.0.1:PORT`; an `http://`
    /// prefix is accepted too).
    pub fn start(upstream_addr: &str, opts: ProxyOptions) -> Proxy {
        let upstream = upstream_addr
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).expect("binding the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy local address");
        let state = Arc::new(State {
            upstream,
            self_addr: addr.to_string(),
            fail_remaining: Mutex::new(opts.fail_first.iter().map(|r| r.2).collect()),
            drop_armed: Mutex::new(vec![true; opts.drop_after_bytes.len()]),
            opts,
            requests: Mutex::new(Vec::new()),
            token_requests: AtomicUsize::new(0),
            tokens: Mutex::new(HashSet::new()),
            token_counter: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept_thread = thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawning the proxy accept thread");
        Proxy {
            addr,
            state,
            accept_thread: Some(accept_thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen, in arrival order, as `METHOD TARGET`, followed by
    /// ` Range=<value>` when a `Range` header was sent and ` Authorization=<scheme>`
    /// (`Bearer`, `Basic`) when an `Authorization` header was sent, e.g.
    /// `GET /v2/x/blobs/sha256:.. Range=bytes=10- Authorization=Bearer`.
    /// Includes token requests and requests that got an injected failure.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }

    /// Number of recorded requests whose line contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }

    /// Number of `GET /token` requests (successful or not).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Forgets every issued token: the next request with an old token gets 401, as
    /// after a token expiry.
    pub fn expire_tokens(&self) {
        lock(&self.state.tokens).clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the loop sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for conn in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let state = Arc::clone(&state);
        // Connection threads are detached: they end with their one request, and check
        // `stopping` while streaming long bodies.
        let _ = thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || {
                let _ = handle_connection(&state, stream);
            });
    }
}

fn handle_connection(state: &State, client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    // Clients with TLS verification off (skopeo --tls-verify=false) try HTTPS first and
    // fall back to HTTP only on an answer they recognise. A TLS ClientHello has no line
    // end, so waiting for a request head would stall them until their handshake timeout
    // (10 s each). Answer like Go's HTTP server does, which they treat as "plain HTTP".
    // Such probes are not HTTP requests and are not recorded in `requests()`.
    if reader.fill_buf()?.first() == Some(&0x16) {
        writer.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )?;
        let _ = writer.shutdown(Shutdown::Both);
        return Ok(());
    }
    let Some(req) = read_head(&mut reader)? else {
        return Ok(());
    };
    let method = req.start[0].clone();
    let target = req.start[1].clone();
    let path = target.split('?').next().unwrap_or("").to_string();
    record(state, &req);

    if req
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let result = if let (Some(creds), "/token") = (&state.opts.bearer, path.as_str()) {
        copy_request_body(&req, &mut reader, &mut io::sink())?;
        serve_token(state, creds, &req, &mut writer)
    } else if state.opts.bearer.is_some() && path.starts_with("/v2") && !authorized(state, &req) {
        copy_request_body(&req, &mut reader, &mut io::sink())?;
        let body = unauthorized_body(&path, &method);
        let challenge = challenge(state, &path, &method);
        respond(
            &mut writer,
            &method,
            401,
            &[("WWW-Authenticate", challenge.as_str())],
            "application/json; charset=utf-8",
            body.as_bytes(),
        )
    } else if let (Some(base), "GET", true) = (
        &state.opts.redirect_blobs_to,
        method.as_str(),
        path.contains("/blobs/sha256:"),
    ) {
        copy_request_body(&req, &mut reader, &mut io::sink())?;
        let location = format!("{}{target}", base.trim_end_matches('/'));
        respond(
            &mut writer,
            &method,
            307,
            &[("Location", location.as_str())],
            "text/plain",
            b"",
        )
    } else if let Some((status, retry_after)) = take_failure(state, &target) {
        copy_request_body(&req, &mut reader, &mut io::sink())?;
        let retry = retry_after.map(|s| s.to_string());
        let extra: Vec<(&str, &str)> = retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
        let body = error_body(status);
        respond(
            &mut writer,
            &method,
            status,
            &extra,
            "application/json; charset=utf-8",
            body.as_bytes(),
        )
    } else {
        let drop_after = if method == "HEAD" {
            None
        } else {
            take_drop_rule(state, &target)
        };
        forward(state, &req, &mut reader, &mut writer, drop_after)
    };
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Both);
    result
}

fn record(state: &State, req: &Head) {
    let mut line = format!("{} {}", req.start[0], req.start[1]);
    if let Some(range) = req.header("Range") {
        line.push_str(&format!(" Range={range}"));
    }
    if let Some(auth) = req.header("Authorization") {
        let scheme = auth.split_whitespace().next().unwrap_or("");
        line.push_str(&format!(" Authorization={scheme}"));
    }
    lock(&state.requests).push(line);
}

fn take_failure(state: &State, target: &str) -> Option<(u16, Option<u32>)> {
    let mut remaining = lock(&state.fail_remaining);
    for (i, (needle, status, _, retry)) in state.opts.fail_first.iter().enumerate() {
        if remaining[i] > 0 && target.contains(needle.as_str()) {
            remaining[i] -= 1;
            return Some((*status, *retry));
        }
    }
    None
}

fn take_drop_rule(state: &State, target: &str) -> Option<usize> {
    let mut armed = lock(&state.drop_armed);
    for (i, (needle, bytes)) in state.opts.drop_after_bytes.iter().enumerate() {
        if armed[i] && target.contains(needle.as_str()) {
            armed[i] = false;
            return Some(*bytes);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Bearer auth
// ---------------------------------------------------------------------------

fn authorized(state: &State, req: &Head) -> bool {
    let Some(auth) = req.header("Authorization") else {
        return false;
    };
    let Some((scheme, token)) = auth.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && lock(&state.tokens).contains(token.trim())
}

/// Repository name from a `/v2/<name>/(manifests|blobs|tags)/...` path.
fn repo_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .min()
        .map(|i| &rest[..i])
        .filter(|n| !n.is_empty())
}

fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

fn challenge(state: &State, path: &str, method: &str) -> String {
    let mut c = format!(
        "Bearer realm=\"http://{}/token\",service=\"{SERVICE}\"",
        state.self_addr
    );
    if let Some(name) = repo_name(path) {
        let actions = if is_write(method) {
            "pull,push"
        } else {
            "pull"
        };
        c.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
    }
    c
}

fn unauthorized_body(path: &str, method: &str) -> String {
    let detail = match repo_name(path) {
        Some(name) => serde_json::json!([{
            "Type": "repository",
            "Class": "",
            "Name": name,
            "Action": if is_write(method) { "push" } else { "pull" },
        }]),
        None => serde_json::Value::Null,
    };
    serde_json::json!({"errors": [{
        "code": "UNAUTHORIZED",
        "message": "authentication required",
        "detail": detail,
    }]})
    .to_string()
}

fn serve_token(
    state: &State,
    (user, pass): &(String, String),
    req: &Head,
    w: &mut TcpStream,
) -> io::Result<()> {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let method = req.start[0].as_str();
    if method != "GET" {
        // Only the plain GET token flow (what docker, containerd and containers/image
        // use with static credentials); the OAuth2 POST flow is not offered.
        let body = r#"{"errors":[{"code":"UNSUPPORTED","message":"only GET /token"}]}"#;
        return respond(
            w,
            method,
            405,
            &[("Allow", "GET")],
            "application/json",
            body.as_bytes(),
        );
    }
    let expected = format!("{user}:{pass}");
    let ok = req
        .header("Authorization")
        .and_then(|a| a.split_once(' '))
        .is_some_and(|(scheme, b64)| {
            scheme.eq_ignore_ascii_case("basic") && b64.trim() == base64_encode(expected.as_bytes())
        });
    if !ok {
        let body =
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#;
        return respond(
            w,
            method,
            401,
            &[("WWW-Authenticate", &format!("Basic realm=\"{SERVICE}\""))],
            "application/json",
            body.as_bytes(),
        );
    }
    let n = state.token_counter.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let token = format!("ferry-test-token-{n}-{nanos:x}");
    lock(&state.tokens).insert(token.clone());
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
    })
    .to_string();
    respond(w, method, 200, &[], "application/json", body.as_bytes())
}

/// Standard base64 with padding (for comparing HTTP Basic credentials).
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------

fn forward(
    state: &State,
    req: &Head,
    client_r: &mut BufReader<TcpStream>,
    client_w: &mut TcpStream,
    drop_after: Option<usize>,
) -> io::Result<()> {
    let method = req.start[0].as_str();
    let mut upstream = match TcpStream::connect(&state.upstream) {
        Ok(s) => s,
        Err(e) => {
            copy_request_body(req, client_r, &mut io::sink())?;
            let body = format!(
                r#"{{"errors":[{{"code":"UNAVAILABLE","message":"proxy: upstream {}: {e}"}}]}}"#,
                state.upstream
            );
            return respond(
                client_w,
                method,
                502,
                &[],
                "application/json",
                body.as_bytes(),
            );
        }
    };
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;

    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        method, req.start[1], state.upstream
    );
    for (k, v) in &req.headers {
        if !is_hop_header(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    {
        // Buffered so a chunked body is not sent in many tiny writes.
        let mut up_w = io::BufWriter::with_capacity(64 * 1024, &mut upstream);
        // If the upstream stops reading early (it answered before the body ended),
        // still try to relay its response below.
        let _ = copy_request_body(req, client_r, &mut up_w).and_then(|_| up_w.flush());
    }

    let mut up_r = BufReader::with_capacity(64 * 1024, upstream);
    let resp = loop {
        let Some(h) = read_head(&mut up_r)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upstream closed without response",
            ));
        };
        // 1xx interim responses (e.g. 100 Continue) are consumed here; the client got
        // its own 100 Continue from us if it asked for one.
        if !h.start[1].starts_with('1') {
            break h;
        }
    };
    let status: u16 = resp.start[1].parse().unwrap_or(502);

    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.start[1], resp.start[2]);
    let upstream_origin = format!("http://{}", state.upstream);
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if k.eq_ignore_ascii_case("location") {
            let v = match v.strip_prefix(&upstream_origin) {
                Some(rest) => format!("http://{}{rest}", state.self_addr),
                None => v.clone(),
            };
            out.push_str(&format!("{k}: {v}\r\n"));
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    client_w.write_all(out.as_bytes())?;

    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    if no_body {
        return client_w.flush();
    }
    if state.opts.stall_blobs && method == "GET" && req.start[1].contains("/blobs/sha256:") {
        client_w.flush()?;
        let started = Instant::now();
        while !state.stopping.load(Ordering::SeqCst) && started.elapsed() < IO_TIMEOUT {
            thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    // With a Content-Length, copy exactly that; otherwise (chunked, or close-delimited)
    // relay raw bytes until the upstream closes, which it does since we sent
    // `Connection: close`. Chunk framing then passes through untouched.
    let limit = if resp.is_chunked() {
        None
    } else {
        resp.content_length()
    };
    copy_response_body(state, &mut up_r, client_w, limit, drop_after)
}

fn copy_response_body(
    state: &State,
    src: &mut impl Read,
    dst: &mut TcpStream,
    limit: Option<u64>,
    drop_after: Option<usize>,
) -> io::Result<()> {
    let rate = state.opts.throttle_bytes_per_sec.filter(|&r| r > 0);
    // Small slices when throttled (about 20 per second) so the rate is smooth and a
    // stopping proxy or a killed client is noticed quickly.
    let chunk = rate.map_or(64 * 1024, |r| (r / 20).clamp(1, 64 * 1024) as usize);
    let mut buf = vec![0u8; chunk];
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let mut want = chunk as u64;
        if let Some(l) = limit {
            want = want.min(l - sent);
        }
        if let Some(d) = drop_after {
            let left = (d as u64).saturating_sub(sent);
            if left == 0 {
                // The injected fault: cut the connection mid-body.
                dst.flush()?;
                let _ = dst.shutdown(Shutdown::Both);
                return Ok(());
            }
            want = want.min(left);
        }
        if want == 0 {
            break;
        }
        let n = src.read(&mut buf[..want as usize])?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        sent += n as u64;
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
    dst.flush()
}

#[cfg(test)]
mod tests;
