//! `ferry-installer`: runs on the isolated site. It will verify and unpack bundles,
//! serve their images from an embedded registry and install Kubernetes from them;
//! those commands arrive with their issues. It never needs the internet.

use clap::Parser;

/// Verify, unpack and serve Ferry bundles on an isolated site (commands to come).
#[derive(Parser)]
#[command(name = "ferry-installer", version, arg_required_else_help = true)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
}
