//! A real swtpm process for tests: `swtpm socket --tpm2` on fresh TCP ports with a temporary
//! state directory, killed (and reaped) on Drop. If swtpm is not installed, [`Swtpm::start`]
//! panics: a test that needs a TPM fails rather than skipping.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm. Dropping it kills the process.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    port: u16,
    // Held until Drop so the state survives as long as the process (taken by `restart`).
    state: Option<tempfile::TempDir>,
}

impl Swtpm {
    /// Starts swtpm (TPM 2.0, already started up with TPM2_Startup(CLEAR)) and waits until
    /// its command port accepts connections.
    ///
    /// # Panics
    /// If swtpm is missing or does not come up within 10 seconds.
    pub fn start() -> Self {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port_pair();
            let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            match Self::spawn(port, state) {
                Ok(s) => return s,
                Err((e, _)) => last_err = e, // port race or slow start: try other ports
            }
        }
        panic!("swtpm did not come up: {last_err}");
    }

    /// Kills swtpm and starts it again on the same ports with the same state directory: the
    /// same TPM (same seeds, same keys), its PCRs reset, as after a power cycle.
    ///
    /// # Panics
    /// If swtpm does not come back within 10 seconds.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let state = self
            .state
            .take()
            .unwrap_or_else(|| panic!("swtpm state already taken"));
        drop(self);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut state = state;
        loop {
            match Self::spawn(port, state) {
                Ok(s) => return s,
                Err((e, st)) => {
                    if Instant::now() > deadline {
                        panic!("swtpm did not restart on port {port}: {e}");
                    }
                    state = st;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn spawn(port: u16, state: tempfile::TempDir) -> Result<Self, (String, tempfile::TempDir)> {
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2"])
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.path().display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start swtpm (install Debian package swtpm): {e}"));
        let mut s = Self {
            child,
            port,
            state: Some(state),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let why = loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                break format!("swtpm exited with {status}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                break "swtpm did not accept connections within 10 s".to_owned();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = s.child.kill();
        let _ = s.child.wait();
        let state = s.state.take().unwrap_or_else(|| unreachable!());
        Err((why, state))
    }

    /// The command port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCTI string tpm2-tools and `imactl --tpm` accept.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P such that P and P+1 were both free a moment ago.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let Ok(l) = TcpListener::bind(("127.0.0.1", 0)) else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let p = addr.port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free TCP port pair on 127.0.0.1");
}

/// swtpm in character-device mode (`swtpm chardev --tpm2 --fd 3`) on one end of a
/// `SOCK_SEQPACKET` socketpair: the other end has a TPM device's framing (one write per
/// command, one read per response), so the `device:` backend runs against it without a
/// `/dev/tpm*`. Killed on Drop.
#[derive(Debug)]
pub struct SwtpmChardev {
    child: Child,
    device: Option<std::fs::File>,
    _state: tempfile::TempDir,
}

impl SwtpmChardev {
    /// Starts swtpm (TPM 2.0, started up) with a fresh state; reads on the device end time
    /// out after 10 seconds.
    ///
    /// # Panics
    /// If swtpm is missing or the socketpair cannot be made.
    pub fn start() -> Self {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap_or_else(|e| panic!("socketpair: {e}"));
        for fd in [&ours, &theirs] {
            for t in [sockopt::Timeout::Recv, sockopt::Timeout::Send] {
                sockopt::set_socket_timeout(fd, t, Some(Duration::from_secs(10)))
                    .unwrap_or_else(|e| panic!("socket timeout: {e}"));
            }
        }
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // swtpm refuses descriptors 0-2: the shell moves the socket from stdin to fd 3, then
        // becomes swtpm (exec), so the child we kill is swtpm itself.
        let child = Command::new("sh")
            .args([
                "-c",
                "exec swtpm chardev --tpm2 --fd 3 --tpmstate dir=\"$1\" \
                 --flags not-need-init,startup-clear 3<&0 </dev/null",
                "sh",
            ])
            .arg(state.path())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start swtpm (install Debian package swtpm): {e}"));
        Self {
            child,
            device: Some(std::fs::File::from(ours)),
            _state: state,
        }
    }

    /// The device end (once).
    ///
    /// # Panics
    /// If it was already taken.
    pub fn take_device(&mut self) -> std::fs::File {
        self.device
            .take()
            .unwrap_or_else(|| panic!("the device end was already taken"))
    }
}

impl Drop for SwtpmChardev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
