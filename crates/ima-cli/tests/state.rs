//! The measurement engine's state directory under attack: planted symlinks for every state
//! file name, directories others can write, parallel writers, a busy swtpm.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use ima_test::Swtpm;

fn measure(state: &Path, tpm: Option<&str>, paths: &[&Path], extra: &[&str]) -> Assert {
    let mut c = Command::cargo_bin("imactl").unwrap();
    c.args(["measure", "-q", "-r", "--state"])
        .arg(state)
        .args(extra);
    if let Some(t) = tpm {
        c.args(["--tpm", t]);
    }
    c.args(paths).assert()
}

fn verify_soft(state: &Path) -> Assert {
    let soft = format!("soft:{}", state.join(".engine/soft-pcrs").display());
    Command::cargo_bin("imactl")
        .unwrap()
        .args(["log", "verify", "--tpm", &soft])
        .arg(state.join("binary_runtime_measurements"))
        .assert()
}

fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(&t).unwrap();
    for i in 0..3 {
        std::fs::write(t.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    t
}

/// Every name the engine keeps in the state directory or `.engine/`, and every temporary
/// name it (or an earlier version) wrote through.
const STATE_FILES: &[&str] = &[
    "binary_runtime_measurements_sha1",
    "binary_runtime_measurements_sha256",
    "ascii_runtime_measurements_sha1",
    "ascii_runtime_measurements_sha256",
    "runtime_measurements_count",
    "violations",
    "runtime_measurements_count.tmp",
    "violations.tmp",
    ".engine/lock",
    ".engine/boot",
    ".engine/boot.tmp",
    ".engine/derived",
    ".engine/derived.tmp",
    ".engine/cache",
    ".engine/cache.tmp",
    ".engine/soft-pcrs",
    ".engine/soft-pcrs.tmp",
    ".engine/archiving",
];

/// A symlink planted under any state file name, in a fresh directory and in one with a
/// list, pointing at a file or dangling: the target is never written, nothing is created
/// through the dangling one. (The run may refuse or replace the link.)
#[test]
fn planted_symlinks_leave_their_targets_untouched() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let victim = d.path().join("victim");
    for (i, name) in STATE_FILES.iter().enumerate() {
        for existing in [false, true] {
            let state = d.path().join(format!("s{i}-{existing}"));
            std::fs::create_dir_all(state.join(".engine")).unwrap();
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::set_permissions(
                state.join(".engine"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
            if existing {
                measure(&state, None, &[&t], &[]).success();
            }
            std::fs::write(&victim, b"precious\n").unwrap();
            let p = state.join(name);
            let _ = std::fs::remove_file(&p);
            symlink(&victim, &p).unwrap();
            let _ = measure(&state, None, &[&t], &[]);
            assert_eq!(
                std::fs::read(&victim).unwrap(),
                b"precious\n",
                "{name} (existing list: {existing}) was written through"
            );
            let dangling = d.path().join(format!("nowhere-{i}-{existing}"));
            let _ = std::fs::remove_file(&p);
            symlink(&dangling, &p).unwrap();
            let _ = measure(&state, None, &[&t], &[]);
            assert!(
                !dangling.exists(),
                "{name} (existing list: {existing}): created through a dangling link"
            );
        }
    }
    // The directories: `.engine`, `archive` and the state directory itself as symlinks.
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = d.path().join("dirs");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&elsewhere, state.join(".engine")).unwrap();
    measure(&state, None, &[&t], &[])
        .code(2)
        .stderr(predicates::str::contains(".engine: is a symlink"));
    std::fs::remove_file(state.join(".engine")).unwrap();
    measure(&state, None, &[&t], &[]).success();
    // `archive` a link: archiving (--start-over on a lost bank) refuses to follow it.
    symlink(&elsewhere, state.join("archive")).unwrap();
    std::fs::remove_file(state.join(".engine/soft-pcrs")).unwrap();
    measure(&state, None, &[&t], &["--start-over"])
        .code(2)
        .stderr(predicates::str::contains("archive: is a symlink"));
    let link = d.path().join("link");
    symlink(&state, &link).unwrap();
    measure(&link, None, &[&t], &[])
        .code(2)
        .stderr(predicates::str::contains("is a symlink"));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// A state directory others can write, or owned by another user, is refused with the
/// reason; a new one is created 0700.
#[test]
fn state_directories_others_control_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let fresh = d.path().join("a/b/state");
    measure(&fresh, None, &[&t], &[]).success();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join(".engine")), 0o700);

    let open = d.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    measure(&open, None, &[&t], &[])
        .code(2)
        .stderr(predicates::str::contains(
            "is writable by group or others (mode 1777)",
        ));
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    std::fs::set_permissions(
        fresh.join(".engine"),
        std::fs::Permissions::from_mode(0o770),
    )
    .unwrap();
    measure(&fresh, None, &[&t], &[])
        .code(2)
        .stderr(predicates::str::contains(".engine: is writable by group"));
    std::fs::set_permissions(
        fresh.join(".engine"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    // Another user's directory (the tests run as root, so chown works; as another user the
    // directory simply is not ours).
    let theirs = d.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let me = rustix::process::geteuid().as_raw();
    if me == 0 {
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        measure(&theirs, None, &[&t], &[])
            .code(2)
            .stderr(predicates::str::contains(
                "is owned by uid 4242, not by the caller (euid 0)",
            ));
    } else {
        measure(Path::new("/"), None, &[&t], &[])
            .code(2)
            .stderr(predicates::str::contains("not by the caller"));
    }
}

/// Four writers on one state directory, ten rounds each: every run succeeds, and the list
/// holds every file once and replays to the software bank.
#[test]
fn parallel_writers_all_succeed_and_the_list_keeps_every_entry() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let imactl = assert_cmd::cargo::cargo_bin("imactl");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let state = state.clone();
            let files = files.clone();
            let imactl = imactl.clone();
            std::thread::spawn(move || {
                for r in 0..10 {
                    let f = files.join(format!("w{w}-r{r}"));
                    std::fs::write(&f, format!("writer {w} round {r}\n")).unwrap();
                    let out = std::process::Command::new(&imactl)
                        .args(["measure", "-q", "--state"])
                        .arg(&state)
                        .arg(&f)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "writer {w} round {r}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(state.join("runtime_measurements_count")).unwrap(),
        "42\n",
        "boot_aggregate, the boot entry and 40 files"
    );
    let ascii = std::fs::read_to_string(state.join("ascii_runtime_measurements")).unwrap();
    for w in 0..4 {
        for r in 0..10 {
            let n = format!("/w{w}-r{r}\n");
            assert_eq!(ascii.matches(&n).count(), 1, "{n}: {ascii}");
        }
    }
    verify_soft(&state).success();
    assert!(
        !std::fs::read_dir(state.join(".engine"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp")),
        "temporary files left behind"
    );
}

/// A writer that cannot get the lock says who holds it, and gives up after its timeout
/// naming the holder (the lock is held here by a process that never lets go).
#[test]
fn a_second_writer_names_the_holder_of_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let state = d.path().join("state");
    measure(&state, None, &[&t], &[]).success();
    let lock = state.join(".engine/lock");
    let held = std::fs::OpenOptions::new().write(true).open(&lock).unwrap();
    held.lock().unwrap();
    let out = measure(&state, None, &[&t], &["--lock-timeout", "1"]).code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("waiting up to 1 s for the lock on"), "{err}");
    assert!(
        err.contains("another writer has held the lock for 1 s (pid "),
        "{err}"
    );
    assert!(err.contains("cmdline "), "{err}");
    drop(held);
    measure(&state, None, &[&t], &[]).success();
}

/// swtpm serves one client at a time: a measure that finds it busy for longer than the
/// socket's I/O timeout (10 s) waits, saying so, instead of failing with EAGAIN.
#[test]
fn a_busy_swtpm_is_waited_for() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    // Another client holds swtpm's one connection.
    let hog = std::net::TcpStream::connect(("127.0.0.1", sw.port())).unwrap();
    let state = d.path().join("state");
    let imactl = assert_cmd::cargo::cargo_bin("imactl");
    let child = std::process::Command::new(imactl)
        .args(["measure", "-q", "-r", "--state"])
        .arg(&state)
        .args(["--tpm", &tcti])
        .arg(&t)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Past the 10-second I/O timeout, then let go.
    std::thread::sleep(std::time::Duration::from_secs(12));
    drop(hog);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("busy with another client?"), "{err}");
}

/// Issue #10: every state file is read with a bound a valid state sets. Each one in turn is
/// made a 1 GiB sparse file; `imactl measure` runs with 700 MB of address space (reading
/// one whole would fail), refuses the file naming it or regenerates it, and never reads it.
/// The journal is the list itself: mapped, not read, and refused at byte offset 0.
#[test]
fn huge_state_files_are_refused_or_rebuilt_without_reading_them() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let base = d.path().join("base");
    measure(&base, None, &[&t], &[]).success();
    let imactl = assert_cmd::cargo::cargo_bin("imactl");
    // (name, refused with this message; None: the run succeeds and repairs or ignores it)
    let cases: &[(&str, Option<&str>)] = &[
        (".engine/soft-pcrs", Some("more than a valid state holds")),
        (".engine/boot", Some("more than a valid state holds")),
        (".engine/archiving", Some("more than a valid state holds")),
        (".engine/cache", None),
        (".engine/lock", None),
        (".engine/derived", None),
        ("ascii_runtime_measurements_sha1", None),
        ("ascii_runtime_measurements_sha256", None),
        ("binary_runtime_measurements_sha256", None),
        ("runtime_measurements_count", None),
        ("violations", None),
    ];
    for (i, (name, refused)) in cases.iter().enumerate() {
        let state = d.path().join(format!("s{i}"));
        assert!(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&base)
                .arg(&state)
                .status()
                .unwrap()
                .success()
        );
        let p = state.join(name);
        let _ = std::fs::remove_file(&p);
        std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
        let start = std::time::Instant::now();
        // 700 MB: room for one thread stack and malloc arena per core on a large machine,
        // not for a gigabyte read.
        let o = std::process::Command::new("sh")
            .env("MALLOC_ARENA_MAX", "2")
            .arg("-c")
            .arg("ulimit -v 700000; exec \"$0\" \"$@\"")
            .arg(&imactl)
            .args(["measure", "-r", "--state"])
            .arg(&state)
            .arg(&t)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{name}: {err}"
        );
        match refused {
            Some(msg) => {
                assert_eq!(o.status.code(), Some(2), "{name}: {err}");
                assert!(err.contains(p.to_str().unwrap()), "{name}: {err}");
                assert!(err.contains(msg), "{name}: {err}");
            }
            None => {
                assert!(o.status.success(), "{name}: {err}");
                assert!(err.contains("3 files:"), "{name}: {err}");
                if *name == ".engine/cache" {
                    assert!(
                        err.contains(&format!("discarding the unreadable cache {}", p.display())),
                        "{err}"
                    );
                }
                // Regenerated, replaced or removed: never a gigabyte any more.
                let len = std::fs::metadata(&p).map_or(0, |m| m.len());
                assert!(len < 1 << 20, "{name} is still {len} bytes");
                verify_soft(&state).success();
            }
        }
    }
    // The journal: mapped, not read; refused at its first byte, named.
    let state = d.path().join("journal");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&state)
            .status()
            .unwrap()
            .success()
    );
    let j = state.join("binary_runtime_measurements_sha1");
    std::fs::remove_file(&j).unwrap();
    std::fs::File::create(&j).unwrap().set_len(1 << 30).unwrap();
    measure(&state, None, &[&t], &[])
        .code(2)
        .stderr(predicates::str::contains(format!(
            "{}: entry at byte offset 0",
            j.display()
        )));
}

/// Issue #10: `imactl tpm pcrread` reads the state's software bank under the state's lock:
/// while a writer holds it, the reader waits, naming the holder, and gives up after its
/// timeout instead of reading a bank that is being written.
#[test]
fn pcrread_of_the_software_bank_takes_the_state_lock() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let state = d.path().join("state");
    measure(&state, None, &[&t], &[]).success();
    let pcrread = |timeout: &str| {
        Command::cargo_bin("imactl")
            .unwrap()
            .args([
                "tpm",
                "pcrread",
                "--bank",
                "sha256",
                "--lock-timeout",
                timeout,
            ])
            .arg("--state")
            .arg(&state)
            .arg("10")
            .assert()
    };
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(state.join(".engine/lock"))
        .unwrap();
    held.lock().unwrap();
    let out = pcrread("1").code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("waiting up to 1 s for the lock on"), "{err}");
    assert!(err.contains("has held the lock for 1 s"), "{err}");
    assert!(out.get_output().stdout.is_empty());
    drop(held);
    pcrread("1")
        .success()
        .stdout(predicates::str::contains("  sha256:\n    10: 0x"));
}

/// Parallel `measure` runs and `tpm pcrread`s on one state directory: every value read is
/// PCR 10 after some prefix of the final list (never a half-written bank), and the list
/// replays to the bank at the end.
#[test]
fn parallel_pcrreads_see_a_committed_list() {
    use ima_core::hash::{Digest, HashAlgo};
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let imactl = assert_cmd::cargo::cargo_bin("imactl");
    let first = files.join("first");
    std::fs::write(&first, b"first\n").unwrap();
    measure(&state, None, &[&first], &[]).success();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (state, files, imactl) = (state.clone(), files.clone(), imactl.clone());
            std::thread::spawn(move || {
                for r in 0..8 {
                    let f = files.join(format!("w{w}-r{r}"));
                    std::fs::write(&f, format!("writer {w} round {r}\n")).unwrap();
                    let o = std::process::Command::new(&imactl)
                        .args(["measure", "-q", "--state"])
                        .arg(&state)
                        .arg(&f)
                        .output()
                        .unwrap();
                    assert!(o.status.success(), "{o:?}");
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) {
        let o = std::process::Command::new(&imactl)
            .args(["tpm", "pcrread", "--bank", "sha256", "--state"])
            .arg(&state)
            .arg("10")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let out = String::from_utf8(o.stdout).unwrap();
        let v = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("10: 0x"))
            .unwrap();
        seen.push(v.to_lowercase());
    }
    for w in writers {
        w.join().unwrap();
    }
    // PCR 10 after each prefix of the list (its sha256 template digests).
    let list = std::fs::read_to_string(state.join("ascii_runtime_measurements_sha256")).unwrap();
    let mut pcr = Digest::zero(HashAlgo::SHA256).unwrap();
    let mut prefixes = vec![pcr.to_hex()];
    for l in list.lines() {
        let hex = l.split(' ').nth(1).unwrap();
        let td = Digest::new(HashAlgo::SHA256, &hex::decode(hex).unwrap()).unwrap();
        pcr = pcr.extend(&td).unwrap();
        prefixes.push(pcr.to_hex());
    }
    assert_eq!(list.lines().count(), 19, "{list}");
    assert!(!seen.is_empty());
    for v in &seen {
        assert!(
            prefixes.contains(v),
            "{v} is PCR 10 after no prefix of the list"
        );
    }
    verify_soft(&state).success();
}
