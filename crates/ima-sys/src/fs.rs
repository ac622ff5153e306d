//! What the policy needs to know about a file: owner, group, mode, and its filesystem's
//! magic, type name and UUID (`stat`, `statfs`, `/proc/self/mountinfo`, udev's
//! `/dev/disk/by-uuid`). Safe API over rustix; no `unsafe` here.

use std::io;
use std::path::{Path, PathBuf};

use ima_core::policy::Uuid;

pub use ima_core::policy::FileFacts;

/// Reads [`FileFacts`] for `path` (following symlinks, like an open would).
pub fn file_facts(path: &Path) -> io::Result<FileFacts> {
    let st = rustix::fs::stat(path)?;
    let sfs = rustix::fs::statfs(path)?;
    let dev = st.st_dev;
    let dev = (rustix::fs::major(dev), rustix::fs::minor(dev));
    // f_type is a signed word on some ABIs; the kernel's s_magic is an unsigned long and
    // the magics fit in 32 bits.
    #[allow(clippy::unnecessary_cast)] // the field type differs between targets
    let fsmagic = (sfs.f_type as i64 as u64) & 0xffff_ffff;
    Ok(FileFacts {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode,
        dev,
        #[allow(clippy::unnecessary_cast)] // u64 on 64-bit targets, not everywhere
        ino: st.st_ino as u64,
        fsmagic,
        fsname: mount_fstype(dev),
        // Only open regular files and directories: opening a FIFO could block.
        fsuuid: matches!(st.st_mode & 0o170000, 0o100000 | 0o040000)
            .then(|| sb_uuid(path))
            .flatten()
            .or_else(|| uuid_of_dev(dev)),
    })
}

/// [`FileFacts`] of open files, the per-filesystem part (magic, type name, UUID) looked up
/// once per `st_dev` and shared between threads. Everything comes from the descriptor
/// (`fstat`, `fstatfs`, `FS_IOC_GETFSUUID`); the mount table and udev's links only name the
/// filesystem of a device number.
#[derive(Debug, Default)]
pub struct FactsCache {
    by_dev: std::sync::Mutex<std::collections::HashMap<u64, SbFacts>>,
}

/// What one superblock contributes to [`FileFacts`].
#[derive(Clone, Debug)]
struct SbFacts {
    fsmagic: u64,
    fsname: Option<String>,
    fsuuid: Option<Uuid>,
}

impl FactsCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The facts of `file`, whose `fstat` is `meta`.
    pub fn facts(&self, file: &std::fs::File, meta: &std::fs::Metadata) -> io::Result<FileFacts> {
        self.facts_of(&crate::walk::Stat::of_metadata(meta), || Ok(file))
    }

    /// The facts of the file whose `statx` is `st`; `open` opens it (the same inode) when
    /// its filesystem was not seen yet: `fstatfs` and `FS_IOC_GETFSUUID` need a descriptor
    /// of that filesystem.
    pub fn facts_of<F: std::os::fd::AsFd>(
        &self,
        st: &crate::walk::Stat,
        open: impl FnOnce() -> io::Result<F>,
    ) -> io::Result<FileFacts> {
        let raw_dev = st.dev;
        let dev = (rustix::fs::major(raw_dev), rustix::fs::minor(raw_dev));
        let known = self
            .by_dev
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&raw_dev)
            .cloned();
        let sb = match known {
            Some(sb) => sb,
            None => {
                let file = open()?;
                let fsmagic = crate::inode::fs_magic(file.as_fd())?;
                let fsuuid = match crate::inode::fs_uuid(file.as_fd()) {
                    Ok(u) if u != [0; 16] => Some(Uuid(u)),
                    _ => uuid_of_dev(dev),
                };
                let sb = SbFacts {
                    fsmagic,
                    fsname: mount_fstype(dev),
                    fsuuid,
                };
                self.by_dev
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(raw_dev, sb.clone());
                sb
            }
        };
        Ok(FileFacts {
            uid: st.uid,
            gid: st.gid,
            mode: st.mode,
            dev,
            ino: st.ino,
            fsmagic: sb.fsmagic,
            fsname: sb.fsname,
            fsuuid: sb.fsuuid,
        })
    }
}

/// `FS_IOC_GETFSUUID` on the file itself (an all-zero answer means "no UUID").
fn sb_uuid(path: &Path) -> Option<Uuid> {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(path).ok()?;
    match crate::inode::fs_uuid(f.as_fd()) {
        Ok(u) if u != [0; 16] => Some(Uuid(u)),
        _ => None,
    }
}

/// The filesystem type of the mount(s) of device `major:minor` in `/proc/self/mountinfo`.
fn mount_fstype(dev: (u32, u32)) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = format!("{}:{}", dev.0, dev.1);
    text.lines().find_map(|l| {
        let mut f = l.split(' ');
        if f.nth(2)? != want {
            return None;
        }
        let (_, after) = l.split_once(" - ")?;
        after.split(' ').next().map(str::to_owned)
    })
}

/// The UUID whose `/dev/disk/by-uuid` link points at the block device `major:minor`.
fn uuid_of_dev(dev: (u32, u32)) -> Option<Uuid> {
    let dir = std::fs::read_dir("/dev/disk/by-uuid").ok()?;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(u) = name.parse::<Uuid>() else {
            continue;
        };
        let target: PathBuf = match std::fs::canonicalize(e.path()) {
            Ok(t) => t,
            Err(_) => continue,
        };
        if let Ok(st) = rustix::fs::stat(&target) {
            let rdev = st.st_rdev;
            if (rustix::fs::major(rdev), rustix::fs::minor(rdev)) == dev {
                return Some(u);
            }
        }
    }
    None
}

/// The peer of a connected Unix socket (`SO_PEERCRED`): its pid and uid.
pub fn socket_peer(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(fd)?;
    Ok((c.pid.as_raw_nonzero().get(), c.uid.as_raw()))
}

/// Opens the regular file `path` read-only, never through a symlink at `path` and never
/// blocking (a FIFO is refused, not waited on).
pub fn open_regular_nofollow(path: &Path) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Opens `path` for appending, creating it with `mode` if absent; a symlink at `path` is
/// refused (`O_NOFOLLOW`), as is anything but a regular file. For logs a privileged process
/// writes in a directory others may write.
pub fn open_append_nofollow(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// The superblock's `s_id` for the device `dev` (`st_dev`), as audit records print it
/// (`dev=`): the block device's name (`vda1`, `loop0`, from `/sys/dev/block/MAJ:MIN`), else,
/// for a filesystem without a device, its type name (`tmpfs`), as `sget_fc` sets it.
pub fn sb_id(dev: u64, fsname: Option<&str>) -> Vec<u8> {
    let link = format!(
        "/sys/dev/block/{}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    if let Ok(target) = std::fs::read_link(&link)
        && let Some(name) = target.file_name()
    {
        return name.as_encoded_bytes().to_vec();
    }
    fsname.unwrap_or("?").as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sb_ids() {
        use std::os::unix::fs::MetadataExt;
        let proc_dev = std::fs::metadata("/proc/self").unwrap().dev();
        assert_eq!(sb_id(proc_dev, Some("proc")), b"proc");
        // A block device's name is its /sys/dev/block entry: the root filesystem's, when it
        // has a device.
        let root = std::fs::metadata("/").unwrap().dev();
        let id = sb_id(root, None);
        assert!(!id.is_empty() && !id.contains(&b'/'), "{id:?}");
    }

    #[test]
    fn facts_of_a_temp_file_and_proc() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = file_facts(&p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(f.uid, std::fs::metadata(&p).unwrap().uid());
        assert_eq!(f.mode & 0o170000, 0o100000);
        assert!(f.fsname.is_some(), "{f:?}");
        let proc_ = file_facts(Path::new("/proc/self/status")).unwrap();
        assert_eq!(proc_.fsmagic, 0x9fa0);
        assert_eq!(proc_.fsname.as_deref(), Some("proc"));
        assert!(file_facts(Path::new("/nonexistent/x")).is_err());
        let cache = FactsCache::new();
        let file = std::fs::File::open(&p).unwrap();
        let by_fd = cache.facts(&file, &file.metadata().unwrap()).unwrap();
        assert_eq!(by_fd, f);
        let proc_file = std::fs::File::open("/proc/self/status").unwrap();
        let by_fd = cache
            .facts(&proc_file, &proc_file.metadata().unwrap())
            .unwrap();
        assert_eq!(
            (by_fd.fsmagic, by_fd.fsname.as_deref()),
            (0x9fa0, Some("proc"))
        );
        // Cached per device: the second file of the same filesystem gets the same answer.
        assert_eq!(cache.facts(&file, &file.metadata().unwrap()).unwrap(), f);
    }
}

/// The most a key, certificate or signature file may hold (a PEM chain of a few dozen
/// certificates fits easily; `/dev/zero` does not).
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// The most a policy, PCR or key-list text file may hold.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// Reads a whole small file (keys, certificates, signatures, policies), refusing more than
/// `max` bytes: the read stops at `max + 1` bytes, so `/dev/zero` or a huge file costs at most
/// that much memory and fails with [`io::ErrorKind::FileTooLarge`] ("larger than N bytes").
pub fn read_limited(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod read_limited_tests {
    use super::*;

    #[test]
    fn bounded_reads() {
        let e = read_limited(Path::new("/dev/zero"), 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "larger than 4096 bytes");
        assert!(
            read_limited(Path::new("/dev/null"), 4096)
                .unwrap()
                .is_empty()
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 4096]).unwrap();
        assert_eq!(read_limited(&p, 4096).unwrap().len(), 4096);
        assert!(read_limited(&p, 4095).is_err());
    }
}
