//! The shared format of Ferry, used by both `ferry-bundler` and `ferry-installer`:
//! release specs, mirror rules and locks; image references, platforms and digests;
//! manifest parsing; and the OCI image layout store that bundles are made of.

pub mod digest;
pub mod lock;
pub mod manifest;
pub mod media;
pub mod mirrors;
pub mod platform;
pub mod reference;
pub mod spec;
pub mod store;

pub use digest::Digest;
pub use platform::Platform;
pub use reference::Reference;
pub mod archive;
#[cfg(feature = "cli")]
pub mod cli;
pub mod pipe;
pub mod progress;
pub mod signing;
