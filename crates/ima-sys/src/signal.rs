//! Termination signals for a daemon, taken synchronously: [`Termination::block`] blocks
//! SIGTERM, SIGINT and SIGHUP in the calling thread (threads spawned afterwards inherit the
//! mask), and one thread waits for them with [`Termination::wait`]. No handler runs
//! asynchronously, so nothing has to be async-signal-safe. It also blocks the terminal's stop
//! signals (SIGTSTP, SIGTTIN, SIGTTOU: Ctrl-Z, background terminal I/O), which then stay
//! pending and never stop the process: a stopped fanotify listener stops every one of its
//! threads, and every opener on a marked filesystem waits until it continues. SIGSTOP cannot be
//! blocked.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The blocked set of termination signals.
#[derive(Debug)]
pub struct Termination {
    set: SigSet,
}

impl Termination {
    /// Blocks SIGTERM, SIGINT and SIGHUP (taken by [`Self::wait`]) and SIGTSTP, SIGTTIN and
    /// SIGTTOU (never taken) in this thread. Call before spawning threads.
    pub fn block() -> io::Result<Self> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(s);
        }
        let mut blocked = set;
        for s in [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU] {
            blocked.add(s);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Ok(Self { set })
    }

    /// Waits for one of the signals and returns its name (`"SIGTERM"`).
    pub fn wait(&self) -> io::Result<&'static str> {
        let s = self
            .set
            .wait()
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Ok(s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_sigterm_is_taken_by_wait() {
        // In a thread of its own so that the test harness's other threads keep their mask.
        std::thread::spawn(|| {
            let t = Termination::block().unwrap();
            // raise(3) directs the signal at the calling thread.
            nix::sys::signal::raise(Signal::SIGTERM).unwrap();
            assert_eq!(t.wait().unwrap(), "SIGTERM");
        })
        .join()
        .unwrap();
    }
}
