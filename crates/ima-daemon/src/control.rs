//! The control socket, `STATE/imad.sock` (0600; only root or imad's own user may talk): one
//! JSON request line, one JSON answer line, then the connection closes. `imactl daemon` is
//! its client.
//!
//! Requests: `{"op":"status"}`; `{"op":"reload","policy":PATH|null}` (load a policy file as the
//! kernel's `echo PATH > policy`; `null` reloads the file the active policy came from);
//! `{"op":"explain","path":PATH}` (the last decision for PATH). Answers: `{"ok":true,...}` or
//! `{"ok":false,"error":TEXT}`; a reload that fails leaves the running policy untouched.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::process::ProcessDecider;

/// The socket's name in the state directory.
pub const SOCKET: &str = "imad.sock";

/// A request line is small; anything longer is refused.
const REQUEST_LIMIT: u64 = 64 * 1024;

/// The bound socket; removed on drop.
#[derive(Debug)]
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
}

impl Control {
    /// Binds `DIR/imad.sock`. A socket left by a killed imad is replaced; anything else at
    /// that name is an error.
    pub fn bind(dir: &Path) -> io::Result<Self> {
        let path = dir.join(SOCKET);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a socket", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    /// Answers requests until `stop` is set.
    pub fn serve(&self, decider: &ProcessDecider, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    if let Err(e) = handle(conn, decider) {
                        tracing::warn!("control socket: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::error!("control socket: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Status,
    Reload { policy: Option<PathBuf> },
    Explain { path: PathBuf },
}

fn handle(conn: UnixStream, decider: &ProcessDecider) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let (pid, uid) = ima_sys::fs::socket_peer(conn.as_fd())?;
    let mut out = conn.try_clone()?;
    let answer = if uid != 0 && uid != ima_sys::procfs::task_creds(None)?.uid {
        refuse(format!("uid {uid} may not control imad (root only)"))
    } else {
        let mut line = String::new();
        let n = BufReader::new((&conn).take(REQUEST_LIMIT + 1)).read_line(&mut line);
        match n {
            Ok(n) if n as u64 > REQUEST_LIMIT => {
                refuse(format!("request longer than {REQUEST_LIMIT} bytes"))
            }
            Ok(_) => match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(r) => respond(r, pid, decider),
                Err(e) => refuse(format!("bad request: {e}")),
            },
            Err(e) => refuse(format!("reading the request: {e}")),
        }
    };
    let mut text = answer.to_string();
    text.push('\n');
    out.write_all(text.as_bytes())
}

fn refuse(error: String) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": error })
}

fn respond(r: Request, pid: i32, decider: &ProcessDecider) -> serde_json::Value {
    match r {
        Request::Status => serde_json::json!({ "ok": true, "status": decider.status() }),
        Request::Explain { path } => {
            serde_json::json!({ "ok": true, "explain": decider.explain(&path) })
        }
        Request::Reload { policy } => {
            let creds = match ima_sys::procfs::task_creds(u32::try_from(pid).ok()) {
                Ok(c) => c,
                Err(e) => return refuse(format!("the requester's credentials: {e}")),
            };
            match decider.reload(policy.as_deref(), &creds) {
                Ok(s) => serde_json::json!({ "ok": true, "status": s }),
                Err(e) => {
                    let why = ima_core::error_chain(&e);
                    tracing::warn!("policy not loaded: {why}");
                    refuse(why)
                }
            }
        }
    }
}

/// The client side: sends `request` to the imad whose state directory is `dir` and returns
/// its answer. Errors name the socket (no imad there, not permitted, a bad answer).
pub fn call(dir: &Path, request: &serde_json::Value) -> io::Result<serde_json::Value> {
    let path = dir.join(SOCKET);
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut conn = UnixStream::connect(&path).map_err(ctx)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(ctx)?;
    let mut line = request.to_string();
    line.push('\n');
    conn.write_all(line.as_bytes()).map_err(ctx)?;
    let mut answer = String::new();
    BufReader::new((&conn).take(16 << 20))
        .read_line(&mut answer)
        .map_err(ctx)?;
    serde_json::from_str(answer.trim_end()).map_err(|e| {
        ctx(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an answer from imad: {e}"),
        ))
    })
}
