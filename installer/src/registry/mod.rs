//! The embedded registry (`ferry-installer serve`): the Docker Registry HTTP API V2
//! / OCI distribution API over the store, in place (nothing is copied).
//!
//! ```text
//! mod.rs        command-line options, start-up (TLS, htpasswd, first catalog)
//! server.rs     accept loop: TLS, timeouts, connection limit, graceful shutdown
//! router.rs     request dispatch, auth, access log and metrics around every handler
//! names.rs      /v2/<name>/… and ?ns= resolved to the store's repository names
//! catalog.rs    the in-memory view: repositories, tags, manifest bytes
//! manifests.rs  GET/HEAD/PUT /v2/<name>/manifests/<reference>
//! blobs.rs      GET/HEAD /v2/<name>/blobs/<digest>, with Range
//! files.rs      GET/HEAD /files/<name>/<version>/[<os>/<arch>/]<file>: plain HTTP
//! uploads.rs    POST/PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/…
//! tags.rs       /v2/_catalog and /v2/<name>/tags/list, paginated
//! referrers.rs  GET /v2/<name>/referrers/<digest>
//! auth.rs       htpasswd (bcrypt) and HTTP Basic
//! tls.rs        rustls from a certificate (the site PKI's, see crate::pki)
//! metrics.rs    /metrics and the access log
//! error.rs      the spec's error codes and registry:2's JSON error body
//! ```

mod auth;
mod blobs;
mod catalog;
mod deletes;
mod error;
mod files;
mod manifests;
mod metrics;
mod names;
mod referrers;
mod router;
mod server;
mod tags;
mod tls;
mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry::store::Store;
use tokio_rustls::rustls;

pub use auth::Htpasswd;

const AFTER_HELP: &str = "\
Examples:
  # Serve a site store over HTTPS on port 5000 with a site CA made on first start
  # (in --pki, default /var/lib/ferry/pki); nodes trust /var/lib/ferry/pki/ca.pem:
  ferry-installer serve --store /var/lib/ferry/store --san registry.site.lan

  # Plain HTTP on loopback (tests, or behind a TLS proxy):
  ferry-installer serve --store ./store --tls off --addr 127.0.0.1:5000

  # Let the site push its own images (htpasswd -Bbn alice SECRET > users):
  ferry-installer serve --store ./store --htpasswd users

  # Pull from it, by the upstream name, through a containerd mirror entry
  # (/etc/containerd/certs.d/registry.k8s.io/hosts.toml):
  #   [host.\"https://registry.site.lan:5000\"]
  #     capabilities = [\"pull\", \"resolve\"]
  #     ca = \"/etc/containerd/certs.d/ferry-site-ca.crt\"   # where plan puts the site CA
  skopeo inspect docker://registry.site.lan:5000/registry.k8s.io/pause:3.10

Names: /v2/registry.k8s.io/pause/... and /v2/pause/...?ns=registry.k8s.io are the
same image; docker.io short names normalise (busybox = docker.io/library/busybox).
Pushed names without a registry host are stored under docker.io, like docker does.

Files of the bundle (kubelet, containerd, ...) are OCI artifacts named
files/NAME:VERSION (oras pull HOST:5000/files/kubelet:1.31.14 --platform linux/amd64),
and plain HTTP downloads, with Range, ETag (the sha256) and Content-Length:
  curl -O https://registry.site.lan:5000/files/kubelet/1.31.14/linux/amd64/kubelet
  curl -O https://registry.site.lan:5000/files/calico.yaml/3.29.7/calico.yaml

Prometheus counters (requests by route, method and status; bytes; no image names),
open even with --auth-pull:
  curl https://registry.site.lan:5000/metrics";

/// Options of `ferry-installer serve`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// The OCI image layout to serve (it must exist; an unpacked bundle).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,

    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "0.0.0.0:5000", value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// `auto`: a site CA and registry certificate kept in --pki (made on first
    /// start); `off`: plain HTTP; `CERT,KEY`: these PEM files.
    #[arg(long, default_value = "auto", value_name = "auto|off|CERT,KEY")]
    pub tls: String,

    /// The site PKI directory, outside the store: the site CA and its key live here.
    #[arg(long, default_value = crate::pki::DEFAULT_DIR, value_name = "DIR")]
    pub pki: PathBuf,

    /// Extra name or address for the server certificate (repeatable); the host name,
    /// localhost and every address of the host are always included.
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,

    /// Users allowed to push (bcrypt htpasswd: `htpasswd -Bbn USER PASSWORD`).
    /// Without it, pushes are refused.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,

    /// Require credentials for pulls too (needs --htpasswd).
    #[arg(long)]
    pub auth_pull: bool,

    /// Refuse pushes and deletes (405), even with --htpasswd.
    #[arg(long)]
    pub read_only: bool,

    /// Most client connections served at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,

    /// Seconds a client may stall (no bytes read or written) before its connection
    /// is closed; request headers must arrive within half of it.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub client_timeout: u64,
}

/// How TLS is set up.
enum TlsMode {
    Auto,
    Off,
    Files(PathBuf, PathBuf),
}

fn tls_mode(text: &str) -> anyhow::Result<TlsMode> {
    Ok(match text {
        "auto" => TlsMode::Auto,
        "off" => TlsMode::Off,
        other => match other.split_once(',') {
            Some((c, k)) if !c.is_empty() && !k.is_empty() => {
                TlsMode::Files(PathBuf::from(c), PathBuf::from(k))
            }
            _ => {
                return Err(ferry_cli::exit::usage(format!(
                    "--tls must be auto, off or CERT,KEY (got {other:?})"
                )))
            }
        },
    })
}

/// What a registry serves and how: what `serve` makes of its command line, and
/// what install and tests give [`Registry::start`] in-process.
pub struct Config {
    pub store: Store,
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users allowed to push; `None` refuses pushes.
    pub htpasswd: Option<Htpasswd>,
    /// Require credentials for pulls too.
    pub auth_pull: bool,
    /// Refuse pushes and deletes.
    pub read_only: bool,
    pub max_connections: usize,
    /// How long a client may stall before its connection is closed.
    pub client_timeout: Duration,
}

impl Config {
    /// Plain HTTP, anonymous pulls, pushes refused: the registry tests and a
    /// loopback-only install use.
    pub fn plain(store: Store) -> Config {
        Config {
            store,
            tls: None,
            htpasswd: None,
            auth_pull: false,
            read_only: false,
            max_connections: 1024,
            client_timeout: Duration::from_secs(60),
        }
    }

    fn prepare(self) -> anyhow::Result<Prepared> {
        let uploads = if self.read_only {
            uploads::Uploads::none(&self.store)
        } else {
            uploads::Uploads::open(&self.store).with_context(|| {
                format!(
                    "preparing the upload directory {} (serve a store on read-only media with --read-only)",
                    self.store.uploads_dir().display()
                )
            })?
        };
        let images =
            catalog::Images::load(self.store.clone()).context("loading the store's images")?;
        let state = Arc::new(router::State {
            images,
            store: self.store,
            auth: self.htpasswd,
            auth_pull: self.auth_pull,
            read_only: self.read_only,
            metrics: metrics::Metrics::new(),
            uploads,
            body_timeout: self.client_timeout,
        });
        Ok(Prepared {
            state,
            tls: self.tls,
            max_connections: self.max_connections,
            client_timeout: self.client_timeout,
        })
    }
}

/// A [`Config`] made ready to serve.
struct Prepared {
    state: Arc<router::State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    client_timeout: Duration,
}

impl Prepared {
    async fn run(
        self,
        listener: std::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        server::run(
            listener,
            self.tls,
            self.state,
            self.max_connections,
            self.client_timeout,
            shutdown,
        )
        .await
    }
}

/// A registry running in this process, on a thread of its own, until [`stop`]ped
/// or dropped.
///
/// [`stop`]: Registry::stop
pub struct Registry {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Registry {
    /// Binds `addr` (port 0 picks a free one) and starts serving `config`.
    pub fn start(config: Config, addr: SocketAddr) -> anyhow::Result<Registry> {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let prepared = config.prepare()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = runtime()?;
        let thread = std::thread::Builder::new()
            .name("ferry-registry".into())
            .spawn(move || {
                runtime.block_on(prepared.run(listener, async {
                    let _ = stopped.await;
                }))
            })
            .context("starting the registry thread")?;
        Ok(Registry {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests under way finish, and waits for that.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the registry thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-serve")
        .build()
        .context("starting the async runtime")
}

/// `ferry-installer serve`: runs the registry until SIGTERM or Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    server::raise_file_limit();
    let mode = tls_mode(&args.tls)?;
    if args.auth_pull && args.htpasswd.is_none() {
        return Err(ferry_cli::exit::usage("--auth-pull needs --htpasswd"));
    }
    let auth = args
        .htpasswd
        .as_deref()
        .map(auth::Htpasswd::load)
        .transpose()?;
    // Only pull and unpack make a store: serving a directory that is not one
    // would show an empty registry and litter the directory.
    let store = Store::open(&args.store)?;
    // Bound before the site CA is made: a port in use must not leave a new CA.
    let listener = std::net::TcpListener::bind(args.addr)
        .with_context(|| format!("listening on {}", args.addr))?;
    let tls = match mode {
        TlsMode::Off => None,
        TlsMode::Files(cert, key) => Some(tls::server_config(&cert, &key)?),
        TlsMode::Auto => {
            let sans = tls::wanted_sans(&args.san, args.addr.ip());
            let pki = crate::pki::Pki::new(&args.pki);
            let made = pki
                .ensure_registry_cert(&sans)
                .context("making the site CA and registry certificate")?;
            let ca = pki.ca_cert();
            let ca = ca.canonicalize().unwrap_or(ca);
            let now = |made: bool| if made { "made now" } else { "kept" };
            ferry_cli::say!(
                "site CA: {} ({}); nodes trust it (containerd hosts.toml: ca = \"{}\")",
                ca.display(),
                now(made.ca),
                ca.display()
            );
            ferry_cli::say!(
                "server certificate ({}) names: {}",
                now(made.certificate),
                sans.join(", ")
            );
            if !made.dropped.is_empty() {
                // The names come from this command line alone: a restart without
                // an earlier --san replaces the certificate without it.
                ferry_cli::say!(
                    "warning: the certificate it replaced also named {}: clients that reach the registry by {} now fail TLS; to keep {}, pass --san {}",
                    made.dropped.join(", "),
                    if made.dropped.len() == 1 { "it" } else { "them" },
                    if made.dropped.len() == 1 { "it" } else { "them" },
                    made.dropped.join(" --san ")
                );
            }
            let (cert, key) = pki.registry_cert();
            Some(tls::server_config(&cert, &key)?)
        }
    };
    let prepared = Config {
        store,
        tls,
        htpasswd: auth,
        auth_pull: args.auth_pull,
        read_only: args.read_only,
        max_connections: args.max_connections,
        client_timeout: Duration::from_secs(args.client_timeout),
    }
    .prepare()?;
    runtime()?.block_on(prepared.run(listener, server::shutdown_signal()))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {}\r\nConnection: close\r\n\r\n",
            ferry::media::OCI_MANIFEST
        )
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn starts_in_process_serves_the_store_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_digest = ferry::Digest::of(config);
        store.put_blob(&config_digest, config).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
            config.len()
        );
        let digest = ferry::Digest::of(manifest.as_bytes());
        store.put_blob(&digest, manifest.as_bytes()).unwrap();
        let desc = ferry::manifest::Descriptor {
            media_type: ferry::media::MediaType::ImageManifest,
            digest: digest.clone(),
            size: manifest.len() as u64,
        };
        store
            .set_images(&[("registry.k8s.io/pause:3.10".into(), desc)])
            .unwrap();

        let registry =
            Registry::start(Config::plain(store), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = registry.addr();
        assert_ne!(addr.port(), 0);
        let answer = get(addr, "/v2/registry.k8s.io/pause/manifests/3.10");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains(&format!("docker-content-digest: {digest}")),
            "{answer}"
        );
        assert!(answer.ends_with(&manifest), "{answer}");
        let answer = get(addr, "/v2/pause/manifests/3.10?ns=registry.k8s.io");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        registry.stop().unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening after stop"
        );
    }
}
