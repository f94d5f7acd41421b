//! What `ferry-bundler` does with the files a user names: an output that is one of
//! the inputs, or that cannot be written where it is named, is refused before any
//! network work; keys, locks, stores and flag values that do not fit are named in
//! one line. Upstream content comes from a loopback registry:2.

mod common;

use common::store::sha256_file;
use common::{mirror_to, spec, Session};
use ferry_testkit::image::{self, layer, platform_image, Flavor, Image};
use ferry_testkit::registry::Registry;

const HOST: &str = "registry.example.io";

/// A session with mirrors at `reg` (serving one small image), a key pair
/// `k.{key,pub}`, the spec `spec.toml` and its lock `spec.lock`.
fn world(reg: &Registry) -> Session {
    world_of(reg, "apps/small", layer(71, 40_000))
}

/// [`world`] with the one image `repo:v1` of one layer `layer`.
fn world_of(reg: &Registry, repo: &str, layer: Vec<u8>) -> Session {
    let img = Image::single(platform_image(
        Flavor::Oci,
        "linux",
        "amd64",
        None,
        vec![layer],
    ));
    image::push(&reg.url(), repo, "v1", &img);
    let s = Session::new();
    s.write("mirrors.toml", &mirror_to(HOST, reg.url()));
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &[&format!("{HOST}/{repo}:v1")]),
    );
    s.bundler(&["keygen", "--name", "k", "--no-password"])
        .success();
    s.bundler(&common::LOCK).success();
    s
}

/// Every request the registry has answered so far.
fn requests(reg: &Registry) -> usize {
    reg.count_requests("GET", "/v2/") + reg.count_requests("HEAD", "/v2/")
}

/// Regression (audit, defect 1): `-o` naming an input destroyed it (the base bundle
/// replaced by a delta against itself, the signing key, the lock, the spec).
#[test]
fn an_output_that_is_an_input_is_refused_before_any_work_and_the_input_kept() {
    let reg = Registry::start();
    let s = world(&reg);
    let build = |out: &str, extra: &[&str]| {
        let mut args = common::build_args("spec.toml", "spec.lock", out);
        args.extend_from_slice(extra);
        s.bundler(&args)
    };
    build("base.tar.zst", &[]).success();
    std::fs::hard_link(s.path("base.tar.zst"), s.path("same-as-base.tar.zst")).unwrap();
    let kept = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| sha256_file(&s.path(n)))
            .collect::<Vec<_>>()
    };
    let inputs = [
        "base.tar.zst",
        "k.key",
        "spec.lock",
        "spec.toml",
        "mirrors.toml",
    ];
    let before = kept(&inputs);
    let asked = requests(&reg);

    let cases: [(&str, &[&str], &str); 6] = [
        (
            "base.tar.zst",
            &["--base", "base.tar.zst"],
            "-o base.tar.zst is the same file as --base base.tar.zst",
        ),
        (
            "./same-as-base.tar.zst",
            &["--base", "base.tar.zst"],
            "-o ./same-as-base.tar.zst is the same file as --base base.tar.zst",
        ),
        ("k.key", &[], "-o k.key is the same file as --key k.key"),
        (
            "spec.lock",
            &[],
            "-o spec.lock is the same file as --lock spec.lock",
        ),
        (
            "spec.toml",
            &[],
            "-o spec.toml is the same file as the spec spec.toml",
        ),
        (
            "mirrors.toml",
            &[],
            "-o mirrors.toml is the same file as --mirrors mirrors.toml",
        ),
    ];
    for (out, extra, says) in cases {
        let run = build(out, extra).usage();
        assert!(
            run.error_line().contains(says) && run.error_line().contains("name another output"),
            "{}",
            run.stderr
        );
    }
    // The bundle's signature is written too: it may not be an input either.
    // (`build_args` names the key at index 9.)
    std::fs::rename(s.path("k.key"), s.path("new.tar.zst.minisig")).unwrap();
    let mut args = common::build_args("spec.toml", "spec.lock", "new.tar.zst");
    args[9] = "new.tar.zst.minisig";
    let run = s.bundler(&args).usage();
    assert!(
        run.error_line()
            .contains("-o new.tar.zst.minisig is the same file as --key new.tar.zst.minisig"),
        "{}",
        run.stderr
    );
    std::fs::rename(s.path("new.tar.zst.minisig"), s.path("k.key")).unwrap();
    assert!(!s.path("new.tar.zst").exists());

    // lock: `-o` the spec itself, and a spec whose default output is itself.
    let run = s
        .bundler(&[
            "lock",
            "spec.toml",
            "--mirrors",
            "mirrors.toml",
            "-o",
            "spec.toml",
        ])
        .usage();
    assert!(
        run.error_line()
            .contains("-o spec.toml is the same file as the spec spec.toml"),
        "{}",
        run.stderr
    );
    std::fs::copy(s.path("spec.toml"), s.path("release.lock")).unwrap();
    let run = s
        .bundler(&["lock", "release.lock", "--mirrors", "mirrors.toml"])
        .usage();
    assert!(
        run.error_line().contains(
            "the default output (the spec's path with .lock) release.lock is the same file as the spec release.lock"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(s.read("release.lock"), s.read("spec.toml"));

    assert_eq!(kept(&inputs), before, "an input was changed");
    assert_eq!(
        requests(&reg),
        asked,
        "a refused command asked the registry"
    );
}

/// Regression (audit, defect 2): an output in a directory that does not exist, or
/// one that is a directory, was found only after all the work, and the error
/// named a temporary file (or the output twice).
#[test]
fn an_output_that_cannot_be_written_is_named_once_before_any_work() {
    let reg = Registry::start();
    let s = world(&reg);
    std::fs::create_dir(s.path("out")).unwrap();
    let asked = requests(&reg);

    let lock = |out: &str| {
        s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml", "-o", out])
            .failure()
    };
    let build = |out: &str| {
        s.bundler(&common::build_args("spec.toml", "spec.lock", out))
            .failure()
    };
    for (run, says) in [
        (
            lock("missing/x.lock"),
            "error: cannot write missing/x.lock: the directory missing does not exist",
        ),
        (lock("out"), "error: cannot write out: it is a directory"),
        (
            lock("spec.toml/x.lock"),
            "error: cannot write spec.toml/x.lock: spec.toml is not a directory",
        ),
        (
            build("missing/k7.tar.zst"),
            "error: cannot write missing/k7.tar.zst: the directory missing does not exist",
        ),
        (build("out"), "error: cannot write out: it is a directory"),
    ] {
        assert_eq!(run.error_line(), says, "{}", run.stderr);
    }
    assert_eq!(
        requests(&reg),
        asked,
        "a refused command asked the registry"
    );
    assert!(!s.path("store").exists(), "a refused build made the store");
    assert!(!s.path("missing").exists());
}

/// Regression (audit, defect 5): `pull` turned any directory into a store, writing
/// `blobs/`, `index.json` and `oci-layout` beside the user's files.
#[test]
fn a_directory_with_other_files_is_not_made_a_store_but_new_empty_and_existing_stores_are_used() {
    let reg = Registry::start();
    let s = world(&reg);
    s.write("notstore/readme.txt", "hi\n");
    let pull = |store: &str| {
        let mut args = common::LOCKED_PULL;
        args[7] = store;
        s.bundler(&args)
    };
    let run = pull("notstore").failure();
    assert_eq!(
        run.error_line(),
        "error: notstore is not empty and not a store (no oci-layout file): name a new or empty directory, or an existing store",
        "{}",
        run.stderr
    );
    assert_eq!(
        common::files_under(&s.path("notstore"))
            .into_iter()
            .map(|(rel, _)| rel)
            .collect::<Vec<_>>(),
        ["readme.txt"]
    );
    // lock --store is refused the same way, before it asks anything.
    let asked = requests(&reg);
    let run = s
        .bundler(&[
            "lock",
            "spec.toml",
            "--mirrors",
            "mirrors.toml",
            "-o",
            "again.lock",
            "--store",
            "notstore",
        ])
        .failure();
    assert!(
        run.error_line().contains("notstore is not empty"),
        "{}",
        run.stderr
    );
    assert_eq!(requests(&reg), asked);

    // An empty directory becomes a store; pulling into it again uses it as it is.
    std::fs::create_dir(s.path("empty")).unwrap();
    pull("empty").success();
    assert!(s.path("empty/oci-layout").exists());
    pull("empty").success();
    // build's default store, ~/.cache/ferry/store, is made and then reused.
    let cache = s.path("cache").display().to_string();
    let build = [
        "build",
        "spec.toml",
        "--lock",
        "spec.lock",
        "--mirrors",
        "mirrors.toml",
        "--key",
        "k.key",
        "-o",
        "k.tar.zst",
    ];
    s.bundler_env(&build, &[("XDG_CACHE_HOME", &cache)])
        .success();
    assert!(s.path("cache/ferry/store/oci-layout").exists());
    s.bundler_env(&build, &[("XDG_CACHE_HOME", &cache)])
        .success();
}

/// Regression (audit, defect 3): a public key given as `--key` was called
/// password-protected.
#[test]
fn a_public_key_given_as_the_signing_key_is_named_as_one() {
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &["registry.example.io/a:v1"]),
    );
    s.bundler(&["keygen", "--name", "ci", "--out", "keys", "--no-password"])
        .success();
    let run = s
        .bundler(&[
            "build",
            "spec.toml",
            "--key",
            "keys/ci.pub",
            "-o",
            "k.tar.zst",
        ])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: keys/ci.pub is a public key; --key needs the secret key (e.g. keys/ci.key)",
        "{}",
        run.stderr
    );
    assert!(!s.path("k.tar.zst").exists());
}

/// Regression (audit, defects 6 and 7): a malformed `--cred` printed the whole
/// value, password included, and exited 1.
#[test]
fn a_malformed_cred_is_a_usage_error_that_never_shows_the_password() {
    let s = Session::new();
    s.write(
        "spec.toml",
        &spec(&["linux/amd64"], &["registry.example.io/a:v1"]),
    );
    for (cred, says) in [
        (
            "myreg.example=admin/S3cretPassw0rd",
            "error: --cred myreg.example=…: expected HOST=USER:PASSWORD (no ':' between user and password; the rest is not shown)",
        ),
        (
            "admin:S3cretPassw0rd",
            "error: --cred …: expected HOST=USER:PASSWORD (no '=' after the host; the value is not shown, it may hold a password)",
        ),
        (
            "=admin:S3cretPassw0rd",
            "error: --cred =…: expected HOST=USER:PASSWORD (no host before '=')",
        ),
    ] {
        for sub in ["lock", "pull"] {
            let mut args = vec![sub, "spec.toml", "--cred", cred];
            if sub == "pull" {
                args.extend(["--store", "store"]);
            }
            let run = s.bundler(&args).usage();
            assert_eq!(
                run.stderr.lines().next(),
                Some(says),
                "{}",
                run.stderr
            );
            assert!(!run.stderr.contains("S3cret"), "{}", run.stderr);
            assert!(!run.stdout.contains("S3cret"), "{}", run.stdout);
        }
    }
    assert!(!s.path("store").exists());
    assert!(!s.path("spec.lock").exists());
}

/// Regression (audit, defect 4): `build` took a lock written for another release
/// (the spec's version changed to 2.0.0 built "test 2.0.0" from the 1.0.0 lock).
#[test]
fn a_lock_written_for_another_release_is_refused_naming_both() {
    let reg = Registry::start();
    let s = world(&reg);
    let spec_text = s.read("spec.toml");
    let asked = requests(&reg);
    for (edited, says) in [
        (
            spec_text.replace("version = \"1.0.0\"", "version = \"2.0.0\""),
            "error: spec.lock: the lock is for test 1.0.0, the spec for test 2.0.0: run `ferry-bundler lock` again",
        ),
        (
            spec_text.replace("name = \"test\"", "name = \"bench\""),
            "error: spec.lock: the lock is for test 1.0.0, the spec for bench 1.0.0: run `ferry-bundler lock` again",
        ),
    ] {
        assert_ne!(edited, spec_text);
        s.write("spec.toml", &edited);
        let run = s
            .bundler(&common::build_args("spec.toml", "spec.lock", "k.tar.zst"))
            .failure();
        assert_eq!(run.error_line(), says, "{}", run.stderr);
        let run = s.bundler(&common::LOCKED_PULL).failure();
        assert_eq!(run.error_line(), says, "{}", run.stderr);
    }
    assert!(!s.path("k.tar.zst").exists());
    assert!(!s.path("store").exists());
    assert_eq!(requests(&reg), asked);
}

/// Regression (audit, defect 6): flag values checked by hand exited 1 with a
/// message that contradicted itself ("--connect-timeout must be between 0 and 600
/// seconds" for 0), and a bad SOURCE_DATE_EPOCH was found only after the pull.
#[test]
fn flag_values_out_of_range_are_usage_errors_saying_the_true_range() {
    let reg = Registry::start();
    let s = world(&reg);
    let asked = requests(&reg);
    for (flag, value, says) in [
        (
            "--connect-timeout",
            "0",
            "error: invalid value '0' for '--connect-timeout <SECONDS>': must be more than 0 and at most 600 seconds",
        ),
        (
            "--stall-timeout",
            "0",
            "error: invalid value '0' for '--stall-timeout <SECONDS>': must be more than 0 and at most 600 seconds",
        ),
        (
            "--stall-timeout",
            "soon",
            "error: invalid value 'soon' for '--stall-timeout <SECONDS>': not a number of seconds (e.g. 3 or 0.5)",
        ),
        (
            "--head-start",
            "601",
            "error: invalid value '601' for '--head-start <SECONDS>': must be from 0 (ask every endpoint at once) to 600 seconds",
        ),
    ] {
        let run = s.bundler(&[&common::LOCK[..], &[flag, value]].concat()).usage();
        assert_eq!(run.stderr.lines().next(), Some(says), "{}", run.stderr);
    }
    let run = s
        .bundler_env(
            &common::build_args("spec.toml", "spec.lock", "k.tar.zst"),
            &[("SOURCE_DATE_EPOCH", "abc")],
        )
        .failure();
    assert_eq!(
        run.error_line(),
        "error: SOURCE_DATE_EPOCH=\"abc\" is not a whole number of seconds since 1970 (unset it for 0)",
        "{}",
        run.stderr
    );
    assert!(!s.path("store").exists(), "it pulled first");
    assert_eq!(requests(&reg), asked);

    // --head-start 0, as its help says, asks every endpoint at once: it works.
    s.bundler(&[
        "lock",
        "spec.toml",
        "--mirrors",
        "mirrors.toml",
        "--head-start",
        "0",
        "-o",
        "zero.lock",
    ])
    .success();
    assert_eq!(s.read("zero.lock"), s.read("spec.lock"));
    let help = s.bundler(&["lock", "--help"]).success().stdout;
    assert!(help.contains("0 asks every endpoint at once"), "{help}");
}

/// Regression (audit, defect 8): `keygen --name ""` wrote hidden `.key`/`.pub`,
/// `--name ../escape --out keys` wrote outside `--out`, and `--out` naming a file
/// said "File exists".
#[test]
fn keygen_refuses_names_that_are_paths_empty_or_hidden_and_an_out_that_is_a_file() {
    let s = Session::new();
    s.write("spec.toml", "name = \"x\"\n");
    for (name, says) in [
        ("", "the name is empty"),
        (
            "../escape",
            "a name, not a path: use --out for the directory",
        ),
        ("sub/k", "a name, not a path: use --out for the directory"),
        (
            ".hidden",
            "the name may not start with '.' (the keys would be hidden files)",
        ),
    ] {
        let run = s
            .bundler(&["keygen", "--no-password", "--name", name, "--out", "keys"])
            .usage();
        assert_eq!(
            run.stderr.lines().next(),
            Some(format!("error: invalid value '{name}' for '--name <NAME>': {says}").as_str()),
            "{}",
            run.stderr
        );
    }
    let run = s
        .bundler(&["keygen", "--no-password", "--out", "spec.toml"])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: --out spec.toml is not a directory",
        "{}",
        run.stderr
    );
    let left: Vec<String> = common::files_under(s.dir.path())
        .into_iter()
        .map(|(rel, _)| rel)
        .collect();
    assert_eq!(left, ["spec.toml"], "keygen wrote something");
    assert!(!s.path("keys").exists());
    // A plain name still works.
    s.bundler(&["keygen", "--no-password", "--name", "ci", "--out", "keys"])
        .success();
    assert!(s.path("keys/ci.key").exists() && s.path("keys/ci.pub").exists());
}

/// A process id no process has: a child that has been waited for.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    pid
}

/// The temporary files beside `out` in the session: `OUT.tmp-PID`, `OUT.NNN.tmp-PID`.
fn temps(s: &Session, out: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(out) && n.contains(".tmp-"))
        .collect();
    names.sort();
    names
}

/// Regression (audit, defect 9): a build killed midway left `OUT.tmp-PID` (and a
/// killed pull `store/.ferry/tmp/*.tmp`) that later runs never removed.
#[test]
fn a_build_killed_midway_leaves_temp_files_that_the_next_build_and_pull_remove() {
    let reg = Registry::start();
    let s = world_of(&reg, "apps/big", layer(91, 48 << 20));
    s.bundler(&common::LOCKED_PULL).success();

    // Killed (SIGKILL, as the OOM killer or a closed session does) once it writes.
    let build = common::build_args("spec.toml", "spec.lock", "k.tar.zst");
    let mut child = s.spawn_bundler(&build);
    let started = std::time::Instant::now();
    while temps(&s, "k.tar.zst").is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it was killed"
        );
        assert!(started.elapsed().as_secs() < 60, "no temp file appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = temps(&s, "k.tar.zst");
    assert_eq!(killed, [format!("k.tar.zst.tmp-{}", child.id())]);
    assert!(!s.path("k.tar.zst").exists());
    // Another left by a split build that is gone, and one whose build runs still
    // (this test's process id), which must be kept.
    let dead = dead_pid();
    s.write(&format!("k.tar.zst.002.tmp-{dead}"), "part");
    let alive = format!("k.tar.zst.tmp-{}", std::process::id());
    s.write(&alive, "in use");
    s.write("k.tar.zst.notes", "mine");

    let run = s.bundler(&build).success();
    assert!(
        run.stderr.contains(&format!(
            "removed {}, left by a build that was stopped",
            killed[0]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(temps(&s, "k.tar.zst"), [alive]);
    assert_eq!(s.read("k.tar.zst.notes"), "mine");
    s.tool("minisign", &["-Vm", "k.tar.zst", "-p", "k.pub"]);

    // The store's temp files: a gone writer's are removed by the next pull, a live
    // one's kept.
    let tmp = s.path("store/.ferry/tmp");
    std::fs::write(tmp.join(format!("index.json.{dead}.0.tmp")), "half").unwrap();
    let live = format!("index.json.{}.3.tmp", std::process::id());
    std::fs::write(tmp.join(&live), "in use").unwrap();
    let run = s.bundler(&common::LOCKED_PULL).success();
    assert!(
        run.stderr
            .contains("removed 1 temporary file(s) left in store by a run that was stopped"),
        "{}",
        run.stderr
    );
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [live]);
}

/// Regression (audit, defect 10): `lock` named only the first image it could not
/// resolve; the others appeared only among the warnings.
#[test]
fn lock_names_every_image_it_cannot_resolve_in_one_error() {
    let reg = Registry::start();
    let s = world(&reg);
    let (missing_tag, missing_repo) = (
        format!("{HOST}/apps/small:nope"),
        format!("{HOST}/apps/gone:v1"),
    );
    s.write(
        "spec.toml",
        &spec(
            &["linux/amd64"],
            &[
                &missing_tag,
                &format!("{HOST}/apps/small:v1"),
                &missing_repo,
            ],
        ),
    );
    let run = s
        .bundler(&[
            "lock",
            "spec.toml",
            "--mirrors",
            "mirrors.toml",
            "-o",
            "new.lock",
        ])
        .failure();
    let line = run.error_line();
    assert!(
        line.starts_with("error: cannot resolve 2 images: ")
            && line.contains(&format!("{missing_tag} (every endpoint failed ("))
            && line.contains(&format!("{missing_repo} (every endpoint failed (")),
        "{}",
        run.stderr
    );
    assert!(!line.contains("apps/small:v1"), "{line}");
    assert!(!s.path("new.lock").exists());
}

/// `NAME.pub` a dangling link: keygen wrote `NAME.key`, then failed on the link
/// (`File exists`), and the orphan key made every rerun refuse.
#[test]
fn keygen_checks_both_files_before_writing_either_even_through_a_dangling_link() {
    let s = Session::new();
    std::os::unix::fs::symlink("/nonexistent/target.pub", s.path("lnk.pub")).unwrap();
    let run = s
        .bundler(&["keygen", "--no-password", "--name", "lnk"])
        .failure();
    assert_eq!(
        run.error_line(),
        "error: ./lnk.pub already exists: choose another --name or --out, or remove it",
        "{}",
        run.stderr
    );
    assert!(
        s.path("lnk.key").symlink_metadata().is_err(),
        "an orphan key"
    );
    // Once the link is gone, the same command goes through.
    std::fs::remove_file(s.path("lnk.pub")).unwrap();
    s.bundler(&["keygen", "--no-password", "--name", "lnk"])
        .success();
}

/// Without HOME, `build`'s default store was `./.cache/ferry/store`, wherever the
/// command ran.
#[test]
fn build_without_store_home_or_xdg_cache_home_asks_for_store() {
    let s = Session::new();
    s.write(
        "spec.toml",
        "name = \"x\"\nversion = \"1\"\nplatforms = []\n",
    );
    s.bundler(&["keygen", "--no-password", "--name", "k"])
        .success();
    for home in [None, Some("relative")] {
        let mut cmd = std::process::Command::new(common::bin_path("ferry-bundler"));
        cmd.args(["build", "spec.toml", "--key", "k.key", "-o", "x.tar.zst"])
            .current_dir(s.path(""))
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HOME");
        if let Some(h) = home {
            cmd.env("HOME", h);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "error: no --store, and neither HOME nor XDG_CACHE_HOME is set to an absolute path to keep the default store under: give --store DIR"
        );
    }
    assert!(!s.path(".cache").exists() && !s.path("relative").exists());
    let help = s.bundler(&["build", "--help"]).success().stdout;
    assert!(help.contains("$XDG_CACHE_HOME/ferry/store"), "{help}");
}
