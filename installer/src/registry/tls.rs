//! TLS for the registry: the rustls configuration from a certificate and key
//! (`--tls auto` takes them from the site PKI, see `crate::pki`; `--tls CERT,KEY`
//! from elsewhere), and the names a certificate for this host should carry.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

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
