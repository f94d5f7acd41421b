//! The README's commands work as written, in a fresh copy of the repository: the
//! regression test for `cargo build --release` building only the test kit (issue
//! "make room for install", item 0).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The commands of the README's "Use, with internet" block up to the first one
/// that needs the internet (`lock`): build, PATH, keygen.
fn offline_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("## Use, with internet")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```sh block under \"## Use, with internet\"");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take_while(|l| !l.contains(" lock "))
        .map(str::to_string)
        .collect()
}

/// Copies the repository's tracked and untracked-but-not-ignored files (what a
/// clone of this tree holds) into `to`.
fn fresh_copy(repo: &Path, to: &Path) {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo)
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    for rel in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).expect("utf-8 path"));
        let from = repo.join(rel);
        if !from.exists() {
            continue; // deleted in the work tree, not yet in the index
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn release_build_as_the_readme_says_gives_both_binaries_and_nothing_else() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let commands = offline_commands(&readme);
    assert_eq!(
        commands.first().map(String::as_str),
        Some("cargo build --release"),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("export PATH=")),
        "{commands:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("ferry");
    fresh_copy(&repo, &clone);
    // The copy's target/ lives beside the suite's own, so a second run of this
    // test rebuilds only what changed (the README's PATH line names target/).
    let exe = std::env::current_exe().unwrap();
    let target_root = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let persistent = target_root.join("readme-fresh-copy");
    std::fs::create_dir_all(&persistent).unwrap();
    std::os::unix::fs::symlink(&persistent, clone.join("target")).unwrap();
    let release = persistent.join("release");
    for stale in [
        "ferry-bundler",
        "ferry-installer",
        "ferry-seed",
        "ferry-push-rootfs",
    ] {
        let _ = std::fs::remove_file(release.join(stale));
    }

    let script = format!(
        "set -euo pipefail\n{}\ncommand -v ferry-bundler ferry-installer\nferry-bundler --version\nferry-installer --version\n",
        commands.join("\n")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&clone)
        .env_remove("CARGO_TARGET_DIR")
        .env("FERRY_KEY_PASSWORD", "readme-test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README's commands failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bin in ["ferry-bundler", "ferry-installer"] {
        let path = clone.join("target/release").join(bin);
        assert!(
            stdout.contains(&path.display().to_string()),
            "{bin} is not the one just built: {stdout}"
        );
        // The installer travels in every bundle: no debug info in release builds.
        let size = std::fs::metadata(release.join(bin)).unwrap().len();
        assert!(size < 20 << 20, "{bin} is {size} bytes: debug info kept?");
    }
    for kit in ["ferry-seed", "ferry-push-rootfs"] {
        assert!(
            !release.join(kit).exists(),
            "`cargo build --release` built the test kit's {kit}"
        );
    }
    // keygen ran in the copy, as the README says.
    assert!(clone.join("release.key").is_file() && clone.join("release.pub").is_file());
}
