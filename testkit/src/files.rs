//! A loopback file server, the stand-in for `dl.k8s.io`, `github.com` releases and
//! their mirrors: it serves bytes the test puts at a path, with `Range`, `ETag`
//! (the sha256) and `Content-Length`, and can be told to misbehave the way real
//! servers do: drop the connection part-way through a body, stall in the middle of
//! one, or serve other bytes than upstream (a stale or altered mirror). It records
//! every request it gets.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// A way to misbehave on one path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send the headers of the whole answer, then this many body bytes, then close
    /// the connection; once, then serve normally.
    DropAfter(u64),
    /// Send the headers of the answer, then this many body bytes, then nothing
    /// more until the client leaves (a mirror that stalls); every time.
    StallAfter(u64),
    /// Serve these bytes instead of the real ones, every time.
    Serve(Vec<u8>),
    /// Answer `302 Found` with this `Location`, every time (github.com sends its
    /// release downloads to objects.githubusercontent.com).
    Redirect(String),
}

#[derive(Default)]
struct State {
    files: Mutex<HashMap<String, Vec<u8>>>,
    faults: Mutex<HashMap<String, Fault>>,
    requests: Mutex<Vec<String>>,
    stopping: AtomicBool,
}

/// A running file server on `127.0.0.1`, stopped when dropped.
pub struct FileServer {
    addr: String,
    state: Arc<State>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding the file server");
        let addr = listener.local_addr().expect("its address").to_string();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        thread::Builder::new()
            .name("file-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let st = Arc::clone(&st);
                    let _ = thread::Builder::new()
                        .name("file-conn".into())
                        .spawn(move || {
                            let _ = serve(&st, stream);
                        });
                }
            })
            .expect("starting the file server");
        FileServer { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` at `path` (which starts with `/`).
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(path.to_string(), bytes);
    }

    /// Makes `path` misbehave.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(path.to_string(), fault);
    }

    /// Makes `path` behave again.
    pub fn heal(&self, path: &str) {
        self.state.faults.lock().unwrap().remove(path);
    }

    /// Every request so far, as `METHOD PATH` plus ` range=VALUE` when one was asked.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests asked for `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.split(' ').nth(1) == Some(path))
            .count()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(state: &State, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    state.requests.lock().unwrap().push(match &range {
        Some(r) => format!("{method} {path} range={r}"),
        None => format!("{method} {path}"),
    });
    let fault = {
        let mut faults = state.faults.lock().unwrap();
        match faults.get(&path) {
            Some(Fault::DropAfter(_)) => faults.remove(&path),
            other => other.cloned(),
        }
    };
    if let Some(Fault::Redirect(to)) = &fault {
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.write_all(head.as_bytes())?;
        return Ok(());
    }
    let body = match (&fault, state.files.lock().unwrap().get(&path)) {
        (Some(Fault::Serve(other)), _) => other.clone(),
        (_, Some(bytes)) => bytes.clone(),
        (_, None) => {
            out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
            )?;
            return Ok(());
        }
    };
    let size = body.len() as u64;
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s < size);
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
    let (status, from) = match start {
        Some(s) => ("206 Partial Content", s),
        None => ("200 OK", 0),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\nConnection: close\r\n",
        size - from
    );
    if from > 0 {
        head.push_str(&format!(
            "Content-Range: bytes {from}-{}/{size}\r\n",
            size - 1
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let rest = &body[from as usize..];
    match fault {
        Some(Fault::DropAfter(n)) => {
            out.write_all(&rest[..(n as usize).min(rest.len())])?;
            out.flush()?;
            let _ = out.shutdown(Shutdown::Both);
        }
        Some(Fault::StallAfter(n)) => {
            out.write_all(&rest[..(n as usize).min(rest.len())])?;
            out.flush()?;
            // Keep the connection open and silent until the client hangs up.
            out.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut byte = [0u8; 1];
            while !state.stopping.load(Ordering::SeqCst) {
                match io::Read::read(&mut out, &mut byte) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        _ => out.write_all(rest)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = ureq::get(url);
        if let Some(r) = range {
            req = req.set("Range", r);
        }
        match req.call() {
            Ok(resp) => {
                let status = resp.status();
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(&mut resp.into_reader(), &mut body);
                (status, body)
            }
            Err(ureq::Error::Status(code, _)) => (code, Vec::new()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn serves_ranges_and_misbehaves_on_request() {
        let s = FileServer::start();
        s.put("/a/file", b"0123456789".to_vec());
        assert_eq!(
            get(&format!("{}/a/file", s.url()), None),
            (200, b"0123456789".to_vec())
        );
        assert_eq!(
            get(&format!("{}/a/file", s.url()), Some("bytes=4-")),
            (206, b"456789".to_vec())
        );
        assert_eq!(get(&format!("{}/missing", s.url()), None).0, 404);
        s.fault("/a/file", Fault::DropAfter(3));
        assert_eq!(get(&format!("{}/a/file", s.url()), None).1, b"012".to_vec());
        assert_eq!(
            get(&format!("{}/a/file", s.url()), None).1,
            b"0123456789".to_vec()
        );
        s.fault("/a/file", Fault::Serve(b"other".to_vec()));
        assert_eq!(
            get(&format!("{}/a/file", s.url()), None).1,
            b"other".to_vec()
        );
        assert_eq!(s.count("/a/file"), 5);
        assert!(s
            .requests()
            .contains(&"GET /a/file range=bytes=4-".to_string()));
    }
}
