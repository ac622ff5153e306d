//! Signature format version 1 (deprecated, RSA only): what `evmctl --rsa` writes and the
//! kernel's `digsig_verify` (lib/digsig.c) checks against a key in the `_ima`/`_evm`
//! keyring found by its 64-bit key id.
//!
//! ```text
//! struct signature_hdr {      /* after the xattr type byte 0x03 (or 0x05) */
//!     uint8_t version;         /* 1 */
//!     uint32_t timestamp;      /* time of signing, CPU byte order (little endian here) */
//!     uint8_t algo;            /* PUBKEY_ALGO_RSA = 0 */
//!     uint8_t hash;            /* DIGEST_ALGO_SHA1 = 0, DIGEST_ALGO_SHA256 = 1 */
//!     uint8_t keyid[8];        /* SHA-1 of the key's pubkey_hdr + MPIs, bytes 12..20 */
//!     uint8_t nmpi;            /* 1 */
//!     char mpi[0];             /* __be16 bit count, then the RSA block */
//! } __packed;
//! ```
//!
//! What is signed: `SHA1(file digest || signature_hdr)`, as a bare PKCS#1 v1.5 block (no
//! DigestInfo). The key id hashes the GnuPG-style `pubkey_hdr { version 1, timestamp 0,
//! algo 0, nmpi 2 }` followed by the modulus and the exponent as MPIs.

use super::{KeyError, PrivateKey, PublicKey, SignError, VerifyError};
use crate::codec::{Codec, DecodeError, DecodeErrorKind, Reader};
use crate::hash::{Digest, HashAlgo};

/// Bytes of `signature_hdr` (version through nmpi).
pub const V1_HEADER_LEN: usize = 16;

/// `PUBKEY_ALGO_RSA`.
pub const PUBKEY_ALGO_RSA: u8 = 0;

/// A v1 signature: the bytes after the xattr type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureV1 {
    /// Seconds since the epoch when it was made (not checked by anyone).
    pub timestamp: u32,
    /// `PUBKEY_ALGO_RSA` (0); anything else is kept and fails on use.
    pub pubkey_algo: u8,
    /// `DIGEST_ALGO_*`: 0 sha1, 1 sha256.
    pub hash: u8,
    pub keyid: [u8; 8],
    pub nmpi: u8,
    /// The RSA block (the MPI's bit count is recomputed when encoding).
    pub sig: Vec<u8>,
}

impl SignatureV1 {
    /// Signs a file (or EVM) digest as `evmctl --rsa` does. Only RSA keys, and only sha1 or
    /// sha256 digests (anything else is refused, as evmctl refuses it).
    pub fn sign(key: &PrivateKey, digest: &Digest, timestamp: u32) -> Result<Self, SignError> {
        let hash = v1_hash_id(digest.algo()).ok_or(SignError::UnsupportedCombination {
            key: key.algorithm(),
            hash: digest.algo(),
        })?;
        let keyid = keyid_v1(key.public_key()).ok_or(SignError::UnsupportedCombination {
            key: key.algorithm(),
            hash: digest.algo(),
        })?;
        let mut s = Self {
            timestamp,
            pubkey_algo: PUBKEY_ALGO_RSA,
            hash,
            keyid,
            nmpi: 1,
            sig: Vec::new(),
        };
        s.sig = key.sign_raw_pkcs1(s.sighash(digest).as_bytes())?;
        Ok(s)
    }

    /// The hash algorithm of the signed digest (`None` for an unknown `hash` byte).
    pub fn hash_algo(&self) -> Option<HashAlgo> {
        match self.hash {
            0 => Some(HashAlgo::SHA1),
            1 => Some(HashAlgo::SHA256),
            _ => None,
        }
    }

    /// Checks the signature over `digest` (computed with [`SignatureV1::hash_algo`]) with
    /// the RSA public key the caller chose (v1 verification takes one key, not a keyring).
    pub fn verify(&self, key: &PublicKey, digest: &Digest) -> Result<(), VerifyError> {
        let algo = self
            .hash_algo()
            .ok_or(VerifyError::UnsupportedHash(crate::hash::HashAlgo(
                self.hash,
            )))?;
        if algo != digest.algo() {
            return Err(VerifyError::AlgoMismatch {
                signature: algo,
                digest: digest.algo(),
            });
        }
        if self.pubkey_algo != PUBKEY_ALGO_RSA {
            return Err(VerifyError::UnsupportedVersion(1));
        }
        key.verify_raw_pkcs1(self.sighash(digest).as_bytes(), &self.sig)
    }

    /// `SHA1(digest || signature_hdr)`: the 20 bytes the RSA block carries.
    fn sighash(&self, digest: &Digest) -> Digest {
        let mut hdr = Vec::with_capacity(V1_HEADER_LEN);
        self.encode_header(&mut hdr);
        // sha1 is always available; the fallback only keeps this free of unwrap.
        match HashAlgo::SHA1.hasher() {
            Ok(h) => h.chain(digest.as_bytes()).chain(&hdr).finalize(),
            Err(_) => *digest,
        }
    }

    fn encode_header(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&[self.pubkey_algo, self.hash]);
        out.extend_from_slice(&self.keyid);
        out.push(self.nmpi);
    }
}

impl<'a> Codec<'a> for SignatureV1 {
    /// Consumes the rest of the reader (the xattr's length frames the signature).
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let version = r.u8("signature version")?;
        if version != 1 {
            return Err(DecodeError {
                what: "signature version",
                offset: at,
                kind: DecodeErrorKind::Invalid(format!("{version}, expected 1")),
            });
        }
        let timestamp = r.u32_le("signature timestamp")?;
        let pubkey_algo = r.u8("public key algorithm")?;
        let hash = r.u8("signature hash")?;
        let keyid = r.array::<8>("signature keyid")?;
        let nmpi = r.u8("signature nmpi")?;
        let _bits = r.u16_be("signature MPI bit count")?;
        if r.is_empty() {
            return Err(r.invalid("signature", "empty signature"));
        }
        Ok(Self {
            timestamp,
            pubkey_algo,
            hash,
            keyid,
            nmpi,
            sig: r.take_rest().to_vec(),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_header(out);
        // evmctl writes the block's byte length times 8; a block never exceeds 8 KiB bits.
        let bits = (self.sig.len() * 8).min(usize::from(u16::MAX)) as u16;
        out.extend_from_slice(&bits.to_be_bytes());
        out.extend_from_slice(&self.sig);
    }
}

/// `DIGEST_ALGO_*` of a hash algorithm v1 can sign.
fn v1_hash_id(algo: HashAlgo) -> Option<u8> {
    match algo {
        HashAlgo::SHA1 => Some(0),
        HashAlgo::SHA256 => Some(1),
        _ => None,
    }
}

/// The 64-bit v1 key id of an RSA key (`calc_keyid_v1`): bytes 12..20 of SHA-1 over
/// `pubkey_hdr` and the modulus and exponent MPIs. `None` for EC keys.
pub fn keyid_v1(key: &PublicKey) -> Option<[u8; 8]> {
    let (n, e) = key.rsa_components()?;
    let mut blob = vec![1, 0, 0, 0, 0, PUBKEY_ALGO_RSA, 2];
    for m in [&n, &e] {
        let bits = mpi_bits(m);
        blob.extend_from_slice(&u16::try_from(bits).ok()?.to_be_bytes());
        blob.extend_from_slice(m);
    }
    let d = HashAlgo::SHA1.digest(&blob).ok()?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_bytes()[12..20]);
    Some(id)
}

/// Significant bits of a big-endian number without leading zero bytes.
fn mpi_bits(m: &[u8]) -> usize {
    match m.first() {
        Some(&b) => m.len() * 8 - b.leading_zeros() as usize,
        None => 0,
    }
}

/// Reads the public key of a v1 verification: a PEM `PUBLIC KEY` (what evmctl's `--rsa`
/// takes), or a certificate (DER or PEM), whose key is used.
pub fn public_key_from_file_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
    PublicKey::from_pem_or_cert(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xattr::XattrValue;

    const KEY: &str = include_str!("../../../../testdata/sigs/rsa1024_priv.pem");
    const PUB: &str = include_str!("../../../../testdata/sigs/rsa1024_pub.pem");
    const SHA1: &str = include_str!("../../../../testdata/sigs/ima-sigv1-rsa1024-sha1.hex");
    const SHA256: &str = include_str!("../../../../testdata/sigs/ima-sigv1-rsa1024-sha256.hex");

    fn v1_of(hexstr: &str) -> SignatureV1 {
        match XattrValue::from_bytes(&hex::decode(hexstr.trim()).unwrap()).unwrap() {
            XattrValue::SignatureV1(raw) => SignatureV1::from_bytes(&raw).unwrap(),
            other => panic!("not v1: {other:?}"),
        }
    }

    #[test]
    fn evmctl_v1_signatures_verify_and_reencode() {
        let key = public_key_from_file_bytes(PUB.as_bytes()).unwrap();
        for (hexstr, algo) in [(SHA1, HashAlgo::SHA1), (SHA256, HashAlgo::SHA256)] {
            let s = v1_of(hexstr);
            assert_eq!(s.hash_algo(), Some(algo));
            assert_eq!(s.keyid, keyid_v1(&key).unwrap(), "evmctl's key id");
            let d = algo.digest(b"hello world\n").unwrap();
            s.verify(&key, &d).unwrap();
            let other = algo.digest(b"hello world").unwrap();
            assert_eq!(s.verify(&key, &other), Err(VerifyError::BadSignature));
            let mut enc = vec![0x03];
            s.encode(&mut enc);
            assert_eq!(hex::encode(enc), hexstr.trim());
        }
    }

    #[test]
    fn sign_round_trips_and_refuses_other_digests() {
        let key = PrivateKey::from_pem(KEY.as_bytes(), None).unwrap();
        let d = HashAlgo::SHA256.digest(b"x").unwrap();
        let s = SignatureV1::sign(&key, &d, 1_700_000_000).unwrap();
        assert_eq!(s.sig.len(), 128);
        let back = SignatureV1::from_bytes(&s.to_vec()).unwrap();
        back.verify(key.public_key(), &d).unwrap();
        let md5 = HashAlgo::MD5.digest(b"x").unwrap();
        assert!(SignatureV1::sign(&key, &md5, 0).is_err());
    }
}
