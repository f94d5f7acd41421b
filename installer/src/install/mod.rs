//! Installing Kubernetes from a bundle: the cluster inventory ([`inventory`]) and
//! its commented example ([`example`]). Rendering each node's files, the plan and
//! applying it over SSH come next, beside these.

pub mod example;
pub mod inventory;

#[cfg(test)]
mod tests;
