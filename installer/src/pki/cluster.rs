//! A cluster's PKI, made once in its state directory (`plan --state`) and reused by
//! every later plan, so nodes never see a new CA: the cluster CA, the front-proxy
//! CA, the etcd CA, the service-account key pair, and the etcd certificates kubeadm
//! does not make when etcd runs on the hosts (server and peer per etcd node,
//! healthcheck-client, apiserver-etcd-client). kubeadm makes the rest from the CAs.
//!
//! Subjects, usages and SANs are kubeadm's: `cmd/kubeadm/app/phases/certs/certlist.go`
//! and `cmd/kubeadm/app/constants/constants.go` of kubernetes/kubernetes (read from a
//! stored copy at commit 03a145de; the v1.31.14 tag could not be fetched here).
//! Keys are ECDSA P-256, which kubeadm v1beta4 takes as `encryptionAlgorithm:
//! ECDSA-P256`; CAs are valid 10 years and leaves 1 year, kubeadm's defaults.
//!
//! ```text
//! STATE/pki/               0700, kubeadm's layout
//!   ca.{crt,key}  front-proxy-ca.{crt,key}  sa.{key,pub}
//!   etcd/ca.{crt,key}  etcd/healthcheck-client.{crt,key}
//!   apiserver-etcd-client.{crt,key}
//!   nodes/<node>/etcd/{server,peer}.{crt,key}  and .sans (what they were made for)
//! ```

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::{this_year, write_file};

/// kubeadm's `MastersGroup`.
const MASTERS_GROUP: &str = "system:masters";

/// A CA of the cluster, by its file base name and common name.
struct CaProfile {
    base: &'static str,
    cn: &'static str,
}

const CLUSTER_CA: CaProfile = CaProfile {
    base: "ca",
    cn: "kubernetes",
};
const FRONT_PROXY_CA: CaProfile = CaProfile {
    base: "front-proxy-ca",
    cn: "front-proxy-ca",
};
const ETCD_CA: CaProfile = CaProfile {
    base: "etcd/ca",
    cn: "etcd-ca",
};

fn ca_params(cn: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let y = this_year();
    p.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(y + 10, 1, 1);
    Ok(p)
}

/// A loaded CA, able to sign.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// The cluster's PKI in `STATE/pki`.
pub struct ClusterPki {
    dir: PathBuf,
}

/// An etcd member, for its certificates' SANs.
pub struct EtcdMember<'a> {
    pub name: &'a str,
    pub address: IpAddr,
}

impl ClusterPki {
    /// Makes whatever is missing in `STATE/pki` (CAs and keys once; an etcd
    /// member's certificates again only when its name or address changed).
    pub fn ensure(state: &Path, members: &[EtcdMember<'_>]) -> anyhow::Result<ClusterPki> {
        let pki = ClusterPki {
            dir: state.join("pki"),
        };
        for d in [pki.dir.clone(), pki.dir.join("etcd")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .with_context(|| format!("creating {}", d.display()))?;
        }
        pki.ca(&CLUSTER_CA)?;
        pki.ca(&FRONT_PROXY_CA)?;
        let etcd = pki.ca(&ETCD_CA)?;
        let sa_key = pki.dir.join("sa.key");
        if !sa_key.exists() {
            let key = KeyPair::generate()?;
            write_file(&pki.dir.join("sa.pub"), &key.public_key_pem(), false)?;
            write_file(&sa_key, &key.serialize_pem(), true)?;
        }
        let client = |cn: &str| Leaf {
            cn: cn.to_string(),
            org: Some(MASTERS_GROUP),
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
            sans: Vec::new(),
        };
        pki.leaf(
            &etcd,
            "etcd/healthcheck-client",
            &client("kube-etcd-healthcheck-client"),
        )?;
        pki.leaf(
            &etcd,
            "apiserver-etcd-client",
            &client("kube-apiserver-etcd-client"),
        )?;
        for m in members {
            // pkiutil.GetEtcdAltNames / GetEtcdPeerAltNames: the node name and
            // localhost; the node's address, 127.0.0.1 and ::1.
            let sans = vec![
                SanType::DnsName(m.name.try_into()?),
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(m.address),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ];
            let both = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let node_dir = pki.dir.join("nodes").join(m.name).join("etcd");
            fs::create_dir_all(&node_dir)
                .with_context(|| format!("creating {}", node_dir.display()))?;
            for base in ["server", "peer"] {
                pki.leaf(
                    &etcd,
                    &format!("nodes/{}/etcd/{base}", m.name),
                    &Leaf {
                        cn: m.name.to_string(),
                        org: None,
                        usages: both.clone(),
                        sans: sans.clone(),
                    },
                )?;
            }
        }
        Ok(pki)
    }

    /// The CA `p`, made if its files are not there.
    fn ca(&self, p: &CaProfile) -> anyhow::Result<Ca> {
        let crt = self.dir.join(format!("{}.crt", p.base));
        let key_path = self.dir.join(format!("{}.key", p.base));
        let key = if crt.exists() && key_path.exists() {
            let pem = fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            KeyPair::from_pem(&pem).with_context(|| format!("reading {}", key_path.display()))?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params(p.cn)?.self_signed(&key)?;
            write_file(&key_path, &key.serialize_pem(), true)?;
            write_file(&crt, &cert.pem(), false)?;
            key
        };
        // The issuer as rcgen needs it: same subject, same key as the kept CA.
        let cert = ca_params(p.cn)?.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// A leaf certificate signed by `ca`, made unless one for the same profile is there.
    fn leaf(&self, ca: &Ca, base: &str, leaf: &Leaf) -> anyhow::Result<()> {
        let crt = self.dir.join(format!("{base}.crt"));
        let key_path = self.dir.join(format!("{base}.key"));
        let stamp = self.dir.join(format!("{base}.profile"));
        let want = leaf.describe();
        if crt.exists()
            && key_path.exists()
            && fs::read_to_string(&stamp).ok().as_deref() == Some(&want)
        {
            return Ok(());
        }
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        if let Some(o) = leaf.org {
            dn.push(DnType::OrganizationName, o);
        }
        dn.push(DnType::CommonName, leaf.cn.as_str());
        p.distinguished_name = dn;
        p.subject_alt_names = leaf.sans.clone();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = leaf.usages.clone();
        p.use_authority_key_identifier_extension = true;
        let y = this_year();
        p.not_before = rcgen::date_time_ymd(y - 1, 12, 31);
        p.not_after = rcgen::date_time_ymd(y + 1, 1, 1);
        let cert = p.signed_by(&key, &ca.cert, &ca.key)?;
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&crt, &cert.pem(), false)?;
        write_file(&stamp, &want, false)?;
        Ok(())
    }

    /// `sha256:<hex>` of the cluster CA's public key (its SubjectPublicKeyInfo): what
    /// `kubeadm join` pins the CA by (`caCertHashes`).
    pub fn ca_cert_hash(&self) -> anyhow::Result<String> {
        use sha2::{Digest as _, Sha256};
        let path = self.dir.join("ca.key");
        let pem =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = KeyPair::from_pem(&pem).with_context(|| format!("reading {}", path.display()))?;
        Ok(format!(
            "sha256:{}",
            hex_lower(&Sha256::digest(key.public_key_der()))
        ))
    }

    /// The bootstrap token nodes join with (`[a-z0-9]{6}.[a-z0-9]{16}`), made once
    /// in `STATE/bootstrap-token` (0600).
    pub fn bootstrap_token(&self) -> anyhow::Result<String> {
        let path = self
            .dir
            .parent()
            .unwrap_or(&self.dir)
            .join("bootstrap-token");
        if let Ok(t) = fs::read_to_string(&path) {
            return Ok(t.trim().to_string());
        }
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let bytes: Vec<u8> = (0..2)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        let chars: String = bytes
            .iter()
            .take(22)
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
            .collect();
        let token = format!("{}.{}", &chars[..6], &chars[6..22]);
        write_file(&path, &format!("{token}\n"), true)?;
        Ok(token)
    }

    /// A file of the PKI by its path under `STATE/pki`.
    pub fn read(&self, rel: &str) -> anyhow::Result<Vec<u8>> {
        let p = self.dir.join(rel);
        fs::read(&p).with_context(|| format!("reading {}", p.display()))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a leaf certificate is made for.
struct Leaf {
    cn: String,
    org: Option<&'static str>,
    usages: Vec<ExtendedKeyUsagePurpose>,
    sans: Vec<SanType>,
}

impl Leaf {
    /// A text that changes when the profile does (kept beside the certificate).
    fn describe(&self) -> String {
        format!(
            "cn={} org={:?} usages={:?} sans={:?}\n",
            self.cn, self.org, self.usages, self.sans
        )
    }
}
