//! How `install` reaches a node: a node whose address is this host's is run
//! locally; any other over the system OpenSSH client, so the operator's
//! `~/.ssh/config`, agent, `ProxyJump` bastions and `known_hosts` all apply.
//! One multiplexed connection per node (ControlMaster); an unknown host key is
//! refused unless the operator accepts new ones.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Context as _;

use super::inventory::Node;

/// What every SSH connection of a run shares.
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// `ssh -F FILE`.
    pub config: Option<PathBuf>,
    /// `StrictHostKeyChecking=accept-new` instead of `yes`.
    pub accept_new_host_keys: bool,
    /// Where the control sockets live (one per node).
    pub control_dir: PathBuf,
}

/// A way to run commands on one node.
#[derive(Debug, Clone)]
pub enum Transport {
    Local,
    Ssh { args: Vec<String>, target: String },
}

/// `text` as one shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Whether `address` is one of this host's.
fn is_local(address: IpAddr) -> bool {
    address.is_loopback()
        || if_addrs::get_if_addrs()
            .map(|ifs| ifs.iter().any(|i| i.ip() == address))
            .unwrap_or(false)
}

impl Transport {
    /// The transport for `node`.
    pub fn for_node(node: &Node, opts: &SshOptions) -> Transport {
        if is_local(node.address) {
            return Transport::Local;
        }
        let mut args = Vec::new();
        if let Some(config) = &opts.config {
            args.push("-F".to_string());
            args.push(config.display().to_string());
        }
        let host_keys = if opts.accept_new_host_keys {
            "accept-new"
        } else {
            "yes"
        };
        for o in [
            "BatchMode=yes".to_string(),
            format!("StrictHostKeyChecking={host_keys}"),
            "ControlMaster=auto".to_string(),
            // Quoted: ssh splits an option's value at spaces (a TMPDIR may hold some).
            format!("ControlPath=\"{}/%C\"", opts.control_dir.display()),
            "ControlPersist=120".to_string(),
            "ConnectTimeout=15".to_string(),
            "ServerAliveInterval=15".to_string(),
        ] {
            args.push("-o".into());
            args.push(o);
        }
        args.push("-p".into());
        args.push(node.ssh.port.to_string());
        if let Some(key) = &node.ssh.key {
            args.push("-i".into());
            args.push(key.display().to_string());
        }
        Transport::Ssh {
            args,
            target: format!("{}@{}", node.ssh.user, node.address),
        }
    }

    /// `script` under `sh -e` on the node.
    fn command(&self, script: &str) -> Command {
        match self {
            Transport::Local => {
                let mut c = Command::new("sh");
                c.args(["-c", script]);
                c
            }
            Transport::Ssh { args, target } => {
                let mut c = Command::new("ssh");
                c.args(args)
                    .arg(target)
                    .arg("--")
                    .arg(format!("sh -c {}", quote(script)));
                c
            }
        }
    }

    /// Runs `script`, feeding it `input` (a file's bytes, or nothing).
    pub fn run(&self, script: &str, input: Input<'_>) -> anyhow::Result<Output> {
        let mut cmd = self.command(script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(match input {
            Input::None => Stdio::null(),
            _ => Stdio::piped(),
        });
        let mut child = cmd
            .spawn()
            .context("starting ssh (is the OpenSSH client installed?)")?;
        let stdin = child.stdin.take();
        // Feeding and reading at once: neither side may wait on a full pipe.
        let (out, fed) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                if let Some(mut w) = stdin {
                    match input {
                        Input::None => {}
                        Input::Bytes(b) => w.write_all(b)?,
                        Input::File(p) => {
                            let mut f = std::fs::File::open(p)?;
                            std::io::copy(&mut f, &mut w)?;
                        }
                    }
                }
                Ok(())
            });
            let out = child.wait_with_output();
            (out, writer.join())
        });
        let out = out.context("waiting for the node")?;
        match fed.map_err(|_| anyhow::anyhow!("feeding a node panicked"))? {
            // The far side may stop reading early (and say why on stderr).
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("sending to the node")
            }
            _ => {}
        }
        Ok(out)
    }

    /// Closes the shared connection, if any.
    pub fn close(&self) {
        if let Transport::Ssh { args, target } = self {
            let _ = Command::new("ssh")
                .args(args)
                .args(["-O", "exit"])
                .arg(target)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// `local` or `ssh root@10.0.0.1`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Transport::Local => "this host".into(),
            Transport::Ssh { target, .. } => format!("ssh {target}"),
        }
    }
}

/// What a command reads on its standard input.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        let q = quote("echo 'it''s' \"$HOME\"");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {q}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "echo 'it''s' \"$HOME\""
        );
    }

    /// Regression: a TMPDIR with a space broke every connection ("keyword
    /// controlpath extra arguments at end of line"). `ssh -G` prints the options
    /// it would use, and connects nowhere.
    #[test]
    fn a_control_directory_with_a_space_reaches_ssh_whole() {
        let inv = super::super::inventory::Inventory::parse(
            std::path::Path::new("cluster.toml"),
            &super::super::example::example(4),
        )
        .unwrap();
        let opts = SshOptions {
            config: None,
            accept_new_host_keys: false,
            control_dir: "/tmp/ferry test tmp/ferry-ssh-1".into(),
        };
        let Transport::Ssh { args, target } = Transport::for_node(&inv.nodes[3], &opts) else {
            panic!("an example node is not this host");
        };
        let out = Command::new("ssh")
            .args(&args)
            .arg("-G")
            .arg(&target)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("controlpath /tmp/ferry test tmp/ferry-ssh-1/")),
            "{text}"
        );
    }

    #[test]
    fn a_large_input_and_output_at_once_do_not_deadlock() {
        let input = vec![b'x'; 4 << 20];
        let out = Transport::Local.run("cat", Input::Bytes(&input)).unwrap();
        assert_eq!(out.stdout.len(), input.len());
    }

    #[test]
    fn the_local_transport_runs_and_feeds_a_script() {
        let out = Transport::Local
            .run("tr a-z A-Z; exit 3", Input::Bytes(b"hello"))
            .unwrap();
        assert_eq!(out.stdout, b"HELLO");
        assert_eq!(out.status.code(), Some(3));
    }
}
