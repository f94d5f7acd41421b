//! The command lines of both binaries: `--help` of every subcommand, `--version`
//! with the git commit, and the shell completions and man pages generated from the
//! clap definitions, checked with the real shells and `man`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{Run, Session};

const BINS: [&str; 2] = ["ferry-bundler", "ferry-installer"];

fn ferry(s: &Session, bin: &str, args: &[&str]) -> Run {
    match bin {
        "ferry-bundler" => s.bundler(args),
        "ferry-installer" => s.installer(args),
        other => unreachable!("{other}"),
    }
}

/// What each binary must offer (more is fine: the tests walk what `--help` lists).
fn expected(bin: &str) -> &'static [&'static str] {
    match bin {
        "ferry-bundler" => &[
            "keygen",
            "lock",
            "pull",
            "build",
            "inspect",
            "completions",
            "man",
        ],
        _ => &[
            "verify",
            "unpack",
            "inspect",
            "serve",
            "init-cluster",
            "plan",
            "completions",
            "man",
        ],
    }
}

/// The subcommands `--help` lists under `Commands:` (without `help`).
fn subcommands(s: &Session, bin: &str) -> Vec<String> {
    let help = ferry(s, bin, &["--help"]).success().stdout;
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for want in expected(bin) {
        assert!(
            listed.iter().any(|n| n == want),
            "{bin} --help does not list {want}:\n{help}"
        );
    }
    listed
}

/// Tools the checks use, installed by .ci/run.
fn require(tool: &str, package: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        "{tool} is not installed: apt-get install {package} (.ci/run does)"
    );
}

#[test]
fn every_subcommand_has_help_with_examples_and_a_bare_call_is_a_usage_error() {
    let s = Session::new();
    for bin in BINS {
        for sub in subcommands(&s, bin) {
            let run = ferry(&s, bin, &[&sub, "--help"]).success();
            assert!(
                run.stdout.contains(&format!("Usage: {bin} {sub}")),
                "{bin} {sub} --help:\n{}",
                run.stdout
            );
            assert!(
                run.stdout.contains("Examples:"),
                "{bin} {sub} --help shows no example:\n{}",
                run.stdout
            );
            // `help SUB` is the same text.
            assert_eq!(ferry(&s, bin, &["help", &sub]).success().stdout, run.stdout);
        }
        let bare = ferry(&s, bin, &[]);
        assert_eq!(bare.status.code(), Some(2), "{bin} with no arguments");
        assert!(
            bare.stderr.contains(&format!("Usage: {bin}")),
            "{}",
            bare.stderr
        );
        let unknown = ferry(&s, bin, &["frobnicate"]);
        assert_eq!(unknown.status.code(), Some(2), "{bin} frobnicate");
    }
}

#[test]
fn version_names_the_package_version_and_the_git_commit() {
    let s = Session::new();
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for bin in BINS {
        let out = ferry(&s, bin, &["--version"]).success().stdout;
        let prefix = format!("{bin} {} (commit ", env!("CARGO_PKG_VERSION"));
        let commit = out
            .trim_end()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{bin} --version: {out:?}"));
        match (&git, std::env::var("FERRY_GIT_COMMIT")) {
            (_, Ok(forced)) if !forced.is_empty() => assert_eq!(commit, forced),
            (Some(head), _) => assert_eq!(commit, head, "{bin} --version: {out:?}"),
            (None, _) => assert!(!commit.is_empty()),
        }
        assert_eq!(ferry(&s, bin, &["-V"]).success().stdout, out);
    }
}

#[test]
fn bash_completion_completes_subcommands_and_options() {
    let s = Session::new();
    for bin in BINS {
        let script = ferry(&s, bin, &["completions", "bash"]).success().stdout;
        let path = s.write(&format!("{bin}.bash"), &script);
        // Load it the way bash-completion does, then ask it what a user's <TAB> gets.
        let ask = |words: &[&str]| -> BTreeSet<String> {
            let line = words.join(" ");
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    r#"source "$0" || exit 9
f=$(complete -p {bin} | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$f" ] || exit 8
COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
"$f" {bin} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
                ))
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bash completion of {line:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let all = ask(&[bin, "''"]);
        for sub in expected(bin) {
            assert!(all.contains(*sub), "{bin} <TAB>: {all:?}");
        }
        let man = ask(&[bin, "ma"]);
        assert_eq!(man, BTreeSet::from(["man".to_string()]), "{bin} ma<TAB>");
        // Options of each subcommand (the part clap-rs/clap#6421 broke).
        for sub in expected(bin) {
            let opts = ask(&[bin, sub, "--"]);
            assert!(opts.contains("--help"), "{bin} {sub} --<TAB>: {opts:?}");
        }
        let (sub, partial, full) = match bin {
            "ferry-bundler" => ("lock", "--cross", "--cross-check"),
            _ => ("serve", "--client", "--client-timeout"),
        };
        let got = ask(&[bin, sub, partial]);
        assert_eq!(
            got,
            BTreeSet::from([full.to_string()]),
            "{bin} {sub} {partial}<TAB>"
        );
        let shells = ask(&[bin, "completions", "''"]);
        for sh in ["bash", "zsh", "fish"] {
            assert!(shells.contains(sh), "{bin} completions <TAB>: {shells:?}");
        }
    }
}

#[test]
fn zsh_fish_elvish_and_powershell_completions_are_generated_and_zsh_and_fish_parse_them() {
    require("zsh", "zsh");
    require("fish", "fish");
    let s = Session::new();
    for bin in BINS {
        let subs = subcommands(&s, bin);
        for (shell, marker) in [
            ("zsh", format!("#compdef {bin}")),
            ("fish", format!("complete -c {bin}")),
            ("elvish", format!("edit:completion:arg-completer[{bin}]")),
            (
                "powershell",
                format!("Register-ArgumentCompleter -Native -CommandName '{bin}'"),
            ),
        ] {
            let script = ferry(&s, bin, &["completions", shell]).success().stdout;
            assert!(
                script.contains(&marker),
                "{bin} completions {shell}: no {marker:?}"
            );
            for sub in &subs {
                assert!(script.contains(sub.as_str()), "{bin} {shell}: no {sub}");
            }
            let file = s.write(&format!("{bin}.{shell}"), &script);
            let check = match shell {
                "zsh" => Some(Command::new("zsh").arg("-n").arg(&file).output().unwrap()),
                "fish" => Some(
                    Command::new("fish")
                        .arg("--no-execute")
                        .arg(&file)
                        .output()
                        .unwrap(),
                ),
                _ => None,
            };
            if let Some(out) = check {
                assert!(
                    out.status.success(),
                    "{shell} rejects {bin}'s completions: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let bad = ferry(&s, bin, &["completions", "tcsh"]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
    }
}

/// `man -l FILE`, rendered as text; groff's warnings must be empty.
fn render_man(file: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-P", "cat", "-l"])
        .arg(file)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "man -l {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        warnings.trim().is_empty(),
        "man warns about {}:\n{warnings}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_prints_the_page_and_writes_one_per_subcommand_that_man_renders() {
    require("man", "man-db");
    let s = Session::new();
    for bin in BINS {
        let subs = subcommands(&s, bin);
        let page = ferry(&s, bin, &["man"]).success().stdout;
        assert!(
            page.contains(&format!(".TH {bin} 1")),
            "{bin} man: {page:.300}"
        );
        let stdout_page = s.write(&format!("{bin}.stdout.1"), &page);
        let text = render_man(&stdout_page);
        assert!(text.contains("SUBCOMMANDS"), "{text}");
        for sub in &subs {
            assert!(
                text.contains(&format!("{bin}-{sub}(1)")),
                "{bin}.1 does not name {sub}:\n{text}"
            );
        }

        let dir = s.path(&format!("man-{bin}"));
        let run = ferry(&s, bin, &["man", "--out", dir.to_str().unwrap()]).success();
        assert!(
            run.stdout.contains("wrote man pages into"),
            "{}",
            run.stdout
        );
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut want: Vec<String> = subs.iter().map(|sub| format!("{bin}-{sub}.1")).collect();
        want.push(format!("{bin}.1"));
        want.sort();
        assert_eq!(files, want);
        for sub in &subs {
            let text = render_man(&dir.join(format!("{bin}-{sub}.1")));
            assert!(text.contains("SYNOPSIS"), "{text}");
            assert!(text.contains(&format!("{bin} {sub}")), "{text}");
        }
        // The same page on stdout and in the directory.
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{bin}.1"))).unwrap(),
            page
        );
    }
}

#[test]
fn completions_and_man_survive_a_closed_pipe() {
    // `ferry-bundler man | head -1` must end quietly, not panic on the broken pipe.
    let s = Session::new();
    for bin in BINS {
        // Built by the first run; the binaries sit next to the test's deps/ directory.
        ferry(&s, bin, &["--version"]).success();
        let exe = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join(bin);
        for args in [&["man"][..], &["completions", "bash"]] {
            let mut child = Command::new(&exe)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Close the reading end before the program writes.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{bin} {args:?}: {stderr}");
            assert!(out.status.success(), "{bin} {args:?}: {stderr}");
        }
    }
}

/// Regression: `ferry-bundler lock ... 2>&1 | head -2` panicked (exit 101, a
/// backtrace) once `head` had gone: every line went through `eprintln!`. With
/// stderr closed, the work is done and the exit code is the work's.
#[test]
fn a_closed_stderr_neither_panics_nor_stops_the_work() {
    let s = Session::new();
    ferry(&s, "ferry-bundler", &["--version"]).success();
    let exe = |bin: &str| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join(bin)
    };
    let run = |bin: &str, args: &[&str]| {
        let mut child = Command::new(exe(bin))
            .args(args)
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        child.wait().unwrap().code()
    };
    // Its report lines go to the closed stderr; the keys are written all the same.
    let code = run(
        "ferry-bundler",
        &["keygen", "--out", "keys", "--name", "k", "--no-password"],
    );
    assert_eq!(code, Some(0));
    assert!(s.path("keys/k.key").is_file() && s.path("keys/k.pub").is_file());
    // An error line to the closed stderr: the error's exit code, not a panic's 101.
    for bin in BINS {
        let code = run(bin, &["verify", "nope.tar.zst", "--key", "keys/k.pub"]);
        let code = if bin == "ferry-bundler" {
            run(
                bin,
                &["pull", "nope.toml", "--lock", "nope.lock", "--store", "st"],
            )
        } else {
            code
        };
        assert_eq!(code, Some(1), "{bin}");
    }
}

/// Regression: every I/O error printed its cause twice (a library error showing its
/// source, and the error chain showing it again): `ferry-bundler pull s.toml --lock
/// nope.lock` said "No such file or directory (os error 2)" twice. No error line
/// may repeat a `: `-separated segment, and each names the file at fault.
#[test]
fn no_error_line_repeats_a_cause() {
    let s = Session::new();
    s.write(
        "s.toml",
        &common::spec(&["linux/amd64"], &["registry.k8s.io/pause:3.10"]),
    );
    s.write("not-a-bundle.tar.zst", "hello");
    std::fs::create_dir(s.path("plain")).unwrap();
    let cases: [(&str, &[&str], &str); 12] = [
        (
            "ferry-bundler",
            &["pull", "s.toml", "--lock", "nope.lock", "--store", "st"],
            "nope.lock",
        ),
        ("ferry-bundler", &["lock", "missing.toml"], "missing.toml"),
        (
            "ferry-bundler",
            &["lock", "s.toml", "--mirrors", "nope.toml"],
            "nope.toml",
        ),
        (
            "ferry-bundler",
            &["build", "s.toml", "--key", "nope.key", "-o", "b.tar.zst"],
            "cannot read the secret key nope.key",
        ),
        (
            "ferry-bundler",
            &["inspect", "nope.tar.zst"],
            "nope.tar.zst",
        ),
        (
            "ferry-bundler",
            &["pull", "s.toml", "--store", "st", "--ca-cert", "nope.pem"],
            "nope.pem",
        ),
        (
            "ferry-installer",
            &["verify", "not-a-bundle.tar.zst", "--key", "nope.pub"],
            "cannot read the public key nope.pub",
        ),
        (
            "ferry-installer",
            &[
                "unpack",
                "nope.tar.zst",
                "--key",
                "nope.pub",
                "--store",
                "st",
            ],
            "nope.pub",
        ),
        (
            "ferry-installer",
            &["inspect", "nope.tar.zst"],
            "nope.tar.zst",
        ),
        (
            "ferry-installer",
            &["inspect", "not-a-bundle.tar.zst"],
            "not-a-bundle.tar.zst",
        ),
        (
            "ferry-installer",
            &["serve", "--store", "plain", "--tls", "off"],
            "plain",
        ),
        (
            "ferry-installer",
            &["serve", "--store", "plain", "--htpasswd", "nope.htpasswd"],
            "nope.htpasswd",
        ),
    ];
    for (bin, args, names) in cases {
        let run = ferry(&s, bin, args);
        assert!(
            matches!(run.status.code(), Some(1 | 3)),
            "{bin} {args:?} should fail: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let line = run.error_line().to_string();
        assert!(
            line.contains(names),
            "{bin} {args:?} does not name {names}: {line}"
        );
        let segments: Vec<&str> = line.split(": ").map(str::trim).collect();
        let unique: BTreeSet<&str> = segments.iter().copied().collect();
        assert_eq!(
            unique.len(),
            segments.len(),
            "{bin} {args:?} repeats a cause: {line}"
        );
    }
}

/// A store whose `index.json` was damaged (a field of the wrong type, a file cut
/// short) is named with the file, the field and the line, by every command that
/// reads it. oci-spec's own error says only "serde failed".
#[test]
fn a_damaged_index_json_is_named_with_its_line() {
    let s = Session::new();
    std::fs::create_dir(s.path("st")).unwrap();
    s.write("st/oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
    let damages = [
        (
            "{\"schemaVersion\":2,\n\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\n\"size\":\"x\"}]}\n",
            "at line 3 column",
        ),
        ("{\"schemaVersion\":2,\n\"manifests\":[{\"mediaType\"", "EOF while parsing"),
    ];
    for (text, culprit) in damages {
        s.write("st/index.json", text);
        for args in [
            &[
                "serve",
                "--store",
                "st",
                "--tls",
                "off",
                "--addr",
                "127.0.0.1:0",
            ][..],
            &["push", "--store", "st", "--to", "http://127.0.0.1:1/x"][..],
        ] {
            let run = s.installer(args).failure();
            let line = run.error_line();
            assert!(
                line.contains("st/index.json is damaged"),
                "{args:?}: {line}"
            );
            assert!(line.contains(culprit), "{args:?}: {line}");
            assert!(!line.contains("serde failed"), "{args:?}: {line}");
        }
    }
}

#[test]
fn init_cluster_writes_a_commented_inventory_and_keeps_an_existing_one() {
    let s = Session::new();
    let run = s.installer(&["init-cluster", "--nodes", "4"]).success();
    assert!(
        run.stdout
            .contains("wrote cluster.toml (cluster ferry, 4 node(s))"),
        "{}",
        run.stdout
    );
    let text = s.read("cluster.toml");
    let inv =
        ferry_installer::install::inventory::Inventory::parse(Path::new("cluster.toml"), &text)
            .unwrap();
    assert_eq!(inv.nodes.len(), 4);
    // Every field is explained: each key line has a comment above it or in its table.
    for key in [
        "control_plane_endpoint",
        "pod_cidr",
        "proxy_mode",
        "vip",
        "virtual_router_id",
    ] {
        assert!(text.contains(key), "{key}");
    }
    assert!(text.lines().filter(|l| l.starts_with('#')).count() > 20);
    s.write("cluster.toml", "mine");
    let refused = s.installer(&["init-cluster"]).failure();
    assert!(
        refused.error_line().contains("cluster.toml exists"),
        "{}",
        refused.stderr
    );
    assert_eq!(s.read("cluster.toml"), "mine");
    s.installer(&["init-cluster", "--force", "-o", "cluster.toml"])
        .success();
    assert_ne!(s.read("cluster.toml"), "mine");
    // Named after its file, so inventories side by side get states of their own;
    // the default file, and a stem no cluster may take, keep "ferry".
    for (file, name) in [
        ("lab.toml", "lab"),
        ("site-2", "site-2"),
        ("Site_A.toml", "ferry"),
    ] {
        s.installer(&["init-cluster", "-o", file]).success();
        let text = s.read(file);
        assert!(text.contains(&format!("\nname = \"{name}\"\n")), "{file}");
        assert!(
            text.contains(&format!("ferry-installer plan {file} --store")),
            "{file}"
        );
    }
    // A missing directory is said of the file asked for, not of a temporary one.
    let run = s
        .installer(&["init-cluster", "-o", "nodir/x.toml"])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: cannot write nodir/x.toml: No such file or directory (os error 2)"
    );
}
