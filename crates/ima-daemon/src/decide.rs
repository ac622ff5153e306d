//! The seam between the event loop and IMA's decision: one call per event, returning whether
//! the access may proceed and whether that answer may be cached in the kernel.
//!
//! [`Decide`] is implemented by `ima_engine::process` (the kernel's `process_measurement`)
//! through a thin adapter once that lands; the loop never makes a policy or appraisal
//! decision of its own.

use std::os::fd::BorrowedFd;
use std::path::Path;

use ima_core::policy::{Func, Mask};

use crate::subject::TaskCreds;

/// One access to decide: the hook, the subject and the object (read through `fd` only).
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    /// BPRM_CHECK for `FAN_OPEN_EXEC_PERM`, FILE_CHECK for `FAN_OPEN_PERM`.
    pub func: Func,
    /// MAY_EXEC for BPRM_CHECK; MAY_READ for FILE_CHECK (fanotify does not say whether the
    /// opener asked for write: see ARCHITECTURE.md).
    pub mask: Mask,
    /// The opener's pid and credentials.
    pub pid: i32,
    pub creds: &'a TaskCreds,
    /// The file, opened read-only by the kernel for us. Never reopen `path`.
    pub fd: BorrowedFd<'a>,
    /// The name the kernel's `d_path` would give (`/proc/self/fd/N`'s link), for the list.
    pub path: &'a Path,
}

/// The one decision for an access.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Verdict {
    /// Let the open proceed (`FAN_ALLOW`) or fail it with EPERM (`FAN_DENY`).
    pub allow: bool,
    /// The answer cannot depend on who opens, so the kernel may stop asking for this inode
    /// until it is modified (`FAN_MARK_IGNORE`).
    pub cacheable: bool,
}

/// Why an event could not be decided (the daemon then answers its default). Each keeps its
/// source, so the log says exactly what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// A system call on the event's file descriptor.
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The opener could not be identified.
    #[error(transparent)]
    Subject(#[from] crate::subject::SubjectError),
    /// `process_measurement` could not decide.
    #[error(transparent)]
    Process(#[from] ima_engine::process::ProcessError),
    /// The measurement list refused the entry (the open is not allowed before it is in).
    #[error("the measurement list")]
    Engine(#[from] ima_engine::EngineError),
}

/// What the daemon asks for every event.
pub trait Decide: Send + Sync {
    /// Decides `access`. `Err` means "could not decide": the daemon answers its configured
    /// default (fail-open or fail-closed), as on a missed deadline.
    fn decide(&self, access: &Access<'_>) -> Result<Verdict, DecideError>;

    /// Changes whenever cacheable allows given before may no longer hold (a new policy): the
    /// loop then flushes the kernel-side allow cache.
    fn generation(&self) -> u64 {
        0
    }
}

impl<F> Decide for F
where
    F: Fn(&Access<'_>) -> Result<Verdict, DecideError> + Send + Sync,
{
    fn decide(&self, access: &Access<'_>) -> Result<Verdict, DecideError> {
        self(access)
    }
}
