//! Throwaway filesystems for tests that need a filesystem of their own: fanotify marks (a test
//! must never mark `/`), xattrs on ext4. Root only; unmounted (lazily) on Drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem mounted on a fresh temporary directory, unmounted on Drop.
#[derive(Debug)]
pub struct TestMount {
    dir: tempfile::TempDir,
    // The image of a loop mount, removed after the unmount.
    _image: Option<tempfile::TempDir>,
}

impl TestMount {
    /// A 64 MiB tmpfs (with `security.*` xattrs, as tmpfs has them).
    ///
    /// # Panics
    /// If `mount` fails (not root).
    pub fn tmpfs() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        crate::run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"])
                .arg(dir.path()),
        );
        Self { dir, _image: None }
    }

    /// A loop-mounted ext4 of `mib` MiB (xattrs, i_version, a UUID).
    ///
    /// # Panics
    /// If `mkfs.ext4` or `mount` fails (not root, no loop devices).
    pub fn ext4(mib: u32) -> Self {
        let image = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let img = image.path().join("fs.img");
        let f = std::fs::File::create(&img).unwrap_or_else(|e| panic!("{}: {e}", img.display()));
        f.set_len(u64::from(mib) << 20)
            .unwrap_or_else(|e| panic!("{}: {e}", img.display()));
        drop(f);
        crate::run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        crate::run_ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(dir.path()),
        );
        Self {
            dir,
            _image: Some(image),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        // Lazy: a process still holding a file must not make the test hang or leak the mount.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
