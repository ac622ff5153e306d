//! An fd-first walk of the files named on a command line, or (recursively) below them: every
//! file is opened relative to its parent directory's descriptor (`openat` with `O_NOFOLLOW`),
//! and what the caller learns about it comes from that descriptor (`fstat`), so a file
//! swapped for a symlink between the directory read and the open is never followed, and the
//! file a caller hashes, labels or changes is the one it was told about. Nothing is ever
//! reopened by path.
//!
//! [`Walk`] yields [`Item`]s in `nftw` order (pre-order, each directory's entries in
//! `readdir` order, as `evmctl -r` visits them), lazily: it holds one directory descriptor
//! per level of the current path and nothing else. [`par_walk`] is the same walk with the
//! directories spread over threads, for callers that do not need the order.
//!
//! Regular files are the only files opened. Symlinks inside a tree are not followed and not
//! reported; FIFOs, devices and sockets are reported as [`Item::Skipped`] without being
//! opened (opening a FIFO blocks, opening a device has side effects). Files are opened with
//! `O_NONBLOCK | O_NOCTTY`, so that a regular file replaced by a FIFO or a device between the
//! directory read and the open cannot block the walk; it is closed at once and reported as
//! skipped. (Such a replacement needs a device node on the walked filesystem: creating one
//! takes `CAP_MKNOD`.) Names given on the command line are followed if they are symlinks:
//! the user named them.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// A regular file found by the walk, open for reading.
#[derive(Debug)]
pub struct Entry {
    /// The open file (`O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`).
    pub file: File,
    /// `fstat` of [`Self::file`].
    pub meta: Metadata,
    /// Where it was found, for display: the root as given, joined with the names below it.
    pub path: PathBuf,
    /// The directory it was opened in, for its siblings (`PATH.sig`).
    dir: Arc<OwnedFd>,
    name: CString,
}

impl Entry {
    /// Creates or truncates the sibling `NAME{suffix}` for writing (mode 0644 before the
    /// umask), in the same directory the file was opened in, without following a symlink
    /// there; an existing FIFO or device fails instead of blocking.
    pub fn create_sibling(&self, suffix: &str) -> io::Result<File> {
        let name = self.sibling_name(suffix)?;
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            &name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(not_regular());
        }
        f.set_len(0)?;
        Ok(f)
    }

    /// Reads the sibling `NAME{suffix}` (at most `limit` bytes; more is an error), without
    /// following a symlink; `Ok(None)` if it does not exist.
    pub fn read_sibling(&self, suffix: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let name = self.sibling_name(suffix)?;
        let fd = match rustix::fs::openat(self.dir.as_fd(), &name, FILE_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(not_regular());
        }
        let mut buf = Vec::new();
        f.take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ));
        }
        Ok(Some(buf))
    }

    fn sibling_name(&self, suffix: &str) -> io::Result<CString> {
        let mut n = self.name.as_bytes().to_vec();
        n.extend_from_slice(suffix.as_bytes());
        CString::new(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
    }
}

/// What the walk found.
#[derive(Debug)]
pub enum Item {
    /// A regular file, open.
    File(Entry),
    /// A FIFO, device or socket (never opened), or a file that was one of those by the time
    /// it was opened; `root` if it was named, not found below a directory.
    Skipped {
        path: PathBuf,
        kind: &'static str,
        root: bool,
    },
}

/// A name that could not be read or opened (the walk goes on).
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WalkError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl WalkError {
    fn new(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Self {
            path: path.into(),
            source: source.into(),
        }
    }

    /// A directory named without `-r`.
    fn is_directory(path: &Path) -> Self {
        Self::new(
            path,
            io::Error::new(io::ErrorKind::IsADirectory, "is a directory (use -r)"),
        )
    }
}

/// How regular files are opened: read-only, never through a symlink, never blocking.
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// How directories are opened below a root.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The sequential walk: an iterator of [`Item`]s in `nftw` order.
#[derive(Debug)]
pub struct Walk {
    roots: std::collections::VecDeque<PathBuf>,
    recursive: bool,
    stack: Vec<Frame>,
}

#[derive(Debug)]
struct Frame {
    /// The directory, for `openat`; shared with the entries opened in it.
    fd: Arc<OwnedFd>,
    /// Its entries being read (a second descriptor of the same directory).
    entries: Dir,
    path: PathBuf,
}

impl Walk {
    /// Walks `roots`: each regular file among them, and with `recursive` every regular file
    /// below each directory among them.
    pub fn new(roots: &[PathBuf], recursive: bool) -> Self {
        Self {
            roots: roots.iter().cloned().collect(),
            recursive,
            stack: Vec::new(),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<Item, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                let root = self.roots.pop_front()?;
                match open_root(&root, self.recursive) {
                    Ok(Root::File(e)) => return Some(Ok(Item::File(e))),
                    Ok(Root::Skipped(i)) => return Some(Ok(i)),
                    Ok(Root::Dir(frame)) => {
                        self.stack.push(frame);
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            };
            let ent = match top.entries.read() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(Err(e)) => {
                    let path = top.path.clone();
                    self.stack.pop();
                    return Some(Err(WalkError::new(path, e)));
                }
                Some(Ok(ent)) => ent,
            };
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match child(&top.fd, &top.path, name, ent.file_type()) {
                Child::None => {}
                Child::Item(item) => return Some(item),
                Child::Dir(name) => {
                    let path = top.path.join(OsStr::from_bytes(name.to_bytes()));
                    match open_dir(&top.fd, &name, &path)
                        .and_then(|fd| fd.map(|fd| frame(fd, path)).transpose())
                    {
                        Ok(Some(f)) => self.stack.push(f),
                        Ok(None) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}

enum Root {
    File(Entry),
    Dir(Frame),
    Skipped(Item),
}

/// Opens a name from the command line (following a symlink).
fn open_root(root: &Path, recursive: bool) -> Result<Root, WalkError> {
    let st = rustix::fs::stat(root).map_err(|e| WalkError::new(root, e))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory if recursive => {
            let fd = rustix::fs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
                .map_err(|e| WalkError::new(root, e))?;
            frame(fd, root.to_path_buf()).map(Root::Dir)
        }
        FileType::Directory => Err(WalkError::is_directory(root)),
        FileType::RegularFile => {
            let parent = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = rustix::fs::open(parent, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| WalkError::new(parent, e))?;
            let fd = rustix::fs::open(root, FILE_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
                .map_err(|e| WalkError::new(root, e))?;
            let name = root.file_name().unwrap_or(OsStr::new("."));
            let name = CString::new(name.as_bytes())
                .map_err(|_| WalkError::new(root, io::Error::from(io::ErrorKind::InvalidInput)))?;
            match entry(fd, Arc::new(dir), name, root.to_path_buf()) {
                Ok(Item::File(e)) => Ok(Root::File(e)),
                Ok(Item::Skipped { path, kind, .. }) => Ok(Root::Skipped(Item::Skipped {
                    path,
                    kind,
                    root: true,
                })),
                Err(e) => Err(e),
            }
        }
        t => Ok(Root::Skipped(Item::Skipped {
            path: root.to_path_buf(),
            kind: kind_name(t),
            root: true,
        })),
    }
}

fn frame(fd: OwnedFd, path: PathBuf) -> Result<Frame, WalkError> {
    let entries = Dir::read_from(&fd).map_err(|e| WalkError::new(&path, e))?;
    Ok(Frame {
        fd: Arc::new(fd),
        entries,
        path,
    })
}

#[allow(clippy::large_enum_variant)] // returned by value once per entry, never stored
enum Child {
    /// A symlink (or a name that vanished into one): nothing to report.
    None,
    Item(Result<Item, WalkError>),
    /// A directory, not yet opened.
    Dir(CString),
}

/// Opens one directory entry by its type.
fn child(dir: &Arc<OwnedFd>, dir_path: &Path, name: &CStr, ty: FileType) -> Child {
    let path = || dir_path.join(OsStr::from_bytes(name.to_bytes()));
    let ty = match ty {
        FileType::Unknown => {
            match rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(e) => return Child::Item(Err(WalkError::new(path(), e))),
            }
        }
        t => t,
    };
    match ty {
        FileType::Directory => Child::Dir(name.to_owned()),
        FileType::RegularFile => {
            match rustix::fs::openat(dir.as_fd(), name, FILE_FLAGS, Mode::empty()) {
                Ok(fd) => Child::Item(entry(fd, dir.clone(), name.to_owned(), path())),
                Err(rustix::io::Errno::LOOP) => Child::None,
                Err(e) => Child::Item(Err(WalkError::new(path(), e))),
            }
        }
        FileType::Symlink => Child::None,
        other => Child::Item(Ok(Item::Skipped {
            path: path(),
            kind: kind_name(other),
            root: false,
        })),
    }
}

/// Opens the subdirectory `name` of `parent`; `Ok(None)` if it was replaced by a symlink or
/// something else since the directory was read (not followed).
fn open_dir(parent: &OwnedFd, name: &CStr, path: &Path) -> Result<Option<OwnedFd>, WalkError> {
    match rustix::fs::openat(parent.as_fd(), name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(WalkError::new(path, e)),
    }
}

/// The [`Item`] for a name just opened: a regular file, or (replaced since it was listed)
/// something to skip.
fn entry(fd: OwnedFd, dir: Arc<OwnedFd>, name: CString, path: PathBuf) -> Result<Item, WalkError> {
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| WalkError::new(&path, e))?;
    if !meta.is_file() {
        let kind = kind_name(FileType::from_raw_mode(
            std::os::unix::fs::MetadataExt::mode(&meta),
        ));
        return Ok(Item::Skipped {
            path,
            kind,
            root: false,
        });
    }
    Ok(Item::File(Entry {
        file,
        meta,
        path,
        dir,
        name,
    }))
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        _ => "not a regular file",
    }
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), `None` if unlimited.
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The walk of [`Walk::new`]`(roots, recursive)` with each directory read by whichever of
/// `threads` threads is free, calling `f` for every item in no particular order. Returns when
/// the walk is done. Holds at most one descriptor per directory being read, per thread, plus
/// the entries `f` keeps.
pub fn par_walk<F>(roots: &[PathBuf], recursive: bool, threads: usize, f: F)
where
    F: Fn(Result<Item, WalkError>) + Sync,
{
    use std::sync::{Condvar, Mutex};

    /// A directory to read: its descriptor (or its parent's and its name: opened when it
    /// is read, so that waiting directories hold no descriptor of their own) and display path.
    type Pending = (Arc<OwnedFd>, Option<CString>, PathBuf);
    struct Shared {
        /// Directories waiting to be read, and how many threads are reading one.
        state: Mutex<(Vec<Pending>, usize)>,
        more: Condvar,
    }
    let shared = Shared {
        state: Mutex::new((Vec::new(), 0)),
        more: Condvar::new(),
    };
    let lock = || shared.state.lock().unwrap_or_else(|p| p.into_inner());
    for root in roots {
        match open_root(root, recursive) {
            Ok(Root::File(e)) => f(Ok(Item::File(e))),
            Ok(Root::Skipped(i)) => f(Ok(i)),
            Ok(Root::Dir(frame)) => lock().0.push((frame.fd, None, frame.path)),
            Err(e) => f(Err(e)),
        }
    }
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let (parent, name, path) = {
                        let mut st = lock();
                        loop {
                            if let Some(d) = st.0.pop() {
                                st.1 += 1;
                                break d;
                            }
                            if st.1 == 0 {
                                shared.more.notify_all();
                                return;
                            }
                            st = shared.more.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let mut subdirs = Vec::new();
                    let dir = match name {
                        None => Ok(Some(parent)),
                        Some(name) => open_dir(&parent, &name, &path).map(|d| d.map(Arc::new)),
                    };
                    let dir = match dir {
                        Ok(d) => d,
                        Err(e) => {
                            f(Err(e));
                            None
                        }
                    };
                    match dir.as_ref().map(|d| Dir::read_from(d.as_fd())) {
                        None => {}
                        Some(Err(e)) => f(Err(WalkError::new(&path, e))),
                        Some(Ok(mut entries)) => {
                            while let Some(ent) = entries.read() {
                                let ent = match ent {
                                    Ok(e) => e,
                                    Err(e) => {
                                        f(Err(WalkError::new(&path, e)));
                                        break;
                                    }
                                };
                                let name = ent.file_name();
                                if name == c"." || name == c".." {
                                    continue;
                                }
                                let Some(dir) = dir.as_ref() else { break };
                                match child(dir, &path, name, ent.file_type()) {
                                    Child::None => {}
                                    Child::Item(item) => f(item),
                                    Child::Dir(name) => {
                                        let sub = path.join(OsStr::from_bytes(name.to_bytes()));
                                        subdirs.push((dir.clone(), Some(name), sub));
                                    }
                                }
                            }
                        }
                    }
                    drop(dir);
                    let mut st = lock();
                    st.0.extend(subdirs);
                    st.1 -= 1;
                    shared.more.notify_all();
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn files(items: impl IntoIterator<Item = Result<Item, WalkError>>) -> Vec<String> {
        items
            .into_iter()
            .map(|i| match i {
                Ok(Item::File(e)) => {
                    let m = std::fs::metadata(&e.path).unwrap();
                    assert_eq!((m.dev(), m.ino()), (e.meta.dev(), e.meta.ino()));
                    e.path.display().to_string()
                }
                Ok(Item::Skipped { path, kind, .. }) => format!("skip {} {kind}", path.display()),
                Err(e) => format!("error {e}"),
            })
            .collect()
    }

    #[test]
    fn nftw_order_no_symlinks_fifos_skipped_unopened() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for (i, sub) in ["a", "a/b", "c"].iter().enumerate() {
            std::fs::create_dir(r.join(sub)).unwrap();
            std::fs::write(r.join(sub).join(format!("f{i}")), b"x").unwrap();
        }
        std::fs::write(r.join("top"), b"t").unwrap();
        symlink("/etc/passwd", r.join("a/link")).unwrap();
        symlink(r.join("c"), r.join("dirlink")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("a/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let got = files(Walk::new(&[r.to_path_buf()], true));
        // walkdir's order is nftw's (pre-order, readdir order): the oracle.
        let want: Vec<String> = walkdir::WalkDir::new(r)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_type().is_dir() && !e.file_type().is_symlink())
            .map(|e| {
                if e.file_type().is_file() {
                    e.path().display().to_string()
                } else {
                    format!("skip {} FIFO", e.path().display())
                }
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), 5);

        let mut par = std::sync::Mutex::new(Vec::new());
        par_walk(&[r.to_path_buf()], true, 3, |i| {
            par.lock().unwrap().extend(files([i]))
        });
        let mut par = std::mem::take(par.get_mut().unwrap());
        par.sort();
        let mut want = want;
        want.sort();
        assert_eq!(par, want);
    }

    #[test]
    fn roots_follow_symlinks_and_report_errors() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::write(r.join("f"), b"x").unwrap();
        symlink(r.join("f"), r.join("l")).unwrap();
        let got = files(Walk::new(
            &[
                r.join("l"),
                r.join("missing"),
                r.to_path_buf(),
                "/dev/null".into(),
            ],
            false,
        ));
        assert_eq!(got[3], "skip /dev/null character device");
        assert_eq!(got[0], r.join("l").display().to_string());
        assert!(got[1].starts_with("error ") && got[1].contains("No such file"));
        assert!(got[2].ends_with("is a directory (use -r)"), "{}", got[2]);
    }

    #[test]
    fn siblings_are_relative_and_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("t")).unwrap();
        std::fs::write(r.join("t/f"), b"x").unwrap();
        std::fs::write(r.join("outside"), b"keep").unwrap();
        symlink(r.join("outside"), r.join("t/f.sig")).unwrap();
        let Some(Ok(Item::File(e))) = Walk::new(&[r.join("t")], true).next() else {
            panic!()
        };
        assert!(e.create_sibling(".sig").is_err());
        assert!(e.read_sibling(".sig", 100).is_err());
        assert_eq!(std::fs::read(r.join("outside")).unwrap(), b"keep");
        std::fs::remove_file(r.join("t/f.sig")).unwrap();
        assert!(e.read_sibling(".sig", 100).unwrap().is_none());
        use std::io::Write;
        e.create_sibling(".sig")
            .unwrap()
            .write_all(b"0123")
            .unwrap();
        assert_eq!(e.read_sibling(".sig", 4).unwrap().unwrap(), b"0123");
        assert!(e.read_sibling(".sig", 3).is_err());
    }
}
