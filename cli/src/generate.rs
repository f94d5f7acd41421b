//! Shell completions and man pages for both binaries, generated from their clap
//! definitions (the `completions` and `man` subcommands).

use std::io::{self, Write as _};
use std::path::Path;

pub use clap_complete::Shell;

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error.
fn print(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// clap_complete 4.6 spells the bash state of a subcommand of a hyphenated binary
/// two ways (`ferry__bundler__subcmd__lock` in the word loop,
/// `ferry__subcmd__bundler__subcmd__lock` in the case arms), so nothing after a
/// subcommand ever completes (clap-rs/clap#6421). Use the loop's spelling for both;
/// once clap is fixed this replaces nothing. tests/cli.rs checks the completions.
fn fix_bash_hyphen(script: &[u8], name: &str) -> Vec<u8> {
    let parts: Vec<&str> = name.split('-').collect();
    if parts.len() < 2 {
        return script.to_vec();
    }
    let wrong = format!("{}__subcmd__", parts.join("__subcmd__"));
    let right = format!("{}__subcmd__", parts.join("__"));
    String::from_utf8_lossy(script)
        .replace(&wrong, &right)
        .into_bytes()
}

/// Prints the completion script of `command` for `shell`.
pub fn print_completions(mut command: clap::Command, shell: Shell) -> io::Result<()> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, &name, &mut script);
    if shell == Shell::Bash {
        script = fix_bash_hyphen(&script, &name);
    }
    print(&script)
}

/// Prints the man page of `command` (roff).
pub fn print_man(command: clap::Command) -> io::Result<()> {
    let mut page = Vec::new();
    // As generate_to does: there is no page for `help`, so the page names none.
    clap_mangen::Man::new(command.disable_help_subcommand(true)).render(&mut page)?;
    print(&page)
}

/// Writes NAME.1 and NAME-SUBCOMMAND.1 into `dir`.
pub fn write_man(command: clap::Command, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)
}

/// `completions SHELL`: the script on stdout.
pub fn completions(command: clap::Command, shell: Shell) -> anyhow::Result<()> {
    use anyhow::Context as _;
    print_completions(command, shell).context("cannot write to stdout")
}

/// `man [--out DIR]`: the page on stdout, or every page into DIR.
pub fn man(command: clap::Command, out: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match out {
        Some(dir) => {
            write_man(command, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            crate::out!("wrote man pages into {}", dir.display());
            Ok(())
        }
        None => print_man(command).context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bash_fix_rewrites_only_the_misspelt_state() {
        let s = b"ferry__subcmd__bundler__subcmd__lock ferry__bundler__subcmd__pull";
        assert_eq!(
            super::fix_bash_hyphen(s, "ferry-bundler"),
            b"ferry__bundler__subcmd__lock ferry__bundler__subcmd__pull".to_vec()
        );
    }
}
