//! Who accesses what: the task's credentials ([`TaskCreds`], what `current_cred()` holds) and
//! the default access mask of each hook ([`Func::default_mask`]), the inputs every caller of
//! the matcher needs, so that measuring, appraising and `policy explain` see one access the
//! same way.
//!
//! Mirrors the `cred`/`mask` arguments of `process_measurement` in
//! `security/integrity/ima/ima_main.c` and what `ima_match_rules` reads from them.

use std::fmt;

use super::matcher::Event;
use super::token::{Func, Mask, Uuid};

/// A task's credentials as the policy and EVM's hooks test them: the four user and group ids
/// of `struct cred`, the supplementary groups and the effective capabilities.
///
/// ```text
/// struct cred {
///     kuid_t uid, suid, euid, fsuid;
///     kgid_t gid, sgid, egid, fsgid;
///     kernel_cap_t cap_effective;
///     struct group_info *group_info;
///     ...
/// };
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskCreds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `cap_effective`, one bit per capability number.
    pub cap_eff: u64,
}

impl TaskCreds {
    /// `CAP_FSETID` (include/uapi/linux/capability.h).
    pub const CAP_FSETID: u32 = 4;
    /// `CAP_SETGID`.
    pub const CAP_SETGID: u32 = 6;
    /// `CAP_SETUID`.
    pub const CAP_SETUID: u32 = 7;
    /// `CAP_SYS_ADMIN`.
    pub const CAP_SYS_ADMIN: u32 = 21;

    /// Whether capability number `cap` is effective.
    pub fn capable(&self, cap: u32) -> bool {
        cap < 64 && self.cap_eff & (1 << cap) != 0
    }

    /// `in_group_p`: the fs gid or a supplementary group is `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.fsgid == gid || self.groups.contains(&gid)
    }

    /// Parses the text of `/proc/PID/status`: the `Uid:` and `Gid:` lines (real, effective,
    /// saved, fs), `Groups:` and `CapEff:` (hex). Every one of them must be present and well
    /// formed: there is no default identity.
    pub fn from_proc_status(text: &str) -> Result<Self, CredsError> {
        let line = |key: &'static str| -> Result<(usize, &str), CredsError> {
            text.lines()
                .enumerate()
                .find_map(|(i, l)| l.strip_prefix(key).map(|rest| (i + 1, rest)))
                .ok_or(CredsError {
                    field: key,
                    line: None,
                })
        };
        let ids = |key: &'static str| -> Result<[u32; 4], CredsError> {
            let (n, rest) = line(key)?;
            let bad = CredsError {
                field: key,
                line: Some(n),
            };
            let mut v = [0; 4];
            let mut it = rest.split_whitespace();
            for slot in &mut v {
                *slot = it.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
            }
            if it.next().is_some() {
                return Err(bad);
            }
            Ok(v)
        };
        let [uid, euid, suid, fsuid] = ids("Uid:")?;
        let [gid, egid, sgid, fsgid] = ids("Gid:")?;
        let (n, groups) = line("Groups:")?;
        let groups = groups
            .split_whitespace()
            .map(|g| g.parse())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| CredsError {
                field: "Groups:",
                line: Some(n),
            })?;
        let (n, caps) = line("CapEff:")?;
        let cap_eff = u64::from_str_radix(caps.trim(), 16).map_err(|_| CredsError {
            field: "CapEff:",
            line: Some(n),
        })?;
        Ok(Self {
            uid,
            euid,
            suid,
            fsuid,
            gid,
            egid,
            sgid,
            fsgid,
            groups,
            cap_eff,
        })
    }
}

/// The attributes `ima_match_rules` looks at for an inode: owner, group, mode, and its
/// filesystem's magic, type name and UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// `st_dev` as (major, minor).
    pub dev: (u32, u32),
    pub ino: u64,
    /// `statfs.f_type` (`sb->s_magic`).
    pub fsmagic: u64,
    /// The filesystem type name (`sb->s_type->name`), if known.
    pub fsname: Option<String>,
    /// `sb->s_uuid`, if the filesystem has one.
    pub fsuuid: Option<Uuid>,
}

impl<'a> Event<'a> {
    /// The access `process_measurement` decides: `creds` opening (or executing, mapping...)
    /// the file described by `file` through hook `func` with `mask`. The one place the
    /// matcher's input is built from a task and a file; callers add only what neither
    /// carries (`path=`, `exe=`, `cgroup=`, LSM labels).
    pub fn access(func: Func, mask: Mask, creds: &TaskCreds, file: &'a FileFacts) -> Self {
        Event {
            uid: creds.uid,
            euid: creds.euid,
            suid: creds.suid,
            gid: creds.gid,
            egid: creds.egid,
            sgid: creds.sgid,
            cap_setuid: creds.capable(TaskCreds::CAP_SETUID),
            cap_setgid: creds.capable(TaskCreds::CAP_SETGID),
            fowner: file.uid,
            fgroup: file.gid,
            fsmagic: file.fsmagic,
            fsname: file.fsname.as_deref().unwrap_or(""),
            fsuuid: file.fsuuid.unwrap_or(Uuid::NIL),
            ..Event::new(func, mask)
        }
    }
}

/// A `/proc/PID/status` text without a well-formed credentials line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredsError {
    /// The field (`Uid:`, `Gid:`, `Groups:`, `CapEff:`).
    pub field: &'static str,
    /// The line it is on (1-based); `None` when it is missing.
    pub line: Option<usize>,
}

impl fmt::Display for CredsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: malformed {} field", self.field),
            None => write!(f, "no {} field", self.field),
        }
    }
}

impl std::error::Error for CredsError {}

impl Func {
    /// The mask the kernel passes with this hook when the caller names none:
    /// `MAY_READ` for FILE_CHECK (an open for read) and the kernel's file reads, `MAY_EXEC`
    /// for exec and executable mappings, `MAY_ACCESS` for POST_SETATTR, none for buffers.
    pub fn default_mask(self) -> Mask {
        match self {
            Func::FileCheck => Mask::MAY_READ,
            Func::MmapCheck | Func::MmapCheckReqprot | Func::BprmCheck | Func::CredsCheck => {
                Mask::MAY_EXEC
            }
            Func::PostSetattr => Mask::MAY_ACCESS,
            Func::KeyCheck | Func::CriticalData | Func::KexecCmdline | Func::None => Mask::NONE,
            _ => Mask::MAY_READ,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t7\n\
        Uid:\t1000\t0\t2000\t3000\nGid:\t10\t11\t12\t13\nFDSize:\t64\nGroups:\t4 24 27 \n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t00000000000000c0\n";

    #[test]
    fn parses_proc_status() {
        let c = TaskCreds::from_proc_status(STATUS).unwrap();
        assert_eq!(
            (
                c.uid, c.euid, c.suid, c.fsuid, c.gid, c.egid, c.sgid, c.fsgid
            ),
            (1000, 0, 2000, 3000, 10, 11, 12, 13)
        );
        assert_eq!(c.groups, [4, 24, 27]);
        assert!(c.capable(TaskCreds::CAP_SETUID) && c.capable(TaskCreds::CAP_SETGID));
        assert!(!c.capable(TaskCreds::CAP_SYS_ADMIN) && !c.capable(64));
        assert!(c.in_group(13) && c.in_group(27) && !c.in_group(10));
    }

    #[test]
    fn a_missing_or_bad_field_is_an_error_not_root() {
        let e = TaskCreds::from_proc_status("Name:\tx\n").unwrap_err();
        assert_eq!(e.to_string(), "no Uid: field");
        let bad = STATUS.replace("Uid:\t1000\t0\t2000\t3000", "Uid:\t1000\t0\t2000");
        assert_eq!(
            TaskCreds::from_proc_status(&bad).unwrap_err().to_string(),
            "line 5: malformed Uid: field"
        );
        let bad = STATUS.replace("00000000000000c0", "xyz");
        assert_eq!(
            TaskCreds::from_proc_status(&bad).unwrap_err().field,
            "CapEff:"
        );
        let bad = STATUS.replace("Groups:\t4 24 27 ", "Groups:\t4 -1");
        assert!(TaskCreds::from_proc_status(&bad).is_err());
        // Empty supplementary groups are fine.
        let ok = STATUS.replace("Groups:\t4 24 27 ", "Groups:\t");
        assert!(TaskCreds::from_proc_status(&ok).unwrap().groups.is_empty());
    }

    #[test]
    fn default_masks() {
        assert_eq!(Func::FileCheck.default_mask(), Mask::MAY_READ);
        assert_eq!(Func::BprmCheck.default_mask(), Mask::MAY_EXEC);
        assert_eq!(Func::PostSetattr.default_mask(), Mask::MAY_ACCESS);
        assert_eq!(Func::KeyCheck.default_mask(), Mask::NONE);
        assert_eq!(Func::ModuleCheck.default_mask(), Mask::MAY_READ);
    }
}
