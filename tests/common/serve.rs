//! A running `ferry-installer serve` for the end-to-end tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Session;

/// A running `ferry-installer serve`, stopped on drop. Its stderr (start-up lines
/// and access log) goes to a file the test can read.
pub struct Serve {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Serve {
    pub fn start(s: &Session, args: &[&str]) -> Serve {
        Self::try_start(s, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `serve` inside a test node's network namespace (`ip netns exec`, which
    /// execs it: killing the child kills serve).
    pub fn start_in(s: &Session, netns: &str, args: &[&str]) -> Serve {
        Self::spawn(s, &["ip", "netns", "exec", netns], args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(s: &Session, args: &[&str]) -> Result<Serve, String> {
        Self::spawn(s, &[], args)
    }

    fn spawn(s: &Session, wrapper: &[&str], args: &[&str]) -> Result<Serve, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = s.path(&format!(
            "serve-{}.log",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        // The site PKI in the session, never the machine's /var/lib/ferry/pki.
        let mut all = vec!["serve", "--pki", "pki"];
        if !args.contains(&"--addr") {
            all.extend(["--addr", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let bin = super::bin_path("ferry-installer");
        let mut cmd = match wrapper {
            [first, rest @ ..] => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            [] => Command::new(&bin),
        };
        let mut child = cmd
            .args(&all)
            .current_dir(s.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning ferry-installer serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("listening on ")) {
                let url = line.trim_start_matches("listening on ").to_string();
                return Ok(Serve { child, url, log });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("serve exited with {status}:\n{text}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("serve did not start:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        self.url.split("://").nth(1).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
