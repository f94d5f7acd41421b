//! `ferry-push-rootfs`: push a directory tree as a one-layer image into a running
//! registry, so demos and tests have a real, runnable image without the internet.
//!
//! ```text
//! ferry-push-rootfs --registry http://127.0.0.1:5000 --repo library/busybox --tag 1.36 \
//!                   --rootfs DIR [--platform linux/amd64] [--flavor oci|docker]
//! ```
//!
//! The layer is a gzip'd tar of DIR with fixed metadata: entries sorted by path,
//! uid/gid 0, mtime 2024-01-01, mode 0755 for directories and executables and 0644
//! for other files; symbolic links are kept as links. The image is an index (OCI)
//! or manifest list (Docker) over that one platform, like most upstream images, with
//! the config `ferry_testkit::image::platform_image` writes (`Cmd ["/bin/sh"]`, a PATH).
//! The same tree gives the same digests. Prints the digest of the index.
//!
//! `scripts/demo.sh` uses it to push Debian's static busybox (`busybox-static`) as
//! `docker.io/library/busybox`, which containerd later runs with `ctr run`.
//!
//! Argument parsing is plain std on purpose, shared with `ferry-seed` (`ferry_testkit::args`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferry_testkit::args::{self, check_registry, parse_platform, registry_value, Flags};
use ferry_testkit::image::{self, platform_image, Flavor, Image};

const USAGE: &str = "usage: ferry-push-rootfs --registry URL --repo NAME --tag TAG --rootfs DIR \
[--platform OS/ARCH[/VARIANT]] [--flavor oci|docker]";

/// Fixed mtime of every entry: 2024-01-01T00:00:00Z (as in `ferry_testkit::image`).
const MTIME: u64 = 1_704_067_200;

#[derive(Debug)]
struct Args {
    registry: String,
    repo: String,
    tag: String,
    rootfs: PathBuf,
    os: String,
    arch: String,
    variant: Option<String>,
    flavor: Flavor,
}

/// The platform of the machine running this, in OCI terms.
fn host_platform() -> (String, String) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    };
    ("linux".into(), arch.into())
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut registry, mut repo, mut tag, mut rootfs) = (None, None, None, None);
    let (os, arch) = host_platform();
    let mut platform = (os, arch, None);
    let mut flavor = Flavor::Oci;
    let mut flags = Flags::new(argv);
    while let Some(flag) = flags.next() {
        let flag = flag?;
        let mut value = || flags.value(&flag);
        match flag.name.as_str() {
            "--registry" => registry = Some(registry_value(value()?)),
            "--repo" => repo = Some(value()?),
            "--tag" => tag = Some(value()?),
            "--rootfs" => rootfs = Some(PathBuf::from(value()?)),
            "--platform" => {
                let v = value()?;
                platform = parse_platform(&v)
                    .ok_or_else(|| format!("bad platform {v:?}: expected OS/ARCH[/VARIANT]"))?;
            }
            "--flavor" => {
                flavor = match value()?.as_str() {
                    "oci" => Flavor::Oci,
                    "docker" => Flavor::Docker,
                    other => {
                        return Err(format!("--flavor: expected oci or docker, got {other:?}"))
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let args = Args {
        registry: registry.ok_or("--registry is required")?,
        repo: repo.ok_or("--repo is required")?,
        tag: tag.ok_or("--tag is required")?,
        rootfs: rootfs.ok_or("--rootfs is required")?,
        os: platform.0,
        arch: platform.1,
        variant: platform.2,
        flavor,
    };
    check_registry(&args.registry)?;
    Ok(args)
}

/// Every path under `root` (relative, sorted, depth first), without `root` itself.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", dir.display()))?;
    names.sort();
    for name in names {
        let path = rel.join(name);
        let meta = std::fs::symlink_metadata(root.join(&path))
            .map_err(|e| format!("{}: {e}", root.join(&path).display()))?;
        out.push(path.clone());
        if meta.is_dir() {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

/// The gzip'd tar of `root` (see the module docs for the fixed metadata).
fn layer_of(root: &Path) -> Result<Vec<u8>, String> {
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", root.join(p).display());
    for rel in &paths {
        let full = root.join(rel);
        let meta = std::fs::symlink_metadata(&full).map_err(|e| fail(rel, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| fail(rel, e))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, rel, &target)
                .map_err(|e| fail(rel, e))?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, std::io::empty())
                .map_err(|e| fail(rel, e))?;
        } else if meta.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = std::fs::File::open(&full).map_err(|e| fail(rel, e))?;
            tar.append_data(&mut header, rel, file)
                .map_err(|e| fail(rel, e))?;
        } else {
            return Err(format!(
                "{}: only directories, files and symbolic links go into a layer",
                full.display()
            ));
        }
    }
    let gz = tar
        .into_inner()
        .map_err(|e| format!("finishing tar: {e}"))?;
    gz.finish().map_err(|e| format!("finishing gzip: {e}"))
}

fn run(args: &Args) -> Result<(), String> {
    if !args.rootfs.is_dir() {
        return Err(format!("{} is not a directory", args.rootfs.display()));
    }
    let layer = layer_of(&args.rootfs)?;
    let platform = platform_image(
        args.flavor,
        &args.os,
        &args.arch,
        args.variant.as_deref(),
        vec![layer],
    );
    let img = Image::multi(args.flavor, vec![platform]);
    // Pushing panics with the registry's answer on failure (test-support style).
    image::push(&args.registry, &args.repo, &args.tag, &img);
    println!(
        "ferry-push-rootfs: pushed {}:{} ({}, {} bytes in one layer) to {}: {}",
        args.repo,
        args.tag,
        img.platforms[0].platform(),
        img.platforms[0].layers[0].size(),
        args.registry,
        img.digest()
    );
    Ok(())
}

fn main() -> ExitCode {
    args::main("ferry-push-rootfs", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_keeps_modes_and_links_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.path().join("motd"), b"hi\n").unwrap();
        std::os::unix::fs::symlink("tool", bin.join("sh")).unwrap();
        let layer = layer_of(dir.path()).unwrap();
        assert_eq!(layer, layer_of(dir.path()).unwrap());

        let mut entries = Vec::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            entries.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
            ));
        }
        assert_eq!(
            entries,
            [
                ("bin".to_string(), 0o755, String::new()),
                ("bin/sh".to_string(), 0o777, "tool".to_string()),
                ("bin/tool".to_string(), 0o755, String::new()),
                ("motd".to_string(), 0o644, String::new()),
            ]
        );
    }

    #[test]
    fn parses_flags_and_defaults_to_the_host_platform() {
        let argv: Vec<String> = "--registry http://x/ --repo library/busybox --tag 1 --rootfs r"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let a = parse_args(&argv).unwrap();
        assert_eq!(a.registry, "http://x");
        assert_eq!(
            (a.os.as_str(), a.arch.as_str()),
            ("linux", host_platform().1.as_str())
        );
        assert!(parse_args(&argv[..4]).is_err());
    }
}
