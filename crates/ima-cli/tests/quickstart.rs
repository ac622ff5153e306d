//! The README's quick start, run as written (issue #14): the root block in a private mount
//! namespace over a fresh tmpfs on /run (the machine's own /run/ima is never touched), the
//! user block as an ordinary user (created with useradd if missing, run through setpriv). `imactl` is this
//! build's binary, copied where that user can run it (the checkout may be under /root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// The user the user block runs as.
const USER: &str = "ima-quickstart";

/// The `sh` block that follows `marker` in the README.
fn block(marker: &str) -> String {
    let readme = std::fs::read_to_string(ima_test::repo_root().join("README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[at..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let len = rest[start..].find("```").expect("the block's end");
    rest[start..start + len].to_owned()
}

/// A directory anyone can enter, holding a copy of `imactl` in `bin/`.
fn sandbox() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(assert_cmd::cargo::cargo_bin("imactl"), bin.join("imactl")).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.join("bin").display()
    )
}

fn check(o: &Output) {
    let t = text(o);
    assert!(o.status.success(), "{t}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("hint:"), "nothing was measured: {t}");
    assert!(!err.contains(" 0 added"), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 violations: all PCRs match"),
        "{t}"
    );
}

#[test]
fn the_root_quick_start_works_as_written() {
    let d = sandbox();
    let script = block("<!-- quickstart:root");
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs ima-quickstart /run && exec sh -euc \"$1\"")
        .arg("sh")
        .arg(&script)
        .env_clear()
        .env("HOME", d.path())
        .env("PATH", path_with(d.path()))
        .output()
        .expect("run unshare (util-linux)");
    check(&o);
}

#[test]
fn the_user_quick_start_works_as_written_for_a_non_root_user() {
    let known = Command::new("id").arg("-u").arg(USER).output().unwrap();
    if !known.status.success() {
        ima_test::run_ok(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ]));
    }
    let d = sandbox();
    let home = d.path().join("home");
    std::fs::create_dir(&home).unwrap();
    ima_test::run_ok(Command::new("chown").arg(format!("{USER}:")).arg(&home));
    let as_user = |script: &str| {
        // setpriv keeps the environment (runuser would reset HOME to the passwd entry's).
        Command::new("setpriv")
            .arg(format!("--reuid={USER}"))
            .arg(format!("--regid={USER}"))
            .args(["--init-groups", "sh", "-euc"])
            .arg(script)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", path_with(d.path()))
            .current_dir(&home)
            .output()
            .expect("run setpriv (util-linux)")
    };
    // Without --func the tcb policy measures none of a user's reads, and imactl says why.
    let o = as_user("imactl measure /usr/bin/true");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("hint: the built-in tcb policy measures none of these files for uid"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(home.join(".local")).unwrap();
    let o = as_user(&block("<!-- quickstart:user"));
    check(&o);
    assert!(
        home.join(".local/state/ima/binary_runtime_measurements")
            .exists()
    );
}
