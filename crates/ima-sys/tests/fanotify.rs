//! fanotify permission events on a tmpfs this test mounts itself (never `/`): allow, deny,
//! an ignore mark as the allow cache, pidfds, unmark. Nothing can freeze: the listener
//! answers every event and closes the group after its deadline (closing releases pending
//! events as allowed), and a watchdog aborts the whole process, which closes the group too,
//! if the test has not finished in time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test: a panic is the failure report

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ima_sys::fanotify::{EventMask, Fanotify, InitFlags, MarkFlags};

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "ima-fanotify-test"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs: {o:?}");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// What the listener saw: file name, mask, pid, whether a pidfd came, the answer.
type Seen = Vec<(String, EventMask, i32, bool, bool)>;

#[test]
fn permission_events_on_a_private_tmpfs() {
    // The watchdog: if the test is not done in 60 s, abort the process (closing the group).
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("fanotify test: watchdog fired, aborting");
            std::process::abort();
        }
    });

    let fs = Tmpfs::new();
    let root = fs.path().to_path_buf();
    for name in ["allowed", "denied", "cached"] {
        std::fs::write(root.join(name), name).unwrap();
    }
    let group = Fanotify::init(
        InitFlags::CLASS_CONTENT
            .union(InitFlags::CLOEXEC)
            .union(InitFlags::NONBLOCK)
            .union(InitFlags::REPORT_PIDFD),
        (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
    )
    .unwrap();
    let perms = EventMask::OPEN_PERM.union(EventMask::OPEN_EXEC_PERM);
    group.mark(MarkFlags::FILESYSTEM, perms, &root).unwrap();

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let listener = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || listen(group, &seen, &stop, Duration::from_secs(30)))
    };

    assert_eq!(std::fs::read(root.join("allowed")).unwrap(), b"allowed");
    let e = std::fs::File::open(root.join("denied")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    std::fs::read(root.join("cached")).unwrap();
    // Now under an ignore mark: no event.
    std::fs::read(root.join("cached")).unwrap();
    // Files created after the mark are on the marked filesystem too.
    std::fs::write(root.join("denied-new"), b"x").unwrap_err();

    stop.store(true, Ordering::Relaxed);
    let group = listener.join().unwrap();
    // Unmarked, nothing is asked: even `denied` opens (and no listener runs any more).
    group.unmark(MarkFlags::FILESYSTEM, perms, &root).unwrap();
    assert_eq!(std::fs::read(root.join("denied")).unwrap(), b"denied");
    drop(group);
    done_tx.send(()).unwrap();

    let seen = seen.lock().unwrap();
    let me = std::process::id() as i32;
    let names: Vec<(&str, bool)> = seen.iter().map(|s| (s.0.as_str(), s.4)).collect();
    assert_eq!(
        names,
        [
            ("allowed", true),
            ("denied", false),
            ("cached", true),
            ("denied-new", false)
        ],
        "{seen:?}"
    );
    for (name, mask, pid, pidfd, _) in seen.iter() {
        assert!(mask.contains(EventMask::OPEN_PERM), "{name}: {mask:?}");
        assert_eq!(*pid, me, "{name}");
        assert!(*pidfd, "{name}: no pidfd");
    }
}

/// Answers every event (deny for names starting with `denied`, allow otherwise, an ignore
/// mark for `cached`) until stopped or `deadline` passes; returns the group (the caller
/// closes it).
fn listen(group: Fanotify, seen: &Mutex<Seen>, stop: &AtomicBool, deadline: Duration) -> Fanotify {
    let start = Instant::now();
    let mut buf = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < deadline {
        let events = match group.read_events(&mut buf) {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("fanotify read: {e}");
                break;
            }
        };
        if events.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for ev in events {
            let Some(file) = ev.file.as_ref() else {
                continue;
            };
            // The name through procfs: never open anything on the marked filesystem.
            let link = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(file)
            ));
            let name = std::fs::read_link(&link)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let allow = !name.starts_with("denied");
            if name == "cached" {
                let _ = group.ignore(file.as_fd(), EventMask::OPEN_PERM, false);
            }
            // Answer even if recording fails: an unanswered event blocks the opener.
            let answered = group.respond(file.as_fd(), allow);
            seen.lock().unwrap_or_else(|p| p.into_inner()).push((
                name,
                ev.mask,
                ev.pid,
                ev.pidfd.is_some(),
                allow,
            ));
            answered.unwrap();
        }
    }
    group
}
