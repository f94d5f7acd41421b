//! The accept loop: one task per connection, HTTP/1.1 via hyper, optional TLS.
//!
//! Resources are bounded here. At most `--max-connections` connections are kept:
//! a connection over the limit is taken at once, and to make room the one idle
//! longest (no request under way: a keep-alive, or a client that never sent one)
//! is closed; if every connection is busy, the new one waits for the first to end
//! (twice the limit at most), so idle or slow clients can never starve real ones.
//! A TLS handshake must finish in 10 s, request headers must arrive within half the
//! client timeout, and a connection that makes no progress reading or writing for
//! the client timeout (`--client-timeout`, 60 s) is closed. On SIGTERM or SIGINT
//! the listener closes, idle connections are closed, requests under way get up to
//! 30 s to finish, and the process exits 0.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::router::{self, State};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The connections being served: when each last began a request, how many
/// requests it has under way, and how to close it.
#[derive(Default)]
struct Conns {
    next: u64,
    live: std::collections::HashMap<u64, Conn>,
    /// How many of `live` were asked to close (kept, not counted per accept).
    closing: usize,
}

struct Conn {
    last: std::time::Instant,
    busy: usize,
    close: Arc<Notify>,
    closing: bool,
}

type Table = Arc<std::sync::Mutex<Conns>>;

impl Conns {
    fn add(&mut self) -> (u64, Arc<Notify>) {
        self.next += 1;
        let close = Arc::new(Notify::new());
        self.live.insert(
            self.next,
            Conn {
                last: std::time::Instant::now(),
                busy: 0,
                close: close.clone(),
                closing: false,
            },
        );
        (self.next, close)
    }

    /// Asks the connection idle longest to close; whether there was one.
    fn close_idlest(&mut self) -> bool {
        let idlest = self
            .live
            .iter_mut()
            .filter(|(_, c)| c.busy == 0 && !c.closing)
            .min_by_key(|(_, c)| c.last);
        match idlest {
            Some((_, c)) => {
                c.closing = true;
                c.close.notify_one();
                self.closing += 1;
                true
            }
            None => false,
        }
    }

    /// Connections not already asked to close.
    fn open(&self) -> usize {
        self.live.len() - self.closing
    }

    /// Forgets a connection that ended.
    fn remove(&mut self, id: u64) {
        if self.live.remove(&id).is_some_and(|c| c.closing) {
            self.closing -= 1;
        }
    }

    /// Asks every connection to close.
    fn close_all(&mut self) {
        for c in self.live.values_mut().filter(|c| !c.closing) {
            c.closing = true;
            c.close.notify_one();
            self.closing += 1;
        }
    }
}

/// Marks a request under way on a connection for as long as it lives.
struct Busy(Table, u64);

impl Busy {
    fn start(table: &Table, id: u64) -> Busy {
        if let Some(c) = table.lock().unwrap().live.get_mut(&id) {
            c.busy += 1;
            c.last = std::time::Instant::now();
        }
        Busy(table.clone(), id)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.0.lock().unwrap().live.get_mut(&self.1) {
            c.busy -= 1;
            c.last = std::time::Instant::now();
        }
    }
}

/// Raises this process's open-file limit to what it may: every connection is a
/// descriptor, and the usual soft limit (1024) is below what `--max-connections`
/// allows.
pub fn raise_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The peer of a connection, handed to the router for the access log.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// SIGTERM or SIGINT: how `serve` is stopped.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Serves on `listener` until `shutdown` completes, then lets requests under way
/// finish (up to 30 s).
pub async fn run(
    listener: std::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    state: Arc<State>,
    max_connections: usize,
    idle_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let header_timeout = idle_timeout / 2;
    // A burst of clients (every node pulling at once) must not overflow the queue
    // of connections not yet accepted: std listens with 128, and a dropped SYN
    // costs a client a second. Listening again on Linux only changes the length.
    let backlog = i32::try_from(max_connections).unwrap_or(i32::MAX).max(128);
    let _ = rustix::net::listen(&listener, backlog);
    listener
        .set_nonblocking(true)
        .context("setting up the listener")?;
    let listener = TcpListener::from_std(listener).context("setting up the listener")?;
    let local = listener.local_addr().context("reading the bound address")?;
    let (repos, manifests) = state.images.counts();
    ferry_cli::say!(
        "serving {} ({repos} repositories, {manifests} manifests); push {}",
        state.store.root().display(),
        match (state.read_only, state.auth.is_some()) {
            (true, _) => "disabled (--read-only)",
            (false, true) => "with credentials",
            (false, false) => "disabled (no --htpasswd)",
        }
    );
    if repos == 0 && (state.read_only || state.auth.is_none()) {
        // Nothing to pull, and nothing may be pushed: an unpack killed before it
        // named its images leaves such a store.
        ferry_cli::say!(
            "warning: {} names no image: unpack a bundle into it (an unpack that was stopped: run it again)",
            state.store.root().display()
        );
    }
    // Tests and scripts wait for this line (it carries the port when --addr :0).
    ferry_cli::say!(
        "listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );

    tokio::spawn(router::housekeeping(state.clone()));

    let acceptor = tls.map(TlsAcceptor::from);
    let max = max_connections.max(1);
    let table: Table = Arc::default();
    // Tells the accept loop that a connection ended (room for a waiting one).
    let ended = Arc::new(Notify::new());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    ferry_cli::say!("warning: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Room for it: close the idlest connection over the limit; if all are
        // busy, wait (at twice the limit) until one ends.
        loop {
            let (open, total) = {
                let mut t = table.lock().unwrap();
                if t.open() >= max {
                    t.close_idlest();
                }
                (t.open(), t.live.len())
            };
            if open < max || total < 2 * max {
                break;
            }
            tokio::select! {
                _ = ended.notified() => {}
                _ = &mut shutdown => { drop(tcp); return drain(&table).await; }
            }
        }
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_read_timeout(Some(idle_timeout));
        io.set_write_timeout(Some(idle_timeout));
        let io = Box::pin(io);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let (id, close) = table.lock().unwrap().add();
        let (table, ended) = (table.clone(), ended.clone());
        tokio::spawn(async move {
            state.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let service = hyper::service::service_fn({
                let (state, table) = (state.clone(), table.clone());
                move |req| {
                    let busy = Busy::start(&table, id);
                    let state = state.clone();
                    async move {
                        let response = router::handle(state, Peer(peer), req).await;
                        drop(busy);
                        response
                    }
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    serve_until_closed(conn, &close).await;
                }
                Some(acceptor) => {
                    // A failed or too slow handshake just ends the connection.
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
                    let tls = tokio::select! {
                        r = handshake => r.ok().and_then(Result::ok),
                        _ = close.notified() => None,
                    };
                    if let Some(tls) = tls {
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        serve_until_closed(conn, &close).await;
                    }
                }
            }
            state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            table.lock().unwrap().remove(id);
            ended.notify_one();
        });
    }
    drop(listener);
    drain(&table).await
}

/// Serves a connection until it ends, or until it is asked to close: then it
/// finishes the request under way, if any, and closes.
async fn serve_until_closed<I, S>(conn: http1::Connection<I, S>, close: &Notify)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = close.notified() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// On shutdown: every connection is asked to close (idle ones at once, busy ones
/// after their request), for up to [`DRAIN_TIMEOUT`].
async fn drain(table: &Table) -> anyhow::Result<()> {
    ferry_cli::say!("shutting down: finishing requests under way");
    table.lock().unwrap().close_all();
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while !table.lock().unwrap().live.is_empty() {
        if tokio::time::Instant::now() >= deadline {
            ferry_cli::say!("stopped ({DRAIN_TIMEOUT:?} drain limit reached)");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ferry_cli::say!("stopped");
    Ok(())
}
