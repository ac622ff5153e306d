//! imad's own decisions, recorded in the evidence: `ima-buf` entries the daemon appends so a
//! remote verifier sees what was blocked and under which policy and mode (the kernel writes
//! no such entries; no peer has them). Each buffer is ASCII text whose first line names it
//! and its version; the template digest covers it.
//!
//! - [`POLICY`] (`imad-policy`), when a policy becomes active: `imad-policy v1`, then the
//!   policy's `policy_version=N` line if it has one, then its rules, one a line, as written
//!   (built-ins in the kernel's read-back form).
//! - [`MODE`] (`imad-mode`), when the daemon starts and whenever its mode changes:
//!   `imad-mode v1`, then `key value` lines: `appraise` (enforce, fix, log, off), `template`,
//!   `hash`, `default` (allow, deny: the answer past the deadline). The same settings give the
//!   same buffer, so a known-good list's mode entry is a reference value for other hosts.
//! - [`DENIAL`] (`imad-denial`), before an access is denied: `imad-denial v1`, then the
//!   kernel's `INTEGRITY_DATA` audit record of the failure (kernel-ima.md §9.1: op, cause,
//!   opener, file name, device and inode), then, when the file's digest was collected, the
//!   `INTEGRITY_RULE` form for the same file and opener (§9.2: its digest, the opener's ids,
//!   tty, comm and executable). Both lines are the kernel's audit text, so one parser reads
//!   the audit log and the list.

use crate::audit::{Record, Subject};
use crate::hash::Digest;
use crate::policy::Policy;

/// Event name of a policy load.
pub const POLICY: &str = "imad-policy";
/// Event name of a mode record.
pub const MODE: &str = "imad-mode";
/// Event name of a denial.
pub const DENIAL: &str = "imad-denial";

/// The buffer of a [`POLICY`] entry for `p`.
pub fn policy_buffer(p: &Policy) -> Vec<u8> {
    let mut s = format!("{POLICY} v1\n");
    if let Some(v) = p.version {
        s.push_str(&format!("policy_version={v}\n"));
    }
    for r in &p.rules {
        s.push_str(r.text.trim_end());
        s.push('\n');
    }
    s.into_bytes()
}

/// The settings a [`MODE`] entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeRecord {
    pub appraise: String,
    pub template: String,
    pub hash: String,
    pub default: String,
}

impl ModeRecord {
    /// The buffer of a [`MODE`] entry.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MODE} v1\nappraise {}\ntemplate {}\nhash {}\ndefault {}\n",
            self.appraise, self.template, self.hash, self.default
        )
        .into_bytes()
    }
}

/// The buffer of a [`DENIAL`] entry: `failure` (an `INTEGRITY_DATA` record) about `who`,
/// and the file's digest when it was collected.
pub fn denial_buffer(
    failure: &Record,
    who: &Subject,
    file: &[u8],
    digest: Option<Digest>,
) -> Vec<u8> {
    let mut s = format!("{DENIAL} v1\n{}\n", failure.text(who));
    if let Some(d) = digest {
        let rule = Record::Rule {
            file: file.to_vec(),
            hash: d,
        };
        s.push_str(&rule.text(who));
        s.push('\n');
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appraise::Cause;
    use crate::hash::HashAlgo;

    #[test]
    fn buffers_are_versioned_text() {
        let p = Policy::parse("measure func=BPRM_CHECK\n\nappraise func=FILE_CHECK  \n").unwrap();
        assert_eq!(
            policy_buffer(&p),
            b"imad-policy v1\nmeasure func=BPRM_CHECK\nappraise func=FILE_CHECK\n"
        );
        let m = ModeRecord {
            appraise: "enforce".into(),
            template: "ima-ng".into(),
            hash: "sha256".into(),
            default: "allow".into(),
        };
        assert_eq!(
            m.encode(),
            b"imad-mode v1\nappraise enforce\ntemplate ima-ng\nhash sha256\ndefault allow\n"
        );
        let who = Subject {
            pid: 5,
            comm: b"cat".to_vec(),
            ..Subject::default()
        };
        let fail = Record::appraise(Cause::MissingHash, b"/m/f", None, false);
        let d = HashAlgo::SHA256.digest(b"x").unwrap();
        let b = String::from_utf8(denial_buffer(&fail, &who, b"/m/f", Some(d))).unwrap();
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 3, "{b}");
        assert_eq!(lines[0], "imad-denial v1");
        assert!(
            lines[1].contains("op=appraise_data cause=missing-hash"),
            "{b}"
        );
        assert!(
            lines[2].starts_with("file=\"/m/f\" hash=\"sha256:2d711642"),
            "{b}"
        );
    }
}
