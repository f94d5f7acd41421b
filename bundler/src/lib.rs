//! The office side of Ferry, as a library the thin `ferry-bundler` binary calls:
//! mirror rules ([`mirrors`]), resolving
//! a spec into a lock ([`resolve`]), pulling into the store ([`pull`]), signing keys
//! ([`keys`]), building the bundle ([`build`]) and checking the files a command
//! writes before it starts ([`outputs`]); an endpoint's failures are warned of once
//! per kind and counted (`failures`). The only Ferry code that talks to the
//! internet.

pub mod build;
pub mod charts;
mod download;
mod failures;
pub mod keys;
pub mod mirrors;
pub mod outputs;
pub mod pull;
pub mod resolve;
