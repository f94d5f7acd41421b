//! `ferry-bundler lock` and `pull` against real registry:2 upstreams on loopback:
//! mirror rewriting, fallback, lock enforcement, resumption, auth and faults.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod basics;
mod faults;
mod file_faults;
mod local;
mod mirrors;

use std::collections::BTreeSet;
use std::process::Command;

use common::store::{index_entries, stored_blobs};
use common::{four_kinds, mirror_to, mirrors, spec, Rule, Run, Session, LOCK, LOCKED_PULL};
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::proxy::{Proxy, ProxyOptions};
use ferry_testkit::registry::{dead_url, Registry, RegistryOptions};

const HOST: &str = "registry.example.io";

/// The images every test pulls: both media-type families, lists and single
/// manifests, and one layer shared by three images.
struct Fixture {
    alpha: Image, // Docker manifest list, amd64 + arm64/v8
    beta: Image,  // OCI index, amd64 + arm64
    gamma: Image, // single Docker manifest, amd64
    delta: Image, // single OCI manifest, amd64
}

fn fixture(seed: u64) -> Fixture {
    let [alpha, beta, gamma, delta] = four_kinds(
        layer(seed, 64 * 1024),
        seed * 100,
        [300_000, 200_000, 100_000, 100_000, 50_000, 70_000],
    );
    Fixture {
        alpha,
        beta,
        gamma,
        delta,
    }
}

fn push_fixture(url: &str, repo_prefix: &str, f: &Fixture) {
    image::push(url, &format!("{repo_prefix}alpha"), "v1", &f.alpha);
    image::push(url, &format!("{repo_prefix}beta"), "v2", &f.beta);
    image::push(url, &format!("{repo_prefix}gamma"), "1.0", &f.gamma);
    image::push(url, &format!("{repo_prefix}delta"), "1.0", &f.delta);
}

fn fixture_spec() -> String {
    spec(
        &["linux/amd64", "linux/arm64"],
        &[
            &format!("{HOST}/apps/alpha:v1"),
            &format!("{HOST}/apps/beta:v2"),
            &format!("{{ ref = \"{HOST}/apps/gamma:1.0\", platforms = [\"linux/amd64\"] }}"),
            &format!("{{ ref = \"{HOST}/apps/delta:1.0\", platforms = [\"linux/amd64\"] }}"),
        ],
    )
}

/// Every blob digest a full pull of the fixture must store, once each.
fn expected_blobs(f: &Fixture) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for img in [&f.alpha, &f.beta, &f.gamma, &f.delta] {
        set.insert(img.digest().to_string());
        for p in &img.platforms {
            set.insert(p.manifest.digest.clone());
            for b in p.blobs() {
                set.insert(b.digest.clone());
            }
        }
    }
    set
}

fn direct_mirrors(url: String) -> String {
    mirror_to(HOST, url)
}

/// `ferry-bundler pull spec.toml --lock spec.lock --mirrors MIRRORS --store STORE`
fn pull_locked(s: &Session, mirrors: &str, store: &str) -> Run {
    s.bundler(&[
        "pull",
        "spec.toml",
        "--lock",
        "spec.lock",
        "--mirrors",
        mirrors,
        "--store",
        store,
    ])
}

/// `ferry-bundler pull spec.toml --mirrors mirrors.toml --store STORE EXTRA...`
fn pull(s: &Session, store: &str, extra: &[&str]) -> Run {
    pull_env(s, store, extra, &[])
}

/// [`pull`] with extra environment variables.
fn pull_env(s: &Session, store: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec![
        "pull",
        "spec.toml",
        "--mirrors",
        "mirrors.toml",
        "--store",
        store,
    ];
    args.extend_from_slice(extra);
    s.bundler_env(&args, env)
}

/// `HOST/apps/NAME:v1`, one linux/amd64 image of `layers`, pushed to `reg`, and a
/// session where it is locked through a 4 MiB/s proxy in front of `reg` (the mirror).
fn locked_behind_a_slow_proxy(
    reg: &Registry,
    name: &str,
    flavor: Flavor,
    layers: Vec<Vec<u8>>,
) -> (Image, Proxy, Session) {
    let img = Image::single(platform_image(flavor, "linux", "amd64", None, layers));
    image::push(&reg.url(), &format!("apps/{name}"), "v1", &img);
    let proxy = Proxy::throttled(&reg.addr(), 4 << 20);
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/apps/{name}:v1")]),
    );
    s.write("mirrors.toml", &direct_mirrors(proxy.url()));
    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
    (img, proxy, s)
}
