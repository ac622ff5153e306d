//! A fresh ext4 filesystem for one test: a sparse image in a temporary directory, made with
//! `mkfs.ext4` and loop-mounted, so tests that need `security.*` xattrs, generations and
//! `FS_IOC_GETFSUUID` get them whatever filesystem `/tmp` is. Needs root, loop devices and
//! e2fsprogs; without them the test fails saying which, it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run_ok;

/// A loop-mounted ext4, unmounted (lazily, so a leaked descriptor cannot block it) on drop.
#[derive(Debug)]
pub struct Ext4 {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ext4 {
    /// Makes and mounts a 32 MiB ext4. Panics naming the missing precondition.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let image = dir.path().join("ext4.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap_or_else(|e| panic!("{}: {e}", mnt.display()));
        let file =
            std::fs::File::create(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        file.set_len(32 << 20)
            .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            panic!("mkfs.ext4 is missing: install e2fsprogs (.ci/run does)");
        }
        // 4 KiB blocks, as on a real disk: an xattr value must fit in one block.
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-b", "4096"])
                .arg(&image),
        );
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(
            out.status.success(),
            "mounting an ext4 image needs root and a loop device: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { mnt, _dir: dir }
    }

    /// The mount point (root-owned, 0755).
    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Default for Ext4 {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
