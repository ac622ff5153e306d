//! Which files some process has open for write, from `/proc`: what the kernel reads from
//! `inode->i_writecount` (`inode_is_open_for_write`) when it decides on an `open_writers`
//! violation, seen from userspace.
//!
//! A file is open for write if some process has a descriptor whose `/proc/PID/fdinfo/FD`
//! `flags:` access mode is `O_WRONLY` or `O_RDWR`, or a shared writable mapping of it
//! (`/proc/PID/maps` permissions `rw?s`: such a mapping keeps a write-mode `struct file` after
//! its descriptor is closed). Processes come and go while we read: a vanished process or
//! descriptor, or one we may not inspect (another user's, without root), is skipped.
//! Not seen: write-mode files held only by the kernel (io_uring fixed files, a read-only
//! mapping of a file opened `O_RDWR` whose descriptor was closed) and threads that unshared
//! their descriptor table.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ima_core::policy::TaskCreds;

/// `O_ACCMODE` and the two write modes (include/uapi/asm-generic/fcntl.h).
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;

/// The (st_dev, st_ino) of every regular file some process has open for write.
pub fn open_for_write() -> HashSet<(u64, u64)> {
    open_for_write_in(Path::new("/proc"))
}

/// [`open_for_write`] over a procfs mounted at `proc`.
pub fn open_for_write_in(proc: &Path) -> HashSet<(u64, u64)> {
    let mut out = HashSet::new();
    let Ok(rd) = fs::read_dir(proc) else {
        return out;
    };
    let mut buf = Vec::with_capacity(256);
    for ent in rd.flatten() {
        let name = ent.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let pid_dir = ent.path();
        if let Ok(fds) = fs::read_dir(pid_dir.join("fd")) {
            for fd in fds.flatten() {
                let info = pid_dir.join("fdinfo").join(fd.file_name());
                buf.clear();
                if File::open(&info)
                    .and_then(|mut f| f.read_to_end(&mut buf))
                    .is_err()
                {
                    continue;
                }
                let Some(flags) = fdinfo_flags(&buf) else {
                    continue;
                };
                if !matches!(flags & O_ACCMODE, O_WRONLY | O_RDWR) {
                    continue;
                }
                // stat through the magic link: the open file itself, even if unlinked.
                if let Ok(m) = fs::metadata(fd.path())
                    && m.file_type().is_file()
                {
                    out.insert((m.dev(), m.ino()));
                }
            }
        }
        buf.clear();
        if File::open(pid_dir.join("maps"))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .is_ok()
        {
            out.extend(shared_writable_mappings(&buf));
        }
    }
    out
}

/// The credentials of process `pid` (this process for `None`), from `/proc/PID/status`
/// (`Uid:`, `Gid:`, `Groups:`, `CapEff:`). A process that cannot be read, or a status
/// without those fields, is an error: never a default identity.
pub fn task_creds(pid: Option<u32>) -> io::Result<TaskCreds> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    task_creds_from(Path::new(&path))
}

/// [`task_creds`] from a status file at `path`.
pub fn task_creds_from(path: &Path) -> io::Result<TaskCreds> {
    let ctx = |e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let mut buf = Vec::new();
    File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
        .take(STATUS_LIMIT + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > STATUS_LIMIT {
        return Err(ctx(&format_args!("larger than {STATUS_LIMIT} bytes")));
    }
    let text = std::str::from_utf8(&buf).map_err(|e| ctx(&e))?;
    TaskCreds::from_proc_status(text).map_err(|e| ctx(&e))
}

/// What an audit record says about process `pid` (this process for `None`):
/// `audit_log_task_info`'s fields from `/proc/PID/{status,stat,loginuid,sessionid,comm,exe,
/// cgroup}`. The credentials must be readable (else an error); the rest is best effort, as
/// the kernel's own record prints `(none)`/`(null)`/`-1` for what a task lacks.
pub fn audit_subject(pid: Option<u32>) -> io::Result<ima_core::audit::Subject> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let dir = Path::new(&dir);
    let creds = task_creds_from(&dir.join("status"))?;
    let small = |name: &str| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(dir.join(name))
            .ok()?
            .take(SMALL_LIMIT)
            .read_to_end(&mut buf)
            .ok()?;
        while buf.last().is_some_and(|c| *c == b'\n') {
            buf.pop();
        }
        Some(buf)
    };
    let num = |name: &str| -> u32 {
        small(name)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u32::MAX)
    };
    // `/proc/PID/stat`: "pid (comm) state ppid pgrp session tty_nr ...": fields after the
    // last ')' (comm may contain anything).
    let stat = small("stat").unwrap_or_default();
    let after = stat
        .iter()
        .rposition(|&c| c == b')')
        .map_or(&[][..], |i| &stat[i + 1..]);
    let fields: Vec<&[u8]> = after
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let field =
        |i: usize| -> Option<i64> { std::str::from_utf8(fields.get(i)?).ok()?.parse().ok() };
    let ppid = field(1).unwrap_or(0) as i32;
    let tty = field(4).and_then(tty_name);
    let pid = match pid {
        Some(p) => p as i32,
        None => std::process::id() as i32,
    };
    let cgroup = small("cgroup").and_then(|c| {
        // cgroup v2: the line "0::/path".
        c.split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"0::").map(<[u8]>::to_vec))
    });
    Ok(ima_core::audit::Subject {
        pid,
        ppid,
        auid: num("loginuid"),
        ses: num("sessionid"),
        uid: creds.uid,
        gid: creds.gid,
        euid: creds.euid,
        suid: creds.suid,
        fsuid: creds.fsuid,
        egid: creds.egid,
        sgid: creds.sgid,
        fsgid: creds.fsgid,
        tty,
        comm: small("comm").unwrap_or_default(),
        exe: fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string())),
        subj: small("attr/current")
            .filter(|c| !c.is_empty() && c.as_slice() != b"unconfined")
            .map(|c| String::from_utf8_lossy(c.trim_ascii_end()).into_owned()),
        cgroup,
    })
}

/// `/proc/PID/{comm,loginuid,sessionid,cgroup,stat}` are short.
const SMALL_LIMIT: u64 = 64 * 1024;

/// The kernel's `tty_name` for a `tty_nr` (encoded `dev_t`): the names audit records carry
/// for the common drivers (pseudo terminals, virtual consoles, serial ports), `None` for no
/// terminal or another driver.
fn tty_name(nr: i64) -> Option<String> {
    if nr <= 0 {
        return None;
    }
    let nr = nr as u64;
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        136..=143 => Some(format!("pts{}", (major - 136) * 256 + minor)),
        4 if minor < 64 => Some(format!("tty{minor}")),
        4 => Some(format!("ttyS{}", minor - 64)),
        _ => None,
    }
}

/// `/proc/PID/status` is a few KiB (more with thousands of supplementary groups).
const STATUS_LIMIT: u64 = 1 << 20;

/// The `flags:` field of an fdinfo file (octal).
pub fn fdinfo_flags(fdinfo: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(fdinfo).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(v.trim(), 8).ok()
}

/// (st_dev, st_ino) of every shared writable file mapping in a `/proc/PID/maps` text.
pub fn shared_writable_mappings(maps: &[u8]) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for line in maps.split(|b| *b == b'\n') {
        // address perms offset dev inode [path]
        let mut f = line.split(|b| *b == b' ').filter(|s| !s.is_empty()).skip(1);
        let (Some(perms), Some(_off), Some(dev), Some(ino)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if perms.len() != 4 || perms[1] != b'w' || perms[3] != b's' {
            continue;
        }
        if let Some(k) = dev_ino(dev, ino) {
            v.push(k);
        }
    }
    v
}

/// The `dev` (`MAJ:MIN`, hex) and `inode` columns of a maps line as (st_dev, st_ino);
/// `None` for anonymous mappings (inode 0) and malformed fields.
fn dev_ino(dev: &[u8], ino: &[u8]) -> Option<(u64, u64)> {
    let dev = std::str::from_utf8(dev).ok()?;
    let (maj, min) = dev.split_once(':')?;
    let maj = u64::from_str_radix(maj, 16).ok()?;
    let min = u64::from_str_radix(min, 16).ok()?;
    let ino: u64 = std::str::from_utf8(ino).ok()?.parse().ok()?;
    (ino != 0).then_some((makedev(maj, min), ino))
}

/// glibc's `makedev`: the `st_dev` encoding of (major, minor).
fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_subject_of_this_process() {
        let s = audit_subject(None).unwrap();
        assert_eq!(s.pid as u32, std::process::id());
        assert_eq!(s.ppid as u32, std::os::unix::process::parent_id());
        let c = task_creds(None).unwrap();
        assert_eq!((s.uid, s.euid, s.fsgid), (c.uid, c.euid, c.fsgid));
        assert_eq!(
            s.exe.as_deref(),
            Some(
                std::env::current_exe()
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes()
            )
        );
        assert!(!s.comm.is_empty() && s.comm.len() <= 15, "{:?}", s.comm);
        assert!(audit_subject(Some(u32::MAX)).is_err());
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(0), None);
        assert_eq!(tty_name((136 << 8) | 3).as_deref(), Some("pts3"));
        assert_eq!(tty_name((4 << 8) | 1).as_deref(), Some("tty1"));
        assert_eq!(tty_name((4 << 8) | 65).as_deref(), Some("ttyS1"));
    }
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn parses_fdinfo_and_maps() {
        assert_eq!(
            fdinfo_flags(b"pos:\t0\nflags:\t0100002\nmnt_id:\t24\n"),
            Some(0o100002)
        );
        assert_eq!(fdinfo_flags(b"pos:\t0\n"), None);
        let maps = b"7f00-7f10 rw-s 00000000 08:01 1234 /a\n\
                     7f10-7f20 r--s 00000000 08:01 99 /b\n\
                     7f20-7f30 rw-p 00000000 08:01 98 /c\n\
                     7f30-7f40 rw-s 00000000 00:01 0 /dev/zero (deleted)\n\
                     garbage\n";
        assert_eq!(shared_writable_mappings(maps), vec![(makedev(8, 1), 1234)]);
        assert_eq!(makedev(0x103, 0x10203), 0x1021_0303);
        // The encoding agrees with stat: our own executable's mapping.
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let exe = fs::metadata("/proc/self/exe").unwrap();
        let line = maps
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(&exe.ino().to_string()))
            .unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            dev_ino(f[3].as_bytes(), f[4].as_bytes()),
            Some((exe.dev(), exe.ino()))
        );
    }

    #[test]
    fn our_own_creds_and_errors() {
        let me = task_creds(None).unwrap();
        assert_eq!(me.uid, rustix::process::getuid().as_raw());
        assert_eq!(me.euid, rustix::process::geteuid().as_raw());
        assert_eq!(me.egid, rustix::process::getegid().as_raw());
        assert_eq!(task_creds(Some(std::process::id())).unwrap(), me);
        assert!(task_creds(Some(u32::MAX)).is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status");
        fs::write(&p, "Name: x\n").unwrap();
        let e = task_creds_from(&p).unwrap_err();
        assert!(e.to_string().ends_with("status: no Uid: field"), "{e}");
    }

    #[test]
    fn sees_our_own_write_descriptor_and_not_a_read_one() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("w");
        let r = d.path().join("r");
        fs::write(&r, b"r").unwrap();
        let _wf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&w)
            .unwrap();
        let _rf = File::open(&r).unwrap();
        let set = open_for_write();
        let key = |p: &Path| {
            let m = fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        assert!(set.contains(&key(&w)));
        assert!(!set.contains(&key(&r)));
    }
}
