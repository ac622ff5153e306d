//! fanotify, as the daemon will use it: a notification group of class `FAN_CLASS_CONTENT`
//! that is asked before a file on a marked filesystem is opened or executed
//! (`FAN_OPEN_PERM`, `FAN_OPEN_EXEC_PERM`), hands over an fd of the file and a pidfd of the
//! opener, and waits for an allow/deny answer; ignore marks on inodes are the kernel-side
//! cache of allowed files (cleared when the file is modified, unless asked to survive).
//!
//! **A group that stops answering freezes every open on what it marked.** Closing the group
//! (dropping [`Fanotify`], or the process dying) releases every pending event as allowed. The
//! listener must never open files on a filesystem it marked (it would wait on itself).
//!
//! `unsafe` here: `fanotify_init`/`fanotify_mark` have no safe wrapper in rustix (deliberately)
//! and nix's reads allocate per call; each call below states its invariant, and the event
//! records are parsed from bytes with bounds checks, not cast.
#![allow(unsafe_code)] // two syscalls without a safe wrapper, and taking ownership of the fds they return

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `fanotify_init` flags (`FAN_*`, include/uapi/linux/fanotify.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitFlags(pub u32);

impl InitFlags {
    /// Permission events, after the content is available (what IMA's hooks see).
    pub const CLASS_CONTENT: Self = Self(libc::FAN_CLASS_CONTENT);
    pub const CLOEXEC: Self = Self(libc::FAN_CLOEXEC);
    pub const NONBLOCK: Self = Self(libc::FAN_NONBLOCK);
    /// Each event carries a pidfd of the opener (Linux 5.15+).
    pub const REPORT_PIDFD: Self = Self(libc::FAN_REPORT_PIDFD);
    pub const UNLIMITED_QUEUE: Self = Self(libc::FAN_UNLIMITED_QUEUE);
    pub const UNLIMITED_MARKS: Self = Self(libc::FAN_UNLIMITED_MARKS);

    pub const fn union(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// `fanotify_mark` flags besides add/remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkFlags(pub u32);

impl MarkFlags {
    /// Mark the inode itself.
    pub const INODE: Self = Self(0);
    /// Mark the whole filesystem the path is on.
    pub const FILESYSTEM: Self = Self(libc::FAN_MARK_FILESYSTEM);
    /// Mark the mount the path is on.
    pub const MOUNT: Self = Self(libc::FAN_MARK_MOUNT);
    /// An ignore mark: events in the mask are not reported for this object (Linux 6.0+).
    pub const IGNORE: Self = Self(libc::FAN_MARK_IGNORE);
    /// ...and the ignore mark survives a modification of the file.
    pub const IGNORE_SURV: Self = Self(libc::FAN_MARK_IGNORE_SURV);
    /// Do not follow a final symlink in the path.
    pub const DONT_FOLLOW: Self = Self(libc::FAN_MARK_DONT_FOLLOW);

    pub const fn union(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// Event mask bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMask(pub u64);

impl EventMask {
    /// An open (any mode) is about to happen.
    pub const OPEN_PERM: Self = Self(libc::FAN_OPEN_PERM);
    /// An open for execution (`execve`, `uselib`) is about to happen.
    pub const OPEN_EXEC_PERM: Self = Self(libc::FAN_OPEN_EXEC_PERM);
    /// A read is about to happen.
    pub const ACCESS_PERM: Self = Self(libc::FAN_ACCESS_PERM);

    pub const fn union(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }

    pub fn contains(self, o: Self) -> bool {
        self.0 & o.0 == o.0
    }
}

/// A fanotify group.
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
}

/// One event read from the group.
#[derive(Debug)]
pub struct Event {
    pub mask: EventMask,
    /// The file being accessed, opened by the kernel for the listener (`O_RDONLY` plus the
    /// group's event flags); `None` on a queue overflow.
    pub file: Option<OwnedFd>,
    /// The accessing thread group (`pid` of `fanotify_event_metadata`).
    pub pid: i32,
    /// A pidfd of it, with `InitFlags::REPORT_PIDFD` (`None` if it exited meanwhile or the
    /// group did not ask for one).
    pub pidfd: Option<OwnedFd>,
}

/// `struct fanotify_event_metadata`: `u32 event_len, u8 vers, u8 reserved, u16 metadata_len,
/// u64 mask, s32 fd, s32 pid` (native order).
const METADATA_LEN: usize = 24;

impl Fanotify {
    /// `fanotify_init(flags, event_f_flags)`: `event_f_flags` are the open flags of the event
    /// fds (`O_RDONLY | O_LARGEFILE | O_CLOEXEC` is what a listener wants).
    pub fn init(flags: InitFlags, event_f_flags: u32) -> io::Result<Self> {
        // SAFETY: fanotify_init takes two integers and returns a new descriptor or -1; it
        // touches no memory of ours.
        let fd = unsafe { libc::fanotify_init(flags.0, event_f_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by fanotify_init, is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Adds marks: `mask` events on the object at `path` (an inode, or with
    /// [`MarkFlags::FILESYSTEM`]/[`MarkFlags::MOUNT`] its filesystem/mount; with
    /// [`MarkFlags::IGNORE`] an ignore mark).
    pub fn mark(&self, flags: MarkFlags, mask: EventMask, path: &Path) -> io::Result<()> {
        self.mark_raw(libc::FAN_MARK_ADD | flags.0, mask, path)
    }

    /// Removes marks added with the same flags.
    pub fn unmark(&self, flags: MarkFlags, mask: EventMask, path: &Path) -> io::Result<()> {
        self.mark_raw(libc::FAN_MARK_REMOVE | flags.0, mask, path)
    }

    /// Adds an ignore mark for `mask` on the inode of `file` (an event's fd, say): opens
    /// of it are no longer reported, until it is modified unless `survive_modify`.
    pub fn ignore(
        &self,
        file: BorrowedFd<'_>,
        mask: EventMask,
        survive_modify: bool,
    ) -> io::Result<()> {
        let flags = if survive_modify {
            MarkFlags::IGNORE_SURV
        } else {
            MarkFlags::IGNORE
        };
        // SAFETY: a NULL pathname with a valid dirfd marks the object `file` refers to; the
        // fds are valid for the call (AsFd/BorrowedFd).
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | flags.0,
                mask.0,
                file.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn mark_raw(&self, flags: u32, mask: EventMask, path: &Path) -> io::Result<()> {
        let p = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: `p` is a NUL-terminated string that outlives the call; the group fd is open.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                flags,
                mask.0,
                libc::AT_FDCWD,
                p.as_ptr(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the events queued now (at most what fits in `buf`, which should hold a few KiB);
    /// an empty list if none (a non-blocking group) or interrupted.
    pub fn read_events(&self, buf: &mut [u8]) -> io::Result<Vec<Event>> {
        let n = match rustix::io::read(&self.fd, &mut *buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        parse_events(&buf[..n])
    }

    /// Answers a permission event: allow or deny the access it stands for. Every permission
    /// event must be answered (or the group closed), or the accessing task waits forever.
    pub fn respond(&self, event_file: BorrowedFd<'_>, allow: bool) -> io::Result<()> {
        let mut rec = [0u8; 8];
        rec[..4].copy_from_slice(&event_file.as_raw_fd().to_ne_bytes());
        let r = if allow {
            libc::FAN_ALLOW
        } else {
            libc::FAN_DENY
        };
        rec[4..].copy_from_slice(&r.to_ne_bytes());
        let n = rustix::io::write(&self.fd, &rec)?;
        if n != rec.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short fanotify response",
            ));
        }
        Ok(())
    }
}

impl AsFd for Fanotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Takes ownership of a descriptor number the kernel put into an event record (negative:
/// none).
fn own(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: the kernel installed this descriptor in our table for this event record only;
    // nothing else refers to it, so it is ours to close. Each record is parsed once.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Parses the event records of one `read` (taking ownership of their fds).
fn parse_events(mut b: &[u8]) -> io::Result<Vec<Event>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("fanotify: {what}"));
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < METADATA_LEN {
            return Err(bad("truncated event"));
        }
        let event_len = u32_at(b, 0) as usize;
        let vers = b[4];
        let metadata_len = usize::from(u16::from_ne_bytes([b[6], b[7]]));
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return Err(bad("unknown metadata version"));
        }
        if event_len < METADATA_LEN
            || event_len > b.len()
            || metadata_len < METADATA_LEN
            || metadata_len > event_len
        {
            return Err(bad("bad event length"));
        }
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[8..16]);
        let mask = EventMask(u64::from_ne_bytes(m));
        let fd = u32_at(b, 16) as i32;
        let pid = u32_at(b, 20) as i32;
        let mut ev = Event {
            mask,
            file: own(fd),
            pid,
            pidfd: None,
        };
        // Info records: u8 type, u8 pad, u16 len, then the payload.
        let mut info = &b[metadata_len..event_len];
        while info.len() >= 4 {
            let ty = info[0];
            let len = usize::from(u16::from_ne_bytes([info[2], info[3]]));
            if len < 4 || len > info.len() {
                return Err(bad("bad info record length"));
            }
            if ty == libc::FAN_EVENT_INFO_TYPE_PIDFD && len >= 8 {
                ev.pidfd = own(u32_at(info, 4) as i32);
            }
            info = &info[len..];
        }
        out.push(ev);
        b = &b[event_len..];
    }
    Ok(out)
}
