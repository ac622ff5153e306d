//! Which boot and which TPM a list belongs to, and archiving a list that can no longer be
//! anchored.
//!
//! A TPM's PCRs reset at every boot, so a list kept in a persistent directory (the non-root
//! XDG default, or any `--state`) stops replaying after a reboot. Each list records, in its
//! own second entry ([`Anchor`]: the boot entry), the kernel's boot id, the TPM's identity
//! and its reset and restart counts; on open, [`crate::Engine`] compares them with what the
//! TPM says now (the decision is in ARCHITECTURE.md, "Reboots"). `.engine/boot` keeps a copy
//! for people (and for the archive), never consulted for a decision.
//!
//! ```text
//! .engine/boot = "boot_id <uuid>\n" "tpm <kind>\n" "tpm_id <ak-sha256:hex | software:hex>\n"
//! archive/<seconds since the epoch>-<old boot id>[-n]/  the old list files, moved, and
//!     "boot" (the old record) + "reason"
//! ```

use std::path::{Path, PathBuf};

use ima_sys::statedir::Dir;

use crate::{EngineError, io_err};

/// Where the kernel publishes the current boot's id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
const RECORD: &str = "boot";
const ARCHIVING: &str = "archiving";
const ARCHIVE: &str = "archive";
/// The software bank's file name in `.engine/` and in an archive.
const SOFT_BANK: &str = "soft-pcrs";
/// More than any valid record, plan or boot id file holds.
const SMALL_MAX: u64 = 4096;

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
    pub fn load(internal: &Dir) -> Result<Option<Self>, EngineError> {
        let p = internal.join(RECORD);
        let Some(bytes) = internal
            .read_bounded(RECORD, SMALL_MAX)
            .map_err(io_err("read", &p))?
        else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| EngineError::Record {
            path: p.display().to_string(),
            line: 1,
            why: "not UTF-8 text".into(),
        })?;
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
                        why: format!("unknown key {:?}", k.chars().take(32).collect::<String>()),
                    });
                }
            }
        }
        Ok(r)
    }

    /// Writes the record (durably: it decides what happens to the list after a reboot).
    pub fn save(&self, internal: &Dir) -> Result<(), EngineError> {
        let p = internal.join(RECORD);
        internal
            .replace(RECORD, self.text().as_bytes(), 0o600, true)
            .and_then(|()| internal.sync())
            .map_err(io_err("write", &p))
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
    let f = std::fs::File::open(path).map_err(io_err("read boot id", path))?;
    let bytes = ima_sys::statedir::read_to_end_bounded(f, SMALL_MAX)
        .map_err(io_err("read boot id", path))?;
    let s = String::from_utf8_lossy(&bytes);
    let id = s.trim();
    if !is_boot_id(id) {
        return Err(EngineError::Record {
            path: path.display().to_string(),
            line: 1,
            why: format!(
                "not a boot id: {:?} (expected 1 to 64 letters, digits and dashes)",
                id.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(id.to_owned())
}

/// A boot id as the kernel prints it (a UUID), or anything of that alphabet: it becomes
/// part of an archive directory's name.
fn is_boot_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
pub use ima_core::log::boot_entry::{BOOT_ENTRY, BOOT_ENTRY_TEMPLATE, BootEntry as Anchor};

/// What the present boot and TPM would record ([`Anchor`]: the TPM's clock info and
/// identity, the boot id).
pub fn anchor_now(tpm: &mut dyn ima_tpm::Tpm, boot_id: &str) -> Result<Anchor, EngineError> {
    let c = tpm.clock_info()?;
    Ok(Anchor {
        boot_id: boot_id.to_owned(),
        tpm_id: tpm_identity(tpm)?,
        reset_count: c.reset_count,
        restart_count: c.restart_count,
        clock: c.clock,
    })
}

/// The identity of `tpm`: `ak-sha256:` + SHA-256 of its AK's SubjectPublicKeyInfo (the AK is
/// a deterministic primary key under the endorsement hierarchy, so the same TPM gives the
/// same value and another TPM, or a TPM with a new endorsement seed, another), or
/// `software` for the software bank.
pub fn tpm_identity(tpm: &mut dyn ima_tpm::Tpm) -> Result<String, EngineError> {
    if !tpm.kind().is_tpm() {
        // The bank's instance: a recreated bank file (all zeros again, like a reset TPM) is
        // another instance.
        return Ok(match tpm.instance() {
            Some(i) => format!("software:{}", hex(&i)),
            None => "software".into(),
        });
    }
    let ak = tpm.create_ak()?;
    let d = ima_core::hash::HashAlgo::SHA256
        .digest(ak.der())
        .map_err(EngineError::Unsupported)?;
    Ok(format!("ak-sha256:{}", d.to_hex()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The list's files in the runtime directory (those that exist are archived).
fn list_files(state: &Dir) -> Result<Vec<String>, EngineError> {
    Ok(state
        .names()
        .map_err(io_err("list", state.path()))?
        .into_iter()
        .filter(|n| {
            n.starts_with("binary_runtime_measurements")
                || n.starts_with("ascii_runtime_measurements")
                || n == "runtime_measurements_count"
                || n == "violations"
        })
        .collect())
}

/// Moves the list in `state` (and, if `soft_bank`, the software PCR bank file of
/// `.engine/`) into a new directory under `state/archive/`, with the old boot record and
/// `reason`. Nothing is deleted but the cache and the derived-files marker (both
/// recomputable). Crash-safe: the target is named in `.engine/archiving` first, and
/// [`finish_archiving`] completes an interrupted move on the next open. Returns the archive
/// directory.
///
/// ```text
/// .engine/archiving = "<archive directory name>\n" [ "soft-pcrs\n" ]
/// ```
/// The plan names no path: only a directory name of the engine's own form, inside
/// `state/archive/`, and whether our software bank goes with it. Anything else is refused.
pub fn archive(
    state: &Dir,
    internal: &Dir,
    old: Option<&BootRecord>,
    reason: &str,
    soft_bank: bool,
) -> Result<PathBuf, EngineError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let boot = old
        .map(|r| r.boot_id.as_str())
        .filter(|b| is_boot_id(b))
        .unwrap_or("unknown-boot");
    let base = state
        .private_subdir(ARCHIVE, crate::DIR_MODE)
        .map_err(io_err("open directory", &state.join(ARCHIVE)))?;
    let mut name = format!("{secs}-{boot}");
    let mut n = 1;
    while base.exists(&name).map_err(io_err("stat", base.path()))? {
        n += 1;
        name = format!("{secs}-{boot}-{n}");
    }
    let target = base
        .private_subdir(&name, crate::DIR_MODE)
        .map_err(io_err("create directory", &base.join(&name)))?;
    let mut why = format!("{reason}\n");
    if let Some(r) = old {
        why.push_str(&r.text());
    }
    target
        .replace("reason", why.as_bytes(), 0o600, false)
        .map_err(io_err("write", &target.join("reason")))?;
    let mut plan = format!("{name}\n");
    if soft_bank {
        plan.push_str(SOFT_BANK);
        plan.push('\n');
    }
    internal
        .replace(ARCHIVING, plan.as_bytes(), 0o600, true)
        .and_then(|()| internal.sync())
        .map_err(io_err("write", &internal.join(ARCHIVING)))?;
    finish_archiving(state, internal)?;
    Ok(target.path().to_path_buf())
}

/// Whether `name` is an archive directory name [`archive`] could have chosen.
fn is_archive_name(name: &str) -> bool {
    name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Completes an archive move that a crash interrupted; `false` if none was pending.
pub fn finish_archiving(state: &Dir, internal: &Dir) -> Result<bool, EngineError> {
    let mark = internal.join(ARCHIVING);
    let Some(plan) = internal
        .read_bounded(ARCHIVING, SMALL_MAX)
        .map_err(io_err("read", &mark))?
    else {
        return Ok(false);
    };
    let bad = |line: usize, why: String| EngineError::Record {
        path: mark.display().to_string(),
        line,
        why,
    };
    let plan = String::from_utf8(plan).map_err(|_| bad(1, "not UTF-8 text".into()))?;
    let mut lines = plan.lines();
    let name = lines
        .next()
        .ok_or_else(|| bad(1, "empty archive plan".into()))?;
    if !is_archive_name(name) {
        return Err(bad(
            1,
            "not an archive directory name the engine chooses (digits, then letters, digits \
             and dashes); refusing to move the list anywhere"
                .into(),
        ));
    }
    let soft = match lines.next() {
        None => false,
        Some(SOFT_BANK) => true,
        Some(_) => return Err(bad(2, format!("expected {SOFT_BANK:?} or nothing"))),
    };
    if lines.next().is_some() {
        return Err(bad(3, "trailing lines".into()));
    }
    // (Again, in case it went missing: a rename into a missing directory would look like a
    // missing source and leave the list behind.)
    let base = state
        .private_subdir(ARCHIVE, crate::DIR_MODE)
        .map_err(io_err("open directory", &state.join(ARCHIVE)))?;
    let target = base
        .private_subdir(name, crate::DIR_MODE)
        .map_err(io_err("create directory", &base.join(name)))?;
    for n in list_files(state)? {
        state
            .rename(&n, &target, &n)
            .map_err(io_err("archive", &state.join(&n)))?;
    }
    internal
        .rename(RECORD, &target, "boot")
        .map_err(io_err("archive", &internal.join(RECORD)))?;
    if soft {
        internal
            .rename(SOFT_BANK, &target, SOFT_BANK)
            .map_err(io_err("archive", &internal.join(SOFT_BANK)))?;
    }
    for recomputable in ["derived", "cache"] {
        internal
            .remove(recomputable)
            .map_err(io_err("remove", &internal.join(recomputable)))?;
    }
    target
        .sync()
        .and_then(|()| state.sync())
        .map_err(io_err("fsync", target.path()))?;
    internal
        .remove(ARCHIVING)
        .and_then(|_| internal.sync())
        .map_err(io_err("remove", &mark))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_the_engines_own() {
        assert!(!is_archive_name("../x") && !is_archive_name("/tmp") && is_archive_name("17-b"));
        assert!(!is_archive_name("") && !is_archive_name("1-a/b") && !is_archive_name("1 a"));
    }
}
