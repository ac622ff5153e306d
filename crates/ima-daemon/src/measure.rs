//! The interim [`Decide`] implementation: measurement only, into the crash-safe engine (the
//! single writer of its state directory; its lock names the holder, so `imactl measure` and a
//! second `imad` on the same directory wait or fail). The policy decision is ima-core's
//! (`IndexedMatcher`); the object is read through the event fd only.
//!
//! This adapter is replaced by a call to `ima_engine::process` (the kernel's
//! `process_measurement`: appraisal, `security.ima`'s hash algorithm, violations) once that
//! lands; until then `imad` refuses `--appraise` other than `off`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use ima_core::hash::HashAlgo;
use ima_core::policy::{self, IndexedMatcher, Policy};
use ima_core::template::{Event, Field, InodeAttrs, TemplateDesc};
use ima_engine::Engine;

use crate::decide::{Access, Decide, Verdict};

/// (dev, ino, mtime, mtime_ns, ctime, ctime_ns, size, pcr): a file already measured into a
/// PCR and unchanged since (the iint's "measured" flag).
type Measured = (u64, u64, i64, i64, i64, i64, u64, u32);

/// Measures what the policy says into the engine, and allows.
pub struct MeasureDecider {
    engine: Mutex<Engine>,
    policy: IndexedMatcher,
    subject_free: bool,
    measured: Mutex<HashSet<Measured>>,
    facts: ima_sys::fs::FactsCache,
}

impl std::fmt::Debug for MeasureDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureDecider")
            .field("subject_free", &self.subject_free)
            .finish()
    }
}

impl MeasureDecider {
    /// Decides with `policy` into `engine`.
    pub fn new(engine: Engine, policy: Policy) -> Self {
        let subject_free = !policy.rules.iter().any(|r| subject_dependent(&r.rule));
        Self {
            engine: Mutex::new(engine),
            policy: IndexedMatcher::new(policy),
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

impl Decide for MeasureDecider {
    fn decide(&self, a: &Access<'_>) -> Result<Verdict, String> {
        let allow = Verdict {
            allow: true,
            cacheable: self.subject_free,
        };
        let mut file = File::from(a.fd.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?);
        let meta = file.metadata().map_err(|e| format!("fstat: {e}"))?;
        if !meta.is_file() {
            return Ok(allow);
        }
        let facts = self
            .facts
            .facts(&file, &meta)
            .map_err(|e| format!("fstatfs: {e}"))?;
        let name = a.path.as_os_str().as_bytes();
        let ev = policy::Event {
            path: Some(name),
            ..policy::Event::access(a.func, a.mask, a.creds, &facts)
        };
        let eval = self.policy.evaluate(&ev);
        if !eval.measure() {
            return Ok(allow);
        }
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
            return Ok(allow);
        }
        let mut engine = self.engine.lock().map_err(|_| "engine lock poisoned")?;
        let boot = engine.config().template.clone();
        let desc = TemplateDesc::lookup(eval.template_name(boot.name()))
            .map_err(|e| format!("template: {e}"))?;
        let ima_hash = engine.config().ima_hash;
        let digest = ima_sys::file::hash_file(&mut file, ima_hash).map_err(|e| format!("{e}"))?;
        let legacy_digest = if desc.has(Field::D) && digest.algo() != HashAlgo::SHA1 {
            file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            Some(ima_sys::file::hash_file(&mut file, HashAlgo::SHA1).map_err(|e| e.to_string())?)
        } else {
            None
        };
        // `ima_read_xattr`: unreadable is "no label".
        let xattr =
            |n: &str| -> Option<Vec<u8>> { ima_sys::xattr::get(&file, n).unwrap_or_default() };
        let sig = desc.has(Field::Sig) || desc.has(Field::EvmSig);
        let ima_xattr = if sig { xattr("security.ima") } else { None };
        let evm_xattr = if sig { xattr("security.evm") } else { None };
        let tev = Event {
            digest: Some(digest),
            legacy_digest,
            name,
            basename: a.path.file_name().map(|b| b.as_bytes()),
            ima_xattr: ima_xattr.as_deref(),
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
        Ok(allow)
    }
}
