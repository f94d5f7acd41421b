//! The site side of Ferry, as a library the thin `ferry-installer` binary (and the
//! install to come, and tests) call in-process: checking and unpacking bundles
//! ([`bundle`]), the embedded registry ([`registry`]) and the site's PKI ([`pki`]).

pub mod bundle;
pub mod install;
pub mod pki;
pub mod registry;
