//! `imad`'s library: the fanotify event loop ([`serve()`]) that puts IMA's hooks in the path of
//! every open and exec on the marked filesystems, the [`decide::Decide`] seam through which
//! each event gets its one decision, and the readiness protocol ([`notify`]).
//!
//! Mirrors the hooks of `security/integrity/ima/ima_main.c`: `FAN_OPEN_EXEC_PERM` is
//! `ima_bprm_check` (BPRM_CHECK), `FAN_OPEN_PERM` is `ima_file_check` (FILE_CHECK).

pub mod audit;
pub mod config;
pub mod control;
pub mod decide;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod serve;
pub mod subject;

pub use serve::{Config, Counters, DaemonError, Stats, serve};
