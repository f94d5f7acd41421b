//! Credentials: bearer tokens, Basic auth, docker config helpers and stores, and
//! passwords kept off the command line.

use super::*;

#[test]
fn bearer_token_auth_with_credentials() {
    let reg = Registry::start();
    let f = fixture(6);
    push_fixture(&reg.url(), "apps/", &f);
    let proxy = Proxy::start(
        &reg.addr(),
        ProxyOptions {
            bearer: Some(("ferry".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write("mirrors.toml", &direct_mirrors(proxy.url()));

    let run = s
        .bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .failure();
    assert!(run.error_line().contains("--cred"), "{}", run.stderr);

    let cred = format!("{}=ferry:s3cret", proxy.addr());
    pull(&s, "store", &["--cred", &cred]).success();
    assert!(proxy.token_requests() >= 1);
    assert!(proxy.count("Authorization=Bearer") > 0);
    assert_eq!(stored_blobs(&s.path("store")), expected_blobs(&f));

    // The same credentials from ~/.docker/config.json.
    let auth = "ZmVycnk6czNjcmV0"; // base64("ferry:s3cret")
    s.write(
        ".docker/config.json",
        &format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            proxy.addr()
        ),
    );
    s.bundler(&["lock", "spec.toml", "--mirrors", "mirrors.toml"])
        .success();
}

/// A real registry:2 that asks for HTTP Basic credentials (htpasswd with the user
/// alice, password s3cret), serving the storage of `plain`: the kit pushes
/// anonymously, so images go into `plain` and are pulled from here. Killed on drop.
struct BasicAuthRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl BasicAuthRegistry {
    fn start(plain: &Registry) -> BasicAuthRegistry {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let users = Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .expect("htpasswd (apache2-utils)");
        assert!(users.status.success());
        std::fs::write(dir.path().join("users"), &users.stdout).unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{ level: error }}\n\
                     storage: {{ filesystem: {{ rootdirectory: {} }} }}\n\
                     http: {{ addr: 127.0.0.1:{port}, secret: ferry-e2e }}\n\
                     auth: {{ htpasswd: {{ realm: ferry-e2e, path: {} }} }}\n",
                    plain.storage_dir().display(),
                    dir.path().join("users").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting registry:2");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = c.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                    let mut head = String::new();
                    let _ = c.read_to_string(&mut head);
                    if head.starts_with("HTTP/1.0 401") && head.contains("Basic realm") {
                        return BasicAuthRegistry {
                            child,
                            port,
                            _dir: dir,
                        };
                    }
                    last = head;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("registry:2 with htpasswd did not come up: {last}");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for BasicAuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture pushed into a registry:2 that asks for Basic auth, and a session whose
/// spec and mirrors point at it.
fn behind_basic_auth(seed: u64) -> (Fixture, Registry, BasicAuthRegistry, Session) {
    let plain = Registry::start();
    let f = fixture(seed);
    push_fixture(&plain.url(), "apps/", &f);
    let reg = BasicAuthRegistry::start(&plain);
    let s = Session::new();
    s.write("spec.toml", &fixture_spec());
    s.write(
        "mirrors.toml",
        &direct_mirrors(format!("http://{}", reg.addr())),
    );
    (f, plain, reg, s)
}

/// Writes `bin/docker-credential-NAME`, a shell script speaking the credential-helper
/// protocol: `get` reads the server from stdin, logs it to `NAME.asked`, and prints
/// alice's credentials for `knows`, else "credentials not found" and fails.
fn credential_helper(s: &Session, name: &str, knows: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let log = s.path(&format!("{name}.asked"));
    let path = s.write(
        &format!("bin/docker-credential-{name}"),
        &format!(
            "#!/bin/sh\n\
             [ \"$1\" = get ] || {{ echo \"unsupported: $1\" >&2; exit 2; }}\n\
             server=$(cat)\n\
             echo \"$server\" >> '{log}'\n\
             if [ \"$server\" = '{knows}' ]; then\n\
               printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"%s\"}}\\n' \"$server\" '{secret}'\n\
             else\n\
               echo 'credentials not found in native keychain'; exit 1\n\
             fi\n",
            log = log.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The servers helper `name` was asked about, in order.
fn asked(s: &Session, name: &str) -> Vec<String> {
    std::fs::read_to_string(s.path(&format!("{name}.asked")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cred_helpers_and_creds_store_from_docker_config_log_in_by_the_helper_protocol() {
    let (f, _plain, reg, s) = behind_basic_auth(11);
    let addr = reg.addr();
    let path = format!(
        "{}:{}",
        s.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pull_into = |store: &str, extra: &[&str]| pull_env(&s, store, extra, &[("PATH", &path)]);
    let config = |json: String| s.write(".docker/config.json", &json);
    credential_helper(&s, "ferryknows", &addr, "s3cret");
    credential_helper(&s, "ferryother", "other.example.io", "s3cret");
    credential_helper(&s, "ferrywrong", &addr, "wrong");

    // Without credentials the registry refuses the pull.
    let run = pull_into("none", &[]).failure();
    assert!(
        run.error_line()
            .contains(&format!("no credentials for {addr}")),
        "{}",
        run.stderr
    );

    // credHelpers names a helper for the host: it is asked once, for this host.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferryknows"}}}}"#));
    pull_into("by-helper", &[]).success();
    assert_eq!(stored_blobs(&s.path("by-helper")), expected_blobs(&f));
    assert_eq!(asked(&s, "ferryknows"), [addr.as_str()]);

    // A helper that has nothing for the host: no credentials, so refused.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferryother"}}}}"#));
    let run = pull_into("helper-lacks", &[]).failure();
    assert!(
        run.error_line().contains("no credentials"),
        "{}",
        run.stderr
    );
    assert_eq!(asked(&s, "ferryother"), [addr.as_str()]);

    // credsStore serves every host; it comes before auths (whose password is wrong).
    let wrong = "YWxpY2U6d3Jvbmc="; // base64("alice:wrong")
    config(format!(
        r#"{{"credsStore":"ferryknows","auths":{{"{addr}":{{"auth":"{wrong}"}}}}}}"#
    ));
    pull_into("by-store", &[]).success();
    assert_eq!(stored_blobs(&s.path("by-store")), expected_blobs(&f));
    assert_eq!(asked(&s, "ferryknows").len(), 2);
    // ... and the pull is refused when auths is all there is.
    config(format!(r#"{{"auths":{{"{addr}":{{"auth":"{wrong}"}}}}}}"#));
    pull_into("by-auths", &[]).failure();

    // credHelpers[host] comes before credsStore: here it gives a wrong password.
    config(format!(
        r#"{{"credHelpers":{{"{addr}":"ferrywrong"}},"credsStore":"ferryknows"}}"#
    ));
    let run = pull_into("helper-first", &[]).failure();
    assert!(run.error_line().contains("401"), "{}", run.stderr);
    assert_eq!(asked(&s, "ferrywrong"), [addr.as_str()]);
    // --cred comes before both, and no helper is run.
    let cred = format!("{addr}=alice:s3cret");
    pull_into("by-flag", &["--cred", &cred]).success();
    assert_eq!(asked(&s, "ferrywrong").len(), 1);
    assert_eq!(asked(&s, "ferryknows").len(), 2);

    // A helper that cannot be run or fails: one error line naming it and the host.
    config(format!(r#"{{"credHelpers":{{"{addr}":"ferrymissing"}}}}"#));
    let run = pull_into("missing", &[]).failure();
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "credential helper docker-credential-ferrymissing for {addr}: cannot run it"
        )),
        "{}",
        run.stderr
    );
    s.write(
        "bin/docker-credential-ferryfails",
        "#!/bin/sh\necho 'keychain is locked' >&2\necho 'second line' >&2\nexit 3\n",
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            s.path("bin/docker-credential-ferryfails"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    config(r#"{"credsStore":"ferryfails"}"#.to_string());
    let run = pull_into("fails", &[]).failure();
    assert!(
        run.error_line().contains(&format!(
            "credential helper docker-credential-ferryfails for {addr}: `get` failed (exit status: 3): keychain is locked"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("second line"), "{}", run.stderr);
}

#[test]
fn a_password_from_stdin_or_the_environment_stays_off_the_command_line() {
    let (f, _plain, reg, s) = behind_basic_auth(12);
    let user = format!("{}=alice", reg.addr());
    let args = |store: &'static str| {
        vec![
            "pull".to_string(),
            "spec.toml".into(),
            "--mirrors".into(),
            "mirrors.toml".into(),
            "--store".into(),
            store.into(),
            "--user".into(),
            user.clone(),
        ]
    };
    let env_pull = |store: &'static str, password: Option<&str>| {
        let args = args(store);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match password {
            Some(p) => s.bundler_env(&args, &[("FERRY_REGISTRY_PASSWORD", p)]),
            None => s.bundler(&args),
        }
    };
    // `ferry-bundler pull ... --user HOST=alice --password-stdin`, `stdin` piped in, and
    // a wrong FERRY_REGISTRY_PASSWORD that stdin must win over.
    let stdin_pull = |store: &'static str, stdin: &str| {
        use std::io::Write as _;
        let mut child = Command::new(common::bin_path("ferry-bundler"))
            .args(args(store))
            .arg("--password-stdin")
            .current_dir(s.dir.path())
            .env("DOCKER_CONFIG", s.path(".docker"))
            .env("FERRY_REGISTRY_PASSWORD", "wrong")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // The environment variable.
    env_pull("by-env", Some("s3cret")).success();
    assert_eq!(stored_blobs(&s.path("by-env")), expected_blobs(&f));
    let run = env_pull("env-wrong", Some("wrong")).failure();
    assert!(run.error_line().contains("401"), "{}", run.stderr);
    let run = env_pull("env-none", None).failure();
    assert!(
        run.error_line().contains("--password-stdin")
            && run.error_line().contains("FERRY_REGISTRY_PASSWORD"),
        "{}",
        run.stderr
    );

    // Standard input: its first line, with or without the newline.
    for (store, stdin) in [("by-stdin", "s3cret\n"), ("by-stdin-bare", "s3cret")] {
        let (status, stderr) = stdin_pull(store, stdin);
        assert!(status.success(), "{stderr}");
        assert_eq!(stored_blobs(&s.path(store)), expected_blobs(&f));
    }
    let (status, stderr) = stdin_pull("stdin-wrong", "wrong\n");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    let (status, stderr) = stdin_pull("stdin-empty", "");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: --password-stdin: no password on standard input"),
        "{stderr}"
    );

    // --password-stdin means nothing without --user; --user takes HOST=USER.
    let run = s.bundler(&["pull", "spec.toml", "--store", "x", "--password-stdin"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let run = s
        .bundler_env(
            &["pull", "spec.toml", "--store", "x", "--user", "alice"],
            &[("FERRY_REGISTRY_PASSWORD", "s3cret")],
        )
        .failure();
    assert!(
        run.error_line()
            .contains("--user \"alice\": expected HOST=USER"),
        "{}",
        run.stderr
    );
}
