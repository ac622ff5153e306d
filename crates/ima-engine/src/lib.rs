//! The measurement engine: appends entries to a runtime measurement list anchored in a TPM
//! (or the software PCR bank), keeps list and PCRs consistent across a crash at any instant,
//! suppresses duplicates as the kernel does, and exposes the list like securityfs.
//!
//! Mirrors `security/integrity/ima/ima_queue.c` (`ima_add_template_entry`,
//! `ima_lookup_digest_entry`, `ima_pcr_extend`), `ima_init.c` (`ima_add_boot_aggregate`) and
//! the list files of `ima_fs.c`.
//!
//! # Crash consistency (the protocol; ARCHITECTURE.md has the argument)
//! The journal is `binary_runtime_measurements_sha1` itself. Entries are appended in
//! batches: (1) write the batch to the journal and `fdatasync` it; (2) only then extend each
//! entry into the TPM, in list order; (3) flush the TPM (the software bank renames its file
//! into place); (4) append the derived files (per-bank binary and ascii lists, counts).
//! Hence at every instant the TPM holds the replay of some prefix of the durable journal.
//! On open, [`Engine::open`] finds that prefix (truncating only an unparseable torn tail),
//! extends the rest (roll forward), and regenerates the derived files where they differ from the journal. A TPM that
//! holds less than was extended (reset, replaced, or a reboot) is handled by [`boot`]: the
//! list is archived in a later boot or with [`Config::start_over`], refused otherwise.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ima_core::codec::{Endian, Reader};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::binary::{RawEntry, encode_entry};
use ima_core::log::replay::{PcrBank, boot_aggregate, boot_aggregate_bank};
use ima_core::log::{Entry, ListFormat, ascii};
use ima_core::template::{Event, TemplateDesc};
use ima_sys::statedir::{Dir, How};
use ima_tpm::Tpm;

pub mod boot;
pub mod cache;
mod group;
pub mod measure;
pub mod pool;
pub mod process;

pub use cache::Cache;
pub use group::{Shared, Ticket};
pub use ima_tpm::TpmKind;

/// `CONFIG_IMA_MEASURE_PCR_IDX`.
pub const DEFAULT_PCR: u32 = 10;
/// Entries appended per fdatasync of the journal.
pub const BATCH: usize = 512;

const ENDIAN: Endian = Endian::Little;
/// The journal: the list as it is durable before any of its entries is extended.
pub const JOURNAL: &str = "binary_runtime_measurements_sha1";
const FILE_MODE: u32 = 0o640;
/// The state directory, `.engine/` and archives: the caller's alone.
pub(crate) const DIR_MODE: u32 = 0o700;
const LOCK: &str = "lock";
/// What the lock file holds: who has it (pid and command line).
const LOCK_MAX: u64 = 4096;
/// The derived-files length marker of earlier versions (removed on open).
const DERIVED_MARKER: &str = "derived";

/// What the engine is configured with (the kernel's boot parameters).
#[derive(Clone, Debug)]
pub struct Config {
    /// The runtime directory (lists, counts) — also holds `.engine/` (cache, lock, software
    /// PCR bank).
    pub dir: PathBuf,
    /// The boot template (`ima_template=`), used for boot_aggregate and by default.
    pub template: TemplateDesc,
    /// `ima_hash=`: the file hash algorithm and the duplicate-suppression slot.
    pub ima_hash: HashAlgo,
    /// `CONFIG_IMA_MEASURE_PCR_IDX`.
    pub pcr: u32,
    /// Where the current boot id is read ([`boot::BOOT_ID_FILE`]; tests point it elsewhere).
    pub boot_id_file: PathBuf,
    /// If the list no longer replays to the TPM within the same boot (TPM reset or
    /// replaced), archive it and start a new list instead of refusing.
    pub start_over: bool,
    /// How long to wait for another writer of the same directory to finish.
    pub lock_timeout: Duration,
    /// Group commit by deadline: an added entry is committed (journal fdatasync'd, extended,
    /// derived files written) no later than this after it was added, by the next
    /// [`Engine::add`], [`Engine::commit_if_due`] or [`Shared::wait`], even if no more
    /// entries come. `None`: only every [`BATCH`] entries and on [`Engine::commit`] (what a
    /// one-shot run wants); [`Shared::wait`] then commits at once.
    pub commit_deadline: Option<Duration>,
    /// Whether a directory without a list gets a new one (boot_aggregate and boot entry).
    /// When false, opening it fails with [`EngineError::NoList`] (for readers such as
    /// `imactl attest quote`, which must not start a list).
    pub create: bool,
}

impl Config {
    /// ima-ng, sha256, PCR 10, in `dir`.
    pub fn new(dir: PathBuf) -> Result<Self, EngineError> {
        Ok(Self {
            dir,
            template: TemplateDesc::lookup("ima-ng").map_err(|source| EngineError::Template {
                name: "ima-ng".into(),
                source,
            })?,
            ima_hash: HashAlgo::SHA256,
            pcr: DEFAULT_PCR,
            boot_id_file: PathBuf::from(boot::BOOT_ID_FILE),
            start_over: false,
            lock_timeout: Duration::from_secs(120),
            commit_deadline: None,
            create: true,
        })
    }
}

/// The default runtime directory: `/run/ima` for root, else `$XDG_STATE_HOME/ima` (or
/// `~/.local/state/ima`).
pub fn default_dir() -> PathBuf {
    if ima_sys::procfs::task_creds(None).is_ok_and(|c| c.euid == 0) {
        return PathBuf::from("/run/ima");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ima");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/ima"),
        None => PathBuf::from(".ima-state"),
    }
}

/// The software PCR bank file of a runtime directory.
pub fn soft_pcrs_path(dir: &Path) -> PathBuf {
    dir.join(".engine").join("soft-pcrs")
}

/// Runs `f` on the state directory's own software PCR bank, opened read-only, with the
/// state's lock held (taken as a writer takes it: waiting up to `cfg.lock_timeout` for
/// another writer, naming it), so the values are those of a finished commit and no writer
/// changes bank or list meanwhile. Nothing in the state is written but the lock's holder
/// record.
pub fn with_soft_bank<R>(
    cfg: &Config,
    f: impl FnOnce(&mut dyn Tpm) -> Result<R, ima_tpm::TpmError>,
) -> Result<R, EngineError> {
    let _held = Held::take(cfg)?;
    let mut bank = ima_tpm::SoftPcrs::open_read_only(&soft_pcrs_path(&cfg.dir))?;
    Ok(f(&mut bank)?)
}

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tpm(#[from] ima_tpm::TpmError),
    #[error(transparent)]
    Extend(#[from] ima_core::hash::ExtendError),
    #[error("template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: ima_core::template::TemplateError,
    },
    #[error("cannot render the ascii list: {0}")]
    Render(#[source] ima_core::log::ascii::RenderError),
    #[error("{path}:{line}: {why}")]
    Record {
        path: String,
        line: usize,
        why: String,
    },
    #[error("{path}: entry at byte offset {offset}: {why}")]
    Journal {
        path: String,
        offset: usize,
        why: String,
    },
    #[error(
        "{path} does not replay to the TPM ({tpm}): {why}. The list ({entries} entries) is \
         left as it is; if the TPM was reset or replaced, `imactl measure --start-over` archives \
         it and starts a new list. ({detail})"
    )]
    Inconsistent {
        path: String,
        tpm: String,
        entries: usize,
        why: String,
        detail: String,
    },
    #[error(
        "cannot start a new list in {dir}: PCR {pcr} of {tpm} is not at its reset value \
         ({values}), so a list starting from zero could never replay to it; another measurer \
         (the kernel's own IMA?) extends it. Reboot, or use a TPM whose PCR {pcr} is unused"
    )]
    PcrInUse {
        dir: String,
        pcr: u32,
        tpm: String,
        values: String,
    },
    #[error(transparent)]
    Unsupported(#[from] ima_core::hash::UnsupportedAlgo),
    #[error("a violation was deduplicated (violations never are): an engine bug")]
    ViolationDeduplicated,
    #[error("{dir} holds no measurement list (imactl measure starts one)")]
    NoList { dir: String },
    #[error(
        "an earlier commit of {dir} failed, so its state on disk and in the TPM is unknown \
         here; reopening the list recovers it"
    )]
    CommitFailed { dir: String },
    #[error(
        "{path}: another writer has held the lock for {secs} s ({holder}); is it stuck? Stop \
         it, or wait for it to finish"
    )]
    Locked {
        path: String,
        holder: String,
        secs: u64,
    },
}

pub(crate) fn io_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> EngineError + use<> {
    let path = path.to_path_buf();
    move |source| EngineError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// What crash recovery found when the list was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of an unparseable (torn, never extended) journal tail that were cut off.
    pub truncated_bytes: u64,
    /// Durable entries that had not been extended yet and were extended now.
    pub rolled_forward: usize,
    /// Whether the derived files (per-bank lists, counts) were regenerated.
    pub regenerated: bool,
}

/// What happened to a list that could no longer be anchored (see [`boot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Where the old list now is (readable, complete).
    pub dir: PathBuf,
    /// Why (later boot, TPM reset or replaced, `start_over`).
    pub reason: String,
}

impl Recovery {
    /// Whether the previous run was interrupted.
    pub fn any(&self) -> bool {
        self.truncated_bytes > 0 || self.rolled_forward > 0 || self.regenerated
    }
}

/// The result of [`Engine::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// A new entry (its sha1-list form, as `ascii_runtime_measurements` shows it).
    New(Entry),
    /// Same template digest already on this PCR: not added (`hash_exists`).
    Duplicate,
}

/// Per list bank: the bytes of its binary list (empty for sha1) and of its ascii list.
type Rendered = Vec<(Vec<u8>, Vec<u8>)>;

struct Pending {
    entry: Entry,
    /// Template digest per list bank (zero for a violation), in `Engine::lists` order.
    list_digests: Vec<Digest>,
    /// What to extend per TPM bank, in `Engine::banks` order.
    extend: Vec<Digest>,
}

/// An open measurement list with its TPM.
pub struct Engine {
    cfg: Config,
    tpm: Box<dyn Tpm>,
    banks: Vec<HashAlgo>,
    /// Banks that get a list file: every TPM bank plus sha1 (first).
    lists: Vec<HashAlgo>,
    journal: File,
    journal_len: u64,
    derived: Vec<(HashAlgo, Option<File>, File)>,
    seen: HashSet<(u32, Digest)>,
    entries: u64,
    violations: u64,
    pending: Vec<Pending>,
    jbuf: Vec<u8>,
    state: Dir,
    /// `.engine/` of `state`.
    internal: Dir,
    _lock: File,
    /// The entries found by recovery, until the derived files are checked.
    recovered: Option<Vec<Entry>>,
    recovery: Recovery,
    archived: Option<Archived>,
    /// When the oldest pending entry was added (for [`Config::commit_deadline`]).
    pending_since: Option<Instant>,
    /// A commit failed part-way: nothing more is appended or committed (recovery on the
    /// next open knows what is durable and extended; this handle no longer does).
    failed: bool,
    /// Re-measurement cache (saved by [`Engine::close`]); `measure` takes it out around
    /// its parallel run.
    pub(crate) cache: Cache,
    /// The running mark of the list (what the cache is bound to when saved).
    list_hash: cache::ListHash,
}

/// A quote together with the list it covers, taken under the engine's lock with every
/// entry committed and nothing appended in between ([`Engine::quote`]).
#[derive(Clone, Debug)]
pub struct ListQuote {
    pub quote: ima_tpm::Quote,
    /// Entries in the list when quoted: the quoted PCRs are the replay of exactly these.
    pub entries: u64,
    /// Those entries: the journal (`binary_runtime_measurements_sha1`) as it was quoted,
    /// read through the engine's own descriptor.
    pub list: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.cfg.dir)
            .field("tpm", &self.tpm.kind())
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the list in `cfg.dir` anchored in `tpm`: takes the directory lock,
    /// recovers from any crash, and on a new list adds boot_aggregate.
    pub fn open(cfg: Config, tpm: Box<dyn Tpm>) -> Result<Self, EngineError> {
        let held = Held::take(&cfg)?;
        Self::open_held(cfg, tpm, held)
    }

    /// Opens the TPM `tcti` names (`None`: the software bank in `cfg.dir/.engine/`), then
    /// the list ([`Engine::open`]). The lock is taken first: nothing of the state (the
    /// software bank included) is read before it is held.
    pub fn open_tcti(cfg: Config, tcti: Option<&str>) -> Result<Self, EngineError> {
        let held = Held::take(&cfg)?;
        let tpm = ima_tpm::open(tcti, &soft_pcrs_path(&cfg.dir))?;
        Self::open_held(cfg, tpm, held)
    }

    fn open_held(cfg: Config, mut tpm: Box<dyn Tpm>, held: Held) -> Result<Self, EngineError> {
        let Held {
            state,
            internal,
            lock,
        } = held;
        let dir = cfg.dir.clone();
        if boot::finish_archiving(&state, &internal)? {
            // An interrupted archive took our software bank's file: start it afresh.
            if let Some(p) = own_soft_bank(tpm.as_ref(), &dir) {
                tpm = ima_tpm::open(Some(&format!("soft:{}", p.display())), &p)?;
            }
        }

        let banks = tpm.banks().to_vec();
        let mut lists = vec![HashAlgo::SHA1];
        lists.extend(banks.iter().copied().filter(|b| *b != HashAlgo::SHA1));

        // Which boot and TPM the list belongs to, and whether the TPM still holds it: decided
        // from what the TPM says now and what the list's boot entry recorded (evidence), not
        // from marker files.
        let boot_id = boot::read_boot_id(&cfg.boot_id_file)?;
        let record = boot::BootRecord::load(&internal)?;
        let mut now = boot::anchor_now(tpm.as_mut(), &boot_id)?;
        let jpath = state.join(JOURNAL);
        let mut bytes = match state.open(JOURNAL, How::read()) {
            Ok(Some(f)) => Some(ima_sys::map::read_or_map_file(f).map_err(io_err("read", &jpath))?),
            Ok(None) => None,
            Err(e) => return Err(io_err("open", &jpath)(e)),
        };
        let len = bytes.as_ref().map_or(0, |b| b.len());
        if !cfg.create && len == 0 {
            return Err(EngineError::NoList {
                dir: dir.display().to_string(),
            });
        }
        let mut scan = Scan::run(
            tpm.as_mut(),
            &banks,
            &cfg,
            bytes.as_deref().unwrap_or(&[]),
            &jpath,
        )?;
        if scan.entries.len() == 1 && scan.matched == Some((0, 0)) && scan.anchor().is_none() {
            // An unfinished new list: boot_aggregate durable, its boot entry torn off.
            // Nothing of that batch was extended (extends follow its fdatasync), so it is
            // cut like any torn tail and the list is started again.
            scan = Scan::run(tpm.as_mut(), &banks, &cfg, &[], &jpath)?;
        }
        let anchor = scan.anchor();
        let later_boot = match &anchor {
            Some(Ok(a)) => a.boot_id != boot_id,
            _ => record.as_ref().is_some_and(|r| r.boot_id != boot_id),
        };
        let judged = if scan.entries.is_empty() {
            scan.anchored()
        } else {
            match &anchor {
                None => Err(
                    "it has no boot entry (its second entry, `ima-engine-boot`), so it \
                             cannot show which boot and TPM it belongs to (an earlier version \
                             started it, or it was edited)"
                        .to_owned(),
                ),
                Some(Err(e)) => Err(format!("its boot entry is not valid: {e}")),
                Some(Ok(a)) => a.held_by(&now).and_then(|()| scan.anchored()),
            }
        };
        let strict = later_boot && tpm.kind().is_tpm();
        let mut archived = None;
        if let Err(why) = judged {
            if scan.entries.is_empty() {
                return Err(list_lost(
                    &cfg,
                    tpm.as_mut(),
                    &banks,
                    &jpath,
                    bytes.is_some(),
                    len,
                )?);
            }
            if !(strict || cfg.start_over) {
                let was = match &anchor {
                    Some(Ok(a)) => format!(
                        "boot {} on TPM {} (reset count {}, restart count {})",
                        a.boot_id, a.tpm_id, a.reset_count, a.restart_count
                    ),
                    _ => "an unknown boot".to_owned(),
                };
                return Err(EngineError::Inconsistent {
                    path: jpath.display().to_string(),
                    tpm: tpm.kind().to_string(),
                    entries: scan.entries.len(),
                    why: format!(
                        "{why}; the list was started in {was}, this is boot {boot_id} with \
                         TPM id {} (reset count {}, restart count {})",
                        now.tpm_id, now.reset_count, now.restart_count
                    ),
                    detail: scan.detail(&banks),
                });
            }
            // A new list must replay from zero: our own software bank starts afresh (its
            // file goes to the archive too); a TPM must have the PCR unused.
            let soft = own_soft_bank(tpm.as_ref(), &dir);
            if soft.is_none() && !pcr_at_reset(tpm.as_mut(), &banks, cfg.pcr)? {
                return Err(pcr_in_use(&cfg, tpm.as_mut(), &banks)?);
            }
            let reason = if strict {
                format!("later boot ({boot_id}); the TPM no longer holds the list: {why}")
            } else {
                format!("--start-over in boot {boot_id}: {why}")
            };
            let target =
                boot::archive(&state, &internal, record.as_ref(), &reason, soft.is_some())?;
            tracing::info!("archived the list in {}: {reason}", target.display());
            if let Some(p) = &soft {
                tpm = ima_tpm::open(Some(&format!("soft:{}", p.display())), p)?;
                now = boot::anchor_now(tpm.as_mut(), &boot_id)?;
            }
            archived = Some(Archived {
                dir: target,
                reason,
            });
            bytes = None;
            scan = Scan::run(tpm.as_mut(), &banks, &cfg, &[], &jpath)?;
            scan.anchored().map_err(|why| EngineError::Inconsistent {
                path: jpath.display().to_string(),
                tpm: tpm.kind().to_string(),
                entries: 0,
                why,
                detail: scan.detail(&banks),
            })?;
        }

        let fresh = !state.exists(JOURNAL).map_err(io_err("stat", &jpath))?;
        let journal = state
            .open(
                JOURNAL,
                How {
                    read: true,
                    append: true,
                    create: true,
                    mode: FILE_MODE,
                    ..How::default()
                },
            )
            .map_err(io_err("open", &jpath))?
            .ok_or_else(|| io_err("open", &jpath)(io::ErrorKind::NotFound.into()))?;
        if fresh {
            // The journal's name must be durable before anything is extended on its behalf:
            // fdatasync of the file alone does not persist the directory entry.
            state.sync().map_err(io_err("fsync", state.path()))?;
        }
        let cache = Cache::load(&internal);
        let len = if bytes.is_some() { len } else { 0 };
        drop(bytes);
        let mut e = Self {
            cfg,
            tpm,
            banks,
            lists,
            journal,
            journal_len: 0,
            derived: Vec::new(),
            seen: HashSet::new(),
            entries: 0,
            violations: 0,
            pending: Vec::new(),
            jbuf: Vec::new(),
            state,
            internal,
            _lock: lock,
            recovered: None,
            recovery: Recovery::default(),
            archived,
            pending_since: None,
            failed: false,
            cache,
            list_hash: cache::ListHash::default(),
        };
        e.apply(scan, len)?;
        e.open_derived()?;
        if e.entries == 0 {
            boot::BootRecord {
                boot_id,
                tpm: e.tpm.kind().to_string(),
                tpm_id: now.tpm_id.clone(),
            }
            .save(&e.internal)?;
            e.add_boot_aggregate()?;
            e.add_boot_entry(&now)?;
            e.commit()?;
        } else if record
            .as_ref()
            .is_none_or(|r| r.boot_id != boot_id || r.tpm_id != now.tpm_id)
        {
            // The TPM kept the list across the reboot (software bank, or a TPM that was not
            // reset): it goes on. The record (for people) says where it is now.
            boot::BootRecord {
                boot_id,
                tpm: e.tpm.kind().to_string(),
                tpm_id: now.tpm_id.clone(),
            }
            .save(&e.internal)?;
        }
        Ok(e)
    }

    /// The list that was archived when this one was opened, if any.
    pub fn archived(&self) -> Option<&Archived> {
        self.archived.as_ref()
    }

    /// What the list is anchored in (a TPM device, swtpm, or the software bank).
    pub fn tpm_kind(&self) -> TpmKind {
        self.tpm.kind()
    }

    /// The TPM's allocated PCR banks, in its order.
    pub fn tpm_banks(&self) -> &[HashAlgo] {
        &self.banks
    }

    /// Reads `pcrs` of `bank` from the TPM. (PCRs are only ever extended by
    /// [`Engine::commit`], after the journal: the TPM itself is not handed out.)
    pub fn pcr_read(&mut self, bank: HashAlgo, pcrs: &[u32]) -> Result<Vec<Digest>, EngineError> {
        Ok(self.tpm.pcr_read(bank, pcrs)?)
    }

    /// Commits every pending entry, then quotes `selection` binding `nonce`, with nothing
    /// appended in between (`&mut self`, and the directory lock against other processes):
    /// the quoted PCRs are the replay of exactly [`ListQuote::entries`] entries.
    pub fn quote(
        &mut self,
        nonce: &[u8],
        selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<ListQuote, EngineError> {
        self.commit()?;
        let quote = self.tpm.quote(nonce, selection)?;
        let jpath = self.state.join(JOURNAL);
        let len = usize::try_from(self.journal_len)
            .map_err(|_| io_err("read", &jpath)(io::ErrorKind::FileTooLarge.into()))?;
        let mut list = vec![0; len];
        use std::os::unix::fs::FileExt;
        self.journal
            .read_exact_at(&mut list, 0)
            .map_err(io_err("read", &jpath))?;
        Ok(ListQuote {
            quote,
            entries: self.entries,
            list,
        })
    }

    /// What recovery did when the list was opened.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Entries in the list, including those not yet committed.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Entries committed: durable in the journal and extended into the TPM.
    pub fn committed(&self) -> u64 {
        self.entries - self.pending.len() as u64
    }

    /// When the pending entries must be committed by ([`Config::commit_deadline`] after the
    /// oldest was added); `None` if nothing is pending or there is no deadline.
    pub fn commit_due(&self) -> Option<Instant> {
        Some(self.pending_since? + self.cfg.commit_deadline?)
    }

    /// Commits if [`Engine::commit_due`] has passed; whether it did. For a caller that polls
    /// (an event loop's timeout); [`Shared`] does the same for callers that wait.
    pub fn commit_if_due(&mut self) -> Result<bool, EngineError> {
        if self.commit_due().is_some_and(|due| Instant::now() >= due) {
            self.commit()?;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// The banks that have list files (sha1 first).
    pub fn list_banks(&self) -> &[HashAlgo] {
        &self.lists
    }

    /// Adds a measurement of `ev` with template `desc` into `pcr`, unless an entry with the
    /// same template digest (in the `ima_hash` slot) is already on that PCR. The entry is
    /// durable and extended after the next [`Engine::commit`] (automatic every [`BATCH`]
    /// entries, and once [`Config::commit_deadline`] has passed since the oldest pending
    /// entry was added).
    pub fn add(
        &mut self,
        ev: &Event<'_>,
        desc: &TemplateDesc,
        pcr: u32,
    ) -> Result<Added, EngineError> {
        self.check_usable()?;
        let data = desc
            .build(ev, ENDIAN)
            .map_err(|source| EngineError::Template {
                name: desc.name().to_owned(),
                source,
            })?;
        let legacy = desc.is_legacy();
        let slot = data
            .digest(legacy, self.cfg.ima_hash, ENDIAN)
            .map_err(EngineError::Unsupported)?;
        if !self.seen.insert((pcr, slot)) {
            return Ok(Added::Duplicate);
        }
        let entry = Entry::new(pcr, desc, data, HashAlgo::SHA1, ENDIAN)
            .map_err(EngineError::Unsupported)?;
        self.push(entry)
    }

    /// Adds a violation (ToMToU / open_writers) for the file `ev` describes, as
    /// `ima_add_violation`: the boot template, the file's name and inode fields (and its
    /// `security.evm` for `sig`/`evmsig`), a zero digest of `ima_hash` (20 zero bytes for
    /// `d`), no `security.ima`; the config PCR; zero template digests, 0xff.. extended;
    /// never deduplicated; counted in `violations`.
    pub fn add_violation(&mut self, ev: &Event<'_>) -> Result<Entry, EngineError> {
        self.check_usable()?;
        let desc = self.cfg.template.clone();
        let zero = Digest::zero(self.cfg.ima_hash).ok_or(EngineError::Unsupported(
            ima_core::hash::UnsupportedAlgo(self.cfg.ima_hash),
        ))?;
        let ev = Event {
            digest: Some(zero),
            legacy_digest: Digest::zero(HashAlgo::SHA1),
            ima_xattr: None,
            ..*ev
        };
        let data = desc
            .build(&ev, ENDIAN)
            .map_err(|source| EngineError::Template {
                name: desc.name().to_owned(),
                source,
            })?;
        let entry = Entry::violation(self.cfg.pcr, &desc, data, HashAlgo::SHA1)
            .map_err(EngineError::Unsupported)?;
        match self.push(entry)? {
            Added::New(e) => Ok(e),
            Added::Duplicate => Err(EngineError::ViolationDeduplicated),
        }
    }

    fn push(&mut self, entry: Entry) -> Result<Added, EngineError> {
        let unsupported = EngineError::Unsupported;
        let list_digests = self
            .lists
            .iter()
            .map(|b| entry.template_digest_in(*b, ENDIAN))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unsupported)?;
        let extend = self
            .banks
            .iter()
            .map(|b| entry.extend_value(*b, ENDIAN))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unsupported)?;
        encode_entry(&entry, ListFormat::new(HashAlgo::SHA1), &mut self.jbuf);
        self.list_hash.add(&entry);
        if entry.is_violation() {
            self.violations += 1;
        }
        self.entries += 1;
        self.pending.push(Pending {
            entry: entry.clone(),
            list_digests,
            extend,
        });
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= BATCH {
            self.commit()?;
        } else {
            self.commit_if_due()?;
        }
        Ok(Added::New(entry))
    }

    fn check_usable(&self) -> Result<(), EngineError> {
        if self.failed {
            return Err(EngineError::CommitFailed {
                dir: self.cfg.dir.display().to_string(),
            });
        }
        Ok(())
    }

    /// Makes every added entry durable, then extends it, then updates the derived files.
    /// If that fails part-way, this handle refuses every further add and commit
    /// ([`EngineError::CommitFailed`]): a retry could append or extend twice, whereas
    /// reopening the list recovers it from what is on disk and in the TPM.
    pub fn commit(&mut self) -> Result<(), EngineError> {
        self.check_usable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.commit_pending();
        self.failed = r.is_err();
        r
    }

    fn commit_pending(&mut self) -> Result<(), EngineError> {
        let jpath = self.state.join(JOURNAL);
        // (1) durable in the journal first ...
        self.journal
            .write_all(&self.jbuf)
            .map_err(io_err("append", &jpath))?;
        self.journal
            .sync_data()
            .map_err(io_err("fdatasync", &jpath))?;
        self.journal_len += self.jbuf.len() as u64;
        self.jbuf.clear();
        // (2) ... then anchored, in list order ...
        for p in &self.pending {
            self.tpm.extend(p.entry.pcr, &p.extend)?;
        }
        // (3) ... made durable in the software bank ...
        self.tpm.flush()?;
        // (4) ... and shown in the derived files.
        let pending = std::mem::take(&mut self.pending);
        self.pending_since = None;
        self.append_derived(&pending)?;
        self.write_counts()?;
        Ok(())
    }

    /// Commits and saves the cache.
    pub fn close(mut self) -> Result<(), EngineError> {
        self.commit()?;
        self.cache
            .save(&self.internal, self.list_hash.mark())
            .map_err(io_err("write", &self.internal.join("cache")))
    }

    fn add_boot_aggregate(&mut self) -> Result<(), EngineError> {
        let ima_hash = self.cfg.ima_hash;
        let (digest, sha1) = if self.tpm.kind().is_tpm() {
            let bank = boot_aggregate_bank(&self.banks, ima_hash);
            let agg = |tpm: &mut dyn Tpm, b: HashAlgo| -> Result<Digest, EngineError> {
                let vals = tpm.pcr_read(b, &(0..10).collect::<Vec<_>>())?;
                let mut pb = PcrBank::new(b);
                for (i, v) in vals.into_iter().enumerate() {
                    pb.set(i as u32, v);
                }
                boot_aggregate(&pb).map_err(EngineError::Unsupported)
            };
            let d = match bank {
                Some(b) => agg(self.tpm.as_mut(), b)?,
                None => zero(ima_hash)?,
            };
            let s = if self.banks.contains(&HashAlgo::SHA1) {
                agg(self.tpm.as_mut(), HashAlgo::SHA1)?
            } else {
                zero(HashAlgo::SHA1)?
            };
            (d, s)
        } else {
            // No TPM: zeros of ima_hash, as the kernel does (TPM-bypass mode).
            (zero(ima_hash)?, zero(HashAlgo::SHA1)?)
        };
        let ev = Event {
            digest: Some(digest),
            legacy_digest: Some(sha1),
            name: b"boot_aggregate",
            ..Event::default()
        };
        let desc = self.cfg.template.clone();
        let pcr = self.cfg.pcr;
        self.add(&ev, &desc, pcr)?;
        Ok(())
    }

    /// The list's boot entry ([`boot::Anchor`]), right after boot_aggregate.
    fn add_boot_entry(&mut self, now: &boot::Anchor) -> Result<(), EngineError> {
        let desc = TemplateDesc::lookup(boot::BOOT_ENTRY_TEMPLATE).map_err(|source| {
            EngineError::Template {
                name: boot::BOOT_ENTRY_TEMPLATE.into(),
                source,
            }
        })?;
        let buf = now.encode();
        let digest = self
            .cfg
            .ima_hash
            .digest(&buf)
            .map_err(EngineError::Unsupported)?;
        let ev = Event {
            digest: Some(digest),
            name: boot::BOOT_ENTRY.as_bytes(),
            buf: Some(&buf),
            ..Event::default()
        };
        let pcr = self.cfg.pcr;
        self.add(&ev, &desc, pcr)?;
        Ok(())
    }

    /// Crash recovery (see the module docs) from a scan that [`Scan::anchored`] accepted:
    /// cut the torn tail, extend what is durable but not yet extended.
    fn apply(&mut self, scan: Scan, len: usize) -> Result<(), EngineError> {
        let jpath = self.state.join(JOURNAL);
        let k = scan.matched.map_or(0, |(k, _)| k);
        if scan.good_end < len {
            tracing::debug!(
                "truncating torn tail of {} at byte {} ({} bytes)",
                jpath.display(),
                scan.good_end,
                len - scan.good_end
            );
            self.recovery.truncated_bytes = (len - scan.good_end) as u64;
            self.journal
                .set_len(scan.good_end as u64)
                .and_then(|()| self.journal.sync_data())
                .map_err(io_err("truncate", &jpath))?;
        }
        // Roll forward: entries durable in the journal but not yet extended.
        for (e, x) in scan.entries.iter().zip(&scan.ext).skip(k) {
            self.tpm.extend(e.pcr, x)?;
            self.recovery.rolled_forward += 1;
        }
        self.tpm.flush()?;
        // The cache is kept only if the journal begins with the list it was written with.
        let mut list = cache::ListHash::default();
        let want = self.cache.written_with().map(|m| m.entries);
        let mut at = (want == Some(0)).then(|| list.mark());
        for e in &scan.entries {
            list.add(e);
            if Some(list.entries()) == want {
                at = Some(list.mark());
            }
        }
        self.cache.check_list(&self.internal.join("cache"), |_| at);
        self.list_hash = list;
        self.journal_len = scan.good_end as u64;
        self.seen.extend(scan.seen);
        self.violations = scan.violations;
        self.entries = scan.entries.len() as u64;
        self.recovered = Some(scan.entries);
        Ok(())
    }
}

/// The journal parsed and replayed against the TPM.
struct Scan {
    entries: Vec<Entry>,
    /// Per entry, the value extended into each TPM bank.
    ext: Vec<Vec<Digest>>,
    seen: Vec<(u32, Digest)>,
    violations: u64,
    /// End of the parseable journal (what follows is a torn tail).
    good_end: usize,
    /// The last prefix (entries, bytes) whose replay equals the TPM's values.
    matched: Option<(usize, usize)>,
    tpm_vals: Vec<Vec<Digest>>,
    state: Vec<Vec<Digest>>,
}

impl Scan {
    fn run(
        tpm: &mut dyn Tpm,
        banks: &[HashAlgo],
        cfg: &Config,
        bytes: &[u8],
        jpath: &Path,
    ) -> Result<Self, EngineError> {
        let f = ListFormat::new(HashAlgo::SHA1);
        let mut r = Reader::new(bytes);
        let mut entries = Vec::new();
        let mut ends = Vec::new();
        let mut good_end = 0;
        let mut ext: Vec<Vec<Digest>> = Vec::new();
        let mut seen = Vec::new();
        let mut violations = 0;
        let unsupported = EngineError::Unsupported;
        while !r.is_empty() {
            match RawEntry::decode(&mut r, f).and_then(|raw| raw.to_entry(f).map(|e| (raw, e))) {
                Ok((raw, e)) => {
                    if e.pcr >= ima_tpm::NUM_PCRS {
                        return Err(EngineError::Journal {
                            path: jpath.display().to_string(),
                            offset: raw.offset,
                            why: format!(
                                "PCR {} is out of range (0..{})",
                                e.pcr,
                                ima_tpm::NUM_PCRS
                            ),
                        });
                    }
                    // The template digest in every TPM bank: what was extended, the check of
                    // the logged sha1 digest, and the duplicate-table key, hashed once.
                    let per_bank: Vec<Digest> = banks
                        .iter()
                        .map(|b| e.data.digest(e.is_legacy(), *b, ENDIAN))
                        .collect::<Result<_, _>>()
                        .map_err(unsupported)?;
                    let in_bank = |algo: HashAlgo| -> Result<Digest, EngineError> {
                        match banks.iter().position(|b| *b == algo) {
                            Some(i) => Ok(per_bank[i]),
                            None => e
                                .data
                                .digest(e.is_legacy(), algo, ENDIAN)
                                .map_err(unsupported),
                        }
                    };
                    if raw.is_violation() {
                        violations += 1;
                        ext.push(
                            banks
                                .iter()
                                .map(|b| e.extend_value(*b, ENDIAN))
                                .collect::<Result<_, _>>()
                                .map_err(unsupported)?,
                        );
                    } else {
                        if in_bank(HashAlgo::SHA1)?.as_bytes() != raw.digest {
                            return Err(EngineError::Journal {
                                path: jpath.display().to_string(),
                                offset: raw.offset,
                                why: "template digest does not match the template data".into(),
                            });
                        }
                        seen.push((e.pcr, in_bank(cfg.ima_hash)?));
                        ext.push(per_bank);
                    }
                    entries.push(e);
                    good_end = r.offset();
                    ends.push(good_end);
                }
                Err(_) => break, // torn tail: never fdatasync'ed, so never extended
            }
        }

        let mut pcrs: Vec<u32> = entries.iter().map(|e| e.pcr).collect();
        pcrs.push(cfg.pcr);
        pcrs.sort_unstable();
        pcrs.dedup();
        // What the TPM holds for every PCR the list uses, per bank.
        let mut tpm_vals: Vec<Vec<Digest>> = Vec::new();
        for b in banks {
            tpm_vals.push(tpm.pcr_read(*b, &pcrs)?);
        }
        // Replay, comparing after every prefix.
        let mut state: Vec<Vec<Digest>> = banks
            .iter()
            .map(|b| zero(*b).map(|z| vec![z; pcrs.len()]))
            .collect::<Result<_, _>>()?;
        let mut matched = (state == tpm_vals).then_some((0usize, 0usize));
        for (k, e) in entries.iter().enumerate() {
            let pi = pcrs.binary_search(&e.pcr).unwrap_or(0);
            for (bi, d) in ext[k].iter().enumerate() {
                state[bi][pi] = state[bi][pi].extend(d)?;
            }
            if state == tpm_vals {
                matched = Some((k + 1, ends[k]));
            }
        }
        Ok(Self {
            entries,
            ext,
            seen,
            violations,
            good_end,
            matched,
            tpm_vals,
            state,
        })
    }

    /// Whether the TPM holds a prefix of the list. Called once the boot entry showed that
    /// the TPM was not reset since the list started (PCRs only move forward in between).
    fn anchored(&self) -> Result<(), String> {
        match self.matched {
            None => Err(
                "no prefix of the list gives the PCR values the TPM holds (was the TPM \
                 reset or extended by someone else, or the list shortened?)"
                    .into(),
            ),
            Some(_) => Ok(()),
        }
    }

    /// The list's boot entry (its second entry), parsed; `None` if there is none.
    fn anchor(&self) -> Option<Result<boot::Anchor, String>> {
        let e = self.entries.get(1)?;
        boot::Anchor::buffer_of(e).map(boot::Anchor::decode)
    }

    fn detail(&self, banks: &[HashAlgo]) -> String {
        banks
            .iter()
            .zip(&self.tpm_vals)
            .zip(&self.state)
            .map(|((b, t), s)| {
                format!(
                    "{b}: TPM {} vs list {}",
                    t.iter().map(|d| d.to_hex()).collect::<Vec<_>>().join(","),
                    s.iter().map(|d| d.to_hex()).collect::<Vec<_>>().join(",")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The file of `tpm` if it is the software bank of the list in `dir`.
fn own_soft_bank(tpm: &dyn Tpm, dir: &Path) -> Option<PathBuf> {
    match tpm.kind() {
        ima_tpm::TpmKind::Software(p) if Path::new(&p) == soft_pcrs_path(dir) => {
            Some(PathBuf::from(p))
        }
        _ => None,
    }
}

/// Whether `pcr` is at its reset value (zero) in every bank.
fn pcr_at_reset(tpm: &mut dyn Tpm, banks: &[HashAlgo], pcr: u32) -> Result<bool, EngineError> {
    for b in banks {
        if tpm
            .pcr_read(*b, &[pcr])?
            .iter()
            .any(|d| d.as_bytes().iter().any(|x| *x != 0))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_too_large(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<ima_sys::statedir::UnsafeFile>())
        .is_some_and(|u| matches!(u, ima_sys::statedir::UnsafeFile::TooLarge { .. }))
}

/// Why an empty list cannot start: its journal is missing (someone else extends the PCR),
/// empty or unparseable from its first byte (the list was emptied or replaced).
fn list_lost(
    cfg: &Config,
    tpm: &mut dyn Tpm,
    banks: &[HashAlgo],
    jpath: &Path,
    exists: bool,
    len: usize,
) -> Result<EngineError, EngineError> {
    if !exists {
        return pcr_in_use(cfg, tpm, banks);
    }
    let tpm_kind = tpm.kind();
    Ok(EngineError::Journal {
        path: jpath.display().to_string(),
        offset: 0,
        why: if len == 0 {
            format!(
                "the journal is empty, but PCR {} of {tpm_kind} is not at its reset value: the \
                 list was emptied (or something else extends that PCR); it is left as it is",
                cfg.pcr
            )
        } else {
            format!(
                "no measurement list entry parses here ({len} bytes that are not a list), and \
                 PCR {} of {tpm_kind} is not at its reset value: the journal was replaced or \
                 damaged; it is left as it is",
                cfg.pcr
            )
        },
    })
}

fn pcr_in_use(
    cfg: &Config,
    tpm: &mut dyn Tpm,
    banks: &[HashAlgo],
) -> Result<EngineError, EngineError> {
    let mut values = Vec::new();
    for b in banks {
        for d in tpm.pcr_read(*b, &[cfg.pcr])? {
            values.push(format!("{b}:{}", d.to_hex()));
        }
    }
    Ok(EngineError::PcrInUse {
        dir: cfg.dir.display().to_string(),
        pcr: cfg.pcr,
        tpm: tpm.kind().to_string(),
        values: values.join(", "),
    })
}

impl Engine {
    /// Per list bank: its binary list's name (none for sha1: the journal is that one) and
    /// its ascii list's name.
    fn derived_names(&self) -> Vec<(HashAlgo, Option<String>, String)> {
        self.lists
            .iter()
            .map(|b| {
                let bin =
                    (*b != HashAlgo::SHA1).then(|| format!("binary_runtime_measurements_{b}"));
                (*b, bin, format!("ascii_runtime_measurements_{b}"))
            })
            .collect()
    }

    /// Opens the per-bank list files (and the kernel's compatibility symlinks); regenerates
    /// them from the journal wherever their content differs from it.
    fn open_derived(&mut self) -> Result<(), EngineError> {
        let state = &self.state;
        let open = |name: &str| -> Result<File, EngineError> {
            let p = state.join(name);
            state
                .open(
                    name,
                    How {
                        append: true,
                        create: true,
                        mode: FILE_MODE,
                        ..How::default()
                    },
                )
                .map_err(io_err("open", &p))?
                .ok_or_else(|| io_err("open", &p)(io::ErrorKind::NotFound.into()))
        };
        let mut derived = Vec::new();
        for (b, bin, asc) in self.derived_names() {
            let bin = match bin {
                Some(n) => Some(open(&n)?),
                None => None,
            };
            derived.push((b, bin, open(&asc)?));
        }
        self.derived = derived;
        for (link, target) in [
            ("binary_runtime_measurements", JOURNAL),
            (
                "ascii_runtime_measurements",
                "ascii_runtime_measurements_sha1",
            ),
        ] {
            // Recreated unless it is exactly our link; never followed.
            let l = self.state.join(link);
            let have = self.state.read_link(link).map_err(io_err("readlink", &l))?;
            if have.as_deref() != Some(Path::new(target)) {
                self.state
                    .set_symlink(target, link)
                    .map_err(io_err("symlink", &l))?;
            }
        }
        // Every derived file and count is regenerated whenever its content differs from
        // what the journal gives (byte for byte: a same-length forgery is repaired too).
        let entries = self.recovered.take().unwrap_or_default();
        let pending: Vec<Pending> = entries
            .into_iter()
            .map(|entry| {
                let list_digests = self
                    .lists
                    .iter()
                    .map(|b| entry.template_digest_in(*b, ENDIAN))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(EngineError::Unsupported)?;
                Ok(Pending {
                    entry,
                    list_digests,
                    extend: Vec::new(),
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let want = self.render_derived(&pending)?;
        let mut differed = false;
        for ((_, bin_name, asc_name), ((_, bin, asc), (bin_want, asc_want))) in self
            .derived_names()
            .iter()
            .zip(self.derived.iter_mut().zip(&want))
        {
            let files = bin_name
                .as_deref()
                .zip(bin.as_mut())
                .map(|(n, f)| (n, f, bin_want))
                .into_iter()
                .chain(std::iter::once((asc_name.as_str(), asc, asc_want)));
            for (name, f, want) in files {
                let p = self.state.join(name);
                let same = match self.state.read_bounded(name, want.len() as u64) {
                    Ok(have) => have.as_deref() == Some(want.as_slice()),
                    Err(e) if is_too_large(&e) => false,
                    Err(e) => return Err(io_err("read", &p)(e)),
                };
                if !same {
                    f.set_len(0)
                        .and_then(|()| f.write_all(want))
                        .map_err(io_err("regenerate", &p))?;
                    differed = true;
                }
            }
        }
        for (name, n) in [
            ("runtime_measurements_count", self.entries),
            ("violations", self.violations),
        ] {
            let p = self.state.join(name);
            let want = format!("{n}\n");
            let same = match self.state.read_bounded(name, want.len() as u64) {
                Ok(have) => have.as_deref() == Some(want.as_bytes()),
                Err(e) if is_too_large(&e) => false,
                Err(e) => return Err(io_err("read", &p)(e)),
            };
            if !same {
                self.state
                    .replace(name, want.as_bytes(), FILE_MODE, false)
                    .map_err(io_err("write", &p))?;
                differed |= n > 0;
            }
        }
        self.recovery.regenerated = differed && !pending.is_empty();
        // The length marker of earlier versions: never trusted, not needed.
        self.internal
            .remove(DERIVED_MARKER)
            .map_err(io_err("remove", &self.internal.join(DERIVED_MARKER)))?;
        Ok(())
    }

    /// The bytes `pending` adds to each derived file: per list bank, (binary list, ascii).
    fn render_derived(&self, pending: &[Pending]) -> Result<Rendered, EngineError> {
        let mut out = Vec::new();
        for (li, (b, bin, _)) in self.derived.iter().enumerate() {
            let mut bbuf = Vec::new();
            let mut abuf = Vec::new();
            for p in pending {
                let e = Entry {
                    template_digest: p.list_digests[li],
                    ..p.entry.clone()
                };
                if bin.is_some() {
                    encode_entry(&e, ListFormat::new(*b), &mut bbuf);
                }
                ascii::render_entry(&e, &[], ENDIAN, &mut abuf).map_err(EngineError::Render)?;
            }
            out.push((bbuf, abuf));
        }
        Ok(out)
    }

    fn append_derived(&mut self, pending: &[Pending]) -> Result<(), EngineError> {
        let bufs = self.render_derived(pending)?;
        for ((_, bin, asc), (bbuf, abuf)) in self.derived.iter_mut().zip(bufs) {
            if let Some(f) = bin {
                f.write_all(&bbuf)
                    .map_err(io_err("append", &self.cfg.dir))?;
            }
            asc.write_all(&abuf)
                .map_err(io_err("append", &self.cfg.dir))?;
        }
        Ok(())
    }

    /// `runtime_measurements_count` and `violations`.
    fn write_counts(&mut self) -> Result<(), EngineError> {
        let put = |d: &Dir, name: &str, text: String, mode| {
            d.replace(name, text.as_bytes(), mode, false)
                .map_err(io_err("write", &d.join(name)))
        };
        put(
            &self.state,
            "runtime_measurements_count",
            format!("{}\n", self.entries),
            FILE_MODE,
        )?;
        put(
            &self.state,
            "violations",
            format!("{}\n", self.violations),
            FILE_MODE,
        )
    }
}

/// The state directory and its `.engine/`, opened and checked, with the lock held.
struct Held {
    state: Dir,
    internal: Dir,
    lock: File,
}

impl Held {
    /// Opens (creating them 0700) the state directory and `.engine/`, refusing either if it
    /// is a symlink, not the caller's, or writable by others; then takes the lock, waiting
    /// up to `cfg.lock_timeout` for another writer (named in the wait message and the
    /// error), and records who holds it.
    fn take(cfg: &Config) -> Result<Self, EngineError> {
        let state = Dir::open_private(&cfg.dir, DIR_MODE)
            .map_err(io_err("open state directory", &cfg.dir))?;
        let internal = state
            .private_subdir(".engine", DIR_MODE)
            .map_err(io_err("open state directory", &cfg.dir.join(".engine")))?;
        let lpath = internal.join(LOCK);
        let lock = internal
            .open(
                LOCK,
                How {
                    read: true,
                    write: true,
                    create: true,
                    mode: 0o600,
                    ..How::default()
                },
            )
            .map_err(io_err("open", &lpath))?
            .ok_or_else(|| io_err("open", &lpath)(io::ErrorKind::NotFound.into()))?;
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = || {
                        internal
                            .read_bounded(LOCK, LOCK_MAX)
                            .ok()
                            .flatten()
                            .map(|b| String::from_utf8_lossy(&b).trim().replace('\n', ", "))
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| "a process that has not said who it is".into())
                    };
                    if start.elapsed() >= cfg.lock_timeout {
                        return Err(EngineError::Locked {
                            path: lpath.display().to_string(),
                            holder: holder(),
                            secs: cfg.lock_timeout.as_secs(),
                        });
                    }
                    if !told {
                        tracing::warn!(
                            "waiting up to {} s for the lock on {}: held by {}",
                            cfg.lock_timeout.as_secs(),
                            cfg.dir.display(),
                            holder()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lpath)(e)),
            }
        }
        let cmdline = fs::File::open("/proc/self/cmdline")
            .and_then(|f| ima_sys::statedir::read_to_end_bounded(f, 512).or(Ok(Vec::new())))
            .unwrap_or_default();
        let cmdline: String = String::from_utf8_lossy(&cmdline)
            .chars()
            .map(|c| if c == '\0' || c.is_control() { ' ' } else { c })
            .collect();
        let me = format!("pid {}\ncmdline {}\n", std::process::id(), cmdline.trim());
        use std::os::unix::fs::FileExt;
        lock.set_len(0)
            .and_then(|()| lock.write_all_at(me.as_bytes(), 0))
            .map_err(io_err("write", &lpath))?;
        Ok(Self {
            state,
            internal,
            lock,
        })
    }
}

fn zero(a: HashAlgo) -> Result<Digest, EngineError> {
    Digest::zero(a).ok_or(EngineError::Unsupported(ima_core::hash::UnsupportedAlgo(a)))
}
