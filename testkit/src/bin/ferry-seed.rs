//! `ferry-seed`: fill a running registry with a deterministic, generated multi-arch
//! image set, for benchmarks and demos.
//!
//! ```text
//! ferry-seed --registry http://127.0.0.1:5000 --images 10 --platforms linux/amd64,linux/arm64 \
//!            --layers-per-image 3 --layer-size 1048576 [--shared-layers 1] \
//!            [--flavor docker|oci|mixed] [--seed 0] [--prefix bench] \
//!            [--spec-out release.toml --spec-host registry.example.io]
//! ```
//!
//! Pushes `<prefix>/img<i>:v1` for i in 0..images, each an index (OCI) or manifest
//! list (Docker) over the given platforms. `mixed` alternates: even images Docker, odd
//! images OCI. Of the `L` layers of each platform image, the first `K` (`--shared-layers`)
//! are the same across all images of that platform (think: a common base image), the
//! rest are unique. Layer contents depend only on the seed and those coordinates, so
//! the same arguments always produce the same digests.
//!
//! With `--spec-out`, also writes a Ferry release spec naming the images under
//! `--spec-host` (default: the registry's own host:port); a benchmark then maps that
//! host to the loopback registry with mirror rules.
//!
//! Argument parsing is plain std on purpose (`ferry_testkit::args`, shared with
//! `ferry-push-rootfs`): the tool has a handful of flags and the test-support crate
//! keeps its dependencies small.

use std::process::ExitCode;
use std::time::Instant;

use ferry_testkit::args::{self, check_registry, parse_platform, registry_value, Flags, Platform};
use ferry_testkit::image::{self, layer, platform_image, seed, Flavor, Image, PushStats};

const USAGE: &str =
    "usage: ferry-seed --registry URL --images N --platforms OS/ARCH[/VARIANT],... \
--layers-per-image L --layer-size BYTES [--shared-layers K] [--flavor docker|oci|mixed] \
[--seed S] [--prefix NAME] [--spec-out FILE [--spec-host HOST]]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlavorChoice {
    Docker,
    Oci,
    Mixed,
}

#[derive(Debug)]
struct Args {
    registry: String,
    images: usize,
    platforms: Vec<Platform>,
    layers_per_image: usize,
    layer_size: usize,
    shared_layers: usize,
    flavor: FlavorChoice,
    seed: u64,
    prefix: String,
    spec_out: Option<String>,
    spec_host: Option<String>,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut registry = None;
    let mut images = None;
    let mut platforms = None;
    let mut layers_per_image = None;
    let mut layer_size = None;
    let mut shared_layers = 0;
    let mut flavor = FlavorChoice::Docker;
    let mut seed = 0;
    let mut prefix = "bench".to_string();
    let mut spec_out = None;
    let mut spec_host = None;

    let mut flags = Flags::new(argv);
    while let Some(flag) = flags.next() {
        let flag = flag?;
        let name = flag.name.as_str();
        let mut value = || flags.value(&flag);
        let number = |v: String| -> Result<u64, String> {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match name {
            "--registry" => registry = Some(registry_value(value()?)),
            "--images" => images = Some(number(value()?)? as usize),
            "--platforms" => {
                platforms = Some(
                    value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            parse_platform(s).ok_or_else(|| {
                                format!("bad platform {s:?}: expected OS/ARCH or OS/ARCH/VARIANT")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
            "--layers-per-image" => layers_per_image = Some(number(value()?)? as usize),
            "--layer-size" => layer_size = Some(number(value()?)? as usize),
            "--shared-layers" => shared_layers = number(value()?)? as usize,
            "--flavor" => {
                flavor = match value()?.as_str() {
                    "docker" => FlavorChoice::Docker,
                    "oci" => FlavorChoice::Oci,
                    "mixed" => FlavorChoice::Mixed,
                    other => {
                        return Err(format!(
                            "--flavor: expected docker, oci or mixed, got {other:?}"
                        ))
                    }
                }
            }
            "--seed" => seed = number(value()?)?,
            "--prefix" => prefix = value()?,
            "--spec-out" => spec_out = Some(value()?),
            "--spec-host" => spec_host = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    let args = Args {
        registry: registry.ok_or("--registry is required")?,
        images: images.ok_or("--images is required")?,
        platforms: platforms.ok_or("--platforms is required")?,
        layers_per_image: layers_per_image.ok_or("--layers-per-image is required")?,
        layer_size: layer_size.ok_or("--layer-size is required")?,
        shared_layers,
        flavor,
        seed,
        prefix,
        spec_out,
        spec_host,
    };
    check_registry(&args.registry)?;
    if args.platforms.is_empty() {
        return Err("--platforms is empty".into());
    }
    if args.shared_layers > args.layers_per_image {
        return Err(format!(
            "--shared-layers {} exceeds --layers-per-image {}",
            args.shared_layers, args.layers_per_image
        ));
    }
    Ok(args)
}

fn flavor_for(choice: FlavorChoice, image_index: usize) -> Flavor {
    match choice {
        FlavorChoice::Docker => Flavor::Docker,
        FlavorChoice::Oci => Flavor::Oci,
        FlavorChoice::Mixed => match image_index % 2 {
            0 => Flavor::Docker,
            _ => Flavor::Oci,
        },
    }
}

/// Domain tags keep shared and unique seeds apart even for equal indices.
const SHARED: u64 = 1;
const UNIQUE: u64 = 2;

fn build_image(args: &Args, i: usize) -> Image {
    let flavor = flavor_for(args.flavor, i);
    let platforms = args
        .platforms
        .iter()
        .enumerate()
        .map(|(p, (os, arch, variant))| {
            let layers = (0..args.layers_per_image)
                .map(|l| {
                    let s = if l < args.shared_layers {
                        seed(&[args.seed, SHARED, p as u64, l as u64])
                    } else {
                        seed(&[args.seed, UNIQUE, i as u64, p as u64, l as u64])
                    };
                    layer(s, args.layer_size)
                })
                .collect();
            platform_image(flavor, os, arch, variant.as_deref(), layers)
        })
        .collect();
    Image::multi(flavor, platforms)
}

fn spec_toml(args: &Args, host: &str) -> String {
    let platforms: Vec<String> = args
        .platforms
        .iter()
        .map(|(os, arch, v)| match v {
            Some(v) => format!("\"{os}/{arch}/{v}\""),
            None => format!("\"{os}/{arch}\""),
        })
        .collect();
    let mut out = format!(
        "name = \"{}\"\nversion = \"1.0.0\"\nplatforms = [{}]\nimages = [\n",
        args.prefix,
        platforms.join(", ")
    );
    for i in 0..args.images {
        out.push_str(&format!("  \"{host}/{}/img{i}:v1\",\n", args.prefix));
    }
    out.push_str("]\n");
    out
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let mut total = PushStats::default();
    for i in 0..args.images {
        // One image at a time: only its layers are in memory, whatever --images is.
        let img = build_image(args, i);
        let repo = format!("{}/img{i}", args.prefix);
        let stats = image::push_with_stats(&args.registry, &repo, "v1", &img);
        total.blobs_uploaded += stats.blobs_uploaded;
        total.blobs_skipped += stats.blobs_skipped;
        total.manifests += stats.manifests;
        total.bytes_uploaded += stats.bytes_uploaded;
    }
    if let Some(path) = &args.spec_out {
        let default_host = args
            .registry
            .split_once("://")
            .map(|(_, h)| h.to_string())
            .unwrap_or_default();
        let host = args.spec_host.clone().unwrap_or(default_host);
        std::fs::write(path, spec_toml(args, &host)).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ferry-seed: pushed {} images x {} platforms to {}: {} bytes ({:.1} MiB) in {} blobs + {} manifests ({} blobs already present) in {:.1}s",
        args.images,
        args.platforms.len(),
        args.registry,
        total.bytes_uploaded,
        total.bytes_uploaded as f64 / (1024.0 * 1024.0),
        total.blobs_uploaded,
        total.manifests,
        total.blobs_skipped,
        secs
    );
    Ok(())
}

fn main() -> ExitCode {
    args::main("ferry-seed", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_and_writes_spec() {
        let a = parse_args(&argv(
            "--registry http://127.0.0.1:5000/ --images 2 --platforms linux/amd64,linux/arm/v7 \
             --layers-per-image 3 --layer-size=1_000 --shared-layers 1 --flavor mixed",
        ))
        .unwrap();
        assert_eq!(a.registry, "http://127.0.0.1:5000");
        assert_eq!(
            a.platforms[1],
            ("linux".into(), "arm".into(), Some("v7".into()))
        );
        assert_eq!(a.layer_size, 1000);
        assert_eq!(
            spec_toml(&a, "registry.example.io"),
            "name = \"bench\"\nversion = \"1.0.0\"\nplatforms = [\"linux/amd64\", \"linux/arm/v7\"]\n\
             images = [\n  \"registry.example.io/bench/img0:v1\",\n  \"registry.example.io/bench/img1:v1\",\n]\n"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_args(&argv("--images 1")).is_err());
        assert!(parse_args(&argv(
            "--registry http://x --images 1 --platforms linux --layers-per-image 1 --layer-size 1"
        ))
        .is_err());
        assert!(parse_args(&argv(
            "--registry http://x --images 1 --platforms linux/amd64 --layers-per-image 1 --layer-size 1 --shared-layers 2"
        ))
        .is_err());
    }

    #[test]
    fn shared_layers_are_shared_across_images_only() {
        let a = parse_args(&argv(
            "--registry http://x --images 2 --platforms linux/amd64,linux/arm64 \
             --layers-per-image 2 --layer-size 64 --shared-layers 1 --flavor mixed",
        ))
        .unwrap();
        let i0 = build_image(&a, 0);
        let i1 = build_image(&a, 1);
        assert_eq!(
            i0.platforms[0].layers[0].digest,
            i1.platforms[0].layers[0].digest
        );
        assert_ne!(
            i0.platforms[0].layers[1].digest,
            i1.platforms[0].layers[1].digest
        );
        assert_ne!(
            i0.platforms[0].layers[0].digest,
            i0.platforms[1].layers[0].digest
        );
        assert_eq!(i0.top.media_type, image::docker::MANIFEST_LIST);
        assert_eq!(i1.top.media_type, image::oci::INDEX);
        assert_eq!(build_image(&a, 1).digest(), i1.digest());
    }
}
