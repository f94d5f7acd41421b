//! The `plan` and `install` commands as the library runs them: the inventory,
//! the store and the site PKI in; a written plan out, and for `install` the plan
//! applied to every node (after the bundle is verified and unpacked).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::apply::{self, Options, Summary};
use super::contents::Contents;
use super::inventory::{Inventory, RegistryPlace};
use super::plan;
use super::state::{Found, State, StateLock};

/// What `plan` made.
pub struct Planned {
    pub inventory: Inventory,
    pub state: PathBuf,
    pub nodes: usize,
    /// The state had no record of its cluster (an older ferry made it) and now has.
    pub adopted: bool,
    /// The state, held by this command alone until it ends (through the apply).
    pub held: StateLock,
}

/// The state directory: `--state`, else `NAME.state` beside the inventory.
fn state_dir(inventory: &Path, inv: &Inventory, state: Option<PathBuf>) -> PathBuf {
    state.unwrap_or_else(|| {
        inventory
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{}.state", inv.name))
    })
}

/// The state directory, checked against the inventory's cluster before anything
/// in it is made or changed.
fn open_state(inventory: &Path, inv: &Inventory, given: Option<PathBuf>) -> anyhow::Result<State> {
    let is_given = given.is_some();
    let dir = state_dir(inventory, inv, given);
    Ok(State::open(&dir, inventory, inv, is_given)?)
}

/// Plans every node of `inventory` from `store` into `out`.
pub fn plan(
    inventory: &Path,
    store: &Path,
    out: &Path,
    pki: &Path,
    state: Option<PathBuf>,
    release: Option<&str>,
) -> anyhow::Result<Planned> {
    let inv = Inventory::load(inventory)?;
    let state = open_state(inventory, &inv, state)?;
    plan_loaded(inv, store, out, pki, state, release)
}

/// [`plan`] of an inventory already read, into `state` (checked to be its
/// cluster's).
fn plan_loaded(
    inv: Inventory,
    store: &Path,
    out: &Path,
    pki: &Path,
    state: State,
    release: Option<&str>,
) -> anyhow::Result<Planned> {
    plan::check_out(out)?;
    let store = ferry::store::Store::open(store)?;
    // What the bundle lacks is said before any key or certificate is made.
    let contents = Contents::read(&store, release)?;
    plan::check(&inv, &contents)?;
    // Held from before the state's first write to the end of the command (an
    // install's apply): a refused plan makes no state.
    let held = state.lock()?;
    // Recorded before the state's first key, so no key is ever unclaimed.
    state.claim()?;
    let adopted = state.found == Found::Unrecorded;
    let state = state.dir;
    let mut registry_tls = None;
    let ca_pem = match &inv.registry {
        RegistryPlace::Node { node, .. } => {
            let site = crate::pki::Pki::new(pki);
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
    let plans = plan::plan(&inv, &contents, &ca_pem, registry_tls.as_ref(), &state)?;
    plan::write(out, &contents, &plans)?;
    Ok(Planned {
        nodes: plans.len(),
        inventory: inv,
        state,
        adopted,
        held,
    })
}

/// What `install` is given besides the inventory.
pub struct InstallArgs {
    /// A bundle to verify and unpack into `store` first, with its public key: the
    /// release installed.
    pub bundle: Option<(PathBuf, PathBuf)>,
    /// The release to install (`NAME:VERSION`) when the store holds several.
    pub release: Option<String>,
    pub store: PathBuf,
    pub pki: PathBuf,
    pub state: Option<PathBuf>,
    pub options: Options,
    pub quiet: bool,
}

/// Verifies and unpacks the bundle (if given), plans into `STATE/plan`, applies.
pub fn install(inventory: &Path, args: &InstallArgs) -> anyhow::Result<(Planned, Summary)> {
    // A bad inventory, or a state of another cluster, is said before a long unpack.
    let inv = Inventory::load(inventory)?;
    let state = open_state(inventory, &inv, args.state.clone())?;
    let mut release = args.release.clone();
    if let Some((bundle, key)) = &args.bundle {
        crate::bundle::unpack(bundle, key, &args.store, args.quiet)?;
        // Verified just now, by unpack.
        let (head, _) = ferry::archive::read_head_of(bundle, None)
            .with_context(|| format!("reading {}", bundle.display()))?;
        release = Some(head.manifest.release_arg());
    }
    let out = state.dir.join("plan");
    dropped_nodes(inventory, &inv, &out)?;
    for (node, then) in super::state::moved_addresses(&state.dir, &inv) {
        ferry_cli::say!(
            "warning: node {node} was installed at {then}, and {} now gives it another address: a joined node keeps the address it joined with, so the new one takes effect once it is reset (ferry-installer reset {} {node} --yes) and installed again",
            inventory.display(),
            inventory.display()
        );
    }
    let planned = plan_loaded(inv, &args.store, &out, &args.pki, state, release.as_deref())?;
    let summary = apply::apply(
        &planned.inventory,
        &out,
        &planned.state,
        &args.store,
        &args.options,
    )?;
    Ok((planned, summary))
}

/// Refuses an inventory that dropped a node the last install planned: that node
/// would keep the cluster's services and credentials, and once its plan is gone
/// reset could no longer say what to remove there.
fn dropped_nodes(path: &Path, inv: &Inventory, last_plan: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(last_plan) else {
        return Ok(());
    };
    let mut dropped: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("steps").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !inv.nodes.iter().any(|m| &m.name == n))
        .collect();
    dropped.sort();
    if let Some(node) = dropped.first() {
        anyhow::bail!(
            "node {node} is in the last install's plan but not in {inv_path}: reset it first (ferry-installer reset {inv_path} {node} --yes, with it still in the inventory), then remove it; if it is gone for good, delete {plan}",
            inv_path = path.display(),
            plan = last_plan.join(node).display()
        );
    }
    Ok(())
}

/// Resets `nodes` of the inventory, from the plan the last install wrote.
pub fn reset(
    inventory: &Path,
    nodes: &[String],
    state: Option<PathBuf>,
    ssh: &super::transport::SshOptions,
) -> anyhow::Result<()> {
    let inv = Inventory::load(inventory)?;
    if let Some(n) = nodes
        .iter()
        .find(|n| !inv.nodes.iter().any(|m| &m.name == *n))
    {
        anyhow::bail!("node {n} is not in the inventory {}", inventory.display());
    }
    // Another cluster's plan would name its files, on this cluster's nodes.
    let state = open_state(inventory, &inv, state)?;
    // A state that is not there has no plan to reset from: not made for nothing.
    let _held = state.dir.is_dir().then(|| state.lock()).transpose()?;
    super::reset::reset(&inv, nodes, &state.dir, ssh)
}
