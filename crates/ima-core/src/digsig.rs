//! IMA/EVM digital signatures: the `signature_v2_hdr` framing (versions 2 and 3), key ids,
//! `ima_file_id`, what exactly is signed, and checking or making signatures with X.509
//! keys (RSA PKCS#1 v1.5, ECDSA P-256/P-384/P-521) through a [`Verifier`].
//!
//! Mirrors `security/integrity/digsig.c`, `security/integrity/digsig_asymmetric.c`
//! (`asymmetric_verify`, `calc_file_id_hash`) and the signing half of ima-evm-utils'
//! `libimaevm.c` (`imaevm_signhash`).
//!
//! ```text
//! struct signature_v2_hdr {
//!     uint8_t type;        /* xattr type: 0x03, 0x05 or 0x06 */
//!     uint8_t version;     /* 2: signs the digest; 3: signs H(ima_file_id) */
//!     uint8_t hash_algo;   /* enum hash_algo */
//!     __be32 keyid;        /* last 4 bytes of the X.509 SubjectKeyIdentifier */
//!     __be16 sig_size;     /* bytes of sig[] */
//!     uint8_t sig[];
//! } __packed;
//! struct ima_file_id {
//!     __u8 hash_type;      /* xattr type */
//!     __u8 hash_algorithm; /* enum hash_algo */
//!     __u8 hash[HASH_MAX_DIGESTSIZE];   /* only 2 + digest size bytes are hashed */
//! } __packed;
//! ```
//!
//! Flow: decode the xattr ([`crate::xattr::XattrValue`]), compute the file digest with
//! [`Signature::hash_algo`] (the fs-verity digest, [`crate::verity`], for version 3), then
//! [`Signature::verify`] against a [`Keyring`]. Signing: [`PrivateKey::from_pem`], then
//! [`Signature::sign_v2`] or [`Signature::sign_v3`].

mod key;
mod pem;
pub mod v1;

use std::fmt;
use std::str::FromStr;

pub use key::{
    Certificate, Curve, KeyAlgorithm, KeyError, Keyring, PrivateKey, PublicKey, SignError,
    digest_info_prefix,
};

use crate::codec::{Codec, DecodeError, DecodeErrorKind, Reader};
use crate::hash::{Digest, HashAlgo, UnsupportedAlgo};
use crate::integrity::XattrType;

/// Size of `signature_v2_hdr` including the type byte.
pub const SIG_HEADER_LEN: usize = 9;

/// The largest value `evmctl` writes (`MAX_SIGNATURE_SIZE` in imaevm.h); signing refuses
/// to produce more.
pub const MAX_SIGNED_XATTR: usize = 1024;

/// A 32-bit key id: the last four bytes of the signer certificate's
/// SubjectKeyIdentifier, stored big endian. Displays as 8 lowercase hex digits, as the
/// kernel searches for it (`"id:%08x"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The key id of a SubjectKeyIdentifier: its last four bytes (fewer bytes are taken
    /// as a shorter big-endian number).
    pub fn from_skid(skid: &[u8]) -> Self {
        let tail = &skid[skid.len().saturating_sub(4)..];
        Self(tail.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:08x})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = BadKeyId;

    /// 1 to 8 hex digits, optionally prefixed `0x` (evmctl `--keyid`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let h = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadKeyId(s.to_owned()));
        }
        u32::from_str_radix(h, 16)
            .map(KeyId)
            .map_err(|_| BadKeyId(s.to_owned()))
    }
}

/// A string that is no key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key id {0:?}: expected 1 to 8 hex digits")]
pub struct BadKeyId(pub String);

/// A signature with its `signature_v2_hdr`: what follows the type byte in a 0x03, 0x05 or
/// 0x06 xattr (the type byte is kept in `kind`). Decoding checks the framing exactly as
/// the kernel does (`sig_size` equals the bytes that follow, at least one byte); version
/// and algorithm are checked when verifying, so unknown values round-trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The xattr type byte (0x03 IMA/EVM signature, 0x05 portable EVM, 0x06 fs-verity).
    pub kind: XattrType,
    /// 2 (signs the digest) or 3 (signs the hash of an `ima_file_id`).
    pub version: u8,
    /// The hash algorithm of the signed digest (and of the file digest).
    pub hash_algo: HashAlgo,
    pub keyid: KeyId,
    /// Raw signature: a modulus-sized PKCS#1 v1.5 block, or a DER ECDSA `SEQUENCE{r,s}`.
    pub sig: Vec<u8>,
}

impl Signature {
    /// Signs a file digest as `evmctl ima_sign` does: type 0x03, version 2, the digest's
    /// algorithm, over the digest itself.
    pub fn sign_v2(
        key: &PrivateKey,
        keyid: KeyId,
        file_digest: &Digest,
    ) -> Result<Self, SignError> {
        Self::sign_digest(key, XattrType::DIGSIG, 2, keyid, file_digest)
    }

    /// Signs an fs-verity file digest as `evmctl sign_hash --veritysig` does: type 0x06,
    /// version 3, over `H(ima_file_id)`.
    pub fn sign_v3(
        key: &PrivateKey,
        keyid: KeyId,
        verity_digest: &Digest,
    ) -> Result<Self, SignError> {
        let id = file_id_hash(XattrType::VERITY_DIGSIG, verity_digest)
            .map_err(|e| SignError::UnsupportedHash(e.0))?;
        let mut s = Self::sign_digest(key, XattrType::VERITY_DIGSIG, 3, keyid, &id)?;
        s.hash_algo = verity_digest.algo();
        Ok(s)
    }

    /// A signature of `kind`/`version` whose signature bytes sign `signed` directly (the
    /// caller has already applied [`Signature::signed_digest`]'s rule; EVM signs the hash of
    /// its metadata this way).
    pub fn sign_digest(
        key: &PrivateKey,
        kind: XattrType,
        version: u8,
        keyid: KeyId,
        signed: &Digest,
    ) -> Result<Self, SignError> {
        let sig = key.sign_digest(signed)?;
        if SIG_HEADER_LEN + sig.len() > MAX_SIGNED_XATTR {
            return Err(SignError::TooLarge(SIG_HEADER_LEN + sig.len()));
        }
        Ok(Self {
            kind,
            version,
            hash_algo: signed.algo(),
            keyid,
            sig,
        })
    }

    /// The digest the signature bytes sign, given the file's digest (or, for version 3,
    /// its fs-verity digest), computed with [`Signature::hash_algo`]: the digest itself for
    /// version 2, `H(ima_file_id)` for version 3.
    pub fn signed_digest(&self, file_digest: &Digest) -> Result<Digest, VerifyError> {
        if file_digest.algo() != self.hash_algo {
            return Err(VerifyError::AlgoMismatch {
                signature: self.hash_algo,
                digest: file_digest.algo(),
            });
        }
        match self.version {
            2 => Ok(*file_digest),
            3 => {
                file_id_hash(self.kind, file_digest).map_err(|e| VerifyError::UnsupportedHash(e.0))
            }
            v => Err(VerifyError::UnsupportedVersion(v)),
        }
    }

    /// Checks the signature over a file digest (version 2) or fs-verity digest (version 3):
    /// [`Signature::signed_digest`], then the key named by `keyid` in `verifier`.
    pub fn verify(
        &self,
        verifier: &impl Verifier,
        file_digest: &Digest,
    ) -> Result<(), VerifyError> {
        if !self.hash_algo.is_known() {
            return Err(VerifyError::UnsupportedHash(self.hash_algo));
        }
        let signed = self.signed_digest(file_digest)?;
        verifier.verify_digest(self.keyid, &signed, &self.sig)
    }
}

impl<'a> Codec<'a> for Signature {
    /// Consumes the rest of the reader (a signature is framed by the xattr's length).
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let kind = XattrType(r.u8("signature type")?);
        let version = r.u8("signature version")?;
        let hash_algo = HashAlgo(r.u8("signature hash algorithm")?);
        let keyid = KeyId(r.u32_be("signature keyid")?);
        let at = r.offset();
        let size = usize::from(r.u16_be("signature size")?);
        if size != r.remaining() {
            return Err(DecodeError {
                what: "signature size",
                offset: at,
                kind: if size > r.remaining() {
                    DecodeErrorKind::Truncated {
                        needed: size,
                        available: r.remaining(),
                    }
                } else {
                    DecodeErrorKind::TrailingBytes {
                        count: r.remaining() - size,
                    }
                },
            });
        }
        if size == 0 {
            return Err(DecodeError {
                what: "signature size",
                offset: at,
                kind: DecodeErrorKind::Invalid("empty signature".into()),
            });
        }
        Ok(Self {
            kind,
            version,
            hash_algo,
            keyid,
            sig: r.take_rest().to_vec(),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.kind.0, self.version, self.hash_algo.0]);
        out.extend_from_slice(&self.keyid.0.to_be_bytes());
        // Signatures longer than u16::MAX cannot be framed; `sign_*` never makes one and
        // `decode` never returns one, so only a hand-built value can hit this truncation.
        out.extend_from_slice(&(self.sig.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.sig);
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sig v{} type=0x{:02x} {} keyid={} len={}",
            self.version,
            self.kind.0,
            self.hash_algo,
            self.keyid,
            self.sig.len()
        )
    }
}

/// Whether signing with `algo` deserves a warning: md4, md5, sha1 (collisions found),
/// rmd160 and sha224 (below 128-bit security). The kernel still verifies them.
pub fn is_legacy_digest(algo: HashAlgo) -> bool {
    matches!(
        algo,
        HashAlgo::MD4 | HashAlgo::MD5 | HashAlgo::SHA1 | HashAlgo::RIPE_MD_160 | HashAlgo::SHA224
    )
}

/// `H_algo(hash_type || algo || digest)`: the hash of the used prefix of an
/// `ima_file_id`, which a version-3 signature signs (`calc_file_id_hash`).
pub fn file_id_hash(kind: XattrType, digest: &Digest) -> Result<Digest, UnsupportedAlgo> {
    let algo = digest.algo();
    Ok(algo
        .hasher()?
        .chain(&[kind.0, algo.0])
        .chain(digest.as_bytes())
        .finalize())
}

/// Something that can check a signature over a digest for a key id: a [`Keyring`], a
/// single [`PublicKey`] (which ignores the key id), or a caller's own key store.
pub trait Verifier {
    /// Checks `sig` over `digest` (already the signed digest, see
    /// [`Signature::signed_digest`]) with the key `keyid` names.
    fn verify_digest(&self, keyid: KeyId, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError>;
}

/// Why a signature did not verify. [`VerifyError::BadSignature`] is the only "the
/// signature is wrong" outcome; the others mean it could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature does not match the digest and key.
    #[error("signature does not verify")]
    BadSignature,
    /// No key with this id (the kernel's `ENOKEY`).
    #[error("no key with keyid {0}")]
    NoKey(KeyId),
    /// The header's version is not 2 or 3.
    #[error("unsupported signature version {0}")]
    UnsupportedVersion(u8),
    /// A hash algorithm this crate cannot compute or the key type cannot use.
    #[error("unsupported hash algorithm {0}")]
    UnsupportedHash(HashAlgo),
    /// The key cannot verify this combination (e.g. RSA with sha224).
    #[error("a {key} key cannot verify {hash} signatures")]
    UnsupportedCombination { key: KeyAlgorithm, hash: HashAlgo },
    /// The digest handed in was computed with another algorithm than the signature's.
    #[error("signature uses {signature} but the digest is {digest}")]
    AlgoMismatch {
        signature: HashAlgo,
        digest: HashAlgo,
    },
}

/// Why `integrity_digsig_verify` rejected a signature. The kernel collapses all of these
/// into a failure, except that appraisal treats [`DigsigError::Unsupported`] as UNKNOWN and
/// modsig fallback looks at [`DigsigError::NoKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigsigError {
    /// No key with the signature's keyid (`-ENOKEY`).
    #[error("no key with keyid {0}")]
    NoKey(KeyId),
    /// A signature version the kernel does not dispatch (`-EOPNOTSUPP`).
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    /// Malformed header or a signature that does not verify (`-EBADMSG`, `-EKEYREJECTED`).
    #[error("invalid signature: {0}")]
    Invalid(String),
}

/// `integrity_digsig_verify(keyring, xattr, digest)`: `xattr` is the whole value (type byte
/// included), `digest` what was signed. Version 2 and 3 headers go to the keyring
/// (`asymmetric_verify`: exact `sig_size`, known algorithm, key by keyid); version 1 (the
/// deprecated RSA scheme, needing a v1 key this implementation never has) fails; other
/// versions are `EOPNOTSUPP`.
pub fn digsig_verify(
    ring: &dyn Verifier,
    xattr: &[u8],
    digest: &Digest,
) -> Result<(), DigsigError> {
    let Some(&version) = xattr.get(1) else {
        return Err(DigsigError::Invalid("value shorter than 2 bytes".into()));
    };
    match version {
        1 => Err(DigsigError::Invalid(
            "no key for a version 1 signature".into(),
        )),
        2 | 3 => {
            let sig =
                Signature::from_bytes(xattr).map_err(|e| DigsigError::Invalid(e.to_string()))?;
            if !sig.hash_algo.is_known() {
                return Err(DigsigError::Invalid(format!(
                    "unknown hash algorithm {}",
                    sig.hash_algo
                )));
            }
            if sig.hash_algo != digest.algo() {
                return Err(DigsigError::Invalid(format!(
                    "signature is over {}, digest is {}",
                    sig.hash_algo,
                    digest.algo()
                )));
            }
            ring.verify_digest(sig.keyid, digest, &sig.sig)
                .map_err(|e| match e {
                    VerifyError::NoKey(k) => DigsigError::NoKey(k),
                    // The kernel could check these; we cannot decide (appraisal: UNKNOWN).
                    e @ (VerifyError::UnsupportedCombination { .. }
                    | VerifyError::UnsupportedHash(_)) => DigsigError::Unsupported(e.to_string()),
                    other => DigsigError::Invalid(other.to_string()),
                })
        }
        v => Err(DigsigError::Unsupported(format!("signature version {v}"))),
    }
}

#[cfg(test)]
mod tests;
