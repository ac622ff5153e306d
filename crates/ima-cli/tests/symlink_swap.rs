//! Regression for issue #9 ("walk, then reopen by path, following symlinks"): while the tree
//! commands run over a tree, another thread keeps swapping its files for symlinks to a file
//! outside the tree, and a subdirectory for a symlink to that file's directory (and back). Run as root, an `imactl evm change -r --chmod`, `hash -r`,
//! `sign -r` or `measure -r` that followed such a symlink would change, label or measure a
//! file it was never pointed at. The outside file must come out unread (its atime, set before
//! its mtime, would move on a read under `relatime`), unwritten (ctime, mode, xattrs) and
//! unmeasured (its digest in no output and in no list entry).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use assert_cmd::cargo::CommandCargoExt;

const FILES: usize = 300;
const OUTSIDE: &[u8] = b"outside the tree: must never be read, written or measured\n";

fn imactl(args: &[&str]) -> Output {
    let mut c = Command::cargo_bin("imactl").unwrap();
    c.args(args);
    c.output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Toggles the tree's files between themselves and a symlink to `outside` until stopped;
/// counts the swaps.
fn swapper(tree: PathBuf, outside: PathBuf, stop: Arc<AtomicBool>, swaps: Arc<AtomicU64>) {
    let mut linked = vec![false; FILES];
    let mut sub_linked = false;
    let outside_dir = outside.parent().unwrap().to_path_buf();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Now and then the subdirectory becomes a symlink to the outside file's directory.
        if x.is_multiple_of(16) {
            let (sub, away) = (tree.join("sub"), tree.join(".sub-away"));
            if sub_linked {
                std::fs::remove_file(&sub).unwrap();
                std::fs::rename(&away, &sub).unwrap();
            } else {
                std::fs::rename(&sub, &away).unwrap();
                symlink(&outside_dir, &sub).unwrap();
            }
            sub_linked = !sub_linked;
            swaps.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let i = (x % FILES as u64) as usize;
        let name = tree.join(format!("f{i:03}"));
        if linked[i] {
            let tmp = tree.join(".restore");
            std::fs::write(&tmp, format!("file {i}\n")).unwrap();
            std::fs::rename(&tmp, &name).unwrap();
        } else {
            let tmp = tree.join(".link");
            symlink(&outside, &tmp).unwrap();
            std::fs::rename(&tmp, &name).unwrap();
        }
        linked[i] = !linked[i];
        swaps.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn tree_commands_never_follow_a_file_swapped_for_a_symlink() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..FILES {
        std::fs::write(tree.join(format!("f{i:03}")), format!("file {i}\n")).unwrap();
    }
    // A subdirectory, sometimes swapped for a symlink to the outside file's directory.
    std::fs::create_dir(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/inner"), b"inner\n").unwrap();
    // A .sig next to a file is a symlink out of the tree: `sign --sigfile` must not write it.
    std::fs::write(tree.join("victim"), b"victim\n").unwrap();
    std::fs::create_dir(d.path().join("out")).unwrap();
    let outside = d.path().join("out/outside");
    symlink(&outside, tree.join("victim.sig")).unwrap();
    std::fs::write(&outside, OUTSIDE).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    // atime before mtime: under relatime (or strictatime) a read moves it.
    let f = std::fs::File::options().write(true).open(&outside).unwrap();
    f.set_times(std::fs::FileTimes::new().set_accessed(SystemTime::UNIX_EPOCH))
        .unwrap();
    drop(f);
    let before = std::fs::metadata(&outside).unwrap();
    assert_eq!(before.atime(), 0);
    let digest = hex_sha256(OUTSIDE);

    let key = d.path().join("key.pem");
    let o = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-out", s(&key)])
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {o:?}");
    let state = d.path().join("state");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let t = {
        let (tree, outside, stop, swaps) =
            (tree.clone(), outside.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || swapper(tree, outside, stop, swaps))
    };
    // Let the swapper get going.
    while swaps.load(Ordering::Relaxed) < 100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut outputs = Vec::new();
    let runs: [&[&str]; 5] = [
        &[
            "evm",
            "change",
            "-r",
            "--evm-fix",
            "--chmod",
            "0644",
            s(&tree),
        ],
        &["hash", "-r", "-n", s(&tree)],
        &["hash", "-r", s(&tree)],
        &["sign", "-r", "--sigfile", "--key", s(&key), s(&tree)],
        &["measure", "-r", "--state", s(&state), s(&tree)],
    ];
    for round in 0..3 {
        for args in runs {
            let at = swaps.load(Ordering::Relaxed);
            let o = imactl(args);
            let code = o.status.code();
            assert!(
                matches!(code, Some(0..=2)),
                "round {round}: imactl {args:?} died: {o:?}"
            );
            assert!(
                swaps.load(Ordering::Relaxed) > at,
                "no swap happened during imactl {args:?}"
            );
            outputs.push((args, o));
        }
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();

    let after = std::fs::metadata(&outside).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), OUTSIDE);
    assert_eq!(
        after.mode() & 0o7777,
        0o600,
        "chmod reached the outside file"
    );
    assert_eq!(
        (after.ctime(), after.ctime_nsec()),
        (before.ctime(), before.ctime_nsec()),
        "the outside file's inode was changed (chmod, setxattr, write)"
    );
    assert_eq!(after.atime(), 0, "the outside file was read");
    for name in ["security.ima", "security.evm"] {
        let o = Command::new("getfattr")
            .args(["--absolute-names", "-n", name, s(&outside)])
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{name} was written on the outside file"
        );
    }
    for (args, o) in &outputs {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.contains(&digest),
            "imactl {args:?} hashed the outside file"
        );
    }
    let list = std::fs::read_to_string(state.join("ascii_runtime_measurements_sha256")).unwrap();
    assert!(list.lines().count() > FILES / 2, "{list}");
    assert!(!list.contains(&digest), "the outside file was measured");
    // The measured files are the tree's (each was `file N`, never the outside content).
    // (After boot_aggregate and the engine's boot entry.)
    assert!(list.lines().skip(2).all(|l| l.contains(s(&tree))), "{list}");
    // The .sig beside `victim` is still the symlink, not a file written through it.
    let sig = std::fs::symlink_metadata(tree.join("victim.sig")).unwrap();
    assert!(sig.file_type().is_symlink());
}

fn hex_sha256(data: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(o.stdout).unwrap()[..64].to_owned()
}
