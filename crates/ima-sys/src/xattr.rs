//! Extended attributes (`security.ima`, `security.evm`, and the other names EVM protects):
//! read, write, remove and list, on an open file descriptor or on a path.
//!
//! Mirrors what `vfs_getxattr`/`__vfs_setxattr_noperm` see from userspace: values are raw
//! bytes, at most [`XATTR_SIZE_MAX`] long. "The file has no such attribute" (`ENODATA`) is
//! `Ok(None)`, not an error; every other failure (`ENOTSUP` on a filesystem without
//! `security.*` support, `EPERM` without `CAP_SYS_ADMIN`, ...) is an [`io::Error`].
//! Built on `rustix::fs`, so this module needs no `unsafe`.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use rustix::fs::XattrFlags;

/// `XATTR_SIZE_MAX` (include/uapi/linux/limits.h): the largest value the kernel stores.
pub const XATTR_SIZE_MAX: usize = 65536;

/// Bytes tried on the stack before asking the kernel for the size (every IMA/EVM value
/// written by evmctl fits: its limit is 1024).
const FIRST_TRY: usize = 1024;

/// How [`set`] treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetMode {
    /// Create or replace.
    #[default]
    Any,
    /// Fail with `EEXIST` if the attribute exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not (`XATTR_REPLACE`).
    Replace,
}

impl SetMode {
    fn flags(self) -> XattrFlags {
        match self {
            Self::Any => XattrFlags::empty(),
            Self::Create => XattrFlags::CREATE,
            Self::Replace => XattrFlags::REPLACE,
        }
    }
}

fn is_absent(e: &rustix::io::Errno) -> bool {
    *e == rustix::io::Errno::NODATA
}

/// Whether `e` says the filesystem does not store such attributes at all (`EOPNOTSUPP`),
/// which the kernel's `ima_read_xattr` treats as "no value".
pub fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
}

/// Reads attribute `name` of the open file `fd`; `Ok(None)` if the file does not have it.
pub fn get(fd: impl AsFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    read_with(
        |buf| rustix::fs::fgetxattr(fd, name, buf),
        || rustix::fs::fgetxattr_query(fd, name),
    )
}

/// Reads attribute `name` of the file at `path`, following symlinks (`getxattr(2)`).
pub fn get_path(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    read_with(
        |buf| rustix::fs::getxattr(path, name, buf),
        || rustix::fs::getxattr_query(path, name),
    )
}

/// Reads attribute `name` of `path` itself, not following a final symlink (`lgetxattr(2)`).
pub fn lget_path(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    read_with(
        |buf| rustix::fs::lgetxattr(path, name, buf),
        || rustix::fs::lgetxattr_query(path, name),
    )
}

fn read_with(
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut query: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<Option<Vec<u8>>> {
    let mut small = [0u8; FIRST_TRY];
    match read(&mut small) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) if e == rustix::io::Errno::RANGE => {}
        Err(e) => return Err(e.into()),
    }
    // The value is larger than FIRST_TRY: ask for its size, then read it. It may change in
    // between, so retry a few times on ERANGE.
    for _ in 0..4 {
        let len = match query() {
            Ok(n) => n.min(XATTR_SIZE_MAX),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; len];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) if e == rustix::io::Errno::RANGE => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "extended attribute kept changing size while being read",
    ))
}

/// Writes attribute `name` of the open file `fd`.
pub fn set(fd: impl AsFd, name: &str, value: &[u8], mode: SetMode) -> io::Result<()> {
    Ok(rustix::fs::fsetxattr(fd, name, value, mode.flags())?)
}

/// Writes attribute `name` of the file at `path`, following symlinks.
pub fn set_path(path: &Path, name: &str, value: &[u8], mode: SetMode) -> io::Result<()> {
    Ok(rustix::fs::setxattr(path, name, value, mode.flags())?)
}

/// Removes attribute `name` of the open file `fd`; `Ok(false)` if it was not there.
pub fn remove(fd: impl AsFd, name: &str) -> io::Result<bool> {
    match rustix::fs::fremovexattr(fd, name) {
        Ok(()) => Ok(true),
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Removes attribute `name` of the file at `path`; `Ok(false)` if it was not there.
pub fn remove_path(path: &Path, name: &str) -> io::Result<bool> {
    match rustix::fs::removexattr(path, name) {
        Ok(()) => Ok(true),
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names of all attributes of the open file `fd` that the caller may see
/// (`flistxattr(2)`; `security.*` names are listed for everyone).
pub fn list(fd: impl AsFd) -> io::Result<Vec<OsString>> {
    let fd = fd.as_fd();
    for _ in 0..4 {
        let len = rustix::fs::flistxattr_query(fd)?;
        let mut buf = vec![0u8; len];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(split_names(&buf));
            }
            Err(e) if e == rustix::io::Errno::RANGE => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "extended attribute list kept changing while being read",
    ))
}

fn split_names(buf: &[u8]) -> Vec<OsString> {
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    // Unit tests use `user.*` names, which any owner may set on ext4/tmpfs; the
    // `security.*` round trip (root only) is in tests/xattr.rs.
    #[test]
    fn get_set_remove_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(get(&f, "user.t").unwrap(), None);
        set(&f, "user.t", b"small", SetMode::Any).unwrap();
        assert_eq!(get(&f, "user.t").unwrap().as_deref(), Some(&b"small"[..]));
        let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        set_path(&p, "user.big", &big, SetMode::Any).unwrap();
        assert_eq!(get_path(&p, "user.big").unwrap(), Some(big.clone()));
        assert_eq!(lget_path(&p, "user.big").unwrap(), Some(big));
        let e = set(&f, "user.t", b"again", SetMode::Create).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let names = list(&f).unwrap();
        assert!(names.iter().any(|n| n == "user.t"), "{names:?}");
        assert!(remove(&f, "user.t").unwrap());
        assert!(!remove(&f, "user.t").unwrap());
        assert!(remove_path(&p, "user.big").unwrap());
        assert_eq!(get(&f, "user.big").unwrap(), None);
    }
}
