//! fanotify permission events: the hooks through which a userspace IMA sees `open` and `exec`
//! before they complete. A [`Group`] is one `FAN_CLASS_CONTENT` listener; it marks whole
//! filesystems ([`Group::mark_filesystem`]), reads permission events in batches
//! ([`Group::read`]) and answers each one through its [`PermissionEvent`], which answers with the
//! group's default when it is dropped unanswered, so no code path can leave an opener blocked.
//! [`Group::ignore`] puts the kernel-side allow cache (`FAN_MARK_IGNORE` on the inode) on a file;
//! the kernel clears it when the file is modified.
//!
//! Mirrors the hooks of `security/integrity/ima/ima_main.c` (`ima_file_check`,
//! `ima_bprm_check`) as far as `fs/notify/fanotify/fanotify_user.c` exposes them.
//!
//! Safety rule for callers: never open a path on a marked filesystem from the thread that
//! answers, or the listener waits on itself. Read the file through [`PermissionEvent::fd`].
//! Closing the group (also on exit or SIGKILL) makes the kernel allow every pending event.
#![allow(unsafe_code)] // owning the event and pidfd numbers the kernel wrote (`OwnedFd::from_raw_fd`)

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

/// The events this crate asks for, as the kernel's `FAN_*` mask bits.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Mask(pub u64);

impl Mask {
    /// `FAN_OPEN_PERM`: a file is being opened (IMA's `FILE_CHECK`).
    pub const OPEN_PERM: Self = Self(libc::FAN_OPEN_PERM);
    /// `FAN_OPEN_EXEC_PERM`: a file is being opened for execution (IMA's `BPRM_CHECK`).
    pub const OPEN_EXEC_PERM: Self = Self(libc::FAN_OPEN_EXEC_PERM);
    /// `FAN_ACCESS_PERM`: a read of an open file.
    pub const ACCESS_PERM: Self = Self(libc::FAN_ACCESS_PERM);
    /// `FAN_Q_OVERFLOW`: the kernel's queue overflowed (events were lost).
    pub const Q_OVERFLOW: Self = Self(libc::FAN_Q_OVERFLOW);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Mask {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The answer to a permission event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Response {
    /// `FAN_ALLOW`: the open proceeds.
    Allow,
    /// `FAN_DENY`: the open fails with `EPERM`.
    Deny,
}

impl Response {
    fn bits(self) -> u32 {
        match self {
            Self::Allow => libc::FAN_ALLOW,
            Self::Deny => libc::FAN_DENY,
        }
    }
}

/// What went wrong talking to fanotify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FanotifyError {
    /// `fanotify_init` failed (not root, or no `CONFIG_FANOTIFY_ACCESS_PERMISSIONS`).
    #[error("fanotify_init: {0}")]
    Init(#[source] io::Error),
    /// `fanotify_mark` failed for a path.
    #[error("fanotify_mark {path}: {source}")]
    Mark {
        /// The path whose filesystem was being (un)marked.
        path: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// `fanotify_mark` of an ignore mark on an event's inode failed.
    #[error("fanotify_mark (ignore inode): {0}")]
    Ignore(#[source] io::Error),
    /// Reading events failed.
    #[error("reading fanotify events: {0}")]
    Read(#[source] io::Error),
    /// The kernel wrote an event this code does not understand.
    #[error("fanotify event at byte {offset}: {what}")]
    Malformed {
        /// Offset of the event in the batch.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// Writing a response failed.
    #[error("answering fanotify event (fd {fd}): {source}")]
    Respond {
        /// The event's fd number.
        fd: RawFd,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// One fanotify group in `FAN_CLASS_CONTENT`, non-blocking, close-on-exec. Cheap to share:
/// clones answer through the same group.
#[derive(Clone)]
pub struct Group {
    inner: Arc<Inner>,
}

struct Inner {
    fan: Fanotify,
    pidfd: bool,
    default: Response,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("fd", &self.inner.fan.as_raw_fd())
            .field("pidfd", &self.inner.pidfd)
            .field("default", &self.inner.default)
            .finish()
    }
}

/// The size of one `struct fanotify_event_metadata`.
const METADATA_LEN: usize = 24;
/// Bytes read per batch: a few hundred events with their pidfd records.
const BATCH_BYTES: usize = 16 * 1024;

impl Group {
    /// Creates a group. Events carry a pidfd (`FAN_REPORT_PIDFD`, Linux 5.15+) when the kernel
    /// supports it ([`Group::reports_pidfd`]). `default` answers every event dropped
    /// unanswered. `FAN_UNLIMITED_MARKS` lets the allow cache grow with the inode cache (its
    /// marks are evictable, so they never pin an inode); the event queue stays bounded (the
    /// kernel's 16,384): on overflow the kernel drops the event and allows the open.
    pub fn new(default: Response) -> Result<Self, FanotifyError> {
        let base = InitFlags::FAN_CLASS_CONTENT
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_UNLIMITED_MARKS;
        let event_flags = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
        let (fan, pidfd) = match Fanotify::init(base | InitFlags::FAN_REPORT_PIDFD, event_flags) {
            Ok(fan) => (fan, true),
            Err(Errno::EINVAL) => (
                Fanotify::init(base, event_flags).map_err(|e| FanotifyError::Init(errno(e)))?,
                false,
            ),
            Err(e) => return Err(FanotifyError::Init(errno(e))),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                fan,
                pidfd,
                default,
            }),
        })
    }

    /// Whether events carry a pidfd.
    pub fn reports_pidfd(&self) -> bool {
        self.inner.pidfd
    }

    /// The answer given to an event dropped unanswered.
    pub fn default_response(&self) -> Response {
        self.inner.default
    }

    /// Asks for `mask` on every file of the filesystem holding `path` (`FAN_MARK_FILESYSTEM`).
    pub fn mark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), FanotifyError> {
        self.mark_path(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            path,
            mask,
        )
    }

    /// Removes the filesystem mark of [`Group::mark_filesystem`].
    pub fn unmark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), FanotifyError> {
        self.mark_path(
            MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_FILESYSTEM,
            path,
            mask,
        )
    }

    fn mark_path(&self, flags: MarkFlags, path: &Path, mask: Mask) -> Result<(), FanotifyError> {
        self.inner
            .fan
            .mark(
                flags,
                MaskFlags::from_bits_retain(mask.0),
                nix::fcntl::AT_FDCWD,
                Some(path),
            )
            .map_err(|e| FanotifyError::Mark {
                path: path.display().to_string(),
                source: errno(e),
            })
    }

    /// The kernel-side allow cache: no more `mask` events for the inode `fd` refers to until it
    /// is modified (`FAN_MARK_IGNORE` without `SURV_MODIFY`; the kernel drops the mark on the
    /// first write). The mark is evictable: it goes with the inode when the kernel reclaims it.
    pub fn ignore(&self, fd: BorrowedFd<'_>, mask: Mask) -> Result<(), FanotifyError> {
        let flags = MarkFlags::FAN_MARK_ADD
            | MarkFlags::FAN_MARK_INODE
            | MarkFlags::FAN_MARK_IGNORE
            | MarkFlags::FAN_MARK_EVICTABLE;
        self.inner
            .fan
            .mark::<_, Path>(flags, MaskFlags::from_bits_retain(mask.0), fd, None)
            .map_err(|e| FanotifyError::Ignore(errno(e)))
    }

    /// Removes every inode mark of the group (`FAN_MARK_FLUSH`): the whole kernel-side allow
    /// cache, for when what made those allows cacheable (the policy) changed. Filesystem marks
    /// stay.
    pub fn flush_inode_marks(&self) -> Result<(), FanotifyError> {
        self.inner
            .fan
            .mark::<_, Path>(
                MarkFlags::FAN_MARK_FLUSH,
                MaskFlags::empty(),
                nix::fcntl::AT_FDCWD,
                None,
            )
            .map_err(|e| FanotifyError::Ignore(errno(e)))
    }

    /// Waits up to `timeout` for events to read. `Ok(false)` on timeout or a signal.
    pub fn wait(&self, timeout: Duration) -> Result<bool, FanotifyError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.inner.fan.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(FanotifyError::Read(errno(e))),
        }
    }

    /// Reads one batch of events without blocking (empty when none are queued). Every
    /// permission event returned must be answered; one that is dropped is answered with the
    /// group's default. `overflows` counts `FAN_Q_OVERFLOW` notices.
    pub fn read(&self, overflows: &mut u64) -> Result<Vec<PermissionEvent>, FanotifyError> {
        let mut buf = vec![0u8; BATCH_BYTES];
        let n = match nix::unistd::read(&self.inner.fan, &mut buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(FanotifyError::Read(errno(e))),
        };
        let (raw, mut malformed) = parse(&buf[..n]);
        let mut events = Vec::with_capacity(raw.len());
        for r in raw {
            // SAFETY: the kernel installed `r.fd` (and `r.pidfd`) in our fd table for this read
            // and nothing else owns them: `parse` yields each number once, only the fds of this
            // buffer, and this loop takes ownership of every one of them exactly once.
            let fd = (r.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r.fd) });
            // SAFETY: as above, for the pidfd info record.
            let pidfd = (r.pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r.pidfd) });
            let Some(fd) = fd else {
                if r.mask & libc::FAN_Q_OVERFLOW != 0 {
                    *overflows += 1;
                } else {
                    malformed.get_or_insert(FanotifyError::Malformed {
                        offset: r.offset,
                        what: "event without a file descriptor",
                    });
                }
                continue;
            };
            if r.mask & (libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM | libc::FAN_ACCESS_PERM)
                == 0
            {
                // A notification we did not ask for: nothing waits on it; its fds close here.
                continue;
            }
            events.push(PermissionEvent {
                group: self.clone(),
                fd,
                pid: r.pid,
                pidfd,
                mask: Mask(r.mask),
                answered: AtomicBool::new(false),
            });
        }
        match malformed {
            // The events before the bad record are answered with the default when dropped
            // here; the ones after it cannot be found: the caller must close the group, which
            // releases them.
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    fn respond(&self, fd: RawFd, response: Response) -> Result<(), FanotifyError> {
        // struct fanotify_response { __s32 fd; __u32 response; }
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&fd.to_ne_bytes());
        msg[4..].copy_from_slice(&response.bits().to_ne_bytes());
        loop {
            match nix::unistd::write(&self.inner.fan, &msg) {
                Ok(8) => return Ok(()),
                Ok(_) => {
                    return Err(FanotifyError::Respond {
                        fd,
                        source: io::Error::from(io::ErrorKind::WriteZero),
                    });
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(FanotifyError::Respond {
                        fd,
                        source: errno(e),
                    });
                }
            }
        }
    }
}

impl AsFd for Group {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fan.as_fd()
    }
}

/// A pending open or exec: the opener waits until the first [`PermissionEvent::answer`], or
/// until the event is dropped, which answers with the group's default. Shareable (`&self`
/// everywhere): a worker reading the file and a deadline watchdog can hold it at once, the
/// first answer wins, and the fd stays open until the last holder is done.
pub struct PermissionEvent {
    group: Group,
    fd: OwnedFd,
    pid: i32,
    pidfd: Option<OwnedFd>,
    mask: Mask,
    answered: AtomicBool,
}

impl fmt::Debug for PermissionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionEvent")
            .field("fd", &self.fd.as_raw_fd())
            .field("pid", &self.pid)
            .field("pidfd", &self.pidfd.as_ref().map(AsRawFd::as_raw_fd))
            .field("mask", &format_args!("{:#x}", self.mask.0))
            .field("answered", &self.answered.load(Ordering::Relaxed))
            .finish()
    }
}

impl PermissionEvent {
    /// The file being opened, opened read-only by the kernel for the listener: read and hash
    /// through it (it generates no event of its own).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The opening process (its thread group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd for the opener, when the group reports them and the process still exists:
    /// [`pidfd_pid`] tells whether `pid` still names the same process.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// The event bits (`OPEN_PERM`, `OPEN_EXEC_PERM`, ...).
    pub fn mask(&self) -> Mask {
        self.mask
    }

    /// Answers the event, if nobody has yet: `Ok(true)` when this call's answer was sent,
    /// `Ok(false)` when an earlier answer stands. The fd stays open until the event is
    /// dropped (the kernel matches the answer by fd number, which must not be reused first).
    pub fn answer(&self, response: Response) -> Result<bool, FanotifyError> {
        if self.answered.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        self.group
            .respond(self.fd.as_raw_fd(), response)
            .map(|()| true)
    }

    /// Whether the event has been answered.
    pub fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }
}

impl Drop for PermissionEvent {
    fn drop(&mut self) {
        // Runs before the fields (and so the fd) are dropped.
        if let Err(e) = self.answer(self.group.default_response()) {
            tracing::warn!("unanswered fanotify event: {e}");
        }
    }
}

/// One event as the kernel wrote it, before its fds are owned.
#[derive(Debug, PartialEq)]
struct RawEvent {
    offset: usize,
    mask: u64,
    fd: RawFd,
    pid: i32,
    pidfd: RawFd,
}

/// Parses a read buffer of `struct fanotify_event_metadata` records:
///
/// ```text
/// struct fanotify_event_metadata {
///     __u32 event_len; __u8 vers; __u8 reserved; __u16 metadata_len;
///     __aligned_u64 mask; __s32 fd; __s32 pid;
/// };
/// struct fanotify_event_info_pidfd {
///     struct fanotify_event_info_header { __u8 info_type; __u8 pad; __u16 len; } hdr;
///     __s32 pidfd;
/// };
/// ```
///
/// Stops at the first malformed record and returns it as the error beside the events before
/// it, whose fds must still be owned and answered.
fn parse(buf: &[u8]) -> (Vec<RawEvent>, Option<FanotifyError>) {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= METADATA_LEN {
        let m = &buf[off..];
        let event_len = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let vers = m[4];
        let metadata_len = u16::from_ne_bytes([m[6], m[7]]) as usize;
        let mask = u64::from_ne_bytes([m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15]]);
        let fd = i32::from_ne_bytes([m[16], m[17], m[18], m[19]]);
        let pid = i32::from_ne_bytes([m[20], m[21], m[22], m[23]]);
        let bad = |what| FanotifyError::Malformed { offset: off, what };
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return (out, Some(bad("unknown metadata version")));
        }
        if event_len < METADATA_LEN
            || metadata_len < METADATA_LEN
            || metadata_len > event_len
            || event_len > m.len()
        {
            return (out, Some(bad("bad event length")));
        }
        let mut pidfd = libc::FAN_NOPIDFD;
        let mut info = metadata_len;
        while event_len - info >= 4 {
            let h = &m[info..event_len];
            let len = u16::from_ne_bytes([h[2], h[3]]) as usize;
            if len < 4 || len > h.len() {
                // The event's own fd was installed: yield it so it is answered.
                out.push(RawEvent {
                    offset: off,
                    mask,
                    fd,
                    pid,
                    pidfd: libc::FAN_NOPIDFD,
                });
                return (out, Some(bad("bad info record length")));
            }
            if h[0] == libc::FAN_EVENT_INFO_TYPE_PIDFD && len >= 8 {
                pidfd = i32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            }
            info += len;
        }
        out.push(RawEvent {
            offset: off,
            mask,
            fd,
            pid,
            pidfd,
        });
        off += event_len;
    }
    (out, None)
}

/// The pid a pidfd refers to now (`Pid:` in its fdinfo), `None` once the process has exited:
/// equal to the event's pid means the pid was not reused between the event and this call.
pub fn pidfd_pid(pidfd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let path = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let text = std::fs::read_to_string(path)?;
    let pid = text
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse::<i32>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "pidfd fdinfo has no Pid"))?;
    Ok((pid > 0).then_some(pid))
}

#[cfg(test)]
mod tests;
