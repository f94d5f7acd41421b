//! What a long run tells its user on stderr: one overall progress bar on a terminal
//! (bytes, rate, ETA), plain progress lines every few seconds otherwise, and nothing
//! at all with `--quiet`. Warnings go above the bar so it is never torn. The
//! library's [`ferry::progress::Progress`] is rendered through this.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

enum Mode {
    Quiet,
    Plain,
    Bar(ProgressBar),
}

/// The one report of a command run: information, warnings and a byte count.
pub struct Report {
    mode: Mode,
    total: AtomicU64,
    done: AtomicU64,
    started: Mutex<Instant>,
    last_line: Mutex<Instant>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// `1.5 MiB`: a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Report {
    pub fn new(quiet: bool) -> Report {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            // Hidden until a transfer starts: no empty bar while manifests resolve.
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            Mode::Bar(bar)
        } else {
            Mode::Plain
        };
        Report {
            mode,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Mutex::new(Instant::now()),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// A report in plain lines, never a bar: for runs that print other lines too.
    pub fn plain() -> Report {
        let mut report = Report::new(true);
        report.mode = Mode::Plain;
        report
    }

    /// A line of information (suppressed by `--quiet`).
    pub fn info(&self, message: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => crate::say!("{message}"),
            Mode::Bar(bar) if bar.is_hidden() => crate::say!("{message}"),
            Mode::Bar(bar) => bar.println(message),
        }
    }

    /// A warning: something failed but the run goes on.
    pub fn warn(&self, message: &str) {
        self.info(&format!("warning: {message}"));
    }

    /// Starts the byte count of a transfer of `total` bytes.
    pub fn start(&self, what: &str, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap() = Instant::now();
        if let (Mode::Bar(bar), true) = (&self.mode, total > 0) {
            bar.reset();
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_length(total);
            bar.set_position(0);
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// Counts `n` more bytes done.
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.mode {
            Mode::Bar(bar) => bar.set_position(done),
            Mode::Plain => self.plain_line(done, false),
            Mode::Quiet => {}
        }
    }

    /// Sets the count to `done` bytes (for work that reports totals, not increments).
    pub fn set(&self, done: u64) {
        let before = self.done.load(Ordering::Relaxed);
        if done > before {
            self.add(done - before);
        }
    }

    /// Takes back `n` bytes (a download that had to restart from zero).
    pub fn sub(&self, n: u64) {
        let done = self.done.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        if let Mode::Bar(bar) = &self.mode {
            bar.set_position(done);
        }
    }

    fn plain_line(&self, done: u64, force: bool) {
        let mut last = self.last_line.lock().unwrap();
        if !force && last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        let total = self.total.load(Ordering::Relaxed);
        let secs = self
            .started
            .lock()
            .unwrap()
            .elapsed()
            .as_secs_f64()
            .max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 && total > done {
            format!(", ETA {:.0}s", (total - done) as f64 / rate)
        } else {
            String::new()
        };
        // A count without a total (files `lock` keeps) says only what has come.
        let of = match total {
            0 => String::new(),
            _ => format!(" of {}", human_bytes(total)),
        };
        crate::say!(
            "progress: {}{of} ({}/s{eta})",
            human_bytes(done),
            human_bytes(rate as u64)
        );
    }

    /// Ends the byte count.
    pub fn finish(&self) {
        match &self.mode {
            Mode::Bar(bar) => {
                bar.finish_and_clear();
                bar.set_draw_target(ProgressDrawTarget::hidden());
            }
            Mode::Plain if self.total.load(Ordering::Relaxed) > 0 => {
                self.plain_line(self.done.load(Ordering::Relaxed), true)
            }
            _ => {}
        }
    }
}

impl ferry::progress::Progress for Report {
    fn start(&self, what: &str, total: u64) {
        Report::start(self, what, total);
    }

    fn advance(&self, n: u64) {
        self.add(n);
    }
}

/// One line per node for a run over many nodes (`ferry-installer install`): on a
/// terminal a spinner per node showing what it is doing now; otherwise one plain
/// line per event, `node: what`; nothing with `--quiet`.
pub struct NodeLines {
    bars: Option<(
        indicatif::MultiProgress,
        Mutex<std::collections::BTreeMap<String, ProgressBar>>,
    )>,
    quiet: bool,
}

impl NodeLines {
    pub fn new(quiet: bool) -> NodeLines {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            (
                indicatif::MultiProgress::new(),
                Mutex::new(std::collections::BTreeMap::new()),
            )
        });
        NodeLines { bars, quiet }
    }

    /// `node` is now doing `what`.
    pub fn step(&self, node: &str, what: &str) {
        match &self.bars {
            Some((multi, bars)) => {
                let mut bars = bars.lock().expect("the node lines");
                let bar = bars.entry(node.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:12} {wide_msg}")
                            .expect("a valid template"),
                    );
                    bar.set_prefix(node.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(what.to_string());
            }
            None if !self.quiet => crate::say!("{node}: {what}"),
            None => {}
        }
    }

    /// Every node's line stays with its last words.
    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().expect("the node lines").values() {
                bar.finish();
            }
        }
    }
}
