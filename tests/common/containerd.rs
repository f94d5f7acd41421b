//! A private containerd (its own root, state, socket and config) for one test, and
//! `ctr` against it: what a node does when it pulls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running containerd, killed on drop.
pub struct Containerd {
    child: Child,
    sock: PathBuf,
    pub log: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path, certs_d: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        // Only what a node uses for pulls: content store, metadata, the native
        // snapshotter (no overlay mounts needed). The CRI plugin reads the same
        // certs.d directory a kubelet's pulls would use.
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{certs}"
"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = sock.display(),
                certs = certs_d.display(),
            ),
        )
        .unwrap();
        let log = dir.join("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning containerd");
        let c = Containerd { child, sock, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Command::new("ctr")
            .arg("--address")
            .arg(&c.sock)
            .arg("version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                std::fs::read_to_string(&c.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap()
    }

    /// `ctr images pull` of `name` (for `platform`, else the host's) through the
    /// `certs.d` tree at `hosts_dir`, as a node configured by `plan` pulls.
    pub fn pull(
        &self,
        hosts_dir: &Path,
        platform: Option<&str>,
        name: &str,
    ) -> std::process::Output {
        let hosts = hosts_dir.display().to_string();
        let mut args = vec!["images", "pull", "--hosts-dir", &hosts];
        args.extend(["--snapshotter", "native"]);
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(name);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
