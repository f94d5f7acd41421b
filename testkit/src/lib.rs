//! Test-support kit for Ferry's end-to-end suite (`tests/*.rs`), benchmarks and demos.
//!
//! Everything here is real, nothing is mocked:
//!
//! - [`registry`] starts genuine `registry:2` processes (`/usr/bin/docker-registry`)
//!   on loopback, each with its own storage in a temporary directory, and reads their
//!   access logs so tests can assert what a client actually fetched.
//! - [`image`] generates deterministic images (layers, configs, manifests, indexes
//!   in both Docker and OCI flavors) from a seed and pushes them over the Registry
//!   HTTP API V2, so runs are reproducible byte for byte.
//! - [`proxy`] is a small threaded HTTP/1.1 reverse proxy placed in front of a
//!   registry to add what `registry:2` cannot easily do on its own in a test: bearer
//!   token auth, injected failures (429/503 with `Retry-After`), slow bodies and
//!   connections dropped mid-blob.
//!
//! The `ferry-seed` binary (src/bin/ferry-seed.rs) uses the same pieces to fill a
//! running registry with a generated image set for benchmarks; it and
//! `ferry-push-rootfs` share their command-line parsing ([`args`]).
//!
//! The helpers panic with a descriptive message instead of returning errors: they
//! run inside tests, where a panic with context is the most useful failure report.

pub mod args;
pub mod charts;
pub mod files;
pub mod image;
pub mod nodes;
pub mod proxy;
pub mod registry;
mod rng;

#[cfg(test)]
mod selftest;

pub use files::{Fault, FileServer};
pub use image::{Blob, Flavor, Image, PlatformImage};
pub use proxy::{Proxy, ProxyOptions};
pub use registry::{dead_url, free_port, Registry, RegistryOptions};

/// The `sha256:<hex>` digest of `data`, as used in descriptors and by registries.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
