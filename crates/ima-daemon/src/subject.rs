//! The subject of an event: the opening process's credentials, read from `/proc/PID/status`
//! and checked against the event's pidfd, so a pid reused between the event and the read is
//! never taken for the opener.

use std::io;
use std::os::fd::BorrowedFd;

pub use ima_core::policy::TaskCreds;

/// Why the subject could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// `/proc/PID/status` could not be read (the process is gone) or parsed.
    #[error("pid {pid}: {source}")]
    Read {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// The pidfd says the pid now names another process, or none.
    #[error("pid {pid} exited or was reused before its credentials were read")]
    Reused { pid: i32 },
}

/// The credentials of `pid`; with a `pidfd` (from the event), verified to still be that
/// process after the read.
pub fn creds(pid: i32, pidfd: Option<BorrowedFd<'_>>) -> Result<TaskCreds, SubjectError> {
    let p = u32::try_from(pid).map_err(|_| SubjectError::Reused { pid })?;
    let c = ima_sys::procfs::task_creds(Some(p))
        .map_err(|source| SubjectError::Read { pid, source })?;
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
    fn own_creds_and_a_missing_pid() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(
            creds(me, None).unwrap(),
            ima_sys::procfs::task_creds(None).unwrap()
        );
        assert!(matches!(creds(-5, None), Err(SubjectError::Reused { .. })));
        assert!(matches!(
            creds(i32::MAX, None),
            Err(SubjectError::Read { .. })
        ));
    }
}
