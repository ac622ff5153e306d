//! TPM 2.0 client for ima: read and extend PCRs in every allocated bank, create an attestation
//! key under the endorsement hierarchy, quote, and verify quotes.
//!
//! One trait, [`Tpm`], with three backends:
//! - [`HwTpm`] over a [`Transport`]: the swtpm TCP socket (`swtpm:host=H,port=P`) or a kernel
//!   character device (`device:/dev/tpmrm0`). Both carry the same command bytes, marshalled
//!   with the pure-Rust `tpm2-protocol` crate (see ARCHITECTURE.md for why).
//! - [`SoftPcrs`]: an embedded, file-backed software PCR bank (sha1 + sha256). It is the
//!   default when no TPM is named and it is **not hardware-rooted**: anyone who can write its
//!   file can forge it. [`Tpm::kind`] says so and `imactl` prints it.
//!
//! Mirrors the PCR half of `security/integrity/ima/ima_queue.c` (`ima_pcr_extend`) and
//! `drivers/char/tpm/tpm2-cmd.c` (`tpm2_pcr_read`, `tpm2_pcr_extend`).

use std::fmt;
use std::path::Path;

use ima_core::hash::{Digest, HashAlgo};

mod hw;
pub mod quote;
mod soft;
pub mod tcti;
mod transport;

pub use hw::{HwTpm, WireError};
pub use quote::{AkPublic, Quote, QuoteCheck};
pub use soft::SoftPcrs;
pub use tcti::Tcti;
pub use transport::{DeviceTransport, SocketTransport, Transport};

/// Number of PCRs of a PC-client TPM (`IMPLEMENTATION_PCR`).
pub const NUM_PCRS: u32 = 24;

/// What a [`Tpm`] is, so callers can say whether a PCR value is hardware-rooted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmKind {
    /// A TPM character device (`/dev/tpmrm0`).
    Device(String),
    /// The embedded, file-backed software PCR bank: **not hardware-rooted**.
    Software(String),
    /// swtpm over TCP (a software TPM, but a separate process with its own state).
    Swtpm(String),
}

impl TpmKind {
    /// Whether PCR values come from a TPM (a device or swtpm) rather than from our own file.
    pub fn is_tpm(&self) -> bool {
        !matches!(self, Self::Software(_))
    }
}

impl fmt::Display for TpmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(p) => write!(f, "TPM device {p}"),
            Self::Software(p) => write!(
                f,
                "software PCR bank {p} (NOT hardware-rooted: no TPM was given)"
            ),
            Self::Swtpm(a) => write!(f, "swtpm at {a}"),
        }
    }
}

/// `TPMS_CLOCK_INFO`: the TPM's clock and how often it was reset or restarted.
///
/// ```text
/// TPMS_CLOCK_INFO { UINT64 clock; UINT32 resetCount; UINT32 restartCount; TPMI_YES_NO safe; }
/// ```
/// A TPM Reset (power cycle, or `TPM2_Startup(CLEAR)` after anything but an orderly
/// shutdown) increments `resetCount` and zeroes `restartCount`; a TPM Restart (resume from
/// hibernation with `Startup(CLEAR)`) increments `restartCount`. Both reset the PCRs, so
/// equal counts mean the PCRs were not reset in between. The same structure is signed in
/// every quote (`TPMS_ATTEST.clockInfo`), which is how a remote verifier ties a quote to a
/// list's boot entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered, ever (advances monotonically unless not `safe`).
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    /// Whether `clock` may have gone back (no orderly shutdown since it was last saved).
    pub safe: bool,
}

/// The one interface the measurement engine and `imactl` use.
pub trait Tpm: Send {
    /// What this is (device, swtpm, software bank).
    fn kind(&self) -> TpmKind;

    /// The allocated PCR banks, in the TPM's order.
    fn banks(&self) -> &[HashAlgo];

    /// Reads `pcrs` of `bank`, in the order given.
    fn pcr_read(&mut self, bank: HashAlgo, pcrs: &[u32]) -> Result<Vec<Digest>, TpmError>;

    /// Extends `pcr` in every allocated bank with one command: `digests` holds exactly one
    /// digest per bank of [`Tpm::banks`] (matched by algorithm).
    fn extend(&mut self, pcr: u32, digests: &[Digest]) -> Result<(), TpmError>;

    /// The public part of the attestation key: a restricted ECDSA P-256 signing key created
    /// as a primary object under the endorsement hierarchy (deterministic for a given
    /// endorsement seed, so it is re-created rather than stored).
    fn create_ak(&mut self) -> Result<AkPublic, TpmError>;

    /// Signs the current values of `selection` (bank, PCR indexes) with the AK, binding
    /// `nonce` (`qualifyingData`, at most 64 bytes).
    fn quote(
        &mut self,
        nonce: &[u8],
        selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<Quote, TpmError>;

    /// The TPM's clock and reset/restart counts (`TPM2_ReadClock`). The software bank has
    /// no clock and is never "reset" while its file lives (all zero, `safe`); its
    /// equivalent of a reset is a new file, which has a new instance id
    /// ([`Tpm::instance`]).
    fn clock_info(&mut self) -> Result<ClockInfo, TpmError>;

    /// The software bank's instance id (16 random bytes drawn when its file was created);
    /// `None` for a TPM, whose identity is its AK.
    fn instance(&self) -> Option<[u8; 16]> {
        None
    }

    /// Makes every extend so far durable (a no-op for a TPM; the software bank writes its
    /// file). The engine calls it before it records that an entry is anchored.
    fn flush(&mut self) -> Result<(), TpmError> {
        Ok(())
    }
}

/// Opens the TPM a TCTI string names (`swtpm:host=H,port=P`, `device:/dev/tpmrm0`,
/// `soft:/path/to/file`), or the software bank at `soft_default` when `tcti` is `None`.
pub fn open(tcti: Option<&str>, soft_default: &Path) -> Result<Box<dyn Tpm>, TpmError> {
    let t = match tcti {
        Some(s) => s.parse::<Tcti>()?,
        None => Tcti::Soft(soft_default.to_path_buf()),
    };
    t.open()
}

/// Why a TPM operation could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    #[error("cannot parse TCTI {tcti:?}: {why}")]
    Tcti { tcti: String, why: &'static str },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TPM returned {rc:#010x} ({name}) for {command}")]
    Rc {
        command: &'static str,
        rc: u32,
        name: String,
    },
    /// A command could not be marshalled (a value does not fit its TPM type).
    #[error("cannot marshal {what}: {source}")]
    Marshal {
        what: &'static str,
        #[source]
        source: WireError,
    },
    /// A response did not unmarshal as the command's response.
    #[error("cannot unmarshal the response to {command}: {source}")]
    Unmarshal {
        command: &'static str,
        #[source]
        source: WireError,
    },
    /// A response unmarshalled but does not say what the command asks for.
    #[error("{command} returned {what}")]
    Reply {
        command: &'static str,
        what: BadReply,
    },
    /// A response header announces a size no TPM response has.
    #[error("response of {size} bytes announced by {from} (a response is 10 to {max} bytes)")]
    ResponseSize {
        from: String,
        size: usize,
        max: usize,
    },
    /// A TPM structure or a quote file (`TPMS_ATTEST`, `TPMT_SIGNATURE`, a PCR values file,
    /// a quote response) does not decode; the error names the field and byte offset.
    #[error("{structure}: {source}")]
    Decode {
        structure: &'static str,
        #[source]
        source: ima_core::codec::DecodeError,
    },
    #[error("AK public point: coordinates of {x} and {y} bytes (P-256 has at most 32)")]
    AkPoint { x: usize, y: usize },
    #[error("AK PEM: {0}")]
    AkPem(&'static str),
    #[error("AK PEM: bad base64")]
    AkBase64(#[source] base64::DecodeError),
    #[error("a nonce of {len} bytes is too long for TPM2_Quote's qualifyingData")]
    NonceTooLong { len: usize },
    #[error("PCR bank {0} is not allocated")]
    NoSuchBank(HashAlgo),
    #[error("PCR {0} does not exist: a TPM has PCRs 0 to 23")]
    BadPcr(u32),
    #[error("extend needs one digest per allocated bank ({expected}), got {got}")]
    BankMismatch { expected: String, got: String },
    #[error(transparent)]
    Extend(#[from] ima_core::hash::ExtendError),
    #[error("software PCR bank {path}: no such file (imactl measure creates it)")]
    NoSoftBank { path: String },
    #[error("{path} names no file")]
    NotAFile { path: String },
    #[error("software PCR bank {path} was opened read-only")]
    ReadOnly { path: String },
    #[error(
        "the software PCR bank cannot {op}: it is not hardware-rooted (give a TPM with --tpm \
         TCTI)"
    )]
    NotHardwareRooted { op: &'static str },
    #[error("a signature of algorithm {sig_alg:#06x} with {hash} by a {key} key is not supported")]
    SignatureScheme {
        sig_alg: u16,
        hash: HashAlgo,
        key: &'static str,
    },
    #[error("PCR selection {selection:?}: {why}")]
    Selection {
        selection: String,
        why: BadSelection,
    },
    #[error("software PCR file {path} is corrupt: {source}")]
    SoftCorrupt {
        path: String,
        #[source]
        source: ima_core::codec::DecodeError,
    },
}

/// Why a PCR selection (`ALG:PCR[,PCR...]` joined by `+`) does not parse
/// ([`TpmError::Selection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadSelection {
    #[error("expected ALG:PCR[,PCR...]")]
    Syntax,
    #[error("unknown bank {0:?}")]
    UnknownBank(String),
    #[error("bad PCR index {0:?}")]
    BadIndex(String),
    #[error("PCR {0} does not exist: a TPM has PCRs 0 to 23")]
    NoSuchPcr(u32),
}

/// What a TPM response said that the command did not ask for ([`TpmError::Reply`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadReply {
    #[error("something other than a PCR selection")]
    NotPcrSelection,
    #[error("an attestation key that is not an ECC key")]
    AkNotEcc,
    #[error("no value for {bank} PCR {pcr}")]
    NoPcrValue { bank: HashAlgo, pcr: u32 },
    #[error("{len} bytes for a {bank} PCR")]
    PcrValueSize { bank: HashAlgo, len: usize },
}

impl TpmError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Checks that `digests` has exactly one digest per bank, and returns them in bank order.
pub(crate) fn digests_per_bank(
    banks: &[HashAlgo],
    digests: &[Digest],
) -> Result<Vec<Digest>, TpmError> {
    let mismatch = || TpmError::BankMismatch {
        expected: banks
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
        got: digests
            .iter()
            .map(|d| d.algo().to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    if digests.len() != banks.len() {
        return Err(mismatch());
    }
    banks
        .iter()
        .map(|b| {
            digests
                .iter()
                .find(|d| d.algo() == *b)
                .copied()
                .ok_or_else(mismatch)
        })
        .collect()
}
