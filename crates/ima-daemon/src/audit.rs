//! Where imad's audit records go: the records are the kernel's ([`ima_core::audit`], made by
//! the one decision path `ima_engine::process`); this module only delivers them, to any of
//! - the kernel audit log (netlink user messages of type `AUDIT_TRUSTED_APP`, text
//!   `ima_type=INTEGRITY_… ` then the kernel's record text, read with
//!   `ausearch -m TRUSTED_APP`);
//! - a JSON-lines file (one object a record: `type`, `type_id`, `time`, then every field in
//!   the kernel's order, the opener's `cgroup` added);
//! - the daemon's log (stderr, which journald captures under systemd).
//!
//! Rate-limited as the kernel's `audit_rate_limit`: past `rate` records in a second the rest
//! of that second are counted, not written, and the count is reported once the second ends.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ima_core::audit::{Record, Subject, Value};
use ima_sys::audit::{AUDIT_TRUSTED_APP, AuditSocket};

/// Where records go and how many a second.
#[derive(Debug, Default)]
pub struct AuditLog {
    kernel: Option<AuditSocket>,
    json: Option<Mutex<File>>,
    stderr: bool,
    /// Records a second; 0 is unlimited.
    rate: u32,
    /// Write informational records (`integrity_audit=1`).
    info: bool,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    sent: u32,
    dropped: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            sent: 0,
            dropped: 0,
        }
    }
}

impl AuditLog {
    /// No sink: records are dropped.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sends to the kernel audit log (needs `CAP_AUDIT_WRITE`; checked now with a test
    /// message so a daemon that cannot audit says so at start).
    pub fn with_kernel(mut self) -> io::Result<Self> {
        let s = AuditSocket::open(Duration::from_secs(1))?;
        s.send(AUDIT_TRUSTED_APP, "ima_type=start imad audit log opened")?;
        self.kernel = Some(s);
        Ok(self)
    }

    /// Appends JSON lines to `path` (created 0600 if absent; never through a symlink).
    pub fn with_json(mut self, path: &Path) -> io::Result<Self> {
        let f = ima_sys::fs::open_append_nofollow(path, 0o600)?;
        self.json = Some(Mutex::new(f));
        Ok(self)
    }

    /// Writes records to the daemon's log as well.
    pub fn with_stderr(mut self) -> Self {
        self.stderr = true;
        self
    }

    /// At most `rate` records a second (0: no limit); informational records only with
    /// `info`.
    pub fn limits(mut self, rate: u32, info: bool) -> Self {
        self.rate = rate;
        self.info = info;
        self
    }

    /// Whether any sink is set (callers skip reading the subject otherwise).
    pub fn enabled(&self) -> bool {
        self.kernel.is_some() || self.json.is_some() || self.stderr
    }

    /// Delivers `records` about `subject`. Delivery errors are logged, never returned: an
    /// audit sink must not change a decision.
    pub fn emit(&self, records: &[Record], subject: &Subject) {
        for r in records {
            if r.informational() && !self.info {
                continue;
            }
            if !self.admit() {
                continue;
            }
            let text = r.text(subject);
            if let Some(k) = &self.kernel {
                let msg = format!("ima_type={} {text}", r.kind());
                if let Err(e) = k.send(AUDIT_TRUSTED_APP, &msg) {
                    tracing::warn!("audit: the kernel refused a record: {e}");
                }
            }
            if let Some(j) = &self.json {
                let line = json_line(r, subject);
                let mut f = j.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.write_all(line.as_bytes()) {
                    tracing::warn!("audit: writing the JSON log: {e}");
                }
            }
            if self.stderr {
                tracing::info!(target: "audit", "type={} {text}", r.kind());
            }
        }
    }

    /// The rate limit: whether one more record may go in this second.
    fn admit(&self) -> bool {
        if self.rate == 0 {
            return true;
        }
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.elapsed() >= Duration::from_secs(1) {
            if w.dropped > 0 {
                tracing::warn!(
                    "audit: rate limit ({} a second) exceeded: {} records not written",
                    self.rate,
                    w.dropped
                );
            }
            *w = Window::default();
        }
        if w.sent < self.rate {
            w.sent += 1;
            true
        } else {
            w.dropped += 1;
            false
        }
    }
}

/// One JSON object on one line.
fn json_line(r: &Record, s: &Subject) -> String {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), r.kind().name().into());
    m.insert("type_id".into(), r.kind().number().into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    m.insert("time".into(), now.as_secs_f64().into());
    for (k, v) in r.fields(s) {
        let j = match &v {
            Value::Num(n) => serde_json::Value::from(*n),
            other => serde_json::Value::from(other.plain()),
        };
        m.insert(k.into(), j);
    }
    if let Some(c) = &s.cgroup {
        m.insert(
            "cgroup".into(),
            String::from_utf8_lossy(c).into_owned().into(),
        );
    }
    let mut line = serde_json::Value::Object(m).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use ima_core::appraise::Cause;

    #[test]
    fn json_lines_carry_the_kernel_fields_and_the_rate_limit_holds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.json");
        let log = AuditLog::none().with_json(&p).unwrap().limits(3, false);
        let r = Record::appraise(Cause::MissingHash, b"/mnt/f", None, false);
        let s = Subject {
            pid: 7,
            comm: b"cat".to_vec(),
            cgroup: Some(b"/system.slice/x.service".to_vec()),
            ..Subject::default()
        };
        log.emit(&[r.clone(), r.clone(), r.clone(), r.clone(), r], &s);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "the rate limit admits 3 a second");
        let l = &lines[0];
        assert_eq!(l["type"], "INTEGRITY_DATA");
        assert_eq!(l["type_id"], 1800);
        assert_eq!(l["cause"], "missing-hash");
        assert_eq!(l["name"], "/mnt/f");
        assert_eq!(l["pid"], 7);
        assert_eq!(l["res"], 0);
        assert_eq!(l["cgroup"], "/system.slice/x.service");
        // A symlink at the path is never followed.
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(AuditLog::none().with_json(&link).is_err());
    }
}
