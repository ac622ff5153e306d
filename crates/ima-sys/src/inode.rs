//! Inode metadata as EVM sees it: owner, mode, inode number, the generation number
//! (`FS_IOC_GETVERSION`) and the filesystem UUID (`FS_IOC_GETFSUUID`, Linux 6.5+), which
//! the kernel reads from `struct inode` and `sb->s_uuid` when it computes `security.evm`.
//!
//! The two ioctls are the reason this module allows `unsafe`: neither `rustix` nor `nix`
//! wraps them. Each call passes a buffer at least as large as the kernel writes.
#![allow(unsafe_code)] // two ioctls with no safe wrapper; each block states its invariant

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use ima_core::evm::InodeMeta;

/// `FS_IOC_GETFSUUID = _IOR(0x15, 0, struct fsuuid2)` with `struct fsuuid2 { __u8 len;
/// __u8 uuid[16]; }` (include/uapi/linux/fs.h; not in the libc crate).
const FS_IOC_GETFSUUID: libc::c_ulong = (2 << 30) | (17 << 16) | (0x15 << 8);

/// The EVM metadata of an open file from `fstat` (ino, uid, gid, mode), with generation 0;
/// see [`generation`] for the generation number, which not every filesystem reports.
pub fn stat(file: &File) -> io::Result<InodeMeta> {
    let md = file.metadata()?;
    Ok(InodeMeta {
        ino: md.ino(),
        generation: 0,
        uid: md.uid(),
        gid: md.gid(),
        // i_mode is 16 bits wide (umode_t); st_mode never has higher bits set.
        mode: md.mode() as u16,
    })
}

/// [`stat`] plus the generation of regular files (other files get 0, as evmctl does; the
/// kernel would use the inode's).
pub fn meta(file: &File) -> io::Result<InodeMeta> {
    let mut m = stat(file)?;
    if m.mode & 0o170000 == 0o100000 {
        m.generation = generation(file.as_fd())?;
    }
    Ok(m)
}

/// The filesystem magic (`statfs.f_type`, `sb->s_magic`) the policy's `fsmagic=` tests.
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::fstatfs(fd)?;
    // f_type is a signed word on some ABIs; magic numbers are 32-bit patterns.
    Ok(st.f_type as u64 & 0xffff_ffff)
}

/// `i_generation` via `FS_IOC_GETVERSION`. Filesystems without generations (tmpfs on older
/// kernels, overlayfs, ...) fail with `ENOTTY`/`EOPNOTSUPP`.
pub fn generation(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // The request is declared with a `long` argument but filesystems store an `int`
    // (`put_user(inode->i_generation, (int __user *)arg)`): give room for a long and read
    // the int the kernel wrote at its start.
    let mut buf = [0u8; std::mem::size_of::<libc::c_long>()];
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (BorrowedFd), and
    // `buf` is a writable buffer of `sizeof(long)` bytes, the most any filesystem writes for
    // FS_IOC_GETVERSION; the pointer does not outlive this statement.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETVERSION, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]))
}

/// The filesystem UUID the kernel hashes into EVM HMACs and 0x03 signatures
/// (`sb->s_uuid`), from `FS_IOC_GETFSUUID`. Fails with `ENOTTY` on kernels before 6.5 and
/// filesystems that keep no UUID; callers then need an explicit `--uuid`.
pub fn fs_uuid(fd: BorrowedFd<'_>) -> io::Result<[u8; 16]> {
    let mut buf = [0u8; 17];
    // SAFETY: `fd` is valid for the call; `buf` is a writable 17-byte `struct fsuuid2`
    // (u8 len + u8 uuid[16]), exactly the size encoded in the request number, so the kernel
    // writes within it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFSUUID as _, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = usize::from(buf[0]);
    if len > 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("FS_IOC_GETFSUUID returned a {len}-byte UUID"),
        ));
    }
    // A shorter UUID is zero padded, as `sb->s_uuid` (a 16-byte uuid_t) is.
    let mut uuid = [0u8; 16];
    uuid[..len].copy_from_slice(&buf[1..1 + len]);
    Ok(uuid)
}

/// Whether the kernel could write `security.evm` on this inode (the condition under which
/// `evm_verify_hmac` turns a verified 0x03 signature into an HMAC): the mount is not
/// read-only (`IS_RDONLY`, `ST_RDONLY`) and the inode is not immutable (`IS_IMMUTABLE`,
/// `chattr +i`). Filesystems without inode flags count as not immutable.
pub fn evm_writable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let vfs = rustix::fs::fstatvfs(fd)?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Ok(false);
    }
    match rustix::fs::ioctl_getflags(fd) {
        Ok(flags) => Ok(!flags.contains(rustix::fs::IFlags::IMMUTABLE)),
        Err(rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Parses a UUID in its canonical text form (`8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f`; hyphens
/// optional) into the bytes the kernel hashes (textual order).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hexs: String = s.chars().filter(|&c| c != '-').collect();
    let mut out = [0u8; 16];
    hex_decode(&hexs, &mut out).then_some(out)
}

fn hex_decode(s: &str, out: &mut [u8; 16]) -> bool {
    let b = s.as_bytes();
    if b.len() != 32 {
        return false;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16);
        let lo = (b[2 * i + 1] as char).to_digit(16);
        match (hi, lo) {
            // Each digit is < 16, so the byte fits.
            (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_of_a_temp_file() {
        let ext4 = ima_test::Ext4::new();
        let dir = tempfile::tempdir_in(ext4.path()).unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        let m = meta(&f).unwrap();
        let st = std::fs::metadata(&p).unwrap();
        assert_eq!(m.ino, st.ino());
        assert_eq!(u32::from(m.mode), st.mode());
        assert_eq!(m.mode & 0o170000, 0o100000);
        // Two files on ext4 get (almost surely) different generations; at least the call works.
        let g1 = generation(f.as_fd()).unwrap();
        let p2 = dir.path().join("g");
        std::fs::write(&p2, b"y").unwrap();
        let g2 = generation(File::open(&p2).unwrap().as_fd()).unwrap();
        assert!(g1 != 0 || g2 != 0, "ext4 hands out random generations");
    }

    #[test]
    fn uuid_ioctl_and_parse() {
        let ext4 = ima_test::Ext4::new();
        let dir = tempfile::tempdir_in(ext4.path()).unwrap();
        let f = File::open(dir.path()).unwrap();
        fs_uuid(f.as_fd()).unwrap_or_else(|e| {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            panic!("FS_IOC_GETFSUUID on ext4 failed ({e}): it needs Linux 6.5+, this is {release}")
        });
        assert_eq!(
            parse_uuid("11223344-5566-7788-99aa-bbccddeeff00"),
            Some([
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
                0xff, 0x00
            ])
        );
        assert_eq!(parse_uuid("1122"), None);
        assert_eq!(fs_magic(f.as_fd()).unwrap(), 0xef53, "the test's own ext4");
        assert_eq!(parse_uuid("zz223344-5566-7788-99aa-bbccddeeff00"), None);
    }

    #[test]
    fn writable_unless_immutable() {
        let ext4 = ima_test::Ext4::new();
        let dir = tempfile::tempdir_in(ext4.path()).unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        assert!(evm_writable(f.as_fd()).unwrap());
        // chattr +i (root, ext4), then back, so the temp dir can be removed.
        let flags = rustix::fs::ioctl_getflags(&f).unwrap();
        rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::IMMUTABLE).unwrap();
        let immutable = evm_writable(f.as_fd());
        rustix::fs::ioctl_setflags(&f, flags).unwrap();
        assert!(!immutable.unwrap());
    }
}
