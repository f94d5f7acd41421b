//! HTTP/1.1 as the proxy speaks it: request and response heads, bodies framed by
//! length or chunks, and the responses it makes up itself.

use std::io::{self, BufRead, Read, Write};

use super::MAX_HEAD;

/// A parsed request or response head.
pub(super) struct Head {
    /// Request: `[method, target, version]`; response: `[version, status, reason]`.
    pub(super) start: [String; 3],
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn is_chunked(&self) -> bool {
        self.header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub(super) fn content_length(&self) -> Option<u64> {
        self.header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Reads a head up to the blank line. `Ok(None)` on EOF before any byte (a client
/// that connected and left, like the wake-up connection in `Drop`).
pub(super) fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside HTTP head",
            ));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too large",
            ));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerate stray CRLF before a request line
            }
            break;
        }
        lines.push(text);
    }
    let mut parts = lines[0].splitn(3, ' ').map(str::to_string);
    let start = [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ];
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Head { start, headers }))
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// A registry:2-style error body for an injected status.
pub(super) fn error_body(status: u16) -> String {
    let (code, message) = match status {
        401 => ("UNAUTHORIZED", "authentication required"),
        403 => ("DENIED", "requested access to the resource is denied"),
        404 => ("NAME_UNKNOWN", "repository name not known to registry"),
        429 => ("TOOMANYREQUESTS", "too many requests"),
        503 => ("UNAVAILABLE", "service unavailable"),
        _ => ("UNKNOWN", "unknown error"),
    };
    serde_json::json!({"errors": [{
        "code": code,
        "message": message,
        "detail": format!("injected by ferry-testkit proxy (HTTP {status})"),
    }]})
    .to_string()
}

/// Writes a complete local response. `HEAD` gets the headers (with the length the
/// body would have) and no body.
pub(super) fn respond(
    w: &mut impl Write,
    method: &str,
    status: u16,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(body)?;
    }
    w.flush()
}

/// Hop-by-hop headers the proxy replaces or must not forward.
pub(super) fn is_hop_header(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "expect",
        "host",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Copies a request body as framed by its head (chunked, Content-Length, or none).
pub(super) fn copy_request_body(
    req: &Head,
    r: &mut impl BufRead,
    w: &mut impl Write,
) -> io::Result<()> {
    if req.is_chunked() {
        copy_chunked(r, w)
    } else if let Some(n) = req.content_length() {
        let copied = io::copy(&mut r.take(n), w)?;
        if copied < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body cut short",
            ));
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// Copies one chunked body verbatim (sizes, data, trailers), stopping after the
/// terminating chunk so the connection is not read past the request.
pub(super) fn copy_chunked(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<()> {
    loop {
        let mut size_line = Vec::new();
        if r.read_until(b'\n', &mut size_line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF in chunked body",
            ));
        }
        w.write_all(&size_line)?;
        let text = String::from_utf8_lossy(&size_line);
        let hex = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(hex, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut line = Vec::new();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                w.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        // Data plus its trailing CRLF.
        io::copy(&mut r.take(size + 2), w)?;
    }
}
