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
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use ima_core::appraise::Mode;
use ima_core::digsig::Keyring;
use ima_core::evm::{EvmConfig, EvmKeys};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::policy::{self, Policy};
use ima_core::template::{Event, Field, InodeAttrs, TemplateDesc};
use ima_engine::Engine;
use ima_engine::process::{self as proc_, Appraisal, Appraiser};

use crate::decide::{Access, Decide, Verdict};

/// (dev, ino, mtime, mtime_ns, ctime, ctime_ns, size, pcr): a file already measured into a
/// PCR and unchanged since (the iint's "measured" flag).
type Measured = (u64, u64, i64, i64, i64, i64, u64, u32);

/// Measures and appraises as the policy says, into the engine.
pub struct ProcessDecider {
    engine: Mutex<Engine>,
    policy: Policy,
    mode: Mode,
    ima_keys: Keyring,
    evm_cfg: EvmConfig,
    subject_free: bool,
    measured: Mutex<HashSet<Measured>>,
    facts: ima_sys::fs::FactsCache,
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
    /// initialised: no EVM keys, as a kernel without them).
    pub fn new(engine: Engine, policy: Policy, mode: Mode, ima_keys: Keyring) -> Self {
        let subject_free = !policy.rules.iter().any(|r| subject_dependent(&r.rule));
        Self {
            engine: Mutex::new(engine),
            policy,
            mode,
            ima_keys,
            evm_cfg: EvmConfig::default(),
            subject_free,
            measured: Mutex::new(HashSet::new()),
            facts: ima_sys::fs::FactsCache::new(),
        }
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

    fn appraiser(&self, ima_hash: HashAlgo) -> Appraiser<'_> {
        Appraiser {
            mode: self.mode,
            ima_hash,
            ima_keys: &self.ima_keys,
            evm_cfg: &self.evm_cfg,
            evm_keys: EvmKeys {
                hmac: None,
                x509: None,
            },
            uuid: None,
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
        let appraise = match proc_::requirements(&eval) {
            Some(req) if self.mode != Mode::Off => Some(req),
            _ => None,
        };
        let ima_hash = self
            .engine
            .lock()
            .map_err(|_| "engine lock poisoned")?
            .config()
            .ima_hash;
        let mut digests: Vec<Digest> = Vec::new();
        if eval.measure() {
            self.measure(a, &mut file, &meta, &eval, ima_hash, &mut digests)?;
        }
        let Some(req) = appraise else {
            return Ok(Verdict {
                allow: true,
                cacheable: self.subject_free,
            });
        };
        let outcome = self
            .appraiser(ima_hash)
            .appraise(&mut file, meta.size(), req, &mut digests)
            .map_err(|e| format!("appraise: {e}"))?;
        // An appraised allow is never cached: a new `security.ima` does not clear the
        // kernel's ignore mark (only a write does), and the kernel re-appraises after one.
        Ok(match outcome {
            Appraisal::Pass { was, fixed } => {
                if let (Some((status, cause)), Some(_)) = (was, fixed) {
                    tracing::info!("{}: fixed ({status}: {cause})", a.path.display());
                }
                Verdict {
                    allow: true,
                    cacheable: false,
                }
            }
            Appraisal::Fail {
                status,
                cause,
                denied,
            } => {
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

impl ProcessDecider {
    /// `ima_collect_measurement` + `ima_store_measurement` for the open file.
    fn measure(
        &self,
        a: &Access<'_>,
        file: &mut File,
        meta: &std::fs::Metadata,
        eval: &policy::Evaluation<'_>,
        ima_hash: HashAlgo,
        digests: &mut Vec<Digest>,
    ) -> Result<(), String> {
        let pcr = eval.pcr();
        let key = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.size(),
            pcr,
        );
        if self.measured.lock().map_err(|_| "poisoned")?.contains(&key) {
            return Ok(());
        }
        // `ima_read_xattr`: unreadable is "no label".
        fn xattr(f: &File, n: &str) -> Option<Vec<u8>> {
            ima_sys::xattr::get(f, n).unwrap_or_default()
        }
        let ima_xattr = xattr(file, "security.ima");
        let algo = ima_core::appraise::hash_algo(ima_xattr.as_deref(), ima_hash);
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let digest = ima_sys::file::hash_file(file, algo).map_err(|e| format!("hash: {e}"))?;
        digests.push(digest);
        let mut engine = self.engine.lock().map_err(|_| "engine lock poisoned")?;
        let boot = engine.config().template.clone();
        let desc = TemplateDesc::lookup(eval.template_name(boot.name()))
            .map_err(|e| format!("template: {e}"))?;
        let legacy = match digest.algo() {
            HashAlgo::SHA1 | HashAlgo::MD5 => None,
            _ if desc.has(Field::D) => {
                let a = if ima_hash == HashAlgo::MD5 {
                    HashAlgo::MD5
                } else {
                    HashAlgo::SHA1
                };
                file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
                Some(ima_sys::file::hash_file(file, a).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let sig = desc.has(Field::Sig) || desc.has(Field::EvmSig);
        let evm_xattr = if sig {
            xattr(file, "security.evm")
        } else {
            None
        };
        let tev = Event {
            digest: Some(digest),
            legacy_digest: legacy,
            name: a.path.as_os_str().as_bytes(),
            basename: a.path.file_name().map(|b| b.as_bytes()),
            ima_xattr: if sig { ima_xattr.as_deref() } else { None },
            evm_xattr: evm_xattr.as_deref(),
            inode: Some(InodeAttrs {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: (meta.mode() & 0xffff) as u16,
            }),
            ..Event::default()
        };
        // As the kernel: the entry is in the list and extended before the open proceeds.
        engine.add(&tev, &desc, pcr).map_err(|e| e.to_string())?;
        engine.commit().map_err(|e| e.to_string())?;
        drop(engine);
        self.measured.lock().map_err(|_| "poisoned")?.insert(key);
        Ok(())
    }
}
