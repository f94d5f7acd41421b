//! A user's session for end-to-end tests: a temporary working directory, files in it,
//! and the Ferry binaries run in it, so each test reads like what a user would type.

#![allow(dead_code)]

pub mod cluster;
pub mod containerd;
pub mod serve;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use ferry_testkit::image::{layer, platform_image, Flavor, Image};

/// The path of a workspace binary (built on first use).
pub fn bin_path(name: &str) -> PathBuf {
    bin(name)
}

/// Builds the workspace binaries once per test run, so the tests never run a stale
/// `ferry-bundler` (a plain `cargo test` does not build other packages' bins).
///
/// nextest runs every test in a process of its own: the first process of a run
/// builds, under a lock in the target directory, and records the run's id
/// (`NEXTEST_RUN_ID`) there; every later process of that run finds it and skips
/// cargo. Outside nextest, each test binary builds once.
fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        once_in_run(
            &profile_dir.join(".ferry-e2e-build.lock"),
            &profile_dir.join(".ferry-e2e-built-for"),
            || {
                let release = profile_dir.file_name().is_some_and(|n| n == "release");
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let mut cmd = Command::new(cargo);
                cmd.args([
                    "build",
                    "-q",
                    "-p",
                    "ferry-bundler",
                    "-p",
                    "ferry-installer",
                ]);
                if release {
                    cmd.arg("--release");
                }
                let status = cmd.status().expect("running cargo build");
                assert!(status.success(), "cargo build of the binaries failed");
            },
        );
        profile_dir
    });
    dir.join(name)
}

/// Every file under `dir` (recursively): its path relative to `dir`, and where it
/// is; sorted.
pub fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().display().to_string(), p));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Makes `target/ferry-e2e/<name>` with `make` once per test run and returns it:
/// the first test process of a nextest run makes it under a lock and stamps it
/// with the run's id; the others of that run find the stamp and reuse it.
/// Outside nextest it is made once per test process. Users of it only read it.
pub fn once_per_run(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let profile_dir = bin("ferry-installer")
        .parent()
        .expect("the profile directory")
        .to_path_buf();
    let root = profile_dir.parent().expect("target").join("ferry-e2e");
    std::fs::create_dir_all(&root).expect("creating target/ferry-e2e");
    let dir = root.join(name);
    once_in_run(
        &root.join(format!("{name}.lock")),
        &root.join(format!("{name}.made-for")),
        || {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("creating the shared directory");
            make(&dir);
        },
    );
    dir
}

/// Runs `make` under the lock `lock` unless `stamp` says it ran in this test run
/// already (nextest's `NEXTEST_RUN_ID`; outside nextest, this process), then
/// stamps it.
fn once_in_run(lock: &Path, stamp: &Path, make: impl FnOnce()) {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock)
        .expect("opening the lock");
    lock.lock().expect("taking the lock");
    let run = std::env::var("NEXTEST_RUN_ID")
        .unwrap_or_else(|_| format!("process-{}", std::process::id()));
    if std::fs::read_to_string(stamp).ok().as_deref() != Some(run.as_str()) {
        make();
        std::fs::write(stamp, &run).expect("stamping it");
    }
}

/// `build SPEC --lock LOCK -o OUT` with the mirror rules, store and key the file
/// and chart tests use (`mirrors.toml`, `store`, `k.key` from `keygen --name k`).
pub fn build_args<'a>(spec: &'a str, lock: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "build",
        spec,
        "--lock",
        lock,
        "--mirrors",
        "mirrors.toml",
        "--store",
        "store",
        "--key",
        "k.key",
        "-o",
        out,
    ]
}

/// The outcome of one command.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Run {
    fn from(command: String, out: Output) -> Run {
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        }
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\n{}",
            self.command,
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts a clean failure: exit code 1, no panic, an `error:` line.
    #[track_caller]
    pub fn failure(self) -> Run {
        assert_eq!(
            self.status.code(),
            Some(1),
            "`{}` should have failed with exit 1:\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "{}", self.stderr);
        self
    }

    /// Asserts a refused bundle: exit 3, one `error:` line, no panic.
    #[track_caller]
    pub fn refused(self) -> Run {
        self.ended_in_one_error(3, "should have refused the bundle (exit 3)")
    }

    /// Asserts a bad command line: exit 2, one `error:` line, no panic.
    #[track_caller]
    pub fn usage(self) -> Run {
        self.ended_in_one_error(2, "should have been a usage error (exit 2)")
    }

    /// Asserts exit `code`, no panic and exactly one `error:` line.
    #[track_caller]
    fn ended_in_one_error(self, code: i32, should: &str) -> Run {
        assert_eq!(
            self.status.code(),
            Some(code),
            "`{}` {should}:\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert_eq!(
            self.stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{}",
            self.stderr
        );
        self
    }

    /// The last `error:` line.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line in:\n{}", self.stderr))
    }
}

/// A temporary directory where a user works.
pub struct Session {
    pub dir: tempfile::TempDir,
}

impl Session {
    pub fn new() -> Session {
        Session {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parents) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    fn run(&self, program: PathBuf, args: &[&str]) -> Run {
        self.run_env(program, args, &[])
    }

    fn run_env(&self, program: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .current_dir(self.dir.path())
            // No credentials, passwords or dates from the machine running the tests.
            .env("DOCKER_CONFIG", self.dir.path().join(".docker"))
            .env_remove("FERRY_KEY_PASSWORD")
            .env_remove("FERRY_REGISTRY_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        Run::from(
            format!(
                "{} {}",
                program.file_name().unwrap().to_string_lossy(),
                args.join(" ")
            ),
            out,
        )
    }

    pub fn bundler(&self, args: &[&str]) -> Run {
        self.run(bin("ferry-bundler"), args)
    }

    /// `ferry-bundler` with extra environment variables.
    pub fn bundler_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_env(bin("ferry-bundler"), args, env)
    }

    pub fn installer(&self, args: &[&str]) -> Run {
        self.run(bin("ferry-installer"), args)
    }

    /// Runs a real CLI (`openssl`, `minisign`, ...) in the session directory; it must
    /// succeed.
    #[track_caller]
    pub fn tool(&self, program: &str, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A started `ferry-bundler` the test may kill.
    pub fn spawn_bundler(&self, args: &[&str]) -> std::process::Child {
        Command::new(bin("ferry-bundler"))
            .args(args)
            .current_dir(self.dir.path())
            .env("DOCKER_CONFIG", self.dir.path().join(".docker"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning ferry-bundler")
    }

    /// A started `ferry-installer` the test may kill; its stderr goes to `log`.
    pub fn spawn_installer(&self, args: &[&str], log: &str) -> std::process::Child {
        Command::new(bin("ferry-installer"))
            .args(args)
            .current_dir(self.dir.path())
            .env("DOCKER_CONFIG", self.dir.path().join(".docker"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.path(log)).unwrap())
            .spawn()
            .expect("spawning ferry-installer")
    }
}

/// One `[[registry]]` rule of a mirrors.toml, pointing an upstream host at loopback.
pub struct Rule<'a> {
    pub host: &'a str,
    /// `(url, prefix, flatten)`
    pub endpoints: Vec<(String, Option<&'a str>, bool)>,
}

/// A mirrors.toml where every host is served only by the given endpoints.
pub fn mirrors(rules: &[Rule]) -> String {
    let mut out = String::new();
    for r in rules {
        out.push_str(&format!(
            "[[registry]]\nhost = \"{}\"\nskip_upstream = true\nendpoints = [\n",
            r.host
        ));
        for (url, prefix, flatten) in &r.endpoints {
            out.push_str(&format!("  {{ url = \"{url}\""));
            if let Some(p) = prefix {
                out.push_str(&format!(", prefix = \"{p}\""));
            }
            if *flatten {
                out.push_str(", flatten = true");
            }
            out.push_str(" },\n");
        }
        out.push_str("]\n\n");
    }
    out
}

/// `ferry-bundler lock` of `spec.toml` through `mirrors.toml` into `spec.lock`.
pub const LOCK: [&str; 6] = [
    "lock",
    "spec.toml",
    "--mirrors",
    "mirrors.toml",
    "-o",
    "spec.lock",
];

/// Deterministic bytes that do not compress away (xorshift from `seed`).
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// `ferry-bundler pull` of the locked `spec.toml` from `mirrors.toml` into `store`.
pub const LOCKED_PULL: [&str; 8] = [
    "pull",
    "spec.toml",
    "--lock",
    "spec.lock",
    "--mirrors",
    "mirrors.toml",
    "--store",
    "store",
];

/// A mirrors.toml where `host` is served only by the plain endpoint `url`.
pub fn mirror_to(host: &str, url: String) -> String {
    mirrors(&[Rule {
        host,
        endpoints: vec![(url, None, false)],
    }])
}

/// One image of each kind, sharing one layer among three of them:
/// `[Docker manifest list (amd64 + arm64/v8), OCI index (amd64 + arm64),
/// single Docker manifest (amd64), single OCI manifest (amd64)]`.
/// `shared` is the shared layer; the others are `layer(own_seed + n, sizes[n - 1])`.
pub fn four_kinds(shared: Vec<u8>, own_seed: u64, sizes: [usize; 6]) -> [Image; 4] {
    let own = |n: u64| layer(own_seed + n, sizes[n as usize - 1]);
    let pi = |flavor, arch, variant, layers| platform_image(flavor, "linux", arch, variant, layers);
    [
        Image::multi(
            Flavor::Docker,
            vec![
                pi(Flavor::Docker, "amd64", None, vec![shared.clone(), own(1)]),
                pi(
                    Flavor::Docker,
                    "arm64",
                    Some("v8"),
                    vec![shared.clone(), own(2)],
                ),
            ],
        ),
        Image::multi(
            Flavor::Oci,
            vec![
                pi(Flavor::Oci, "amd64", None, vec![shared.clone(), own(3)]),
                pi(Flavor::Oci, "arm64", None, vec![own(4)]),
            ],
        ),
        Image::single(pi(Flavor::Docker, "amd64", None, vec![own(5)])),
        Image::single(pi(Flavor::Oci, "amd64", None, vec![shared, own(6)])),
    ]
}

/// A release spec naming `images` (each a plain reference or a TOML inline table).
pub fn spec(platforms: &[&str], images: &[&str]) -> String {
    let quote = |s: &&str| {
        if s.starts_with('{') {
            s.to_string()
        } else {
            format!("\"{s}\"")
        }
    };
    format!(
        "name = \"test\"\nversion = \"1.0.0\"\nplatforms = [{}]\nimages = [\n{}\n]\n",
        platforms
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", "),
        images
            .iter()
            .map(|i| format!("  {},", quote(i)))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A private CA (`ca.pem`, `ca.key`) and a server certificate it signs for
/// 127.0.0.1 (`server.pem`, `server.key`) in the session, as a site makes them.
pub fn private_ca(s: &Session) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    s.tool(
        "openssl",
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Ferry Test CA",
            ],
        ]
        .concat(),
    );
    s.tool(
        "openssl",
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    s.write(
        "ext.cnf",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    s.tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// A filesystem mounted at `dir`, unmounted on drop.
pub struct Mounted(pub std::path::PathBuf);

impl Mounted {
    /// `mount -t FSTYPE -o OPTIONS FSTYPE DIR` (needs root).
    pub fn new(dir: std::path::PathBuf, fstype: &str, options: &str) -> Mounted {
        std::fs::create_dir_all(&dir).unwrap();
        mount(&["-t", fstype, "-o", options, fstype, dir.to_str().unwrap()]);
        Mounted(dir)
    }

    /// `mount --bind FROM DIR`, then read-only.
    pub fn bind_read_only(from: &Path, dir: std::path::PathBuf) -> Mounted {
        std::fs::create_dir_all(&dir).unwrap();
        mount(&["--bind", from.to_str().unwrap(), dir.to_str().unwrap()]);
        let m = Mounted(dir);
        mount(&["-o", "remount,bind,ro", m.0.to_str().unwrap()]);
        m
    }

    /// `mount -o remount,OPTIONS DIR`.
    pub fn remount(&self, options: &str) {
        mount(&[
            "-o",
            &format!("remount,{options}"),
            self.0.to_str().unwrap(),
        ]);
    }

    /// Remounts it with room for `size` (`1g`).
    pub fn grow(&self, size: &str) {
        self.remount(&format!("size={size}"));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn mount(args: &[&str]) {
    let ok = Command::new("mount").args(args).status().unwrap().success();
    assert!(ok, "mount {args:?} (needs root)");
}
