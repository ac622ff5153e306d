//! Readiness: `STATE/imad.ready` once the marks are in place (removed on exit), and systemd's
//! `sd_notify` protocol (`READY=1`, `STOPPING=1`, `WATCHDOG=1`) over the datagram socket
//! `NOTIFY_SOCKET` names, when set (an abstract socket when the name starts with `@`).
//!
//! The watchdog (`WatchdogSec=`, which systemd passes as `WATCHDOG_USEC`): a thread sends
//! `WATCHDOG=1` every half interval, but only when both the event loop (the reader) and the
//! deadline watchdog have gone round since the last ping ([`Heartbeat`]). A stuck loop stops
//! the pings, and systemd kills imad; the kernel then allows every pending open (the group
//! closes) and `Restart=` starts it again on the same list.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The ready file; removed when dropped.
#[derive(Debug)]
pub struct Ready {
    path: PathBuf,
}

impl Ready {
    /// Writes `dir/imad.ready` (containing the pid) and tells systemd, if it is listening.
    pub fn announce(dir: &Path) -> io::Result<Self> {
        let path = dir.join("imad.ready");
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        if let Err(e) = sd_notify("READY=1") {
            tracing::warn!("sd_notify READY=1: {e}");
        }
        Ok(Self { path })
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let _ = sd_notify("STOPPING=1");
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `state` to `$NOTIFY_SOCKET`; nothing when it is unset.
pub fn sd_notify(state: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(name) => notify_to(&name, state),
        None => Ok(()),
    }
}

/// Sends `state` to the notification socket `name` (a path, or `@` and an abstract name).
pub fn notify_to(name: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name);
    if let Some(abs) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abs)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(&name))?;
    }
    Ok(())
}

/// Rounds of the threads whose progress the watchdog checks.
#[derive(Debug, Default)]
pub struct Heartbeat {
    reader: AtomicU64,
    deadlines: AtomicU64,
}

impl Heartbeat {
    /// The event loop went round (it does at least every 100 ms while it runs).
    pub fn reader(&self) {
        self.reader.fetch_add(1, Ordering::Relaxed);
    }

    /// The deadline watchdog went round (at least every 100 ms while it runs).
    pub fn deadlines(&self) {
        self.deadlines.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether both went round since `last` (updated to now).
    pub fn alive_since(&self, last: &mut (u64, u64)) -> bool {
        let now = (
            self.reader.load(Ordering::Relaxed),
            self.deadlines.load(Ordering::Relaxed),
        );
        let alive = now.0 != last.0 && now.1 != last.1;
        *last = now;
        alive
    }
}

/// systemd's watchdog interval for this process: `WATCHDOG_USEC`, when set, non-zero, and
/// `WATCHDOG_PID` (if set) names this process. An unusable value is an error.
pub fn watchdog_interval() -> Result<Option<Duration>, String> {
    let Some(usec) = std::env::var_os("WATCHDOG_USEC") else {
        return Ok(None);
    };
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str() != Some(&std::process::id().to_string())
    {
        return Ok(None);
    }
    match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
        Some(0) => Ok(None),
        // A ping every half interval; the threads go round every 100 ms.
        Some(u) if u >= 500_000 => Ok(Some(Duration::from_micros(u))),
        _ => Err(format!(
            "WATCHDOG_USEC={}: expected microseconds, at least 500000 (WatchdogSec=0.5s)",
            usec.to_string_lossy()
        )),
    }
}

/// Pings `socket` with `WATCHDOG=1` every `interval / 2` while `beat` shows progress (see the
/// module); runs until the process exits.
pub fn spawn_watchdog(
    socket: std::ffi::OsString,
    interval: Duration,
    beat: Arc<Heartbeat>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sd-watchdog".into())
        .spawn(move || {
            let mut last = (0, 0);
            let mut stalled = false;
            loop {
                std::thread::sleep(interval / 2);
                if beat.alive_since(&mut last) {
                    if let Err(e) = notify_to(&socket, "WATCHDOG=1") {
                        tracing::warn!("sd_notify WATCHDOG=1: {e}");
                    }
                    stalled = false;
                } else if !stalled {
                    stalled = true;
                    tracing::error!(
                        "the event loop or the deadline watchdog made no progress for {:?}: \
                         not pinging systemd's watchdog",
                        interval / 2
                    );
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_while_both_threads_go_round() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let beat = Arc::new(Heartbeat::default());
        spawn_watchdog(
            path.into_os_string(),
            Duration::from_millis(100),
            Arc::clone(&beat),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        // No progress yet: no ping.
        assert!(sock.recv(&mut buf).is_err());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beater = {
            let (beat, stop) = (Arc::clone(&beat), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    beat.reader();
                    beat.deadlines();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        for _ in 0..3 {
            let n = sock.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
        // One thread stops: the pings stop (one may be in flight).
        stop.store(true, Ordering::Relaxed);
        beater.join().unwrap();
        let lone = std::thread::spawn({
            let beat = Arc::clone(&beat);
            move || {
                for _ in 0..60 {
                    beat.reader();
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // Drain what was sent before the stop (the check after it may still see progress).
        std::thread::sleep(Duration::from_millis(150));
        sock.set_nonblocking(true).unwrap();
        while sock.recv(&mut buf).is_ok() {}
        sock.set_nonblocking(false).unwrap();
        assert!(
            sock.recv(&mut buf).is_err(),
            "a ping without the deadline thread"
        );
        lone.join().unwrap();
    }

    #[test]
    fn alive_needs_both() {
        let b = Heartbeat::default();
        let mut last = (0, 0);
        assert!(!b.alive_since(&mut last));
        b.reader();
        assert!(!b.alive_since(&mut last));
        b.reader();
        b.deadlines();
        assert!(b.alive_since(&mut last));
        assert!(!b.alive_since(&mut last));
    }
}
