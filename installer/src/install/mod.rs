//! Installing Kubernetes from a bundle: the cluster inventory ([`inventory`]) and
//! its commented example ([`example`]), the pure renderers of each node's files
//! ([`render`]) and the plan that writes them per node ([`plan`]); applying a plan
//! to the nodes ([`apply`], over [`transport`], after [`preflight`]), undoing it
//! ([`reset`]), the cluster's state directory and the record of whose it is
//! ([`state`]), and the commands that run these ([`commands`]).

use std::sync::Mutex;

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
pub mod state;
pub mod steps;
pub mod transport;

#[cfg(test)]
mod tests;

/// Runs `f` for each item, at most `jobs` at once; every error is kept.
pub(crate) fn parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> anyhow::Result<()> + Sync,
) -> Vec<anyhow::Error> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                if let Err(e) = f(item) {
                    errors.lock().expect("the error list").push(e);
                }
            });
        }
    });
    errors.into_inner().expect("the error list")
}
