//! Whole-file input without a copy: large regular files are mapped read-only, everything
//! else (pipes, securityfs and procfs files that report size 0, small files) is read.
//!
//! Mapping saves the copy out of the page cache and the zeroing of a fresh buffer, about a
//! third of the sequential time of `imactl log verify` on a million-entry list
//! (BENCHMARKING.md).

#![allow(unsafe_code)] // one mmap call; its one precondition is stated at the block

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::path::Path;

/// Files smaller than this are read: mapping costs more than copying a few pages.
const MAP_THRESHOLD: u64 = 1 << 20;

/// The contents of a file, mapped or owned. Dereferences to the bytes.
#[derive(Debug)]
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The whole contents of `path`, mapped when it is a large regular file.
pub fn read_or_map(path: &Path) -> io::Result<FileBytes> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() >= MAP_THRESHOLD {
        // SAFETY: the mapping is read-only and private to this process. Its one hazard is
        // another process truncating or rewriting the file while it is mapped (SIGBUS or
        // changing bytes); callers use it for input lists that are not being written, as
        // ripgrep does for its inputs, and every decoder of those bytes is bounds-checked,
        // so changing bytes give a decode error, not undefined behaviour in our code.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }?;
        return Ok(FileBytes::Mapped(map));
    }
    let mut v = Vec::new();
    file.read_to_end(&mut v)?;
    Ok(FileBytes::Owned(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn small_and_large_files_read_the_same_bytes() {
        for len in [0usize, 10, MAP_THRESHOLD as usize + 4097] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            f.write_all(&data).unwrap();
            let got = read_or_map(f.path()).unwrap();
            assert_eq!(&got[..], &data[..]);
            assert_eq!(
                matches!(got, FileBytes::Mapped(_)),
                len as u64 >= MAP_THRESHOLD
            );
        }
    }

    #[test]
    fn procfs_files_with_size_zero_are_read() {
        let got = read_or_map(Path::new("/proc/self/status")).unwrap();
        assert!(matches!(got, FileBytes::Owned(_)));
        assert!(got.starts_with(b"Name:"));
    }
}
