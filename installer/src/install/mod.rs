//! Installing Kubernetes from a bundle: the cluster inventory ([`inventory`]) and
//! its commented example ([`example`]), the pure renderers of each node's files
//! ([`render`]) and the plan that writes them per node ([`plan`]). Applying it over
//! SSH comes next, beside these.

pub mod addons;
pub mod apply;
pub mod commands;
pub mod contents;
pub mod example;
pub mod inventory;
pub mod plan;
pub mod preflight;
pub mod programs;
pub mod render;
pub mod reset;
pub mod steps;
pub mod transport;

#[cfg(test)]
mod tests;
