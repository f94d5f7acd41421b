//! minisign-compatible Ed25519 keys and signatures.
//!
//! Keys are minisign's own files (`NAME.pub`, `NAME.key`, the secret key optionally
//! scrypt-encrypted), so `minisign -G` keys work here and ours work with `minisign`.
//! Signatures are minisign's prehashed kind (Ed25519 over BLAKE2b-512 of the data),
//! made with deterministic Ed25519 (RFC 8032): the same key, data and trusted comment
//! always give the same signature bytes, which a reproducible bundle needs. (The
//! `minisign` crate adds random noise to every signature, so it is used here only to
//! create and decrypt key files.)

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read the {kind} {}: {error}", path.display())]
    ReadKey {
        kind: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} is not a minisign {kind}: {reason}")]
    Format {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{0} is password-protected: set FERRY_KEY_PASSWORD or run on a terminal")]
    NeedPassword(String),
    #[error("cannot decrypt {0}: wrong password?")]
    Decrypt(String),
    #[error("signed by key {signed_by}, not by the given key {expected}")]
    WrongKey { signed_by: String, expected: String },
    #[error("bad signature: the data or its trusted comment was altered, or the signature is not by this key")]
    BadSignature,
    #[error("legacy (non-prehashed) minisign signatures are not accepted")]
    Legacy,
    #[error("cannot create a key: {0}")]
    Generate(String),
}

fn format_err(what: &str, kind: &'static str, reason: impl Into<String>) -> SignError {
    SignError::Format {
        what: what.to_string(),
        kind,
        reason: reason.into(),
    }
}

/// minisign prints key ids as the key number read little-endian, in hex.
fn key_id(keynum: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*keynum))
}

/// The second line of a minisign file, base64-decoded.
fn payload(text: &str, what: &str, kind: &'static str) -> Result<Vec<u8>, SignError> {
    let mut lines = text.lines();
    let comment = lines.next().unwrap_or_default();
    if !comment.starts_with("untrusted comment:") {
        return Err(format_err(
            what,
            kind,
            "the first line is not an untrusted comment",
        ));
    }
    let encoded = lines
        .next()
        .ok_or_else(|| format_err(what, kind, "the key line is missing"))?;
    B64.decode(encoded.trim())
        .map_err(|e| format_err(what, kind, e.to_string()))
}

/// A public key, from `NAME.pub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    keynum: [u8; 8],
    key: VerifyingKey,
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<PublicKey, SignError> {
        let text = read(path, "public key")?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    /// Parses a `.pub` file's text (`what` names it in errors).
    pub fn parse(text: &str, what: &str) -> Result<PublicKey, SignError> {
        let bytes = payload(text, what, "public key")?;
        // A secret key starts with its signature algorithm, then its KDF and
        // checksum algorithms ("Ed", "Sc" or "\0\0", "B2"): name the mistake.
        if bytes.len() > 42 && &bytes[..2] == b"Ed" && &bytes[4..6] == b"B2" {
            return Err(format_err(
                what,
                "public key",
                "it is a secret key: give the public key beside it (.pub)",
            ));
        }
        if bytes.len() != 42 || &bytes[..2] != b"Ed" {
            return Err(format_err(
                what,
                "public key",
                "expected an Ed25519 key of 42 bytes",
            ));
        }
        let keynum: [u8; 8] = bytes[2..10].try_into().expect("8 bytes");
        let raw: [u8; 32] = bytes[10..42].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|e| format_err(what, "public key", e.to_string()))?;
        Ok(PublicKey { keynum, key })
    }

    /// The key id minisign shows (16 hex digits).
    pub fn key_id(&self) -> String {
        key_id(&self.keynum)
    }

    /// The `.pub` file text.
    pub fn to_file_text(&self) -> String {
        let mut bytes = b"Ed".to_vec();
        bytes.extend_from_slice(&self.keynum);
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.key_id(),
            B64.encode(bytes)
        )
    }

    /// Checks a `.minisig` text over data whose BLAKE2b-512 is `hash`, and returns the
    /// signed trusted comment.
    pub fn verify_hash(&self, hash: &[u8; 64], signature: &str) -> Result<String, SignError> {
        let what = "signature";
        let mut lines = signature.lines();
        let sig = payload(signature, what, "signature")?;
        lines.next();
        lines.next();
        if sig.len() != 74 {
            return Err(format_err(what, "signature", "expected 74 bytes"));
        }
        match &sig[..2] {
            b"ED" => {}
            b"Ed" => return Err(SignError::Legacy),
            _ => return Err(format_err(what, "signature", "unknown algorithm")),
        }
        let keynum: [u8; 8] = sig[2..10].try_into().expect("8 bytes");
        if keynum != self.keynum {
            return Err(SignError::WrongKey {
                signed_by: key_id(&keynum),
                expected: self.key_id(),
            });
        }
        let sig_bytes: [u8; 64] = sig[10..74].try_into().expect("64 bytes");
        let trusted = lines
            .next()
            .and_then(|l| l.strip_prefix("trusted comment: "))
            .ok_or_else(|| format_err(what, "signature", "the trusted comment is missing"))?;
        let global = lines
            .next()
            .and_then(|l| B64.decode(l.trim()).ok())
            .filter(|g| g.len() == 64)
            .ok_or_else(|| format_err(what, "signature", "the global signature is missing"))?;
        self.key
            .verify(hash, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| SignError::BadSignature)?;
        let mut signed = sig_bytes.to_vec();
        signed.extend_from_slice(trusted.as_bytes());
        let global: [u8; 64] = global.try_into().expect("64 bytes");
        self.key
            .verify(&signed, &Signature::from_bytes(&global))
            .map_err(|_| SignError::BadSignature)?;
        Ok(trusted.to_string())
    }

    /// Checks a `.minisig` text over `data`; returns the trusted comment.
    pub fn verify(&self, data: impl Read, signature: &str) -> Result<String, SignError> {
        let hash = blake2b(data).map_err(|error| SignError::Io {
            path: PathBuf::from("<data>"),
            error,
        })?;
        self.verify_hash(&hash, signature)
    }
}

/// The id of the key that made a `.minisig` text, without checking it.
pub fn signature_key_id(signature: &str) -> Result<String, SignError> {
    let sig = payload(signature, "signature", "signature")?;
    if sig.len() != 74 {
        return Err(format_err("signature", "signature", "expected 74 bytes"));
    }
    Ok(key_id(&sig[2..10].try_into().expect("8 bytes")))
}

/// The trusted comment of a `.minisig` text, unchecked.
pub fn trusted_comment(signature: &str) -> Option<String> {
    signature
        .lines()
        .find_map(|l| l.strip_prefix("trusted comment: "))
        .map(str::to_string)
}

/// BLAKE2b-512 of everything `data` yields: what minisign signs.
pub fn blake2b(data: impl Read) -> std::io::Result<[u8; 64]> {
    let mut state = blake2b_simd::State::new();
    // 64 KiB reads, hashed straight out of the reader's buffer.
    std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 16, data),
        &mut state,
    )?;
    Ok(*state.finalize().as_array())
}

/// A BLAKE2b-512 state fed while a file is written, so it is signed without a re-read.
/// (blake2b_simd: its AVX2 code hashes about twice as fast as the portable one, and
/// every byte of a bundle goes through here.)
#[derive(Clone)]
pub struct Prehash(blake2b_simd::State);

impl Default for Prehash {
    fn default() -> Prehash {
        Prehash(blake2b_simd::State::new())
    }
}

impl Prehash {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 64] {
        *self.0.finalize().as_array()
    }
}

/// A secret key, from `NAME.key`.
pub struct SecretKey {
    keynum: [u8; 8],
    key: SigningKey,
}

impl SecretKey {
    /// Whether the key file at `path` needs a password.
    pub fn is_encrypted(path: &Path) -> Result<bool, SignError> {
        let text = read(path, "secret key")?;
        let bytes = payload(&text, &path.display().to_string(), "secret key")?;
        Ok(bytes.get(2..4) != Some(&[0, 0]))
    }

    /// Reads (and with `password`, decrypts) a minisign secret key file.
    pub fn load(path: &Path, password: Option<String>) -> Result<SecretKey, SignError> {
        let what = path.display().to_string();
        let text = read(path, "secret key")?;
        let encrypted = SecretKey::is_encrypted(path)?;
        let bytes = if encrypted {
            let boxed = minisign::SecretKeyBox::from_string(&text)
                .map_err(|e| format_err(&what, "secret key", e.to_string()))?;
            let password = password.ok_or_else(|| SignError::NeedPassword(what.clone()))?;
            boxed
                .into_secret_key(Some(password))
                .map_err(|_| SignError::Decrypt(what.clone()))?
                .to_bytes()
        } else {
            // Read directly: `minisign -G -W` writes no checksum into unencrypted keys,
            // which the minisign crate then calls corrupt. The public half derived from
            // the seed is checked below instead.
            payload(&text, &what, "secret key")?
        };
        // sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) opslimit(8) memlimit(8) keynum(8) sk(64) chk(32)
        if bytes.len() != 158 || &bytes[..2] != b"Ed" {
            return Err(format_err(&what, "secret key", "expected an Ed25519 key"));
        }
        let keynum: [u8; 8] = bytes[54..62].try_into().expect("8 bytes");
        let seed: [u8; 32] = bytes[62..94].try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[94..126] {
            return Err(if encrypted {
                SignError::Decrypt(what)
            } else {
                format_err(&what, "secret key", "its two halves do not match")
            });
        }
        Ok(SecretKey { keynum, key })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            keynum: self.keynum,
            key: self.key.verifying_key(),
        }
    }

    /// A `.minisig` text for data whose BLAKE2b-512 is `hash`. Deterministic.
    pub fn sign_hash(&self, hash: &[u8; 64], trusted_comment: &str) -> String {
        let trusted_comment = trusted_comment.replace(['\n', '\r'], " ");
        let sig = self.key.sign(hash).to_bytes();
        let mut first = b"ED".to_vec();
        first.extend_from_slice(&self.keynum);
        first.extend_from_slice(&sig);
        let mut signed = sig.to_vec();
        signed.extend_from_slice(trusted_comment.as_bytes());
        let global = self.key.sign(&signed).to_bytes();
        format!(
            "untrusted comment: signature from ferry secret key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            key_id(&self.keynum),
            B64.encode(first),
            B64.encode(global)
        )
    }

    /// A `.minisig` text for `data`.
    pub fn sign(&self, data: impl Read, trusted_comment: &str) -> std::io::Result<String> {
        Ok(self.sign_hash(&blake2b(data)?, trusted_comment))
    }
}

fn read(path: &Path, kind: &'static str) -> Result<String, SignError> {
    std::fs::read_to_string(path).map_err(|error| SignError::ReadKey {
        kind,
        path: path.to_path_buf(),
        error,
    })
}

/// Makes a new key pair: (`.pub` text, `.key` text). With a password the secret key
/// is scrypt-encrypted as `minisign -G` does; without, it is stored in the clear.
pub fn generate(password: Option<String>) -> Result<(String, String), SignError> {
    let pair = match password {
        Some(p) => minisign::KeyPair::generate_encrypted_keypair(Some(p)),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| SignError::Generate(e.to_string()))?;
    let pk = pair
        .pk
        .to_box()
        .map_err(|e| SignError::Generate(e.to_string()))?
        .into_string();
    let sk = pair
        .sk
        .to_box(None)
        .map_err(|e| SignError::Generate(e.to_string()))?
        .into_string();
    Ok((pk, sk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_deterministically_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (pk, sk) = generate(Some("pw".into())).unwrap();
        std::fs::write(dir.path().join("k.pub"), &pk).unwrap();
        std::fs::write(dir.path().join("k.key"), &sk).unwrap();
        assert!(SecretKey::is_encrypted(&dir.path().join("k.key")).unwrap());
        assert!(matches!(
            SecretKey::load(&dir.path().join("k.key"), None),
            Err(SignError::NeedPassword(_))
        ));
        assert!(SecretKey::load(&dir.path().join("k.key"), Some("bad".into())).is_err());
        let key = SecretKey::load(&dir.path().join("k.key"), Some("pw".into())).unwrap();
        let public = PublicKey::load(&dir.path().join("k.pub")).unwrap();
        assert_eq!(key.public(), public);
        let a = key.sign(&b"hello"[..], "ferry test").unwrap();
        let b = key.sign(&b"hello"[..], "ferry test").unwrap();
        assert_eq!(a, b, "signatures must be deterministic");
        assert_eq!(public.verify(&b"hello"[..], &a).unwrap(), "ferry test");
        assert!(matches!(
            public.verify(&b"hellO"[..], &a),
            Err(SignError::BadSignature)
        ));
        let forged = a.replace("ferry test", "ferry tesT");
        assert!(matches!(
            public.verify(&b"hello"[..], &forged),
            Err(SignError::BadSignature)
        ));
        let (other, _) = generate(None).unwrap();
        let other = PublicKey::parse(&other, "other").unwrap();
        assert!(matches!(
            other.verify(&b"hello"[..], &a),
            Err(SignError::WrongKey { .. })
        ));
        assert_eq!(
            PublicKey::parse(&public.to_file_text(), "x").unwrap(),
            public
        );
    }
}
