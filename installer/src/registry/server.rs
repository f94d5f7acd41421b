//! The accept loop: one task per connection, HTTP/1.1 via hyper, optional TLS.
//!
//! Resources are bounded here: at most `--max-connections` connections are served
//! at once (the rest wait in the kernel's backlog), a TLS handshake must finish in
//! 10 s, request headers must arrive within half the client timeout, and a
//! connection that makes no progress reading or writing for the client timeout
//! (`--client-timeout`, 60 s) is closed (slow or stalled clients, idle keep-alives). On SIGTERM or SIGINT the listener closes, requests under
//! way get up to 30 s to finish, and the process exits 0.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::router::{self, State};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    listener
        .set_nonblocking(true)
        .context("setting up the listener")?;
    let listener = TcpListener::from_std(listener).context("setting up the listener")?;
    let local = listener.local_addr().context("reading the bound address")?;
    let (repos, manifests) = state.images.counts();
    eprintln!(
        "serving {} ({repos} repositories, {manifests} manifests); push {}",
        state.store.root().display(),
        if state.auth.is_some() {
            "with credentials"
        } else {
            "disabled (no --htpasswd)"
        }
    );
    // Tests and scripts wait for this line (it carries the port when --addr :0).
    eprintln!(
        "listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );

    tokio::spawn(router::housekeeping(state.clone()));

    let acceptor = tls.map(TlsAcceptor::from);
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("warning: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let mut io = TimeoutStream::new(tcp);
        io.set_read_timeout(Some(idle_timeout));
        io.set_write_timeout(Some(idle_timeout));
        let io = Box::pin(io);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            state.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let service = hyper::service::service_fn({
                let state = state.clone();
                move |req| router::handle(state.clone(), Peer(peer), req)
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    // A failed or too slow handshake just ends the connection.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await
                    {
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        let _ = watcher.watch(conn).await;
                    }
                }
            }
            state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    eprintln!("shutting down: finishing requests under way");
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("stopped"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => eprintln!("stopped ({DRAIN_TIMEOUT:?} drain limit reached)"),
    }
    Ok(())
}
