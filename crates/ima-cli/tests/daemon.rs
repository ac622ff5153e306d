//! `imactl daemon` without a daemon: a clear error naming the socket, exit 2. (Talking to a
//! running imad is tested end to end in ima-daemon's tests/e2e.rs, which start one.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use assert_cmd::Command;
use predicates::str::contains;

#[test]
fn no_daemon_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        vec!["daemon", "status"],
        vec!["daemon", "reload", "/nonexistent"],
        vec!["daemon", "explain", "/bin/sh"],
    ] {
        Command::cargo_bin("imactl")
            .unwrap()
            .args(&args)
            .arg("--state")
            .arg(d.path())
            .assert()
            .code(2)
            .stderr(contains(format!("{}/imad.sock", d.path().display())))
            .stderr(contains("is imad running with this --state?"));
    }
}
