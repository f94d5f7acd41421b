//! The shared format of Ferry, used by both `ferry-bundler` and `ferry-installer`:
//! release specs and locks; image references, platforms and digests; manifest
//! parsing; the OCI image layout store that bundles are made of; the bundle archive
//! (write and read) and its signatures. No terminal UI, no network, no policy:
//! progress is reported through [`progress::Progress`].

pub mod addons;
pub mod digest;
pub mod file_spec;
pub mod gc;
pub mod interrupt;
pub mod lock;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;
pub mod spec;
pub mod store;
pub mod toml_file;

pub use digest::Digest;
pub use platform::Platform;
pub use reference::Reference;
pub mod archive;
pub mod artifact;
pub mod direct;
pub mod pipe;
pub mod progress;
pub mod signing;
