//! The re-measurement cache: what the kernel keeps in `struct ima_iint_cache` per inode,
//! persisted between runs so that unchanged files are neither re-hashed nor re-measured.
//!
//! Key: (device, inode). Value: the change cookie seen when the file was hashed (ctime,
//! mtime — the closest a userspace reader has to `i_version` — and size), the `ima_hash` in
//! force then, the digest (`iint->ima_hash`: its algorithm may come from `security.ima`, not
//! `ima_hash`) and the PCRs it was measured into (`measured_pcrs`). A file whose cookie
//! differs is hashed and measured again, as the kernel does after the last writer closes;
//! writing `security.ima` changes ctime, so a new algorithm in the xattr is seen too. Like
//! the kernel's `IMA_COLLECTED` digest, a cached one is reused whatever template asks for it;
//! only another `ima_hash` (another "boot") discards it.
//!
//! It also remembers the inodes an `open_writers` violation was emitted for
//! (`IMA_EMITTED_OPENWRITERS`), until a run sees them no longer open for write (the kernel
//! clears the bit when the last writer closes).
//!
//! ```text
//! file = "ima-engine-cache v3\n" || u64 n || n records: u64 dev, u64 ino, i64 mtime_ns,
//!        i64 ctime_ns, u64 size, u8 ima_hash, u8 algo, u8 len, digest[len],
//!        u32 measured_pcrs || rest: (u64 dev, u64 ino) open_writers emitted   (LE)
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

const MAGIC: &[u8] = b"ima-engine-cache v3\n";
const FILE: &str = "cache";
/// Larger than the cache of any tree a run measures (a record is at most 107 bytes: ten
/// million inodes).
const MAX_FILE: u64 = 1 << 30;

/// A file's change cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub size: u64,
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
                "not an ima-engine-cache v3 file",
            ));
        }
        let mut map = HashMap::new();
        let n = r.u64_le("record count")?;
        for _ in 0..n {
            let dev = r.u64_le("dev")?;
            let ino = r.u64_le("ino")?;
            let mtime_ns = r.u64_le("mtime_ns")? as i64;
            let ctime_ns = r.u64_le("ctime_ns")? as i64;
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
            map,
            open_writers,
            dirty: false,
        })
    }

    /// Writes the cache atomically if it changed.
    pub fn save(&mut self, internal: &Dir) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for ((dev, ino), e) in &self.map {
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            out.extend_from_slice(&e.cookie.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.cookie.ctime_ns.to_le_bytes());
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
        c.save(&dir).unwrap();
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
        c.save(&dir).unwrap();
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
            "magic at byte offset 0: not an ima-engine-cache v3 file"
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        let e = Cache::from_bytes(&b).unwrap_err();
        assert_eq!(e.offset, 36);
        assert_eq!(e.what, "ino");
    }
}
