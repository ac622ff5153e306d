//! Measuring files into the list as the kernel's `process_measurement` would for an access
//! by the invoking user: policy match, per-inode cache, hash, template data, append.
//!
//! Files are hashed in parallel (largest first, one worker per core) and appended by one thread
//! as their hashes arrive, so the list order is completion order (the kernel's is access order).
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
use std::sync::{Mutex, mpsc};

use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::Entry;
use ima_core::policy::{self, Func, Mask, Policy, Uuid};
use ima_core::template::{Event, Field, InodeAttrs, TemplateDesc};

use crate::cache::Cookie;
use crate::{Added, Engine, EngineError};

/// The invoking process's credentials (from `/proc/self/status`: no syscall needed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
}

impl Creds {
    /// The current process's ids (all 0 if `/proc` cannot be read).
    pub fn current() -> Self {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let ids = |key: &str| -> [u32; 3] {
            let mut v = [0; 3];
            if let Some(l) = text.lines().find_map(|l| l.strip_prefix(key)) {
                for (slot, n) in v.iter_mut().zip(l.split_whitespace()) {
                    *slot = n.parse().unwrap_or(0);
                }
            }
            v
        };
        let [uid, euid, suid] = ids("Uid:");
        let [gid, egid, sgid] = ids("Gid:");
        Self {
            uid,
            euid,
            suid,
            gid,
            egid,
            sgid,
        }
    }
}

/// How to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// The hook the access is treated as (FILE_CHECK: read; BPRM_CHECK: executed).
    pub func: Func,
    /// Descend into directories.
    pub recursive: bool,
    pub creds: Creds,
}

impl Options {
    /// The mask the hook implies: MAY_EXEC for exec/mmap, MAY_READ otherwise.
    pub fn mask(&self) -> Mask {
        match self.func {
            Func::BprmCheck | Func::MmapCheck | Func::MmapCheckReqprot | Func::CredsCheck => {
                Mask::MAY_EXEC
            }
            _ => Mask::MAY_READ,
        }
    }
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
    path: PathBuf,
    meta: Metadata,
    pcr: u32,
    template: TemplateDesc,
    /// Whether the kernel would read `security.ima` here (appraising, or a template other
    /// than `ima`), and so hash with the algorithm it names.
    reads_xattr: bool,
    /// Digest from the cache (unchanged file, new PCR): no need to hash.
    known: Option<Digest>,
}

struct Done {
    job: Job,
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

#[derive(Clone)]
struct FsFacts {
    fsmagic: u64,
    fsname: String,
    fsuuid: Uuid,
}

/// Measures `paths` (files, or directories with `opts.recursive`) into `engine`, calling
/// `on_new` for every new entry. Commits before returning.
pub fn measure(
    engine: &mut Engine,
    opts: &Options,
    paths: &[PathBuf],
    on_new: impl FnMut(&Entry),
) -> Result<Summary, EngineError> {
    measure_walked(engine, opts, walk(opts, paths), on_new)
}

/// The files a run will look at, with their metadata, and which files are open for write
/// (`i_writecount`): everything [`measure_walked`] needs from the filesystem before hashing.
/// Needs no engine, so callers can walk while the engine opens.
#[derive(Debug, Default)]
pub struct Walked {
    files: Vec<(PathBuf, Metadata)>,
    writers: HashSet<(u64, u64)>,
    errors: Vec<(PathBuf, String)>,
}

/// Walks `paths` (in parallel) and, for the hooks the kernel checks for writers, scans
/// `/proc` for files open for write at the same time.
pub fn walk(opts: &Options, paths: &[PathBuf]) -> Walked {
    let hooked = writers_checked(opts.func);
    let mut errors = Vec::new();
    let (files, writers) = std::thread::scope(|s| {
        let w = hooked.then(|| s.spawn(ima_sys::procfs::open_for_write));
        let files = collect(paths, opts.recursive, &mut errors);
        (files, w.and_then(|h| h.join().ok()).unwrap_or_default())
    });
    Walked {
        files,
        writers,
        errors,
    }
}

/// The hooks for which the kernel checks writers (`ima_rdwr_violation_check`).
fn writers_checked(func: Func) -> bool {
    matches!(
        func,
        Func::FileCheck | Func::MmapCheck | Func::MmapCheckReqprot
    )
}

/// [`measure`] of what [`walk`] found.
pub fn measure_walked(
    engine: &mut Engine,
    opts: &Options,
    walked: Walked,
    mut on_new: impl FnMut(&Entry),
) -> Result<Summary, EngineError> {
    let Walked {
        files,
        writers,
        errors,
    } = walked;
    let hooked = writers_checked(opts.func);
    let mut sum = Summary {
        errors,
        ..Summary::default()
    };
    sum.files = files.len();
    let algo = engine.config().ima_hash;
    let boot = engine.config().template.clone();
    let mask = opts.mask();
    let mut fs_facts: HashMap<u64, FsFacts> = HashMap::new();
    let mut templates: HashMap<String, TemplateDesc> = HashMap::new();
    let mut jobs = Vec::new();
    for (path, meta) in files {
        let facts = match fs_facts.get(&meta.dev()) {
            Some(f) => f.clone(),
            None => match ima_sys::fs::file_facts(&path) {
                Ok(f) => {
                    let v = FsFacts {
                        fsmagic: f.fsmagic,
                        fsname: f.fsname.unwrap_or_default(),
                        fsuuid: f.fsuuid.unwrap_or(Uuid::NIL),
                    };
                    fs_facts.insert(meta.dev(), v.clone());
                    v
                }
                Err(e) => {
                    sum.errors.push((path, e.to_string()));
                    continue;
                }
            },
        };
        let pbytes = path.as_os_str().as_bytes();
        let c = opts.creds;
        let ev = policy::Event {
            uid: c.uid,
            euid: c.euid,
            suid: c.suid,
            gid: c.gid,
            egid: c.egid,
            sgid: c.sgid,
            fowner: meta.uid(),
            fgroup: meta.gid(),
            fsmagic: facts.fsmagic,
            fsname: &facts.fsname,
            fsuuid: facts.fsuuid,
            path: Some(pbytes),
            ..policy::Event::new(opts.func, mask)
        };
        let eval = opts.policy.evaluate(&ev);
        if !eval.measure() {
            sum.not_measured += 1;
            continue;
        }
        // `ima_rdwr_violation_check`: a read by a measuring rule of a file some process has
        // open for write, once until the writers are gone, before the measurement.
        let key = (meta.dev(), meta.ino());
        if writers.contains(&key) && engine.cache.emit_open_writers(key) {
            let evm = if needs_xattrs(&boot) {
                ima_sys::xattr::get_path(&path, "security.evm").unwrap_or(None)
            } else {
                None
            };
            let ev = Event {
                name: pbytes,
                basename: path.file_name().map(|b| b.as_bytes()),
                evm_xattr: evm.as_deref(),
                inode: Some(inode_attrs(&meta)),
                ..Event::default()
            };
            let e = engine.add_violation(&ev)?;
            sum.violations += 1;
            on_new(&e);
        }
        let pcr = eval.pcr();
        let tname = eval.template_name(boot.name()).to_owned();
        let template = match templates.get(&tname) {
            Some(t) => t.clone(),
            None => {
                let t = TemplateDesc::lookup(&tname)
                    .map_err(|e| EngineError::Template(format!("{tname}: {e}")))?;
                templates.insert(tname, t.clone());
                t
            }
        };
        let reads_xattr = eval.appraise() || !template.is_legacy();
        let known = match engine.cache.lookup(&meta, algo, pcr) {
            Some((_, true)) => {
                sum.cached += 1;
                continue;
            }
            Some((d, false)) => Some(d),
            None => None,
        };
        jobs.push(Job {
            path,
            meta,
            pcr,
            template,
            reads_xattr,
            known,
        });
    }
    // Largest first: the long hashes start early and the small ones fill the gaps.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.meta.size()));

    // One queue of the sorted jobs, one loop per core: each worker takes the largest job
    // left. (A rayon `par_iter` here split the sorted list into contiguous ranges, so one
    // core hashed the big files alone while the other idled: 1.16 cores busy.)
    let queue = Mutex::new(jobs.into_iter());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = mpsc::sync_channel::<Done>(256);
    let mut result = Ok(());
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || {
                loop {
                    // Its own statement: the guard is dropped before the hash (a `while let`
                    // scrutinee would hold it for the whole body).
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(job) = next else { break };
                    let result = hash_job(&job, algo);
                    // The receiver only goes away on an engine error; then stop quietly.
                    if tx.send(Done { job, result }).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for done in rx.iter() {
            if result.is_err() {
                continue; // drain so the workers finish
            }
            let r = append(engine, done, &mut sum, &mut on_new);
            if let Err(e) = r {
                result = Err(e);
            }
        }
    });
    result?;
    if hooked {
        engine.cache.retain_open_writers(&writers);
    }
    engine.commit()?;
    Ok(sum)
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

fn hash_job(job: &Job, ima_hash: HashAlgo) -> std::io::Result<Hashed> {
    let mut f = File::open(&job.path)?;
    // The cookie is taken before hashing: a change during the hash shows up next time.
    let m = f.metadata()?;
    let cookie = Cookie::of(&m);
    // `ima_read_xattr`: a filesystem without xattrs is "no label", not an error.
    let ima_xattr = if job.reads_xattr {
        match ima_sys::xattr::get(&f, "security.ima") {
            Err(e) if ima_sys::xattr::is_unsupported(&e) => None,
            r => r?,
        }
    } else {
        None
    };
    let evm_xattr = if needs_xattrs(&job.template) {
        match ima_sys::xattr::get(&f, "security.evm") {
            Err(e) if ima_sys::xattr::is_unsupported(&e) => None,
            r => r?,
        }
    } else {
        None
    };
    let (digest, bytes) = match job.known {
        Some(d) if cookie == Cookie::of(&job.meta) => (d, 0),
        _ => {
            let algo = file_hash_algo(ima_xattr.as_deref(), ima_hash);
            (ima_sys::file::hash_file(&mut f, algo?)?, m.size())
        }
    };
    let legacy_digest = match legacy_algo(&job.template, digest.algo(), ima_hash) {
        Some(a) => {
            f.seek(SeekFrom::Start(0))?;
            Some(ima_sys::file::hash_file(&mut f, a)?)
        }
        None => None,
    };
    Ok(Hashed {
        digest,
        legacy_digest,
        cookie,
        ima_xattr: ima_xattr.filter(|_| needs_xattrs(&job.template)),
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
    done: Done,
    sum: &mut Summary,
    on_new: &mut impl FnMut(&Entry),
) -> Result<(), EngineError> {
    let Done { job, result } = done;
    let h = match result {
        Ok(h) => h,
        Err(e) => {
            sum.errors.push((job.path, e.to_string()));
            return Ok(());
        }
    };
    if h.bytes > 0 {
        sum.hashed += 1;
        sum.bytes_hashed += h.bytes;
    }
    let name = job.path.as_os_str().as_bytes();
    let basename = job.path.file_name().map(|b| b.as_bytes());
    let ev = Event {
        digest: Some(h.digest),
        legacy_digest: h.legacy_digest,
        name,
        basename,
        ima_xattr: h.ima_xattr.as_deref(),
        evm_xattr: h.evm_xattr.as_deref(),
        inode: Some(inode_attrs(&job.meta)),
        ..Event::default()
    };
    match engine.add(&ev, &job.template, job.pcr)? {
        Added::New(e) => {
            sum.added += 1;
            on_new(&e);
        }
        Added::Duplicate => sum.duplicates += 1,
    }
    let ima_hash = engine.config().ima_hash;
    engine.cache.record(
        (job.meta.dev(), job.meta.ino()),
        h.cookie,
        ima_hash,
        h.digest,
        job.pcr,
    );
    Ok(())
}

/// What a parallel walk found.
#[derive(Default)]
struct Found {
    files: Vec<(PathBuf, Metadata)>,
    errors: Vec<(PathBuf, String)>,
}

/// Files stat'ed per task: a directory of thousands of libraries is split between cores.
const STAT_CHUNK: usize = 128;

/// Lists `dir` in one task; its regular files are stat'ed relative to the directory
/// (`fstatat`, no path walk) in tasks of [`STAT_CHUNK`], and its subdirectories become tasks
/// of their own, so both cores walk (the walk is most of an unchanged tree's second run).
/// Symlinks are not followed.
fn visit<'s>(s: &rayon::Scope<'s>, dir: PathBuf, found: &'s Mutex<Found>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for ent in entries {
                let ent = match ent {
                    Ok(e) => e,
                    Err(e) => {
                        errors.push((dir.clone(), e.to_string()));
                        continue;
                    }
                };
                match ent.file_type() {
                    Ok(t) if t.is_dir() => {
                        let sub = ent.path();
                        s.spawn(move |s| visit(s, sub, found));
                    }
                    Ok(t) if t.is_file() => files.push(ent),
                    Ok(_) => {} // symlinks, devices, sockets: not measured, not followed
                    Err(e) => errors.push((ent.path(), e.to_string())),
                }
            }
        }
        Err(e) => errors.push((dir, e.to_string())),
    }
    if !errors.is_empty() {
        found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .errors
            .append(&mut errors);
    }
    while files.len() > STAT_CHUNK {
        let rest = files.split_off(STAT_CHUNK);
        let chunk = std::mem::replace(&mut files, rest);
        s.spawn(move |_| stat_files(chunk, found));
    }
    stat_files(files, found);
}

fn stat_files(files: Vec<std::fs::DirEntry>, found: &Mutex<Found>) {
    let mut ok = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for ent in files {
        match ent.metadata() {
            Ok(m) => ok.push((ent.path(), m)),
            Err(e) => errors.push((ent.path(), e.to_string())),
        }
    }
    let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
    f.files.append(&mut ok);
    f.errors.append(&mut errors);
}

/// The regular files named by `paths` (directories walked with `recursive`, symlinks inside
/// them not followed), each with its absolute, symlink-free path.
fn collect(
    paths: &[PathBuf],
    recursive: bool,
    errors: &mut Vec<(PathBuf, String)>,
) -> Vec<(PathBuf, Metadata)> {
    let mut out = Vec::new();
    for p in paths {
        let root = match std::fs::canonicalize(p) {
            Ok(r) => r,
            Err(e) => {
                errors.push((p.clone(), e.to_string()));
                continue;
            }
        };
        let meta = match std::fs::metadata(&root) {
            Ok(m) => m,
            Err(e) => {
                errors.push((p.clone(), e.to_string()));
                continue;
            }
        };
        if meta.is_file() {
            out.push((root, meta));
            continue;
        }
        if !meta.is_dir() {
            continue; // only regular files are measured
        }
        if !recursive {
            errors.push((p.clone(), "is a directory (use -r)".to_owned()));
            continue;
        }
        let found = Mutex::new(Found::default());
        rayon::scope(|s| visit(s, root, &found));
        let found = found.into_inner().unwrap_or_else(|p| p.into_inner());
        out.extend(found.files);
        errors.extend(found.errors);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parallel_walk_finds_every_regular_file_once_and_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mut want = Vec::new();
        // One directory with more files than a stat task takes, and a nested chain.
        let big = root.join("big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..(STAT_CHUNK * 2 + 5) {
            let p = big.join(format!("f{i}"));
            std::fs::write(&p, [0u8; 3]).unwrap();
            want.push(p);
        }
        let mut deep = root.clone();
        for i in 0..6 {
            deep = deep.join(format!("d{i}"));
            std::fs::create_dir(&deep).unwrap();
            let p = deep.join("x");
            std::fs::write(&p, b"x").unwrap();
            want.push(p);
        }
        std::os::unix::fs::symlink(big.join("f0"), root.join("link-to-file")).unwrap();
        std::os::unix::fs::symlink(&big, root.join("link-to-dir")).unwrap();
        let mut errors = Vec::new();
        let mut got: Vec<PathBuf> = collect(std::slice::from_ref(&root), true, &mut errors)
            .into_iter()
            .map(|(p, m)| {
                assert!(m.is_file());
                p
            })
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        got.sort();
        want.sort();
        assert_eq!(got, want);

        let mut errors = Vec::new();
        assert!(collect(&[root.join("big")], false, &mut errors).is_empty());
        assert_eq!(errors.len(), 1, "a directory without -r is an error");
        let mut errors = Vec::new();
        assert!(collect(&[root.join("missing")], true, &mut errors).is_empty());
        assert_eq!(errors.len(), 1);
    }
}
