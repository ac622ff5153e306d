//! The kernel audit log from userspace: user messages over `NETLINK_AUDIT`, which the kernel
//! stamps (`msg=audit(TIME:SERIAL): pid= uid= auid= ses= subj= msg='…'`) and hands to auditd,
//! or to the kernel log when no auditd runs. Sending needs `CAP_AUDIT_WRITE`.
//!
//! Userspace may only send types in the user ranges (`AUDIT_FIRST_USER_MSG`..=
//! `AUDIT_LAST_USER_MSG`, `AUDIT_FIRST_USER_MSG2`..=`AUDIT_LAST_USER_MSG2`, include/uapi/
//! linux/audit.h): the kernel's own integrity types (1800–1808) are refused with EINVAL.
//! Safe API over rustix; no `unsafe` here.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use rustix::net::{
    self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink,
    sockopt::{self, Timeout},
};

/// `AUDIT_TRUSTED_APP`: "trusted app msg — freestyle text", the type daemons that make
/// security decisions use.
pub const AUDIT_TRUSTED_APP: u16 = 1121;

/// `nlmsghdr` flags and types (include/uapi/linux/netlink.h).
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_HDRLEN: usize = 16;

/// `MAX_AUDIT_MESSAGE_LENGTH`: the kernel truncates a user message at this size.
pub const MAX_MESSAGE: usize = 8970;

/// A netlink audit socket. Sends are serialised (each waits for the kernel's ack).
#[derive(Debug)]
pub struct AuditSocket {
    fd: Mutex<(OwnedFd, u32)>,
}

impl AuditSocket {
    /// Opens the socket; an ack not received within `timeout` fails a send.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        let fd = net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::AUDIT),
        )?;
        sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(timeout))?;
        Ok(Self {
            fd: Mutex::new((fd, 0)),
        })
    }

    /// Sends `text` as a user message of type `kind` and waits for the kernel's ack: an
    /// error when the kernel refuses it (EPERM without `CAP_AUDIT_WRITE`, EINVAL for a type
    /// outside the user ranges). Text longer than [`MAX_MESSAGE`] is cut there.
    pub fn send(&self, kind: u16, text: &str) -> io::Result<()> {
        let body = &text.as_bytes()[..text.len().min(MAX_MESSAGE)];
        let len = NLMSG_HDRLEN + body.len() + 1;
        let mut g = self.fd.lock().unwrap_or_else(|p| p.into_inner());
        g.1 = g.1.wrapping_add(1);
        let seq = g.1;
        let mut msg = Vec::with_capacity(len.next_multiple_of(4));
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        msg.push(0);
        msg.resize(len.next_multiple_of(4), 0);
        let kernel = netlink::SocketAddrNetlink::new(0, 0);
        net::sendto(&g.0, &msg, SendFlags::empty(), &kernel)?;
        let mut buf = [0u8; 256];
        loop {
            let (_, n) = net::recv(&g.0, &mut buf[..], RecvFlags::empty())?;
            let got = &buf[..n.min(buf.len())];
            if got.len() < NLMSG_HDRLEN + 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("audit netlink: a {n}-byte reply"),
                ));
            }
            let rtype = u16::from_ne_bytes([got[4], got[5]]);
            let rseq = u32::from_ne_bytes([got[8], got[9], got[10], got[11]]);
            if rtype != NLMSG_ERROR || rseq != seq {
                // Not our ack (a late one from a send that timed out): read on.
                continue;
            }
            let err = i32::from_ne_bytes([got[16], got[17], got[18], got[19]]);
            return if err == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-err))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_types_are_refused_user_types_accepted() {
        let s = AuditSocket::open(Duration::from_secs(2)).unwrap();
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let e = s.send(1805, "refused").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        s.send(AUDIT_TRUSTED_APP, "imad unit test: a user message")
            .unwrap();
    }
}
