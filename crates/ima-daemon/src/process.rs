//! The [`Decide`] implementation: the kernel's `process_measurement` for one event, through
//! `ima_engine::process` (the policy decision and the appraisal, shared with `imactl
//! appraise`, `measure` and `policy explain`) and the crash-safe engine (the single writer of
//! its state directory; its lock names the holder, so `imactl measure` and a second `imad` on
//! the same directory wait or fail). The object is read through the event fd only.
//!
//! As `process_measurement`: the file is hashed with the algorithm `security.ima` names
//! (`ima_get_hash_algo`), measured (the entry is in the list and extended before the open
//! proceeds), then appraised; a failure denies in enforce mode (fanotify's `FAN_DENY`: EPERM
//! to the opener, where the kernel returns EACCES), is repaired through the fd in fix mode,
//! and is only logged in log mode.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ima_core::appraise::Mode;
use ima_core::digsig::Keyring;
use ima_core::evm::{EvmConfig, EvmKeys};
use ima_core::hash::HashAlgo;
use ima_core::log::decision;
use ima_core::policy::{self, Policy};
use ima_core::template::TemplateDesc;
use ima_engine::Engine;
use ima_engine::process::{self as proc_, Appraisal, Appraiser, Known, Object, Setup};

use crate::audit::AuditLog;
use crate::decide::{Access, Decide, DecideError, Verdict};

/// (dev, ino, mtime, mtime_ns, ctime, ctime_ns, size, pcr): a file already measured into a
/// PCR (or audited) and unchanged since (the iint's flags).
type Seen = (u64, u64, i64, i64, i64, i64, u64, u32);

/// Measures, appraises and audits as the policy says, into the engine.
pub struct ProcessDecider {
    engine: Mutex<Engine>,
    /// The active policy and whether no rule can tell openers apart, swapped whole by
    /// [`ProcessDecider::reload`].
    policy: RwLock<Active>,
    /// Bumped by every policy change ([`Decide::generation`]).
    generation: AtomicU64,
    template: TemplateDesc,
    ima_hash: HashAlgo,
    mode: Mode,
    ima_keys: Keyring,
    evm_cfg: EvmConfig,
    measured: Mutex<HashSet<Seen>>,
    audited: Mutex<HashSet<Seen>>,
    facts: ima_sys::fs::FactsCache,
    audit: AuditLog,
    /// Denials are list entries too ([`ima_core::log::decision`]).
    decision_entries: bool,
    /// The last decision per path, for `imactl daemon explain`.
    last: Mutex<LastDecisions>,
    /// `policy_version` persisted here (anti-rollback across restarts); `None`: not kept.
    version_file: Option<PathBuf>,
    counts: Counts,
}

/// The active policy.
#[derive(Debug)]
struct Active {
    policy: Arc<Policy>,
    subject_free: bool,
    /// Where it was loaded from (`None`: built-in).
    source: Option<PathBuf>,
}

/// Decisions made.
#[derive(Debug, Default)]
struct Counts {
    decided: AtomicU64,
    measured: AtomicU64,
    denied: AtomicU64,
    loads: AtomicU64,
}

/// At most this many paths remembered for `explain` (the oldest forgotten first).
const LAST_DECISIONS: usize = 4096;

/// The last decision for each recent path, in arrival order.
#[derive(Debug, Default)]
struct LastDecisions {
    by_path: std::collections::HashMap<PathBuf, Explained>,
    order: std::collections::VecDeque<PathBuf>,
}

/// What `imactl daemon explain PATH` reports: the rules that decided the last access to a
/// path and its verdict, and what would make a failure pass.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explained {
    pub path: String,
    pub func: String,
    pub pid: i32,
    pub uid: u32,
    /// The deciding rules (line: text) per action, `None` where no rule decided.
    pub measure: Option<String>,
    pub appraise: Option<String>,
    pub audit: Option<String>,
    pub allowed: bool,
    /// The appraisal's status and cause when it failed (or was fixed).
    pub status: Option<String>,
    pub cause: Option<String>,
    pub fixed: bool,
    /// What would make it pass, in words.
    pub remedy: Option<String>,
    /// Seconds since the epoch.
    pub time: u64,
}

/// What `imactl daemon status` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub pid: u32,
    pub appraise: String,
    pub template: String,
    pub hash: String,
    pub policy_source: String,
    pub policy_rules: usize,
    pub policy_version: Option<u64>,
    pub policy_generation: u64,
    pub decided: u64,
    pub measured: u64,
    pub denied: u64,
    pub policy_loads: u64,
    pub list_entries: u64,
}

/// Why a policy was not loaded; the running policy is untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("{0}")]
    Read(String),
    /// The policy text does not parse (every bad line, with its number).
    #[error("{path}:{errors}")]
    Parse { path: String, errors: String },
    /// The active policy requires the policy file to be appraised (`appraise
    /// func=POLICY_CHECK`), and it failed.
    #[error("{path}: signed policy required: appraisal {status}: {cause}")]
    Unsigned {
        path: String,
        status: String,
        cause: String,
    },
    /// `policy_version` lower than the one loaded before (rollback).
    #[error(
        "{path}: policy_version {new} is older than the version already loaded ({loaded}): \
         refused as a rollback"
    )]
    Rollback { path: String, new: u64, loaded: u64 },
    #[error("recording the policy in the list")]
    Record(#[from] ima_engine::EngineError),
    #[error("{path}: recording the policy version")]
    VersionFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl std::fmt::Debug for ProcessDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessDecider")
            .field("mode", &self.mode)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl ProcessDecider {
    /// Decides with `policy` into `engine`; appraisal in `mode` against `ima_keys` (EVM not
    /// initialised: no EVM keys, as a kernel without them); records to `audit`.
    pub fn new(
        engine: Engine,
        policy: Policy,
        mode: Mode,
        ima_keys: Keyring,
        audit: AuditLog,
    ) -> Self {
        let subject_free = subject_free(&policy);
        let template = engine.config().template.clone();
        let ima_hash = engine.config().ima_hash;
        Self {
            engine: Mutex::new(engine),
            policy: RwLock::new(Active {
                policy: Arc::new(policy),
                subject_free,
                source: None,
            }),
            generation: AtomicU64::new(0),
            template,
            ima_hash,
            mode,
            ima_keys,
            evm_cfg: EvmConfig::default(),
            measured: Mutex::new(HashSet::new()),
            audited: Mutex::new(HashSet::new()),
            facts: ima_sys::fs::FactsCache::new(),
            audit,
            decision_entries: false,
            last: Mutex::new(LastDecisions::default()),
            version_file: None,
            counts: Counts::default(),
        }
    }

    /// Keeps the highest `policy_version` loaded in `file` (anti-rollback across restarts)
    /// and checks the active policy against it; `source` is the policy's file (`None`:
    /// built-in), reloaded by a reload without a path.
    pub fn with_policy_version_file(
        mut self,
        file: PathBuf,
        source: Option<PathBuf>,
    ) -> Result<Self, ReloadError> {
        let shown = source.as_ref().map_or_else(
            || "the built-in policy".to_owned(),
            |p| p.display().to_string(),
        );
        let version = self.active().policy.version;
        check_version(&file, version, &shown)?;
        self.version_file = Some(file);
        self.policy
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .source = source;
        Ok(self)
    }

    fn active(&self) -> std::sync::RwLockReadGuard<'_, Active> {
        self.policy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the policy in `path` (`None`: the file the active one came from) as the kernel
    /// loads `echo PATH > policy`: read whole, parsed all or nothing; when the active policy
    /// appraises `POLICY_CHECK`, the file must pass appraisal (a signed policy); its
    /// `policy_version` may not be lower than any loaded before. On success it replaces the
    /// active policy at once, is recorded in the list (`imad-policy`), and the allow cache is
    /// flushed; on failure nothing changes. `requester` is the writer (its credentials decide
    /// the POLICY_CHECK access, as the kernel's `current`).
    pub fn reload(
        &self,
        path: Option<&Path>,
        requester: &ima_core::policy::TaskCreds,
    ) -> Result<Status, ReloadError> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => self.active().source.clone().ok_or_else(|| {
                ReloadError::Read(
                    "the active policy is built in: name a policy file to load".into(),
                )
            })?,
        };
        let shown = path.display().to_string();
        let text = ima_sys::fs::read_limited(&path, POLICY_LIMIT)
            .map_err(|e| ReloadError::Read(format!("{shown}: {e}")))?;
        let text = String::from_utf8(text)
            .map_err(|e| ReloadError::Read(format!("{shown}: not UTF-8 text: {e}")))?;
        let new = Policy::parse(&text).map_err(|e| ReloadError::Parse {
            path: shown.clone(),
            errors: e.to_string(),
        })?;
        self.policy_check(&path, requester)?;
        if let Some(f) = &self.version_file {
            check_version(f, new.version, &shown)?;
        }
        if self.decision_entries {
            self.append_buffer(decision::POLICY, &decision::policy_buffer(&new))?;
        }
        if let (Some(f), Some(v)) = (&self.version_file, new.version) {
            state_file(f, |dir, name| {
                dir.replace(name, format!("{v}\n").as_bytes(), 0o600, true)
            })
            .map_err(|source| ReloadError::VersionFile {
                path: f.display().to_string(),
                source,
            })?;
        }
        {
            let mut a = self.policy.write().unwrap_or_else(|p| p.into_inner());
            a.subject_free = subject_free(&new);
            a.policy = Arc::new(new);
            a.source = Some(path);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.counts.loads.fetch_add(1, Ordering::Relaxed);
        tracing::info!("policy loaded from {shown}");
        Ok(self.status())
    }

    /// The POLICY_CHECK of the active policy on the file `path` (`ima_read_file` for
    /// `READING_POLICY`): measured if a rule says so, and, if a rule appraises it, it must
    /// pass (in every mode but off: a policy is never loaded on a failed appraisal).
    fn policy_check(
        &self,
        path: &Path,
        requester: &ima_core::policy::TaskCreds,
    ) -> Result<(), ReloadError> {
        let shown = path.display().to_string();
        let read = |e: std::io::Error| ReloadError::Read(format!("{shown}: {e}"));
        let mut file = ima_sys::fs::open_regular_nofollow(path).map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        let facts = self.facts.facts(&file, &meta).map_err(read)?;
        let name = path.as_os_str().as_bytes();
        let active = Arc::clone(&self.active().policy);
        let eval = proc_::decide(
            &active,
            &proc_::Access {
                creds: requester,
                file: &facts,
                func: ima_core::policy::Func::PolicyCheck,
                mask: None,
                path: Some(name),
            },
        );
        let obj = Object {
            file: &mut file,
            meta: &meta,
            path: name,
            fsname: facts.fsname.as_deref(),
        };
        let d = proc_::process(&self.setup(), &eval, obj, Known::default())
            .map_err(|e| ReloadError::Read(format!("{shown}: {e}")))?;
        if let Some(m) = &d.measurement {
            let mut engine = locked(&self.engine);
            m.with_event(|ev| engine.add(ev, &m.template, m.pcr))
                .and_then(|_| engine.commit())?;
        }
        match d.appraisal {
            Some(Appraisal::Fail { status, cause, .. }) => Err(ReloadError::Unsigned {
                path: shown,
                status: status.to_string(),
                cause: cause.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The daemon's state for `imactl daemon status`.
    pub fn status(&self) -> Status {
        let a = self.active();
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Status {
            pid: std::process::id(),
            appraise: format!("{:?}", self.mode).to_lowercase(),
            template: self.template.name().to_owned(),
            hash: self.ima_hash.to_string(),
            policy_source: a
                .source
                .as_ref()
                .map_or_else(|| "built-in".to_owned(), |p| p.display().to_string()),
            policy_rules: a.policy.rules.len(),
            policy_version: a.policy.version,
            policy_generation: self.generation.load(Ordering::SeqCst),
            decided: l(&self.counts.decided),
            measured: l(&self.counts.measured),
            denied: l(&self.counts.denied),
            policy_loads: l(&self.counts.loads),
            list_entries: locked(&self.engine).len(),
        }
    }

    /// The last decision for `path`, if it was decided since it was last forgotten.
    pub fn explain(&self, path: &Path) -> Option<Explained> {
        locked(&self.last).by_path.get(path).cloned()
    }

    fn remember(&self, e: Explained) {
        let mut l = locked(&self.last);
        let key = PathBuf::from(&e.path);
        if l.by_path.insert(key.clone(), e).is_none() {
            l.order.push_back(key);
            while l.order.len() > LAST_DECISIONS {
                if let Some(old) = l.order.pop_front() {
                    l.by_path.remove(&old);
                }
            }
        }
    }

    /// Records the active policy and `mode` in the list now, and from now on every denial
    /// ([`ima_core::log::decision`]).
    pub fn with_decision_entries(
        mut self,
        mode: &decision::ModeRecord,
    ) -> Result<Self, ima_engine::EngineError> {
        let policy = Arc::clone(&self.active().policy);
        self.append_buffer(decision::POLICY, &decision::policy_buffer(&policy))?;
        self.append_buffer(decision::MODE, &mode.encode())?;
        self.decision_entries = true;
        Ok(self)
    }

    /// Appends an `ima-buf` entry named `name` over `buf` into the list's PCR and commits
    /// it (a duplicate of an entry already in the list is not added, as the kernel's).
    fn append_buffer(&self, name: &str, buf: &[u8]) -> Result<(), ima_engine::EngineError> {
        let desc = TemplateDesc::lookup("ima-buf").map_err(|source| {
            ima_engine::EngineError::Template {
                name: "ima-buf".into(),
                source,
            }
        })?;
        let digest = self
            .ima_hash
            .digest(buf)
            .map_err(ima_engine::EngineError::Unsupported)?;
        let ev = ima_core::template::Event {
            digest: Some(digest),
            name: name.as_bytes(),
            buf: Some(buf),
            ..Default::default()
        };
        let mut engine = locked(&self.engine);
        let pcr = engine.config().pcr;
        engine.add(&ev, &desc, pcr)?;
        engine.commit()
    }

    /// Whether no rule can tell openers apart (so an allow may be cached in the kernel).
    pub fn subject_free(&self) -> bool {
        self.active().subject_free
    }

    /// Closes the engine (commits what is pending).
    pub fn close(self) -> Result<(), ima_engine::EngineError> {
        match self.engine.into_inner() {
            Ok(e) => e.close(),
            Err(p) => p.into_inner().close(),
        }
    }

    fn setup(&self) -> Setup<'_> {
        Setup {
            template: &self.template,
            ima_hash: self.ima_hash,
            measure: true,
            appraiser: (self.mode != Mode::Off).then_some(Appraiser {
                mode: self.mode,
                ima_hash: self.ima_hash,
                ima_keys: &self.ima_keys,
                evm_cfg: &self.evm_cfg,
                evm_keys: EvmKeys {
                    hmac: None,
                    x509: None,
                },
                uuid: None,
            }),
            evm_cfg: &self.evm_cfg,
        }
    }
}

/// `/etc/ima/ima-policy`-sized files are a few KiB; the limit leaves room for generated ones.
const POLICY_LIMIT: u64 = 16 << 20;

/// No rule can tell openers apart (so an allow may be cached in the kernel).
fn subject_free(p: &Policy) -> bool {
    !p.rules.iter().any(|r| subject_dependent(&r.rule))
}

/// `f` on the file `path` names, reached through its directory's `statedir` handle
/// (`O_NOFOLLOW`, the directory refused if others control it).
fn state_file<T>(
    path: &Path,
    f: impl FnOnce(&ima_sys::statedir::Dir, &str) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(std::io::Error::other("not a file name"));
    };
    f(&ima_sys::statedir::Dir::open_existing(parent)?, name)
}

/// Refuses `version` if lower than the one recorded in `file` (a missing version is 0).
fn check_version(file: &Path, version: Option<u64>, shown: &str) -> Result<(), ReloadError> {
    // Through the state directory's handle: never a symlink, never more than a number.
    let text = state_file(file, |dir, name| dir.read_bounded(name, 32));
    let loaded = match text {
        Ok(Some(t)) => String::from_utf8_lossy(&t)
            .trim()
            .parse::<u64>()
            .map_err(|_| {
                ReloadError::Read(format!(
                    "{}: not a policy version (remove it to start over)",
                    file.display()
                ))
            })?,
        Ok(None) => 0,
        Err(e) => return Err(ReloadError::Read(format!("{}: {e}", file.display()))),
    };
    let new = version.unwrap_or(0);
    if new < loaded {
        return Err(ReloadError::Rollback {
            path: shown.to_owned(),
            new,
            loaded,
        });
    }
    Ok(())
}

/// A rule whose match depends on who opens, or on attributes that change without a write
/// (which does not clear the kernel's ignore mark): ids, owners, LSM labels, extensions
/// (`exe=`, `cgroup=`, paths).
fn subject_dependent(r: &policy::Rule) -> bool {
    r.uid.is_some()
        || r.gid.is_some()
        || r.fowner.is_some()
        || r.fgroup.is_some()
        || r.lsm.iter().any(Option::is_some)
        || r.uses_extensions()
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Decide for ProcessDecider {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn decide(&self, a: &Access<'_>) -> Result<Verdict, DecideError> {
        // One policy for the whole decision, whatever a reload does meanwhile.
        let (policy, subject_free) = {
            let act = self.active();
            (Arc::clone(&act.policy), act.subject_free)
        };
        self.counts.decided.fetch_add(1, Ordering::Relaxed);
        let io = |what| move |source| DecideError::Io { what, source };
        let mut file = File::from(a.fd.try_clone_to_owned().map_err(io("dup"))?);
        let meta = file.metadata().map_err(io("fstat"))?;
        if !meta.is_file() {
            return Ok(Verdict {
                allow: true,
                cacheable: subject_free,
            });
        }
        let facts = self.facts.facts(&file, &meta).map_err(io("fstatfs"))?;
        let name = a.path.as_os_str().as_bytes();
        let access = proc_::Access {
            creds: a.creds,
            file: &facts,
            func: a.func,
            mask: Some(a.mask),
            path: Some(name),
        };
        let eval = proc_::decide(&policy, &access);
        let seen: Seen = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.size(),
            eval.pcr(),
        );
        let known = Known {
            measured: locked(&self.measured).contains(&seen),
            digest: None,
            audited: locked(&self.audited).contains(&seen),
        };
        let obj = Object {
            file: &mut file,
            meta: &meta,
            path: name,
            fsname: facts.fsname.as_deref(),
        };
        let d = proc_::process(&self.setup(), &eval, obj, known)?;
        if let Some(e) = &d.collect_error {
            tracing::warn!("{}: {e}", a.path.display());
        }
        if let Some(m) = &d.measurement {
            // As the kernel: the entry is in the list and extended before the open proceeds.
            let mut engine = locked(&self.engine);
            m.with_event(|ev| engine.add(ev, &m.template, m.pcr))?;
            engine.commit()?;
            drop(engine);
            locked(&self.measured).insert(seen);
            self.counts.measured.fetch_add(1, Ordering::Relaxed);
        }
        if eval.audit() && d.digest.is_some() {
            locked(&self.audited).insert(seen);
        }
        let denied = d.denied();
        if (!d.audit.is_empty() && self.audit.enabled()) || (denied && self.decision_entries) {
            let who = ima_sys::procfs::audit_subject(u32::try_from(a.pid).ok())
                // The opener is gone: its records still go out, with what we know.
                .unwrap_or_else(|_| ima_core::audit::Subject {
                    pid: a.pid,
                    uid: a.creds.uid,
                    euid: a.creds.euid,
                    suid: a.creds.suid,
                    fsuid: a.creds.fsuid,
                    gid: a.creds.gid,
                    egid: a.creds.egid,
                    sgid: a.creds.sgid,
                    fsgid: a.creds.fsgid,
                    auid: u32::MAX,
                    ses: u32::MAX,
                    ..Default::default()
                });
            if denied
                && self.decision_entries
                && let Some(fail) = d.audit.iter().find(|r| {
                    r.kind() == ima_core::audit::Kind::Data
                        && matches!(r, ima_core::audit::Record::Message { ok: false, .. })
                })
            {
                // In the list before the opener sees the denial.
                let buf = decision::denial_buffer(fail, &who, name, d.digest);
                self.append_buffer(decision::DENIAL, &buf)?;
            }
            self.audit.emit(&d.audit, &who);
        }
        self.remember(explained(a, &eval, &d));
        if denied {
            self.counts.denied.fetch_add(1, Ordering::Relaxed);
        }
        // An appraised allow is never cached: a new `security.ima` does not clear the
        // kernel's ignore mark (only a write does), and the kernel re-appraises after one.
        Ok(match d.appraisal {
            None => Verdict {
                allow: true,
                cacheable: subject_free,
            },
            Some(Appraisal::Pass { was, fixed }) => {
                if let (Some((status, cause)), Some(_)) = (was, fixed) {
                    tracing::info!("{}: fixed ({status}: {cause})", a.path.display());
                }
                Verdict {
                    allow: true,
                    cacheable: false,
                }
            }
            Some(Appraisal::Fail {
                status,
                cause,
                denied,
            }) => {
                tracing::warn!(
                    "{}: appraisal {status}: {cause} (pid {}, {}){}",
                    a.path.display(),
                    a.pid,
                    a.func,
                    if denied { "; denied" } else { "" }
                );
                Verdict {
                    allow: !denied,
                    cacheable: false,
                }
            }
        })
    }
}

/// What `explain` keeps of a decision.
fn explained(a: &Access<'_>, eval: &policy::Evaluation<'_>, d: &proc_::Decision) -> Explained {
    let rule = |r: Option<policy::Decided<'_>>| r.map(|r| format!("line {}: {}", r.line, r.text));
    let (status, cause, fixed) = match &d.appraisal {
        Some(Appraisal::Fail { status, cause, .. }) => {
            (Some(status.to_string()), Some(*cause), false)
        }
        Some(Appraisal::Pass {
            was: Some((status, cause)),
            ..
        }) => (Some(status.to_string()), Some(*cause), true),
        _ => (None, None, false),
    };
    Explained {
        path: a.path.display().to_string(),
        func: a.func.to_string(),
        pid: a.pid,
        uid: a.creds.uid,
        measure: rule(eval.measure),
        appraise: rule(eval.appraise),
        audit: rule(eval.audit),
        allowed: !d.denied(),
        status,
        cause: cause.map(|c| c.to_string()),
        fixed,
        remedy: cause.filter(|_| !fixed).map(|c| remedy(c).to_owned()),
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_secs()),
    }
}

/// What would make a file with this appraisal failure pass.
fn remedy(c: ima_core::appraise::Cause) -> &'static str {
    use ima_core::appraise::Cause as C;
    match c {
        C::MissingHash => {
            "label it: `imactl hash FILE` (a digest), or sign it with a key of --keys \
             (`imactl sign`); or run imad once with --appraise fix"
        }
        C::InvalidHash => {
            "the content changed since it was labelled: relabel it if the change is wanted \
             (`imactl hash FILE`, or --appraise fix), else restore the file"
        }
        C::ImaSignatureRequired => {
            "the rule requires a signature (appraise_type=imasig): sign it with a key of --keys \
             (`imactl sign`); a digest label is not enough"
        }
        C::InvalidSignature | C::UnverifiableSignature => {
            "the signature does not verify with the keys imad was given: sign it again with a \
             key whose certificate is in --keys, or add that certificate"
        }
        C::InvalidSignatureVersion | C::UnknownImaData => {
            "security.ima holds a format this kernel does not accept: sign or label it again"
        }
        C::DeniedHashAlgorithm => {
            "the file is labelled with a hash algorithm the rule's appraise_algos= does not \
             allow: label it again with an allowed one (--hash)"
        }
        C::CollectFailed => "the file could not be read or hashed: check it and its filesystem",
        _ => "see the cause; `imactl appraise` with the same policy says more",
    }
}
