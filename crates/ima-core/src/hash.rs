//! Hash algorithms with the kernel's numeric ids and names, and one streaming [`Hasher`] over
//! all of those this crate can compute.
//!
//! Mirrors `include/uapi/linux/hash_info.h`, `crypto/hash_info.c` and the hashing half of
//! `security/integrity/ima/ima_crypto.c`. The id is what the kernel stores on disk (the
//! `security.ima` algorithm byte, the signature header); the name is what it prints (`d-ng`
//! prefixes, audit `hash=`, `ima_hash=`, `appraise_algos=`).

use std::fmt;
use std::str::FromStr;

use digest::Digest as _;

/// A kernel hash algorithm id (`enum hash_algo`). Unknown ids are representable so that they
/// round-trip; computing with one fails on use.
///
/// ```text
/// enum hash_algo {
///     HASH_ALGO_MD4, HASH_ALGO_MD5, HASH_ALGO_SHA1, HASH_ALGO_RIPE_MD_160, HASH_ALGO_SHA256,
///     HASH_ALGO_SHA384, HASH_ALGO_SHA512, HASH_ALGO_SHA224, HASH_ALGO_RIPE_MD_128, ...
///     HASH_ALGO_SM3_256 = 17, HASH_ALGO_STREEBOG_256, HASH_ALGO_STREEBOG_512,
///     HASH_ALGO_SHA3_256, HASH_ALGO_SHA3_384, HASH_ALGO_SHA3_512, HASH_ALGO__LAST
/// };
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashAlgo(pub u8);

/// `IMA_MAX_DIGEST_SIZE` (= `HASH_MAX_DIGESTSIZE`, include/crypto/hash.h).
pub const MAX_DIGEST_SIZE: usize = 64;

/// (kernel name, digest size) per id, `crypto/hash_info.c`.
const TABLE: [(&str, usize); 23] = [
    ("md4", 16),
    ("md5", 16),
    ("sha1", 20),
    ("rmd160", 20),
    ("sha256", 32),
    ("sha384", 48),
    ("sha512", 64),
    ("sha224", 28),
    ("rmd128", 16),
    ("rmd256", 32),
    ("rmd320", 40),
    ("wp256", 32),
    ("wp384", 48),
    ("wp512", 64),
    ("tgr128", 16),
    ("tgr160", 20),
    ("tgr192", 24),
    ("sm3", 32),
    ("streebog256", 32),
    ("streebog512", 64),
    ("sha3-256", 32),
    ("sha3-384", 48),
    ("sha3-512", 64),
];

impl HashAlgo {
    pub const MD4: Self = Self(0);
    pub const MD5: Self = Self(1);
    pub const SHA1: Self = Self(2);
    pub const RIPE_MD_160: Self = Self(3);
    pub const SHA256: Self = Self(4);
    pub const SHA384: Self = Self(5);
    pub const SHA512: Self = Self(6);
    pub const SHA224: Self = Self(7);
    pub const SM3_256: Self = Self(17);
    pub const STREEBOG_256: Self = Self(18);
    pub const STREEBOG_512: Self = Self(19);
    pub const SHA3_256: Self = Self(20);
    pub const SHA3_384: Self = Self(21);
    pub const SHA3_512: Self = Self(22);
    /// `HASH_ALGO__LAST`: ids at or above this are rejected by the kernel in on-disk data.
    pub const LAST: u8 = 23;

    /// The kernel's name (`hash_algo_name[]`), or `None` for an id past `HASH_ALGO__LAST`.
    pub fn name(self) -> Option<&'static str> {
        TABLE.get(usize::from(self.0)).map(|e| e.0)
    }

    /// Digest size in bytes (`hash_digest_size[]`), or `None` for an unknown id.
    pub fn digest_len(self) -> Option<usize> {
        TABLE.get(usize::from(self.0)).map(|e| e.1)
    }

    /// Whether the id is below `HASH_ALGO__LAST`.
    pub fn is_known(self) -> bool {
        self.0 < Self::LAST
    }

    /// Whether this crate can compute the algorithm.
    pub fn is_supported(self) -> bool {
        self.hasher().is_ok()
    }

    /// The TPM 2.0 `TPM_ALG_ID` of a PCR bank with this algorithm, if there is one.
    pub fn tpm_alg_id(self) -> Option<u16> {
        Some(match self {
            Self::SHA1 => 0x0004,
            Self::SHA256 => 0x000b,
            Self::SHA384 => 0x000c,
            Self::SHA512 => 0x000d,
            Self::SM3_256 => 0x0012,
            _ => return None,
        })
    }

    /// The algorithm of a TPM 2.0 `TPM_ALG_ID`.
    pub fn from_tpm_alg_id(id: u16) -> Option<Self> {
        [
            Self::SHA1,
            Self::SHA256,
            Self::SHA384,
            Self::SHA512,
            Self::SM3_256,
        ]
        .into_iter()
        .find(|a| a.tpm_alg_id() == Some(id))
    }

    /// A fresh streaming hasher, or [`UnsupportedAlgo`] when this crate cannot compute it.
    pub fn hasher(self) -> Result<Hasher, UnsupportedAlgo> {
        let inner = match self {
            Self::MD5 => Inner::Md5(md5::Md5::new()),
            Self::SHA1 => Inner::Sha1(sha1::Sha1::new()),
            Self::RIPE_MD_160 => Inner::Rmd160(ripemd::Ripemd160::new()),
            Self::SHA224 => Inner::Sha224(sha2::Sha224::new()),
            Self::SHA256 => Inner::Sha256(sha2::Sha256::new()),
            Self::SHA384 => Inner::Sha384(sha2::Sha384::new()),
            Self::SHA512 => Inner::Sha512(sha2::Sha512::new()),
            Self::SM3_256 => Inner::Sm3(sm3::Sm3::new()),
            Self::STREEBOG_256 => Inner::Streebog256(streebog::Streebog256::new()),
            Self::STREEBOG_512 => Inner::Streebog512(streebog::Streebog512::new()),
            other => return Err(UnsupportedAlgo(other)),
        };
        Ok(Hasher { algo: self, inner })
    }

    /// One-shot digest of `data`.
    pub fn digest(self, data: &[u8]) -> Result<Digest, UnsupportedAlgo> {
        Ok(self.hasher()?.chain(data).finalize())
    }
}

impl fmt::Display for HashAlgo {
    /// The kernel name; an unknown id prints as `hash_algo(N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "hash_algo({})", self.0),
        }
    }
}

impl fmt::Debug for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashAlgo({}:{})", self.0, self)
    }
}

impl FromStr for HashAlgo {
    type Err = UnknownAlgoName;

    /// Parses a kernel name. `sm3-256` (older kernels' name for sm3) is accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sm3-256" {
            return Ok(Self::SM3_256);
        }
        TABLE
            .iter()
            .position(|e| e.0 == s)
            .and_then(|i| u8::try_from(i).ok())
            .map(HashAlgo)
            .ok_or_else(|| UnknownAlgoName(s.to_owned()))
    }
}

/// A name that is no kernel hash algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hash algorithm {0:?}")]
pub struct UnknownAlgoName(pub String);

/// An algorithm this crate cannot compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hash algorithm {0} is not supported")]
pub struct UnsupportedAlgo(pub HashAlgo);

/// Why [`Digest::extend`] could not extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtendError {
    #[error("cannot extend a {bank} PCR with a {digest} digest")]
    BankMismatch { bank: HashAlgo, digest: HashAlgo },
    #[error("cannot extend a PCR: {0}")]
    Unsupported(#[from] UnsupportedAlgo),
}

/// A digest of at most [`MAX_DIGEST_SIZE`] bytes, with its algorithm. Dereferences to the
/// digest bytes; no heap allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    algo: HashAlgo,
    len: u8,
    bytes: [u8; MAX_DIGEST_SIZE],
}

impl Digest {
    /// Wraps `bytes` as a digest of `algo`. Fails when the length is not the algorithm's
    /// digest size (or exceeds [`MAX_DIGEST_SIZE`] for an unknown algorithm).
    pub fn new(algo: HashAlgo, bytes: &[u8]) -> Option<Self> {
        match algo.digest_len() {
            Some(n) if n != bytes.len() => return None,
            _ if bytes.len() > MAX_DIGEST_SIZE => return None,
            _ => {}
        }
        let mut d = Self {
            algo,
            len: 0,
            bytes: [0; MAX_DIGEST_SIZE],
        };
        d.bytes[..bytes.len()].copy_from_slice(bytes);
        d.len = bytes.len() as u8; // fits: checked against MAX_DIGEST_SIZE above
        Some(d)
    }

    /// An all-zero digest of `algo` (a violation's logged digest).
    pub fn zero(algo: HashAlgo) -> Option<Self> {
        Self::new(algo, &[0; MAX_DIGEST_SIZE][..algo.digest_len()?])
    }

    /// An all-0xff digest of `algo` (what a violation extends).
    pub fn ones(algo: HashAlgo) -> Option<Self> {
        Self::new(algo, &[0xff; MAX_DIGEST_SIZE][..algo.digest_len()?])
    }

    /// `H_bank(self || new)`: the value a PCR of this digest's bank holding `self` takes when
    /// `new` is extended into it (`TPM2_PCR_Extend`, which `ima_pcr_extend` calls). The one
    /// extend of the workspace: replay, the software bank and recovery all use it. A digest
    /// of another bank, or a bank this crate cannot compute, is an error.
    pub fn extend(&self, new: &Digest) -> Result<Digest, ExtendError> {
        if new.algo != self.algo {
            return Err(ExtendError::BankMismatch {
                bank: self.algo,
                digest: new.algo,
            });
        }
        // The two banks every TPM has, without `Hasher`'s dispatch (replay runs this once
        // per entry and bank).
        Ok(match self.algo {
            HashAlgo::SHA1 => Self::of_output(
                self.algo,
                &sha1::Sha1::new()
                    .chain_update(self)
                    .chain_update(new)
                    .finalize(),
            ),
            HashAlgo::SHA256 => Self::of_output(
                self.algo,
                &sha2::Sha256::new()
                    .chain_update(self)
                    .chain_update(new)
                    .finalize(),
            ),
            _ => self
                .algo
                .hasher()?
                .chain(self.as_bytes())
                .chain(new.as_bytes())
                .finalize(),
        })
    }

    /// A hash function's output (at most [`MAX_DIGEST_SIZE`] bytes by construction).
    fn of_output(algo: HashAlgo, out: &[u8]) -> Self {
        let mut d = Self {
            algo,
            len: 0,
            bytes: [0; MAX_DIGEST_SIZE],
        };
        d.bytes[..out.len()].copy_from_slice(out);
        d.len = out.len() as u8; // every supported digest is at most 64 bytes
        d
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lowercase hex of the digest bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl std::ops::Deref for Digest {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_hex())
    }
}

impl fmt::Display for Digest {
    /// `algo:hex`, as the `d-ng` field prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_hex())
    }
}

/// A streaming hash over any algorithm [`HashAlgo::hasher`] supports.
#[derive(Clone)]
pub struct Hasher {
    algo: HashAlgo,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Rmd160(ripemd::Ripemd160),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sm3(sm3::Sm3),
    Streebog256(streebog::Streebog256),
    Streebog512(streebog::Streebog512),
}

macro_rules! each_inner {
    ($inner:expr, $h:ident => $body:expr) => {
        match $inner {
            Inner::Md5($h) => $body,
            Inner::Sha1($h) => $body,
            Inner::Rmd160($h) => $body,
            Inner::Sha224($h) => $body,
            Inner::Sha256($h) => $body,
            Inner::Sha384($h) => $body,
            Inner::Sha512($h) => $body,
            Inner::Sm3($h) => $body,
            Inner::Streebog256($h) => $body,
            Inner::Streebog512($h) => $body,
        }
    };
}

impl Hasher {
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn update(&mut self, data: &[u8]) {
        each_inner!(&mut self.inner, h => h.update(data))
    }

    /// `update` by value, for chaining.
    pub fn chain(mut self, data: &[u8]) -> Self {
        self.update(data);
        self
    }

    pub fn finalize(self) -> Digest {
        let algo = self.algo;
        each_inner!(self.inner, h => Digest::of_output(algo, &h.finalize()))
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algo", &self.algo)
            .finish_non_exhaustive()
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_is_h_of_old_and_new_and_refuses_what_it_cannot_compute() {
        // Expected values from Python's hashlib: sha256(32 zero bytes || sha256("abc")), and
        // the same in sha1.
        for (algo, want) in [
            (
                HashAlgo::SHA256,
                "589f9ffed4c477966bfb8d41f37895b08c69047df8f911d6f3b57fbe08faee8d",
            ),
            (HashAlgo::SHA1, "ccd5bd41458de644ac34a2478b58ff819bef5acf"),
        ] {
            let new = algo.digest(b"abc").unwrap();
            assert_eq!(
                Digest::zero(algo).unwrap().extend(&new).unwrap().to_hex(),
                want
            );
        }
        let sha1 = HashAlgo::SHA1.digest(b"abc").unwrap();
        let zero256 = Digest::zero(HashAlgo::SHA256).unwrap();
        assert_eq!(
            zero256.extend(&sha1),
            Err(ExtendError::BankMismatch {
                bank: HashAlgo::SHA256,
                digest: HashAlgo::SHA1
            })
        );
        // A bank this crate knows the size of but cannot compute (Whirlpool-256): an error,
        // never the old value kept.
        let wp = "wp256".parse::<HashAlgo>().unwrap();
        assert!(wp.hasher().is_err());
        let old = Digest::new(wp, &[0; 32]).unwrap();
        assert_eq!(
            old.extend(&old),
            Err(ExtendError::Unsupported(UnsupportedAlgo(wp)))
        );
    }

    #[test]
    fn names_round_trip() {
        for id in 0..HashAlgo::LAST {
            let a = HashAlgo(id);
            let name = a.name().unwrap();
            assert_eq!(name.parse::<HashAlgo>().unwrap(), a, "{name}");
            assert_eq!(a.to_string(), name);
        }
        assert_eq!("sm3-256".parse::<HashAlgo>().unwrap(), HashAlgo::SM3_256);
        assert!("sha257".parse::<HashAlgo>().is_err());
        assert_eq!(HashAlgo(200).to_string(), "hash_algo(200)");
        assert_eq!(HashAlgo(200).digest_len(), None);
    }

    #[test]
    fn digest_sizes_match_output() {
        for id in 0..HashAlgo::LAST {
            let a = HashAlgo(id);
            if let Ok(h) = a.hasher() {
                assert_eq!(h.finalize().len(), a.digest_len().unwrap(), "{a}");
            }
        }
    }

    // Vectors: "abc" from FIPS 180-2 (sha1/sha224/sha256/sha384/sha512), RFC 1321 (md5),
    // GB/T 32905-2016 appendix A (sm3).
    #[test]
    fn known_answers_abc() {
        let cases = [
            (HashAlgo::MD5, "900150983cd24fb0d6963f7d28e17f72"),
            (HashAlgo::SHA1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            // RIPEMD-160 test vector (Dobbertin, Bosselaers, Preneel: "abc").
            (
                HashAlgo::RIPE_MD_160,
                "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc",
            ),
            (
                HashAlgo::SHA224,
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                HashAlgo::SHA256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlgo::SHA384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                HashAlgo::SHA512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                HashAlgo::SM3_256,
                "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
            ),
        ];
        for (algo, want) in cases {
            assert_eq!(algo.digest(b"abc").unwrap().to_hex(), want, "{algo}");
        }
    }

    #[test]
    fn tpm_ids() {
        assert_eq!(HashAlgo::SHA256.tpm_alg_id(), Some(0x0b));
        assert_eq!(HashAlgo::from_tpm_alg_id(0x04), Some(HashAlgo::SHA1));
        assert_eq!(HashAlgo::from_tpm_alg_id(0x99), None);
    }

    #[test]
    fn digest_new_checks_length() {
        assert!(Digest::new(HashAlgo::SHA1, &[0; 20]).is_some());
        assert!(Digest::new(HashAlgo::SHA1, &[0; 32]).is_none());
        assert!(Digest::new(HashAlgo(99), &[0; 65]).is_none());
        assert_eq!(
            Digest::ones(HashAlgo::SHA256).unwrap().as_bytes(),
            &[0xff; 32]
        );
    }
}
