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
//! The file is opened relative to its directory without following a symlink, and replaced
//! through a fresh `O_EXCL` temporary name ([`ima_sys::statedir`]), so a link planted as the
//! bank or as any temporary name is never written through.
//!
//! A bank has an instance id, 16 random bytes drawn when its file is created: it is the
//! software bank's equivalent of a TPM's identity plus reset count (a deleted and recreated
//! bank starts from zero, like a reset TPM, and has another id). Files of format v1 have none.
//!
//! ```text
//! file = "ima-soft-pcrs v2\n" || instance[16] || for bank in [sha1, sha256]: 24 × digest
//!        (1281 bytes; v1: "ima-soft-pcrs v1\n" without the instance, 1265 bytes)
//! ```

use std::path::{Path, PathBuf};

use ima_core::codec::{DecodeError, Reader};
use ima_core::hash::{Digest, HashAlgo};
use ima_sys::statedir::Dir;

use crate::quote::{AkPublic, Quote};
use crate::{NUM_PCRS, Tpm, TpmError, TpmKind, digests_per_bank};

const MAGIC: &[u8] = b"ima-soft-pcrs v2\n";
const MAGIC_V1: &[u8] = b"ima-soft-pcrs v1\n";
const INSTANCE: usize = 16;
/// The size of a v2 file: nothing larger is read.
const FILE_LEN: u64 = (MAGIC.len() + INSTANCE + NUM_PCRS as usize * (20 + 32)) as u64;
const BANKS: [HashAlgo; 2] = [HashAlgo::SHA1, HashAlgo::SHA256];

/// The file-backed software PCR bank.
#[derive(Debug)]
pub struct SoftPcrs {
    path: PathBuf,
    /// `pcrs[bank][index]`.
    pcrs: Vec<Vec<Digest>>,
    /// `None` for a v1 file (rewritten as v2 with a new id on the next flush).
    instance: Option<[u8; INSTANCE]>,
    dirty: bool,
    /// Opened by [`SoftPcrs::open_read_only`]: extends are refused and nothing is written.
    read_only: bool,
}

impl SoftPcrs {
    /// Opens the bank at `path`, creating it (all PCRs zero, a new instance id) if it does not
    /// exist. A symlink at `path` is refused, not followed.
    pub fn open(path: &Path) -> Result<Self, TpmError> {
        let mut s = Self::zeroed(path)?;
        let (dir, name) = s.dir_and_name()?;
        let bytes = dir
            .read_bounded(&name, FILE_LEN)
            .map_err(|e| TpmError::io(format!("read {}", path.display()), e))?;
        match bytes {
            Some(bytes) => s.load(&bytes)?,
            None => {
                s.dirty = true;
                s.flush()?;
            }
        }
        Ok(s)
    }

    /// Opens an existing bank to read it: a missing file is an error, extends are refused
    /// and nothing is ever written, not even a v1 file's upgrade (what `log verify`,
    /// `tpm pcrread` and `tpm quote` use).
    pub fn open_read_only(path: &Path) -> Result<Self, TpmError> {
        let mut s = Self::zeroed(path)?;
        s.read_only = true;
        let (dir, name) = s.dir_and_name()?;
        let bytes = dir
            .read_bounded(&name, FILE_LEN)
            .map_err(|e| TpmError::io(format!("read {}", path.display()), e))?
            .ok_or_else(|| TpmError::NoSoftBank {
                path: path.display().to_string(),
            })?;
        s.load(&bytes)?;
        Ok(s)
    }

    fn zeroed(path: &Path) -> Result<Self, TpmError> {
        Ok(Self {
            path: path.to_path_buf(),
            pcrs: BANKS
                .iter()
                .map(|b| {
                    let z = Digest::zero(*b).ok_or(TpmError::NoSuchBank(*b));
                    z.map(|z| vec![z; NUM_PCRS as usize])
                })
                .collect::<Result<_, _>>()?,
            instance: None,
            dirty: false,
            read_only: false,
        })
    }

    /// The directory holding the file (opened; its last component not followed) and the
    /// file's name in it.
    fn dir_and_name(&self) -> Result<(Dir, String), TpmError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| TpmError::NotAFile {
                path: self.path.display().to_string(),
            })?;
        let parent = self.path.parent().unwrap_or(Path::new(""));
        let dir = Dir::open_existing(parent)
            .map_err(|e| TpmError::io(format!("open directory {}", parent.display()), e))?;
        Ok((dir, name))
    }

    /// Parses the bytes of a bank file (`path` only names it in errors). No I/O.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, TpmError> {
        let mut s = Self::zeroed(path)?;
        s.load(bytes)?;
        Ok(s)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), TpmError> {
        self.decode(&mut Reader::new(bytes))
            .map_err(|source| TpmError::SoftCorrupt {
                path: self.path.display().to_string(),
                source,
            })
    }

    fn decode(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let rest = r.rest();
        if rest.starts_with(MAGIC) {
            r.take(MAGIC.len(), "magic")?;
            self.instance = Some(r.array::<INSTANCE>("instance id")?);
        } else if rest.starts_with(MAGIC_V1) {
            r.take(MAGIC_V1.len(), "magic")?;
            self.instance = None;
        } else {
            return Err(r.invalid("magic", "not \"ima-soft-pcrs v2\" (or v1)"));
        }
        for (bi, bank) in BANKS.iter().enumerate() {
            let n = bank.digest_len().unwrap_or(0);
            for i in 0..NUM_PCRS as usize {
                let at = r.offset();
                let d = r.take(n, "PCR value")?;
                self.pcrs[bi][i] = Digest::new(*bank, d).ok_or_else(|| {
                    DecodeError::invalid_at("PCR value", at, format!("no {bank} digest"))
                })?;
            }
        }
        r.expect_end("software PCR file")
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
        if self.read_only {
            return Err(TpmError::ReadOnly {
                path: self.path.display().to_string(),
            });
        }
        if pcr >= NUM_PCRS {
            return Err(TpmError::BadPcr(pcr));
        }
        let ordered = digests_per_bank(&BANKS, digests)?;
        for (bi, d) in ordered.iter().enumerate() {
            let slot = &mut self.pcrs[bi][pcr as usize];
            *slot = slot.extend(d)?;
        }
        self.dirty = true;
        Ok(())
    }

    fn create_ak(&mut self) -> Result<AkPublic, TpmError> {
        Err(TpmError::NotHardwareRooted {
            op: "create an attestation key",
        })
    }

    fn quote(
        &mut self,
        _nonce: &[u8],
        _selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<Quote, TpmError> {
        Err(TpmError::NotHardwareRooted { op: "quote" })
    }

    /// `None` for a v1 file not yet rewritten.
    fn instance(&self) -> Option<[u8; 16]> {
        self.instance
    }

    fn clock_info(&mut self) -> Result<crate::ClockInfo, TpmError> {
        Ok(crate::ClockInfo {
            safe: true,
            ..crate::ClockInfo::default()
        })
    }

    fn flush(&mut self) -> Result<(), TpmError> {
        if !self.dirty || self.read_only {
            return Ok(());
        }
        let instance = match self.instance {
            Some(i) => i,
            None => ima_sys::statedir::random_bytes()
                .map_err(|e| TpmError::io("draw a software bank instance id", e))?,
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&instance);
        for bank in &self.pcrs {
            for d in bank {
                bytes.extend_from_slice(d.as_bytes());
            }
        }
        let (dir, name) = self.dir_and_name()?;
        dir.replace(&name, &bytes, 0o600, true)
            .and_then(|()| dir.sync())
            .map_err(|e| TpmError::io(format!("write {}", self.path.display()), e))?;
        self.instance = Some(instance);
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
        std::fs::write(&p, b"ima-soft-pcrs v1\nshort").unwrap();
        let e = SoftPcrs::open(&p).unwrap_err().to_string();
        assert!(e.contains("PCR value at byte offset 17: truncated"), "{e}");
        std::fs::write(&p, b"ima-soft-pcrs v2\nshort").unwrap();
        let e = SoftPcrs::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("instance id at byte offset 17: truncated"),
            "{e}"
        );
        std::fs::write(&p, b"ima-soft-pcrs v3\n").unwrap();
        let e = SoftPcrs::open(&p).unwrap_err().to_string();
        assert!(e.contains("magic at byte offset 0"), "{e}");
        assert!(s.quote(b"n", &[]).is_err());
    }

    #[test]
    fn never_writes_through_a_planted_link_and_knows_its_instance() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("pcrs");
        // The old temporary name, planted: ignored.
        std::os::unix::fs::symlink(&victim, dir.path().join("pcrs.tmp")).unwrap();
        let mut s = SoftPcrs::open(&p).unwrap();
        let id = s.instance().unwrap();
        let d = [HashAlgo::SHA1, HashAlgo::SHA256].map(|b| b.digest(b"x").unwrap());
        s.extend(10, &d).unwrap();
        s.flush().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(SoftPcrs::open(&p).unwrap().instance(), Some(id));
        // Recreated: another instance.
        std::fs::remove_file(&p).unwrap();
        assert_ne!(SoftPcrs::open(&p).unwrap().instance(), Some(id));
        // The bank itself a link (dangling or not): refused, nothing created.
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = SoftPcrs::open(&p).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        let q = dir.path().join("q");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &q).unwrap();
        assert!(SoftPcrs::open(&q).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn read_only_never_creates_or_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pcrs");
        let e = SoftPcrs::open_read_only(&p).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        assert!(!p.exists());
        SoftPcrs::open(&p).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut r = SoftPcrs::open_read_only(&p).unwrap();
        let d1 = HashAlgo::SHA1.digest(b"a").unwrap();
        let d2 = HashAlgo::SHA256.digest(b"a").unwrap();
        assert!(r.extend(10, &[d1, d2]).is_err());
        r.flush().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), before);
        // Not a bank file: refused, whatever it is (and /dev/zero is not read forever).
        assert!(SoftPcrs::open_read_only(Path::new("/dev/zero")).is_err());
    }
}
