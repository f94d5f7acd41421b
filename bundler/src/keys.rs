//! Signing keys for `ferry-bundler`: `keygen`, and loading a secret key with its
//! password from `FERRY_KEY_PASSWORD` or the terminal.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ferry::signing::{self, SecretKey};

/// The variable scripts put a key's password in.
pub const PASSWORD_ENV: &str = "FERRY_KEY_PASSWORD";

fn password_from_env() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// Checks a key's base name: the files must land in `--out`, visible, as
/// `NAME.key` and `NAME.pub` (so no `/`, no leading `.`, not empty).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("the name is empty".into())
    } else if name.contains('/') {
        Err("a name, not a path: use --out for the directory".into())
    } else if name.starts_with('.') {
        Err("the name may not start with '.' (the keys would be hidden files)".into())
    } else {
        Ok(())
    }
}

/// Writes `NAME.pub` and `NAME.key` into `dir`; returns their paths.
pub fn keygen(dir: &Path, name: &str, no_password: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    check_name(name).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
    if dir.exists() && !dir.is_dir() {
        bail!("--out {} is not a directory", dir.display());
    }
    let public = dir.join(format!("{name}.pub"));
    let secret = dir.join(format!("{name}.key"));
    for p in [&public, &secret] {
        // Not `exists()`: it follows a link, and a dangling one (which creating
        // the file refuses) would pass.
        if p.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: choose another --name or --out, or remove it",
                p.display()
            );
        }
    }
    let password = if no_password {
        None
    } else if let Some(p) = password_from_env() {
        Some(p)
    } else if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password for the new key: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if p != again {
            bail!("the passwords differ");
        }
        if p.is_empty() {
            bail!("an empty password: use --no-password for a key without one");
        }
        Some(p)
    } else {
        bail!("no password: set {PASSWORD_ENV}, run on a terminal, or pass --no-password");
    };
    let (pub_text, key_text) = signing::generate(password)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_new(&secret, &key_text, 0o600)?;
    if let Err(e) = write_new(&public, &pub_text, 0o644) {
        // A secret key without its public key is no use, and would make a rerun
        // refuse: none is left.
        let _ = std::fs::remove_file(&secret);
        return Err(e);
    }
    Ok((public, secret))
}

fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A key file that is not the secret key a command needs.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{} is a public key; --key needs the secret key (e.g. {})", path.display(), secret.display())]
    PublicKey { path: PathBuf, secret: PathBuf },
}

/// Loads a secret key, asking for its password if it has one; a public key given
/// instead is named as one.
pub fn load_secret(path: &Path) -> anyhow::Result<SecretKey> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if signing::PublicKey::parse(&text, "").is_ok() {
            return Err(KeyError::PublicKey {
                path: path.to_path_buf(),
                secret: path.with_extension("key"),
            }
            .into());
        }
    }
    let password = if SecretKey::is_encrypted(path)? {
        match password_from_env() {
            Some(p) => Some(p),
            None if std::io::stdin().is_terminal() => Some(rpassword::prompt_password(format!(
                "Password for {}: ",
                path.display()
            ))?),
            None => None,
        }
    } else {
        None
    };
    Ok(SecretKey::load(path, password)?)
}
