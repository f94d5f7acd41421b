//! The programs a node runs, taken from the bundle's files for the node's arch:
//! which file gives which program, on which nodes, and where it goes (the table
//! [`PROGRAMS`], as kubespray lays them out: /usr/local/bin, CNI plugins in
//! /opt/cni/bin). Upstream archives are unpacked while their bytes are hashed
//! against the digest the bundle pinned, once per plan; every node's tree then
//! holds a hard link, not a copy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ferry::Digest;

use super::contents::Contents;
use super::inventory::{Node, Role};

/// Which nodes get a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Every,
    ControlPlanes,
    EtcdMembers,
}

/// One bundle file and the programs it gives.
struct Program {
    /// The file's name in the release spec.
    file: &'static str,
    on: On,
    /// The directory under the node's root.
    dir: &'static str,
    /// `None`: the file is the program itself (named `file`); otherwise the
    /// archive members taken, by file name, wherever they sit in the archive.
    members: Option<&'static [&'static str]>,
}

/// The programs of a node, as kubespray installs them (roles/download and
/// roles/container-engine of release-2.28: binaries in /usr/local/bin, the CNI
/// plugins in /opt/cni/bin, etcd on etcd members, helm where addons are applied).
const PROGRAMS: &[Program] = &[
    Program {
        file: "kubelet",
        on: On::Every,
        dir: "usr/local/bin",
        members: None,
    },
    Program {
        file: "kubeadm",
        on: On::Every,
        dir: "usr/local/bin",
        members: None,
    },
    Program {
        file: "kubectl",
        on: On::ControlPlanes,
        dir: "usr/local/bin",
        members: None,
    },
    Program {
        file: "runc",
        on: On::Every,
        dir: "usr/local/bin",
        members: None,
    },
    Program {
        file: "containerd",
        on: On::Every,
        dir: "usr/local/bin",
        members: Some(&["containerd", "containerd-shim-runc-v2", "ctr"]),
    },
    Program {
        file: "crictl",
        on: On::Every,
        dir: "usr/local/bin",
        members: Some(&["crictl"]),
    },
    // The plugins of containernetworking/plugins present in every release from
    // 1.1 to 1.6 (1.3 added `tap` and `dummy`; nothing here needs them).
    Program {
        file: "cni-plugins",
        on: On::Every,
        dir: "opt/cni/bin",
        members: Some(&[
            "bandwidth",
            "bridge",
            "dhcp",
            "firewall",
            "host-device",
            "host-local",
            "ipvlan",
            "loopback",
            "macvlan",
            "portmap",
            "ptp",
            "sbr",
            "static",
            "tuning",
            "vlan",
            "vrf",
        ]),
    },
    Program {
        file: "etcd",
        on: On::EtcdMembers,
        dir: "usr/local/bin",
        members: Some(&["etcd", "etcdctl", "etcdutl"]),
    },
    Program {
        file: "helm",
        on: On::ControlPlanes,
        dir: "usr/local/bin",
        members: Some(&["helm"]),
    },
];

/// Where a program's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A bundle file's blob (`member` of it when it is an archive).
    Blob {
        /// `kubelet 1.31.14 (linux/amd64)`, for errors.
        what: String,
        digest: Digest,
        gzip_tar: bool,
        member: Option<String>,
    },
    /// This ferry-installer, for the registry node.
    Installer(PathBuf),
}

/// A node's programs: path under its root -> where the bytes come from.
pub type Programs = BTreeMap<String, Source>;

/// The arch this ferry-installer was built for, as Go spells it.
pub fn own_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The programs `node` gets. `registry` says whether it runs the site registry
/// (and so this ferry-installer, which must be built for its arch).
/// The programs `node` runs, by its roles.
fn wanted(node: &Node) -> impl Iterator<Item = &'static Program> + '_ {
    PROGRAMS.iter().filter(|p| match p.on {
        On::Every => true,
        On::ControlPlanes => node.has(Role::ControlPlane),
        On::EtcdMembers => node.has(Role::Etcd),
    })
}

/// What of `node`'s programs the bundle lacks, each said: [`for_node`] stops at
/// the first.
pub fn lacking(contents: &Contents, node: &Node) -> Vec<String> {
    wanted(node)
        .filter_map(|p| contents.file(p.file, Some(&node.arch)).err())
        .map(|e| format!("{e:#}"))
        .collect()
}

pub fn for_node(contents: &Contents, node: &Node, registry: bool) -> anyhow::Result<Programs> {
    let mut out = Programs::new();
    for p in wanted(node) {
        let (version, layer) = contents
            .file(p.file, Some(&node.arch))
            .with_context(|| format!("node {}", node.name))?;
        let what = format!("{} {version} (linux/{})", p.file, node.arch);
        let gzip_tar = layer.title.ends_with(".tar.gz") || layer.title.ends_with(".tgz");
        match p.members {
            None => {
                out.insert(
                    format!("{}/{}", p.dir, p.file),
                    Source::Blob {
                        what,
                        digest: layer.digest,
                        gzip_tar: false,
                        member: None,
                    },
                );
            }
            Some(members) => {
                if !gzip_tar {
                    bail!(
                        "node {}: {what} is {}, not the .tar.gz archive expected",
                        node.name,
                        layer.title
                    );
                }
                for m in members {
                    out.insert(
                        format!("{}/{m}", p.dir),
                        Source::Blob {
                            what: what.clone(),
                            digest: layer.digest.clone(),
                            gzip_tar,
                            member: Some((*m).to_string()),
                        },
                    );
                }
            }
        }
    }
    if registry {
        if node.arch != own_arch() {
            bail!(
                "node {} runs the site registry and is {}, but this ferry-installer is {}: plan with a {} ferry-installer or move [registry] node",
                node.name,
                node.arch,
                own_arch(),
                node.arch
            );
        }
        let exe = std::env::current_exe().context("finding this ferry-installer")?;
        out.insert(
            "usr/local/bin/ferry-installer".into(),
            Source::Installer(exe),
        );
    }
    Ok(out)
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: ferry::digest::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn write_program(path: &Path, from: &mut impl Read) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::copy(from, &mut f).with_context(|| format!("writing {}", path.display()))?;
    f.flush()?;
    Ok(())
}

/// Unpacks one blob's wanted members (or the blob itself) into `dir`, checking
/// the blob's bytes against its digest as they are read.
fn unpack(
    contents: &Contents,
    what: &str,
    digest: &Digest,
    gzip_tar: bool,
    members: &BTreeSet<Option<String>>,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let blob = contents.blob_path(digest);
    let file = std::fs::File::open(&blob)
        .with_context(|| format!("{what}: reading {}", blob.display()))?;
    let mut reader = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hash: ferry::digest::Hasher::new(),
    };
    if !gzip_tar {
        write_program(&dir.join("file"), &mut reader)?;
    } else {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut reader));
        let mut found = BTreeSet::new();
        for entry in archive
            .entries()
            .with_context(|| format!("{what}: reading the archive"))?
        {
            let mut entry = entry.with_context(|| format!("{what}: reading the archive"))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path()?.into_owned();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !members.contains(&Some(name.clone())) {
                continue;
            }
            if !found.insert(name.clone()) {
                bail!("{what}: the archive holds {name} twice");
            }
            write_program(&dir.join(&name), &mut entry)?;
        }
        let missing: Vec<&str> = members
            .iter()
            .flatten()
            .filter(|m| !found.contains(*m))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            bail!("{what}: the archive has no {}", missing.join(", "));
        }
        // Whatever follows the tar's end still counts for the digest.
        std::io::copy(&mut reader, &mut std::io::sink())?;
    }
    let got = reader.hash.finish();
    if &got != digest {
        bail!(
            "{what}: the store's blob {} holds {got}: the store is damaged; unpack the bundle again",
            digest
        );
    }
    Ok(())
}

/// Unpacks every program the plans name once into `cache`, checked, and hard-links
/// each into `root/<node>/<path>`.
pub fn install(
    contents: &Contents,
    plans: &BTreeMap<String, &Programs>,
    root: &Path,
    cache: &Path,
) -> anyhow::Result<()> {
    // blob -> (what, gzip_tar, members)
    let mut blobs: BTreeMap<&Digest, (&str, bool, BTreeSet<Option<String>>)> = BTreeMap::new();
    let mut own: Option<&PathBuf> = None;
    for programs in plans.values() {
        for source in programs.values() {
            match source {
                Source::Blob {
                    what,
                    digest,
                    gzip_tar,
                    member,
                } => {
                    blobs
                        .entry(digest)
                        .or_insert_with(|| (what, *gzip_tar, BTreeSet::new()))
                        .2
                        .insert(member.clone());
                }
                Source::Installer(exe) => own = Some(exe),
            }
        }
    }
    let jobs: Vec<_> = blobs.into_iter().collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let errors = super::parallel(&jobs, threads, |(digest, (what, gzip_tar, members))| {
        unpack(
            contents,
            what,
            digest,
            *gzip_tar,
            members,
            &cache.join(digest.hex()),
        )
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    if let Some(exe) = own {
        let mut from = std::fs::File::open(exe)
            .with_context(|| format!("reading this ferry-installer at {}", exe.display()))?;
        write_program(&cache.join("ferry-installer"), &mut from)?;
    }
    for (node, programs) in plans {
        for (path, source) in programs.iter() {
            let from = match source {
                Source::Blob { digest, member, .. } => cache
                    .join(digest.hex())
                    .join(member.as_deref().unwrap_or("file")),
                Source::Installer(_) => cache.join("ferry-installer"),
            };
            let to = root.join(node).join(path);
            std::fs::create_dir_all(to.parent().expect("programs live in directories"))?;
            std::fs::hard_link(&from, &to)
                .with_context(|| format!("linking {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}
