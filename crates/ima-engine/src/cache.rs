//! The re-measurement cache: what the kernel keeps in `struct ima_iint_cache` per inode,
//! persisted between runs so that unchanged files are neither re-hashed nor re-measured.
//!
//! Key: (device, inode). Value: the change cookie seen when the file was hashed, the
//! `ima_hash` in force then, the digest (`iint->ima_hash`: its algorithm may come from
//! `security.ima`, not `ima_hash`) and the PCRs it was measured into (`measured_pcrs`). A file
//! whose cookie differs is hashed and measured again, as the kernel does after the last writer
//! closes; writing `security.ima` changes ctime, so a new algorithm in the xattr is seen too.
//! Like the kernel's `IMA_COLLECTED` digest, a cached one is reused whatever template asks for
//! it; only another `ima_hash` (another "boot") discards it.
//!
//! The cookie is the strongest a userspace reader gets without opening the file, re-read at
//! use by the walk's `statx`: ctime and mtime with nanoseconds, size, and the birth time where
//! the filesystem records one. The kernel's `i_version` is not available: `statx` strips
//! `STATX_CHANGE_COOKIE` from both the request and the answer (kernel-internal, for nfsd; see
//! `fs/stat.c`), and the inode generation (`FS_IOC_GETVERSION`) needs an open descriptor, which
//! is what a cache hit must not cost. The birth time stands in for the generation: an inode
//! number reused by a new file comes with a new birth time. What the cookie cannot see is
//! written in SECURITY.md ("The measurement cache").
//!
//! The cache is bound to the list it was written with: it records the list's length then and
//! a SHA-256 over each entry's PCR and template digest ([`ListMark`]), and is used only while
//! the journal still begins with exactly those entries. A cache left over from another list
//! (restored, rolled back, archived) is discarded with a warning, so it can never skip a file
//! whose entry is not in the journal.
//!
//! It also remembers the inodes an `open_writers` violation was emitted for
//! (`IMA_EMITTED_OPENWRITERS`), until a run sees them no longer open for write (the kernel
//! clears the bit when the last writer closes).
//!
//! ```text
//! file = "ima-engine-cache v4\n" || u64 list_entries || u8[32] list_sha256 || u64 n ||
//!        n records: u64 dev, u64 ino, i64 mtime_ns, i64 ctime_ns, i64 btime_ns (i64::MIN:
//!        none), u64 size, u8 ima_hash, u8 algo, u8 len, digest[len], u32 measured_pcrs ||
//!        rest: (u64 dev, u64 ino) open_writers emitted                       (LE)
//! ```
//! A cache that cannot be read is discarded with a warning naming the file and byte offset,
//! and rebuilt (it is only a cache: everything is re-hashed and duplicates are suppressed by
//! the list).

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::io;

use ima_core::codec::{DecodeError, Reader};
use ima_core::hash::{Digest, HashAlgo};
use ima_sys::statedir::Dir;
use ima_sys::walk::Stat;

const MAGIC: &[u8] = b"ima-engine-cache v4\n";
const FILE: &str = "cache";
/// The most inodes the cache remembers: more than the files of a whole distribution
/// (a desktop Debian has about a million). A larger cache is not written (a warning says
/// so; the files past it are hashed again each run) and not read.
const MAX_RECORDS: usize = 4 << 20;
/// The most `open_writers` inodes it remembers (files open for write on one machine).
const MAX_OPEN_WRITERS: usize = 1 << 20;
/// The largest valid cache file: the header (magic, list mark, count), [`MAX_RECORDS`]
/// records of at most 8 × 6 + 3 + 64 + 4 bytes (a 64-byte digest) and [`MAX_OPEN_WRITERS`]
/// pairs of 16 bytes: about 500 MB. Anything larger is refused by its size before a byte
/// is read.
const MAX_FILE: u64 =
    (20 + 40 + 8) as u64 + MAX_RECORDS as u64 * (8 * 6 + 3 + 64 + 4) + MAX_OPEN_WRITERS as u64 * 16;

/// A file's change cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// `None` where the filesystem records no birth time.
    pub btime_ns: Option<i64>,
    pub size: u64,
}

/// The list a cache was written with: its length and a SHA-256 over each entry's PCR (u32
/// LE) and template digest, in list order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListMark {
    pub entries: u64,
    pub sha256: [u8; 32],
}

/// The running [`ListMark`] of a list being read or appended to.
#[derive(Clone, Debug)]
pub struct ListHash {
    hasher: ima_core::hash::Hasher,
    entries: u64,
}

impl Default for ListHash {
    fn default() -> Self {
        Self {
            #[allow(clippy::expect_used)] // sha256 is always compiled in
            hasher: HashAlgo::SHA256.hasher().expect("sha256"),
            entries: 0,
        }
    }
}

impl ListHash {
    pub fn add(&mut self, e: &ima_core::log::Entry) {
        self.hasher.update(&e.pcr.to_le_bytes());
        self.hasher.update(e.template_digest.as_bytes());
        self.entries += 1;
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn mark(&self) -> ListMark {
        let d = self.hasher.clone().finalize();
        let mut sha256 = [0; 32];
        sha256.copy_from_slice(d.as_bytes());
        ListMark {
            entries: self.entries,
            sha256,
        }
    }
}

impl Cookie {
    /// The cookie of an open file (its `fstat`).
    pub fn of(m: &Metadata) -> Self {
        Self::of_stat(&Stat::of_metadata(m))
    }

    /// The cookie of a file stat'ed by the walk.
    pub fn of_stat(st: &Stat) -> Self {
        Self {
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
            btime_ns: st.btime_ns,
            size: st.size,
        }
    }
}

/// One inode's cached state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub cookie: Cookie,
    /// `ima_hash` when the digest was collected.
    pub ima_hash: HashAlgo,
    /// The collected digest (algorithm from `security.ima`, else `ima_hash`).
    pub digest: Digest,
    /// Bit `n` set: measured into PCR `n`.
    pub measured_pcrs: u32,
}

/// The cache, keyed by (st_dev, st_ino).
#[derive(Debug, Default)]
pub struct Cache {
    /// The list it was written with (`None`: a new cache).
    written_with: Option<ListMark>,
    map: HashMap<(u64, u64), CacheEntry>,
    open_writers: HashSet<(u64, u64)>,
    dirty: bool,
}

impl Cache {
    /// Loads `.engine/cache` from `internal`; a missing cache is an empty one, and one that
    /// cannot be read or parsed is reported (naming the file and, for a parse error, the
    /// byte offset) and replaced by an empty one.
    pub fn load(internal: &Dir) -> Self {
        let path = internal.join(FILE);
        let bytes = match internal.read_bounded(FILE, MAX_FILE) {
            Ok(Some(b)) => b,
            Ok(None) => return Self::default(),
            Err(e) => {
                tracing::warn!("discarding the unreadable cache {}: {e}", path.display());
                return Self::default();
            }
        };
        match Self::from_bytes(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Said, not silent: a cache that does not parse was damaged or edited. It is
                // rebuilt (every file is hashed again), so nothing is lost but time.
                tracing::warn!(
                    "discarding the corrupt cache {}: {e}; every file is hashed again and the \
                     cache rebuilt",
                    path.display()
                );
                Self::default()
            }
        }
    }

    /// Parses a cache file's bytes, which must be a complete, valid cache.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(MAGIC.len(), "magic").ok() != Some(MAGIC) {
            return Err(DecodeError::invalid_at(
                "magic",
                0,
                "not an ima-engine-cache v4 file",
            ));
        }
        let entries = r.u64_le("list entries")?;
        let mut sha256 = [0; 32];
        sha256.copy_from_slice(r.take(32, "list sha256")?);
        let written_with = Some(ListMark { entries, sha256 });
        let mut map = HashMap::new();
        let at = r.offset();
        let n = r.u64_le("record count")?;
        if n > MAX_RECORDS as u64 {
            return Err(DecodeError::invalid_at(
                "record count",
                at,
                format!("{n} records, more than the {MAX_RECORDS} a cache holds"),
            ));
        }
        for _ in 0..n {
            let dev = r.u64_le("dev")?;
            let ino = r.u64_le("ino")?;
            let mtime_ns = r.u64_le("mtime_ns")? as i64;
            let ctime_ns = r.u64_le("ctime_ns")? as i64;
            let btime_ns = Some(r.u64_le("btime_ns")? as i64).filter(|t| *t != i64::MIN);
            let size = r.u64_le("size")?;
            let ima_hash = HashAlgo(r.u8("ima_hash")?);
            let algo = HashAlgo(r.u8("digest algorithm")?);
            let len = usize::from(r.u8("digest length")?);
            let at = r.offset();
            let digest = Digest::new(algo, r.take(len, "digest")?).ok_or_else(|| {
                DecodeError::invalid_at("digest", at, format!("no {algo} digest of {len} bytes"))
            })?;
            let measured_pcrs = r.u32_le("measured_pcrs")?;
            map.insert(
                (dev, ino),
                CacheEntry {
                    cookie: Cookie {
                        mtime_ns,
                        ctime_ns,
                        btime_ns,
                        size,
                    },
                    ima_hash,
                    digest,
                    measured_pcrs,
                },
            );
        }
        let mut open_writers = HashSet::new();
        while !r.is_empty() {
            open_writers.insert((r.u64_le("open_writers dev")?, r.u64_le("open_writers ino")?));
        }
        Ok(Self {
            written_with,
            map,
            open_writers,
            dirty: false,
        })
    }

    /// The list the cache was written with; `None` for a new one.
    pub fn written_with(&self) -> Option<ListMark> {
        self.written_with
    }

    /// Keeps the cache only if the journal begins with the entries the cache was written
    /// with; else it is discarded with a warning naming `path` and rebuilt. `mark_at(n)` is the [`ListMark`] of the journal's first `n`
    /// entries, `None` if it has fewer.
    pub fn check_list(
        &mut self,
        path: &std::path::Path,
        mark_at: impl FnOnce(u64) -> Option<ListMark>,
    ) {
        let Some(was) = self.written_with else {
            return;
        };
        if mark_at(was.entries) == Some(was) {
            return;
        }
        tracing::warn!(
            "discarding the cache {}: it was written with another list (its first {} entries \
             are not the journal's); every file is hashed again and the cache rebuilt",
            path.display(),
            was.entries
        );
        *self = Self {
            dirty: true,
            ..Self::default()
        };
    }

    /// Writes the cache atomically if it changed, marked as written with the list `list`.
    pub fn save(&mut self, internal: &Dir, list: ListMark) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.map.len() > MAX_RECORDS || self.open_writers.len() > MAX_OPEN_WRITERS {
            tracing::warn!(
                "not saving the cache {}: {} inodes and {} open_writers inodes, more than the \
                 {MAX_RECORDS} and {MAX_OPEN_WRITERS} it holds (the files it would have \
                 remembered are hashed again next run)",
                internal.join(FILE).display(),
                self.map.len(),
                self.open_writers.len()
            );
            return Ok(());
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&list.entries.to_le_bytes());
        out.extend_from_slice(&list.sha256);
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for ((dev, ino), e) in &self.map {
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            out.extend_from_slice(&e.cookie.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.cookie.ctime_ns.to_le_bytes());
            out.extend_from_slice(&e.cookie.btime_ns.unwrap_or(i64::MIN).to_le_bytes());
            out.extend_from_slice(&e.cookie.size.to_le_bytes());
            out.push(e.ima_hash.0);
            out.push(e.digest.algo().0);
            out.push(e.digest.len() as u8); // at most MAX_DIGEST_SIZE (64)
            out.extend_from_slice(e.digest.as_bytes());
            out.extend_from_slice(&e.measured_pcrs.to_le_bytes());
        }
        for (dev, ino) in &self.open_writers {
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
        }
        internal.replace(FILE, &out, 0o600, false)?;
        self.written_with = Some(list);
        self.dirty = false;
        Ok(())
    }

    /// The digest collected under `ima_hash` if the file is unchanged, and whether it is
    /// already measured into `pcr`.
    pub fn lookup(&self, st: &Stat, ima_hash: HashAlgo, pcr: u32) -> Option<(Digest, bool)> {
        let e = self.map.get(&(st.dev, st.ino))?;
        (e.cookie == Cookie::of_stat(st) && e.ima_hash == ima_hash)
            .then(|| (e.digest, e.measured_pcrs & pcr_bit(pcr) != 0))
    }

    /// Records that the file with cookie `cookie` (taken before hashing) has `digest`,
    /// collected under `ima_hash`, and was measured into `pcr`.
    pub fn record(
        &mut self,
        (dev, ino): (u64, u64),
        cookie: Cookie,
        ima_hash: HashAlgo,
        digest: Digest,
        pcr: u32,
    ) {
        let fresh = CacheEntry {
            cookie,
            ima_hash,
            digest,
            measured_pcrs: 0,
        };
        let e = self.map.entry((dev, ino)).or_insert(fresh);
        if e.cookie != cookie || e.ima_hash != ima_hash || e.digest != digest {
            *e = fresh;
        }
        e.measured_pcrs |= pcr_bit(pcr);
        self.dirty = true;
    }

    /// Records that an `open_writers` violation is due for `key`; `false` if one was
    /// already emitted while it stayed open for write.
    pub fn emit_open_writers(&mut self, key: (u64, u64)) -> bool {
        let new = self.open_writers.insert(key);
        self.dirty |= new;
        new
    }

    /// Forgets the emitted `open_writers` violations of inodes no longer open for write.
    pub fn retain_open_writers(&mut self, open_for_write: &HashSet<(u64, u64)>) {
        let before = self.open_writers.len();
        self.open_writers.retain(|k| open_for_write.contains(k));
        self.dirty |= self.open_writers.len() != before;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn pcr_bit(pcr: u32) -> u32 {
    1u32.checked_shl(pcr).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn st(m: &Metadata) -> Stat {
        Stat::of_metadata(m)
    }

    #[test]
    fn round_trips_and_detects_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"one").unwrap();
        let m = fs::metadata(&f).unwrap();
        let dg = HashAlgo::SHA256.digest(b"one").unwrap();
        let mut c = Cache::default();
        c.record((m.dev(), m.ino()), Cookie::of(&m), HashAlgo::SHA256, dg, 10);
        // A digest of another algorithm (from security.ima) is found under its ima_hash.
        let d512 = HashAlgo::SHA512.digest(b"one").unwrap();
        let m0 = fs::metadata(d.path()).unwrap();
        c.record(
            (m0.dev(), m0.ino()),
            Cookie::of(&m0),
            HashAlgo::SHA256,
            d512,
            10,
        );
        let dir = Dir::open_private(&d.path().join("state"), 0o700).unwrap();
        let p = d.path().join("state/cache");
        c.save(
            &dir,
            ListMark {
                entries: 0,
                sha256: [0; 32],
            },
        )
        .unwrap();
        let c = Cache::load(&dir);
        assert_eq!(c.lookup(&st(&m), HashAlgo::SHA256, 10), Some((dg, true)));
        assert_eq!(c.lookup(&st(&m), HashAlgo::SHA256, 11), Some((dg, false)));
        assert_eq!(c.lookup(&st(&m), HashAlgo::SHA1, 10), None);
        assert_eq!(c.lookup(&st(&m0), HashAlgo::SHA256, 10), Some((d512, true)));
        assert_eq!(c.lookup(&st(&m0), HashAlgo::SHA512, 10), None);
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&f, b"two").unwrap();
        let m2 = fs::metadata(&f).unwrap();
        assert_eq!(c.lookup(&st(&m2), HashAlgo::SHA256, 10), None);
        // Emitted open_writers violations persist until the writer is gone.
        let mut c = c;
        assert!(c.emit_open_writers((1, 2)));
        assert!(!c.emit_open_writers((1, 2)));
        c.save(
            &dir,
            ListMark {
                entries: 0,
                sha256: [0; 32],
            },
        )
        .unwrap();
        let mut c = Cache::load(&dir);
        assert_eq!(c.len(), 2);
        assert!(!c.emit_open_writers((1, 2)));
        c.retain_open_writers(&HashSet::new());
        assert!(c.emit_open_writers((1, 2)));
        fs::write(&p, b"garbage").unwrap();
        assert!(Cache::load(&dir).is_empty());
        // Corruption is named by offset: the 20-byte magic, then the u64 count.
        let e = Cache::from_bytes(b"garbage").unwrap_err();
        assert_eq!(
            e.to_string(),
            "magic at byte offset 0: not an ima-engine-cache v4 file"
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[0; 40]);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        let e = Cache::from_bytes(&b).unwrap_err();
        assert_eq!(e.offset, 76);
        assert_eq!(e.what, "ino");
    }

    #[test]
    fn the_cookie_sees_a_same_size_same_mtime_rewrite_and_a_new_inode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"one").unwrap();
        let m = fs::metadata(&f).unwrap();
        let was = Cookie::of(&m);
        // Rewritten in place, same size, mtime (and atime) put back: ctime moved.
        std::thread::sleep(std::time::Duration::from_millis(2));
        fs::write(&f, b"two").unwrap();
        let file = fs::File::options().write(true).open(&f).unwrap();
        file.set_times(
            fs::FileTimes::new()
                .set_modified(m.modified().unwrap())
                .set_accessed(m.accessed().unwrap()),
        )
        .unwrap();
        let now = Cookie::of(&fs::metadata(&f).unwrap());
        assert_eq!((now.mtime_ns, now.size), (was.mtime_ns, was.size));
        assert_ne!(now, was);
        // The walk's statx and the open file's fstat give one cookie.
        let name = std::ffi::CString::new("f").unwrap();
        let dir = fs::File::open(d.path()).unwrap();
        let at = Stat::at(&dir, &name, false).unwrap();
        assert_eq!(Cookie::of_stat(&at), now);
        // Where the filesystem has birth times, they are part of it.
        assert_eq!(now.btime_ns.is_some(), m.created().is_ok());
    }

    #[test]
    fn bound_to_the_list_it_was_written_with() {
        let d = tempfile::tempdir().unwrap();
        let dir = Dir::open_private(&d.path().join("state"), 0o700).unwrap();
        let entry = |pcr: u32, b: u8| ima_core::log::Entry {
            pcr,
            template_digest: Digest::new(HashAlgo::SHA1, &[b; 20]).unwrap(),
            template_name: "ima-ng".into(),
            data: Default::default(),
        };
        let list: Vec<_> = (0..5).map(|i| entry(10, i)).collect();
        let mark_at = |l: &[ima_core::log::Entry], n: u64| {
            let mut h = ListHash::default();
            for e in l.iter().take(n as usize) {
                h.add(e);
            }
            (h.entries() == n).then(|| h.mark())
        };
        let mut c = Cache::default();
        let dg = HashAlgo::SHA256.digest(b"x").unwrap();
        let cookie = Cookie {
            mtime_ns: 1,
            ctime_ns: 2,
            btime_ns: None,
            size: 3,
        };
        c.record((1, 1), cookie, HashAlgo::SHA256, dg, 10);
        c.save(&dir, mark_at(&list[..3], 3).unwrap()).unwrap();
        let p = d.path().join("state/cache");
        // The same list, or one that goes on from it: kept.
        for n in [3, 5] {
            let mut c = Cache::load(&dir);
            c.check_list(&p, |k| mark_at(&list[..n], k));
            assert_eq!(c.len(), 1);
        }
        // Shorter (rolled back), or another entry in its first three (another list): gone.
        let mut other = list.clone();
        other[1] = entry(11, 1);
        for l in [&list[..2], &other[..]] {
            let mut c = Cache::load(&dir);
            c.check_list(&p, |k| mark_at(l, k));
            assert!(c.is_empty());
            assert!(c.written_with().is_none());
        }
    }
}
