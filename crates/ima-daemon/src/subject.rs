//! The subject of an event: the opening process's credentials, read from `/proc/PID/status`
//! and checked against the event's pidfd, so a pid reused between the event and the read is
//! never taken for the opener.

use std::io;
use std::os::fd::BorrowedFd;

/// The credentials policy rules test (`uid`, `euid`, `gid`, `egid`, and the rest of
/// `struct cred`'s ids).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
}

impl Creds {
    /// Parses the `Uid:` and `Gid:` lines of a `/proc/PID/status` (real, effective, saved,
    /// filesystem).
    pub fn parse_status(text: &str) -> Option<Self> {
        let ids = |key: &str| -> Option<[u32; 4]> {
            let line = text.lines().find_map(|l| l.strip_prefix(key))?;
            let mut v = [0; 4];
            let mut it = line.split_whitespace();
            for slot in &mut v {
                *slot = it.next()?.parse().ok()?;
            }
            Some(v)
        };
        let [uid, euid, suid, fsuid] = ids("Uid:")?;
        let [gid, egid, sgid, fsgid] = ids("Gid:")?;
        Some(Self {
            uid,
            euid,
            suid,
            fsuid,
            gid,
            egid,
            sgid,
            fsgid,
        })
    }
}

/// Why the subject could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// `/proc/PID/status` could not be read (the process is gone).
    #[error("/proc/{pid}/status: {source}")]
    Read {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// The status file has no well-formed `Uid:`/`Gid:` lines.
    #[error("/proc/{pid}/status: no Uid/Gid lines")]
    Malformed { pid: i32 },
    /// The pidfd says the pid now names another process, or none.
    #[error("pid {pid} exited or was reused before its credentials were read")]
    Reused { pid: i32 },
}

/// The credentials of `pid`; with a `pidfd` (from the event), verified to still be that
/// process after the read.
pub fn creds(pid: i32, pidfd: Option<BorrowedFd<'_>>) -> Result<Creds, SubjectError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|source| SubjectError::Read { pid, source })?;
    let c = Creds::parse_status(&text).ok_or(SubjectError::Malformed { pid })?;
    if let Some(p) = pidfd {
        match ima_sys::fanotify::pidfd_pid(p) {
            Ok(Some(now)) if now == pid => {}
            _ => return Err(SubjectError::Reused { pid }),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let t = "Name:\tcat\nUid:\t1000\t1001\t1002\t1003\nGid:\t10\t11\t12\t13\n";
        let c = Creds::parse_status(t).unwrap();
        assert_eq!((c.uid, c.euid, c.suid, c.fsuid), (1000, 1001, 1002, 1003));
        assert_eq!((c.gid, c.egid, c.sgid, c.fsgid), (10, 11, 12, 13));
        assert_eq!(Creds::parse_status("Uid:\t1 2 3\nGid:\t1 2 3 4\n"), None);
        assert_eq!(Creds::parse_status(""), None);
    }

    #[test]
    fn own_creds_without_pidfd() {
        let me = i32::try_from(std::process::id()).unwrap();
        let c = creds(me, None).unwrap();
        assert_eq!(c.uid, rustix_free_uid());
        assert!(matches!(creds(-5, None), Err(SubjectError::Read { .. })));
    }

    fn rustix_free_uid() -> u32 {
        let t = std::fs::read_to_string("/proc/self/status").unwrap();
        Creds::parse_status(&t).unwrap().uid
    }
}
