//! `ferry-installer`: runs on the isolated site. It verifies and unpacks bundles,
//! serves their images from an embedded registry and (later) installs Kubernetes
//! from them. It never needs the internet.

mod registry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  ferry-installer serve --store ./store
  ferry-installer serve --store ./store --tls off --addr 127.0.0.1:5000

Exit codes:
  0  success
  1  failure (the message says which file, image or address)
  2  bad command line";

/// Verify, unpack and serve Ferry bundles on an isolated site.
#[derive(Parser)]
#[command(name = "ferry-installer", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the store as a registry that docker, containerd, podman, skopeo and helm pull from.
    Serve(registry::ServeArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => registry::serve(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
