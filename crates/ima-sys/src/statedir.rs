//! Directories whose files are evidence (the measurement engine's state): every file is
//! opened relative to an open directory descriptor with `O_NOFOLLOW`, new files are created
//! with `O_EXCL` under names nobody else chose, and files are replaced by `renameat`, which
//! replaces a symlink rather than writing through it. A symlink planted under any name is
//! therefore refused or replaced, never followed, and nothing is created through a dangling
//! link. Safe API over rustix; no `unsafe` here.
//!
//! [`Dir::open_private`] also checks the directory itself: not a symlink, owned by the
//! caller's effective uid, not writable by group or others. A directory another user can
//! write is one where that user can swap names under us between two calls.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Why a directory is not fit to hold state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsafeDir {
    #[error("is a symlink (state directories must be real directories)")]
    Symlink,
    #[error("is not a directory")]
    NotDir,
    #[error("is owned by uid {owner}, not by the caller (euid {euid})")]
    Owner { owner: u32, euid: u32 },
    #[error("is writable by group or others (mode {mode:04o}); chmod go-w it")]
    Writable { mode: u32 },
}

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsafeFile {
    #[error("is a symlink (state files are never followed)")]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error("is larger than {max} bytes, more than a valid state holds")]
    TooLarge { max: u64 },
}

/// How [`Dir::open`] opens a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct How {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    /// Create it (mode `mode`) if missing; an existing file is opened as it is.
    pub create: bool,
    pub mode: u32,
}

impl How {
    /// Read-only, no create.
    pub fn read() -> Self {
        Self {
            read: true,
            ..Self::default()
        }
    }
}

/// An open directory; every name is resolved relative to it, never following a symlink.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Creates `path` (and missing parents) with `mode`, or opens it, and checks that it is a
    /// directory of the caller that nobody else can write ([`UnsafeDir`]).
    pub fn open_private(path: &Path, mode: u32) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = open_dir(rustix::fs::CWD, path)?;
        check_private(&fd)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing directory without the ownership checks (for a file the user named
    /// explicitly, like `--tpm soft:PATH`); the last component is still not followed.
    pub fn open_existing(path: &Path) -> io::Result<Self> {
        let p = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = open_dir(rustix::fs::CWD, p)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The subdirectory `name`, created with `mode` if missing, checked as
    /// [`Dir::open_private`] checks.
    pub fn private_subdir(&self, name: &str, mode: u32) -> io::Result<Self> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = open_dir(self.fd.as_fd(), Path::new(name))?;
        check_private(&fd)?;
        Ok(Self {
            fd,
            path: self.path.join(name),
        })
    }

    /// The path this was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name` (for messages).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `name` as `how` says; `Ok(None)` if it does not exist and `how.create` is
    /// false. A symlink is refused ([`UnsafeFile::Symlink`]), and so is anything but a
    /// regular file (opened non-blocking, so a FIFO cannot hang us).
    pub fn open(&self, name: &str, how: How) -> io::Result<Option<File>> {
        let mut flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        flags |= match (how.read, how.write || how.append) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        if how.append {
            flags |= OFlags::APPEND;
        }
        if how.create {
            flags |= OFlags::CREATE;
        }
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(how.mode)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if !how.create => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(io::Error::other(UnsafeFile::Symlink)),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(UnsafeFile::NotRegular));
        }
        // Back to blocking I/O (a regular file ignores it, but keep the descriptor plain).
        rustix::fs::fcntl_setfl(&fd, rustix::fs::fcntl_getfl(&fd)? & !OFlags::NONBLOCK)?;
        Ok(Some(File::from(fd)))
    }

    /// Reads `name` whole if it exists, refusing more than `max` bytes
    /// ([`UnsafeFile::TooLarge`]).
    pub fn read_bounded(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(f) = self.open(name, How::read())? else {
            return Ok(None);
        };
        read_to_end_bounded(f, max).map(Some)
    }

    /// Replaces `name` with `bytes` atomically: a new file under a fresh name (`O_EXCL`),
    /// written, fsynced if `durable`, renamed over `name`. Whatever `name` was (a symlink
    /// included) is replaced, never written through.
    pub fn replace(&self, name: &str, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
        let (tmp, mut f) = self.create_temp(name, mode)?;
        let r = f
            .write_all(bytes)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
            .and_then(|()| {
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(Into::into)
            });
        if r.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        r
    }

    /// Creates a new file with a name derived from `base` that did not exist (`O_EXCL`, so
    /// a planted name of any kind is skipped, not followed).
    pub fn create_temp(&self, base: &str, mode: u32) -> io::Result<(String, File)> {
        static N: AtomicU64 = AtomicU64::new(0);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for _ in 0..100 {
            let name = format!(
                ".{base}.{}.{}.tmp",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            match rustix::fs::openat(&self.fd, name.as_str(), flags, Mode::from_raw_mode(mode)) {
                Ok(fd) => return Ok((name, File::from(fd))),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free temporary name for {base}"),
        ))
    }

    /// Renames `name` to `to_name` in `to` (replacing it). `Ok(false)` if `name` is missing.
    pub fn rename(&self, name: &str, to: &Dir, to_name: &str) -> io::Result<bool> {
        match rustix::fs::renameat(&self.fd, name, &to.fd, to_name) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the file (or symlink) `name`; `Ok(false)` if it is missing.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `name` exists (as anything; a symlink is not followed).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The target of the symlink `name`; `None` if it is missing or not a symlink.
    pub fn read_link(&self, name: &str) -> io::Result<Option<PathBuf>> {
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())))),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `name` a symlink to `target`, replacing whatever file or link had the name.
    pub fn set_symlink(&self, target: &str, name: &str) -> io::Result<()> {
        self.remove(name)?;
        rustix::fs::symlinkat(target, &self.fd, name).map_err(Into::into)
    }

    /// The names in the directory (not `.` and `..`), in no particular order.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                v.push(String::from_utf8_lossy(n).into_owned());
            }
        }
        Ok(v)
    }

    /// Makes the directory's entries (created, renamed, removed names) durable.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(Into::into)
    }
}

/// Reads `f` to its end, refusing more than `max` bytes ([`UnsafeFile::TooLarge`]): a file
/// whose size (`fstat`) is larger is refused before anything is read, so a huge (or sparse)
/// state file costs one syscall, not `max` bytes of reading and memory; one that grows while
/// it is read stops at `max + 1` bytes.
pub fn read_to_end_bounded(f: File, max: u64) -> io::Result<Vec<u8>> {
    let size = f.metadata()?.len();
    if size > max {
        return Err(io::Error::other(UnsafeFile::TooLarge { max }));
    }
    let mut v = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.take(max.saturating_add(1)).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(io::Error::other(UnsafeFile::TooLarge { max }));
    }
    Ok(v)
}

/// `n` bytes from the kernel's random pool (`getrandom(2)`).
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(b)
}

/// The caller's effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Opens the directory `path` relative to `at`, not following a symlink in its last
/// component (which `O_NOFOLLOW | O_DIRECTORY` reports as `ELOOP` or `ENOTDIR`).
fn open_dir(at: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(at, path, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => {
            match rustix::fs::statat(at, path, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Err(io::Error::other(UnsafeDir::Symlink))
                }
                Ok(_) => Err(io::Error::other(UnsafeDir::NotDir)),
                Err(_) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn check_private(fd: &OwnedFd) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    let euid = euid();
    if st.st_uid != euid {
        return Err(io::Error::other(UnsafeDir::Owner {
            owner: st.st_uid,
            euid,
        }));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(io::Error::other(UnsafeDir::Writable { mode }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_links_and_foreign_or_open_directories() {
        let d = tempfile::tempdir().unwrap();
        let state = Dir::open_private(&d.path().join("s"), 0o700).unwrap();
        std::os::unix::fs::symlink(d.path().join("s"), d.path().join("link")).unwrap();
        let e = Dir::open_private(&d.path().join("link"), 0o700).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(d.path().join("open")).unwrap();
        std::fs::set_permissions(
            d.path().join("open"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = Dir::open_private(&d.path().join("open"), 0o700).unwrap_err();
        assert!(e.to_string().contains("mode 0777"), "{e}");

        // A planted symlink (dangling or not) is never followed: read, create, replace.
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("s/f")).unwrap();
        std::os::unix::fs::symlink(d.path().join("nowhere"), d.path().join("s/g")).unwrap();
        assert!(
            state
                .read_bounded("f", 100)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
        let create = How {
            write: true,
            append: true,
            create: true,
            mode: 0o600,
            ..How::default()
        };
        assert!(state.open("g", create).is_err());
        assert!(!d.path().join("nowhere").exists());
        state.replace("f", b"new", 0o600, true).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(state.read_bounded("f", 3).unwrap().unwrap(), b"new");
        let e = state.read_bounded("f", 2).unwrap_err();
        assert!(e.to_string().contains("larger than 2 bytes"), "{e}");
        state.set_symlink("f", "l").unwrap();
        assert_eq!(state.read_link("l").unwrap(), Some(PathBuf::from("f")));
        assert_eq!(state.read_link("f").unwrap(), None);
        assert!(state.names().unwrap().contains(&"l".to_owned()));
        assert_ne!(random_bytes::<16>().unwrap(), [0; 16]);
    }
}
