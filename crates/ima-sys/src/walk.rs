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
//! directories spread over threads, for callers that do not need the order, and it opens
//! nothing: it yields each regular file as a [`Found`], its [`Stat`] taken with `statx`
//! relative to the directory descriptor (`AT_SYMLINK_NOFOLLOW`), so that a caller that needs
//! only the metadata (the measurement cache: "unchanged since measured") costs one syscall per
//! file. [`Found::open`] opens it when its content is needed, relative to the same directory
//! descriptor and never through a symlink, and refuses a file that is not the one stat'ed
//! (another device, inode or type: swapped in between).
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

/// What `statx` says about a file: what the walk and the measurement cache use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `st_dev` (`makedev(stx_dev_major, stx_dev_minor)`).
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Birth time, where the filesystem records one (`STATX_BTIME`: ext4, xfs, btrfs,
    /// tmpfs...): a new inode that reuses a deleted one's number has another.
    pub btime_ns: Option<i64>,
}

impl Stat {
    const MASK: rustix::fs::StatxFlags =
        rustix::fs::StatxFlags::BASIC_STATS.union(rustix::fs::StatxFlags::BTIME);

    fn from_statx(x: &rustix::fs::Statx) -> Self {
        let ns = |t: &rustix::fs::StatxTimestamp| {
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec))
        };
        let btime = rustix::fs::StatxFlags::from_bits_retain(x.stx_mask)
            .contains(rustix::fs::StatxFlags::BTIME);
        Self {
            dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
            ino: x.stx_ino,
            mode: u32::from(x.stx_mode),
            uid: x.stx_uid,
            gid: x.stx_gid,
            size: x.stx_size,
            mtime_ns: ns(&x.stx_mtime),
            ctime_ns: ns(&x.stx_ctime),
            btime_ns: btime.then(|| ns(&x.stx_btime)),
        }
    }

    /// `statx(dir, name)`, not following a final symlink unless `follow`.
    pub fn at(dir: impl AsFd, name: &CStr, follow: bool) -> io::Result<Self> {
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        let x = rustix::fs::statx(dir, name, flags, Self::MASK)?;
        Ok(Self::from_statx(&x))
    }

    /// `statx` of an open file.
    pub fn of_fd(fd: impl AsFd) -> io::Result<Self> {
        let x = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, Self::MASK)?;
        Ok(Self::from_statx(&x))
    }

    /// The same facts from a [`Metadata`] (std takes it with `statx` too, birth time
    /// included where the filesystem has one).
    pub fn of_metadata(m: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let btime_ns = m
            .created()
            .ok()
            .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
            });
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
            btime_ns,
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    /// Whether `other` is the same file: device, inode and type.
    pub fn same_file(&self, other: &Self) -> bool {
        (self.dev, self.ino, self.file_type()) == (other.dev, other.ino, other.file_type())
    }
}

/// A regular file found by [`par_walk`], not opened: its `statx` and where to open it.
#[derive(Debug)]
pub struct Found {
    /// `statx` relative to the directory descriptor, not following a symlink (a name from
    /// the command line: following it).
    pub stat: Stat,
    /// Where it was found, for display.
    pub path: PathBuf,
    dir: Arc<OwnedFd>,
    name: CString,
    /// A root named on the command line: a symlink there is followed (the user named it).
    follow: bool,
}

impl Found {
    /// Opens the file (`O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY`, relative to the
    /// directory it was found in) and checks that it is the file [`Self::stat`] describes
    /// (device, inode, type); one swapped in since, or a symlink, is an error, never opened
    /// past.
    pub fn open(&self) -> Result<Entry, WalkError> {
        let flags = if self.follow {
            FILE_FLAGS.difference(OFlags::NOFOLLOW)
        } else {
            FILE_FLAGS
        };
        let fd = match rustix::fs::openat(self.dir.as_fd(), &self.name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => {
                return Err(WalkError::new(&self.path, swapped("a symbolic link")));
            }
            Err(e) => return Err(WalkError::new(&self.path, e)),
        };
        let file = File::from(fd);
        let now = Stat::of_fd(&file).map_err(|e| WalkError::new(&self.path, e))?;
        if !now.same_file(&self.stat) {
            let what = match now.file_type() {
                FileType::RegularFile => "another file",
                t => kind_name(t),
            };
            return Err(WalkError::new(&self.path, swapped(what)));
        }
        let meta = file.metadata().map_err(|e| WalkError::new(&self.path, e))?;
        Ok(Entry {
            file,
            meta,
            path: self.path.clone(),
            dir: self.dir.clone(),
            name: self.name.clone(),
        })
    }
}

impl Found {
    /// A descriptor on the file's filesystem (for `fstatfs` and `FS_IOC_GETFSUUID`) without
    /// opening the file: its directory's when that is on the same device, else the file
    /// itself, opened as by [`Self::open`].
    pub fn fs_fd(&self) -> io::Result<OwnedFd> {
        if !self.follow && Stat::of_fd(&*self.dir)?.dev == self.stat.dev {
            return self.dir.try_clone();
        }
        Ok(self.open().map_err(|e| e.source)?.file.into())
    }
}

/// The error for a name whose file changed between the walk's `statx` and the open.
fn swapped(what: &str) -> io::Error {
    io::Error::other(format!(
        "replaced by {what} between the walk and the open: skipped, not followed"
    ))
}

/// What the walk found: a regular file ([`Entry`], open, from [`Walk`]; [`Found`], not yet
/// opened, from [`par_walk`]) or something skipped.
#[derive(Debug)]
pub enum Item<F = Entry> {
    /// A regular file.
    File(F),
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
                Child::Item(Ok(Item::File(found))) => return Some(found.open().map(Item::File)),
                Child::Item(Ok(Item::Skipped { path, kind, root })) => {
                    return Some(Ok(Item::Skipped { path, kind, root }));
                }
                Child::Item(Err(e)) => return Some(Err(e)),
                Child::File(name) => {
                    let path = top.path.join(OsStr::from_bytes(name.to_bytes()));
                    if let Some(item) = open_file(&top.fd, name, path) {
                        return Some(item);
                    }
                }
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

enum Root<F> {
    File(F),
    Dir(Frame),
    Skipped(Item<F>),
}

/// Opens a name from the command line (following a symlink).
fn open_root(root: &Path, recursive: bool) -> Result<Root<Entry>, WalkError> {
    Ok(match find_root(root, recursive)? {
        Root::File(f) => Root::File(f.open()?),
        Root::Dir(d) => Root::Dir(d),
        Root::Skipped(Item::Skipped { path, kind, root }) => {
            Root::Skipped(Item::Skipped { path, kind, root })
        }
        Root::Skipped(Item::File(f)) => Root::File(f.open()?),
    })
}

/// Looks a name from the command line up (following a symlink): a directory is opened, a
/// regular file only stat'ed.
fn find_root(root: &Path, recursive: bool) -> Result<Root<Found>, WalkError> {
    let st = rustix::fs::stat(root).map_err(|e| WalkError::new(root, e))?;
    let skipped = |t| {
        Root::Skipped(Item::Skipped {
            path: root.to_path_buf(),
            kind: kind_name(t),
            root: true,
        })
    };
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
            let name = root.file_name().unwrap_or(OsStr::new("."));
            let name = CString::new(name.as_bytes())
                .map_err(|_| WalkError::new(root, io::Error::from(io::ErrorKind::InvalidInput)))?;
            let stat = Stat::at(&dir, &name, true).map_err(|e| WalkError::new(root, e))?;
            match stat.file_type() {
                FileType::RegularFile => Ok(Root::File(Found {
                    stat,
                    path: root.to_path_buf(),
                    dir: Arc::new(dir),
                    name,
                    follow: true,
                })),
                FileType::Directory => Err(WalkError::is_directory(root)),
                t => Ok(skipped(t)),
            }
        }
        t => Ok(skipped(t)),
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

enum Child {
    /// A symlink (or a name that vanished into one): nothing to report.
    None,
    Item(Result<Item<Found>, WalkError>),
    /// A regular file by its directory entry's type, not yet opened or stat'ed.
    File(CString),
    /// A directory, not yet opened.
    Dir(CString),
}

/// Sorts one directory entry by its type (`statx` only when the directory does not say).
fn child(dir: &Arc<OwnedFd>, dir_path: &Path, name: &CStr, ty: FileType) -> Child {
    let path = || dir_path.join(OsStr::from_bytes(name.to_bytes()));
    let ty = match ty {
        FileType::Unknown => match Stat::at(dir, name, false) {
            Ok(stat) => return by_stat(dir, name, path(), stat),
            Err(e) => return Child::Item(Err(WalkError::new(path(), e))),
        },
        t => t,
    };
    match ty {
        FileType::Directory => Child::Dir(name.to_owned()),
        FileType::RegularFile => Child::File(name.to_owned()),
        FileType::Symlink => Child::None,
        other => Child::Item(Ok(Item::Skipped {
            path: path(),
            kind: kind_name(other),
            root: false,
        })),
    }
}

/// Sorts a directory entry by its `statx`: a regular file is [`Found`].
fn by_stat(dir: &Arc<OwnedFd>, name: &CStr, path: PathBuf, stat: Stat) -> Child {
    match stat.file_type() {
        FileType::Directory => Child::Dir(name.to_owned()),
        FileType::RegularFile => Child::Item(Ok(Item::File(Found {
            stat,
            path,
            dir: dir.clone(),
            name: name.to_owned(),
            follow: false,
        }))),
        FileType::Symlink => Child::None,
        other => Child::Item(Ok(Item::Skipped {
            path,
            kind: kind_name(other),
            root: false,
        })),
    }
}

/// Opens the regular file `name` (by its directory entry) of `dir` for [`Walk`]; `None` if it
/// was replaced by a symlink since the directory was read.
fn open_file(dir: &Arc<OwnedFd>, name: CString, path: PathBuf) -> Option<Result<Item, WalkError>> {
    match rustix::fs::openat(dir.as_fd(), &name, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => Some(entry(fd, dir.clone(), name, path)),
        Err(rustix::io::Errno::LOOP) => None,
        Err(e) => Some(Err(WalkError::new(path, e))),
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
/// `threads` threads is free, calling `f` for every item in no particular order, each regular
/// file [`Found`] (stat'ed, not opened: [`Found::open`]). Returns when the walk is done. Holds
/// at most one descriptor per directory being read, per thread, plus the directories of the
/// items `f` keeps.
pub fn par_walk<F>(roots: &[PathBuf], recursive: bool, threads: usize, f: F)
where
    F: Fn(Result<Item<Found>, WalkError>) + Sync,
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
        match find_root(root, recursive) {
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
                                let mut sorted = child(dir, &path, name, ent.file_type());
                                if let Child::File(name) = sorted {
                                    let p = path.join(OsStr::from_bytes(name.to_bytes()));
                                    sorted = match Stat::at(dir, &name, false) {
                                        Ok(stat) => by_stat(dir, &name, p, stat),
                                        Err(e) => Child::Item(Err(WalkError::new(p, e))),
                                    };
                                }
                                match sorted {
                                    Child::None | Child::File(_) => {}
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

    /// A [`par_walk`] item as [`Walk`] would have yielded it.
    fn opened(i: Result<Item<Found>, WalkError>) -> Result<Item, WalkError> {
        match i? {
            Item::File(f) => f.open().map(Item::File),
            Item::Skipped { path, kind, root } => Ok(Item::Skipped { path, kind, root }),
        }
    }

    fn found(root: &Path) -> Vec<Found> {
        let all = std::sync::Mutex::new(Vec::new());
        par_walk(&[root.to_path_buf()], true, 2, |i| {
            if let Ok(Item::File(f)) = i {
                all.lock().unwrap().push(f)
            }
        });
        let mut all = all.into_inner().unwrap();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all
    }

    #[test]
    fn found_files_open_only_as_what_was_stated() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("t");
        std::fs::create_dir(&r).unwrap();
        for n in ["a", "b", "c", "d"] {
            std::fs::write(r.join(n), n).unwrap();
        }
        std::fs::write(d.path().join("outside"), b"outside").unwrap();
        let f = found(&r);
        assert_eq!(f.len(), 4);
        let m = std::fs::symlink_metadata(r.join("a")).unwrap();
        assert_eq!(f[0].stat, Stat::of_metadata(&m));
        assert_eq!(f[0].stat.size, 1);
        // Unchanged: opens, and is the file stat'ed.
        let e = f[0].open().unwrap();
        assert_eq!(Stat::of_metadata(&e.meta), f[0].stat);
        // Swapped for another regular file (rename over it), a symlink out of the tree and a
        // FIFO between the walk and the open: refused, never followed or opened past.
        std::fs::write(r.join(".new"), b"b").unwrap();
        std::fs::rename(r.join(".new"), r.join("b")).unwrap();
        symlink(d.path().join("outside"), r.join(".l")).unwrap();
        std::fs::rename(r.join(".l"), r.join("c")).unwrap();
        std::fs::remove_file(r.join("d")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("d"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let msg = |i: usize| f[i].open().unwrap_err().to_string();
        assert!(
            msg(1).ends_with(
                "replaced by another file between the walk and the open: skipped, not followed"
            ),
            "{}",
            msg(1)
        );
        assert!(msg(2).contains("replaced by a symbolic link"), "{}", msg(2));
        assert!(msg(3).contains("replaced by FIFO"), "{}", msg(3));
        assert!(msg(3).starts_with(&r.join("d").display().to_string()));
        // A root names a file (through a symlink: followed, the user named it).
        symlink(r.join("a"), d.path().join("root-link")).unwrap();
        let root = std::sync::Mutex::new(None);
        par_walk(&[d.path().join("root-link")], false, 1, |i| {
            *root.lock().unwrap() = Some(opened(i).unwrap())
        });
        let Some(Item::File(mut e)) = root.into_inner().unwrap() else {
            panic!()
        };
        let mut text = String::new();
        e.file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "a");
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
            par.lock().unwrap().extend(files([opened(i)]))
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
