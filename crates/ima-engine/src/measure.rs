//! Measuring files into the list as the kernel's `process_measurement` would for an access
//! by the invoking user: policy match, per-inode cache, hash, template data, append.
//!
//! The walk ([`ima_sys::walk::par_walk`]) stats every file relative to its directory, without
//! following a symlink, and opens none. The policy decision and the cache lookup use that
//! `statx`; a file unchanged since it was measured into its PCR is never opened (the cache
//! hit: one `statx`). A file to hash is opened relative to the same directory descriptor,
//! never through a symlink, and refused if it is not the inode stat'ed (swapped in between);
//! everything after comes from that descriptor: the policy decision again if the owner or
//! mode changed meanwhile, the cache cookie (`fstat`), the xattrs and the hash. The walk feeds the [`crate::pool`] (largest first, one worker per core); the
//! entries are appended by the calling thread as hashes arrive, so the list order is completion
//! order (the kernel's is access order).
//!
//! The file digest's algorithm is the kernel's: the one `security.ima` names
//! (`ima_get_hash_algo`, read whenever the kernel reads the xattr: a template other than `ima`,
//! or an appraise rule matching), else `ima_hash`. So a sha512-labelled file is measured as
//! `sha512:…` and the entry can be appraised; the duplicate slot stays the `ima_hash` template
//! digest, and the legacy `d` field hashes again with sha1 (md5 if `ima_hash=md5`).
//!
//! `ima_rdwr_violation_check`: under FILE_CHECK/MMAP_CHECK, a measured file that some process
//! has open for write (scanned once per run from `/proc`, while the tree is walked) gets an
//! `open_writers` violation before its measurement, once until the run that finds it no
//! longer open for write (the kernel: until the last writer closes; a writer that closes and
//! reopens between two runs is not seen).

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use ima_core::evm::EvmConfig;
use ima_core::log::Entry;
use ima_core::policy::{Evaluation, Func, Policy, TaskCreds};
use ima_core::template::{Event, Field, InodeAttrs, TemplateDesc};

use ima_sys::fs::FactsCache;
use ima_sys::walk::{self, Item};

use crate::cache::{Cache, Cookie};
use crate::pool::Pool;
use crate::process::{Decision, Known, Object, ProcessError, Setup};
use crate::{Added, Engine, EngineError};

/// How to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// The hook the access is treated as (FILE_CHECK: read; BPRM_CHECK: executed).
    pub func: Func,
    /// Descend into directories.
    pub recursive: bool,
    /// Who accesses the files ([`ima_sys::procfs::task_creds`]).
    pub creds: TaskCreds,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Regular files looked at.
    pub files: usize,
    /// Files the policy does not measure.
    pub not_measured: usize,
    /// New list entries.
    pub added: usize,
    /// Measured files whose entry already existed (`hash_exists`).
    pub duplicates: usize,
    /// Unchanged files already measured into their PCR (cache hit: not even opened).
    pub cached: usize,
    /// `open_writers` violations added (measured files some process had open for write).
    pub violations: usize,
    /// Files that were hashed.
    pub hashed: usize,
    pub bytes_hashed: u64,
    /// Per-path errors (the run continues).
    pub errors: Vec<(PathBuf, String)>,
    /// The audit records the decisions produced (the policy's `audit` rules, failed digest
    /// collection), in list order.
    pub audit: Vec<ima_core::audit::Record>,
}

struct Job<'p> {
    entry: walk::Entry,
    /// The policy's decision for the access.
    eval: Evaluation<'p>,
    /// What the cache knows: measured into the decided PCR (only the violation is then
    /// due), or the digest of the unchanged file (no need to hash).
    known: Known,
    /// An `open_writers` violation goes first.
    violation: bool,
    /// The filesystem's type name, for audit records.
    fsname: Option<String>,
}

/// A job once its file is processed and closed.
struct Done {
    path: PathBuf,
    meta: Metadata,
    /// `security.evm`, for a violation entry of a template that records it.
    violation: Option<Option<Vec<u8>>>,
    cookie: Cookie,
    /// `None`: only the violation was due.
    decision: Option<Result<Decision, ProcessError>>,
}

/// Which files some process has open for write (`i_writecount`), scanned from `/proc` for the
/// hooks the kernel checks writers for (`ima_rdwr_violation_check`), `None` for the others.
/// Needs no engine: callers can scan while the engine opens.
pub fn open_writers(func: Func) -> Option<HashSet<(u64, u64)>> {
    writers_checked(func).then(ima_sys::procfs::open_for_write)
}

/// The hooks for which the kernel checks writers (`ima_rdwr_violation_check`).
fn writers_checked(func: Func) -> bool {
    matches!(
        func,
        Func::FileCheck | Func::MmapCheck | Func::MmapCheckReqprot
    )
}

/// Measures `paths` (files, or directories with `opts.recursive`) into `engine`, calling
/// `on_new` for every new entry, with `writers` from [`open_writers`]. Commits before
/// returning.
pub fn measure(
    engine: &mut Engine,
    opts: &Options,
    writers: Option<HashSet<(u64, u64)>>,
    paths: &[PathBuf],
    mut on_new: impl FnMut(&Entry),
) -> Result<Summary, EngineError> {
    // Roots by their absolute, symlink-free names: the names the list records.
    let mut sum = Summary::default();
    let mut roots = Vec::new();
    for p in paths {
        match std::fs::canonicalize(p) {
            Ok(r) => roots.push(r),
            Err(e) => sum.errors.push((p.clone(), e.to_string())),
        }
    }
    let ima_hash = engine.config().ima_hash;
    let boot = engine.config().template.clone();
    let evm_cfg = EvmConfig::default();
    let setup = Setup {
        template: &boot,
        ima_hash,
        measure: true,
        appraiser: None,
        evm_cfg: &evm_cfg,
    };
    // The producer (the walk) reads and marks the cache while the sink records into it.
    let cache = Mutex::new(std::mem::take(&mut engine.cache));
    let walked = Mutex::new(Walked::default());
    let facts = FactsCache::new();
    // Decided from the walk's `statx`; the file is opened (and checked to be the file
    // stat'ed) only when its content is needed: a cache miss, or an `open_writers` violation.
    // A cache hit costs one `statx`.
    let decide = |found: walk::Found| -> Result<Option<Job>, EngineError> {
        let mut st = found.stat;
        let mut opened: Option<walk::Entry> = None;
        let open = |found: &walk::Found| match found.open() {
            Ok(e) => Some(e),
            Err(e) => {
                locked(&walked).errors.push((e.path, e.source.to_string()));
                None
            }
        };
        loop {
            let f = match facts.facts_of(&st, || found.fs_fd()) {
                Ok(f) => f,
                Err(e) => {
                    locked(&walked).errors.push((found.path, e.to_string()));
                    return Ok(None);
                }
            };
            let pbytes = found.path.as_os_str().as_bytes();
            let access = crate::process::Access {
                creds: &opts.creds,
                file: &f,
                func: opts.func,
                mask: None,
                path: Some(pbytes),
            };
            let eval = crate::process::decide(&opts.policy, &access);
            let measure = eval.measure();
            if !measure {
                locked(&walked).not_measured += 1;
                // Audited only: the decision collects the digest for the record.
                if !eval.audit() {
                    return Ok(None);
                }
            }
            let key = (st.dev, st.ino);
            let open_for_write = measure && writers.as_ref().is_some_and(|w| w.contains(&key));
            let known = match locked(&cache).lookup(&st, ima_hash, eval.pcr()) {
                Some((d, measured)) if measure => Known {
                    measured,
                    digest: Some(d),
                    audited: false,
                },
                _ => Known::default(),
            };
            if known.measured && !open_for_write && !eval.audit() {
                locked(&walked).cached += 1;
                return Ok(None);
            }
            let entry = match opened.take() {
                Some(e) => e,
                None => {
                    let Some(e) = open(&found) else {
                        return Ok(None);
                    };
                    // Owner or mode changed between the walk and the open: decided again
                    // from the open file.
                    let now = walk::Stat::of_metadata(&e.meta);
                    if (now.uid, now.gid, now.mode) != (st.uid, st.gid, st.mode) {
                        st = now;
                        opened = Some(e);
                        continue;
                    }
                    e
                }
            };
            // `ima_rdwr_violation_check`: a read by a measuring rule of a file some process
            // has open for write, once until the writers are gone, before the measurement.
            let violation = open_for_write && locked(&cache).emit_open_writers(key);
            if known.measured {
                locked(&walked).cached += 1;
                if !violation && !eval.audit() {
                    return Ok(None);
                }
            }
            return Ok(Some(Job {
                entry,
                eval,
                known,
                violation,
                fsname: f.fsname,
            }));
        }
    };
    let failed: Mutex<Option<EngineError>> = Mutex::new(None);
    let mut result = Ok(());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new().run(
        |feeder| {
            walk::par_walk(&roots, opts.recursive, threads, |item| match item {
                Ok(Item::File(entry)) => {
                    locked(&walked).files += 1;
                    if locked(&failed).is_some() {
                        return;
                    }
                    match decide(entry) {
                        Ok(Some(job)) => {
                            let size = if job.known.measured || job.known.digest.is_some() {
                                0
                            } else {
                                job.entry.meta.len()
                            };
                            feeder.push(size, job);
                        }
                        Ok(None) => {}
                        Err(e) => *locked(&failed) = Some(e),
                    }
                }
                // Only regular files are measured.
                Ok(Item::Skipped { .. }) => {}
                Err(e) => locked(&walked).errors.push((e.path, e.source.to_string())),
            });
        },
        |job| process_job(job, &setup),
        |done| {
            if result.is_ok() {
                let mut c = locked(&cache);
                result = append(engine, &mut c, done, &mut sum, &mut on_new);
            }
        },
    );
    engine.cache = cache.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    result?;
    let w = walked.into_inner().unwrap_or_else(|p| p.into_inner());
    sum.files = w.files;
    sum.not_measured = w.not_measured;
    sum.cached = w.cached;
    sum.errors.extend(w.errors);
    if let Some(w) = &writers {
        engine.cache.retain_open_writers(w);
    }
    engine.commit()?;
    Ok(sum)
}

/// What the walk counted.
#[derive(Default)]
struct Walked {
    files: usize,
    not_measured: usize,
    cached: usize,
    errors: Vec<(PathBuf, String)>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn inode_attrs(m: &Metadata) -> InodeAttrs {
    InodeAttrs {
        uid: m.uid(),
        gid: m.gid(),
        mode: (m.mode() & 0xffff) as u16,
    }
}

fn needs_xattrs(t: &TemplateDesc) -> bool {
    [Field::Sig, Field::EvmSig].iter().any(|f| t.has(*f))
}

/// Runs `process_measurement` on a job's open file, then closes it.
fn process_job(job: Job<'_>, setup: &Setup<'_>) -> Done {
    let Job {
        entry,
        eval,
        known,
        violation,
        fsname,
    } = job;
    let walk::Entry {
        mut file,
        meta,
        path,
        ..
    } = entry;
    let violation = violation.then(|| {
        if needs_xattrs(setup.template) {
            ima_sys::xattr::get(&file, "security.evm").unwrap_or(None)
        } else {
            None
        }
    });
    // The cookie is the walk's `fstat`, taken before hashing: a change during the hash shows
    // up next time.
    let cookie = Cookie::of(&meta);
    let decision = (!known.measured || eval.audit()).then(|| {
        let obj = Object {
            file: &mut file,
            meta: &meta,
            path: path.as_os_str().as_bytes(),
            fsname: fsname.as_deref(),
        };
        crate::process::process(setup, &eval, obj, known)
    });
    Done {
        path,
        meta,
        violation,
        cookie,
        decision,
    }
}

fn append(
    engine: &mut Engine,
    cache: &mut Cache,
    done: Done,
    sum: &mut Summary,
    on_new: &mut impl FnMut(&Entry),
) -> Result<(), EngineError> {
    let Done {
        path,
        meta,
        violation,
        cookie,
        decision,
    } = done;
    let name = path.as_os_str().as_bytes();
    if let Some(evm) = violation {
        let ev = Event {
            name,
            basename: path.file_name().map(|b| b.as_bytes()),
            evm_xattr: evm.as_deref(),
            inode: Some(inode_attrs(&meta)),
            ..Event::default()
        };
        let e = engine.add_violation(&ev)?;
        sum.violations += 1;
        on_new(&e);
    }
    let d = match decision {
        None => return Ok(()),
        Some(Ok(d)) => d,
        Some(Err(ProcessError::Template { name, source })) => {
            return Err(EngineError::Template { name, source });
        }
        Some(Err(e)) => {
            sum.errors.push((path, ima_core::error_chain(&e)));
            return Ok(());
        }
    };
    if d.bytes_hashed > 0 {
        sum.hashed += 1;
        sum.bytes_hashed += d.bytes_hashed;
    }
    sum.audit.extend(d.audit);
    if let Some(e) = d.collect_error {
        sum.errors.push((path, e));
        return Ok(());
    }
    let Some(m) = d.measurement else {
        return Ok(());
    };
    match m.with_event(|ev| engine.add(ev, &m.template, m.pcr))? {
        Added::New(e) => {
            sum.added += 1;
            on_new(&e);
        }
        Added::Duplicate => sum.duplicates += 1,
    }
    let ima_hash = engine.config().ima_hash;
    cache.record((meta.dev(), meta.ino()), cookie, ima_hash, m.digest, m.pcr);
    Ok(())
}
