//! `ferry-installer`: runs on the isolated site. It verifies and unpacks bundles,
//! serves their images from an embedded registry or pushes them into the site's
//! own, and plans and installs Kubernetes from them on every node. It never needs
//! the internet. A thin command line over the `ferry_installer` library.

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
  ferry-installer push --store /var/lib/ferry/store --to https://harbor.site/k8s --cred admin:PASSWORD
  ferry-installer init-cluster --nodes 4        # writes a commented cluster.toml
  ferry-installer plan cluster.toml --store /var/lib/ferry/store --out plan/
  ferry-installer install cluster.toml --bundle k8s.tar.zst --key release.pub --dry-run
  ferry-installer install cluster.toml --bundle k8s.tar.zst --key release.pub
  ferry-installer reset cluster.toml worker3 --yes
  ferry-installer completions bash > /etc/bash_completion.d/ferry-installer
  ferry-installer man --out /usr/local/share/man/man1

Exit codes:
  0  success
  1  failure (the message says which file, image or address)
  2  bad command line
  3  bundle refused: unsigned, wrongly signed, truncated, altered or unsafe";

/// Verify, unpack, serve and push Ferry bundles, and install Kubernetes from them, on an isolated site.
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

The signature checked is the one inside the bundle, over its manifest, which
names every entry's sha256. The detached .minisig beside it is for the stock
minisign CLI at the door (minisign -Vm k8s.tar.zst -p release.pub); verify
does not need it.

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
    /// Push the store into a site's registry (Harbor, registry:2), digests unchanged.
    Push(ferry_installer::push::PushArgs),
    /// Remove the blobs no image of the store reaches (after deletes, or old releases).
    #[command(after_help = "\
Examples:
  ferry-installer gc --store /var/lib/ferry/store --dry-run    # what would go
  ferry-installer gc --store /var/lib/ferry/store
  ferry-installer gc --store /var/lib/ferry/store --retire kubernetes:1.31.13 --dry-run

Images are removed with DELETE through `serve` (push credentials), or leave with
the release that named them (--retire NAME:VERSION, as `inspect` names it: the
names only it gives go, those another release shares stay); gc then removes what
nothing reaches. It may run
while serve does: blobs younger than --grace are kept, and so are those a push
found already there (HEAD or mount makes them young), so a push under way (blobs
sent, manifest not yet) loses nothing. It refuses to run while an unpack into the
store does.")]
    Gc {
        /// The store.
        #[arg(long)]
        store: PathBuf,
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreached blobs younger than this.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// First retire this release (NAME:VERSION): its images, files and charts
        /// go, but those another release names too.
        #[arg(long, value_name = "NAME:VERSION", value_parser = release_arg)]
        retire: Option<String>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Render every node's files from the inventory and the store, into a tree per node.
    #[command(after_help = "\
Examples:
  ferry-installer plan cluster.toml --store /var/lib/ferry/store --out plan/
  ferry-installer install cluster.toml --bundle k8s.tar.zst --key release.pub --dry-run
  ferry-installer install cluster.toml --bundle k8s.tar.zst --key release.pub
  ferry-installer reset cluster.toml worker3 --yes
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
        /// The release to plan (NAME:VERSION, as inspect shows it) when the store holds several.
        #[arg(long, value_name = "NAME:VERSION", value_parser = release_arg)]
        release: Option<String>,
    },
    /// Install the cluster: verify and unpack the bundle, plan, apply to every node.
    #[command(after_help = "\
Examples:
  ferry-installer install cluster.toml --bundle k8s-1.31.tar.zst --key release.pub
  ferry-installer install cluster.toml --dry-run     # what would change, per node
  ferry-installer install cluster.toml               # again: continues, or changes nothing

Nodes whose address is this host's are installed here; the others over the system
OpenSSH client (your ~/.ssh/config, agent and known_hosts apply; --ssh-config FILE
for another config). Files are sent only where their sha256 or mode differs; steps
run in phases across the cluster (prepare, etcd, init, join, addons; see each
node's PLAN/<node>/steps). The plan is written to STATE/plan, the logs to
STATE/logs/<node>.log.")]
    Install {
        /// The cluster inventory (see init-cluster).
        inventory: PathBuf,
        /// The bundle to verify and unpack into --store first: the release installed.
        #[arg(long, requires = "key", value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Without --bundle: the release to install (NAME:VERSION) when the store holds several.
        #[arg(long, value_name = "NAME:VERSION", conflicts_with = "bundle", value_parser = release_arg)]
        release: Option<String>,
        /// The release's public key (minisign format), for --bundle.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The site store (the registry node gets a copy).
        #[arg(long, default_value = "/var/lib/ferry/store", value_name = "DIR")]
        store: PathBuf,
        /// The site PKI directory (the registry's CA).
        #[arg(long, default_value = ferry_installer::pki::DEFAULT_DIR, value_name = "DIR")]
        pki: PathBuf,
        /// The cluster's state [default: NAME.state beside the inventory].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// An OpenSSH client configuration to use (ssh -F).
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
        /// Trust and record a node's host key on first contact (else an unknown key is refused).
        #[arg(long)]
        accept_new_host_keys: bool,
        /// Print, per node, the files that would change and the steps that would run.
        #[arg(long)]
        dry_run: bool,
        /// Nodes worked on at once.
        #[arg(long, default_value_t = 10)]
        jobs: usize,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Undo an install on some nodes: kubeadm reset, stop the services, remove what the plan put there.
    #[command(after_help = "\
Examples:
  ferry-installer reset cluster.toml worker3            # asks first
  ferry-installer reset cluster.toml worker3 worker4 --yes

Removes every file the last install's plan (STATE/plan/<node>) put on the node,
and /etc/kubernetes, /var/lib/etcd, /var/lib/kubelet, /var/lib/containerd and
/var/lib/ferry; nothing else. Remove the node from the inventory afterwards, or
run install again to put it back.")]
    Reset {
        /// The cluster inventory.
        inventory: PathBuf,
        /// The nodes to reset.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// The cluster's state [default: NAME.state beside the inventory].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// An OpenSSH client configuration to use (ssh -F).
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
    },
    /// Write a commented example cluster inventory (cluster.toml) to edit.
    #[command(after_help = "\
Examples:
  ferry-installer init-cluster                  # one node with every role
  ferry-installer init-cluster --nodes 5        # 3 control planes behind a VIP, 2 workers
  ferry-installer init-cluster --nodes 3 -o site-a.toml # the cluster \"site-a\"
  ferry-installer init-cluster --name prod      # cluster.toml, of the cluster \"prod\"

Every field is explained in the file. It is checked (names, addresses, roles,
networks, VIP) whenever it is read.

The cluster is named after the file: -o lab.toml writes name = \"lab\", so two
inventories in one directory keep their CAs, keys and token apart (plan and install
keep them in NAME.state beside the inventory). cluster.toml, or a name that is not
a cluster name, gives \"ferry\"; --name says it outright.")]
    InitCluster {
        /// How many nodes the example has.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10000))]
        nodes: u16,
        /// Where to write it.
        #[arg(short, long, default_value = "cluster.toml")]
        output: PathBuf,
        /// The cluster's name (lowercase letters, digits and '-') [default: the
        /// file's name without .toml, else "ferry"].
        #[arg(long, value_parser = cluster_name)]
        name: Option<String>,
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
        Command::Push(args) => ferry_installer::push::run(args),
        Command::Gc {
            store,
            dry_run,
            grace,
            retire,
            quiet,
        } => ferry_installer::gc::run(&store, grace, dry_run, retire.as_deref(), quiet),
        Command::Plan {
            inventory,
            store,
            out,
            pki,
            state,
            release,
        } => plan(&inventory, &store, &out, &pki, state, release.as_deref()),
        Command::Install {
            inventory,
            bundle,
            release,
            key,
            store,
            pki,
            state,
            ssh_config,
            accept_new_host_keys,
            dry_run,
            jobs,
            quiet,
        } => {
            let lines = std::sync::Arc::new(ferry_cli::progress::NodeLines::new(quiet));
            let result = install(
                &inventory,
                &ferry_installer::install::commands::InstallArgs {
                    bundle: bundle.zip(key),
                    release,
                    store,
                    pki,
                    state,
                    quiet,
                    options: ferry_installer::install::apply::Options {
                        dry_run,
                        jobs,
                        on_step: {
                            let lines = std::sync::Arc::clone(&lines);
                            Box::new(move |node: &str, what: &str| lines.step(node, what))
                        },
                        ssh: ferry_installer::install::transport::SshOptions {
                            config: ssh_config,
                            accept_new_host_keys,
                            control_dir: std::env::temp_dir()
                                .join(format!("ferry-ssh-{}", std::process::id())),
                        },
                    },
                },
            );
            lines.finish();
            result
        }
        Command::Reset {
            inventory,
            nodes,
            yes,
            state,
            ssh_config,
        } => {
            use std::io::{BufRead as _, IsTerminal as _, Write as _};
            if !yes {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "reset removes the cluster from {}: pass --yes to go ahead",
                        nodes.join(", ")
                    );
                }
                eprint!(
                    "reset {}: kubeadm reset, stop the services, remove what install put there? [y/N] ",
                    nodes.join(", ")
                );
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("reset: not confirmed; nothing was changed");
                }
            }
            let control_dir =
                std::env::temp_dir().join(format!("ferry-ssh-{}", std::process::id()));
            let result = ferry_installer::install::commands::reset(
                &inventory,
                &nodes,
                state,
                &ferry_installer::install::transport::SshOptions {
                    config: ssh_config,
                    accept_new_host_keys: false,
                    control_dir: control_dir.clone(),
                },
            );
            let _ = std::fs::remove_dir_all(&control_dir);
            result
        }
        Command::InitCluster {
            nodes,
            output,
            name,
            force,
        } => init_cluster(nodes.into(), &output, name.as_deref(), force),
        Command::Completions { shell } => ferry_cli::generate::completions(Cli::command(), shell),
        Command::Man { out } => ferry_cli::generate::man(Cli::command(), out.as_deref()),
    }
}

/// A release as `--release` and `--retire` take it: `NAME:VERSION`, as `inspect`
/// shows a bundle.
fn release_arg(value: &str) -> Result<String, String> {
    match value.split_once(':') {
        Some((name, version))
            if !name.is_empty() && !version.is_empty() && !version.contains(':') =>
        {
            Ok(value.to_string())
        }
        _ => Err(format!(
            "{value:?} is not NAME:VERSION (e.g. kubernetes:1.31.14, as inspect shows a bundle)"
        )),
    }
}

/// `plan`: every node's tree, from the inventory, the store and the site PKI.
fn plan(
    inventory: &std::path::Path,
    store: &std::path::Path,
    out: &std::path::Path,
    pki: &std::path::Path,
    state: Option<PathBuf>,
    release: Option<&str>,
) -> anyhow::Result<()> {
    let planned =
        ferry_installer::install::commands::plan(inventory, store, out, pki, state, release)?;
    adopted(&planned);
    ferry_cli::out!(
        "planned {} node(s) into {}: review, then install",
        planned.nodes,
        out.display()
    );
    Ok(())
}

/// Says that a state an older ferry made is now recorded as the plan's cluster's.
fn adopted(planned: &ferry_installer::install::commands::Planned) {
    if planned.adopted {
        ferry_cli::say!(
            "note: {} had no record of its cluster (an older ferry made it); it is now {}'s: {}",
            planned.state.display(),
            planned.inventory.name,
            planned
                .state
                .join(ferry_installer::install::state::RECORD)
                .display()
        );
    }
}

/// `install`: unpack, plan, apply, then say how to reach the cluster.
fn install(
    inventory: &std::path::Path,
    args: &ferry_installer::install::commands::InstallArgs,
) -> anyhow::Result<()> {
    let (planned, summary) = ferry_installer::install::commands::install(inventory, args)?;
    adopted(&planned);
    let _ = std::fs::remove_dir_all(&args.options.ssh.control_dir);
    if args.options.dry_run {
        // Planning needs the bundle unpacked and the cluster's CAs made: those
        // are on this host, the nodes untouched.
        ferry_cli::out!(
            "dry run: no node was changed (this host holds the store {}, the plan {} and the cluster state {})",
            args.store.display(),
            planned.state.join("plan").display(),
            planned.state.display()
        );
        return Ok(());
    }
    if summary.changed_nodes.is_empty() {
        ferry_cli::out!(
            "nothing to do: all {} node(s) already hold this plan",
            summary.unchanged_nodes.len()
        );
    } else {
        ferry_cli::out!(
            "installed {} node(s) ({} unchanged): {} file(s) and {} blob(s) sent, {} step(s) run",
            summary.changed_nodes.len(),
            summary.unchanged_nodes.len(),
            summary.files_sent,
            summary.blobs_sent,
            summary.steps_run
        );
    }
    let first = planned
        .inventory
        .nodes
        .iter()
        .find(|n| n.has(ferry_installer::install::inventory::Role::ControlPlane))
        .expect("checked when the inventory was read");
    ferry_cli::out!(
        "the admin kubeconfig is /etc/kubernetes/admin.conf on {} ({}):\n  scp root@{}:/etc/kubernetes/admin.conf ~/.kube/config && kubectl get nodes",
        first.name, first.address, first.address
    );
    Ok(())
}

/// `--name` of init-cluster: a name the inventory will take.
fn cluster_name(name: &str) -> Result<String, String> {
    if ferry_installer::install::inventory::valid_cluster_name(name) {
        Ok(name.to_string())
    } else {
        Err("a cluster name is lowercase letters, digits and '-' (63 at most)".into())
    }
}

/// `init-cluster`: the example inventory, checked by the same parser `plan` uses.
fn init_cluster(
    nodes: usize,
    output: &std::path::Path,
    name: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use ferry_installer::install::example;
    if output.exists() && !force {
        anyhow::bail!(
            "{} exists: edit it, or pass --force to replace it",
            output.display()
        );
    }
    let name = name.unwrap_or_else(|| example::name_for(output));
    let text = example::named(nodes, name, output);
    ferry_installer::install::inventory::Inventory::parse(output, &text)
        .context("the example inventory does not check out (a bug)")?;
    let tmp = output.with_extension("toml.tmp");
    // Named as the user gave it: the temporary file is ours, not theirs.
    std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", output.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    ferry_cli::out!(
        "wrote {} (cluster {name}, {nodes} node(s)): edit the names, addresses and SSH access",
        output.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    ferry_cli::main(run)
}
