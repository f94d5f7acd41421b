//! `ferry-installer`: runs on the isolated site. It verifies and unpacks bundles,
//! serves their images from an embedded registry and (later) installs Kubernetes
//! from them. It never needs the internet. A thin command line over the
//! `ferry_installer` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use ferry_installer::{bundle, registry};

const AFTER_HELP: &str = "\
Examples:
  ferry-installer inspect k8s.tar.zst
  ferry-installer verify k8s.tar.zst --key release.pub
  ferry-installer unpack k8s.tar.zst --key release.pub --store /var/lib/ferry/store
  ferry-installer serve --store /var/lib/ferry/store
  ferry-installer init-cluster --nodes 4        # writes a commented cluster.toml
  ferry-installer plan cluster.toml --store /var/lib/ferry/store --out plan/
  ferry-installer completions bash > /etc/bash_completion.d/ferry-installer
  ferry-installer man --out /usr/local/share/man/man1

Exit codes:
  0  success
  1  failure (the message says which file, image or address)
  2  bad command line
  3  bundle refused: unsigned, wrongly signed, truncated, altered or unsafe";

/// Verify, unpack and serve Ferry bundles on an isolated site.
#[derive(Parser)]
#[command(name = "ferry-installer", version = ferry_cli::VERSION, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a bundle's signature and every byte, writing nothing.
    #[command(after_help = "\
Examples:
  ferry-installer verify k8s.tar.zst --key release.pub
  ferry-installer verify k8s.tar.zst.001 --key release.pub   # a split bundle: give the first part

Exit code 3 when the bundle is refused.")]
    Verify {
        /// The bundle (or its first part).
        bundle: PathBuf,
        /// The public key it must be signed with.
        #[arg(long)]
        key: PathBuf,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Verify a bundle and add it to a store (an OCI image layout), in one pass.
    #[command(after_help = "\
Examples:
  ferry-installer unpack k8s.tar.zst --key release.pub --store /var/lib/ferry/store
  ferry-installer unpack k8s-patch.tar.zst --key release.pub --store /var/lib/ferry/store  # a delta

Blobs the store already holds are checked but not written again. Nothing of a
refused bundle becomes visible in the store. Exit code 3 when the bundle is refused.")]
    Unpack {
        /// The bundle (or its first part).
        bundle: PathBuf,
        /// The public key it must be signed with.
        #[arg(long)]
        key: PathBuf,
        /// The store to unpack into (created if missing).
        #[arg(long)]
        store: PathBuf,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show what a bundle holds (reads only its head).
    #[command(after_help = "\
Examples:
  ferry-installer inspect k8s.tar.zst
  ferry-installer inspect k8s.tar.zst --key release.pub --json")]
    Inspect(ferry_cli::inspect::InspectArgs),
    /// Serve the store as a registry that docker, containerd, podman, skopeo and helm pull from.
    Serve(registry::ServeArgs),
    /// Render every node's files from the inventory and the store, into a tree per node.
    #[command(after_help = "\
Examples:
  ferry-installer plan cluster.toml --store /var/lib/ferry/store --out plan/
  diff -r plan.old/ plan/                       # what a change of inventory or bundle does

Writes OUT/<node>/ as the node's filesystem will hold it (etc/containerd/...,
etc/sysctl.d/...) and OUT/<node>/steps, the commands install runs there, in order.
Nothing touches a host. The same inventory, store and site PKI give the same bytes;
the site CA is made in --pki the first time and kept.

The bundle must carry, as files for every node's arch: kubelet, kubeadm, kubectl,
runc, containerd, crictl, cni-plugins, etcd and helm (upstream's binaries and
archives; each program is unpacked once, checked, and hard-linked into every node
that runs it); the addon manifests calico.yaml, nodelocaldns.yaml and
metrics-server-components.yaml; the chart kubelet-csr-approver; and every image
they run. What it lacks is named, and nothing is written.")]
    Plan {
        /// The cluster inventory (see init-cluster).
        inventory: PathBuf,
        /// The site store holding the unpacked bundle.
        #[arg(long)]
        store: PathBuf,
        /// Where to write the plan (replaced once the new one is complete).
        #[arg(long)]
        out: PathBuf,
        /// The site PKI directory (the registry's CA).
        #[arg(long, default_value = ferry_installer::pki::DEFAULT_DIR, value_name = "DIR")]
        pki: PathBuf,
        /// The cluster's state (its CAs and keys, made once, 0600) [default: NAME.state
        /// beside the inventory].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// Write a commented example cluster inventory (cluster.toml) to edit.
    #[command(after_help = "\
Examples:
  ferry-installer init-cluster                  # one node with every role
  ferry-installer init-cluster --nodes 5        # 3 control planes behind a VIP, 2 workers
  ferry-installer init-cluster --nodes 3 -o site-a.toml

Every field is explained in the file. It is checked (names, addresses, roles,
networks, VIP) whenever it is read.")]
    InitCluster {
        /// How many nodes the example has.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10000))]
        nodes: u16,
        /// Where to write it.
        #[arg(short, long, default_value = "cluster.toml")]
        output: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  ferry-installer completions bash > /etc/bash_completion.d/ferry-installer
  ferry-installer completions zsh > \"${fpath[1]}/_ferry-installer\"
  ferry-installer completions fish > ~/.config/fish/completions/ferry-installer.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: ferry_cli::generate::Shell,
    },
    /// Print the man page (roff), or write one page per subcommand into a directory.
    #[command(after_help = "\
Examples:
  ferry-installer man | man -l -
  ferry-installer man --out /usr/local/share/man/man1   # ferry-installer.1, ferry-installer-serve.1, ...")]
    Man {
        /// Write ferry-installer.1 and ferry-installer-SUBCOMMAND.1 into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Verify { bundle, key, quiet } => bundle::verify(&bundle, &key, quiet),
        Command::Unpack {
            bundle,
            key,
            store,
            quiet,
        } => bundle::unpack(&bundle, &key, &store, quiet),
        Command::Inspect(args) => ferry_cli::inspect::run(&args),
        Command::Serve(args) => registry::serve(args),
        Command::Plan {
            inventory,
            store,
            out,
            pki,
            state,
        } => plan(&inventory, &store, &out, &pki, state),
        Command::InitCluster {
            nodes,
            output,
            force,
        } => init_cluster(nodes.into(), &output, force),
        Command::Completions { shell } => ferry_cli::generate::completions(Cli::command(), shell),
        Command::Man { out } => ferry_cli::generate::man(Cli::command(), out.as_deref()),
    }
}

/// `plan`: every node's tree, from the inventory, the store and the site PKI.
fn plan(
    inventory: &std::path::Path,
    store: &std::path::Path,
    out: &std::path::Path,
    pki: &std::path::Path,
    state: Option<PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use ferry_installer::install::{inventory::Inventory, inventory::RegistryPlace, plan};
    let inv = Inventory::load(inventory)?;
    let store = ferry::store::Store::open(store)?;
    let state = state.unwrap_or_else(|| {
        inventory
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{}.state", inv.name))
    });
    let mut registry_tls = None;
    let ca_pem = match &inv.registry {
        RegistryPlace::Node { node, .. } => {
            let site = ferry_installer::pki::Pki::new(pki);
            let ca = site.ensure_ca().context("making the site CA")?;
            let n = inv
                .nodes
                .iter()
                .find(|n| &n.name == node)
                .expect("checked when the inventory was read");
            // The registry node gets a certificate, never the CA key.
            let dir = state.join("registry");
            site.ensure_server_cert(&dir, &[n.name.clone(), n.address.to_string()])
                .context("making the site registry's certificate")?;
            let read = |f: &str| {
                std::fs::read(dir.join(f))
                    .with_context(|| format!("reading {}", dir.join(f).display()))
            };
            registry_tls = Some(plan::RegistryTls {
                cert: read("registry.pem")?,
                key: read("registry.key")?,
            });
            ca
        }
        RegistryPlace::External { ca: Some(ca), .. } => std::fs::read_to_string(ca)
            .with_context(|| format!("registry: cannot read ca {}", ca.display()))?,
        RegistryPlace::External { ca: None, url } => {
            anyhow::bail!("registry: url {url} needs ca, the CA file its certificate chains to")
        }
    };
    let contents = ferry_installer::install::contents::Contents::read(&store)?;
    let plans = plan::plan(&inv, &contents, &ca_pem, registry_tls.as_ref(), &state)?;
    plan::write(out, &contents, &plans)?;
    println!(
        "planned {} node(s) into {}: review, then install",
        plans.len(),
        out.display()
    );
    Ok(())
}

/// `init-cluster`: the example inventory, checked by the same parser `plan` uses.
fn init_cluster(nodes: usize, output: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if output.exists() && !force {
        anyhow::bail!(
            "{} exists: edit it, or pass --force to replace it",
            output.display()
        );
    }
    let text = ferry_installer::install::example::example(nodes);
    ferry_installer::install::inventory::Inventory::parse(output, &text)
        .context("the example inventory does not check out (a bug)")?;
    let tmp = output.with_extension("toml.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {} ({nodes} node(s)): edit the names, addresses and SSH access",
        output.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    ferry_cli::main(run)
}
