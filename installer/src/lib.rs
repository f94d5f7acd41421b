//! The site side of Ferry, as a library the thin `ferry-installer` binary (and the
//! tests) call in-process: checking and unpacking bundles
//! ([`bundle`]), collecting a store's garbage ([`gc`]), the embedded registry ([`registry`]), pushing a store into a
//! site's own registry ([`push`]), the site's PKI ([`pki`]) and installing the
//! cluster ([`install`]).

pub mod bundle;
pub mod gc;
pub mod install;
pub mod pki;
pub mod push;
pub mod registry;
