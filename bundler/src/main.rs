//! `ferry-bundler`: turns a release spec into a verified OCI image layout (and, in a
//! later step, a signed bundle). The only Ferry program that talks to the internet.

mod auth;
mod client;
mod pull;
mod report;
mod resolve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ferry::lock::Lock;
use ferry::mirrors::MirrorRules;
use ferry::spec::Spec;
use ferry::store::Store;

use crate::auth::Credentials;
use crate::client::{Client, ClientOptions};
use crate::report::Report;

const AFTER_HELP: &str = "\
Examples:
  ferry-bundler lock manifests/kubernetes-1.31.toml
  ferry-bundler lock manifests/kubernetes-1.31.toml --cross-check
  ferry-bundler pull manifests/kubernetes-1.31.toml --lock manifests/kubernetes-1.31.lock --store ./store
  ferry-bundler pull spec.toml --mirrors my-mirrors.toml --store ./store --jobs 16

Exit codes:
  0  success
  1  failure (the message says which file, image or endpoint)
  2  bad command line";

/// Build air-gap bundles of a Kubernetes release: resolve, lock and pull its images.
#[derive(Parser)]
#[command(name = "ferry-bundler", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pin every image of a spec to its digests (top-level and per platform).
    #[command(after_help = "\
Examples:
  ferry-bundler lock manifests/kubernetes-1.31.toml             # writes manifests/kubernetes-1.31.lock
  ferry-bundler lock spec.toml -o release.lock --cross-check   # refuse if mirrors disagree")]
    Lock {
        /// The release spec (manifests/*.toml).
        spec: PathBuf,
        /// Where to write the lock [default: the spec's path with `.lock`].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Ask every reachable endpoint for each tag and refuse when they disagree.
        #[arg(long)]
        cross_check: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Fetch every image of a spec into an OCI image layout (the store).
    #[command(after_help = "\
Examples:
  ferry-bundler pull spec.toml --lock spec.lock --store ./store
  ferry-bundler pull spec.toml --store ./store --jobs 16 --quiet

Blobs already in the store are never fetched again; an interrupted pull resumes
where it stopped. With --lock, content whose digest differs from the lock is
refused, whichever mirror serves it.")]
    Pull {
        /// The release spec (manifests/*.toml).
        spec: PathBuf,
        /// Pin images to this lock (without it, tags are resolved now).
        #[arg(long)]
        lock: Option<PathBuf>,
        /// The OCI image layout to fill (created if missing).
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Args)]
struct NetArgs {
    /// Mirror rules replacing the built-in ones (see mirrors.toml).
    #[arg(long, value_name = "FILE")]
    mirrors: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Trust this CA certificate (PEM) for HTTPS endpoints; repeatable.
    #[arg(long = "ca-cert", value_name = "PEM")]
    ca_certs: Vec<PathBuf>,
    /// Credentials for a registry host, HOST=USER:PASSWORD; repeatable.
    /// ~/.docker/config.json is read too.
    #[arg(long = "cred", value_name = "HOST=USER:PASSWORD")]
    creds: Vec<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

impl NetArgs {
    fn rules(&self) -> anyhow::Result<MirrorRules> {
        Ok(match &self.mirrors {
            Some(path) => MirrorRules::load(path)?,
            None => MirrorRules::defaults(),
        })
    }

    fn client(&self) -> anyhow::Result<Client> {
        Client::new(ClientOptions {
            ca_certs: self.ca_certs.clone(),
            credentials: Credentials::load(&self.creds)?,
        })
    }
}

fn warn_reserved(spec: &Spec, report: &Report) {
    if !spec.files.is_empty() || !spec.charts.is_empty() {
        report.warn("this ferry-bundler does not carry `files` or `charts` yet; they are skipped");
    }
}

fn default_lock_path(spec: &Path) -> PathBuf {
    spec.with_extension("lock")
}

/// Writes `text` to `path` atomically, so a failed run leaves no half-written lock.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("lock"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lock {
            spec: spec_path,
            output,
            cross_check,
            net,
        } => {
            let spec = Spec::load(&spec_path)?;
            let rules = net.rules()?;
            let client = net.client()?;
            let report = Report::new(net.quiet);
            warn_reserved(&spec, &report);
            let lock = runtime()?.block_on(resolve::resolve(
                &client,
                &rules,
                &spec,
                net.jobs as usize,
                cross_check,
                &report,
            ))?;
            let out = output.unwrap_or_else(|| default_lock_path(&spec_path));
            write_atomic(&out, &lock.to_toml())?;
            report.info(&format!(
                "wrote {} ({} image(s))",
                out.display(),
                lock.images.len()
            ));
        }
        Command::Pull {
            spec: spec_path,
            lock,
            store,
            net,
        } => {
            let spec = Spec::load(&spec_path)?;
            let rules = net.rules()?;
            let client = net.client()?;
            let report = Report::new(net.quiet);
            warn_reserved(&spec, &report);
            let locked = match &lock {
                Some(path) => {
                    let lock = Lock::load(path)?;
                    lock.covers(&spec, path)?;
                    Some(lock)
                }
                None => None,
            };
            let store = Store::open(&store)?;
            let rt = runtime()?;
            rt.block_on(async {
                let lock = match locked {
                    Some(mut lock) => {
                        // Pull what the spec asks for, pinned by the lock.
                        lock.images
                            .retain(|i| spec.images.iter().any(|s| s.reference == i.reference));
                        for image in &mut lock.images {
                            let wanted = &spec
                                .images
                                .iter()
                                .find(|s| s.reference == image.reference)
                                .expect("retained")
                                .platforms;
                            image.platforms.retain(|p| wanted.contains(&p.platform));
                        }
                        lock
                    }
                    None => {
                        resolve::resolve(&client, &rules, &spec, net.jobs as usize, false, &report)
                            .await?
                    }
                };
                pull::pull(&client, &rules, &lock, &store, net.jobs as usize, &report).await
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
