//! Group commit for a process that serves many callers at once (the daemon): each caller
//! adds its entry, then waits until the entry is committed, and the first caller whose
//! deadline ([`Config::commit_deadline`]) comes commits every pending entry, so one fdatasync
//! and one TPM flush serve all the callers that arrived in the meantime. No thread of its
//! own: the engine sits behind one mutex, and waiters sleep on a condition variable that
//! releases it.
//!
//! As `process_measurement`, where the PCR is extended before the access proceeds: a caller
//! allows the access only after [`Shared::wait`] returned `Ok` (its entry, or the pending
//! identical entry it duplicates, is durable and extended).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ima_core::log::Entry;
use ima_core::template::{Event, TemplateDesc};

use crate::{Added, Engine, EngineError};

#[cfg(doc)]
use crate::Config;

/// An engine shared by threads that each wait for their own entries to be committed.
#[derive(Debug)]
pub struct Shared {
    engine: Mutex<Engine>,
    committed: Condvar,
}

/// What [`Shared::wait`] waits for: the list up to and including an added entry (or, for a
/// duplicate, up to the end of the list when it was found, which holds the original).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the entry is not committed until `Shared::wait` returns"]
pub struct Ticket(u64);

impl Shared {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine: Mutex::new(engine),
            committed: Condvar::new(),
        }
    }

    /// The engine, for anything else (quote, PCR reads, counts). Every critical section of
    /// the engine leaves it consistent (a failed commit marks it failed), so a poisoned
    /// lock is still usable.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Engine::add`], returning what to [`Shared::wait`] for.
    pub fn add(
        &self,
        ev: &Event<'_>,
        desc: &TemplateDesc,
        pcr: u32,
    ) -> Result<(Added, Ticket), EngineError> {
        self.with(|e| e.add(ev, desc, pcr))
    }

    /// [`Engine::add_violation`], returning what to [`Shared::wait`] for.
    pub fn add_violation(&self, ev: &Event<'_>) -> Result<(Entry, Ticket), EngineError> {
        self.with(|e| e.add_violation(ev))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, EngineError>,
    ) -> Result<(T, Ticket), EngineError> {
        let mut e = self.lock();
        let before = e.committed();
        let r = f(&mut e);
        if e.committed() != before {
            // The add committed (a full batch, or a deadline passed): wake the waiters.
            self.committed.notify_all();
        }
        let t = Ticket(e.len());
        Ok((r?, t))
    }

    /// Returns once everything up to `t` is committed: at once if it already is, else when
    /// another caller's commit covers it, else at the pending entries' deadline, when this
    /// caller commits them all (at once when there is no deadline). An `Err` means the
    /// entry may not be anchored: the access must not be allowed as measured.
    pub fn wait(&self, t: Ticket) -> Result<(), EngineError> {
        let mut e = self.lock();
        loop {
            if e.committed() >= t.0 {
                return Ok(());
            }
            let now = Instant::now();
            match e.commit_due() {
                Some(due) if due > now => {
                    e = match self.committed.wait_timeout(e, due - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
                _ => {
                    let r = e.commit();
                    self.committed.notify_all();
                    return r;
                }
            }
        }
    }

    /// The engine, for [`Engine::close`].
    pub fn into_inner(self) -> Engine {
        self.engine.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}
