//! The one way Ferry reads a TOML file it is given (release specs, locks, mirror
//! rules, and the inventories to come), so each reports a bad file the same way: one
//! line naming the file and the line, `path:line: message`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum TomlError {
    #[error("cannot read {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads the text of the `what` (for messages: "spec", "lock") at `path`.
pub fn read(path: &Path, what: &'static str) -> Result<String, TomlError> {
    std::fs::read_to_string(path).map_err(|error| TomlError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })
}

/// Parses `text`, read from `path` (named in errors only), into a `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        TomlError::Syntax {
            path: path.to_path_buf(),
            line,
            message: e.message().replace('\n', " "),
        }
    })
}

/// The 1-based line of a byte offset, for error messages.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let e = parse::<T>(Path::new("x.toml"), "\n\nb = 1\n").unwrap_err();
        assert!(
            e.to_string().starts_with("x.toml:3: unknown field `b`"),
            "{e}"
        );
        let e = read(Path::new("/nonexistent/x.toml"), "spec").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read spec /nonexistent/x.toml: "),
            "{e}"
        );
    }
}
