//! Attestation checkpoints: how far a list has been verified, so the next round reads only
//! new entries.
//!
//! A checkpoint holds the number of entries verified and the byte offset where the next
//! entry starts, the list's encoding, the PCR values the verified prefix replays to (every
//! bank quoted, every PCR the list uses), and the boot it belongs to: the TPM's reset and
//! restart counts (and clock) from the quote's `TPMS_CLOCK_INFO`. Text, one item a line:
//!
//! ```text
//! ima-attest-checkpoint 1
//! entries <n>
//! offset <bytes>
//! list <binary|ascii> <bank> <le|be>
//! resets <resetCount>
//! restarts <restartCount>
//! clock <clock>
//! pcr <bank> <index> <hex>        (one per bank and PCR)
//! ```

use std::fmt;

use crate::codec::Endian;
use crate::hash::{Digest, HashAlgo};
use crate::log::ListFormat;
use crate::log::replay::PcrBank;
use crate::template::parse_hex;

const MAGIC: &str = "ima-attest-checkpoint 1";

/// Where a verified list ends, and in which boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Entries verified (the index of the next entry).
    pub entries: u64,
    /// Byte offset of the next entry in the list file.
    pub offset: u64,
    /// Whether the list is binary (else ascii).
    pub binary: bool,
    pub format: ListFormat,
    /// `TPMS_CLOCK_INFO.resetCount` of the quote that verified it.
    pub reset_count: u32,
    /// `TPMS_CLOCK_INFO.restartCount`.
    pub restart_count: u32,
    /// `TPMS_CLOCK_INFO.clock` (milliseconds).
    pub clock: u64,
    /// The values the verified prefix replays to, per bank.
    pub pcrs: Vec<PcrBank>,
}

/// A checkpoint file line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
#[non_exhaustive]
pub struct CheckpointError {
    pub line: usize,
    pub msg: String,
}

impl Checkpoint {
    /// Parses the text form. All or nothing; the error names the line.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l == MAGIC => {}
            _ => {
                return Err(CheckpointError {
                    line: 1,
                    msg: format!("expected {MAGIC:?}"),
                });
            }
        }
        let mut cp = Self {
            entries: 0,
            offset: 0,
            binary: true,
            format: ListFormat::default(),
            reset_count: 0,
            restart_count: 0,
            clock: 0,
            pcrs: Vec::new(),
        };
        let mut seen = Vec::new();
        for (i, line) in lines {
            let err = |msg: String| CheckpointError { line: i + 1, msg };
            let words: Vec<&str> = line.split(' ').collect();
            let num = |w: Option<&&str>| -> Result<u64, CheckpointError> {
                w.and_then(|s| s.parse().ok())
                    .ok_or_else(|| err(format!("expected a number: {line:?}")))
            };
            let key = words.first().copied().unwrap_or_default();
            if key != "pcr" {
                if seen.contains(&key) {
                    return Err(err(format!("{key} given twice")));
                }
                seen.push(key);
            }
            let small = |v: u64| u32::try_from(v).map_err(|_| err(format!("{v} too large")));
            match (key, words.len()) {
                ("entries", 2) => cp.entries = num(words.get(1))?,
                ("offset", 2) => cp.offset = num(words.get(1))?,
                ("resets", 2) => cp.reset_count = small(num(words.get(1))?)?,
                ("restarts", 2) => cp.restart_count = small(num(words.get(1))?)?,
                ("clock", 2) => cp.clock = num(words.get(1))?,
                ("list", 4) => {
                    cp.binary = match words[1] {
                        "binary" => true,
                        "ascii" => false,
                        w => return Err(err(format!("unknown list kind {w:?}"))),
                    };
                    cp.format.bank = words[2].parse().map_err(|e| err(format!("{e}")))?;
                    cp.format.endian = match words[3] {
                        "le" => Endian::Little,
                        "be" => Endian::Big,
                        w => return Err(err(format!("unknown byte order {w:?}"))),
                    };
                }
                ("pcr", 4) => {
                    let algo: HashAlgo = words[1].parse().map_err(|e| err(format!("{e}")))?;
                    let index: u32 = words[2]
                        .parse()
                        .ok()
                        .filter(|&i| i < crate::log::replay::MAX_PCRS)
                        .ok_or_else(|| err(format!("bad PCR index {:?}", words[2])))?;
                    let bytes = parse_hex(words[3].as_bytes()).map_err(err)?;
                    let d = Digest::new(algo, &bytes)
                        .filter(|_| algo.digest_len() == Some(bytes.len()))
                        .ok_or_else(|| err(format!("not a {algo} digest")))?;
                    let bank = match cp.pcrs.iter().position(|b| b.algo() == algo) {
                        Some(b) => &mut cp.pcrs[b],
                        None => {
                            cp.pcrs.push(PcrBank::new(algo));
                            let last = cp.pcrs.len() - 1;
                            &mut cp.pcrs[last]
                        }
                    };
                    if bank.get(index).is_some() {
                        return Err(err(format!("{algo} PCR {index} given twice")));
                    }
                    bank.set(index, d);
                }
                _ => return Err(err(format!("unexpected line {line:?}"))),
            }
        }
        for k in ["entries", "offset", "list", "resets", "restarts", "clock"] {
            if !seen.contains(&k) {
                return Err(CheckpointError {
                    line: 0,
                    msg: format!("no {k} line"),
                });
            }
        }
        Ok(cp)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC}")?;
        writeln!(f, "entries {}", self.entries)?;
        writeln!(f, "offset {}", self.offset)?;
        writeln!(
            f,
            "list {} {} {}",
            if self.binary { "binary" } else { "ascii" },
            self.format.bank,
            match self.format.endian {
                Endian::Little => "le",
                Endian::Big => "be",
            }
        )?;
        writeln!(f, "resets {}", self.reset_count)?;
        writeln!(f, "restarts {}", self.restart_count)?;
        writeln!(f, "clock {}", self.clock)?;
        for b in &self.pcrs {
            for (i, d) in b.iter() {
                writeln!(f, "pcr {} {i} {}", b.algo(), d.to_hex())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut b = PcrBank::new(HashAlgo::SHA256);
        b.set(10, HashAlgo::SHA256.digest(b"x").unwrap());
        let cp = Checkpoint {
            entries: 12,
            offset: 3456,
            binary: true,
            format: ListFormat::new(HashAlgo::SHA1),
            reset_count: 3,
            restart_count: 1,
            clock: 99,
            pcrs: vec![b],
        };
        let text = cp.to_string();
        assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
        let e = Checkpoint::parse(&text.replace("resets 3", "resets x")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e = Checkpoint::parse(&text.replace("clock 99\n", "")).unwrap_err();
        assert!(e.msg.contains("clock"), "{e}");
        let e = Checkpoint::parse(&format!("{text}entries 3\n")).unwrap_err();
        assert!(e.msg.contains("twice"), "{e}");
        assert!(Checkpoint::parse("").is_err());
    }
}
