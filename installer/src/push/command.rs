//! `ferry-installer push`: its options, credentials, progress and closing line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use ferry::signing::PublicKey;
use ferry::store::Store;
use ferry_cli::{human_bytes, Refused, Report};
use ferry_client::auth::Credentials;
use ferry_client::{Client, ClientOptions};

use super::{PushOptions, Target, DEFAULT_CHUNK};

const AFTER_HELP: &str = "\
Examples:
  ferry-installer push --store /var/lib/ferry/store --to https://harbor.site/k8s --cred admin:Harbor12345
  ferry-installer push --bundle k8s-1.31.tar.zst --key release.pub --to https://harbor.site/k8s
  ferry-installer push --store store/ --to https://registry.site:5000 --ca-cert site-ca.pem
  ferry-installer push --store store/ --to https://quay.site/k8s --flatten

Every image, file and chart of the store goes to PREFIX/<upstream name with its
host>: registry.k8s.io/pause:3.10 pushed --to https://harbor.site/k8s becomes
harbor.site/k8s/registry.k8s.io/pause:3.10, files/kubelet:1.31.14 becomes
harbor.site/k8s/files/kubelet:1.31.14. --flatten joins the name's components with
`__` (k8s/registry.k8s.io__pause) for registries that allow only
project/repository; nodes cannot pull a flattened registry by upstream names.

Manifests are pushed byte for byte (every digest stays the upstream one) and read
back. Blobs the registry has are not sent; a blob pushed to one repository is
mounted into the others. Run it again after an interruption: it goes on where it
stopped. Credentials: --cred, else ~/.docker/config.json (helpers included).

With --bundle, the bundle is read twice and never unpacked: first its signature
and every byte are checked (nothing is sent from a bundle that fails), then the
blobs the registry lacks are sent as the bundle streams by. Exit code 3 when the
bundle is refused.";

/// Options of `ferry-installer push`.
#[derive(clap::Args)]
#[command(
    after_help = AFTER_HELP,
    override_usage = "ferry-installer push --store <DIR> --to <URL> [OPTIONS]\n       ferry-installer push --bundle <FILE> --key <FILE> --to <URL> [OPTIONS]"
)]
pub struct PushArgs {
    /// The store to push (an unpacked bundle).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    pub store: Option<PathBuf>,

    /// Or a bundle (or its first part), pushed without unpacking it.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub bundle: Option<PathBuf>,

    /// The public key the bundle must be signed with.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub key: Option<PathBuf>,

    /// The registry, with an optional path prefix: https://HOST[:PORT][/PREFIX]
    /// (http:// for a plain-HTTP registry).
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// USER:PASSWORD for the registry, or HOST=USER:PASSWORD with --to's host
    /// (else the docker config's).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "FERRY_PUSH_CRED",
        hide_env_values = true
    )]
    pub cred: Option<String>,

    /// A CA certificate (PEM) to trust besides the system's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,

    /// Repository names without slashes below the prefix (see below).
    #[arg(long)]
    pub flatten: bool,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,

    /// Blobs larger than this many MiB go in chunks of this size.
    #[arg(long, default_value_t = DEFAULT_CHUNK >> 20, value_name = "MIB")]
    pub chunk_mib: u64,

    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `push`.
pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let target =
        Target::parse(&args.to, args.flatten).map_err(|e| ferry_cli::exit::usage(e.to_string()))?;
    if args.jobs == 0 || args.chunk_mib == 0 {
        return Err(ferry_cli::exit::usage(
            "--jobs and --chunk-mib must be at least 1",
        ));
    }
    let mut flags = Vec::new();
    if let Some(cred) = &args.cred {
        // HOST=USER:PASSWORD, as `ferry-bundler` takes it and as the hint for a
        // registry that asks for credentials spells it, names --to's host.
        let cred = cred
            .strip_prefix(&format!("{}=", target.host()))
            .unwrap_or(cred);
        if !cred.contains(':') {
            return Err(ferry_cli::exit::usage(
                "--cred: expected USER:PASSWORD (or HOST=USER:PASSWORD, HOST as in --to)",
            ));
        }
        flags.push(format!("{}={cred}", target.host()));
    }
    let client = Client::new(ClientOptions {
        ca_certs: args.ca_cert.clone(),
        credentials: Credentials::load(&flags)?,
        connect_timeout: std::time::Duration::from_secs(10),
        // A registry may think for a while after a large blob's last byte.
        stall_timeout: std::time::Duration::from_secs(120),
        // One target: there is no next endpoint to start.
        head_start: ferry_client::HEAD_START,
        verbose: false,
        user_agent: concat!("ferry-installer/", env!("CARGO_PKG_VERSION")).into(),
    })?;
    let report = Arc::new(Report::new(args.quiet));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-push")
        .build()
        .context("starting the async runtime")?;
    let options = PushOptions {
        jobs: args.jobs,
        chunk: args.chunk_mib << 20,
    };
    let s = match (&args.store, &args.bundle, &args.key) {
        (Some(store), _, _) => {
            let store = Store::open(store).with_context(|| format!("store {}", store.display()))?;
            let plan = super::Plan::read(&store, &target)?;
            report.start(&format!("pushing to {target}"), plan.bytes());
            let progress = {
                let report = Arc::clone(&report);
                Arc::new(move |n| report.add(n))
            };
            let result = runtime.block_on(super::push(&store, &plan, &client, options, progress));
            report.finish();
            result.with_context(|| format!("push to {target}"))?
        }
        (None, Some(bundle), Some(key)) => {
            let key = PublicKey::load(key)?;
            let progress: Arc<dyn ferry::progress::Progress + Send + Sync> = report.clone();
            let result = runtime.block_on(super::push_bundle(
                bundle,
                &key,
                &target,
                Arc::new(client),
                options,
                progress,
            ));
            report.finish();
            match result {
                Err(super::PushError::Bundle(e)) => return Err(Refused::classify(bundle, e)),
                other => other.with_context(|| format!("push to {target}"))?,
            }
        }
        _ => unreachable!("clap requires --store, or --bundle with --key"),
    };
    report.info(&format!(
        "pushed {} image(s) to {target}: blobs {} sent ({}), {} already there, {} mounted; manifests {} sent, {} already there; {} read back, all match",
        s.images,
        s.blobs_pushed,
        human_bytes(s.bytes_sent),
        s.blobs_present,
        s.blobs_mounted,
        s.manifests_pushed,
        s.manifests_present,
        s.manifests_checked,
    ));
    Ok(())
}
