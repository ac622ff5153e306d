//! Replaying a measurement list: the PCR values it implies per bank and PCR index, their
//! comparison with PCR values read from a TPM, the `--pcrs` files that carry those values,
//! and boot_aggregate.
//!
//! Mirrors `ima_pcr_extend` in `security/integrity/ima/ima_queue.c` (every bank is
//! extended with `H_bank(template input)`, or 0xff.. for a violation) and
//! `ima_calc_boot_aggregate` in `ima_crypto.c`.
//!
//! The template digests are independent per entry and are computed in parallel (rayon);
//! only the extend chain itself is sequential, one thread per bank.

use std::collections::BTreeMap;
use std::fmt;

use rayon::prelude::*;

use crate::codec::Endian;
use crate::hash::{Digest, HashAlgo, Hasher, UnsupportedAlgo};
use crate::log::Entry;
use crate::log::binary::RawEntry;
use crate::policy::DEFAULT_PCR;
use crate::template::{LEGACY_NAME_PAD, MAX_LEGACY_NAME_LEN, parse_hex};

/// PCR values of one bank, by PCR index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBank {
    algo: HashAlgo,
    values: BTreeMap<u32, Digest>,
}

/// Most PCRs a TPM has (`TPM2_PLATFORM_PCR`); a `--pcrs` file naming more is an error.
pub const MAX_PCRS: u32 = 24;

impl PcrBank {
    pub fn new(algo: HashAlgo) -> Self {
        Self {
            algo,
            values: BTreeMap::new(),
        }
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn get(&self, index: u32) -> Option<&Digest> {
        self.values.get(&index)
    }

    /// Sets a PCR; the digest must be of this bank's algorithm.
    pub fn set(&mut self, index: u32, value: Digest) {
        self.values.insert(index, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Digest)> {
        self.values.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Parses a PCR file: either evmctl's `PCR-NN: <hex>` lines (hex optionally with single
    /// spaces between bytes, as TPM 1.2 sysfs writes it) or one `INDEX HEX` pair per line
    /// (`/sys/class/tpm/tpm0/pcr-<alg>/<n>` collected, as in the kernel captures). Blank
    /// lines and `#` comments are skipped; anything else is an error naming the line.
    pub fn parse(text: &str, algo: HashAlgo) -> Result<Self, PcrFileError> {
        let dlen = algo.digest_len().ok_or(PcrFileError {
            line: 0,
            msg: format!("unknown algorithm {algo}"),
        })?;
        let mut bank = Self::new(algo);
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |msg: String| PcrFileError { line: line_no, msg };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (index, hex): (&str, String) = if let Some(rest) = line.strip_prefix("PCR-") {
                let (idx, hex) = rest
                    .split_once(':')
                    .ok_or_else(|| err("expected \"PCR-NN: <hex>\"".into()))?;
                (idx, hex.split(' ').collect())
            } else {
                let (idx, hex) = line
                    .split_once(|c: char| c.is_ascii_whitespace())
                    .ok_or_else(|| err("expected \"INDEX HEX\" or \"PCR-NN: <hex>\"".into()))?;
                (idx, hex.trim().to_owned())
            };
            let index: u32 = index
                .parse()
                .ok()
                .filter(|&n| n < MAX_PCRS)
                .ok_or_else(|| {
                    err(format!(
                        "PCR index {index:?} is out of range: a TPM has PCRs 0 to {}",
                        MAX_PCRS - 1
                    ))
                })?;
            let bytes = parse_hex(hex.as_bytes()).map_err(|m| err(format!("PCR {index}: {m}")))?;
            if bytes.len() != dlen {
                return Err(err(format!(
                    "PCR {index}: {} bytes, a {algo} PCR has {dlen}",
                    bytes.len()
                )));
            }
            if bank.values.contains_key(&index) {
                return Err(err(format!("PCR {index} given twice")));
            }
            let d = Digest::new(algo, &bytes).ok_or_else(|| err("bad digest".into()))?;
            bank.values.insert(index, d);
        }
        Ok(bank)
    }

    /// evmctl's `--pcrs` format: `PCR-NN: <hex>` for PCR 0 up to the highest index set
    /// (missing ones as zero, since evmctl expects every index in order).
    pub fn to_evmctl(&self) -> String {
        let mut s = String::new();
        let Some(&last) = self.values.keys().next_back() else {
            return s;
        };
        let zero = Digest::zero(self.algo);
        for i in 0..=last {
            let hex = match (self.values.get(&i), zero) {
                (Some(d), _) => d.to_hex(),
                (None, Some(z)) => z.to_hex(),
                (None, None) => String::new(),
            };
            s.push_str(&format!("PCR-{i:02}: {hex}\n"));
        }
        s
    }
}

/// A `--pcrs` file line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
#[non_exhaustive]
pub struct PcrFileError {
    pub line: usize,
    pub msg: String,
}

/// What replay needs from an entry, for both the borrowed binary form and [`Entry`].
pub trait ReplayEntry: Sync {
    fn pcr(&self) -> u32;
    /// The template digest logged in the list (of the list's bank).
    fn logged_digest(&self) -> &[u8];
    /// Passes the template-digest input, in pieces, to `f`.
    fn feed(&self, endian: Endian, f: &mut dyn FnMut(&[u8]));
    /// Feeds the template-digest input to `h`.
    fn hash_input(&self, endian: Endian, h: &mut Hasher) {
        self.feed(endian, &mut |b| h.update(b))
    }
    /// Short description for messages (the event name).
    fn describe(&self) -> String;
    /// The template name as the list writes it.
    fn template(&self) -> &str;
    /// The first field's stored value (`d`, `d-ng`, `d-ngv2`, ... in every built-in
    /// template; the bare 20-byte digest for the legacy `ima` template).
    fn digest_field(&self) -> &[u8];
    /// The second field's stored value (the event name in every built-in template).
    fn name_field(&self) -> &[u8];
    /// For a violation: whether its file digest (first field) is all zero, as the kernel
    /// writes it. A non-zero digest there means the entry was altered.
    fn violation_digest_is_zero(&self) -> bool;
}

/// Whether the digest in a `d`/`d-ng`/`d-ngv2` value is all zero (the bytes after the
/// `algo:` NUL prefix, or all bytes when there is no NUL).
fn first_field_zero(field: &[u8]) -> bool {
    let digest = match field.iter().position(|&b| b == 0) {
        Some(p) if field[..p].ends_with(b":") => &field[p + 1..],
        _ => field,
    };
    digest.iter().all(|&b| b == 0)
}

impl ReplayEntry for Entry {
    fn pcr(&self) -> u32 {
        self.pcr
    }
    fn logged_digest(&self) -> &[u8] {
        &self.template_digest
    }
    fn feed(&self, endian: Endian, f: &mut dyn FnMut(&[u8])) {
        let fields = self.data.fields();
        if self.is_legacy() {
            let d = fields.first().map(Vec::as_slice).unwrap_or_default();
            let n = fields.get(1).map(Vec::as_slice).unwrap_or_default();
            legacy_feed(d, n, f);
        } else {
            for x in fields {
                let len = u32::try_from(x.len()).unwrap_or(u32::MAX);
                f(&endian.u32_bytes(len));
                f(x);
            }
        }
    }
    fn describe(&self) -> String {
        let name = self
            .data
            .fields()
            .get(1)
            .map(Vec::as_slice)
            .unwrap_or_default();
        describe(&self.template_name, name)
    }
    fn template(&self) -> &str {
        &self.template_name
    }
    fn digest_field(&self) -> &[u8] {
        self.data
            .fields()
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    fn name_field(&self) -> &[u8] {
        self.data
            .fields()
            .get(1)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    fn violation_digest_is_zero(&self) -> bool {
        first_field_zero(
            self.data
                .fields()
                .first()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
    }
}

impl ReplayEntry for RawEntry<'_> {
    fn pcr(&self) -> u32 {
        self.pcr
    }
    fn logged_digest(&self) -> &[u8] {
        self.digest
    }
    fn feed(&self, _endian: Endian, f: &mut dyn FnMut(&[u8])) {
        use crate::log::binary::RawBody;
        match self.body {
            RawBody::Fields { bytes, .. } => f(bytes),
            RawBody::Legacy { digest, name } => legacy_feed(digest, name, f),
        }
    }
    fn describe(&self) -> String {
        use crate::log::binary::RawBody;
        let name = match self.body {
            RawBody::Legacy { name, .. } => name,
            // The second field of every built-in template is the event name.
            RawBody::Fields { bytes, .. } => second_field(bytes).unwrap_or_default(),
        };
        describe(self.template_name, name)
    }
    fn template(&self) -> &str {
        self.template_name
    }
    fn digest_field(&self) -> &[u8] {
        use crate::log::binary::RawBody;
        match self.body {
            RawBody::Legacy { digest, .. } => digest,
            RawBody::Fields { bytes, .. } => first_field(bytes).unwrap_or_default(),
        }
    }
    fn name_field(&self) -> &[u8] {
        use crate::log::binary::RawBody;
        match self.body {
            RawBody::Legacy { name, .. } => name,
            RawBody::Fields { bytes, .. } => second_field(bytes).unwrap_or_default(),
        }
    }
    fn violation_digest_is_zero(&self) -> bool {
        use crate::log::binary::RawBody;
        match self.body {
            RawBody::Legacy { digest, .. } => digest.iter().all(|&b| b == 0),
            RawBody::Fields { bytes, .. } => first_field(bytes).is_some_and(first_field_zero),
        }
    }
}

/// The legacy `ima` template-digest input (see `template::legacy_hash_input`).
fn legacy_feed(digest: &[u8], name: &[u8], f: &mut dyn FnMut(&[u8])) {
    f(digest);
    let name = match name.iter().position(|&b| b == 0) {
        Some(p) => &name[..p],
        None => name,
    };
    let mut padded = [0u8; LEGACY_NAME_PAD];
    let n = name.len().min(MAX_LEGACY_NAME_LEN);
    padded[..n].copy_from_slice(&name[..n]);
    f(&padded);
}

/// A reusable hasher for one bank: sha1 and sha256 (the banks every TPM has) run on the
/// RustCrypto cores directly and reset in place; other algorithms go through [`Hasher`].
enum BankHasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Other(HashAlgo),
}

impl BankHasher {
    fn new(algo: HashAlgo) -> Self {
        use digest::Digest as _;
        match algo {
            HashAlgo::SHA1 => Self::Sha1(sha1::Sha1::new()),
            HashAlgo::SHA256 => Self::Sha256(sha2::Sha256::new()),
            other => Self::Other(other),
        }
    }

    /// Hashes what `input` feeds into `out` (exactly the digest size).
    fn digest_into(&mut self, input: impl FnOnce(&mut dyn FnMut(&[u8])), out: &mut [u8]) {
        use digest::Digest as _;
        match self {
            Self::Sha1(h) => {
                input(&mut |b| h.update(b));
                out.copy_from_slice(&h.finalize_reset());
            }
            Self::Sha256(h) => {
                input(&mut |b| h.update(b));
                out.copy_from_slice(&h.finalize_reset());
            }
            Self::Other(a) => {
                // Checked by `replay` before any hashing starts.
                if let Ok(mut h) = a.hasher() {
                    input(&mut |b| h.update(b));
                    out.copy_from_slice(&h.finalize());
                }
            }
        }
    }
}

fn first_field(b: &[u8]) -> Option<&[u8]> {
    let l0 = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    b.get(4..4usize.checked_add(l0)?)
}

fn second_field(b: &[u8]) -> Option<&[u8]> {
    let l0 = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let at = 4usize.checked_add(l0)?;
    let l1 = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
    b.get(at + 4..at.checked_add(4 + l1)?)
}

fn describe(template: &str, name: &[u8]) -> String {
    let name = match name.iter().position(|&b| b == 0) {
        Some(p) => &name[..p],
        None => name,
    };
    format!("{template} {}", String::from_utf8_lossy(name))
}

/// The result of replaying one PCR of one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrReplay {
    pub index: u32,
    /// The value after extending every entry of this PCR.
    pub value: Digest,
    /// The expected value, if one was given for this PCR.
    pub expected: Option<Digest>,
    /// Number of entries on this PCR.
    pub entries: usize,
    /// List index (0-based) of the entry after which the replayed value last equalled the
    /// expected value (the list is consistent up to there).
    pub last_match: Option<usize>,
    /// List index of the first entry from which the PCR can no longer match: the first
    /// entry of this PCR after the last match (or its first entry if it never matched), or
    /// a later entry of this PCR whose logged digest shows it was altered.
    pub first_unmatchable: Option<usize>,
}

impl PcrReplay {
    /// Whether an expected value was given and equals the replayed one.
    pub fn matches(&self) -> bool {
        self.expected.as_ref() == Some(&self.value)
    }
}

/// The replay of one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankReplay {
    pub algo: HashAlgo,
    pub pcrs: Vec<PcrReplay>,
}

impl BankReplay {
    /// The replayed values as a [`PcrBank`].
    pub fn values(&self) -> PcrBank {
        let mut b = PcrBank::new(self.algo);
        for p in &self.pcrs {
            b.set(p.index, p.value);
        }
        b
    }
}

/// The outcome of [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub banks: Vec<BankReplay>,
    /// List indexes of entries whose logged template digest differs from the digest of
    /// their data in the list's bank (violations excepted).
    pub bad_digests: Vec<usize>,
    /// List indexes of violations (zero template digest) whose file digest is not zero.
    pub bad_violations: Vec<usize>,
    pub entries: usize,
    pub violations: usize,
}

impl Replay {
    /// Whether every logged digest is right and every PCR that has an expected value
    /// matches it.
    pub fn ok(&self) -> bool {
        self.bad_digests.is_empty()
            && self.bad_violations.is_empty()
            && self
                .banks
                .iter()
                .flat_map(|b| &b.pcrs)
                .all(|p| p.expected.is_none() || p.matches())
    }
}

/// Entries hashed per rayon task: big enough to amortise scheduling, small enough to
/// balance two to a few dozen threads.
const CHUNK: usize = 4096;

/// Replays `entries` (of a list whose logged digests are in `log_bank`) into every bank of
/// `banks`, comparing each PCR index the list uses, and PCR 10 (the measurement PCR,
/// `CONFIG_IMA_MEASURE_PCR_IDX`) even if no entry uses it, with `expected` (same order as
/// `banks`; missing values are simply not compared).
pub fn replay<E: ReplayEntry>(
    entries: &[E],
    log_bank: HashAlgo,
    banks: &[HashAlgo],
    expected: &[Option<&PcrBank>],
    endian: Endian,
) -> Result<Replay, UnsupportedAlgo> {
    replay_from(entries, log_bank, banks, expected, &[], endian)
}

/// [`replay`] continuing from earlier values: each PCR of bank `banks[k]` starts from
/// `initial[k]`'s value for it (zero where none is given), as when `entries` follow a
/// prefix already replayed (an attestation checkpoint). List indexes in the result count
/// from the first entry given.
pub fn replay_from<E: ReplayEntry>(
    entries: &[E],
    log_bank: HashAlgo,
    banks: &[HashAlgo],
    expected: &[Option<&PcrBank>],
    initial: &[Option<&PcrBank>],
    endian: Endian,
) -> Result<Replay, UnsupportedAlgo> {
    // The log's bank is always hashed, to check the logged digests.
    let mut algos: Vec<HashAlgo> = banks.to_vec();
    if !algos.contains(&log_bank) {
        algos.push(log_bank);
    }
    let mut lens = Vec::with_capacity(algos.len());
    for a in &algos {
        a.hasher()?;
        lens.push(a.digest_len().ok_or(UnsupportedAlgo(*a))?);
    }
    let log_slot = algos.iter().position(|a| *a == log_bank).unwrap_or(0);
    let stride: usize = lens.iter().sum();
    let offsets: Vec<usize> = lens
        .iter()
        .scan(0, |acc, l| {
            let o = *acc;
            *acc += l;
            Some(o)
        })
        .collect();

    // Phase 1, parallel: every entry's extend value in every bank, and the digest check.
    let chunks: Vec<(Vec<u8>, Vec<usize>, Vec<usize>)> = entries
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let mut out = vec![0u8; chunk.len() * stride];
            let mut hashers: Vec<BankHasher> = algos.iter().map(|&a| BankHasher::new(a)).collect();
            let mut bad = Vec::new();
            let mut violations = Vec::new();
            for (i, e) in chunk.iter().enumerate() {
                let slot = &mut out[i * stride..(i + 1) * stride];
                let logged = e.logged_digest();
                if logged.iter().all(|&b| b == 0) {
                    slot.fill(0xff);
                    violations.push(c * CHUNK + i);
                    continue;
                }
                for (k, h) in hashers.iter_mut().enumerate() {
                    let dst = &mut slot[offsets[k]..offsets[k] + lens[k]];
                    h.digest_into(|f| e.feed(endian, f), dst);
                }
                let mine = &slot[offsets[log_slot]..offsets[log_slot] + lens[log_slot]];
                if mine != logged {
                    bad.push(c * CHUNK + i);
                }
            }
            (out, bad, violations)
        })
        .collect();

    let bad_digests: Vec<usize> = chunks.iter().flat_map(|c| c.1.iter().copied()).collect();
    let violation_list: Vec<usize> = chunks.iter().flat_map(|c| c.2.iter().copied()).collect();
    let bad_violations: Vec<usize> = violation_list
        .iter()
        .copied()
        .filter(|&i| !entries[i].violation_digest_is_zero())
        .collect();
    let mut suspects: Vec<usize> = bad_digests.iter().chain(&bad_violations).copied().collect();
    suspects.sort_unstable();

    // Phase 2, one thread per bank: the sequential extend chains.
    let replays: Vec<BankReplay> = banks
        .par_iter()
        .enumerate()
        .map(|(k, &algo)| {
            let slot_of = algos.iter().position(|a| *a == algo).unwrap_or(k);
            let values = Values {
                chunks: &chunks,
                stride,
                off: offsets[slot_of],
                len: lens[slot_of],
            };
            chain(
                entries,
                &values,
                algo,
                expected.get(k).copied().flatten(),
                initial.get(k).copied().flatten(),
                &suspects,
            )
        })
        .collect::<Result<_, _>>()?;

    Ok(Replay {
        banks: replays,
        bad_digests,
        bad_violations,
        entries: entries.len(),
        violations: violation_list.len(),
    })
}

struct PcrState {
    index: u32,
    value: Digest,
    expected: Option<Digest>,
    entries: usize,
    last_match: Option<usize>,
    first_unmatchable: Option<usize>,
    matched_now: bool,
}

/// Where one bank's extend values sit in the phase-1 output.
struct Values<'a> {
    chunks: &'a [(Vec<u8>, Vec<usize>, Vec<usize>)],
    stride: usize,
    off: usize,
    len: usize,
}

fn chain<E: ReplayEntry>(
    entries: &[E],
    v: &Values<'_>,
    algo: HashAlgo,
    expected: Option<&PcrBank>,
    initial: Option<&PcrBank>,
    suspects: &[usize],
) -> Result<BankReplay, UnsupportedAlgo> {
    let mut states: Vec<PcrState> = Vec::new();
    // PCR index → position in `states`, for the common small indexes.
    let mut small = [usize::MAX; 32];
    let zero = Digest::zero(algo);
    for (i, e) in entries.iter().enumerate() {
        let pcr = e.pcr();
        let s = match small.get(pcr as usize).copied() {
            Some(s) if s != usize::MAX => s,
            _ => match states.iter().position(|s| s.index == pcr) {
                Some(s) => s,
                None => {
                    let exp = expected.and_then(|b| b.get(pcr)).copied();
                    let Some(z) = zero else { break };
                    let start = initial
                        .and_then(|b| b.get(pcr))
                        .filter(|d| d.algo() == algo)
                        .copied()
                        .unwrap_or(z);
                    states.push(PcrState {
                        index: pcr,
                        value: start,
                        expected: exp,
                        entries: 0,
                        last_match: None,
                        first_unmatchable: None,
                        matched_now: true,
                    });
                    let s = states.len() - 1;
                    if let Some(slot) = small.get_mut(pcr as usize) {
                        *slot = s;
                    }
                    s
                }
            },
        };
        let st = &mut states[s];
        if st.matched_now {
            st.first_unmatchable = Some(i);
            st.matched_now = false;
        }
        let value = &v.chunks[i / CHUNK].0[(i % CHUNK) * v.stride + v.off..][..v.len];
        // `value` is an `algo` digest (its length is `algo`'s), so only an algorithm this
        // crate cannot compute fails here, and `replay` refused those before hashing.
        let value = Digest::new(algo, value).ok_or(UnsupportedAlgo(algo))?;
        st.value = st.value.extend(&value).map_err(|_| UnsupportedAlgo(algo))?;
        st.entries += 1;
        if st.expected.as_ref() == Some(&st.value) {
            st.last_match = Some(i);
            st.matched_now = true;
        }
    }
    // PCR 10 is checked even when no entry extends it: a list that leaves it at its start
    // value (zero, or the checkpoint's) while the TPM holds another is missing entries (an
    // empty list is no proof of anything).
    if let (Some(z), Some(want)) = (zero, expected.and_then(|b| b.get(DEFAULT_PCR)))
        && !states.iter().any(|s| s.index == DEFAULT_PCR)
    {
        let start = initial
            .and_then(|b| b.get(DEFAULT_PCR))
            .filter(|d| d.algo() == algo)
            .copied()
            .unwrap_or(z);
        states.push(PcrState {
            index: DEFAULT_PCR,
            value: start,
            expected: Some(*want),
            entries: 0,
            last_match: None,
            first_unmatchable: None,
            matched_now: true,
        });
    }
    // A suspect entry (wrong logged digest, altered violation) at or after the point the
    // chain last matched is a sharper answer than "the first entry after the match".
    for st in &mut states {
        if let Some(from) = st.first_unmatchable {
            st.first_unmatchable = suspects
                .iter()
                .find(|&&i| i >= from && entries[i].pcr() == st.index)
                .copied()
                .or(Some(from));
        }
    }
    states.sort_by_key(|s| s.index);
    Ok(BankReplay {
        algo,
        pcrs: states
            .into_iter()
            .map(|s| PcrReplay {
                index: s.index,
                value: s.value,
                expected: s.expected,
                entries: s.entries,
                last_match: s.last_match,
                first_unmatchable: s.first_unmatchable,
            })
            .collect(),
    })
}

/// boot_aggregate over `bank`: `H(PCR0 || ... || PCR7)`, and for any bank other than sha1
/// also `|| PCR8 || PCR9` (`ima_calc_boot_aggregate_tfm`). PCRs missing from `bank` count
/// as zero, as evmctl treats them.
pub fn boot_aggregate(bank: &PcrBank) -> Result<Digest, UnsupportedAlgo> {
    let algo = bank.algo();
    let zero = Digest::zero(algo).ok_or(UnsupportedAlgo(algo))?;
    let last = last_boot_pcr(algo);
    let mut h = algo.hasher()?;
    for i in 0..=last {
        h.update(bank.get(i).unwrap_or(&zero));
    }
    Ok(h.finalize())
}

/// The bank the kernel computes boot_aggregate in (`ima_calc_boot_aggregate`): the bank of
/// `ima_hash` if the TPM has one, else sha256, else sha1; `None` if none of those.
pub fn boot_aggregate_bank(available: &[HashAlgo], ima_hash: HashAlgo) -> Option<HashAlgo> {
    [ima_hash, HashAlgo::SHA256, HashAlgo::SHA1]
        .into_iter()
        .find(|a| available.contains(a))
}

/// The event name of the entry the kernel adds first (`boot_aggregate_name`).
pub const BOOT_AGGREGATE_NAME: &[u8] = b"boot_aggregate";

/// What checking a list's first entry against PCRs 0–9 found ([`check_boot_aggregate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootAggregateCheck {
    /// The logged digest equals boot_aggregate of the given PCRs in its bank; `no_tpm`: both
    /// are "no TPM" (a zero digest, and PCRs 0–9 all zero: the software bank).
    Match { algo: HashAlgo, no_tpm: bool },
    /// The logged digest is not boot_aggregate of the given PCRs: the boot PCRs (firmware,
    /// boot loader) are not those the list was started under.
    Mismatch {
        algo: HashAlgo,
        logged: Vec<u8>,
        computed: Digest,
    },
    /// The first entry is not `boot_aggregate`, or its digest field cannot be read.
    NotBootAggregate { name: String, why: &'static str },
    /// Not every PCR boot_aggregate covers was given in the entry's bank.
    NotChecked { algo: HashAlgo, missing: Vec<u32> },
}

impl BootAggregateCheck {
    /// Whether this is a failure (a mismatch or a list not starting with boot_aggregate).
    /// `NotChecked` is not a failure: the caller decides whether missing PCRs are.
    pub fn failed(&self) -> bool {
        matches!(self, Self::Mismatch { .. } | Self::NotBootAggregate { .. })
    }
}

impl fmt::Display for BootAggregateCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Match {
                algo,
                no_tpm: false,
            } => {
                write!(
                    f,
                    "boot_aggregate ({algo}) matches PCRs 0-{}",
                    last_boot_pcr(*algo)
                )
            }
            Self::Match { algo, no_tpm: true } => write!(
                f,
                "boot_aggregate ({algo}) is zero (list started without a TPM) and PCRs 0-{} are zero",
                last_boot_pcr(*algo)
            ),
            Self::Mismatch {
                algo,
                logged,
                computed,
            } => write!(
                f,
                "boot_aggregate: logged {algo}:{}, PCRs 0-{} give {computed}",
                hex::encode(logged),
                last_boot_pcr(*algo)
            ),
            Self::NotBootAggregate { name, why } => {
                write!(f, "first entry {name:?} is not a boot_aggregate: {why}")
            }
            Self::NotChecked { algo, missing } => write!(
                f,
                "boot_aggregate ({algo}) not checked: {algo} PCRs {} not given",
                missing
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// The last PCR boot_aggregate covers in `algo`'s bank: 7 for sha1, else 9.
pub fn last_boot_pcr(algo: HashAlgo) -> u32 {
    if algo == HashAlgo::SHA1 { 7 } else { 9 }
}

/// Checks a list's first entry, which must be `boot_aggregate`, against the PCRs 0–9 of
/// its digest's bank in `banks` (the `ima` template's 20-byte digest is sha1;
/// `d-ng`/`d-ngv2` name their algorithm). A zero digest (the kernel without a TPM) matches
/// only PCRs that are all zero.
pub fn check_boot_aggregate<E: ReplayEntry>(first: &E, banks: &[PcrBank]) -> BootAggregateCheck {
    let raw_name = first.name_field();
    let name = match raw_name.iter().position(|&b| b == 0) {
        Some(p) => &raw_name[..p],
        None => raw_name,
    };
    let not = |why| BootAggregateCheck::NotBootAggregate {
        name: String::from_utf8_lossy(name).into_owned(),
        why,
    };
    if name != BOOT_AGGREGATE_NAME {
        return not("the list does not start with boot_aggregate");
    }
    let field = first.digest_field();
    let (algo, logged) = match field.iter().position(|&b| b == 0) {
        Some(p) if field[..p].ends_with(b":") => {
            let prefix = &field[..p - 1];
            let name = prefix.rsplit(|&b| b == b':').next().unwrap_or_default();
            let Some(algo) = std::str::from_utf8(name)
                .ok()
                .and_then(|n| n.parse::<HashAlgo>().ok())
            else {
                return not("unknown digest algorithm");
            };
            (algo, &field[p + 1..])
        }
        _ if field.len() == HashAlgo::SHA1.digest_len().unwrap_or(20) => (HashAlgo::SHA1, field),
        _ => return not("unreadable digest field"),
    };
    if algo.digest_len() != Some(logged.len()) {
        return not("digest length does not match its algorithm");
    }
    let last = last_boot_pcr(algo);
    let Some(bank) = banks.iter().find(|b| b.algo() == algo) else {
        return BootAggregateCheck::NotChecked {
            algo,
            missing: (0..=last).collect(),
        };
    };
    let missing: Vec<u32> = (0..=last).filter(|&i| bank.get(i).is_none()).collect();
    if !missing.is_empty() {
        return BootAggregateCheck::NotChecked { algo, missing };
    }
    let Ok(computed) = boot_aggregate(bank) else {
        return BootAggregateCheck::NotChecked {
            algo,
            missing: Vec::new(),
        };
    };
    let zero = |d: &[u8]| d.iter().all(|&b| b == 0);
    if zero(logged) && (0..=last).all(|i| bank.get(i).is_some_and(|d| zero(d))) {
        return BootAggregateCheck::Match { algo, no_tpm: true };
    }
    if computed.as_bytes() == logged {
        BootAggregateCheck::Match {
            algo,
            no_tpm: false,
        }
    } else {
        BootAggregateCheck::Mismatch {
            algo,
            logged: logged.to_vec(),
            computed,
        }
    }
}

impl fmt::Display for PcrBank {
    /// The `INDEX HEX` form, one PCR per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in &self.values {
            writeln!(f, "{i} {}", d.to_hex().to_uppercase())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_files_both_formats() {
        let evm = "PCR-00: 7A 6C 4D 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01\n\
                   garbage line\nPCR-10: 12168d7eb3dac5155ed8c8a349253d275e9236b1\n";
        let b = PcrBank::parse(evm, HashAlgo::SHA1);
        assert!(b.is_err(), "garbage lines are errors, not skipped");
        let evm = evm.replace("garbage line\n", "");
        let b = PcrBank::parse(&evm, HashAlgo::SHA1).unwrap();
        assert_eq!(
            b.get(0).unwrap().to_hex(),
            "7a6c4d0000000000000000000000000000000001"
        );
        assert_eq!(b.len(), 2);
        let again = PcrBank::parse(&b.to_evmctl(), HashAlgo::SHA1).unwrap();
        assert_eq!(again.len(), 11);
        let pairs = PcrBank::parse(&b.to_string(), HashAlgo::SHA1).unwrap();
        assert_eq!(pairs, b);
        let e = PcrBank::parse("0 00\n1 zz\n", HashAlgo::SHA1).unwrap_err();
        assert_eq!(e.line, 1);
        let e = PcrBank::parse("1 zz\n", HashAlgo::SHA1).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.msg.contains("hex"), "{e}");
        let e = PcrBank::parse("\n\n24 00\n", HashAlgo::SHA1).unwrap_err();
        assert_eq!(e.line, 3);
    }

    /// kernel-ima.md §13.8: PCR i = H("pcr<i>"), boot_aggregate per bank.
    #[test]
    fn boot_aggregate_vectors() {
        for (algo, want) in [
            (HashAlgo::SHA1, "c973c5a805969b961104ce33f787a1ed9ddf504e"),
            (
                HashAlgo::SHA256,
                "3fc5d36b72f2bbafc50a2369037326b0f41718d676c9c78ad16d2e86a1f137bf",
            ),
        ] {
            let mut b = PcrBank::new(algo);
            for i in 0..10 {
                b.set(i, algo.digest(format!("pcr{i}").as_bytes()).unwrap());
            }
            assert_eq!(boot_aggregate(&b).unwrap().to_hex(), want);
        }
        let both = [HashAlgo::SHA1, HashAlgo::SHA256];
        assert_eq!(
            boot_aggregate_bank(&both, HashAlgo::SHA1),
            Some(HashAlgo::SHA1)
        );
        assert_eq!(
            boot_aggregate_bank(&both, HashAlgo::SHA512),
            Some(HashAlgo::SHA256)
        );
        assert_eq!(
            boot_aggregate_bank(&[HashAlgo::SM3_256], HashAlgo::SHA1),
            None
        );
    }

    /// The first entry of a kernel capture is boot_aggregate over its PCRs 0-9; a changed
    /// PCR 0, a list not starting with boot_aggregate and missing PCRs are told apart.
    #[test]
    fn boot_aggregate_check() {
        use crate::template::{Event, TemplateDesc};
        let mut b = PcrBank::new(HashAlgo::SHA256);
        for i in 0..10 {
            b.set(
                i,
                HashAlgo::SHA256
                    .digest(format!("pcr{i}").as_bytes())
                    .unwrap(),
            );
        }
        let agg = boot_aggregate(&b).unwrap();
        let desc = TemplateDesc::builtin("ima-ng").unwrap();
        let entry = |name: &[u8], d: Digest| {
            let ev = Event {
                digest: Some(d),
                name,
                ..Event::default()
            };
            let data = desc.build(&ev, Endian::Little).unwrap();
            Entry::new(10, &desc, data, HashAlgo::SHA1, Endian::Little).unwrap()
        };
        let good = entry(BOOT_AGGREGATE_NAME, agg);
        let banks = [b.clone()];
        assert_eq!(
            check_boot_aggregate(&good, &banks),
            BootAggregateCheck::Match {
                algo: HashAlgo::SHA256,
                no_tpm: false
            }
        );
        let mut changed = b.clone();
        changed.set(0, HashAlgo::SHA256.digest(b"other firmware").unwrap());
        let c = check_boot_aggregate(&good, &[changed.clone()]);
        assert!(c.failed(), "{c}");
        assert!(c.to_string().contains(&agg.to_hex()), "{c}");
        let mut partial = b.clone();
        partial.values.remove(&9);
        assert_eq!(
            check_boot_aggregate(&good, &[partial]),
            BootAggregateCheck::NotChecked {
                algo: HashAlgo::SHA256,
                missing: vec![9]
            }
        );
        let other = entry(b"/usr/bin/true", agg);
        assert!(check_boot_aggregate(&other, &banks).failed());
        // No TPM: a zero digest matches all-zero PCRs only.
        let zero = entry(BOOT_AGGREGATE_NAME, Digest::zero(HashAlgo::SHA256).unwrap());
        assert!(check_boot_aggregate(&zero, &banks).failed());
        let mut zeros = PcrBank::new(HashAlgo::SHA256);
        for i in 0..10 {
            zeros.set(i, Digest::zero(HashAlgo::SHA256).unwrap());
        }
        assert_eq!(
            check_boot_aggregate(&zero, &[zeros]),
            BootAggregateCheck::Match {
                algo: HashAlgo::SHA256,
                no_tpm: true
            }
        );
    }

    #[test]
    fn pcr_10_is_compared_even_when_no_entry_extends_it() {
        let entries: Vec<Entry> = Vec::new();
        let mut exp = PcrBank::new(HashAlgo::SHA1);
        exp.set(10, HashAlgo::SHA1.digest(b"x").unwrap());
        let r = replay(
            &entries,
            HashAlgo::SHA1,
            &[HashAlgo::SHA1],
            &[Some(&exp)],
            Endian::Little,
        )
        .unwrap();
        let p = &r.banks[0].pcrs[0];
        assert_eq!((p.index, p.entries), (10, 0));
        assert!(!p.matches() && !r.ok());
        // A zero PCR 10 and an empty list agree; without an expected value nothing is added.
        exp.set(10, Digest::zero(HashAlgo::SHA1).unwrap());
        let r = replay(
            &entries,
            HashAlgo::SHA1,
            &[HashAlgo::SHA1],
            &[Some(&exp)],
            Endian::Little,
        )
        .unwrap();
        assert!(r.ok() && r.banks[0].pcrs[0].matches());
        let r = replay(
            &entries,
            HashAlgo::SHA1,
            &[HashAlgo::SHA1],
            &[None],
            Endian::Little,
        );
        assert!(r.unwrap().banks[0].pcrs.is_empty());
    }
}
