//! The embedded software PCR bank: 24 PCRs in a sha1 and a sha256 bank, kept in one file.
//!
//! It exists so that measuring works (and the list is self-consistent) on machines without a
//! TPM. It is **not hardware-rooted**: whoever can write the file can set any value, so it
//! proves nothing to a third party, and it cannot quote. [`crate::TpmKind::Software`] says so.
//!
//! Durability: extends change memory only; [`Tpm::flush`] writes the whole file to a
//! temporary name, fsyncs it and renames it over the old one (then fsyncs the directory), so
//! the file always holds the state after some complete prefix of extends. The engine relies
//! on exactly that (ARCHITECTURE.md, "crash consistency").
//!
//! ```text
//! file = "ima-soft-pcrs v1\n" || for bank in [sha1, sha256]: 24 × digest   (1265 bytes)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ima_core::hash::{Digest, HashAlgo};

use crate::quote::{AkPublic, Quote};
use crate::{NUM_PCRS, Tpm, TpmError, TpmKind, digests_per_bank, extend_value};

const MAGIC: &[u8] = b"ima-soft-pcrs v1\n";
const BANKS: [HashAlgo; 2] = [HashAlgo::SHA1, HashAlgo::SHA256];

/// The file-backed software PCR bank.
#[derive(Debug)]
pub struct SoftPcrs {
    path: PathBuf,
    /// `pcrs[bank][index]`.
    pcrs: Vec<Vec<Digest>>,
    dirty: bool,
}

impl SoftPcrs {
    /// Opens the bank at `path`, creating it (all PCRs zero) if it does not exist.
    pub fn open(path: &Path) -> Result<Self, TpmError> {
        let mut s = Self {
            path: path.to_path_buf(),
            pcrs: BANKS
                .iter()
                .map(|b| {
                    let z = Digest::zero(*b).ok_or(TpmError::NoSuchBank(*b));
                    z.map(|z| vec![z; NUM_PCRS as usize])
                })
                .collect::<Result<_, _>>()?,
            dirty: false,
        };
        match fs::read(path) {
            Ok(bytes) => s.load(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                s.dirty = true;
                s.flush()?;
            }
            Err(e) => return Err(TpmError::io(format!("read {}", path.display()), e)),
        }
        Ok(s)
    }

    /// Parses the bytes of a bank file (`path` only names it in errors). No I/O.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, TpmError> {
        let mut s = Self {
            path: path.to_path_buf(),
            pcrs: BANKS
                .iter()
                .map(|b| {
                    let z = Digest::zero(*b).ok_or(TpmError::NoSuchBank(*b));
                    z.map(|z| vec![z; NUM_PCRS as usize])
                })
                .collect::<Result<_, _>>()?,
            dirty: false,
        };
        s.load(bytes)?;
        Ok(s)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), TpmError> {
        let corrupt = |offset, why| TpmError::SoftCorrupt {
            path: self.path.display().to_string(),
            offset,
            why,
        };
        if !bytes.starts_with(MAGIC) {
            return Err(corrupt(0, "bad magic"));
        }
        let mut off = MAGIC.len();
        for (bi, bank) in BANKS.iter().enumerate() {
            let n = bank.digest_len().unwrap_or(0);
            for i in 0..NUM_PCRS as usize {
                let d = bytes
                    .get(off..off + n)
                    .and_then(|b| Digest::new(*bank, b))
                    .ok_or_else(|| corrupt(off, "truncated"))?;
                self.pcrs[bi][i] = d;
                off += n;
            }
        }
        if off != bytes.len() {
            return Err(corrupt(off, "trailing bytes"));
        }
        Ok(())
    }

    fn bank_index(&self, bank: HashAlgo) -> Result<usize, TpmError> {
        BANKS
            .iter()
            .position(|b| *b == bank)
            .ok_or(TpmError::NoSuchBank(bank))
    }
}

impl Tpm for SoftPcrs {
    fn kind(&self) -> TpmKind {
        TpmKind::Software(self.path.display().to_string())
    }

    fn banks(&self) -> &[HashAlgo] {
        &BANKS
    }

    fn pcr_read(&mut self, bank: HashAlgo, pcrs: &[u32]) -> Result<Vec<Digest>, TpmError> {
        let bi = self.bank_index(bank)?;
        pcrs.iter()
            .map(|&p| {
                self.pcrs[bi]
                    .get(p as usize)
                    .copied()
                    .ok_or(TpmError::BadPcr(p))
            })
            .collect()
    }

    fn extend(&mut self, pcr: u32, digests: &[Digest]) -> Result<(), TpmError> {
        if pcr >= NUM_PCRS {
            return Err(TpmError::BadPcr(pcr));
        }
        let ordered = digests_per_bank(&BANKS, digests)?;
        for (bi, d) in ordered.iter().enumerate() {
            let slot = &mut self.pcrs[bi][pcr as usize];
            *slot = extend_value(slot, d);
        }
        self.dirty = true;
        Ok(())
    }

    fn create_ak(&mut self) -> Result<AkPublic, TpmError> {
        Err(TpmError::Unsupported(
            "the software PCR bank has no attestation key: quotes need a TPM (--tpm TCTI)".into(),
        ))
    }

    fn quote(
        &mut self,
        _nonce: &[u8],
        _selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<Quote, TpmError> {
        Err(TpmError::Unsupported(
            "the software PCR bank cannot quote: it is not hardware-rooted (use --tpm TCTI)".into(),
        ))
    }

    fn flush(&mut self) -> Result<(), TpmError> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes = MAGIC.to_vec();
        for bank in &self.pcrs {
            for d in bank {
                bytes.extend_from_slice(d.as_bytes());
            }
        }
        let tmp = self.path.with_extension("tmp");
        let io = |what: &str, e| TpmError::io(format!("{what} {}", tmp.display()), e);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| TpmError::io(format!("fsync {}", dir.display()), e))?;
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_both_banks_and_persists_only_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pcrs");
        let mut s = SoftPcrs::open(&p).unwrap();
        let d1 = HashAlgo::SHA1.digest(b"a").unwrap();
        let d2 = HashAlgo::SHA256.digest(b"a").unwrap();
        s.extend(10, &[d2, d1]).unwrap();
        let want1 = HashAlgo::SHA1
            .hasher()
            .unwrap()
            .chain(&[0; 20])
            .chain(d1.as_bytes())
            .finalize();
        assert_eq!(s.pcr_read(HashAlgo::SHA1, &[10]).unwrap(), vec![want1]);
        // Not flushed: a fresh open sees zeros.
        let mut again = SoftPcrs::open(&p).unwrap();
        assert_eq!(
            again.pcr_read(HashAlgo::SHA1, &[10]).unwrap()[0],
            Digest::zero(HashAlgo::SHA1).unwrap()
        );
        s.flush().unwrap();
        let mut again = SoftPcrs::open(&p).unwrap();
        assert_eq!(again.pcr_read(HashAlgo::SHA1, &[10]).unwrap(), vec![want1]);
        assert!(!again.kind().is_tpm());
        assert!(again.kind().to_string().contains("NOT hardware-rooted"));
    }

    #[test]
    fn rejects_wrong_banks_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pcrs");
        let mut s = SoftPcrs::open(&p).unwrap();
        let d1 = HashAlgo::SHA1.digest(b"a").unwrap();
        assert!(matches!(
            s.extend(10, &[d1]),
            Err(TpmError::BankMismatch { .. })
        ));
        assert!(matches!(
            s.pcr_read(HashAlgo::SHA1, &[24]),
            Err(TpmError::BadPcr(24))
        ));
        fs::write(&p, b"ima-soft-pcrs v1\nshort").unwrap();
        let e = SoftPcrs::open(&p).unwrap_err().to_string();
        assert!(e.contains("byte 17"), "{e}");
        assert!(s.quote(b"n", &[]).is_err());
    }
}
