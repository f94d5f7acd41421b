//! Real `registry:2` processes on loopback, one per test.
//!
//! [`Registry::start`] writes a config file into a fresh temporary directory, runs
//! `/usr/bin/docker-registry serve CONFIG` bound to `127.0.0.1:<free port>` with the
//! filesystem storage driver under that directory, and waits until `GET /v2/`
//! answers 200. Dropping the [`Registry`] kills the process and removes the directory.
//!
//! ## Logs
//!
//! registry 2.8 writes two different logs, and both are captured to files:
//!
//! - stdout: the access log, one Apache "combined" line per request, e.g.
//!   `127.0.0.1 - - [23/Nov/2026:16:51:06 +0000] "GET /v2/x/blobs/sha256:.. HTTP/1.1" 200 1234 "" "curl/7.88.1"`
//! - stderr: logrus text lines (`time=.. level=info msg="response completed" ..
//!   http.request.method=GET http.request.uri=/v2/.. http.response.status=200`).
//!
//! [`Registry::count_requests`] and [`Registry::served`] count only the access-log
//! lines (the logrus lines describe the same requests; counting both would double
//! every number). The parser also accepts a combined line wrapped in logrus
//! `msg="..."` quoting, as some registry builds log it that way.
//!
//! Two quirks worth knowing when asserting on logs:
//!
//! - A line is written *after* the handler returns, so a client may already hold the
//!   full response while its line is not yet in the file. Every log read therefore
//!   first sends a marker request and waits for its line (see [`Registry::access_log`]);
//!   marker lines are filtered out of everything this module returns.
//! - The byte count of a `HEAD` line is the size of the body the handler *would*
//!   have written (e.g. 157 for a 404 error JSON), not what went over the wire.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the registry:2 binary (Debian package `docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How long [`Registry::start`] waits for `GET /v2/` to answer 200.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Marker put in the path of the synchronisation requests (see [`Registry::access_log`]).
const SYNC_MARKER: &str = "ferry-testkit-log-sync";

/// A running registry:2 process on `127.0.0.1`, killed on drop.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    sync_counter: AtomicU64,
    tls: bool,
}

/// How to start a registry other than the plain default.
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve this storage directory (e.g. another registry's `storage_dir()`) instead
    /// of a fresh one: a way to put TLS in front of content pushed over plain HTTP.
    pub storage: Option<PathBuf>,
    /// Ask for HTTP Basic credentials from this bcrypt htpasswd file (for pulls and
    /// pushes alike, as registry:2's htpasswd auth does).
    pub htpasswd: Option<PathBuf>,
}

impl Registry {
    /// Starts a registry on a free loopback port with its own storage directory.
    ///
    /// Panics with the registry's own output if it does not come up within ~10 s.
    pub fn start() -> Registry {
        // `free_port` can race with another process grabbing the same port between
        // our probe and the registry's bind, so a failed start is retried on a
        // new port a couple of times before giving up.
        Registry::start_with(&RegistryOptions::default())
    }

    /// Starts a registry with `options` (TLS, shared storage); see [`Registry::start`].
    pub fn start_with(options: &RegistryOptions) -> Registry {
        let mut last_error = String::new();
        for _attempt in 0..3 {
            match Self::try_start(options) {
                Ok(registry) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start registry:2 ({REGISTRY_BIN}): {last_error}");
    }

    fn try_start(options: &RegistryOptions) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-registry-")
            .tempdir()
            .map_err(|e| format!("creating temp dir: {e}"))?;
        let port = free_port();
        let storage = options
            .storage
            .clone()
            .unwrap_or_else(|| dir.path().join("storage"));
        fs::create_dir_all(&storage).map_err(|e| format!("creating storage dir: {e}"))?;
        let config_path = dir.path().join("config.yml");
        let mut config = config_yaml(port, &storage);
        if let Some((cert, key)) = &options.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(users) = &options.htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ferry-testkit\n    path: {}\n",
                users.display()
            ));
        }
        fs::write(&config_path, config).map_err(|e| format!("writing config: {e}"))?;

        let stdout = fs::File::create(dir.path().join("stdout.log"))
            .map_err(|e| format!("creating stdout.log: {e}"))?;
        let stderr = fs::File::create(dir.path().join("stderr.log"))
            .map_err(|e| format!("creating stderr.log: {e}"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // The registry reads REGISTRY_* variables as config overrides; make sure
            // nothing from the caller's environment changes our setup.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .spawn()
            .map_err(|e| format!("spawning {REGISTRY_BIN}: {e}"))?;

        let mut registry = Registry {
            child: Some(child),
            port,
            dir,
            sync_counter: AtomicU64::new(0),
            tls: options.tls.is_some(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Some(child) = registry.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let logs = registry.raw_logs();
                    registry.child = None;
                    return Err(format!(
                        "registry exited early with {status}; output:\n{logs}"
                    ));
                }
            }
            // Our HTTP client speaks no TLS: for HTTPS a listening port is the signal.
            if registry.tls && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(registry);
            }
            match agent.get(&format!("{}/v2/", registry.url())).call() {
                Ok(resp) if resp.status() == 200 => return Ok(registry),
                // With htpasswd, an anonymous GET /v2/ is refused once it is up.
                Err(ureq::Error::Status(401, _)) if options.htpasswd.is_some() => {
                    return Ok(registry)
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let logs = registry.raw_logs();
                return Err(format!(
                    "GET /v2/ did not answer 200 within {START_TIMEOUT:?}; output:\n{logs}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Root directory of the filesystem storage driver (the registry's blobs live under
    /// `docker/registry/v2/` in it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Stops the registry now (kill + wait), e.g. to test an upstream that went away
    /// in the middle of a run. The logs stay readable; dropping later is harmless.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the registry has logged so far: the access log (stdout) followed by
    /// the logrus log (stderr), without this module's own synchronisation requests.
    ///
    /// Before reading, a marker request is sent and its access-log line awaited (up to
    /// 2 s), so that every request whose response a client has already received is in
    /// the text. When the registry has been stopped this step is skipped.
    pub fn access_log(&self) -> String {
        self.sync_log();
        self.raw_logs()
            .lines()
            .filter(|l| !l.contains(SYNC_MARKER))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Number of access-log lines with exactly this `method` (e.g. `"GET"`, `"HEAD"`)
    /// whose request target (path and query) contains `path_contains`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.served(method, path_contains).len()
    }

    /// `(status, response bytes)` of each matching access-log line, in log order.
    /// See the module docs for what the byte count means on `HEAD` lines.
    pub fn served(&self, method: &str, path_contains: &str) -> Vec<(u16, u64)> {
        self.access_log()
            .lines()
            .filter_map(parse_access_line)
            .filter(|l| l.method == method && l.target.contains(path_contains))
            .map(|l| (l.status, l.bytes))
            .collect()
    }

    /// [`Registry::served`] once it has at least `lines` lines, or after 5 s. A
    /// request the client gave up on (a cut or abandoned transfer) is logged only
    /// when registry:2 notices, which may be after the client has moved on: the
    /// marker request of [`Registry::access_log`] cannot wait for it.
    pub fn served_eventually(
        &self,
        method: &str,
        path_contains: &str,
        lines: usize,
    ) -> Vec<(u16, u64)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let served = self.served(method, path_contains);
            if served.len() >= lines || Instant::now() > deadline {
                return served;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Logs as they are on disk right now, with no synchronisation.
    fn raw_logs(&self) -> String {
        let read = |name: &str| fs::read(self.dir.path().join(name)).unwrap_or_default();
        let mut text = String::from_utf8_lossy(&read("stdout.log")).into_owned();
        text.push_str(&String::from_utf8_lossy(&read("stderr.log")));
        text
    }

    fn sync_log(&self) {
        if self.child.is_none() || self.tls {
            return;
        }
        let n = self.sync_counter.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{SYNC_MARKER}={n}");
        // A raw request instead of an HTTP client: this must not fail just because the
        // registry answers oddly, and it must be cheap. Any answer (even an error)
        // produces an access-log line.
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!(
                "GET /v2/?{marker} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.port
            );
            if std::io::Write::write_all(&mut s, req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        } else {
            return;
        }
        let stdout = self.dir.path().join("stdout.log");
        let deadline = Instant::now() + Duration::from_secs(2);
        // `marker` followed by a space: `=1` must not match `=10`.
        let needle = format!("{marker} ");
        while Instant::now() < deadline {
            if let Ok(text) = fs::read(&stdout) {
                if String::from_utf8_lossy(&text).contains(&needle) {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Directory holding the config, storage and captured logs (for debugging a test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(port: u16, storage: &Path) -> String {
    // - http.secret is fixed: without it registry 2.8 warns on every start, and
    //   upload state (`_state=` in Location) is only valid for that one process anyway.
    // - delete.enabled lets tests exercise DELETE on manifests and blobs.
    // - accesslog is on by default in 2.8, but spelled out since tests rely on it.
    // - upload purging is off: its timer only adds log noise in short-lived tests.
    format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: ferry-testkit-not-a-secret
",
        storage = storage.display()
    )
}

/// One request as recorded in the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    /// Request target: path plus query string, as sent by the client.
    pub target: String,
    pub status: u16,
    /// Response body bytes (0 when the log says `-`).
    pub bytes: u64,
    pub user_agent: String,
}

/// Parses one combined-format access-log line, possibly wrapped in logrus quoting
/// (`msg="127.0.0.1 - - [...] \"GET /v2/ HTTP/1.1\" 200 2 \"\" \"agent\""`).
/// Returns `None` for any other line (logrus lines, startup messages).
pub fn parse_access_line(line: &str) -> Option<AccessLine> {
    let unescaped;
    let line = if line.contains("\\\"") {
        unescaped = line.replace("\\\"", "\"");
        unescaped.as_str()
    } else {
        line
    };
    // The request is the first quoted field after the `[date]`; searching for
    // `] "` skips anything before it (a logrus prefix, the remote address).
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let request = &rest[..end];
    let mut parts = request.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let mut after = rest[end + 1..].split_whitespace();
    let status: u16 = after.next()?.parse().ok()?;
    let bytes = match after.next()? {
        "-" => 0,
        n => n.parse().ok()?,
    };
    // Then `"referer" "user-agent"`: the second quoted field. (Not "the last one": in
    // a logrus-wrapped line the closing quote of `msg="..."` follows.)
    let mut quoted = rest[end + 1..].split('"').skip(1).step_by(2);
    let user_agent = quoted.nth(1).unwrap_or_default().to_string();
    Some(AccessLine {
        method: method.to_string(),
        target: target.to_string(),
        status,
        bytes,
        user_agent,
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; the probe
/// socket is closed before returning, so there is a small window for a race).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// `http://127.0.0.1:PORT` where nothing listens: connections are refused at once,
/// for "upstream is down" tests.
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_combined_line() {
        let l = parse_access_line(
            r#"127.0.0.1 - - [23/Nov/2026:16:51:06 +0000] "HEAD /v2/x/blobs/sha256:ab HTTP/1.1" 404 157 "" "curl/7.88.1""#,
        )
        .unwrap();
        assert_eq!(l.method, "HEAD");
        assert_eq!(l.target, "/v2/x/blobs/sha256:ab");
        assert_eq!((l.status, l.bytes), (404, 157));
        assert_eq!(l.user_agent, "curl/7.88.1");
    }

    #[test]
    fn parses_logrus_wrapped_line_and_dash_bytes() {
        let l = parse_access_line(
            r#"time="2026-11-23T16:51:06Z" level=info msg="127.0.0.1 - - [23/Nov/2026:16:51:06 +0000] \"PUT /v2/a/b/manifests/v1 HTTP/1.1\" 201 - \"\" \"ferry/0.1\"""#,
        )
        .unwrap();
        assert_eq!(l.method, "PUT");
        assert_eq!(l.target, "/v2/a/b/manifests/v1");
        assert_eq!((l.status, l.bytes), (201, 0));
        assert_eq!(l.user_agent, "ferry/0.1");
    }

    #[test]
    fn ignores_logrus_response_lines() {
        assert!(parse_access_line(
            r#"time="2026-11-23T16:51:06.68Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/ http.response.status=200"#
        )
        .is_none());
        assert!(parse_access_line("").is_none());
    }

    #[test]
    fn dead_url_refuses_connections() {
        let url = dead_url();
        let addr = url.trim_start_matches("http://");
        assert!(TcpStream::connect(addr).is_err());
    }
}
