//! Measurement lists: the entry type shared by the binary and ascii encodings, replay of
//! the PCR extends, and boot_aggregate.
//!
//! Mirrors `security/integrity/ima/ima_fs.c` (list rendering) and `ima_queue.c` (adding
//! entries, extending PCRs).
//!
//! * [`binary`] reads and writes `binary_runtime_measurements[_<algo>]` (native byte order; big-endian lists
//!   from a big-endian kernel without `ima_canonical_fmt` are read with [`Endian::Big`]).
//! * [`ascii`] renders and parses `ascii_runtime_measurements[_<algo>]`.
//! * [`replay`] computes PCR values per bank and index, comparison with quoted or read PCRs,
//!   `--pcrs` files, boot_aggregate.
//!
//! The two encodings are exact inverses of each other: decoding one and encoding the other
//! reproduces the kernel's file byte for byte.

use crate::codec::Endian;
use crate::hash::{Digest, HashAlgo, Hasher, UnsupportedAlgo};
use crate::template::{TemplateData, TemplateDesc, is_legacy_name};

pub mod ascii;
pub mod binary;
pub mod boot_entry;
pub mod decision;
pub mod replay;

/// Which list a file is: the PCR bank of its template-digest column and its byte order.
/// The plain `*_runtime_measurements` files are the sha1 lists; `*_sha256` etc. are the
/// per-bank lists of newer kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFormat {
    pub bank: HashAlgo,
    pub endian: Endian,
}

impl Default for ListFormat {
    fn default() -> Self {
        Self {
            bank: HashAlgo::SHA1,
            endian: Endian::Little,
        }
    }
}

impl ListFormat {
    /// The list of `bank` in little endian (x86, or `ima_canonical_fmt`).
    pub fn new(bank: HashAlgo) -> Self {
        Self {
            bank,
            endian: Endian::Little,
        }
    }

    /// The bank a list file's name implies: `..._sha256` → sha256, no suffix → sha1.
    pub fn bank_from_file_name(name: &str) -> Option<HashAlgo> {
        match name.rsplit_once("_measurements_") {
            Some((_, suffix)) => suffix.parse().ok(),
            None => Some(HashAlgo::SHA1),
        }
    }
}

/// One measurement-list entry (`struct ima_template_entry` as a list shows it): the PCR,
/// the template digest of the list's bank, the template name and the template data.
///
/// A violation is an entry whose template digest is all zero; the kernel extended
/// 0xff.. instead ([`Entry::extend_value`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub pcr: u32,
    pub template_digest: Digest,
    /// The template name as written in the list (a format string for custom templates).
    pub template_name: String,
    pub data: TemplateData,
}

impl Entry {
    /// An entry as the kernel adds it: the template digest of `data` in `bank`.
    pub fn new(
        pcr: u32,
        desc: &TemplateDesc,
        data: TemplateData,
        bank: HashAlgo,
        endian: Endian,
    ) -> Result<Self, UnsupportedAlgo> {
        let template_digest = data.digest(desc.is_legacy(), bank, endian)?;
        Ok(Self {
            pcr,
            template_digest,
            template_name: desc.name().to_owned(),
            data,
        })
    }

    /// A violation entry (`ima_add_violation`): the template digest is all zero.
    pub fn violation(
        pcr: u32,
        desc: &TemplateDesc,
        data: TemplateData,
        bank: HashAlgo,
    ) -> Result<Self, UnsupportedAlgo> {
        Ok(Self {
            pcr,
            template_digest: Digest::zero(bank).ok_or(UnsupportedAlgo(bank))?,
            template_name: desc.name().to_owned(),
            data,
        })
    }

    /// Whether this is the legacy `ima` template (no data length, padded name hash).
    pub fn is_legacy(&self) -> bool {
        is_legacy_name(&self.template_name)
    }

    /// Whether the logged template digest is all zero (a ToMToU or open-writers violation).
    pub fn is_violation(&self) -> bool {
        self.template_digest.iter().all(|&b| b == 0)
    }

    /// The template digest in bank `algo`, recomputed from the data (zero for a
    /// violation), as the kernel stores it in that bank's slot.
    pub fn template_digest_in(
        &self,
        algo: HashAlgo,
        endian: Endian,
    ) -> Result<Digest, UnsupportedAlgo> {
        if self.is_violation() {
            return Digest::zero(algo).ok_or(UnsupportedAlgo(algo));
        }
        self.data.digest(self.is_legacy(), algo, endian)
    }

    /// What the kernel extended into bank `algo`: the template digest, or 0xff.. for a
    /// violation.
    pub fn extend_value(&self, algo: HashAlgo, endian: Endian) -> Result<Digest, UnsupportedAlgo> {
        if self.is_violation() {
            return Digest::ones(algo).ok_or(UnsupportedAlgo(algo));
        }
        self.data.digest(self.is_legacy(), algo, endian)
    }

    /// The same entry as the list of bank `algo` shows it (template digest recomputed).
    pub fn in_bank(&self, algo: HashAlgo, endian: Endian) -> Result<Self, UnsupportedAlgo> {
        Ok(Self {
            template_digest: self.template_digest_in(algo, endian)?,
            ..self.clone()
        })
    }

    /// Feeds the template-digest input to `h`.
    pub fn hash_into(&self, endian: Endian, h: &mut Hasher) {
        self.data.hash_into(self.is_legacy(), endian, h);
    }
}
