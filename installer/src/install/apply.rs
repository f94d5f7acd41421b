//! Applying a written plan to the nodes: each node's files are compared by
//! sha256 and mode with what the node holds and only the differing ones are sent
//! (to a temporary name, then renamed); the store goes to the registry node blob
//! by blob; then the steps run phase by phase across the cluster (see
//! [`super::steps::Phase`]). A node whose files and plan are unchanged since its
//! last complete install runs nothing. Every command and its output is logged
//! per node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use ferry::Digest;

use super::inventory::{Inventory, Node, RegistryPlace, Role};
use super::steps::{Phase, Steps};
use super::transport::{quote, Input, SshOptions, Transport};

/// Where a node records the plan it last completed.
const MARKER: &str = "/var/lib/ferry/installed";
/// Where a node records that an install began there (its services may run).
const BEGUN: &str = "/var/lib/ferry/begun";
/// Where the registry node keeps the store.
const REMOTE_STORE: &str = "/var/lib/ferry/store";

/// What a node is doing now: `(node, what)`.
pub type OnStep = Box<dyn Fn(&str, &str) + Send + Sync>;

/// How to apply.
pub struct Options {
    pub dry_run: bool,
    /// Nodes worked on at once.
    pub jobs: usize,
    pub ssh: SshOptions,
    /// Told each step as it starts (progress).
    pub on_step: OnStep,
}

/// One file of a node's plan.
struct Planned {
    /// Absolute path on the node.
    path: String,
    mode: u32,
    digest: Digest,
    local: PathBuf,
}

/// A node being installed.
struct Target<'a> {
    node: &'a Node,
    transport: Transport,
    files: Vec<Planned>,
    steps: Steps,
    /// The sha256 of its whole plan (files and steps).
    plan: Digest,
    log: Mutex<std::fs::File>,
    /// Whether it has anything to do this run.
    changed: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub changed_nodes: Vec<String>,
    pub unchanged_nodes: Vec<String>,
    pub files_sent: usize,
    pub blobs_sent: usize,
    pub steps_run: usize,
}

/// Every file of a node's plan, hashed (hard links once).
fn planned_files(
    root: &Path,
    hashes: &mut HashMap<(u64, u64), Digest>,
) -> anyhow::Result<Vec<Planned>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    for (path, local) in super::plan::written_files(root)? {
        let meta = std::fs::metadata(&local)?;
        let digest = match hashes.get(&(meta.dev(), meta.ino())) {
            Some(d) => d.clone(),
            None => {
                let mut h = ferry::digest::Hasher::new();
                std::io::copy(&mut std::fs::File::open(&local)?, &mut h)?;
                let d = h.finish();
                hashes.insert((meta.dev(), meta.ino()), d.clone());
                d
            }
        };
        out.push(Planned {
            path,
            mode: meta.mode() & 0o7777,
            digest,
            local,
        });
    }
    Ok(out)
}

/// The digest of a node's whole plan.
fn plan_digest(files: &[Planned], steps: &Steps) -> Digest {
    let mut text = String::new();
    for f in files {
        text.push_str(&format!("{} {:o} {}\n", f.digest, f.mode, f.path));
    }
    text.push_str(&steps.render());
    Digest::of(text.as_bytes())
}

impl Target<'_> {
    fn log(&self, text: &str) {
        let mut f = self.log.lock().expect("the log lock");
        let _ = f.write_all(text.as_bytes());
    }

    /// Runs `script` on the node, logged; fails with the node, what, the command,
    /// its exit code and the last lines of its output.
    fn run(&self, what: &str, script: &str, input: Input<'_>) -> anyhow::Result<String> {
        self.log(&format!("$ {script}\n"));
        let out = self.transport.run(script, input).with_context(|| {
            format!(
                "node {} ({}): {what}",
                self.node.name,
                self.transport.describe()
            )
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.log(&format!(
            "{stdout}{stderr}[exit {}]\n",
            out.status.code().unwrap_or(-1)
        ));
        // ssh's own failures (no connection, a lost one, a refused key) exit 255:
        // the step may not have run at all, so its script is no help.
        if out.status.code() == Some(255) && matches!(self.transport, Transport::Ssh { .. }) {
            let said: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("mux_client"))
                .collect();
            bail!(
                "node {} ({}): {what}: the SSH connection failed: {}",
                self.node.name,
                self.transport.describe(),
                said.last().map_or("ssh exited with 255", |l| l.trim())
            );
        }
        if !out.status.success() {
            let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
            let tail = tail[tail.len().saturating_sub(8)..].join(" | ");
            let shown = if script.len() > 200 {
                &script[..200]
            } else {
                script
            };
            bail!(
                "node {}: {what}: `{shown}` exited with {}: {tail}",
                self.node.name,
                out.status
                    .code()
                    .map_or("a signal".to_string(), |c| c.to_string()),
            );
        }
        Ok(stdout)
    }

    /// The files (indices into `files`) whose digest or mode differs on the node,
    /// the plan it last completed (empty: none), whether an install ever began
    /// there, and its clock.
    fn compare(&self) -> anyhow::Result<(Vec<usize>, String, bool, i64)> {
        let list: String = self.files.iter().map(|f| format!("{}\n", f.path)).collect();
        let script = format!(
            "while IFS= read -r f; do if [ -f \"$f\" ]; then printf '%s %s %s\\n' \"$(sha256sum < \"$f\" | cut -c1-64)\" \"$(stat -c %a \"$f\")\" \"$f\"; fi; done; printf 'installed %s\\n' \"$(cat {MARKER} 2>/dev/null)\"; [ ! -e {BEGUN} ] || echo begun; echo \"clock $(date +%s)\""
        );
        let out = self.run(
            "reading what it holds",
            &script,
            Input::Bytes(list.as_bytes()),
        )?;
        let mut have: HashMap<&str, (&str, u32)> = HashMap::new();
        let mut marker = String::new();
        let mut begun = false;
        let mut clock = 0;
        for line in out.lines() {
            if let Some(t) = line.strip_prefix("clock ") {
                clock = t.trim().parse().unwrap_or(0);
                continue;
            }
            if line == "begun" {
                begun = true;
                continue;
            }
            if let Some(m) = line.strip_prefix("installed ") {
                marker = m.trim().to_string();
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            if let (Some(hex), Some(mode), Some(path)) = (parts.next(), parts.next(), parts.next())
            {
                have.insert(path, (hex, u32::from_str_radix(mode, 8).unwrap_or(0)));
            }
        }
        let differ = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| have.get(f.path.as_str()) != Some(&(f.digest.hex(), f.mode)))
            .map(|(i, _)| i)
            .collect();
        Ok((differ, marker, begun, clock))
    }

    /// Sends one file: to a temporary name, then renamed into place.
    fn send(&self, f: &Planned) -> anyhow::Result<()> {
        let p = quote(&f.path);
        let tmp = quote(&format!("{}.ferry-new", f.path));
        let script = format!(
            "set -e; mkdir -p \"$(dirname {p})\"; cat > {tmp}; chmod {:o} {tmp}; mv -f {tmp} {p}",
            f.mode
        );
        self.run(
            &format!("writing {}", f.path),
            &script,
            Input::File(&f.local),
        )?;
        Ok(())
    }
}

/// Sends the store's blobs the registry node lacks, then its index.
fn sync_store(t: &Target<'_>, store: &Path) -> anyhow::Result<usize> {
    let blobs = store.join("blobs/sha256");
    let have = t.run(
        "listing the store",
        &format!("ls {REMOTE_STORE}/blobs/sha256 2>/dev/null || true"),
        Input::None,
    )?;
    let have: BTreeSet<&str> = have.lines().collect();
    let mut sent = 0;
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .with_context(|| format!("reading {}", blobs.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    names.sort();
    for hex in names.iter().filter(|n| !have.contains(n.as_str())) {
        let dir = format!("{REMOTE_STORE}/blobs/sha256");
        let script = format!(
            "set -e; mkdir -p {dir}; cat > {dir}/{hex}.part; echo '{hex}  {dir}/{hex}.part' | sha256sum -c --quiet; mv -f {dir}/{hex}.part {dir}/{hex}"
        );
        t.run(
            &format!("sending blob {hex}"),
            &script,
            Input::File(&blobs.join(hex)),
        )?;
        sent += 1;
    }
    for f in ["oci-layout", "index.json"] {
        let script = format!(
            "set -e; cat > {REMOTE_STORE}/{f}.ferry-new; mv -f {REMOTE_STORE}/{f}.ferry-new {REMOTE_STORE}/{f}"
        );
        t.run(
            &format!("sending the store's {f}"),
            &script,
            Input::File(&store.join(f)),
        )?;
    }
    Ok(sent)
}

fn fail(errors: Vec<anyhow::Error>, rerun: &str) -> anyhow::Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(anyhow!(
            "{:#}; {rerun}",
            errors.into_iter().next().expect("one")
        )),
        n => {
            let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
            Err(anyhow!("{n} nodes failed: {}; {rerun}", all.join("; ")))
        }
    }
}

/// Applies the plan in `plan_dir` to every node of `inventory`; `store` is sent to
/// the registry node when the site registry runs on one. Logs go to
/// `state/logs/<node>.log`.
pub fn apply(
    inventory: &Inventory,
    plan_dir: &Path,
    state: &Path,
    store: &Path,
    opts: &Options,
) -> anyhow::Result<Summary> {
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    std::fs::create_dir_all(&opts.ssh.control_dir)
        .with_context(|| format!("creating {}", opts.ssh.control_dir.display()))?;
    let mut hashes = HashMap::new();
    let mut targets = Vec::new();
    for node in &inventory.nodes {
        let root = plan_dir.join(&node.name);
        let steps_text = std::fs::read_to_string(root.join("steps"))
            .with_context(|| format!("node {}: no plan in {}", node.name, root.display()))?;
        let steps = Steps::parse(&steps_text)
            .map_err(|e| anyhow!("{}: {e}", root.join("steps").display()))?;
        let files = planned_files(&root, &mut hashes)?;
        let plan = plan_digest(&files, &steps);
        let log_path = logs.join(format!("{}.log", node.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        targets.push(Target {
            node,
            transport: Transport::for_node(node, &opts.ssh),
            files,
            steps,
            plan,
            log: Mutex::new(log),
            changed: true,
        });
    }
    let rerun = format!(
        "the logs are in {}; rerun the same command to continue",
        logs.display()
    );
    let registry_node = match &inventory.registry {
        RegistryPlace::Node { node, .. } => Some(node.as_str()),
        RegistryPlace::External { .. } => None,
    };

    // First look at every node, changing nothing anywhere: what differs, and
    // whether a node not installed yet offers what the plan needs.
    let inspected = Mutex::new(BTreeMap::new());
    let problems = Mutex::new(Vec::new());
    let clocks = Mutex::new(Vec::new());
    let errors = super::parallel(&targets, opts.jobs, |t| {
        let (differ, marker, begun, clock) = t.compare()?;
        clocks
            .lock()
            .expect("lock")
            .push((t.node.name.clone(), clock));
        // A node where an install began runs our services: its ports are ours.
        if !begun {
            let out = t.run(
                "preflight",
                &super::preflight::script(inventory, t.node),
                Input::None,
            )?;
            let mut all = problems.lock().expect("lock");
            for line in out.lines() {
                if let Some(p) = line.strip_prefix("problem: ") {
                    all.push(format!("{}: {p}", t.node.name));
                }
            }
        }
        let done = marker == t.plan.to_string();
        inspected
            .lock()
            .expect("lock")
            .insert(t.node.name.clone(), (differ, done));
        Ok(())
    });
    fail(errors, "nothing was changed on any node")?;
    let mut problems = problems.into_inner().expect("lock");
    problems.extend(super::preflight::skew(&clocks.into_inner().expect("lock")));
    if !problems.is_empty() {
        problems.sort();
        bail!(
            "preflight: {}; nothing was changed on any node",
            problems.join("; ")
        );
    }
    let inspected = inspected.into_inner().expect("lock");
    for t in &mut targets {
        let (differ, done) = &inspected[&t.node.name];
        t.changed = !(differ.is_empty() && *done);
    }
    // The first control plane's join steps renew the bootstrap token, which lives
    // 24 hours: they run whenever any other node joins, even when the first
    // control plane's own plan is unchanged (a node reset and joined again a day
    // later would otherwise find the token gone).
    let inits = |t: &Target<'_>| !t.steps.of(Phase::Init).is_empty();
    let joining = targets
        .iter()
        .any(|t| t.changed && !inits(t) && !t.steps.of(Phase::Join).is_empty());

    // Then the files, and the store to the registry node.
    let summary = Mutex::new(Summary::default());
    let errors = super::parallel(&targets, opts.jobs, |t| {
        let (differ, _) = &inspected[&t.node.name];
        let differ: Vec<&Planned> = differ.iter().map(|i| &t.files[*i]).collect();
        if !opts.dry_run {
            (opts.on_step)(&t.node.name, &format!("writing {} file(s)", differ.len()));
        }
        if opts.dry_run {
            let mut out = format!("{}: {} file(s) would change", t.node.name, differ.len());
            for f in &differ {
                out.push_str(&format!("\n  {}", f.path));
            }
            if !t.changed && joining && inits(t) {
                out.push_str(", but a node joins, so the bootstrap token is renewed:");
                for s in t.steps.of(Phase::Join) {
                    out.push_str(&format!("\n  [{}] {s}", Phase::Join));
                }
            } else if !t.changed {
                out.push_str(", nothing would run");
            } else {
                for phase in Phase::ALL {
                    for s in t.steps.of(phase) {
                        out.push_str(&format!("\n  [{phase}] {s}"));
                    }
                }
            }
            ferry_cli::out!("{out}");
            return Ok(());
        }
        t.run(
            "recording that the install began",
            &format!("mkdir -p \"$(dirname {BEGUN})\" && touch {BEGUN}"),
            Input::None,
        )?;
        if registry_node == Some(t.node.name.as_str()) {
            let sent = sync_store(t, store)?;
            summary.lock().expect("lock").blobs_sent += sent;
        }
        for f in &differ {
            t.send(f)?;
        }
        (opts.on_step)(&t.node.name, &format!("{} file(s) written", differ.len()));
        summary.lock().expect("lock").files_sent += differ.len();
        Ok(())
    });
    fail(errors, &rerun)?;
    if opts.dry_run {
        return Ok(summary.into_inner().expect("lock"));
    }

    let run_steps = |t: &Target<'_>, phase: Phase| -> anyhow::Result<()> {
        for step in t.steps.of(phase) {
            (opts.on_step)(&t.node.name, &format!("[{phase}] {step}"));
            t.run(&format!("[{phase}]"), step, Input::None)?;
            summary.lock().expect("lock").steps_run += 1;
        }
        Ok(())
    };
    let run_phase = |t: &Target<'_>, phase: Phase| -> anyhow::Result<()> {
        if t.changed {
            run_steps(t, phase)
        } else {
            Ok(())
        }
    };
    let with = |phase: Phase| -> Vec<&Target<'_>> {
        targets
            .iter()
            .filter(|t| !t.steps.of(phase).is_empty())
            .collect()
    };
    // A node is recorded as installed once its last phase is through: a rerun
    // after a later failure leaves it alone (its services are not restarted).
    let record = |ts: &[&Target<'_>]| -> anyhow::Result<()> {
        let errors = super::parallel(ts, opts.jobs, |t| {
            if t.changed {
                t.run(
                    "recording the install",
                    &format!(
                        "mkdir -p \"$(dirname {MARKER})\" && printf %s {} > {MARKER}",
                        t.plan
                    ),
                    Input::None,
                )?;
            }
            Ok(())
        });
        fail(errors, &rerun)
    };
    // Workers at once; control planes one at a time, so a restart of haproxy and
    // keepalived on a live cluster never takes every holder of the VIP at once.
    // Then etcd members together (a member waits for its peers).
    let (cps, others): (Vec<&Target<'_>>, Vec<&Target<'_>>) = with(Phase::Prepare)
        .into_iter()
        .partition(|t| t.node.has(Role::ControlPlane));
    fail(
        super::parallel(&others, opts.jobs, |t| run_phase(t, Phase::Prepare)),
        &rerun,
    )?;
    for t in cps {
        run_phase(t, Phase::Prepare).map_err(|e| anyhow!("{e:#}; {rerun}"))?;
    }
    let etcd = with(Phase::Etcd);
    fail(
        super::parallel(&etcd, etcd.len(), |t| run_phase(t, Phase::Etcd)),
        &rerun,
    )?;
    for t in with(Phase::Init) {
        run_phase(t, Phase::Init).map_err(|e| anyhow!("{e:#}; {rerun}"))?;
    }
    // Control planes join one at a time, then the workers together.
    let (mut cps, workers): (Vec<&Target<'_>>, Vec<&Target<'_>>) = with(Phase::Join)
        .into_iter()
        .partition(|t| t.node.has(Role::ControlPlane));
    // The first control plane's (the token's renewal, see `joining`) go first.
    cps.sort_by_key(|t| !inits(t));
    for t in cps {
        let ran = if joining && inits(t) {
            run_steps(t, Phase::Join)
        } else {
            run_phase(t, Phase::Join)
        };
        ran.map_err(|e| anyhow!("{e:#}; {rerun}"))?;
    }
    fail(
        super::parallel(&workers, opts.jobs, |t| run_phase(t, Phase::Join)),
        &rerun,
    )?;
    let (addons, done): (Vec<&Target<'_>>, Vec<&Target<'_>>) = targets
        .iter()
        .partition(|t| !t.steps.of(Phase::Addons).is_empty());
    record(&done)?;
    for t in &addons {
        run_phase(t, Phase::Addons).map_err(|e| anyhow!("{e:#}; {rerun}"))?;
    }
    record(&addons)?;
    for t in &targets {
        super::state::installed(state, &t.node.name, t.node.address);
        (opts.on_step)(&t.node.name, if t.changed { "done" } else { "unchanged" });
        t.transport.close();
        let mut s = summary.lock().expect("lock");
        if t.changed {
            s.changed_nodes.push(t.node.name.clone());
        } else {
            s.unchanged_nodes.push(t.node.name.clone());
        }
    }
    Ok(summary.into_inner().expect("lock"))
}
