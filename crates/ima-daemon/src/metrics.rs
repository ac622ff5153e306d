//! Prometheus metrics on a local address (`--metrics ADDR`): `GET /metrics` answers the
//! text exposition format (version 0.0.4); anything else is 404. One request a connection,
//! served by one thread; a client gets 5 s to send its request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::process::ProcessDecider;
use crate::serve::Counters;

/// The bound listener.
#[derive(Debug)]
pub struct Metrics {
    listener: TcpListener,
}

impl Metrics {
    /// Binds `addr` (e.g. `127.0.0.1:9464`).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener })
    }

    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers scrapes until `stop` is set.
    pub fn serve(&self, counters: &Counters, decider: &ProcessDecider, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    if let Err(e) = answer(conn, counters, decider) {
                        tracing::debug!("metrics: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::warn!("metrics: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

fn answer(conn: TcpStream, counters: &Counters, decider: &ProcessDecider) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut first = String::new();
    BufReader::new((&conn).take(8192)).read_line(&mut first)?;
    let mut out = &conn;
    let mut parts = first.split_ascii_whitespace();
    if (parts.next(), parts.next()) != (Some("GET"), Some("/metrics")) {
        return out.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    let body = render(counters, decider);
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The exposition text.
pub fn render(counters: &Counters, decider: &ProcessDecider) -> String {
    let e = counters.snapshot();
    let d = decider.status();
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        s.push_str(&format!(
            "# HELP imad_{name} {help}\n# TYPE imad_{name} {kind}\nimad_{name} {v}\n"
        ));
    };
    metric(
        "events_total",
        "counter",
        "Permission events read.",
        e.events,
    );
    metric(
        "allowed_total",
        "counter",
        "Events allowed by a decision.",
        e.allowed,
    );
    metric(
        "denied_total",
        "counter",
        "Events denied by a decision.",
        e.denied,
    );
    metric(
        "deadline_total",
        "counter",
        "Events answered with the default past the deadline.",
        e.deadline,
    );
    metric(
        "undecidable_total",
        "counter",
        "Events answered with the default because the decision failed.",
        e.errors,
    );
    metric(
        "queue_full_total",
        "counter",
        "Events answered with the default because the queue was full.",
        e.queue_full,
    );
    metric(
        "cached_total",
        "counter",
        "Allow-cache marks put on inodes.",
        e.cached,
    );
    metric(
        "overflows_total",
        "counter",
        "Kernel queue overflows (events the kernel allowed unasked).",
        e.overflows,
    );
    metric(
        "measured_total",
        "counter",
        "Files measured into the list.",
        d.measured,
    );
    metric(
        "policy_loads_total",
        "counter",
        "Policies loaded since start.",
        d.policy_loads,
    );
    metric(
        "list_entries",
        "gauge",
        "Entries in the measurement list.",
        d.list_entries,
    );
    metric(
        "policy_rules",
        "gauge",
        "Rules of the active policy.",
        d.policy_rules as u64,
    );
    s
}
