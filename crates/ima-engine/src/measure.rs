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

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::Entry;
use ima_core::policy::{Func, Policy, TaskCreds};
use ima_core::template::{Event, Field, InodeAttrs, TemplateDesc};

use ima_sys::fs::FactsCache;
use ima_sys::walk::{self, Item};

use crate::cache::{Cache, Cookie};
use crate::pool::Pool;
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
}

struct Job {
    entry: walk::Entry,
    pcr: u32,
    template: TemplateDesc,
    /// Whether the kernel would read `security.ima` here (appraising, or a template other
    /// than `ima`), and so hash with the algorithm it names.
    reads_xattr: bool,
    /// Measure (else only the violation is due: the file is measured into this PCR already).
    measure: bool,
    /// Digest from the cache (unchanged file, new PCR): no need to hash.
    known: Option<Digest>,
    /// An `open_writers` violation goes first.
    violation: bool,
}

/// A job once its file is hashed and closed.
struct Done {
    path: PathBuf,
    meta: Metadata,
    pcr: u32,
    template: TemplateDesc,
    measure: bool,
    /// `security.evm`, for a violation entry of a template that records it.
    violation: Option<Option<Vec<u8>>>,
    result: std::io::Result<Hashed>,
}

struct Hashed {
    digest: Digest,
    /// For the legacy `d` field when `digest` is neither sha1 nor md5.
    legacy_digest: Option<Digest>,
    cookie: Cookie,
    ima_xattr: Option<Vec<u8>>,
    evm_xattr: Option<Vec<u8>>,
    bytes: u64,
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
    // The producer (the walk) reads and marks the cache while the sink records into it.
    let cache = Mutex::new(std::mem::take(&mut engine.cache));
    let walked = Mutex::new(Walked::default());
    let facts = FactsCache::new();
    let templates: Mutex<HashMap<String, TemplateDesc>> = Mutex::new(HashMap::new());
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
            if !eval.measure() {
                locked(&walked).not_measured += 1;
                return Ok(None);
            }
            let pcr = eval.pcr();
            let tname = eval.template_name(boot.name());
            let template = {
                let mut t = locked(&templates);
                match t.get(tname) {
                    Some(t) => t.clone(),
                    None => {
                        let d = TemplateDesc::lookup(tname).map_err(|source| {
                            EngineError::Template {
                                name: tname.to_owned(),
                                source,
                            }
                        })?;
                        t.insert(tname.to_owned(), d.clone());
                        d
                    }
                }
            };
            let key = (st.dev, st.ino);
            let open_for_write = writers.as_ref().is_some_and(|w| w.contains(&key));
            let (measure, known) = match locked(&cache).lookup(&st, ima_hash, pcr) {
                Some((_, true)) => (false, None),
                Some((d, false)) => (true, Some(d)),
                None => (true, None),
            };
            if !measure && !open_for_write {
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
            if !measure {
                locked(&walked).cached += 1;
                if !violation {
                    return Ok(None);
                }
            }
            return Ok(Some(Job {
                reads_xattr: eval.appraise() || !template.is_legacy(),
                entry,
                pcr,
                template,
                measure,
                known,
                violation,
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
                            let size = if job.measure && job.known.is_none() {
                                job.entry.meta.len()
                            } else {
                                0
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
        |job| hash_job(job, ima_hash, &boot),
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

/// Reads what a job needs from its open file (xattrs, the digest), then closes it.
fn hash_job(job: Job, ima_hash: HashAlgo, boot: &TemplateDesc) -> Done {
    let Job {
        entry,
        pcr,
        template,
        reads_xattr,
        measure,
        known,
        violation,
    } = job;
    let walk::Entry {
        mut file,
        meta,
        path,
        ..
    } = entry;
    let violation = violation.then(|| {
        if needs_xattrs(boot) {
            ima_sys::xattr::get(&file, "security.evm").unwrap_or(None)
        } else {
            None
        }
    });
    let result = if measure {
        hash_file(&mut file, &meta, &template, reads_xattr, known, ima_hash)
    } else {
        Err(std::io::Error::other("not measured"))
    };
    Done {
        path,
        meta,
        pcr,
        template,
        measure,
        violation,
        result,
    }
}

fn hash_file(
    f: &mut File,
    meta: &Metadata,
    template: &TemplateDesc,
    reads_xattr: bool,
    known: Option<Digest>,
    ima_hash: HashAlgo,
) -> std::io::Result<Hashed> {
    // The cookie is the walk's `fstat`, taken before hashing: a change during the hash shows
    // up next time.
    let cookie = Cookie::of(meta);
    // `ima_read_xattr`: a filesystem without xattrs is "no label", not an error.
    let ima_xattr = if reads_xattr {
        match ima_sys::xattr::get(&*f, "security.ima") {
            Err(e) if ima_sys::xattr::is_unsupported(&e) => None,
            r => r?,
        }
    } else {
        None
    };
    let evm_xattr = if needs_xattrs(template) {
        match ima_sys::xattr::get(&*f, "security.evm") {
            Err(e) if ima_sys::xattr::is_unsupported(&e) => None,
            r => r?,
        }
    } else {
        None
    };
    let (digest, bytes) = match known {
        Some(d) => (d, 0),
        None => {
            let algo = file_hash_algo(ima_xattr.as_deref(), ima_hash);
            (ima_sys::file::hash_file(f, algo?)?, meta.size())
        }
    };
    let legacy_digest = match legacy_algo(template, digest.algo(), ima_hash) {
        Some(a) => {
            f.seek(SeekFrom::Start(0))?;
            Some(ima_sys::file::hash_file(f, a)?)
        }
        None => None,
    };
    Ok(Hashed {
        digest,
        legacy_digest,
        cookie,
        ima_xattr: ima_xattr.filter(|_| needs_xattrs(template)),
        evm_xattr,
        bytes,
    })
}

/// The algorithm `process_measurement` collects the file digest with: the one
/// `security.ima` names (`ima_get_hash_algo`: a v2 signature, a v3 fs-verity signature, a
/// 0x04 digest, a 0x01 md5/sha1 digest; ids past `HASH_ALGO__LAST`, other types and
/// signature versions fall back), else `ima_hash`. An algorithm the kernel knows but we cannot
/// compute is an error (a kernel without it fails `collect_data` and measures nothing).
fn file_hash_algo(xattr: Option<&[u8]>, ima_hash: HashAlgo) -> std::io::Result<HashAlgo> {
    let a = ima_core::appraise::hash_algo(xattr, ima_hash);
    if a.is_supported() {
        Ok(a)
    } else {
        Err(std::io::Error::other(format!(
            "security.ima names hash algorithm {a}, which cannot be computed here: not measured \
             (a kernel without {a} fails collect_data the same way)"
        )))
    }
}

/// `ima_eventdigest_init` (the legacy `d` field): the collected digest if it is sha1 or
/// md5, else the file hashed again with `ima_hash` if that is sha1 or md5, else with sha1.
/// `None` when no second hash is needed.
fn legacy_algo(t: &TemplateDesc, collected: HashAlgo, ima_hash: HashAlgo) -> Option<HashAlgo> {
    let legacy_ok = |a: HashAlgo| a == HashAlgo::SHA1 || a == HashAlgo::MD5;
    if !t.has(Field::D) || legacy_ok(collected) {
        return None;
    }
    Some(if legacy_ok(ima_hash) {
        ima_hash
    } else {
        HashAlgo::SHA1
    })
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
        pcr,
        template,
        measure,
        violation,
        result,
    } = done;
    let name = path.as_os_str().as_bytes();
    let basename = path.file_name().map(|b| b.as_bytes());
    if let Some(evm) = violation {
        let ev = Event {
            name,
            basename,
            evm_xattr: evm.as_deref(),
            inode: Some(inode_attrs(&meta)),
            ..Event::default()
        };
        let e = engine.add_violation(&ev)?;
        sum.violations += 1;
        on_new(&e);
    }
    if !measure {
        return Ok(());
    }
    let h = match result {
        Ok(h) => h,
        Err(e) => {
            sum.errors.push((path, e.to_string()));
            return Ok(());
        }
    };
    if h.bytes > 0 {
        sum.hashed += 1;
        sum.bytes_hashed += h.bytes;
    }
    let ev = Event {
        digest: Some(h.digest),
        legacy_digest: h.legacy_digest,
        name,
        basename,
        ima_xattr: h.ima_xattr.as_deref(),
        evm_xattr: h.evm_xattr.as_deref(),
        inode: Some(inode_attrs(&meta)),
        ..Event::default()
    };
    match engine.add(&ev, &template, pcr)? {
        Added::New(e) => {
            sum.added += 1;
            on_new(&e);
        }
        Added::Duplicate => sum.duplicates += 1,
    }
    let ima_hash = engine.config().ima_hash;
    cache.record((meta.dev(), meta.ino()), h.cookie, ima_hash, h.digest, pcr);
    Ok(())
}
