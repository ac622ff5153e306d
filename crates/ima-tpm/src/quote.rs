//! Quotes: the TPM-signed `TPMS_ATTEST`, its `TPMT_SIGNATURE`, the attestation key's public
//! part, and the PCR values it covers — and checking all of that with aws-lc-rs.
//!
//! The files we write are the ones tpm2-tools reads, so each side verifies the other:
//! `quote.msg` (raw `TPMS_ATTEST`, `tpm2_quote -m`), `quote.sig` (`TPMT_SIGNATURE`,
//! `tpm2_quote -s`), `quote.pcrs` (PCR values concatenated in selection order,
//! `tpm2_quote -o -F values`) and `ak.pem` (SubjectPublicKeyInfo, `tpm2_readpublic -f pem`).
//!
//! ```text
//! TPMS_ATTEST { u32 magic = TPM_GENERATED_VALUE (0xff544347); u16 type = TPM_ST_ATTEST_QUOTE;
//!   TPM2B_NAME qualifiedSigner; TPM2B_DATA extraData; TPMS_CLOCK_INFO clockInfo (17 bytes);
//!   u64 firmwareVersion; TPMS_QUOTE_INFO { TPML_PCR_SELECTION pcrSelect;
//!   TPM2B_DIGEST pcrDigest } }   (all big-endian)
//! ```

use std::fmt;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use ima_core::codec::{DecodeError, DecodeErrorKind, Reader};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::replay::PcrBank;

use crate::{BadSelection, NUM_PCRS, TpmError};

/// `TPM_GENERATED_VALUE`.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

const ALG_RSASSA: u16 = 0x0014;
const ALG_RSAPSS: u16 = 0x0016;
const ALG_ECDSA: u16 = 0x0018;

/// The public part of an attestation key, as DER SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct AkPublic {
    spki: Vec<u8>,
}

impl fmt::Debug for AkPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AkPublic({})", hex_str(&self.spki))
    }
}

/// DER prefix of an uncompressed P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
/// The DER OID bodies we recognise inside a SubjectPublicKeyInfo.
const OID_EC_PUBLIC_KEY: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_P384: [u8; 5] = [0x2b, 0x81, 0x04, 0x00, 0x22];

impl AkPublic {
    /// An ECC P-256 key from its point coordinates (each at most 32 bytes, left-padded).
    pub fn from_p256_point(x: &[u8], y: &[u8]) -> Result<Self, TpmError> {
        if x.len() > 32 || y.len() > 32 {
            return Err(TpmError::AkPoint {
                x: x.len(),
                y: y.len(),
            });
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        for c in [x, y] {
            spki.extend(std::iter::repeat_n(0, 32 - c.len()));
            spki.extend_from_slice(c);
        }
        Ok(Self { spki })
    }

    /// A DER SubjectPublicKeyInfo (EC P-256/P-384 or RSA).
    pub fn from_der(der: &[u8]) -> Self {
        Self { spki: der.to_vec() }
    }

    /// Parses `-----BEGIN PUBLIC KEY-----` PEM (what `tpm2_readpublic -f pem` writes).
    pub fn from_pem(pem: &str) -> Result<Self, TpmError> {
        let begin = "-----BEGIN PUBLIC KEY-----";
        let end = "-----END PUBLIC KEY-----";
        let start = pem
            .find(begin)
            .ok_or(TpmError::AkPem("no BEGIN PUBLIC KEY line"))?;
        let body = &pem[start + begin.len()..];
        let stop = body
            .find(end)
            .ok_or(TpmError::AkPem("no END PUBLIC KEY line"))?;
        let b64: String = body[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(TpmError::AkBase64)?;
        Ok(Self { spki: der })
    }

    /// PEM text (SubjectPublicKeyInfo), as `tpm2_checkquote -u` and openssl read it.
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.spki);
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    pub fn der(&self) -> &[u8] {
        &self.spki
    }

    fn key_type(&self) -> KeyType {
        let has = |oid: &[u8]| self.spki.windows(oid.len()).any(|w| w == oid);
        if has(&OID_RSA_ENCRYPTION) {
            KeyType::Rsa
        } else if has(&OID_EC_PUBLIC_KEY) && has(&OID_P384) {
            KeyType::P384
        } else if has(&OID_EC_PUBLIC_KEY) {
            KeyType::P256
        } else {
            KeyType::Unknown
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    P256,
    P384,
    Rsa,
    Unknown,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "ECC P-256",
            Self::P384 => "ECC P-384",
            Self::Rsa => "RSA",
            Self::Unknown => "unrecognised",
        }
    }
}

/// A quote and everything needed to check it.
#[derive(Clone, Debug)]
pub struct Quote {
    /// The exact `TPMS_ATTEST` bytes the TPM signed.
    pub attest: Vec<u8>,
    /// The `TPMT_SIGNATURE` bytes.
    pub signature: Vec<u8>,
    pub ak: AkPublic,
    /// The PCR values the quote covers, one bank per selection in selection order (read
    /// right after quoting; the digest must match).
    pub pcrs: Vec<PcrBank>,
}

impl Quote {
    /// The PCR values concatenated in selection order (`tpm2_quote -o FILE -F values`).
    pub fn pcrs_values_bytes(&self) -> Vec<u8> {
        values_bytes(&self.pcrs)
    }

    /// Whether the attested PCR digest equals the digest of [`Quote::pcrs`].
    pub fn pcr_digest_matches(&self) -> bool {
        match Attest::parse(&self.attest) {
            Ok(a) => {
                let vals = self.pcrs_values_bytes();
                a.pcr_digest_algo()
                    .and_then(|algo| algo.digest(&vals).ok())
                    .is_some_and(|d| d.as_bytes() == a.pcr_digest.as_slice())
            }
            Err(_) => false,
        }
    }
}

/// The fields of a `TPMS_ATTEST` of type quote that a verifier needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attest {
    pub qualified_signer: Vec<u8>,
    /// The nonce (`qualifyingData` of TPM2_Quote).
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// (bank, PCR indexes ascending) in selection order.
    pub selection: Vec<(HashAlgo, Vec<u32>)>,
    pub pcr_digest: Vec<u8>,
}

/// A `TPM2B_*`: a big-endian u16 size, then that many bytes.
fn tpm2b<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let n = r.u16_be(what)?;
    r.take(usize::from(n), what)
}

/// At most this many PCR selections in a `TPML_PCR_SELECTION` (`HASH_COUNT` is far less).
const MAX_SELECTIONS: u32 = 16;

impl Attest {
    /// Parses a quote's `TPMS_ATTEST`. Fails on anything but a TPM-generated quote.
    pub fn parse(buf: &[u8]) -> Result<Self, TpmError> {
        Self::decode(&mut Reader::new(buf)).map_err(|source| TpmError::Decode {
            structure: "TPMS_ATTEST",
            source,
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let magic = r.u32_be("magic")?;
        if magic != TPM_GENERATED {
            return Err(DecodeError::invalid_at(
                "magic",
                at,
                format!("{magic:#010x} is not TPM_GENERATED_VALUE"),
            ));
        }
        let at = r.offset();
        let ty = r.u16_be("type")?;
        if ty != ST_ATTEST_QUOTE {
            return Err(DecodeError::invalid_at(
                "type",
                at,
                format!("{ty:#06x} is not TPM_ST_ATTEST_QUOTE"),
            ));
        }
        let qualified_signer = tpm2b(r, "qualifiedSigner")?.to_vec();
        let extra_data = tpm2b(r, "extraData")?.to_vec();
        let clock = r.u64_be("clock")?;
        let reset_count = r.u32_be("resetCount")?;
        let restart_count = r.u32_be("restartCount")?;
        let safe = r.u8("safe")? != 0;
        let firmware_version = r.u64_be("firmwareVersion")?;
        let at = r.offset();
        let count = r.u32_be("pcrSelect.count")?;
        if count > MAX_SELECTIONS {
            return Err(DecodeError::at(
                "pcrSelect.count",
                at,
                DecodeErrorKind::TooLong {
                    len: count as usize,
                    max: MAX_SELECTIONS as usize,
                },
            ));
        }
        let mut selection = Vec::new();
        for _ in 0..count {
            let at = r.offset();
            let alg = r.u16_be("pcrSelect.hash")?;
            let bank = HashAlgo::from_tpm_alg_id(alg).ok_or_else(|| {
                DecodeError::invalid_at(
                    "pcrSelect.hash",
                    at,
                    format!("unknown PCR bank algorithm {alg:#06x}"),
                )
            })?;
            let n = r.u8("sizeofSelect")?;
            let bits = r.take(usize::from(n), "pcrSelect")?;
            let pcrs: Vec<u32> = (0..u32::from(n) * 8)
                .filter(|i| bits[(i / 8) as usize] & (1 << (i % 8)) != 0)
                .collect();
            selection.push((bank, pcrs));
        }
        let pcr_digest = tpm2b(r, "pcrDigest")?.to_vec();
        r.expect_end("TPMS_ATTEST")?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            selection,
            pcr_digest,
        })
    }

    /// The algorithm of `pcrDigest`, told by its size (the signing scheme's hash).
    pub fn pcr_digest_algo(&self) -> Option<HashAlgo> {
        match self.pcr_digest.len() {
            20 => Some(HashAlgo::SHA1),
            32 => Some(HashAlgo::SHA256),
            48 => Some(HashAlgo::SHA384),
            64 => Some(HashAlgo::SHA512),
            _ => None,
        }
    }

    /// Splits a `values`-format PCR file (digests concatenated in selection order) by this
    /// quote's selection.
    pub fn split_pcr_values(&self, values: &[u8]) -> Result<Vec<PcrBank>, TpmError> {
        let mut r = Reader::new(values);
        let decode = |source| TpmError::Decode {
            structure: "PCR values file",
            source,
        };
        let mut out = Vec::new();
        for (bank, pcrs) in &self.selection {
            let n = bank.digest_len().unwrap_or(0);
            let mut v = PcrBank::new(*bank);
            for &p in pcrs {
                let at = r.offset();
                let d = r.take(n, "PCR value").map_err(decode)?;
                let d = Digest::new(*bank, d).ok_or_else(|| {
                    decode(DecodeError::invalid_at(
                        "PCR value",
                        at,
                        format!("{bank} has no digest of {n} bytes"),
                    ))
                })?;
                v.set(p, d);
            }
            out.push(v);
        }
        r.expect_end("PCR values file").map_err(decode)?;
        Ok(out)
    }
}

/// What checking a quote found. Every field must be true for the quote to be good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteCheck {
    pub attest: Attest,
    /// The signature verifies over the attest bytes with the AK.
    pub signature_ok: bool,
    /// `extraData` equals the expected nonce.
    pub nonce_ok: bool,
    /// The PCR values given hash to `pcrDigest` and cover exactly the quoted selection
    /// (`None` when no PCR values were given).
    pub pcrs_ok: Option<bool>,
}

impl QuoteCheck {
    /// Whether everything checked passed.
    pub fn ok(&self) -> bool {
        self.signature_ok && self.nonce_ok && self.pcrs_ok != Some(false)
    }

    /// What the quote says, for [`ima_core::attest::verify`]: these checks' outcomes, the
    /// clock info and `pcrs` (the values checked against the digest; the PCR digest counts
    /// as failed when none were given).
    pub fn quoted(&self, pcrs: Option<&[PcrBank]>) -> ima_core::attest::Quoted {
        let banks = pcrs.map(<[PcrBank]>::to_vec).unwrap_or_default();
        ima_core::attest::Quoted {
            signature_ok: self.signature_ok,
            nonce_ok: self.nonce_ok,
            pcr_digest_ok: self.pcrs_ok == Some(true),
            reset_count: self.attest.reset_count,
            restart_count: self.attest.restart_count,
            clock: self.attest.clock,
            pcrs: banks,
        }
    }
}

/// Checks a quote: signature with `ak`, nonce, and (if given) the PCR values.
pub fn verify(
    ak: &AkPublic,
    attest: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: Option<&[PcrBank]>,
) -> Result<QuoteCheck, TpmError> {
    let a = Attest::parse(attest)?;
    let signature_ok = verify_signature(ak, attest, signature)?;
    let nonce_ok = a.extra_data == nonce;
    let pcrs_ok = pcrs.map(|p| {
        let same_selection = p.len() == a.selection.len()
            && p.iter().zip(&a.selection).all(|(bank, (algo, idx))| {
                bank.algo() == *algo && bank.iter().map(|(i, _)| i).eq(idx.iter().copied())
            });
        let vals = values_bytes(p);
        same_selection
            && a.pcr_digest_algo()
                .and_then(|algo| algo.digest(&vals).ok())
                .is_some_and(|d| d.as_bytes() == a.pcr_digest.as_slice())
    });
    Ok(QuoteCheck {
        attest: a,
        signature_ok,
        nonce_ok,
        pcrs_ok,
    })
}

/// Verifies a `TPMT_SIGNATURE` (ECDSA, RSASSA or RSAPSS) over `msg` with `ak`.
/// `Ok(false)` means "verified and wrong"; `Err` means the inputs are malformed or unsupported.
pub fn verify_signature(ak: &AkPublic, msg: &[u8], sig: &[u8]) -> Result<bool, TpmError> {
    let decode = |source| TpmError::Decode {
        structure: "TPMT_SIGNATURE",
        source,
    };
    let mut r = Reader::new(sig);
    let sig_alg = r.u16_be("sigAlg").map_err(decode)?;
    let at = r.offset();
    let hash = r.u16_be("hash").map_err(decode)?;
    let hash = HashAlgo::from_tpm_alg_id(hash).ok_or_else(|| {
        decode(DecodeError::invalid_at(
            "hash",
            at,
            format!("unknown hash algorithm {hash:#06x}"),
        ))
    })?;
    let key = ak.key_type();
    let unsupported = || TpmError::SignatureScheme {
        sig_alg,
        hash,
        key: key.name(),
    };
    let (alg, raw): (&'static dyn VerificationAlgorithm, Vec<u8>) = match sig_alg {
        ALG_ECDSA => {
            let (alg, n): (&'static dyn VerificationAlgorithm, usize) = match (key, hash) {
                (KeyType::P256, HashAlgo::SHA256) => (&signature::ECDSA_P256_SHA256_FIXED, 32),
                (KeyType::P384, HashAlgo::SHA384) => (&signature::ECDSA_P384_SHA384_FIXED, 48),
                _ => return Err(unsupported()),
            };
            let rr = tpm2b(&mut r, "signatureR").map_err(decode)?;
            let ss = tpm2b(&mut r, "signatureS").map_err(decode)?;
            if rr.len() > n || ss.len() > n {
                return Ok(false);
            }
            let mut raw = Vec::with_capacity(2 * n);
            for c in [rr, ss] {
                raw.extend(std::iter::repeat_n(0, n - c.len()));
                raw.extend_from_slice(c);
            }
            (alg, raw)
        }
        ALG_RSASSA | ALG_RSAPSS => {
            let alg: &'static dyn VerificationAlgorithm = match (key, sig_alg, hash) {
                (KeyType::Rsa, ALG_RSASSA, HashAlgo::SHA256) => {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                }
                (KeyType::Rsa, ALG_RSASSA, HashAlgo::SHA384) => {
                    &signature::RSA_PKCS1_2048_8192_SHA384
                }
                (KeyType::Rsa, ALG_RSASSA, HashAlgo::SHA1) => {
                    &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
                }
                (KeyType::Rsa, ALG_RSAPSS, HashAlgo::SHA256) => {
                    &signature::RSA_PSS_2048_8192_SHA256
                }
                (KeyType::Rsa, ALG_RSAPSS, HashAlgo::SHA384) => {
                    &signature::RSA_PSS_2048_8192_SHA384
                }
                _ => return Err(unsupported()),
            };
            (alg, tpm2b(&mut r, "sig").map_err(decode)?.to_vec())
        }
        _ => return Err(unsupported()),
    };
    r.expect_end("TPMT_SIGNATURE").map_err(decode)?;
    Ok(UnparsedPublicKey::new(alg, ak.der())
        .verify(msg, &raw)
        .is_ok())
}

/// Parses `ALG:PCR[,PCR...]` selections joined by `+` (tpm2-tools' `-l sha256:10+sha1:10`).
pub fn parse_selection(s: &str) -> Result<Vec<(HashAlgo, Vec<u32>)>, TpmError> {
    let bad = |why| TpmError::Selection {
        selection: s.to_owned(),
        why,
    };
    let mut out = Vec::new();
    for part in s.split('+') {
        let (alg, list) = part
            .split_once(':')
            .ok_or_else(|| bad(BadSelection::Syntax))?;
        let bank: HashAlgo = alg
            .parse()
            .map_err(|_| bad(BadSelection::UnknownBank(alg.to_owned())))?;
        let mut pcrs = Vec::new();
        for p in list.split(',') {
            let n: u32 = p
                .parse()
                .map_err(|_| bad(BadSelection::BadIndex(p.to_owned())))?;
            if n >= NUM_PCRS {
                return Err(bad(BadSelection::NoSuchPcr(n)));
            }
            pcrs.push(n);
        }
        pcrs.sort_unstable();
        pcrs.dedup();
        out.push((bank, pcrs));
    }
    Ok(out)
}

/// PCR values concatenated bank by bank, indexes ascending (`tpm2_quote -F values`).
fn values_bytes(banks: &[PcrBank]) -> Vec<u8> {
    banks
        .iter()
        .flat_map(|b| b.iter().flat_map(|(_, d)| d.as_bytes().to_vec()))
        .collect()
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quote's `TPMS_ATTEST` selecting sha256 PCR 10, with a 32-byte digest.
    fn attest() -> Vec<u8> {
        let mut b = TPM_GENERATED.to_be_bytes().to_vec();
        b.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        b.extend_from_slice(&[0, 2, 0xaa, 0xbb]); // qualifiedSigner
        b.extend_from_slice(&[0, 1, 0x42]); // extraData
        b.extend_from_slice(&[0; 17 + 8]); // clockInfo, firmwareVersion
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&[0x00, 0x0b, 3, 0, 0x04, 0]); // sha256: PCR 10
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&[7; 32]);
        b
    }

    #[test]
    fn attest_errors_name_the_field_and_offset() {
        let a = Attest::parse(&attest()).unwrap();
        assert_eq!(a.extra_data, [0x42]);
        assert_eq!(a.selection, vec![(HashAlgo::SHA256, vec![10])]);
        let b = attest();
        let e = Attest::parse(&b[..b.len() - 5]).unwrap_err().to_string();
        assert_eq!(
            e,
            "TPMS_ATTEST: pcrDigest at byte offset 50: truncated: needed 32 bytes, 27 left"
        );
        let mut b = attest();
        b[0] = 0;
        let e = Attest::parse(&b).unwrap_err().to_string();
        assert!(
            e.starts_with("TPMS_ATTEST: magic at byte offset 0: "),
            "{e}"
        );
        let mut b = attest();
        b.push(0);
        let e = Attest::parse(&b).unwrap_err().to_string();
        assert!(
            e.contains("at byte offset 82: 1 unexpected trailing bytes"),
            "{e}"
        );
        let a = Attest::parse(&attest()).unwrap();
        let e = a.split_pcr_values(&[0; 31]).unwrap_err().to_string();
        assert_eq!(
            e,
            "PCR values file: PCR value at byte offset 0: truncated: needed 32 bytes, 31 left"
        );
        assert!(a.split_pcr_values(&[0; 33]).is_err());
        assert_eq!(a.split_pcr_values(&[0; 32]).unwrap().len(), 1);
    }

    #[test]
    fn selection_and_scheme_errors_are_typed() {
        let why = |s| match parse_selection(s) {
            Err(TpmError::Selection { why, .. }) => why,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(why("sha256:10,99"), BadSelection::NoSuchPcr(99));
        assert_eq!(why("nope:1"), BadSelection::UnknownBank("nope".into()));
        assert_eq!(why("sha1:x"), BadSelection::BadIndex("x".into()));
        assert_eq!(why("sha1"), BadSelection::Syntax);
        let ak = AkPublic::from_p256_point(&[1; 32], &[2; 32]).unwrap();
        // RSASSA with SHA-256 by an ECC key.
        let e = verify_signature(&ak, b"m", &[0, 0x14, 0, 0x0b, 0, 0]).unwrap_err();
        assert!(
            matches!(
                e,
                TpmError::SignatureScheme {
                    sig_alg: 0x14,
                    key: "ECC P-256",
                    ..
                }
            ),
            "{e}"
        );
    }
}
