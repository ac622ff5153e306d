//! Moving command bytes to a TPM and response bytes back. swtpm's TCP server and the kernel's
//! `/dev/tpmrm0` take exactly the same bytes (a marshalled command; the reply is one
//! response), so [`HwTpm`](crate::HwTpm) is generic over this trait.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::TpmError;

/// Largest response a TPM sends (`TPM2_MAX_COMMAND_SIZE` of common TPMs is 4096; be generous).
pub const MAX_RESPONSE: usize = 8192;

/// How long a command waits for swtpm to start answering (it serves one client at a time).
pub const BUSY_WAIT: Duration = Duration::from_secs(300);

/// Sends one command and returns its whole response.
pub trait Transport: Send {
    /// What this is, for messages.
    fn describe(&self) -> String;
    /// Whether this is a kernel device (as opposed to swtpm's socket).
    fn is_device(&self) -> bool;
    /// Sends `cmd` and reads one complete response.
    fn transact(&mut self, cmd: &[u8]) -> Result<Vec<u8>, TpmError>;
}

/// swtpm's TCP command channel (`swtpm socket --server type=tcp,port=P`).
#[derive(Debug)]
pub struct SocketTransport {
    addr: String,
    stream: TcpStream,
}

impl SocketTransport {
    /// Connects to `host:port` with a 10-second I/O timeout.
    pub fn connect(host: &str, port: u16) -> Result<Self, TpmError> {
        let addr = format!("{host}:{port}");
        let stream =
            TcpStream::connect(&addr).map_err(|e| TpmError::io(format!("connect {addr}"), e))?;
        let t = Some(Duration::from_secs(10));
        stream
            .set_read_timeout(t)
            .and_then(|()| stream.set_write_timeout(t))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| TpmError::io(format!("configure {addr}"), e))?;
        Ok(Self { addr, stream })
    }
}

impl Transport for SocketTransport {
    fn describe(&self) -> String {
        self.addr.clone()
    }

    fn is_device(&self) -> bool {
        false
    }

    fn transact(&mut self, cmd: &[u8]) -> Result<Vec<u8>, TpmError> {
        let addr = &self.addr;
        self.stream
            .write_all(cmd)
            .map_err(|e| TpmError::io(format!("send to {addr}"), e))?;
        // A response starts with tag (2) and size (4, big-endian); read exactly that many.
        // swtpm serves one client at a time: while another holds it, our command waits in
        // the socket and no byte comes back. Wait for the first byte (saying so), up to
        // BUSY_WAIT; once the reply has started, the I/O timeout applies.
        let mut head = [0u8; 10];
        let mut got = 0;
        let start = Instant::now();
        let mut told = false;
        while got < head.len() {
            match self.stream.read(&mut head[got..]) {
                Ok(0) => {
                    return Err(TpmError::io(
                        format!("receive from {addr}"),
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if got == 0
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                        && start.elapsed() < BUSY_WAIT =>
                {
                    if !told {
                        tracing::warn!(
                            "swtpm at {addr} has not answered for {} s (busy with another \
                             client?); waiting up to {} s",
                            start.elapsed().as_secs(),
                            BUSY_WAIT.as_secs()
                        );
                        told = true;
                    }
                }
                Err(e) => {
                    return Err(TpmError::io(
                        format!(
                            "receive from {addr} (after waiting {} s)",
                            start.elapsed().as_secs()
                        ),
                        e,
                    ));
                }
            }
        }
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        if !(10..=MAX_RESPONSE).contains(&size) {
            return Err(TpmError::ResponseSize {
                from: addr.clone(),
                size,
                max: MAX_RESPONSE,
            });
        }
        let mut rsp = vec![0u8; size];
        rsp[..10].copy_from_slice(&head);
        self.stream
            .read_exact(&mut rsp[10..])
            .map_err(|e| TpmError::io(format!("receive from {addr}"), e))?;
        Ok(rsp)
    }
}

/// A TPM character device: one `write` of the command, one `read` of the response.
#[derive(Debug)]
pub struct DeviceTransport {
    path: String,
    file: File,
}

impl DeviceTransport {
    /// Opens `path` (normally `/dev/tpmrm0`, the kernel's resource-managed device).
    pub fn open(path: &Path) -> Result<Self, TpmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TpmError::io(format!("open {}", path.display()), e))?;
        Ok(Self {
            path: path.display().to_string(),
            file,
        })
    }

    /// A descriptor already open on something with a TPM device's framing (one `write` per
    /// command, one `read` per whole response): a device opened elsewhere, or `swtpm chardev
    /// --fd N` over a `SOCK_SEQPACKET` socketpair (how the tests run this backend without a
    /// `/dev/tpm*`). `name` is what messages call it.
    pub fn from_file(file: File, name: impl Into<String>) -> Self {
        Self {
            path: name.into(),
            file,
        }
    }
}

impl Transport for DeviceTransport {
    fn describe(&self) -> String {
        self.path.clone()
    }

    fn is_device(&self) -> bool {
        true
    }

    fn transact(&mut self, cmd: &[u8]) -> Result<Vec<u8>, TpmError> {
        let path = &self.path;
        self.file
            .write_all(cmd)
            .map_err(|e| TpmError::io(format!("write {path}"), e))?;
        let mut rsp = vec![0u8; MAX_RESPONSE];
        let n = self
            .file
            .read(&mut rsp)
            .map_err(|e| TpmError::io(format!("read {path}"), e))?;
        rsp.truncate(n);
        Ok(rsp)
    }
}
