//! Which boot and which TPM a list belongs to, and archiving a list that can no longer be
//! anchored.
//!
//! A TPM's PCRs reset at every boot, so a list kept in a persistent directory (the non-root
//! XDG default, or any `--state`) stops replaying after a reboot. The engine records, with the
//! list, the kernel's boot id (`/proc/sys/kernel/random/boot_id`) and the TPM's identity (the
//! SHA-256 of its attestation key's public key, which is fixed by the endorsement seed; the
//! software bank is named by its file). On open, [`crate::Engine`] compares them with the
//! present ones (the decision is in ARCHITECTURE.md, "Reboots").
//!
//! ```text
//! .engine/boot = "boot_id <uuid>\n" "tpm <kind>\n" "tpm_id <ak-sha256:hex | software>\n"
//! archive/<seconds since the epoch>-<old boot id>[-n]/  the old list files, moved, and
//!     "boot" (the old record) + "reason"
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{EngineError, io_err};

/// Where the kernel publishes the current boot's id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
const RECORD: &str = "boot";
const ARCHIVING: &str = "archiving";

/// The boot and TPM a list was started in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootRecord {
    pub boot_id: String,
    /// The TPM as [`ima_tpm::TpmKind`] displays it (for people).
    pub tpm: String,
    /// `ak-sha256:<hex>` for a TPM, `software` for the software bank.
    pub tpm_id: String,
}

impl BootRecord {
    /// The record in `internal` (`.engine/`), if there is one.
    pub fn load(internal: &Path) -> Result<Option<Self>, EngineError> {
        let p = internal.join(RECORD);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        Self::parse(&text, &p).map(Some)
    }

    /// Parses a record's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, EngineError> {
        let mut r = Self::default();
        for (i, line) in text.lines().enumerate() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "boot_id" => r.boot_id = v.to_owned(),
                "tpm" => r.tpm = v.to_owned(),
                "tpm_id" => r.tpm_id = v.to_owned(),
                _ => {
                    return Err(EngineError::Record {
                        path: path.display().to_string(),
                        line: i + 1,
                        why: format!("unknown key {k:?}"),
                    });
                }
            }
        }
        Ok(r)
    }

    /// Writes the record (durably: it decides what happens to the list after a reboot).
    pub fn save(&self, internal: &Path) -> Result<(), EngineError> {
        let p = internal.join(RECORD);
        let tmp = p.with_extension("tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(self.text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))?;
        crate::sync_dir(internal)
    }

    fn text(&self) -> String {
        format!(
            "boot_id {}\ntpm {}\ntpm_id {}\n",
            self.boot_id, self.tpm, self.tpm_id
        )
    }
}

/// The current boot id, read from `path` (normally [`BOOT_ID_FILE`]).
pub fn read_boot_id(path: &Path) -> Result<String, EngineError> {
    let s = fs::read_to_string(path).map_err(io_err("read boot id", path))?;
    let id = s.trim();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(EngineError::Record {
            path: path.display().to_string(),
            line: 1,
            why: format!("not a boot id: {id:?}"),
        });
    }
    Ok(id.to_owned())
}

/// The identity of `tpm`: `ak-sha256:` + SHA-256 of its AK's SubjectPublicKeyInfo (the AK is
/// a deterministic primary key under the endorsement hierarchy, so the same TPM gives the
/// same value and another TPM, or a TPM with a new endorsement seed, another), or
/// `software` for the software bank.
pub fn tpm_identity(tpm: &mut dyn ima_tpm::Tpm) -> Result<String, EngineError> {
    if !tpm.kind().is_tpm() {
        return Ok("software".into());
    }
    let ak = tpm.create_ak()?;
    let d = ima_core::hash::HashAlgo::SHA256
        .digest(ak.der())
        .map_err(|e| EngineError::Unsupported(e.to_string()))?;
    Ok(format!("ak-sha256:{}", d.to_hex()))
}

/// The list's files in the runtime directory (those that exist are archived).
fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("binary_runtime_measurements")
                || n.starts_with("ascii_runtime_measurements")
                || n == "runtime_measurements_count"
                || n == "violations"
            {
                v.push(e.path());
            }
        }
    }
    v
}

/// Moves the list in `dir` (and, if `soft_bank` is given, the software PCR bank file) into
/// a new directory under `dir/archive/`, with the old boot record and `reason`. Nothing is
/// deleted but the cache and the derived-files marker (both recomputable). Crash-safe: the
/// target is named in `.engine/archiving` first, and [`finish_archiving`] completes an
/// interrupted move on the next open. Returns the archive directory.
pub fn archive(
    dir: &Path,
    old: Option<&BootRecord>,
    reason: &str,
    soft_bank: Option<&Path>,
) -> Result<PathBuf, EngineError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let boot = old.map_or("unknown-boot", |r| r.boot_id.as_str());
    let base = dir.join("archive");
    let mut target = base.join(format!("{secs}-{boot}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = base.join(format!("{secs}-{boot}-{n}"));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::DIR_MODE)
        .create(&target)
        .map_err(io_err("create directory", &target))?;
    let mut why = format!("{reason}\n");
    if let Some(r) = old {
        why.push_str(&r.text());
    }
    fs::write(target.join("reason"), why).map_err(io_err("write", &target))?;
    let internal = dir.join(".engine");
    let mut plan = format!("{}\n", target.display());
    if let Some(s) = soft_bank {
        plan.push_str(&format!("{}\n", s.display()));
    }
    let mark = internal.join(ARCHIVING);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&mark)
        .map_err(io_err("create", &mark))?;
    f.write_all(plan.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err("write", &mark))?;
    finish_archiving(dir)?;
    Ok(target)
}

/// Completes an archive move that a crash interrupted; `false` if none was pending.
pub fn finish_archiving(dir: &Path) -> Result<bool, EngineError> {
    let internal = dir.join(".engine");
    let mark = internal.join(ARCHIVING);
    let plan = match fs::read_to_string(&mark) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("read", &mark)(e)),
    };
    let mut lines = plan.lines();
    let Some(target) = lines.next().map(PathBuf::from) else {
        return Err(EngineError::Record {
            path: mark.display().to_string(),
            line: 1,
            why: "empty archive plan".into(),
        });
    };
    // (Again, in case it went missing: a rename into a missing directory would look like a
    // missing source and leave the list behind.)
    fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::DIR_MODE)
        .create(&target)
        .map_err(io_err("create directory", &target))?;
    let mv = |from: &Path, name: &std::ffi::OsStr| -> Result<(), EngineError> {
        match fs::rename(from, target.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("archive", from)(e)),
        }
    };
    for p in list_files(dir) {
        if let Some(n) = p.file_name() {
            mv(&p, n)?;
        }
    }
    mv(&internal.join(RECORD), std::ffi::OsStr::new("boot"))?;
    if let Some(soft) = lines.next() {
        mv(Path::new(soft), std::ffi::OsStr::new("soft-pcrs"))?;
    }
    for recomputable in ["derived", "cache"] {
        match fs::remove_file(internal.join(recomputable)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", &internal.join(recomputable))(e));
            }
            _ => {}
        }
    }
    fs::remove_file(&mark).map_err(io_err("remove", &mark))?;
    Ok(true)
}
