//! TLS for the registry: `--tls auto` keeps a site CA and a server certificate
//! under the store and makes them with rcgen the first time; `--tls CERT,KEY`
//! uses certificates from elsewhere.
//!
//! ```text
//! DIR/.ferry/tls/
//!   ca.pem        the site CA certificate: nodes trust this (hosts.toml `ca =`)
//!   ca.key        its key (0600); never leaves the registry host
//!   server.pem    the registry's certificate, signed by the CA
//!   server.key    its key (0600)
//!   server.sans   the names the certificate was made for, one a line
//! ```
//! The CA is made once and kept, so nodes configured once stay valid. The server
//! certificate is re-issued from the same CA whenever the wanted names change (a
//! new `--san`, a new address on the host), so restarting with different names
//! never breaks nodes that already trust the CA.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// Where `--tls auto` keeps its files.
pub fn tls_dir(store: &Path) -> PathBuf {
    store.join(".ferry").join("tls")
}

/// The names a server certificate is made for: `--san` values, the host name,
/// `localhost`, the loopback addresses, every address of the host's interfaces
/// and the address we bind, sorted and deduplicated.
pub fn wanted_sans(extra: &[String], bind: IpAddr) -> Vec<String> {
    let mut names: Vec<String> = extra.to_vec();
    names.push("localhost".into());
    names.push("127.0.0.1".into());
    names.push("::1".into());
    if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    if let Ok(ifs) = if_addrs::get_if_addrs() {
        names.extend(ifs.into_iter().map(|i| i.ip().to_string()));
    }
    if !bind.is_unspecified() {
        names.push(bind.to_string());
    }
    names.sort();
    names.dedup();
    names
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

fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn write_file(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
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

/// Makes (or reuses) the site CA and a server certificate for `sans`. Returns the
/// CA path and whether anything was newly made.
pub fn ensure_auto(store: &Path, sans: &[String]) -> anyhow::Result<(PathBuf, bool)> {
    let dir = tls_dir(store);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_pem = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let mut made = false;
    let ca_key = if ca_pem.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("reading {}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_pem, &cert.pem(), false)?;
        made = true;
        key
    };
    let server_pem = dir.join("server.pem");
    let server_key = dir.join("server.key");
    let sans_file = dir.join("server.sans");
    let want = sans.join("\n") + "\n";
    let have = fs::read_to_string(&sans_file).unwrap_or_default();
    if made || have != want || !server_pem.exists() || !server_key.exists() {
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
        made = true;
    }
    Ok((ca_pem, made))
}

/// A rustls server configuration from PEM files (HTTP/1.1 only).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
