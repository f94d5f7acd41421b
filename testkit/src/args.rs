//! Plain-std command-line parsing for the small bins of this crate (`ferry-seed`,
//! `ferry-push-rootfs`): a handful of flags each, so no argument-parsing dependency.
//!
//! Flags take their value as `--flag value` or `--flag=value`; `-h`/`--help` prints
//! the usage; a bad command line prints the error and the usage and exits with 2.

use std::process::ExitCode;

/// A platform as `(os, arch, variant)`.
pub type Platform = (String, String, Option<String>);

/// `OS/ARCH` or `OS/ARCH/VARIANT` with no part empty; `None` for anything else.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => {
            Some((os.to_string(), arch.to_string(), None))
        }
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Some((os.to_string(), arch.to_string(), Some(variant.to_string())))
        }
        _ => None,
    }
}

/// The value of `--registry`, without trailing slashes.
pub fn registry_value(v: String) -> String {
    v.trim_end_matches('/').to_string()
}

/// `--registry` must be an `http://` or `https://` URL.
pub fn check_registry(registry: &str) -> Result<(), String> {
    if !registry.starts_with("http://") && !registry.starts_with("https://") {
        return Err("--registry must be a URL like http://127.0.0.1:5000".into());
    }
    Ok(())
}

/// The flags of a command line, one after another.
pub struct Flags<'a> {
    it: std::slice::Iter<'a, String>,
}

/// One flag: its name, and its value if written inline (`--flag=value`).
pub struct Flag {
    pub name: String,
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    pub fn new(argv: &'a [String]) -> Flags<'a> {
        Flags { it: argv.iter() }
    }

    /// The value of `flag`: inline, or the next argument.
    pub fn value(&mut self, flag: &Flag) -> Result<String, String> {
        flag.inline
            .clone()
            .or_else(|| self.it.next().cloned())
            .ok_or_else(|| format!("{} needs a value", flag.name))
    }
}

/// The next flag, `None` at the end, and `Err("")` for `-h` or `--help` (the caller
/// prints the usage).
impl Iterator for Flags<'_> {
    type Item = Result<Flag, String>;

    fn next(&mut self) -> Option<Result<Flag, String>> {
        let flag = self.it.next()?;
        if flag == "-h" || flag == "--help" {
            return Some(Err(String::new()));
        }
        // Both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        Some(Ok(Flag {
            name: name.to_string(),
            inline,
        }))
    }
}

/// The `main` of a bin called `prog`: parses the arguments (printing `usage` for
/// `--help`, or the error and `usage` with exit 2), then runs, and reports a failure
/// as `prog: error` with exit 1.
pub fn main<A>(
    prog: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<A, String>,
    run: impl FnOnce(&A) -> Result<(), String>,
) -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{prog}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_take_values_inline_or_next_and_help_stops() {
        let a = argv("--one=1 --two 2 --three");
        let mut flags = Flags::new(&a);
        let f = flags.next().unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), flags.value(&f)),
            ("--one", Ok("1".into()))
        );
        let f = flags.next().unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), flags.value(&f)),
            ("--two", Ok("2".into()))
        );
        let f = flags.next().unwrap().unwrap();
        assert_eq!(flags.value(&f), Err("--three needs a value".into()));
        assert!(flags.next().is_none());
        let h = argv("--help");
        assert_eq!(Flags::new(&h).next().unwrap().err(), Some(String::new()));
    }

    #[test]
    fn platforms_and_registries() {
        assert_eq!(
            parse_platform("linux/arm/v7"),
            Some(("linux".into(), "arm".into(), Some("v7".into())))
        );
        assert_eq!(parse_platform("linux"), None);
        assert_eq!(parse_platform("linux//"), None);
        assert_eq!(registry_value("http://x//".into()), "http://x");
        assert!(check_registry("http://x").is_ok());
        assert!(check_registry("x:5000").is_err());
    }
}
