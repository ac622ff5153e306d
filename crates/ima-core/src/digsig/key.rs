//! Public keys, X.509 certificates, keyrings and private keys, with aws-lc-rs doing the
//! prehashed RSA PKCS#1 v1.5 and ECDSA operations (the kernel's `public_key_verify_signature`
//! on the digest, `EVP_PKEY_sign` with a digest in evmctl).
//!
//! What aws-lc-rs refuses and the kernel and evmctl accept goes to RustCrypto: RSA keys of
//! 1024 to 2047 bits and RSA with md5, sha224, rmd160 or sha3 digests (`rsa`, PKCS#1 v1.5
//! with the DigestInfo of [`digest_info_prefix`]), the raw PKCS#1 block of v1 signatures,
//! and ECDSA on P-192 (`p192`). One scheme, two engines: the choice is by key size and
//! digest only, and both produce the same bytes (PKCS#1 v1.5 is deterministic).

use std::fmt;

use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as lc, KeyPair as _, ParsedPublicKey};
use der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectKeyIdentifier;

use p192::ecdsa::signature::hazmat::PrehashVerifier as _;
use p192::pkcs8::DecodePrivateKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;

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
const OID_P192: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.1");

/// The DER `DigestInfo` prefix PKCS#1 v1.5 puts before a digest of `algo` (RFC 8017 §9.2;
/// the kernel's `rsa-pkcs1pad` tables): `SEQUENCE { SEQUENCE { OID, NULL }, OCTET STRING }`
/// up to the digest bytes. `None` for algorithms without an RSA DigestInfo OID here.
pub fn digest_info_prefix(algo: HashAlgo) -> Option<Vec<u8>> {
    let oid = match algo {
        HashAlgo::MD5 => "1.2.840.113549.2.5",
        HashAlgo::SHA1 => "1.3.14.3.2.26",
        HashAlgo::RIPE_MD_160 => "1.3.36.3.2.1",
        HashAlgo::SHA224 => "2.16.840.1.101.3.4.2.4",
        HashAlgo::SHA256 => "2.16.840.1.101.3.4.2.1",
        HashAlgo::SHA384 => "2.16.840.1.101.3.4.2.2",
        HashAlgo::SHA512 => "2.16.840.1.101.3.4.2.3",
        _ => return None,
    };
    let oid = der::oid::ObjectIdentifier::new(oid).ok()?;
    let oid = oid.as_bytes();
    let dlen = algo.digest_len()?;
    // Every length here is below 128, so each DER length is one byte.
    let alg_id_len = 2 + oid.len() + 2;
    let total = 2 + alg_id_len + 2 + dlen;
    let mut p = vec![
        0x30,
        u8::try_from(total).ok()?,
        0x30,
        u8::try_from(alg_id_len).ok()?,
    ];
    p.extend_from_slice(&[0x06, u8::try_from(oid.len()).ok()?]);
    p.extend_from_slice(oid);
    p.extend_from_slice(&[0x05, 0x00, 0x04, u8::try_from(dlen).ok()?]);
    Some(p)
}

/// A NIST curve the kernel's `ecdsa-nist-*` drivers accept (P-192 and P-256 since Linux
/// 5.13, P-384 since 5.15, P-521 since 6.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// prime192v1 (secp192r1): legacy, but evmctl's test keys use it; RustCrypto `p192`.
    P192,
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
            Self::P192 => 24,
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 64,
        }
    }

    fn lc_digest(self) -> &'static lc_digest::Algorithm {
        match self {
            // Only used for aws-lc-rs curves; P-192 keys never reach aws-lc-rs.
            Self::P192 | Self::P256 => &lc_digest::SHA256,
            Self::P384 => &lc_digest::SHA384,
            Self::P521 => &lc_digest::SHA512,
        }
    }

    fn verify_alg(self) -> &'static lc::EcdsaVerificationAlgorithm {
        match self {
            Self::P192 | Self::P256 => &lc::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &lc::ECDSA_P384_SHA384_ASN1,
            Self::P521 => &lc::ECDSA_P521_SHA512_ASN1,
        }
    }

    fn sign_alg(self) -> &'static lc::EcdsaSigningAlgorithm {
        match self {
            Self::P192 | Self::P256 => &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &lc::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    /// `digest` as the curve's fixed-size aws-lc-rs digest (see [`Curve::digest_len`]).
    fn normalize(self, digest: &Digest) -> Result<lc_digest::Digest, VerifyError> {
        let (buf, n) = self.normalized_bytes(digest);
        lc_digest::Digest::import_less_safe(&buf[..n], self.lc_digest())
            .map_err(|_| VerifyError::UnsupportedHash(digest.algo()))
    }

    /// The digest as the integer ECDSA signs, in [`Curve::digest_len`] bytes.
    fn normalized_bytes(self, digest: &Digest) -> ([u8; 64], usize) {
        let n = self.digest_len();
        let mut buf = [0u8; 64];
        let d = digest.as_bytes();
        if d.len() >= n {
            buf[..n].copy_from_slice(&d[..n]);
        } else {
            buf[n - d.len()..n].copy_from_slice(d);
        }
        (buf, n)
    }

    /// The curves aws-lc-rs handles.
    fn all() -> [Self; 3] {
        [Self::P256, Self::P384, Self::P521]
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P192 => "P-192",
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
    Rsa(Box<RsaPublic>),
    Ec(Curve, ParsedPublicKey),
    P192(Box<p192::ecdsa::VerifyingKey>),
}

#[derive(Clone)]
struct RsaPublic {
    /// One parsed key per digest aws-lc-rs verifies with PKCS#1 v1.5: sha1, sha256, sha384,
    /// sha512 (the algorithm is part of its parameters); `None` below 2048 bits.
    fast: Option<[ParsedPublicKey; 4]>,
    /// Everything else (1024 bits and up, any digest with a DigestInfo, v1's raw block).
    soft: rsa::PublicKey,
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
            let soft = rsa::PublicKey::from_public_key_der(spki).map_err(|e| {
                KeyError::Unsupported(format!("RSA key rejected (1024 to 8192 bits only): {e}"))
            })?;
            let bits = soft.size() * 8;
            let mut keys = Vec::with_capacity(4);
            // aws-lc-rs parses smaller keys but refuses them when verifying.
            for h in RSA_HASHES.iter().copied().filter(|_| bits >= 2048) {
                let Some((params, _)) = rsa_lc(h) else { break };
                match ParsedPublicKey::new(params, spki) {
                    Ok(k) => keys.push(k),
                    Err(_) => break,
                }
            }
            let fast: Option<[ParsedPublicKey; 4]> = keys.try_into().ok();
            Ok(Self {
                algorithm: KeyAlgorithm::Rsa { bits },
                spki: spki.to_vec(),
                parsed: Parsed::Rsa(Box::new(RsaPublic { fast, soft })),
            })
        } else if oid == OID_EC {
            let curve_oid = info
                .algorithm
                .parameters_oid()
                .map_err(|_| reject("EC key without a named curve"))?;
            if curve_oid == OID_P192 {
                let key =
                    p192::ecdsa::VerifyingKey::from_sec1_bytes(info.subject_public_key.raw_bytes())
                        .map_err(|e| KeyError::Unsupported(format!("EC key rejected: {e}")))?;
                return Ok(Self {
                    algorithm: KeyAlgorithm::Ecdsa(Curve::P192),
                    spki: spki.to_vec(),
                    parsed: Parsed::P192(Box::new(key)),
                });
            }
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

    /// A public key from a file: PEM `PUBLIC KEY` (SubjectPublicKeyInfo, what `openssl pkey
    /// -pubout` writes and evmctl's `--rsa` reads), or a certificate (DER or PEM), whose key
    /// is taken.
    pub fn from_pem_or_cert(bytes: &[u8]) -> Result<Self, KeyError> {
        if pem::is_pem(bytes) {
            let blocks = pem::blocks(bytes)?;
            if let Some(b) = blocks.iter().find(|b| b.label == "PUBLIC KEY") {
                return Self::from_spki_der(&b.der).map_err(|e| KeyError::Pem {
                    line: b.line,
                    msg: e.to_string(),
                });
            }
        }
        Ok(Certificate::parse_all(bytes)?.remove(0).key)
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
    /// digest's algorithm ([`digest_info_prefix`]: md5, sha1, rmd160, sha224, sha256,
    /// sha384, sha512) for RSA; DER `SEQUENCE{r,s}` over the digest for ECDSA (any digest
    /// up to 64 bytes).
    pub fn verify(&self, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        match &self.parsed {
            Parsed::Rsa(k) => {
                let fast = k
                    .fast
                    .as_ref()
                    .zip(RSA_HASHES.iter().position(|&h| h == digest.algo()));
                if let Some((keys, i)) = fast {
                    let (_, lcd) =
                        rsa_lc(digest.algo()).ok_or(VerifyError::UnsupportedHash(digest.algo()))?;
                    let d = lc_digest::Digest::import_less_safe(digest.as_bytes(), lcd)
                        .map_err(|_| VerifyError::UnsupportedHash(digest.algo()))?;
                    return keys[i]
                        .verify_digest_sig(&d, sig)
                        .map_err(|_| VerifyError::BadSignature);
                }
                let prefix = digest_info_prefix(digest.algo()).ok_or(
                    VerifyError::UnsupportedCombination {
                        key: self.algorithm,
                        hash: digest.algo(),
                    },
                )?;
                let scheme = rsa::Pkcs1v15Sign {
                    hash_len: Some(digest.as_bytes().len()),
                    prefix: prefix.into_boxed_slice(),
                };
                k.soft
                    .verify(scheme, digest.as_bytes(), sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Parsed::Ec(curve, key) => {
                let d = curve.normalize(digest)?;
                key.verify_digest_sig(&d, sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Parsed::P192(key) => {
                let (buf, n) = Curve::P192.normalized_bytes(digest);
                let sig =
                    p192::ecdsa::Signature::from_der(sig).map_err(|_| VerifyError::BadSignature)?;
                key.verify_prehash(&buf[..n], &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }

    /// Checks a PKCS#1 v1.5 block carrying `data` with no DigestInfo (what
    /// `RSA_public_decrypt` checks in v1 signatures). RSA keys only.
    pub(crate) fn verify_raw_pkcs1(&self, data: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let Parsed::Rsa(k) = &self.parsed else {
            return Err(VerifyError::UnsupportedCombination {
                key: self.algorithm,
                hash: HashAlgo::SHA1,
            });
        };
        k.soft
            .verify(rsa::Pkcs1v15Sign::new_unprefixed(), data, sig)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// The RSA modulus and public exponent, big endian without leading zeros (`None` for
    /// EC keys).
    pub fn rsa_components(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let Parsed::Rsa(k) = &self.parsed else {
            return None;
        };
        let strip = |v: Vec<u8>| {
            let z = v.iter().take_while(|&&b| b == 0).count();
            v[z..].to_vec()
        };
        Some((
            strip(k.soft.n().to_be_bytes().to_vec()),
            strip(k.soft.e().to_be_bytes().to_vec()),
        ))
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

/// A set of certificates searched by key id, like the kernel's `.ima`/`.evm` keyrings,
/// and bare public keys (PEM `PUBLIC KEY`), which the kernel cannot load but a verifier
/// can use: their key id is evmctl's `calc_keyid_v2` ([`PublicKey::default_keyid`]), the
/// same as a certificate with OpenSSL's default SubjectKeyIdentifier for that key.
/// Filling it (a directory of certificates, `--keys` arguments) is the caller's I/O.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<Certificate>,
    bare: Vec<(KeyId, PublicKey)>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, cert: Certificate) {
        self.certs.push(cert);
    }

    /// Adds a bare public key under its default key id.
    pub fn add_key(&mut self, key: PublicKey) {
        self.bare.push((key.default_keyid(), key));
    }

    /// Adds every certificate in `bytes` (DER, or PEM `CERTIFICATE` blocks, see
    /// [`Certificate::parse_all`]) and every PEM `PUBLIC KEY` block, and returns how many.
    /// Nothing is added unless every such block parses.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<usize, KeyError> {
        if !pem::is_pem(bytes) {
            self.certs.push(Certificate::from_der(bytes)?);
            return Ok(1);
        }
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        for b in pem::blocks(bytes)? {
            let at = |e: KeyError| KeyError::Pem {
                line: b.line,
                msg: e.to_string(),
            };
            match b.label.as_str() {
                "CERTIFICATE" => certs.push(Certificate::from_der(&b.der).map_err(at)?),
                "PUBLIC KEY" => keys.push(PublicKey::from_spki_der(&b.der).map_err(at)?),
                _ => {}
            }
        }
        let n = certs.len() + keys.len();
        if n == 0 {
            return Err(KeyError::Missing("certificate or public key"));
        }
        self.certs.extend(certs);
        keys.into_iter().for_each(|k| self.add_key(k));
        Ok(n)
    }

    /// The first certificate with this key id (the kernel also takes the first match).
    pub fn find(&self, keyid: KeyId) -> Option<&Certificate> {
        self.certs.iter().find(|c| c.keyid == keyid)
    }

    /// The key with this key id: a certificate's (the first match), else a bare key's.
    pub fn find_key(&self, keyid: KeyId) -> Option<&PublicKey> {
        self.find(keyid).map(Certificate::key).or_else(|| {
            self.bare
                .iter()
                .find(|(id, _)| *id == keyid)
                .map(|(_, k)| k)
        })
    }

    /// Certificates and bare keys.
    pub fn len(&self) -> usize {
        self.certs.len() + self.bare.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificates (not the bare keys).
    pub fn iter(&self) -> impl Iterator<Item = &Certificate> {
        self.certs.iter()
    }
}

impl Verifier for Keyring {
    fn verify_digest(&self, keyid: KeyId, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        self.find_key(keyid)
            .ok_or(VerifyError::NoKey(keyid))?
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
    /// aws-lc-rs for 2048 bits and up with sha256/384/512 when it takes the key; RustCrypto
    /// `rsa` (with blinding) for the rest.
    Rsa {
        fast: Option<lc::RsaKeyPair>,
        soft: Box<rsa::PrivateKey>,
    },
    Ec(Curve, lc::EcdsaKeyPair),
    P192(Box<p192::elliptic_curve::SecretKey<p192::NistP192>>),
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
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        let soft =
            rsa::PrivateKey::from_pkcs8_der(der).or_else(|_| rsa::PrivateKey::from_pkcs1_der(der));
        if let Ok(soft) = soft {
            let fast = lc::RsaKeyPair::from_pkcs8(der)
                .or_else(|_| lc::RsaKeyPair::from_der(der))
                .ok()
                .filter(|_| soft.size() >= 256);
            return Self::with_signer(Signer::Rsa {
                fast,
                soft: Box::new(soft),
            });
        }
        for curve in Curve::all() {
            if let Ok(k) = lc::EcdsaKeyPair::from_private_key_der(curve.sign_alg(), der) {
                return Self::with_signer(Signer::Ec(curve, k));
            }
        }
        type P192Secret = p192::elliptic_curve::SecretKey<p192::NistP192>;
        let p192 = P192Secret::from_pkcs8_der(der).or_else(|_| P192Secret::from_sec1_der(der));
        if let Ok(k) = p192 {
            return Self::with_signer(Signer::P192(Box::new(k)));
        }
        Err(KeyError::Unsupported(
            "not an RSA (1024 to 8192 bits) or P-192/P-256/P-384/P-521 private key".into(),
        ))
    }

    fn with_signer(signer: Signer) -> Result<Self, KeyError> {
        use p192::pkcs8::EncodePublicKey as _;
        use rsa::pkcs8::EncodePublicKey as _;
        let unencodable = || KeyError::Unsupported("cannot encode the public key".into());
        let spki = match &signer {
            Signer::Rsa { soft, .. } => soft
                .to_public_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|_| unencodable())?,
            Signer::Ec(_, k) => k
                .public_key()
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| unencodable())?,
            Signer::P192(k) => k
                .public_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|_| unencodable())?,
        };
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
    /// sign every digest with a DigestInfo ([`digest_info_prefix`]); ECDSA any digest of up
    /// to 64 bytes.
    pub fn sign_digest(&self, digest: &Digest) -> Result<Vec<u8>, SignError> {
        match &self.signer {
            Signer::Rsa { fast, soft } => {
                let enc: Option<&'static dyn lc::RsaEncoding> = match digest.algo() {
                    HashAlgo::SHA256 => Some(&lc::RSA_PKCS1_SHA256),
                    HashAlgo::SHA384 => Some(&lc::RSA_PKCS1_SHA384),
                    HashAlgo::SHA512 => Some(&lc::RSA_PKCS1_SHA512),
                    _ => None,
                };
                if let Some((k, enc)) = fast.as_ref().zip(enc) {
                    let (_, lcd) =
                        rsa_lc(digest.algo()).ok_or(SignError::UnsupportedHash(digest.algo()))?;
                    let d = lc_digest::Digest::import_less_safe(digest.as_bytes(), lcd)
                        .map_err(|_| SignError::UnsupportedHash(digest.algo()))?;
                    let mut sig = vec![0u8; k.public_modulus_len()];
                    k.sign_digest(enc, &d, &mut sig)
                        .map_err(|_| SignError::Failed)?;
                    return Ok(sig);
                }
                let prefix =
                    digest_info_prefix(digest.algo()).ok_or(SignError::UnsupportedCombination {
                        key: self.algorithm(),
                        hash: digest.algo(),
                    })?;
                let scheme = rsa::Pkcs1v15Sign {
                    hash_len: Some(digest.as_bytes().len()),
                    prefix: prefix.into_boxed_slice(),
                };
                soft.sign(scheme, digest.as_bytes())
                    .map_err(|_| SignError::Failed)
            }
            Signer::P192(k) => {
                let (buf, n) = Curve::P192.normalized_bytes(digest);
                // A fresh random nonce per signature (as OpenSSL does for evmctl).
                let nonce = p192::elliptic_curve::NonZeroScalar::<p192::NistP192>::random(
                    &mut rand_core::OsRng,
                );
                let mut z = p192::FieldBytes::default();
                z.copy_from_slice(&buf[..n]);
                let d = k.to_nonzero_scalar();
                let (sig, _) =
                    ecdsa::hazmat::sign_prehashed::<p192::NistP192, _>(&d, *nonce.as_ref(), &z)
                        .map_err(|_| SignError::Failed)?;
                Ok(sig.to_der().as_bytes().to_vec())
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

impl PrivateKey {
    /// A PKCS#1 v1.5 signature block over `data` with no DigestInfo
    /// (`RSA_private_encrypt(RSA_PKCS1_PADDING)`, what v1 signatures carry). RSA keys only.
    pub(crate) fn sign_raw_pkcs1(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let Signer::Rsa { soft, .. } = &self.signer else {
            return Err(SignError::UnsupportedCombination {
                key: self.algorithm(),
                hash: HashAlgo::SHA1,
            });
        };
        soft.sign(rsa::Pkcs1v15Sign::new_unprefixed(), data)
            .map_err(|_| SignError::Failed)
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
