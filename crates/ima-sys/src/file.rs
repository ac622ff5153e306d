//! Reading and hashing file contents the way the kernel's `ima_calc_file_hash` sees them:
//! the whole file from offset 0, its size taken when hashing starts. Large regular files are
//! hashed straight out of the page cache through a guarded mapping ([`crate::map::Mapping`]:
//! no copy, and a truncation under it is an error, not a crash); everything else is streamed
//! through one reused buffer.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use ima_core::hash::{Digest, HashAlgo};

/// Bytes read per `read(2)`: large enough to amortise the syscall, small enough to stay in L2.
/// 64 KiB: on the 2-vCPU KVM machine, hashing a 1.3 GB tree from the page cache took 0.27 s
/// of kernel time with 16–128 KiB reads but 0.9–1.0 s with 256 KiB reads (user time equal);
/// see BENCHMARKING.md, "imactl hash/sign/verify".
pub const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Hashes everything readable from `r` with `algo`, reusing a per-thread buffer.
pub fn hash_reader(r: &mut impl Read, algo: HashAlgo) -> io::Result<Digest> {
    let mut h = algo
        .hasher()
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    feed(r, |chunk| h.update(chunk))?;
    Ok(h.finalize())
}

/// The fs-verity file digest (what `fsverity digest` prints: a 4 KiB-block Merkle tree) of
/// everything readable from `r`, computed in userspace.
pub fn verity_reader(r: &mut impl Read, algo: HashAlgo) -> io::Result<Digest> {
    let mut h = ima_core::verity::VerityHasher::new(algo)
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    feed(r, |chunk| h.update(chunk))?;
    Ok(h.finalize())
}

/// Streams `r` into `sink` through the per-thread buffer, retrying interrupted reads.
fn feed(r: &mut impl Read, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            match r.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => sink(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// Hashes the whole contents of a file opened for reading (from offset 0 when it is mapped,
/// from its current offset otherwise: callers pass freshly opened files). Fails if the file
/// shrinks while it is hashed, as the kernel's `ima_calc_file_hash` fails on a short read.
pub fn hash_file(file: &mut File, algo: HashAlgo) -> io::Result<Digest> {
    let mut h = algo
        .hasher()
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    let meta = file.metadata()?;
    if meta.is_file()
        && meta.len() >= crate::map::MAP_THRESHOLD
        && let Ok(m) = crate::map::Mapping::new(file, meta.len())
    {
        // Chunks that fit in L2 keep the hash fed while the next pages are faulted in.
        for chunk in m.chunks(MAP_CHUNK) {
            h.update(chunk);
        }
        if !m.intact() || file.metadata()?.len() < meta.len() {
            return Err(crate::map::shrank());
        }
        return Ok(h.finalize());
    }
    feed(file, |chunk| h.update(chunk))?;
    Ok(h.finalize())
}

/// Bytes hashed per step out of a mapping.
const MAP_CHUNK: usize = 1 << 20;

/// Opens `path` read-only and hashes it.
pub fn hash_path(path: &Path, algo: HashAlgo) -> io::Result<Digest> {
    let mut f = File::open(path)?;
    hash_file(&mut f, algo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hashes_files_larger_than_the_buffer() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..(READ_CHUNK * 3 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let got = hash_path(f.path(), HashAlgo::SHA256).unwrap();
        assert_eq!(got, HashAlgo::SHA256.digest(&data).unwrap());
    }

    #[test]
    fn mapped_and_read_hashes_agree() {
        for len in [
            crate::map::MAP_THRESHOLD as usize - 1,
            crate::map::MAP_THRESHOLD as usize,
            (2 << 20) + 3,
        ] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            f.write_all(&data).unwrap();
            for algo in [HashAlgo::SHA1, HashAlgo::SHA256] {
                let got = hash_path(f.path(), algo).unwrap();
                let mut r = std::io::Cursor::new(&data);
                assert_eq!(got, hash_reader(&mut r, algo).unwrap());
                assert_eq!(got, algo.digest(&data).unwrap());
            }
        }
    }

    #[test]
    fn unsupported_algo_is_an_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = hash_path(f.path(), HashAlgo(8)).unwrap_err(); // rmd128
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
