//! The kernel's integrity audit records: which record a decision produces and its fields in
//! the kernel's order, rendered as the kernel's text (`audit_log_format` with its quoting of
//! untrusted strings) or handed to any other sink (JSON) as the same ordered fields.
//!
//! Mirrors `security/integrity/integrity_audit.c` (`integrity_audit_message`),
//! `ima_audit_measurement` (ima_api.c) and `audit_log_task_info` / `audit_log_n_untrustedstring`
//! (kernel/audit.c). Byte-level reference: kernel-ima.md §9.

use std::fmt::{self, Write as _};

use crate::hash::Digest;

/// The record types of include/uapi/linux/audit.h the integrity subsystem writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `AUDIT_INTEGRITY_DATA` (1800): collecting or appraising file data.
    Data,
    /// `AUDIT_INTEGRITY_METADATA` (1801): EVM.
    Metadata,
    /// `AUDIT_INTEGRITY_STATUS` (1802): policy loads.
    Status,
    /// `AUDIT_INTEGRITY_PCR` (1804): measurements and violations.
    Pcr,
    /// `AUDIT_INTEGRITY_RULE` (1805): the policy's `audit` action.
    Rule,
    /// `AUDIT_INTEGRITY_EVM_XATTR` (1806).
    EvmXattr,
    /// `AUDIT_INTEGRITY_POLICY_RULE` (1807): one parsed policy rule.
    PolicyRule,
    /// `AUDIT_INTEGRITY_USERSPACE` (1808): appraisal failures of userspace-requested checks.
    Userspace,
}

impl Kind {
    /// The number in include/uapi/linux/audit.h.
    pub fn number(self) -> u16 {
        match self {
            Self::Data => 1800,
            Self::Metadata => 1801,
            Self::Status => 1802,
            Self::Pcr => 1804,
            Self::Rule => 1805,
            Self::EvmXattr => 1806,
            Self::PolicyRule => 1807,
            Self::Userspace => 1808,
        }
    }

    /// The name auditd's tools print (`type=INTEGRITY_DATA`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "INTEGRITY_DATA",
            Self::Metadata => "INTEGRITY_METADATA",
            Self::Status => "INTEGRITY_STATUS",
            Self::Pcr => "INTEGRITY_PCR",
            Self::Rule => "INTEGRITY_RULE",
            Self::EvmXattr => "INTEGRITY_EVM_XATTR",
            Self::PolicyRule => "INTEGRITY_POLICY_RULE",
            Self::Userspace => "INTEGRITY_USERSPACE",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The task a record is about (`current` in the kernel): for a daemon, the process whose
/// access is decided, not the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub pid: i32,
    pub ppid: i32,
    /// `loginuid`: `u32::MAX` when unset, as the kernel prints it.
    pub auid: u32,
    /// `sessionid`: `u32::MAX` when unset.
    pub ses: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// The controlling terminal's name (`pts0`), `None` for `(none)`.
    pub tty: Option<String>,
    /// `comm` (at most 15 bytes in the kernel).
    pub comm: Vec<u8>,
    /// The executable's path; `None` prints `(null)` as the kernel does without an mm.
    pub exe: Option<Vec<u8>>,
    /// The LSM subject context, when one is set.
    pub subj: Option<String>,
    /// The task's cgroup (v2 path), an addition of ours (the container an event came from);
    /// never in the kernel text, only in other renderings.
    pub cgroup: Option<Vec<u8>>,
}

/// One field value, typed by how the kernel formats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number (`%d`, `%u`, `%lu`).
    Num(i64),
    /// Text the kernel prints as is (`op=`, `cause=`, `tty=`).
    Text(String),
    /// `audit_log_untrustedstring`: in double quotes when every byte is printable (0x21 to
    /// 0x7e) and none is `"`, otherwise as uppercase hex without quotes.
    Untrusted(Vec<u8>),
    /// A file digest, printed `"ALGO:hex"` in literal quotes.
    Hash(Digest),
}

impl Value {
    /// The kernel's rendering of the value.
    pub fn render(&self, out: &mut String) {
        match self {
            Self::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Text(s) => out.push_str(s),
            Self::Untrusted(b) => untrusted(b, out),
            Self::Hash(d) => {
                let _ = write!(out, "\"{}:{}\"", d.algo(), hex::encode(d.as_bytes()));
            }
        }
    }

    /// The value as plain text, without the kernel's quoting (for structured sinks).
    pub fn plain(&self) -> String {
        match self {
            Self::Num(n) => n.to_string(),
            Self::Text(s) => s.clone(),
            Self::Untrusted(b) => String::from_utf8_lossy(b).into_owned(),
            Self::Hash(d) => format!("{}:{}", d.algo(), hex::encode(d.as_bytes())),
        }
    }
}

/// `audit_string_contains_control` + `audit_log_n_untrustedstring`.
fn untrusted(b: &[u8], out: &mut String) {
    if b.iter().all(|&c| (0x21..=0x7e).contains(&c) && c != b'"') {
        out.push('"');
        // All printable ASCII: valid UTF-8.
        out.push_str(std::str::from_utf8(b).unwrap_or_default());
        out.push('"');
    } else {
        for c in b {
            let _ = write!(out, "{c:02X}");
        }
    }
}

/// The inode a generic message names (`dev=` is the superblock's `s_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeId {
    /// `s_id`: the block device's name (`vda1`, `loop0`) or the filesystem type for one
    /// without a device (`tmpfs`).
    pub dev: Vec<u8>,
    pub ino: u64,
}

/// One audit record, before the subject's fields are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `integrity_audit_message`.
    Message {
        kind: Kind,
        op: String,
        cause: String,
        /// `name=`, the file's path.
        name: Option<Vec<u8>>,
        inode: Option<InodeId>,
        /// The operation succeeded (`res=1`).
        ok: bool,
        errno: i32,
        /// Informational (`hash_added`, `hash_exists`): the kernel writes it only when booted
        /// with `integrity_audit=1`.
        info: bool,
    },
    /// `ima_audit_measurement`: the policy's `audit` action for a file.
    Rule { file: Vec<u8>, hash: Digest },
}

impl Record {
    /// An `op=appraise_data`/`collect_data` record for a failure the mode leaves (`ok`
    /// false) or one fix mode repaired (`ok` true).
    pub fn appraise(
        cause: crate::appraise::Cause,
        name: &[u8],
        inode: Option<InodeId>,
        ok: bool,
    ) -> Self {
        Self::Message {
            kind: Kind::Data,
            op: cause.op().to_owned(),
            cause: cause.as_str().to_owned(),
            name: Some(name.to_vec()),
            inode,
            ok,
            errno: 0,
            info: false,
        }
    }

    /// The record type.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Message { kind, .. } => *kind,
            Self::Rule { .. } => Kind::Rule,
        }
    }

    /// Whether the kernel writes it only with `integrity_audit=1`.
    pub fn informational(&self) -> bool {
        matches!(self, Self::Message { info: true, .. })
    }

    /// The record's fields with `s`'s, in the kernel's order.
    pub fn fields(&self, s: &Subject) -> Vec<(&'static str, Value)> {
        let mut v = Vec::with_capacity(20);
        match self {
            Self::Message {
                op,
                cause,
                name,
                inode,
                ok,
                errno,
                ..
            } => {
                v.push(("pid", Value::Num(s.pid.into())));
                v.push(("uid", Value::Num(s.uid.into())));
                v.push(("auid", Value::Num(s.auid.into())));
                v.push(("ses", Value::Num(s.ses.into())));
                if let Some(c) = &s.subj {
                    v.push(("subj", Value::Text(c.clone())));
                }
                v.push(("op", Value::Text(op.clone())));
                v.push(("cause", Value::Text(cause.clone())));
                v.push(("comm", Value::Untrusted(s.comm.clone())));
                if let Some(n) = name {
                    v.push(("name", Value::Untrusted(n.clone())));
                }
                if let Some(i) = inode {
                    v.push(("dev", Value::Untrusted(i.dev.clone())));
                    v.push(("ino", Value::Num(i.ino as i64)));
                }
                v.push(("res", Value::Num(i64::from(*ok))));
                v.push(("errno", Value::Num((*errno).into())));
            }
            Self::Rule { file, hash } => {
                v.push(("file", Value::Untrusted(file.clone())));
                v.push(("hash", Value::Hash(*hash)));
                task_info(s, &mut v);
            }
        }
        v
    }

    /// The kernel's text of the record for `s` (what follows `msg=audit(…):`).
    pub fn text(&self, s: &Subject) -> String {
        let mut out = String::with_capacity(256);
        for (i, (k, val)) in self.fields(s).iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            val.render(&mut out);
        }
        out
    }
}

/// `audit_log_task_info`.
fn task_info(s: &Subject, v: &mut Vec<(&'static str, Value)>) {
    v.push(("ppid", Value::Num(s.ppid.into())));
    v.push(("pid", Value::Num(s.pid.into())));
    v.push(("auid", Value::Num(s.auid.into())));
    for (k, n) in [
        ("uid", s.uid),
        ("gid", s.gid),
        ("euid", s.euid),
        ("suid", s.suid),
        ("fsuid", s.fsuid),
        ("egid", s.egid),
        ("sgid", s.sgid),
        ("fsgid", s.fsgid),
    ] {
        v.push((k, Value::Num(n.into())));
    }
    let tty = s.tty.clone().unwrap_or_else(|| "(none)".to_owned());
    v.push(("tty", Value::Text(tty)));
    v.push(("ses", Value::Num(s.ses.into())));
    v.push(("comm", Value::Untrusted(s.comm.clone())));
    v.push((
        "exe",
        match &s.exe {
            Some(e) => Value::Untrusted(e.clone()),
            None => Value::Text("(null)".to_owned()),
        },
    ));
    if let Some(c) = &s.subj {
        v.push(("subj", Value::Text(c.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appraise::Cause;
    use crate::hash::HashAlgo;

    fn subject() -> Subject {
        Subject {
            pid: 4242,
            ppid: 1,
            auid: u32::MAX,
            ses: u32::MAX,
            uid: 1000,
            gid: 1000,
            euid: 0,
            suid: 0,
            fsuid: 0,
            egid: 1000,
            sgid: 1000,
            fsgid: 1000,
            tty: Some("pts0".into()),
            comm: b"cat".to_vec(),
            exe: Some(b"/usr/bin/cat".to_vec()),
            subj: None,
            cgroup: None,
        }
    }

    #[test]
    fn appraise_failure_is_the_kernels_generic_message() {
        let r = Record::appraise(
            Cause::InvalidHash,
            b"/mnt/a b",
            Some(InodeId {
                dev: b"loop0".to_vec(),
                ino: 12,
            }),
            false,
        );
        assert_eq!(r.kind().number(), 1800);
        assert_eq!(
            r.text(&subject()),
            "pid=4242 uid=1000 auid=4294967295 ses=4294967295 op=appraise_data \
             cause=invalid-hash comm=\"cat\" name=2F6D6E742F612062 dev=\"loop0\" ino=12 \
             res=0 errno=0"
        );
    }

    #[test]
    fn rule_record_is_ima_audit_measurement() {
        let d = Digest::new(HashAlgo::SHA256, &[0xab; 32]).unwrap();
        let r = Record::Rule {
            file: b"/bin/ls".to_vec(),
            hash: d,
        };
        let mut s = subject();
        s.tty = None;
        s.comm = b"my \"ls\"".to_vec();
        let t = r.text(&s);
        assert!(t.starts_with(&format!(
            "file=\"/bin/ls\" hash=\"sha256:{}\" ppid=1 pid=4242 auid=4294967295 uid=1000 \
             gid=1000 euid=0 suid=0 fsuid=0 egid=1000 sgid=1000 fsgid=1000 tty=(none) \
             ses=4294967295 comm=",
            "ab".repeat(32)
        )));
        assert!(
            t.ends_with(" comm=6D7920226C7322 exe=\"/usr/bin/cat\""),
            "{t}"
        );
    }

    #[test]
    fn untrusted_quoting_boundaries() {
        let q = |b: &[u8]| {
            let mut s = String::new();
            untrusted(b, &mut s);
            s
        };
        assert_eq!(q(b"!~"), "\"!~\"");
        assert_eq!(q(b""), "\"\"");
        assert_eq!(q(b"a\""), "6122");
        assert_eq!(q(b"\x7f"), "7F");
        assert_eq!(q("é".as_bytes()), "C3A9");
    }
}
