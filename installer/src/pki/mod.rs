//! The site's PKI, kept in one directory outside the store (by default
//! `/var/lib/ferry/pki`), so the CA's private key is neither served nor carried
//! with the data. `serve` keeps the registry's certificate here; the install to
//! come adds the cluster, etcd and front-proxy CAs beside it.
//!
//! ```text
//! DIR/                 0700
//!   ca.pem             the site CA certificate: nodes trust this (hosts.toml `ca =`)
//!   ca.key             its key (0600); never leaves the registry host
//!   registry.pem       the registry's certificate, signed by the CA
//!   registry.key       its key (0600)
//!   registry.sans      the names the certificate was made for, one a line
//! ```
//! The CA is made once and kept, so nodes configured once stay valid. The registry
//! certificate is re-issued from the same CA whenever the wanted names change (a
//! new `--san`, a new address on the host), so restarting with different names
//! never breaks nodes that already trust the CA.

pub mod cluster;

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Where a site keeps its PKI unless told otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/ferry/pki";

/// The site's PKI directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    // Fixed: the CA is re-created from its key to sign new server certificates,
    // and its subject must stay the issuer name the nodes already know.
    dn.push(DnType::OrganizationName, "Ferry");
    dn.push(DnType::CommonName, "Ferry site registry CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let y = this_year();
    p.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(y + 20, 1, 1);
    Ok(p)
}

pub(crate) fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

pub(crate) fn write_file(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    // A name of its own: another process writing the same file must not share it.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// What [`Pki::ensure_server_cert`] made anew: nodes need to be told of a new CA,
/// not of a new server certificate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Made {
    pub ca: bool,
    pub certificate: bool,
    /// Names the certificate it replaced had and the new one has not.
    pub dropped: Vec<String>,
}

impl Pki {
    /// The PKI directory at `dir` (made, mode 0700, when first needed).
    pub fn new(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The site CA certificate nodes trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The registry's certificate and key.
    pub fn registry_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("registry.pem"), self.dir.join("registry.key"))
    }

    fn create_dir(&self) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))
    }

    /// Holds the PKI directory while a CA or certificate is looked for and made:
    /// two processes (a plan and a serve starting) must not each make a CA key and
    /// leave one's certificate beside the other's key.
    fn hold(&self) -> anyhow::Result<fs::File> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    /// The site CA's certificate (PEM), made with its key if the site has none yet.
    pub fn ensure_ca(&self) -> anyhow::Result<String> {
        self.create_dir()?;
        let _held = self.hold()?;
        let ca_pem = self.ca_cert();
        let ca_key = self.dir.join("ca.key");
        if !(ca_pem.exists() && ca_key.exists()) {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_file(&ca_key, &key.serialize_pem(), true)?;
            write_file(&ca_pem, &cert.pem(), false)?;
        }
        fs::read_to_string(&ca_pem).with_context(|| format!("reading {}", ca_pem.display()))
    }

    /// Makes (or reuses) the site CA and a registry certificate for `sans`. Returns
    /// what was newly made.
    pub fn ensure_registry_cert(&self, sans: &[String]) -> anyhow::Result<Made> {
        self.ensure_server_cert(&self.dir.clone(), sans)
    }

    /// Makes (or reuses) the site CA, and a registry certificate for `sans` signed
    /// by it in `out` (`registry.pem`, `registry.key`, 0600, and `registry.sans`):
    /// for a registry on another host, which then needs no CA key. Returns what was
    /// newly made.
    pub fn ensure_server_cert(&self, out: &Path, sans: &[String]) -> anyhow::Result<Made> {
        self.create_dir()?;
        let _held = self.hold()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .with_context(|| format!("creating {}", out.display()))?;
        let dir = &self.dir;
        let ca_pem = self.ca_cert();
        let ca_key_path = dir.join("ca.key");
        let mut made = Made::default();
        let ca_key = if ca_pem.exists() && ca_key_path.exists() {
            let pem = fs::read_to_string(&ca_key_path)
                .with_context(|| format!("reading {}", ca_key_path.display()))?;
            KeyPair::from_pem(&pem).with_context(|| format!("reading {}", ca_key_path.display()))?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_file(&ca_key_path, &key.serialize_pem(), true)?;
            write_file(&ca_pem, &cert.pem(), false)?;
            made.ca = true;
            key
        };
        let (server_pem, server_key) = (out.join("registry.pem"), out.join("registry.key"));
        let sans_file = out.join("registry.sans");
        let want = sans.join("\n") + "\n";
        let have = fs::read_to_string(&sans_file).unwrap_or_default();
        if made.ca || have != want || !server_pem.exists() || !server_key.exists() {
            made.dropped = have
                .lines()
                .filter(|h| !h.is_empty() && !sans.iter().any(|s| s == h))
                .map(str::to_string)
                .collect();
            // The issuer object is rebuilt from the kept key and the fixed subject.
            let issuer = ca_params()?.self_signed(&ca_key)?;
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Ferry site registry");
            p.distinguished_name = dn;
            p.subject_alt_names = sans
                .iter()
                .map(|s| match s.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => {
                        Ok(SanType::DnsName(s.clone().try_into().with_context(
                            || format!("--san {s:?} is not a DNS name"),
                        )?))
                    }
                })
                .collect::<anyhow::Result<_>>()?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.use_authority_key_identifier_extension = true;
            let y = this_year();
            p.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
            p.not_after = rcgen::date_time_ymd(y + 5, 1, 1);
            let cert = p.signed_by(&key, &issuer, &ca_key)?;
            write_file(&server_key, &key.serialize_pem(), true)?;
            write_file(&server_pem, &cert.pem(), false)?;
            write_file(&sans_file, &want, false)?;
            made.certificate = true;
        }
        Ok(made)
    }
}
