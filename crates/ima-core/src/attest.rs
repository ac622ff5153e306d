//! Remote attestation: whether a quote and the measurement list it covers can be trusted.
//!
//! A verifier holds a quote (already checked by `ima_tpm::quote::verify`: signature with the
//! AK, nonce, PCR digest; here as [`Quoted`]), the list (binary or ascii, any template, any
//! bank) and its reference values, and decides, in this order:
//!
//! 1. the quote: signature, nonce, PCR digest over the quoted values;
//! 2. which entries are new: all of them, or those after a [`Checkpoint`] of the same boot
//!    (same TPM reset and restart counts); a list shorter than its checkpoint in the same
//!    boot is truncated (tampering), while changed counts start a new baseline;
//! 3. replay ([`crate::log::replay::replay_from`]) of the new entries into every quoted
//!    bank, from the checkpoint's values, against the quoted PCRs (PCR 10 and every PCR the
//!    list uses must be quoted and match);
//! 4. a new baseline's first entry: boot_aggregate against the quoted PCRs 0–9
//!    ([`crate::log::replay::check_boot_aggregate`]), then the engine's boot entry
//!    ([`check_boot_entry`]);
//! 5. every new entry against the [`Refs`] and keys: file digests (or an exclusion),
//!    `ima-sig`/`ima-sigv2` signatures and `evm-sig` portable signatures against the
//!    keyring, `ima-buf` entries (keys loaded onto keyrings, other buffers).
//!
//! The outcome is a [`Verdict`] (a value, whatever it says); `Err` means the input could not
//! be read (a malformed list). Every [`Failure`] names what it is about: the entry's index,
//! path and digest, the reference it missed and the line that would accept it. Only a
//! trusted verdict carries the next checkpoint.
//!
//! No kernel counterpart: this is what Keylime's verifier does with a quote and the list
//! (`keylime/ima/ima.py`, `process_measurement_list`), written from the formats.

pub mod checkpoint;
pub mod refs;

use std::fmt;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use refs::{Exclude, RefDigest, Refs, RefsError};

use crate::codec::{Codec, DecodeError};
use crate::digsig::{Certificate, Keyring, Signature};
use crate::evm::{self, EvmConfig, EvmKind, Inode, InodeMeta};
use crate::hash::{Digest, HashAlgo, UnsupportedAlgo};
use crate::integrity::XattrType;
use crate::log::boot_entry::BootEntry;
use crate::log::replay::{self, BootAggregateCheck, PcrBank, ReplayEntry};
use crate::log::{Entry, ListFormat, ascii, binary};
use crate::template::{Field, FieldValue, TemplateDesc};

/// The PCR IMA extends by default (`CONFIG_IMA_MEASURE_PCR_IDX`); always compared.
pub const IMA_PCR: u32 = 10;

/// What a checked quote says: the outcome of its checks and what it attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    /// The signature verifies with the AK.
    pub signature_ok: bool,
    /// `extraData` is the verifier's nonce.
    pub nonce_ok: bool,
    /// The PCR values hash to the quoted `pcrDigest` and cover exactly its selection.
    pub pcr_digest_ok: bool,
    pub reset_count: u32,
    pub restart_count: u32,
    pub clock: u64,
    /// The quoted PCR values, per bank.
    pub pcrs: Vec<PcrBank>,
}

/// The measurement list as received: the whole file.
#[derive(Debug, Clone, Copy)]
pub struct List<'a> {
    pub bytes: &'a [u8],
    /// Binary (else ascii); [`List::new`] tells them apart.
    pub binary: bool,
    pub format: ListFormat,
    /// Custom templates an ascii list or the reference check needs (`NAME=FMT`).
    pub templates: &'a [TemplateDesc],
}

impl<'a> List<'a> {
    /// A list whose encoding is told by its first bytes: a binary list starts with a u32
    /// PCR index (a zero byte); an ascii one with `%2d `.
    pub fn new(bytes: &'a [u8], format: ListFormat, templates: &'a [TemplateDesc]) -> Self {
        Self {
            bytes,
            binary: bytes.iter().take(4).any(|&b| b == 0),
            format,
            templates,
        }
    }
}

/// The verification keys and reference values.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub refs: &'a Refs,
    /// Keys for `ima-sig`/`evm-sig` signatures (keys the list loads and the references
    /// accept are added for the entries after them).
    pub keys: &'a Keyring,
}

/// Where verification started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// From the checkpoint's entry.
    Continued { from: u64 },
    /// From entry 0: no checkpoint.
    Fresh,
    /// From entry 0: the checkpoint belongs to an earlier boot (or another list encoding).
    NewBoot { reason: String },
}

/// An entry named in a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// 0-based index in the whole list.
    pub index: u64,
    pub template: String,
    /// The event name (path, or buffer name).
    pub path: String,
    /// The measured digest as `algo:hex` (bare hex when the template does not say).
    pub digest: String,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} ({} {} {})",
            self.index, self.template, self.path, self.digest
        )
    }
}

/// Why an entry missed the references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No digest is referenced for the path.
    NoPath,
    /// Digests are referenced for the path, none this one.
    DigestDiffers { accepted: Vec<RefDigest> },
    /// An `ima-buf` entry loading a key onto a keyring the references do not accept it on.
    Keyring {
        keyring: String,
        accepted: Vec<RefDigest>,
    },
    /// An `ima-buf` entry whose digest is not referenced for its name.
    Buf {
        name: String,
        accepted: Vec<RefDigest>,
    },
    /// imad denied an access (an `imad-denial` entry, `log::decision`) the references do not
    /// accept: `record` is its audit record (what was denied, why, to whom).
    Denied { record: String },
    /// A violation (zero template digest: the file was measured while open for write, or
    /// changed while measured): its content is unknown.
    Violation,
    /// A template whose fields are unknown (no `--template NAME=FMT` given).
    UnknownTemplate,
}

/// One reason a verdict is not "trusted".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The quote's signature does not verify with the AK.
    QuoteSignature,
    /// The quote does not carry the verifier's nonce (a replayed quote).
    Nonce,
    /// The PCR values given are not those the quote signed.
    PcrDigest,
    /// The TPM's reset or restart count is lower than the checkpoint's.
    CountersWentBack {
        checkpoint: (u32, u32),
        quote: (u32, u32),
    },
    /// The list ends before the checkpoint, in the same boot: entries were removed.
    Truncated {
        bytes: u64,
        checkpoint: u64,
        offset: u64,
    },
    /// The list no longer parses at the checkpoint's offset: it was rewritten before it.
    Rewritten { offset: u64, error: String },
    /// A PCR the list uses (or PCR 10) is not in the quote.
    PcrNotQuoted { bank: HashAlgo, pcr: u32 },
    /// The replay of a bank's PCR does not reach the quoted value.
    Replay {
        bank: HashAlgo,
        pcr: u32,
        replayed: Digest,
        quoted: Digest,
        /// The first entry from which it can no longer match.
        from: Option<EntryRef>,
    },
    /// An entry's logged template digest is not the digest of its data.
    TemplateDigest { entry: EntryRef },
    /// A violation whose file digest is not zero (the kernel writes zeros: altered).
    AlteredViolation { entry: EntryRef },
    /// boot_aggregate does not match the quoted PCRs 0–9 (or the list does not start with
    /// it, or those PCRs were not quoted).
    BootAggregate(BootAggregateCheck),
    /// A new baseline with no entry at all (not even boot_aggregate).
    EmptyList,
    /// The engine's boot entry names other TPM reset/restart counts than the quote, or a
    /// later clock: the list was started in another boot (or on another TPM).
    BootEntry {
        /// (reset count, restart count, clock) in the boot entry.
        recorded: (u32, u32, u64),
        /// The same in the quote's clock info.
        quoted: (u32, u32, u64),
    },
    /// The engine's boot entry does not parse.
    BootEntryInvalid { why: String },
    /// An entry the references do not accept.
    Reference {
        entry: EntryRef,
        miss: Miss,
        /// Why its signature (if any) did not make up for it.
        signature: Option<String>,
        /// The reference line that would accept it (`refs` text format).
        accept: Option<String>,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QuoteSignature => f.write_str("quote: the signature does not verify with the AK"),
            Self::Nonce => f.write_str("quote: not made for this nonce (replayed or stale)"),
            Self::PcrDigest => f.write_str("quote: the PCR values are not those the quote signed"),
            Self::CountersWentBack { checkpoint, quote } => write!(
                f,
                "TPM reset/restart counts went back: checkpoint {}/{}, quote {}/{} (another TPM?)",
                checkpoint.0, checkpoint.1, quote.0, quote.1
            ),
            Self::Truncated {
                bytes,
                checkpoint,
                offset,
            } => write!(
                f,
                "list truncated behind the checkpoint: {bytes} bytes, the checkpoint verified \
                 {checkpoint} entries ({offset} bytes) in this boot"
            ),
            Self::Rewritten { offset, error } => write!(
                f,
                "list rewritten behind the checkpoint: no entry starts at byte {offset} ({error})"
            ),
            Self::PcrNotQuoted { bank, pcr } => {
                write!(f, "PCR {pcr} ({bank}) is used by the list but not quoted")
            }
            Self::Replay {
                bank,
                pcr,
                replayed,
                quoted,
                from,
            } => {
                write!(
                    f,
                    "PCR {pcr} ({bank}): the list replays to {}, the quote says {}",
                    replayed.to_hex(),
                    quoted.to_hex()
                )?;
                if let Some(e) = from {
                    write!(f, "; can no longer match from {e}")?;
                }
                Ok(())
            }
            Self::TemplateDigest { entry } => {
                write!(
                    f,
                    "{entry}: logged template digest is not the digest of its data"
                )
            }
            Self::AlteredViolation { entry } => {
                write!(
                    f,
                    "{entry}: violation with a non-zero file digest (altered)"
                )
            }
            Self::BootAggregate(c) => write!(f, "entry 0: {c}"),
            Self::EmptyList => f.write_str("the list is empty (no boot_aggregate)"),
            Self::BootEntry { recorded, quoted } => write!(
                f,
                "entry 1: the boot entry says TPM reset/restart counts {}/{} and clock {}, the \
                 quote {}/{} and clock {}: the list was started in another boot or on another \
                 TPM",
                recorded.0, recorded.1, recorded.2, quoted.0, quoted.1, quoted.2
            ),
            Self::BootEntryInvalid { why } => write!(f, "entry 1: boot entry: {why}"),
            Self::Reference {
                entry,
                miss,
                signature,
                accept,
            } => {
                write!(f, "{entry}: ")?;
                match miss {
                    Miss::NoPath => f.write_str("no reference digest for this path")?,
                    Miss::DigestDiffers { accepted } => write!(
                        f,
                        "digest not in the references (they accept {})",
                        list(accepted)
                    )?,
                    Miss::Keyring { keyring, accepted } => write!(
                        f,
                        "key loaded onto keyring {keyring} is not referenced (accepted: {})",
                        list(accepted)
                    )?,
                    Miss::Buf { name, accepted } => write!(
                        f,
                        "buffer {name} not in the references (accepted: {})",
                        list(accepted)
                    )?,
                    Miss::Denied { record } => write!(f, "imad denied an access: {record}")?,
                    Miss::Violation => f.write_str("violation: the measured content is unknown")?,
                    Miss::UnknownTemplate => {
                        f.write_str("unknown template: give its format (NAME=FMT)")?
                    }
                }
                if let Some(s) = signature {
                    write!(f, "; signature: {s}")?;
                }
                if let Some(a) = accept {
                    write!(f, "; accepted by the reference \"{a}\"")?;
                }
                Ok(())
            }
        }
    }
}

fn list(ds: &[RefDigest]) -> String {
    if ds.is_empty() {
        return "none".into();
    }
    ds.iter()
        .map(RefDigest::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts of how entries were accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries read (new entries).
    pub entries: u64,
    pub by_digest: u64,
    pub by_signature: u64,
    pub excluded: u64,
    /// Keys loaded by the list that the references accept (added to the keyring).
    pub keys_loaded: u64,
    pub buffers: u64,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub failures: Vec<Failure>,
    pub baseline: Baseline,
    /// Entries in the whole list (checkpoint's plus new).
    pub total_entries: u64,
    pub stats: Stats,
    /// Whether reference values or keys were given (else entries were only replayed).
    pub refs_checked: bool,
    /// boot_aggregate's check on a new baseline.
    pub boot_aggregate: Option<BootAggregateCheck>,
    /// Where the next round starts (only when trusted).
    pub checkpoint: Option<Checkpoint>,
}

impl Verdict {
    /// Trusted: nothing failed.
    pub fn trusted(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Why no verdict could be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    #[error("binary list: {0}")]
    Binary(DecodeError),
    #[error("ascii list: line {line}, column {column}: {msg}")]
    Ascii {
        line: usize,
        column: usize,
        msg: String,
    },
    #[error(transparent)]
    Algo(#[from] UnsupportedAlgo),
}

/// Decides whether `quoted` and `list` can be trusted under `policy`, continuing from
/// `checkpoint` when it belongs to the same boot (module docs).
pub fn verify(
    quoted: &Quoted,
    list: &List<'_>,
    policy: &Policy<'_>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Verdict, AttestError> {
    let mut failures = Vec::new();
    if !quoted.signature_ok {
        failures.push(Failure::QuoteSignature);
    }
    if !quoted.nonce_ok {
        failures.push(Failure::Nonce);
    }
    if !quoted.pcr_digest_ok {
        failures.push(Failure::PcrDigest);
    }

    // 2. Where to start.
    let (baseline, start) = match checkpoint {
        None => (Baseline::Fresh, None),
        Some(cp) => {
            let now = (quoted.reset_count, quoted.restart_count);
            let then = (cp.reset_count, cp.restart_count);
            if now < then {
                failures.push(Failure::CountersWentBack {
                    checkpoint: then,
                    quote: now,
                });
                (
                    Baseline::NewBoot {
                        reason: "TPM counters went back".into(),
                    },
                    None,
                )
            } else if now != then {
                (
                    Baseline::NewBoot {
                        reason: format!(
                            "TPM reset/restart counts {}/{} -> {}/{}",
                            then.0, then.1, now.0, now.1
                        ),
                    },
                    None,
                )
            } else if cp.binary != list.binary || cp.format != list.format {
                (
                    Baseline::NewBoot {
                        reason: "the list's encoding differs from the checkpoint's".into(),
                    },
                    None,
                )
            } else if (list.bytes.len() as u64) < cp.offset {
                failures.push(Failure::Truncated {
                    bytes: list.bytes.len() as u64,
                    checkpoint: cp.entries,
                    offset: cp.offset,
                });
                return Ok(Verdict {
                    failures,
                    baseline: Baseline::Continued { from: cp.entries },
                    total_entries: 0,
                    stats: Stats::default(),
                    refs_checked: false,
                    boot_aggregate: None,
                    checkpoint: None,
                });
            } else {
                (Baseline::Continued { from: cp.entries }, Some(cp))
            }
        }
    };
    let first = start.map_or(0, |cp| cp.entries);
    let offset = start.map_or(0, |cp| cp.offset);

    // Decode the new entries.
    let tail = list.bytes.get(offset as usize..).unwrap_or_default();
    let entries = match decode(tail, list, offset, first) {
        Ok(e) => e,
        Err(e) if start.is_some() => {
            failures.push(Failure::Rewritten {
                offset,
                error: e.to_string(),
            });
            return Ok(Verdict {
                failures,
                baseline,
                total_entries: first,
                stats: Stats::default(),
                refs_checked: false,
                boot_aggregate: None,
                checkpoint: None,
            });
        }
        Err(e) => return Err(e),
    };
    let entry_ref = |i: usize| entry_ref(&entries[i], first + i as u64, list.templates);

    // 3. Replay from the checkpoint's values into every quoted bank.
    let banks: Vec<HashAlgo> = quoted
        .pcrs
        .iter()
        .map(PcrBank::algo)
        .filter(|a| a.is_supported())
        .collect();
    let expected: Vec<Option<&PcrBank>> = banks
        .iter()
        .map(|a| quoted.pcrs.iter().find(|b| b.algo() == *a))
        .collect();
    let initial: Vec<Option<&PcrBank>> = banks
        .iter()
        .map(|a| start.and_then(|cp| cp.pcrs.iter().find(|b| b.algo() == *a)))
        .collect();
    let r = replay::replay_from(
        &entries,
        list.format.bank,
        &banks,
        &expected,
        &initial,
        list.format.endian,
    )?;
    for &i in &r.bad_digests {
        failures.push(Failure::TemplateDigest {
            entry: entry_ref(i),
        });
    }
    for &i in &r.bad_violations {
        failures.push(Failure::AlteredViolation {
            entry: entry_ref(i),
        });
    }
    let mut next_pcrs = Vec::new();
    for (k, b) in r.banks.iter().enumerate() {
        // Every PCR the list used (before or now) and PCR 10: replayed (or carried over
        // from the checkpoint, or zero) must equal the quoted value.
        let mut values = initial[k].cloned().unwrap_or_else(|| PcrBank::new(b.algo));
        for p in &b.pcrs {
            values.set(p.index, p.value);
        }
        if values.get(IMA_PCR).is_none()
            && let Some(z) = Digest::zero(b.algo)
        {
            values.set(IMA_PCR, z);
        }
        for (pcr, value) in values.iter() {
            let Some(quoted_value) = expected[k].and_then(|q| q.get(pcr)) else {
                failures.push(Failure::PcrNotQuoted { bank: b.algo, pcr });
                continue;
            };
            if quoted_value != value {
                let from = b
                    .pcrs
                    .iter()
                    .find(|p| p.index == pcr)
                    .and_then(|p| p.first_unmatchable)
                    .map(entry_ref);
                failures.push(Failure::Replay {
                    bank: b.algo,
                    pcr,
                    replayed: *value,
                    quoted: *quoted_value,
                    from,
                });
            }
        }
        next_pcrs.push(values);
    }
    if banks.is_empty() {
        failures.push(Failure::PcrNotQuoted {
            bank: list.format.bank,
            pcr: IMA_PCR,
        });
    }

    // 4. A new baseline starts with boot_aggregate (and the engine's boot entry).
    let mut boot_aggregate = None;
    if start.is_none() {
        match entries.first() {
            None => failures.push(Failure::EmptyList),
            Some(e) => {
                let c = replay::check_boot_aggregate(e, &quoted.pcrs);
                if !matches!(c, BootAggregateCheck::Match { .. }) {
                    failures.push(Failure::BootAggregate(c.clone()));
                }
                boot_aggregate = Some(c);
            }
        }
        failures.extend(check_boot_entry(&entries, quoted));
    }

    // 5. Reference values.
    let refs_checked = !policy.refs.is_empty() || !policy.keys.is_empty();
    let mut stats = Stats {
        entries: entries.len() as u64,
        ..Stats::default()
    };
    if refs_checked {
        let mut keys = policy.keys.clone();
        let mut descs: Vec<TemplateDesc> = Vec::new();
        let skip = usize::from(start.is_none());
        for (i, e) in entries.iter().enumerate().skip(skip) {
            if start.is_none() && i == 1 && BootEntry::buffer_of(e).is_some() {
                continue; // the engine's boot entry: checked against the quote above
            }
            let desc = match descs.iter().find(|d| d.name() == e.template_name) {
                Some(d) => Some(d),
                None => match TemplateDesc::resolve(&e.template_name, list.templates) {
                    Ok(d) => {
                        descs.push(d);
                        descs.last()
                    }
                    Err(_) => None,
                },
            };
            let index = first + i as u64;
            if let Some(f) = check_entry(e, index, desc, policy.refs, &mut keys, &mut stats) {
                failures.push(f);
            }
        }
    }

    let total_entries = first + entries.len() as u64;
    let checkpoint = failures.is_empty().then_some(Checkpoint {
        entries: total_entries,
        offset: list.bytes.len() as u64,
        binary: list.binary,
        format: list.format,
        reset_count: quoted.reset_count,
        restart_count: quoted.restart_count,
        clock: quoted.clock,
        pcrs: next_pcrs,
    });
    Ok(Verdict {
        failures,
        baseline,
        total_entries,
        stats,
        refs_checked,
        boot_aggregate,
        checkpoint,
    })
}

/// Reference values accepting every entry of a known-good list: a `file` digest per file
/// entry, a `keyring` digest per key an `ima-buf` entry loads, a `buf` digest per other
/// `ima-buf` entry. boot_aggregate (checked against PCRs instead) and violations are left
/// out; so are entries of templates neither built in nor in `templates` (their count is
/// returned).
pub fn refs_from_list(entries: &[Entry], templates: &[TemplateDesc]) -> (Refs, usize) {
    let mut refs = Refs::new();
    let mut unknown = 0;
    for e in entries {
        let Ok(desc) = TemplateDesc::resolve(&e.template_name, templates) else {
            unknown += 1;
            continue;
        };
        let name = event_name(e);
        let f = fields(e, &desc);
        let Some((algo, bytes)) = f.digest else {
            unknown += 1;
            continue;
        };
        // Not reference values: boot_aggregate (checked against PCRs 0–9), the engine's boot
        // entry (this boot's, checked against the quote) and imad's denials (what a good
        // host blocked is no reference for another).
        if e.is_violation()
            || name.as_bytes() == replay::BOOT_AGGREGATE_NAME
            || BootEntry::buffer_of(e).is_some()
            || (f.buf.is_some() && name == crate::log::decision::DENIAL)
        {
            continue;
        }
        let d = RefDigest {
            algo,
            bytes: bytes.to_vec(),
        };
        match f.buf {
            Some(buf) if Certificate::from_der(buf).is_ok() => refs.add_keyring(&name, d),
            Some(_) => refs.add_buf(&name, d),
            None => refs.add_file(&name, d),
        }
    }
    (refs, unknown)
}

/// The engine's boot entry ([`BootEntry`], the list's second entry, if it has one: kernel
/// lists do not) against the quote's clock info: the same TPM reset and restart counts (else
/// the PCRs were reset since the list started, so this list is not what they hold: a list
/// from another boot or another TPM), and a clock not earlier than when the list started.
/// (Whose AK signed is the caller's check: `tpm_id` names it for that.)
pub fn check_boot_entry(entries: &[Entry], quoted: &Quoted) -> Option<Failure> {
    let buf = BootEntry::buffer_of(entries.get(1)?)?;
    let b = match BootEntry::decode(buf) {
        Ok(b) => b,
        Err(why) => return Some(Failure::BootEntryInvalid { why }),
    };
    let recorded = (b.reset_count, b.restart_count);
    let now = (quoted.reset_count, quoted.restart_count);
    (recorded != now || quoted.clock < b.clock).then_some(Failure::BootEntry {
        recorded: (b.reset_count, b.restart_count, b.clock),
        quoted: (quoted.reset_count, quoted.restart_count, quoted.clock),
    })
}

/// Decodes the list's entries from byte `offset` (the `first`-th entry); errors carry
/// positions in the whole file.
fn decode(
    tail: &[u8],
    list: &List<'_>,
    offset: u64,
    first: u64,
) -> Result<Vec<Entry>, AttestError> {
    if list.binary {
        binary::decode(tail, list.format).map_err(|mut e| {
            e.offset += offset as usize;
            AttestError::Binary(e)
        })
    } else {
        ascii::decode(tail, list.format.bank, list.templates, list.format.endian).map_err(|e| {
            AttestError::Ascii {
                line: e.line + first as usize,
                column: e.column,
                msg: e.msg,
            }
        })
    }
}

/// What the reference check needs from an entry.
struct Fields<'e> {
    /// The measured digest: algorithm (when named) and bytes.
    digest: Option<(Option<HashAlgo>, &'e [u8])>,
    /// `d-ngv2`'s type (`ima` or `verity`).
    digest_type: Option<&'e [u8]>,
    sig: Option<&'e [u8]>,
    evmsig: Option<&'e [u8]>,
    buf: Option<&'e [u8]>,
    xattr_names: Option<&'e [u8]>,
    xattr_lengths: Option<Vec<u32>>,
    xattr_values: Option<&'e [u8]>,
    uid: Option<u64>,
    gid: Option<u64>,
    mode: Option<u64>,
}

fn fields<'e>(e: &'e Entry, desc: &TemplateDesc) -> Fields<'e> {
    let mut out = Fields {
        digest: None,
        digest_type: None,
        sig: None,
        evmsig: None,
        buf: None,
        xattr_names: None,
        xattr_lengths: None,
        xattr_values: None,
        uid: None,
        gid: None,
        mode: None,
    };
    let nonempty = |d: &'e [u8]| (!d.is_empty()).then_some(d);
    for (f, data) in desc.fields().iter().zip(e.data.fields()) {
        let endian = crate::codec::Endian::Little;
        match f {
            Field::D if out.digest.is_none() => {
                let algo = match data.len() {
                    20 => Some(HashAlgo::SHA1),
                    16 => Some(HashAlgo::MD5),
                    _ => None,
                };
                out.digest = nonempty(data).map(|d| (algo, d));
            }
            Field::DNg | Field::DNgv2 => {
                if let FieldValue::Digest {
                    algo,
                    digest,
                    digest_type,
                    ..
                } = f.decode(data, endian)
                {
                    let algo = std::str::from_utf8(algo).ok().and_then(|a| a.parse().ok());
                    out.digest = Some((algo, digest));
                    out.digest_type = digest_type;
                }
            }
            Field::Sig => out.sig = nonempty(data),
            Field::EvmSig => out.evmsig = nonempty(data),
            Field::Buf => out.buf = Some(data),
            Field::XattrNames => out.xattr_names = nonempty(data),
            Field::XattrLengths => {
                if let FieldValue::Lengths(v) = f.decode(data, endian) {
                    out.xattr_lengths = Some(v);
                }
            }
            Field::XattrValues => out.xattr_values = nonempty(data),
            Field::Iuid | Field::Igid | Field::Imode => {
                if let FieldValue::Uint(v) = f.decode(data, endian) {
                    match f {
                        Field::Iuid => out.uid = Some(v),
                        Field::Igid => out.gid = Some(v),
                        _ => out.mode = Some(v),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn event_name(e: &Entry) -> String {
    let n = e.name_field();
    let n = match n.iter().position(|&b| b == 0) {
        Some(p) => &n[..p],
        None => n,
    };
    String::from_utf8_lossy(n).into_owned()
}

fn digest_text(d: Option<(Option<HashAlgo>, &[u8])>) -> String {
    match d {
        Some((Some(a), b)) => format!("{a}:{}", hex::encode(b)),
        Some((None, b)) => hex::encode(b),
        None => "-".into(),
    }
}

fn entry_ref(e: &Entry, index: u64, templates: &[TemplateDesc]) -> EntryRef {
    let digest = match TemplateDesc::resolve(&e.template_name, templates) {
        Ok(d) => digest_text(fields(e, &d).digest),
        Err(_) => "-".into(),
    };
    EntryRef {
        index,
        template: e.template_name.clone(),
        path: event_name(e),
        digest,
    }
}

/// Checks one entry against the references; `keys` grows by the keys the list loads and
/// the references accept.
fn check_entry(
    e: &Entry,
    index: u64,
    desc: Option<&TemplateDesc>,
    refs: &Refs,
    keys: &mut Keyring,
    stats: &mut Stats,
) -> Option<Failure> {
    let path = event_name(e);
    let Some(desc) = desc else {
        return Some(Failure::Reference {
            entry: EntryRef {
                index,
                template: e.template_name.clone(),
                path,
                digest: "-".into(),
            },
            miss: Miss::UnknownTemplate,
            signature: None,
            accept: None,
        });
    };
    let f = fields(e, desc);
    let entry = || EntryRef {
        index,
        template: e.template_name.clone(),
        path: path.clone(),
        digest: digest_text(f.digest),
    };
    if refs.excluded(&path).is_some() {
        stats.excluded += 1;
        return None;
    }
    if e.is_violation() {
        return Some(Failure::Reference {
            entry: entry(),
            miss: Miss::Violation,
            signature: None,
            accept: Some(format!("exclude {path}")),
        });
    }
    let (algo, bytes) = f.digest.unwrap_or((None, &[]));
    let shown = digest_text(f.digest);

    if let Some(buf) = f.buf {
        stats.buffers += 1;
        // A key loaded onto a keyring (the kernel's `ima-buf` entry named after it).
        if let Ok(cert) = Certificate::from_der(buf) {
            if refs.keyring_ignored(&path) {
                return None;
            }
            let accepted = refs.keyring(&path).unwrap_or_default();
            if accepted.iter().any(|d| d.accepts(algo, bytes)) {
                keys.add(cert);
                stats.keys_loaded += 1;
                return None;
            }
            return Some(Failure::Reference {
                entry: entry(),
                miss: Miss::Keyring {
                    keyring: path.clone(),
                    accepted: accepted.to_vec(),
                },
                signature: None,
                accept: Some(format!("keyring {path} {shown}")),
            });
        }
        let accepted = refs.buf(&path).unwrap_or_default();
        if accepted.iter().any(|d| d.accepts(algo, bytes)) {
            return None;
        }
        if path == crate::log::decision::DENIAL {
            // Its second line is the kernel-format record of the failure.
            let text = String::from_utf8_lossy(buf);
            let record = text.lines().nth(1).unwrap_or("(no record)").to_owned();
            return Some(Failure::Reference {
                entry: entry(),
                miss: Miss::Denied { record },
                signature: None,
                accept: Some(format!("buf {path} {shown}")),
            });
        }
        return Some(Failure::Reference {
            entry: entry(),
            miss: Miss::Buf {
                name: path.clone(),
                accepted: accepted.to_vec(),
            },
            signature: None,
            accept: Some(format!("buf {path} {shown}")),
        });
    }

    // A file: a good signature, else a referenced digest.
    let mut sig_problem = None;
    if let (Some(a), true) = (algo, f.sig.is_some() || f.evmsig.is_some()) {
        match Digest::new(a, bytes) {
            Some(d) => match signature_ok(&f, &d, keys) {
                Ok(()) => {
                    stats.by_signature += 1;
                    return None;
                }
                Err(why) => sig_problem = Some(why),
            },
            None => sig_problem = Some(format!("digest is not a {a} digest")),
        }
    }
    let accepted = refs.file(&path);
    if accepted.is_some_and(|ds| ds.iter().any(|d| d.accepts(algo, bytes))) {
        stats.by_digest += 1;
        return None;
    }
    Some(Failure::Reference {
        entry: entry(),
        miss: match accepted {
            None => Miss::NoPath,
            Some(ds) => Miss::DigestDiffers {
                accepted: ds.to_vec(),
            },
        },
        signature: sig_problem,
        accept: Some(format!("file {shown} {path}")),
    })
}

/// Whether the entry's `sig` (a `security.ima` signature over the measured digest) or
/// `evmsig` (a portable EVM signature whose `security.ima` is that digest) verifies.
fn signature_ok(f: &Fields<'_>, digest: &Digest, keys: &Keyring) -> Result<(), String> {
    let mut why = Vec::new();
    if let Some(sig) = f.sig {
        let kind = XattrType(sig.first().copied().unwrap_or(0));
        if kind == XattrType::DIGSIG || kind == XattrType::VERITY_DIGSIG {
            let verity = f.digest_type == Some(b"verity".as_slice());
            if (kind == XattrType::VERITY_DIGSIG) != verity {
                why.push("sig: a file signature for another digest type".to_owned());
            } else {
                match Signature::from_bytes(sig) {
                    Ok(s) => match s.verify(keys, digest) {
                        Ok(()) => return Ok(()),
                        Err(e) => why.push(format!("sig ({s}): {e}")),
                    },
                    Err(e) => why.push(format!("sig: {e}")),
                }
            }
        }
    }
    let evmsig = f.evmsig.or(f
        .sig
        .filter(|s| s.first() == Some(&XattrType::EVM_PORTABLE_DIGSIG.0)));
    if let Some(sig) = evmsig {
        match evm_signature_ok(f, sig, digest, keys) {
            Ok(()) => return Ok(()),
            Err(e) => why.push(format!("evmsig: {e}")),
        }
    }
    if why.is_empty() {
        why.push("none that applies".into());
    }
    Err(why.join("; "))
}

/// A portable EVM signature (`evm-sig` template: names, lengths and values of the protected
/// xattrs, uid, gid, mode) that covers a `security.ima` holding the measured digest.
fn evm_signature_ok(
    f: &Fields<'_>,
    sig: &[u8],
    digest: &Digest,
    keys: &Keyring,
) -> Result<(), String> {
    let (Some(names), Some(lengths), Some(values)) =
        (f.xattr_names, f.xattr_lengths.as_ref(), f.xattr_values)
    else {
        return Err("the template does not carry the protected xattrs".into());
    };
    let names = names.strip_suffix(&[0]).unwrap_or(names);
    let names: Vec<&[u8]> = names.split(|&b| b == b'|').collect();
    if names.len() != lengths.len() {
        return Err("xattr names and lengths disagree".into());
    }
    let mut inode = Inode {
        meta: InodeMeta {
            uid: f.uid.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            gid: f.gid.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
            mode: f.mode.and_then(|v| u16::try_from(v).ok()).unwrap_or(0),
            ..InodeMeta::default()
        },
        ..Inode::default()
    };
    let mut at = 0usize;
    for (n, &l) in names.iter().zip(lengths) {
        let v = values
            .get(at..at.saturating_add(l as usize))
            .ok_or("xattr values shorter than their lengths")?;
        at += l as usize;
        inode
            .xattrs
            .insert(String::from_utf8_lossy(n).into_owned(), v.to_vec());
    }
    // security.ima must be the measured digest (0x04 algo digest), else the signature says
    // nothing about this content.
    let mut want = vec![XattrType::DIGEST_NG.0, digest.algo().0];
    want.extend_from_slice(digest.as_bytes());
    if inode.xattrs.get(evm::XATTR_IMA).map(Vec::as_slice) != Some(want.as_slice()) {
        return Err("security.ima is not the measured digest".into());
    }
    let s = Signature::from_bytes(sig).map_err(|e| e.to_string())?;
    let signed = evm::signed_digest(
        &EvmConfig::default(),
        &inode,
        EvmKind::Portable,
        s.hash_algo,
    )
    .map_err(|e| e.to_string())?;
    crate::digsig::digsig_verify(keys, sig, &signed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
