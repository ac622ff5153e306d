//! The values stored in `security.ima` and `security.evm`: a type byte, then a digest, an
//! HMAC or a signature, decoded into [`XattrValue`] and encoded back byte for byte.
//!
//! Mirrors `enum evm_ima_xattr_type` and `struct evm_ima_xattr_data` in
//! `security/integrity/integrity.h`, and the readers of those bytes in
//! `security/integrity/ima/ima_appraise.c` (`ima_get_hash_algo`, `xattr_verify`).
//!
//! ```text
//! enum evm_ima_xattr_type {
//!     IMA_XATTR_DIGEST = 0x01, EVM_XATTR_HMAC, EVM_IMA_XATTR_DIGSIG, IMA_XATTR_DIGEST_NG,
//!     EVM_XATTR_PORTABLE_DIGSIG, IMA_VERITY_DIGSIG, IMA_XATTR_LAST
//! };
//! struct evm_ima_xattr_data { u8 type; u8 data[]; } __packed;
//! ```
//!
//! Decoding is total over well-framed input: a type byte this crate does not know (0x00,
//! 0x07 and up) and a signature of an unknown version round-trip unchanged, so a caller can
//! always print and rewrite what it read; "unsupported" is raised when verifying.

use std::fmt;

use crate::codec::{Codec, DecodeError, DecodeErrorKind, Reader};
use crate::digsig::Signature;
use crate::hash::{Digest, HashAlgo};
use crate::integrity::XattrType;

/// Name of the IMA attribute (`XATTR_NAME_IMA`).
pub const XATTR_NAME_IMA: &str = "security.ima";
/// Name of the EVM attribute (`XATTR_NAME_EVM`).
pub const XATTR_NAME_EVM: &str = "security.evm";
/// `XATTR_SIZE_MAX`: no attribute value the kernel stores is longer.
pub const MAX_XATTR_SIZE: usize = 65536;

/// A decoded `security.ima` or `security.evm` value.
///
/// `decode(encode(v)) == v` for every value, and `encode(decode(b)) == b` for every byte
/// string that decodes (tested in this module and fuzzed by the `xattr` target).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XattrValue {
    /// 0x01: a legacy digest without an algorithm byte; see [`legacy_digest_algo`].
    Digest(Vec<u8>),
    /// 0x02: an EVM HMAC (20 bytes of HMAC-SHA1 when the kernel wrote it; kept as found).
    EvmHmac(Vec<u8>),
    /// 0x04: a digest with its algorithm. `digest` is kept as stored: the kernel compares
    /// only the algorithm's digest length and accepts longer values (see
    /// [`XattrValue::matches_digest`]).
    DigestNg { algo: HashAlgo, digest: Vec<u8> },
    /// 0x03, 0x05 or 0x06 followed by a `signature_v2_hdr` (version 2 or 3, or another
    /// version byte other than 1, kept for round-tripping).
    Signature(Signature),
    /// 0x03 with version byte 1: the deprecated RSA "v1" signature (`03` + 16-byte header +
    /// MPI). Kept as raw bytes after the type byte; never verified by this crate.
    SignatureV1(Vec<u8>),
    /// Any other type byte (0x00, 0x07..=0xff), with the bytes after it.
    Unknown { kind: XattrType, data: Vec<u8> },
}

impl XattrValue {
    /// The type byte.
    pub fn kind(&self) -> XattrType {
        match self {
            Self::Digest(_) => XattrType::DIGEST,
            Self::EvmHmac(_) => XattrType::EVM_HMAC,
            Self::DigestNg { .. } => XattrType::DIGEST_NG,
            Self::Signature(s) => s.kind,
            Self::SignatureV1(_) => XattrType::DIGSIG,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// The value the kernel's fix mode and `evmctl ima_hash` write for a file digest:
    /// `01 || digest` for md4/md5/sha1 (ids ≤ 2), `04 || algo || digest` otherwise
    /// (`ima_fix_xattr`, ima_appraise.c).
    pub fn from_digest(d: &Digest) -> Self {
        if d.algo().0 <= HashAlgo::SHA1.0 {
            Self::Digest(d.as_bytes().to_vec())
        } else {
            Self::DigestNg {
                algo: d.algo(),
                digest: d.as_bytes().to_vec(),
            }
        }
    }

    /// The file-hash algorithm this value names, as `ima_get_hash_algo` reads it: the
    /// signature header's for 0x03 v2 and 0x06 v3, byte 1 for 0x04, md5/sha1 by length for
    /// 0x01. `None` when the kernel would fall back to `ima_hash` (an unknown or invalid
    /// algorithm, another type, another signature version).
    pub fn hash_algo(&self) -> Option<HashAlgo> {
        let a = match self {
            Self::Digest(d) => legacy_digest_algo(d)?,
            Self::DigestNg { algo, .. } => *algo,
            Self::Signature(s) => match (s.kind, s.version) {
                (XattrType::DIGSIG, 2) | (XattrType::VERITY_DIGSIG, 3) => s.hash_algo,
                _ => return None,
            },
            _ => return None,
        };
        a.is_known().then_some(a)
    }

    /// The stored digest bytes of a 0x01 or 0x04 value.
    pub fn stored_digest(&self) -> Option<&[u8]> {
        match self {
            Self::Digest(d) | Self::DigestNg { digest: d, .. } => Some(d),
            _ => None,
        }
    }

    /// Whether a 0x01/0x04 value matches `computed` as `xattr_verify` decides: the stored
    /// bytes must be at least the digest's length and start with it (a longer stored value
    /// passes, a shorter one is `invalid-hash`). The algorithm is the caller's concern: the
    /// kernel computes `computed` with [`XattrValue::hash_algo`]. Other types never match.
    pub fn matches_digest(&self, computed: &Digest) -> bool {
        match self.stored_digest() {
            Some(stored) => {
                stored.len() >= computed.len() && &stored[..computed.len()] == computed.as_bytes()
            }
            None => false,
        }
    }

    /// The signature, for 0x03 (v2+), 0x05 and 0x06 values.
    pub fn signature(&self) -> Option<&Signature> {
        match self {
            Self::Signature(s) => Some(s),
            _ => None,
        }
    }
}

/// `ima_get_hash_algo` on the bytes as stored: [`XattrValue::hash_algo`] of the decoded
/// value. A signature whose framing does not decode (a `sig_size` that disagrees with the
/// length) still names its algorithm to the kernel, which reads only the fixed
/// `signature_v2_hdr` there (version 2 for 0x03, 3 for 0x06, a value longer than the
/// header, a known id), so that header is read here too. `None`: the kernel falls back to
/// `ima_hash`.
pub fn ima_hash_algo(raw: &[u8]) -> Option<HashAlgo> {
    match XattrValue::from_bytes(raw) {
        Ok(v) => v.hash_algo(),
        Err(_) => {
            let version = match XattrType(*raw.first()?) {
                XattrType::DIGSIG => 2,
                XattrType::VERITY_DIGSIG => 3,
                _ => return None,
            };
            if raw.len() <= SIG_HDR_LEN || raw[1] != version {
                return None;
            }
            Some(HashAlgo(raw[2])).filter(|a| a.is_known())
        }
    }
}

/// `sizeof(struct signature_v2_hdr)` with its type byte: type, version, algorithm, keyid
/// (4), `sig_size` (2).
const SIG_HDR_LEN: usize = 9;

/// The algorithm of a type-0x01 digest (`ima_get_hash_algo`): 16 bytes → md5; 20 bytes →
/// sha1, unless its last four bytes are zero (a legacy md5 digest padded to 20) → md5.
pub fn legacy_digest_algo(d: &[u8]) -> Option<HashAlgo> {
    match d.len() {
        16 => Some(HashAlgo::MD5),
        20 if d[16..] == [0; 4] => Some(HashAlgo::MD5),
        20 => Some(HashAlgo::SHA1),
        _ => None,
    }
}

impl<'a> Codec<'a> for XattrValue {
    /// Consumes the rest of the reader: an xattr value is framed by its length.
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if r.remaining() > MAX_XATTR_SIZE {
            return Err(r.error(
                "xattr value",
                DecodeErrorKind::TooLong {
                    len: r.remaining(),
                    max: MAX_XATTR_SIZE,
                },
            ));
        }
        if r.is_empty() {
            return Err(r.invalid("xattr type", "empty xattr value"));
        }
        let kind = XattrType(r.rest()[0]);
        Ok(match kind {
            XattrType::DIGEST => {
                r.u8("xattr type")?;
                Self::Digest(r.take_rest().to_vec())
            }
            XattrType::EVM_HMAC => {
                r.u8("xattr type")?;
                Self::EvmHmac(r.take_rest().to_vec())
            }
            XattrType::DIGEST_NG => {
                r.u8("xattr type")?;
                let algo = HashAlgo(r.u8("digest algorithm")?);
                Self::DigestNg {
                    algo,
                    digest: r.take_rest().to_vec(),
                }
            }
            XattrType::DIGSIG if r.rest().get(1) == Some(&1) => {
                r.u8("xattr type")?;
                Self::SignatureV1(r.take_rest().to_vec())
            }
            k if k.is_signature() => Self::Signature(Signature::decode(r)?),
            _ => {
                r.u8("xattr type")?;
                Self::Unknown {
                    kind,
                    data: r.take_rest().to_vec(),
                }
            }
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Signature(s) => s.encode(out),
            Self::DigestNg { algo, digest } => {
                out.extend_from_slice(&[XattrType::DIGEST_NG.0, algo.0]);
                out.extend_from_slice(digest);
            }
            Self::Digest(d) | Self::EvmHmac(d) | Self::SignatureV1(d) => {
                out.push(self.kind().0);
                out.extend_from_slice(d);
            }
            Self::Unknown { kind, data } => {
                out.push(kind.0);
                out.extend_from_slice(data);
            }
        }
    }
}

impl fmt::Display for XattrValue {
    /// One line: the type and its fields (`digest-ng sha256:a948…`, `sig v2 sha256
    /// keyid=a5cacb28 len=256`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest(d) => match legacy_digest_algo(d) {
                Some(a) => write!(f, "digest {a}:{}", hex::encode(d)),
                None => write!(f, "digest ?:{}", hex::encode(d)),
            },
            Self::EvmHmac(h) => write!(f, "evm-hmac {}", hex::encode(h)),
            Self::DigestNg { algo, digest } => {
                write!(f, "digest-ng {algo}:{}", hex::encode(digest))
            }
            Self::Signature(s) => write!(f, "{s}"),
            Self::SignatureV1(d) => write!(f, "sig v1 len={}", d.len()),
            Self::Unknown { kind, data } => write!(f, "{kind} len={}", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digsig::KeyId;
    use hex_literal::hex;
    use proptest::prelude::*;

    // kernel-ima.md §13.1: evmctl ima_hash output for "hello world\n".
    const MD5: [u8; 17] = hex!("016f5902ac237024bdd0c176cb93063dc4");
    const SHA1: [u8; 21] = hex!("0122596363b3de40b06f981fb85d82312e8c0ed511");
    const SHA256: [u8; 34] =
        hex!("0404a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447");

    #[test]
    fn evmctl_hash_vectors_decode_and_reencode() {
        let v = XattrValue::from_bytes(&MD5).unwrap();
        assert_eq!(v.hash_algo(), Some(HashAlgo::MD5));
        assert_eq!(v.to_vec(), MD5);
        let v = XattrValue::from_bytes(&SHA1).unwrap();
        assert_eq!(v.hash_algo(), Some(HashAlgo::SHA1));
        assert_eq!(v.to_vec(), SHA1);
        let v = XattrValue::from_bytes(&SHA256).unwrap();
        assert_eq!(v.hash_algo(), Some(HashAlgo::SHA256));
        assert_eq!(v.kind(), XattrType::DIGEST_NG);
        assert_eq!(v.to_vec(), SHA256);
        let d = HashAlgo::SHA256.digest(b"hello world\n").unwrap();
        assert!(v.matches_digest(&d));
        assert_eq!(XattrValue::from_digest(&d).to_vec(), SHA256);
        let d1 = HashAlgo::SHA1.digest(b"hello world\n").unwrap();
        assert_eq!(XattrValue::from_digest(&d1).to_vec(), SHA1);
    }

    #[test]
    fn digest_matching_follows_the_kernel() {
        let d = HashAlgo::SHA256.digest(b"x").unwrap();
        let mut long = d.to_vec();
        long.push(0xaa);
        let v = XattrValue::DigestNg {
            algo: HashAlgo::SHA256,
            digest: long,
        };
        assert!(v.matches_digest(&d), "longer stored values pass");
        let v = XattrValue::DigestNg {
            algo: HashAlgo::SHA256,
            digest: d[..31].to_vec(),
        };
        assert!(!v.matches_digest(&d), "shorter stored values fail");
        let mut bad = d.to_vec();
        bad[5] ^= 1;
        let v = XattrValue::DigestNg {
            algo: HashAlgo::SHA256,
            digest: bad,
        };
        assert!(!v.matches_digest(&d));
    }

    #[test]
    fn legacy_md5_padded_to_20() {
        let mut v = vec![0x01];
        v.extend_from_slice(&[7; 16]);
        v.extend_from_slice(&[0; 4]);
        assert_eq!(
            XattrValue::from_bytes(&v).unwrap().hash_algo(),
            Some(HashAlgo::MD5)
        );
    }

    #[test]
    fn signatures_and_unknown_types() {
        let sig = hex!("030204a5cacb280003aabbcc");
        let v = XattrValue::from_bytes(&sig).unwrap();
        let s = v.signature().unwrap();
        assert_eq!(s.keyid, KeyId(0xa5cacb28));
        assert_eq!(v.hash_algo(), Some(HashAlgo::SHA256));
        assert_eq!(v.to_vec(), sig);
        let unk = hex!("09010203");
        let v = XattrValue::from_bytes(&unk).unwrap();
        assert_eq!(v.kind(), XattrType(9));
        assert_eq!(v.hash_algo(), None);
        assert_eq!(v.to_vec(), unk);
        let v1 = hex!("0301aabbccdd");
        let v = XattrValue::from_bytes(&v1).unwrap();
        assert!(matches!(v, XattrValue::SignatureV1(_)));
        assert_eq!(v.to_vec(), v1);
    }

    #[test]
    fn bad_values_are_errors_with_offsets() {
        let e = XattrValue::from_bytes(&[]).unwrap_err();
        assert_eq!(e.offset, 0);
        // Signature header cut short.
        let e = XattrValue::from_bytes(&hex!("03020400")).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }), "{e}");
        // sig_size says 4 bytes, 3 follow.
        let e = XattrValue::from_bytes(&hex!("030204a5cacb280004aabbcc")).unwrap_err();
        assert_eq!(e.offset, 7, "{e}");
        // 0x04 without an algorithm byte.
        assert!(XattrValue::from_bytes(&[0x04]).is_err());
        let huge = vec![0x04; MAX_XATTR_SIZE + 1];
        let e = XattrValue::from_bytes(&huge).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::TooLong { .. }));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(v) = XattrValue::from_bytes(&bytes) {
                prop_assert_eq!(v.to_vec(), bytes.clone());
                prop_assert_eq!(XattrValue::from_bytes(&v.to_vec()).unwrap(), v);
            }
        }

        #[test]
        fn signatures_round_trip(kind in prop_oneof![Just(3u8), Just(5), Just(6)],
                                 version in 2u8..4, algo in any::<u8>(), keyid in any::<u32>(),
                                 sig in proptest::collection::vec(any::<u8>(), 1..600)) {
            let v = XattrValue::Signature(Signature {
                kind: XattrType(kind), version, hash_algo: HashAlgo(algo),
                keyid: KeyId(keyid), sig,
            });
            prop_assert_eq!(XattrValue::from_bytes(&v.to_vec()).unwrap(), v);
        }
    }
}
