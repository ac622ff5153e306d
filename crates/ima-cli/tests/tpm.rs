//! `imactl tpm` and `log verify --tpm`: reading PCRs never writes, and the quote is checked
//! by the real `tpm2_checkquote` with exactly the command imactl prints (issue #14).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::process::Command as Std;

use assert_cmd::Command;
use ima_test::Swtpm;
use predicates::prelude::*;

fn imactl() -> Command {
    Command::cargo_bin("imactl").unwrap()
}

#[test]
fn reading_a_missing_software_bank_is_an_error_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("empty");
    std::fs::write(&list, b"").unwrap();
    let missing = tmp.path().join("no-such-bank");
    let soft = format!("soft:{}", missing.display());
    imactl()
        .args(["log", "verify"])
        .arg(&list)
        .args(["--tpm", &soft])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such file"));
    imactl()
        .args(["tpm", "pcrread", "--tpm", &soft])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such file"));
    imactl()
        .args(["tpm", "quote", "--nonce", "00", "--tpm", &soft, "--out"])
        .arg(tmp.path().join("q"))
        .assert()
        .code(2);
    imactl()
        .args(["attest", "quote", "--nonce", "00", "--tpm", &soft, "--out"])
        .arg(tmp.path().join("q"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("software PCR bank cannot quote"));
    // `soft:~/x` is $HOME/x (the shell does not expand it), and is not created either.
    imactl()
        .env("HOME", tmp.path())
        .args(["log", "verify"])
        .arg(&list)
        .args(["--tpm", "soft:~/bank"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}: no such file",
            tmp.path().join("bank").display()
        )));
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["empty"], "a read-only command wrote {left:?}");
}

#[test]
fn os_errors_are_printed_once() {
    // A port nobody listens on (swtpm's harness hands out free ones; this one we just freed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = imactl()
        .args(["tpm", "pcrread", "--tpm"])
        .arg(format!("swtpm:port={port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn pcr_out_of_range_names_the_valid_range() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list");
    std::fs::write(&list, b"").unwrap();
    let sw = Swtpm::start();
    imactl()
        .args(["tpm", "pcrread", "--tpm", &sw.tcti(), "99"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "PCR 99 does not exist: a TPM has PCRs 0 to 23",
        ));
    imactl()
        .args(["tpm", "quote", "--tpm", &sw.tcti(), "--nonce", "00"])
        .args(["--pcrs", "sha256:10,99", "--out"])
        .arg(tmp.path().join("q"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "PCR selection \"sha256:10,99\": PCR 99 does not exist: a TPM has PCRs 0 to 23",
        ));
    let pcrs = tmp.path().join("pcrs");
    std::fs::write(
        &pcrs,
        format!("0 {}\n99 {}\n", "00".repeat(20), "00".repeat(20)),
    )
    .unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(&list)
        .arg("--pcrs")
        .arg(format!("sha1:{}", pcrs.display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:2: PCR index \"99\" is out of range: a TPM has PCRs 0 to 23",
            pcrs.display()
        )));
}

#[test]
fn the_printed_checkquote_command_verifies_the_quote() {
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("quote dir");
    let out = imactl()
        .args(["tpm", "quote", "--tpm", &tcti, "--nonce", "c0ffee"])
        .args(["--pcrs", "sha256:0,10+sha1:10", "--out"])
        .arg(&q)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    let cmd = err
        .lines()
        .find_map(|l| l.strip_prefix("imactl: check with: "))
        .unwrap_or_else(|| panic!("no tpm2_checkquote command in {err}"));
    assert!(cmd.contains("-l sha256:0,10+sha1:10"), "{cmd}");
    ima_test::run_ok(Std::new("sh").arg("-c").arg(cmd));
    // The same command with another nonce fails: the success above means something.
    let wrong = cmd.replace("-q c0ffee", "-q c0ffef");
    let st = Std::new("sh").arg("-c").arg(&wrong).output().unwrap();
    assert!(!st.status.success(), "{wrong}");
}
