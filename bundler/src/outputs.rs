//! Checks on the files a command is about to write, made before any network work:
//! an output may not be one of the command's inputs (writing it would destroy
//! that input), and it must be writable where it is named (its directory exists,
//! and it is not itself a directory), so a long run never ends in an error about
//! the output it could have reported at the start. A build also removes what an
//! earlier build of the same output, killed mid-write, left beside it.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// A file the command reads, and how the command line named it.
pub struct Input<'a> {
    /// `the spec`, `--lock`, `--key`, `--base`, ...
    pub named: &'a str,
    pub path: &'a Path,
}

/// Why an output cannot be written where the command line put it.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is one of the inputs: a bad command line (exit 2).
    #[error(
        "{output_named} {} is the same file as {input_named} {}: writing it would destroy it; name another output",
        output.display(),
        input.display()
    )]
    SameAsInput {
        output_named: String,
        output: PathBuf,
        input_named: String,
        input: PathBuf,
    },
    #[error("cannot write {}: the directory {} does not exist", output.display(), dir.display())]
    NoDirectory { output: PathBuf, dir: PathBuf },
    #[error("cannot write {}: {} is not a directory", output.display(), dir.display())]
    ParentNotADirectory { output: PathBuf, dir: PathBuf },
    #[error("cannot write {}: it is a directory", output.display())]
    IsADirectory { output: PathBuf },
    #[error("cannot write {}: {error}", output.display())]
    Io {
        output: PathBuf,
        error: std::io::Error,
    },
}

impl OutputError {
    /// Whether the command line contradicts itself (exit 2), rather than the file
    /// system refusing what it asks (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, OutputError::SameAsInput { .. })
    }
}

/// The directory `path` would be written into.
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks that `output` (named `output_named` on the command line, with the other
/// files the command writes beside it, `also`) can be written: its directory
/// exists, it is not a directory, and neither it nor any of `also` is the same file
/// (by device and inode, so links and other spellings count) as any of `inputs`.
pub fn check(
    output_named: &str,
    output: &Path,
    also: &[PathBuf],
    inputs: &[Input<'_>],
) -> Result<(), OutputError> {
    let dir = parent_dir(output);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(OutputError::ParentNotADirectory {
                output: output.to_path_buf(),
                dir: dir.to_path_buf(),
            })
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(OutputError::NoDirectory {
                output: output.to_path_buf(),
                dir: dir.to_path_buf(),
            })
        }
        Err(error) => {
            return Err(OutputError::Io {
                output: output.to_path_buf(),
                error,
            })
        }
    }
    if output.is_dir() {
        return Err(OutputError::IsADirectory {
            output: output.to_path_buf(),
        });
    }
    let inputs: Vec<(&Input<'_>, (u64, u64))> = inputs
        .iter()
        .filter_map(|i| {
            let m = std::fs::metadata(i.path).ok()?;
            Some((i, (m.dev(), m.ino())))
        })
        .collect();
    for written in std::iter::once(output).chain(also.iter().map(PathBuf::as_path)) {
        let Ok(m) = std::fs::metadata(written) else {
            continue;
        };
        let id = (m.dev(), m.ino());
        if let Some((input, _)) = inputs.iter().find(|(_, i)| *i == id) {
            return Err(OutputError::SameAsInput {
                output_named: output_named.to_string(),
                output: written.to_path_buf(),
                input_named: input.named.to_string(),
                input: input.path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Removes the temporary files an earlier build of `output` left when it was
/// killed: `OUT.tmp-PID`, and with `--split` `OUT.NNN.tmp-PID`, whose process is
/// gone (a build under way keeps its own). Returns the paths removed.
pub fn remove_stale_temps(output: &Path) -> Result<Vec<PathBuf>, OutputError> {
    let dir = parent_dir(output);
    let io = |error| OutputError::Io {
        output: output.to_path_buf(),
        error,
    };
    let Some(base) = output.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some((part, pid)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base)?.rsplit_once(".tmp-"))
        else {
            continue;
        };
        let is_part = part.is_empty()
            || part
                .strip_prefix('.')
                .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()));
        let gone = pid.parse::<u32>().is_ok_and(ferry::store::process_is_gone);
        if is_part && gone {
            let path = output.with_file_name(&name);
            std::fs::remove_file(&path).map_err(io)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_that_is_an_input_by_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.toml");
        std::fs::write(&spec, "x").unwrap();
        let link = dir.path().join("link.toml");
        std::fs::hard_link(&spec, &link).unwrap();
        let inputs = [Input {
            named: "the spec",
            path: &spec,
        }];
        let e = check("-o", &link, &[], &inputs).unwrap_err();
        assert!(e.is_usage(), "{e}");
        check("-o", &dir.path().join("new.lock"), &[], &inputs).unwrap();
        let e = check("-o", dir.path(), &[], &inputs).unwrap_err();
        assert!(e.to_string().ends_with("it is a directory"), "{e}");
        let e = check("-o", &spec.join("x"), &[], &inputs).unwrap_err();
        assert!(e.to_string().ends_with("is not a directory"), "{e}");
    }
}
