//! The embedded registry (`ferry-installer serve`): the distribution API over the
//! store, in place. Being built; see the registry issue.

use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `ferry-installer serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The OCI image layout to serve.
    #[arg(long)]
    pub store: PathBuf,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "serve is not built yet (store {})",
        args.store.display()
    )
}
