//! `/metrics` (Prometheus text format) and the access log.
//!
//! Counters are kept per (route, method, status) in a small map behind a mutex:
//! a handful of entries, touched once per request. The access log goes through a
//! bounded channel to one writer thread, so a slow stderr never stalls a request;
//! when the channel is full a line is dropped and counted instead.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;

/// The API resource a request was for (the `route` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Base,
    Catalog,
    Tags,
    Manifest,
    Blob,
    Upload,
    Referrers,
    Metrics,
    Other,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags => "tags",
            Route::Manifest => "manifest",
            Route::Blob => "blob",
            Route::Upload => "upload",
            Route::Referrers => "referrers",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(Route, &'static str, u16), u64>>,
    pub manifest_bytes: AtomicU64,
    pub blob_bytes: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub connections: AtomicI64,
    pub log_dropped: AtomicU64,
    log: SyncSender<String>,
}

impl Metrics {
    /// Starts the access-log writer thread.
    pub fn new() -> Metrics {
        let (tx, rx) = sync_channel::<String>(16 * 1024);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = BufWriter::new(std::io::stderr());
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Batch what is queued, flush when idle: one write per burst.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawning the access-log thread");
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            manifest_bytes: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            log_dropped: AtomicU64::new(0),
            log: tx,
        }
    }

    pub fn count(&self, route: Route, method: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route, method, status))
            .or_insert(0) += 1;
    }

    /// Queues one access-log line (with its newline).
    pub fn log(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.log.try_send(line) {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, repos: usize, manifests: usize, uploads: usize) -> String {
        let mut s = String::new();
        s.push_str("# HELP ferry_registry_requests_total Requests answered, by API route, method and status.\n");
        s.push_str("# TYPE ferry_registry_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().expect("metrics lock").iter() {
            s.push_str(&format!(
                "ferry_registry_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}\n",
                route.as_str()
            ));
        }
        s.push_str(
            "# HELP ferry_registry_bytes_served_total Response body bytes sent, by route.\n",
        );
        s.push_str("# TYPE ferry_registry_bytes_served_total counter\n");
        s.push_str(&format!(
            "ferry_registry_bytes_served_total{{route=\"manifest\"}} {}\n",
            self.manifest_bytes.load(Ordering::Relaxed)
        ));
        s.push_str(&format!(
            "ferry_registry_bytes_served_total{{route=\"blob\"}} {}\n",
            self.blob_bytes.load(Ordering::Relaxed)
        ));
        s.push_str("# HELP ferry_registry_bytes_received_total Blob bytes received by uploads.\n");
        s.push_str("# TYPE ferry_registry_bytes_received_total counter\n");
        s.push_str(&format!(
            "ferry_registry_bytes_received_total {}\n",
            self.upload_bytes.load(Ordering::Relaxed)
        ));
        let gauges = [
            (
                "connections",
                "Open client connections.",
                self.connections.load(Ordering::Relaxed),
            ),
            ("repositories", "Repositories served.", repos as i64),
            ("manifests", "Manifests held in memory.", manifests as i64),
            ("upload_sessions", "Blob uploads under way.", uploads as i64),
        ];
        for (name, help, v) in gauges {
            s.push_str(&format!(
                "# HELP ferry_registry_{name} {help}\n# TYPE ferry_registry_{name} gauge\nferry_registry_{name} {v}\n"
            ));
        }
        s.push_str("# HELP ferry_registry_access_log_dropped_total Access-log lines dropped because stderr was too slow.\n");
        s.push_str("# TYPE ferry_registry_access_log_dropped_total counter\n");
        s.push_str(&format!(
            "ferry_registry_access_log_dropped_total {}\n",
            self.log_dropped.load(Ordering::Relaxed)
        ));
        s
    }
}
