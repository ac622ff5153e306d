//! Public keys, X.509 certificates, keyrings and private keys, with aws-lc-rs doing the
//! prehashed RSA PKCS#1 v1.5 and ECDSA operations (the kernel's `public_key_verify_signature`
//! on the digest, `EVP_PKEY_sign` with a digest in evmctl).

use std::fmt;

use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as lc, KeyPair as _, ParsedPublicKey};
use der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectKeyIdentifier;

use super::pem;
use super::{KeyId, Verifier, VerifyError};
use crate::hash::{Digest, HashAlgo};

const OID_RSA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// A NIST curve the kernel's `ecdsa-nist-*` drivers accept (P-521 since Linux 6.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of a digest as ECDSA uses it on this curve: digests are truncated to the
    /// order's bit length (256, 384; 521 bits exceed every digest), shorter ones are the
    /// same integer left-padded with zeros. This lets one aws-lc-rs algorithm per curve
    /// handle every hash (ECDSA signs the integer, not the hash name).
    fn digest_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 64,
        }
    }

    fn lc_digest(self) -> &'static lc_digest::Algorithm {
        match self {
            Self::P256 => &lc_digest::SHA256,
            Self::P384 => &lc_digest::SHA384,
            Self::P521 => &lc_digest::SHA512,
        }
    }

    fn verify_alg(self) -> &'static lc::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &lc::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &lc::ECDSA_P384_SHA384_ASN1,
            Self::P521 => &lc::ECDSA_P521_SHA512_ASN1,
        }
    }

    fn sign_alg(self) -> &'static lc::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &lc::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    /// `digest` as the curve's fixed-size aws-lc-rs digest (see [`Curve::digest_len`]).
    fn normalize(self, digest: &Digest) -> Result<lc_digest::Digest, VerifyError> {
        let n = self.digest_len();
        let mut buf = [0u8; 64];
        let d = digest.as_bytes();
        if d.len() >= n {
            buf[..n].copy_from_slice(&d[..n]);
        } else {
            buf[n - d.len()..n].copy_from_slice(d);
        }
        lc_digest::Digest::import_less_safe(&buf[..n], self.lc_digest())
            .map_err(|_| VerifyError::UnsupportedHash(digest.algo()))
    }

    fn all() -> [Self; 3] {
        [Self::P256, Self::P384, Self::P521]
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        })
    }
}

/// The algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with PKCS#1 v1.5 signatures; `bits` is the modulus size.
    Rsa {
        bits: usize,
    },
    Ecdsa(Curve),
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::Ecdsa(c) => write!(f, "ECDSA {c}"),
        }
    }
}

/// Why a key, certificate or key file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Malformed PEM text.
    #[error("PEM line {line}: {msg}")]
    Pem { line: usize, msg: String },
    /// Malformed DER (certificate, SubjectPublicKeyInfo, private key).
    #[error("{what}: {msg}")]
    Der { what: &'static str, msg: String },
    /// A well-formed key of a type or size this crate does not use.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The input holds no private key (or no certificate).
    #[error("no {0} found")]
    Missing(&'static str),
    /// The key is encrypted and no password was given, or the password is wrong.
    #[error("cannot decrypt the private key: {0}")]
    Decrypt(String),
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("a {key} key cannot sign {hash} digests")]
    UnsupportedCombination { key: KeyAlgorithm, hash: HashAlgo },
    #[error("unsupported hash algorithm {0}")]
    UnsupportedHash(HashAlgo),
    #[error("the signature would make a {0}-byte xattr, more than evmctl's 1024")]
    TooLarge(usize),
    #[error("the signing operation failed")]
    Failed,
}

/// A public key that can check prehashed signatures.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    parsed: Parsed,
}

#[derive(Clone)]
enum Parsed {
    /// One parsed key per digest aws-lc-rs verifies with PKCS#1 v1.5: sha1, sha256, sha384,
    /// sha512 (the algorithm is part of its parameters).
    Rsa(Box<[ParsedPublicKey; 4]>),
    Ec(Curve, ParsedPublicKey),
}

const RSA_HASHES: [HashAlgo; 4] = [
    HashAlgo::SHA1,
    HashAlgo::SHA256,
    HashAlgo::SHA384,
    HashAlgo::SHA512,
];

fn rsa_lc(algo: HashAlgo) -> Option<(&'static lc::RsaParameters, &'static lc_digest::Algorithm)> {
    Some(match algo {
        HashAlgo::SHA1 => (
            &lc::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            &lc_digest::SHA1_FOR_LEGACY_USE_ONLY,
        ),
        HashAlgo::SHA256 => (&lc::RSA_PKCS1_2048_8192_SHA256, &lc_digest::SHA256),
        HashAlgo::SHA384 => (&lc::RSA_PKCS1_2048_8192_SHA384, &lc_digest::SHA384),
        HashAlgo::SHA512 => (&lc::RSA_PKCS1_2048_8192_SHA512, &lc_digest::SHA512),
        _ => return None,
    })
}

fn der_err(what: &'static str) -> impl Fn(der::Error) -> KeyError {
    move |e| KeyError::Der {
        what,
        msg: e.to_string(),
    }
}

impl PublicKey {
    /// Parses a DER `SubjectPublicKeyInfo`: rsaEncryption (2048 to 8192 bits) or
    /// id-ecPublicKey on P-256, P-384 or P-521.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, KeyError> {
        let info = spki::SubjectPublicKeyInfoRef::from_der(spki)
            .map_err(der_err("SubjectPublicKeyInfo"))?;
        let oid = info.algorithm.oid;
        let reject = |what: &str| KeyError::Unsupported(what.to_owned());
        if oid == OID_RSA {
            let mut keys = Vec::with_capacity(4);
            for h in RSA_HASHES {
                let (params, _) = rsa_lc(h).ok_or_else(|| reject("RSA hash"))?;
                keys.push(ParsedPublicKey::new(params, spki).map_err(|e| {
                    KeyError::Unsupported(format!("RSA key rejected (2048 to 8192 bits only): {e}"))
                })?);
            }
            let bits = lc::RsaParameters::public_modulus_len(info.subject_public_key.raw_bytes())
                .map_err(|_| reject("RSA public key"))? as usize;
            let keys: [ParsedPublicKey; 4] =
                keys.try_into().map_err(|_| reject("RSA public key"))?;
            Ok(Self {
                algorithm: KeyAlgorithm::Rsa { bits },
                spki: spki.to_vec(),
                parsed: Parsed::Rsa(Box::new(keys)),
            })
        } else if oid == OID_EC {
            let curve_oid = info
                .algorithm
                .parameters_oid()
                .map_err(|_| reject("EC key without a named curve"))?;
            let curve = match curve_oid {
                o if o == OID_P256 => Curve::P256,
                o if o == OID_P384 => Curve::P384,
                o if o == OID_P521 => Curve::P521,
                o => return Err(KeyError::Unsupported(format!("EC curve {o}"))),
            };
            let parsed = ParsedPublicKey::new(curve.verify_alg(), spki)
                .map_err(|e| KeyError::Unsupported(format!("EC key rejected: {e}")))?;
            Ok(Self {
                algorithm: KeyAlgorithm::Ecdsa(curve),
                spki: spki.to_vec(),
                parsed: Parsed::Ec(curve, parsed),
            })
        } else {
            Err(KeyError::Unsupported(format!("public key algorithm {oid}")))
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// evmctl's key id for a key without a certificate (`calc_keyid_v2`): the last four
    /// bytes of SHA-1 over the subjectPublicKey BIT STRING contents, which is also the
    /// default SubjectKeyIdentifier OpenSSL puts in certificates.
    pub fn default_keyid(&self) -> KeyId {
        // `spki` was decoded in `from_spki_der`, so this decode cannot fail; fall back to
        // hashing the whole SPKI rather than panic.
        let bits = spki::SubjectPublicKeyInfoRef::from_der(&self.spki)
            .map(|i| i.subject_public_key.raw_bytes().to_vec())
            .unwrap_or_else(|_| self.spki.clone());
        match HashAlgo::SHA1.digest(&bits) {
            Ok(d) => KeyId::from_skid(&d),
            Err(_) => KeyId(0),
        }
    }

    /// Checks `sig` over the prehashed `digest`: PKCS#1 v1.5 with the DigestInfo of the
    /// digest's algorithm (sha1, sha256, sha384, sha512) for RSA; DER `SEQUENCE{r,s}`
    /// over the digest for ECDSA (any digest up to 64 bytes).
    pub fn verify(&self, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        match &self.parsed {
            Parsed::Rsa(keys) => {
                let i = RSA_HASHES.iter().position(|&h| h == digest.algo()).ok_or(
                    VerifyError::UnsupportedCombination {
                        key: self.algorithm,
                        hash: digest.algo(),
                    },
                )?;
                let (_, lcd) =
                    rsa_lc(digest.algo()).ok_or(VerifyError::UnsupportedHash(digest.algo()))?;
                let d = lc_digest::Digest::import_less_safe(digest.as_bytes(), lcd)
                    .map_err(|_| VerifyError::UnsupportedHash(digest.algo()))?;
                keys[i]
                    .verify_digest_sig(&d, sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Parsed::Ec(curve, key) => {
                let d = curve.normalize(digest)?;
                key.verify_digest_sig(&d, sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }
}

impl Verifier for PublicKey {
    /// Ignores `keyid`: the caller chose the key.
    fn verify_digest(&self, _keyid: KeyId, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        self.verify(digest, sig)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("default_keyid", &self.default_keyid())
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

/// An X.509 certificate reduced to what IMA uses: its key, its key id and its subject.
/// The certificate's own signature and validity are not checked (the kernel checks them
/// when a key is added to a trusted keyring; loading a keyring here is the trust decision).
#[derive(Debug, Clone)]
pub struct Certificate {
    key: PublicKey,
    keyid: KeyId,
    skid: Option<Vec<u8>>,
    subject: String,
    der: Vec<u8>,
}

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let cert = x509_cert::Certificate::from_der(der).map_err(der_err("X.509 certificate"))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(der_err("certificate public key"))?;
        let key = PublicKey::from_spki_der(&spki)?;
        let skid = tbs
            .get_extension::<SubjectKeyIdentifier>()
            .map_err(der_err("SubjectKeyIdentifier"))?
            .map(|(_, s)| s.0.as_bytes().to_vec());
        let keyid = match &skid {
            Some(s) if !s.is_empty() => KeyId::from_skid(s),
            _ => key.default_keyid(),
        };
        Ok(Self {
            key,
            keyid,
            skid,
            subject: tbs.subject().to_string(),
            der: der.to_vec(),
        })
    }

    /// Parses every certificate in `bytes`: one DER certificate, or PEM text holding
    /// `CERTIFICATE` blocks (other blocks are skipped). Fails if there is none.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Self>, KeyError> {
        if !pem::is_pem(bytes) {
            return Ok(vec![Self::from_der(bytes)?]);
        }
        let mut out = Vec::new();
        for b in pem::blocks(bytes)? {
            if b.label == "CERTIFICATE" {
                out.push(Self::from_der(&b.der).map_err(|e| KeyError::Pem {
                    line: b.line,
                    msg: e.to_string(),
                })?);
            }
        }
        if out.is_empty() {
            return Err(KeyError::Missing("certificate"));
        }
        Ok(out)
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The last four bytes of the SubjectKeyIdentifier (or, without one, of SHA-1 over the
    /// public key, as evmctl computes).
    pub fn keyid(&self) -> KeyId {
        self.keyid
    }

    pub fn skid(&self) -> Option<&[u8]> {
        self.skid.as_deref()
    }

    /// The subject name (RFC 4514 string).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// A set of certificates searched by key id, like the kernel's `.ima`/`.evm` keyrings.
/// Filling it (a directory of certificates, `--keys` arguments) is the caller's I/O.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<Certificate>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, cert: Certificate) {
        self.certs.push(cert);
    }

    /// Adds every certificate in `bytes` (DER or PEM, see [`Certificate::parse_all`]) and
    /// returns how many.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<usize, KeyError> {
        let certs = Certificate::parse_all(bytes)?;
        let n = certs.len();
        self.certs.extend(certs);
        Ok(n)
    }

    /// The first certificate with this key id (the kernel also takes the first match).
    pub fn find(&self, keyid: KeyId) -> Option<&Certificate> {
        self.certs.iter().find(|c| c.keyid == keyid)
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Certificate> {
        self.certs.iter()
    }
}

impl Verifier for Keyring {
    fn verify_digest(&self, keyid: KeyId, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        self.find(keyid)
            .ok_or(VerifyError::NoKey(keyid))?
            .key
            .verify(digest, sig)
    }
}

/// A private signing key.
pub struct PrivateKey {
    signer: Signer,
    public: PublicKey,
    /// The key id of a certificate found in the same PEM file, if any.
    cert_keyid: Option<KeyId>,
}

enum Signer {
    Rsa(lc::RsaKeyPair),
    Ec(Curve, lc::EcdsaKeyPair),
}

impl PrivateKey {
    /// Parses a PEM private key: `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY` (PKCS#8
    /// with PBES2, needs `password`), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY`
    /// (SEC1). A `CERTIFICATE` block in the same text supplies the key id, as evmctl does.
    pub fn from_pem(text: &[u8], password: Option<&[u8]>) -> Result<Self, KeyError> {
        let blocks = pem::blocks(text)?;
        let mut key = None;
        let mut cert_keyid = None;
        for b in &blocks {
            let at = |e: KeyError| KeyError::Pem {
                line: b.line,
                msg: e.to_string(),
            };
            match b.label.as_str() {
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" if key.is_none() => {
                    key = Some(Self::from_der(&b.der).map_err(at)?);
                }
                "ENCRYPTED PRIVATE KEY" if key.is_none() => {
                    let pw = password.ok_or_else(|| {
                        KeyError::Decrypt("the key is encrypted; give a password".into())
                    })?;
                    let enc = pkcs8::EncryptedPrivateKeyInfoRef::try_from(b.der.as_slice())
                        .map_err(|e| {
                            at(KeyError::Der {
                                what: "encrypted PKCS#8",
                                msg: e.to_string(),
                            })
                        })?;
                    let doc = enc
                        .decrypt(pw)
                        .map_err(|e| KeyError::Decrypt(format!("wrong password? ({e})")))?;
                    key = Some(Self::from_der(doc.as_bytes()).map_err(at)?);
                }
                "CERTIFICATE" if cert_keyid.is_none() => {
                    cert_keyid = Some(Certificate::from_der(&b.der).map_err(at)?.keyid());
                }
                _ => {}
            }
        }
        let mut key = key.ok_or(KeyError::Missing("private key"))?;
        key.cert_keyid = cert_keyid;
        Ok(key)
    }

    /// Parses a DER private key: PKCS#8, PKCS#1 `RSAPrivateKey` or SEC1 `ECPrivateKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = lc::RsaKeyPair::from_pkcs8(der).or_else(|_| lc::RsaKeyPair::from_der(der)) {
            return Self::with_signer(Signer::Rsa(k));
        }
        for curve in Curve::all() {
            if let Ok(k) = lc::EcdsaKeyPair::from_private_key_der(curve.sign_alg(), der) {
                return Self::with_signer(Signer::Ec(curve, k));
            }
        }
        Err(KeyError::Unsupported(
            "not an RSA (2048 to 8192 bits) or P-256/P-384/P-521 private key".into(),
        ))
    }

    fn with_signer(signer: Signer) -> Result<Self, KeyError> {
        let spki = match &signer {
            Signer::Rsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
            Signer::Ec(_, k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| KeyError::Unsupported("cannot encode the public key".into()))?;
        Ok(Self {
            signer,
            public: PublicKey::from_spki_der(&spki)?,
            cert_keyid: None,
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm
    }

    /// The key id evmctl would use without `--keyid`/`--keyid-from-cert`: a certificate's
    /// in the same PEM file, else [`PublicKey::default_keyid`].
    pub fn keyid(&self) -> KeyId {
        self.cert_keyid
            .unwrap_or_else(|| self.public.default_keyid())
    }

    /// Signs the prehashed `digest` (see [`PublicKey::verify`] for the schemes). RSA can
    /// sign sha256, sha384 and sha512 digests; ECDSA any digest of up to 64 bytes.
    pub fn sign_digest(&self, digest: &Digest) -> Result<Vec<u8>, SignError> {
        match &self.signer {
            Signer::Rsa(k) => {
                let enc: &'static dyn lc::RsaEncoding = match digest.algo() {
                    HashAlgo::SHA256 => &lc::RSA_PKCS1_SHA256,
                    HashAlgo::SHA384 => &lc::RSA_PKCS1_SHA384,
                    HashAlgo::SHA512 => &lc::RSA_PKCS1_SHA512,
                    h => {
                        return Err(SignError::UnsupportedCombination {
                            key: self.algorithm(),
                            hash: h,
                        });
                    }
                };
                let (_, lcd) =
                    rsa_lc(digest.algo()).ok_or(SignError::UnsupportedHash(digest.algo()))?;
                let d = lc_digest::Digest::import_less_safe(digest.as_bytes(), lcd)
                    .map_err(|_| SignError::UnsupportedHash(digest.algo()))?;
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign_digest(enc, &d, &mut sig)
                    .map_err(|_| SignError::Failed)?;
                Ok(sig)
            }
            Signer::Ec(curve, k) => {
                let d = curve
                    .normalize(digest)
                    .map_err(|_| SignError::UnsupportedHash(digest.algo()))?;
                let sig = k.sign_digest(&d).map_err(|_| SignError::Failed)?;
                Ok(sig.as_ref().to_vec())
            }
        }
    }
}

impl fmt::Debug for PrivateKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}
