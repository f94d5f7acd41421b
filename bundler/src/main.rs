//! `ferry-bundler`: turns a release spec into a verified OCI image layout and a
//! signed, reproducible bundle. The only Ferry program that talks to the internet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use ferry::lock::Lock;
use ferry::spec::Spec;
use ferry::store::Store;
use ferry_bundler::mirrors::MirrorRules;

use ferry_bundler::outputs::{self, Input, OutputError};
use ferry_bundler::{build, keys, pull, resolve};
use ferry_cli::Report;
use ferry_client::auth::Credentials;
use ferry_client::{Client, ClientOptions};

const AFTER_HELP: &str = "\
Examples:
  ferry-bundler keygen --name release
  ferry-bundler lock manifests/kubernetes-1.31.toml
  ferry-bundler build manifests/kubernetes-1.31.toml --lock manifests/kubernetes-1.31.lock \\
      --key release.key -o k8s-1.31.tar.zst
  minisign -Vm k8s-1.31.tar.zst -p release.pub
  ferry-bundler inspect k8s-1.31.tar.zst
  ferry-bundler lock manifests/kubernetes-1.31.toml --cross-check
  ferry-bundler pull manifests/kubernetes-1.31.toml --lock manifests/kubernetes-1.31.lock --store ./store
  ferry-bundler pull spec.toml --mirrors my-mirrors.toml --store ./store --jobs 16
  ferry-bundler completions bash > /etc/bash_completion.d/ferry-bundler
  ferry-bundler man --out /usr/local/share/man/man1

Exit codes:
  0  success
  1  failure (the message says which file, image or endpoint)
  2  bad command line
  3  bundle refused (inspect --key: wrongly signed, or not a bundle)";

/// Build air-gap bundles of a Kubernetes release: resolve, lock and pull its images.
#[derive(Parser)]
#[command(name = "ferry-bundler", version = ferry_cli::VERSION, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a minisign-compatible Ed25519 key pair (NAME.key, NAME.pub).
    #[command(after_help = "\
Examples:
  ferry-bundler keygen                           # ./ferry.key and ./ferry.pub, asks for a password
  FERRY_KEY_PASSWORD=... ferry-bundler keygen --name release --out keys/
  ferry-bundler keygen --no-password --name ci

The public key works with the minisign CLI: minisign -Vm FILE -p NAME.pub")]
    Keygen {
        /// Directory to write the keys into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Base name of the key files (not a path; not starting with '.').
        #[arg(long, default_value = "ferry", value_parser = key_name)]
        name: String,
        /// Store the secret key unencrypted (for CI; keep it secret).
        #[arg(long)]
        no_password: bool,
    },
    /// Pull what is missing, then pack and sign a reproducible bundle.
    #[command(after_help = "\
Examples:
  ferry-bundler build spec.toml --lock spec.lock --key release.key -o k8s.tar.zst
  ferry-bundler build spec.toml --lock spec.lock --key release.key -o k8s-patch.tar.zst --base k8s.tar.zst
  ferry-bundler build spec.toml --lock spec.lock --key release.key -o k8s.tar.zst --split 4095M

Also writes OUT.minisig over the whole file (or each part): check a bundle with
  minisign -Vm k8s.tar.zst -p release.pub
The same lock and content give the same bytes; entries get the mtime
SOURCE_DATE_EPOCH (or 0). A password-protected key reads FERRY_KEY_PASSWORD or asks.
--split writes OUT.001, OUT.002, ...: give the installer OUT.001.")]
    Build {
        /// The release spec (manifests/*.toml).
        spec: PathBuf,
        /// The secret key to sign with (from keygen or minisign -G).
        #[arg(long)]
        key: PathBuf,
        /// The bundle to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Pin images to this lock (without it, tags are resolved now).
        #[arg(long)]
        lock: Option<PathBuf>,
        /// The store to pull into and pack from [default: $XDG_CACHE_HOME/ferry/store,
        /// else ~/.cache/ferry/store].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Make a delta: leave out every blob this older bundle holds.
        #[arg(long, value_name = "OLD.tar.zst")]
        base: Option<PathBuf>,
        /// Cut the output into parts no larger than SIZE (e.g. 700M, 4095M, 4.7GB).
        #[arg(long, value_parser = parse_size)]
        split: Option<u64>,
        /// Build even when an addon manifest (a YAML file of the spec) names an
        /// image the spec does not carry (each is named in a warning).
        #[arg(long)]
        allow_missing_images: bool,
        /// zstd level (1-19).
        #[arg(long, default_value_t = ferry::archive::pack::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Show what a bundle holds (reads only its head).
    #[command(after_help = "\
Examples:
  ferry-bundler inspect k8s.tar.zst
  ferry-bundler inspect k8s.tar.zst --key release.pub --json")]
    Inspect(ferry_cli::inspect::InspectArgs),
    /// Pin every image (top-level and per platform) and file of a spec to its digests.
    #[command(after_help = "\
Examples:
  ferry-bundler lock manifests/kubernetes-1.31.toml             # writes manifests/kubernetes-1.31.lock
  ferry-bundler lock spec.toml -o release.lock --cross-check   # refuse if mirrors disagree
  ferry-bundler lock spec.toml --store ./store  # keep the pinned files and charts it downloads for pull
  ferry-bundler lock spec.toml --verbose        # say why each mirror is skipped, passed over or left
  ferry-bundler lock spec.toml --head-start 1   # wait longer for the first mirror before asking the next")]
    Lock {
        /// The release spec (manifests/*.toml).
        spec: PathBuf,
        /// Where to write the lock [default: the spec's path with `.lock`].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Ask every reachable endpoint for each tag and refuse when they disagree.
        #[arg(long)]
        cross_check: bool,
        /// Keep the files with a pin in the spec and the charts' .tgz, which lock
        /// downloads to check them, in this store: `pull` and `build` into it then do
        /// not fetch them again.
        #[arg(long)]
        store: Option<PathBuf>,
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
        /// The OCI image layout to fill (made in a new or empty directory).
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  ferry-bundler completions bash > /etc/bash_completion.d/ferry-bundler
  ferry-bundler completions zsh > \"${fpath[1]}/_ferry-bundler\"
  ferry-bundler completions fish > ~/.config/fish/completions/ferry-bundler.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: ferry_cli::generate::Shell,
    },
    /// Print the man page (roff), or write one page per subcommand into a directory.
    #[command(after_help = "\
Examples:
  ferry-bundler man | man -l -
  ferry-bundler man --out /usr/local/share/man/man1   # ferry-bundler.1, ferry-bundler-lock.1, ...")]
    Man {
        /// Write ferry-bundler.1 and ferry-bundler-SUBCOMMAND.1 into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
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
    /// Credentials for a registry host, HOST=USER:PASSWORD; repeatable. For a host
    /// that no flag names, ~/.docker/config.json ($DOCKER_CONFIG/config.json) is read:
    /// the helper credHelpers names for it, then credsStore, then auths.
    #[arg(long = "cred", value_name = "HOST=USER:PASSWORD", value_parser = CredParser)]
    creds: Vec<String>,
    /// Log in to HOST as USER, keeping the password off the command line: it is read
    /// from standard input with --password-stdin, else from the environment variable
    /// FERRY_REGISTRY_PASSWORD. Takes precedence like --cred.
    #[arg(long, value_name = "HOST=USER")]
    user: Option<String>,
    /// Read the password for --user from standard input (its first line), e.g.
    /// `pass show registry | ferry-bundler pull ... --user HOST=USER --password-stdin`.
    #[arg(long, requires = "user")]
    password_stdin: bool,
    /// Seconds a connection may take to open; an endpoint that does not answer
    /// in time (a blocked mirror drops packets) is skipped by every download for a
    /// minute, and the next endpoint used.
    #[arg(long, default_value_t = ferry_client::CONNECT_TIMEOUT.as_secs_f64(), value_name = "SECONDS", value_parser = timeout_seconds)]
    connect_timeout: f64,
    /// Seconds a response may send nothing; an endpoint that stalls (answers,
    /// then sends no more) is left like one that does not connect, and a blob
    /// goes on from the next endpoint where it stopped.
    #[arg(long, default_value_t = ferry_client::STALL_TIMEOUT.as_secs_f64(), value_name = "SECONDS", value_parser = timeout_seconds)]
    stall_timeout: f64,
    /// Seconds an endpoint may take to answer before the next one is asked too
    /// (Happy Eyeballs between endpoints); the first good answer wins. 0 asks
    /// every endpoint at once.
    #[arg(long, default_value_t = ferry_client::HEAD_START.as_secs_f64(), value_name = "SECONDS", value_parser = head_start_seconds)]
    head_start: f64,
    /// Print nothing but errors.
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Say each decision about an endpoint as it is made: skipped, passed over
    /// for not answering in time, left mid-blob for a faster one; and warn of
    /// each failure of an endpoint, not only the first of each kind.
    #[arg(long, short)]
    verbose: bool,
}

impl NetArgs {
    /// The run's report; plain lines when verbose, so decisions do not break a bar.
    fn report(&self) -> Report {
        if self.verbose {
            Report::plain()
        } else {
            Report::new(self.quiet)
        }
    }

    /// The files these flags name for reading (`--mirrors`, `--ca-cert`).
    fn inputs(&self) -> Vec<Input<'_>> {
        let mirrors = self.mirrors.iter().map(|p| Input {
            named: "--mirrors",
            path: p,
        });
        let cas = self.ca_certs.iter().map(|p| Input {
            named: "--ca-cert",
            path: p,
        });
        mirrors.chain(cas).collect()
    }

    fn rules(&self) -> anyhow::Result<MirrorRules> {
        Ok(match &self.mirrors {
            Some(path) => MirrorRules::load(path)?,
            None => MirrorRules::defaults(),
        })
    }

    fn client(&self) -> anyhow::Result<Client> {
        let mut credentials = Credentials::load(&self.creds)?;
        if let Some(login) = &self.user {
            credentials.add_login(login, Credentials::login_password(self.password_stdin)?)?;
        }
        Client::new(ClientOptions {
            ca_certs: self.ca_certs.clone(),
            credentials,
            connect_timeout: std::time::Duration::from_secs_f64(self.connect_timeout),
            stall_timeout: std::time::Duration::from_secs_f64(self.stall_timeout),
            head_start: std::time::Duration::from_secs_f64(self.head_start),
            verbose: self.verbose,
            user_agent: concat!("ferry-bundler/", env!("CARGO_PKG_VERSION")).into(),
        })
        .map_err(Into::into)
    }
}

/// Checks `--cred HOST=USER:PASSWORD` as clap parses it (a bad one is a usage
/// error, exit 2); unlike clap's own message, the error never shows the password.
#[derive(Clone)]
struct CredParser;

impl clap::builder::TypedValueParser for CredParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::ErrorKind;
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(ErrorKind::InvalidUtf8, "--cred: the value is not UTF-8\n")
                .with_cmd(cmd)
        })?;
        ferry_client::auth::parse_cred(text).map_err(|e| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")).with_cmd(cmd)
        })?;
        Ok(text.to_string())
    }
}

/// `keygen --name`: see [`keys::check_name`].
fn key_name(text: &str) -> Result<String, String> {
    keys::check_name(text).map(|()| text.to_string())
}

/// The longest a timeout or head start may be, in seconds.
const MAX_SECONDS: f64 = 600.0;

/// Parses a number of seconds (a decimal, such as `0.5`).
fn seconds(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .ok_or_else(|| "not a number of seconds (e.g. 3 or 0.5)".to_string())
}

/// `--connect-timeout`, `--stall-timeout`: more than 0, at most 600 seconds.
fn timeout_seconds(text: &str) -> Result<f64, String> {
    let s = seconds(text)?;
    if s > 0.0 && s <= MAX_SECONDS {
        Ok(s)
    } else {
        Err(format!(
            "must be more than 0 and at most {MAX_SECONDS} seconds"
        ))
    }
}

/// `--head-start`: 0 (every endpoint at once) to 600 seconds.
fn head_start_seconds(text: &str) -> Result<f64, String> {
    let s = seconds(text)?;
    if (0.0..=MAX_SECONDS).contains(&s) {
        Ok(s)
    } else {
        Err(format!(
            "must be from 0 (ask every endpoint at once) to {MAX_SECONDS} seconds"
        ))
    }
}

/// Parses a size such as `700M`, `4G`, `4095M` (powers of 1024) or `4.7GB` (of 1000).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 700M or 4.7GB"))?;
    let factor: f64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KIB" => 1024.0,
        "M" | "MIB" => 1024.0 * 1024.0,
        "G" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use K, M, G, KB, MB or GB)"
            ))
        }
    };
    let size = (n * factor) as u64;
    if size < 1024 * 1024 {
        return Err(format!(
            "{text:?} is smaller than the 1M a part needs at least"
        ));
    }
    Ok(size)
}

fn default_store() -> anyhow::Result<PathBuf> {
    // Only an absolute path counts (a relative one would put the store wherever
    // the command runs), as the XDG base directory spec says.
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let cache = absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".cache")))
        .ok_or_else(|| {
            ferry_cli::exit::usage(
                "no --store, and neither HOME nor XDG_CACHE_HOME is set to an absolute path to keep the default store under: give --store DIR",
            )
        })?;
    Ok(cache.join("ferry").join("store"))
}

/// `--lock`, checked against the spec and cut to the images and platforms it asks for.
fn pinned_lock(spec: &Spec, path: &Path) -> anyhow::Result<Lock> {
    let mut lock = Lock::load(path)?;
    lock.covers(spec, path)?;
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
    lock.charts.retain(|c| {
        spec.charts
            .iter()
            .any(|s| s.name == c.name && s.version == c.version)
    });
    lock.files.retain(|f| {
        spec.files.iter().any(|s| {
            s.name == f.name && s.version == f.version && s.targets().contains(&f.platform)
        })
    });
    Ok(lock)
}

/// Pins the spec's images (`--lock`, or tags resolved now, pinned files downloaded
/// into the store as they are checked) and pulls into `store` what it lacks;
/// returns the lock and the open store.
fn pull_into(
    spec: &Spec,
    lock: Option<&Path>,
    store: &Path,
    net: &NetArgs,
    report: &Report,
) -> anyhow::Result<(Lock, Store)> {
    let rules = net.rules()?;
    let client = net.client()?;
    // Checked before the store is created, so a bad lock leaves nothing behind.
    let pinned = lock.map(|p| pinned_lock(spec, p)).transpose()?;
    let store = Store::create(store)?;
    let reclaimed = store.reclaim_tmp()?;
    if reclaimed > 0 {
        report.info(&format!(
            "removed {reclaimed} temporary file(s) left in {} by a run that was stopped",
            store.root().display()
        ));
    }
    let jobs = net.jobs as usize;
    let lock = runtime()?.block_on(async {
        let lock = match pinned {
            Some(lock) => lock,
            None => {
                let store = Some(&store);
                resolve::resolve(&client, &rules, spec, jobs, false, store, report).await?
            }
        };
        pull::pull(&client, &rules, &lock, &store, jobs, report).await?;
        anyhow::Ok(lock)
    });
    endpoint_notes(&client, report);
    Ok((lock?, store))
}

/// Says which endpoints were given up on during the run, and why.
fn endpoint_notes(client: &Client, report: &Report) {
    for note in client.endpoint_notes() {
        report.info(&note);
    }
}

fn default_lock_path(spec: &Path) -> PathBuf {
    spec.with_extension("lock")
}

/// Writes `text` to `path` atomically, so a failed run leaves no half-written lock;
/// an error names `path`, not the temporary file beside it.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = outputs::parent_dir(path).join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("lock"),
        std::process::id()
    ));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Completions { shell } => ferry_cli::generate::completions(Cli::command(), shell)?,
        Command::Man { out } => ferry_cli::generate::man(Cli::command(), out.as_deref())?,
        Command::Lock {
            spec: spec_path,
            output,
            cross_check,
            store,
            net,
        } => {
            let (out, out_named) = match output {
                Some(out) => (out, "-o"),
                None => (
                    default_lock_path(&spec_path),
                    "the default output (the spec's path with .lock)",
                ),
            };
            let mut inputs = net.inputs();
            inputs.push(Input {
                named: "the spec",
                path: &spec_path,
            });
            outputs::check(out_named, &out, &[], &inputs).map_err(output_error)?;
            let spec = Spec::load(&spec_path)?;
            let rules = net.rules()?;
            let client = net.client()?;
            let report = net.report();
            let store = store.as_deref().map(Store::create).transpose()?;
            let lock = runtime()?.block_on(resolve::resolve(
                &client,
                &rules,
                &spec,
                net.jobs as usize,
                cross_check,
                store.as_ref(),
                &report,
            ));
            endpoint_notes(&client, &report);
            let lock = lock?;
            write_atomic(&out, &lock.to_toml())?;
            // A file is counted once, however many platforms it has.
            let files: std::collections::BTreeSet<(&str, &str)> = lock
                .files
                .iter()
                .map(|f| (f.name.as_str(), f.version.as_str()))
                .collect();
            report.info(&format!(
                "wrote {} ({} image(s), {} file(s), {} chart(s))",
                out.display(),
                lock.images.len(),
                files.len(),
                lock.charts.len()
            ));
        }
        Command::Pull {
            spec: spec_path,
            lock,
            store,
            net,
        } => {
            let spec = Spec::load(&spec_path)?;
            let report = net.report();
            // Ctrl-C stops the downloads; what they fetched stays for a rerun.
            let _catch = ferry_cli::interrupt::Catch::new().context("catching Ctrl-C")?;
            pull_into(&spec, lock.as_deref(), &store, &net, &report)?;
        }
        Command::Keygen {
            out,
            name,
            no_password,
        } => {
            let (public, secret) = keys::keygen(&out, &name, no_password)?;
            ferry_cli::out!(
                "wrote {} (keep it secret) and {} (give it to the sites)",
                secret.display(),
                public.display()
            );
        }
        Command::Build {
            spec: spec_path,
            key,
            output,
            lock,
            store,
            base,
            split,
            level,
            allow_missing_images,
            net,
        } => {
            check_bundle_output(&output, &spec_path, &key, &lock, &base, &net)
                .map_err(output_error)?;
            let store_dir = match store {
                Some(dir) => dir,
                None => default_store()?,
            };
            let mtime = build::source_date_epoch()?;
            let spec_text = ferry::toml_file::read(&spec_path, "spec")?;
            let spec = Spec::parse(&spec_path, &spec_text)?;
            // The key first: a password prompt must not wait behind a long pull.
            let key = keys::load_secret(&key)?;
            let report = net.report();
            for stale in outputs::remove_stale_temps(&output)? {
                report.info(&format!(
                    "removed {}, left by a build that was stopped",
                    stale.display()
                ));
            }
            // After the password prompt, which Ctrl-C ends as usual: from here
            // it stops the pull or the pack, which clean up after themselves.
            let _catch = ferry_cli::interrupt::Catch::new().context("catching Ctrl-C")?;

            let (lock, store) = pull_into(&spec, lock.as_deref(), &store_dir, &net, &report)?;
            build::build(build::BuildOptions {
                spec_text,
                spec: &spec,
                lock: &lock,
                store: &store,
                key: &key,
                out: &output,
                base: base.as_deref(),
                split,
                level,
                mtime,
                allow_missing_images,
                report: &report,
            })?;
        }
        Command::Inspect(args) => ferry_cli::inspect::run(&args)?,
    }
    Ok(())
}

/// Checks, before any work, that the bundle `output` (its `.minisig`, its parts
/// and theirs: written, or removed as the other form) can be written and
/// destroys no input.
fn check_bundle_output(
    output: &Path,
    spec: &Path,
    key: &Path,
    lock: &Option<PathBuf>,
    base: &Option<PathBuf>,
    net: &NetArgs,
) -> Result<(), OutputError> {
    use ferry::archive::parts::{part_path, signature_path};
    let mut inputs = net.inputs();
    inputs.push(Input {
        named: "the spec",
        path: spec,
    });
    inputs.push(Input {
        named: "--key",
        path: key,
    });
    inputs.extend(lock.iter().map(|p| Input {
        named: "--lock",
        path: p,
    }));
    inputs.extend(base.iter().map(|p| Input {
        named: "--base",
        path: p,
    }));
    let mut also = vec![signature_path(output)];
    // The parts a build writes, and those of an earlier build it removes (every
    // part, when this build is not split).
    let mut i = 1;
    loop {
        let part = part_path(output, i);
        let exists = part.exists();
        also.push(signature_path(&part));
        also.push(part);
        if !exists {
            break;
        }
        i += 1;
    }
    outputs::check("-o", output, &also, &inputs)
}

/// An output that is one of the inputs is a bad command line (exit 2); one that
/// cannot be written is a failure (exit 1).
fn output_error(e: OutputError) -> anyhow::Error {
    if e.is_usage() {
        ferry_cli::exit::usage(e.to_string())
    } else {
        e.into()
    }
}

fn main() -> ExitCode {
    ferry_cli::main(run)
}
