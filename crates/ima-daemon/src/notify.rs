//! Readiness: `STATE/imad.ready` once the marks are in place (removed on exit), and systemd's
//! `sd_notify` protocol (`READY=1`, `STOPPING=1`) over the datagram socket `NOTIFY_SOCKET`
//! names, when set (an abstract socket when the name starts with `@`).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

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
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
    if let Some(abs) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abs)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(&name))?;
    }
    Ok(())
}
