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
use std::sync::Mutex;

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
use crate::decide::{Access, Decide, Verdict};

/// (dev, ino, mtime, mtime_ns, ctime, ctime_ns, size, pcr): a file already measured into a
/// PCR (or audited) and unchanged since (the iint's flags).
type Seen = (u64, u64, i64, i64, i64, i64, u64, u32);

/// Measures, appraises and audits as the policy says, into the engine.
pub struct ProcessDecider {
    engine: Mutex<Engine>,
    policy: Policy,
    template: TemplateDesc,
    ima_hash: HashAlgo,
    mode: Mode,
    ima_keys: Keyring,
    evm_cfg: EvmConfig,
    subject_free: bool,
    measured: Mutex<HashSet<Seen>>,
    audited: Mutex<HashSet<Seen>>,
    facts: ima_sys::fs::FactsCache,
    audit: AuditLog,
    /// Denials are list entries too ([`ima_core::log::decision`]).
    decision_entries: bool,
}

impl std::fmt::Debug for ProcessDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessDecider")
            .field("mode", &self.mode)
            .field("subject_free", &self.subject_free)
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
        let subject_free = !policy.rules.iter().any(|r| subject_dependent(&r.rule));
        let template = engine.config().template.clone();
        let ima_hash = engine.config().ima_hash;
        Self {
            engine: Mutex::new(engine),
            policy,
            template,
            ima_hash,
            mode,
            ima_keys,
            evm_cfg: EvmConfig::default(),
            subject_free,
            measured: Mutex::new(HashSet::new()),
            audited: Mutex::new(HashSet::new()),
            facts: ima_sys::fs::FactsCache::new(),
            audit,
            decision_entries: false,
        }
    }

    /// Records the active policy and `mode` in the list now, and from now on every denial
    /// ([`ima_core::log::decision`]).
    pub fn with_decision_entries(
        mut self,
        mode: &decision::ModeRecord,
    ) -> Result<Self, ima_engine::EngineError> {
        self.append_buffer(decision::POLICY, &decision::policy_buffer(&self.policy))?;
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
        self.subject_free
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
    fn decide(&self, a: &Access<'_>) -> Result<Verdict, String> {
        let mut file = File::from(a.fd.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?);
        let meta = file.metadata().map_err(|e| format!("fstat: {e}"))?;
        if !meta.is_file() {
            return Ok(Verdict {
                allow: true,
                cacheable: self.subject_free,
            });
        }
        let facts = self
            .facts
            .facts(&file, &meta)
            .map_err(|e| format!("fstatfs: {e}"))?;
        let name = a.path.as_os_str().as_bytes();
        let access = proc_::Access {
            creds: a.creds,
            file: &facts,
            func: a.func,
            mask: Some(a.mask),
            path: Some(name),
        };
        let eval = proc_::decide(&self.policy, &access);
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
        let d = proc_::process(&self.setup(), &eval, obj, known)
            .map_err(|e| format!("{}: {e}", a.path.display()))?;
        if let Some(e) = &d.collect_error {
            tracing::warn!("{}: {e}", a.path.display());
        }
        if let Some(m) = &d.measurement {
            // As the kernel: the entry is in the list and extended before the open proceeds.
            let mut engine = locked(&self.engine);
            m.with_event(|ev| engine.add(ev, &m.template, m.pcr))
                .map_err(|e| e.to_string())?;
            engine.commit().map_err(|e| e.to_string())?;
            drop(engine);
            locked(&self.measured).insert(seen);
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
                self.append_buffer(decision::DENIAL, &buf)
                    .map_err(|e| format!("recording the denial: {e}"))?;
            }
            self.audit.emit(&d.audit, &who);
        }
        // An appraised allow is never cached: a new `security.ima` does not clear the
        // kernel's ignore mark (only a write does), and the kernel re-appraises after one.
        Ok(match d.appraisal {
            None => Verdict {
                allow: true,
                cacheable: self.subject_free,
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
