//! `imactl log ...` against the real-kernel captures in testdata/kernel-6.1, and bad input.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn imactl() -> Command {
    Command::cargo_bin("imactl").unwrap()
}

fn capture(name: &str, file: &str) -> PathBuf {
    ima_test::kernel_capture(name).join(file)
}

/// `--pcrs` for every bank of the capture.
fn pcrs_args(name: &str) -> Vec<String> {
    let d = ima_test::kernel_capture(name);
    ima_test::kernel_capture_banks(name)
        .into_iter()
        .flat_map(|b| {
            let p = d.join(format!("pcrs_{b}.txt"));
            ["--pcrs".to_owned(), format!("{b}:{}", p.display())]
        })
        .collect()
}

/// The `ima_hash=` of a capture (named in the capture's name unless sha256).
fn capture_ima_hash(name: &str) -> &'static str {
    ["sha1", "sha384"]
        .into_iter()
        .find(|h| name.contains(h))
        .unwrap_or("sha256")
}

const BIN: &str = "ima/binary_runtime_measurements";
const ASCII: &str = "ima/ascii_runtime_measurements";

#[test]
fn show_and_convert_reproduce_the_kernel_files() {
    for c in ima_test::kernel_captures() {
        let ascii = std::fs::read(capture(&c, ASCII)).unwrap();
        let bin = std::fs::read(capture(&c, BIN)).unwrap();
        let out = imactl()
            .args(["log", "show"])
            .arg(capture(&c, BIN))
            .output()
            .unwrap();
        assert!(out.status.success(), "{c}");
        assert!(
            out.stdout == ascii,
            "{c}: show --format ascii differs from the kernel's"
        );
        let tmp = tempfile::tempdir().unwrap();
        let o = tmp.path().join("list");
        imactl()
            .args(["log", "convert", "--to", "binary"])
            .arg(capture(&c, ASCII))
            .arg(&o)
            .assert()
            .success();
        assert!(
            std::fs::read(&o).unwrap() == bin,
            "{c}: ascii → binary differs"
        );
        let out = imactl()
            .args(["log", "convert", "--to", "ascii"])
            .arg(capture(&c, BIN))
            .output()
            .unwrap();
        assert!(out.stdout == ascii, "{c}: binary → ascii differs");
    }
}

#[test]
fn verify_matches_both_banks() {
    for c in ima_test::kernel_captures() {
        for file in [BIN, ASCII] {
            imactl()
                .args(["log", "verify"])
                .arg(capture(&c, file))
                .args(pcrs_args(&c))
                .assert()
                .code(0)
                .stdout(predicate::str::contains("ok: PCR 10 bank sha1"))
                .stdout(predicate::str::contains("ok: PCR 10 bank sha256"))
                .stdout(predicate::str::contains("all PCRs match"));
        }
    }
    // scenario d also measures to PCR 11.
    imactl()
        .args(["log", "verify"])
        .arg(capture("d-custom-policy-ngv2-buf", BIN))
        .args(pcrs_args("d-custom-policy-ngv2-buf"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ok: PCR 11 bank sha256"));
}

#[test]
fn boot_aggregate_equals_the_first_entry() {
    for c in ima_test::kernel_captures() {
        let ascii = std::fs::read_to_string(capture(&c, ASCII)).unwrap();
        let first: Vec<&str> = ascii.lines().next().unwrap().split(' ').collect();
        let want = if first[2] == "ima" {
            format!("sha1:{}", first[3])
        } else {
            first[3].trim_start_matches("ima:").to_owned()
        };
        let ima_hash = capture_ima_hash(&c);
        imactl()
            .args(["log", "boot-aggregate", "--ima-hash", ima_hash])
            .args(pcrs_args(&c))
            .assert()
            .code(0)
            .stdout(format!("{want}\n"));
    }
}

/// One bank given: boot-aggregate computes in it, whatever its algorithm (a sha384 bank
/// used to need --ima-hash), and says on stderr which rule chose the bank.
#[test]
fn boot_aggregate_uses_the_one_bank_given_and_says_why() {
    let c = "p-sha384-bank-ima-ng";
    let ascii = std::fs::read_to_string(capture(c, ASCII)).unwrap();
    let logged = ascii.lines().next().unwrap().split(' ').nth(3).unwrap();
    assert!(logged.starts_with("sha384:"), "{logged}");
    let pcrs = |b: &str| format!("{b}:{}", capture(c, &format!("pcrs_{b}.txt")).display());
    imactl()
        .args(["log", "boot-aggregate", "--pcrs", &pcrs("sha384")])
        .assert()
        .code(0)
        .stdout(format!("{logged}\n"))
        .stderr(predicate::str::contains(
            "boot_aggregate in bank sha384: the only bank given",
        ));
    // Several banks: the kernel's rule (ima_hash's bank, else sha256, else sha1).
    imactl()
        .args(["log", "boot-aggregate"])
        .args(pcrs_args(c))
        .args(["--ima-hash", "sha384"])
        .assert()
        .code(0)
        .stdout(format!("{logged}\n"))
        .stderr(predicate::str::contains("the --ima-hash bank"));
    imactl()
        .args(["log", "boot-aggregate"])
        .args(["--pcrs", &pcrs("sha1"), "--pcrs", &pcrs("sha384")])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("sha1:"))
        .stderr(predicate::str::contains(
            "no sha256 bank given, and the kernel then takes sha1",
        ));
    imactl()
        .args(["log", "boot-aggregate"])
        .args(pcrs_args(c))
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("sha256:"))
        .stderr(predicate::str::contains("default ima_hash (sha256)"));
}

/// PCRs 0-9 given: boot_aggregate is checked against them, so a list replayed under other
/// boot PCRs (a changed PCR 0) fails even though PCR 10 matches (issue #12).
#[test]
fn verify_checks_boot_aggregate_against_pcrs_0_to_9() {
    for c in ima_test::kernel_captures() {
        let d = ima_test::kernel_capture(&c);
        imactl()
            .args(["log", "verify"])
            .arg(capture(&c, BIN))
            .args(pcrs_args(&c))
            .assert()
            .code(0)
            .stdout(predicate::str::contains("ok: boot_aggregate ("));
        let tmp = tempfile::tempdir().unwrap();
        let mut args = Vec::new();
        for alg in ima_test::kernel_capture_banks(&c) {
            let text = std::fs::read_to_string(d.join(format!("pcrs_{alg}.txt"))).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let zero = lines.iter().position(|l| l.starts_with("0 ")).unwrap();
            let hex = lines[zero][2..].to_owned();
            let flipped: String = hex
                .chars()
                .enumerate()
                .map(|(i, ch)| {
                    if i == 0 {
                        if ch == '0' { '1' } else { '0' }
                    } else {
                        ch
                    }
                })
                .collect();
            lines[zero] = format!("0 {flipped}");
            let p = tmp.path().join(format!("pcrs_{alg}.txt"));
            std::fs::write(&p, lines.join("\n") + "\n").unwrap();
            args.push("--pcrs".to_owned());
            args.push(format!("{alg}:{}", p.display()));
        }
        imactl()
            .args(["log", "verify"])
            .arg(capture(&c, BIN))
            .args(&args)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("MISMATCH: entry 1 ("))
            .stdout(predicate::str::contains("boot_aggregate: logged"))
            .stdout(predicate::str::contains("FAILED"));
    }
    // Only PCR 10 given: boot_aggregate cannot be checked and nothing is said about it.
    let c = "a-tcb-ima-ng-sha256";
    let d = ima_test::kernel_capture(c);
    let text = std::fs::read_to_string(d.join("pcrs_sha256.txt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("pcr10");
    let ten: String = text.lines().filter(|l| l.starts_with("10 ")).collect();
    std::fs::write(&p, ten + "\n").unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(capture(c, BIN))
        .arg("--pcrs")
        .arg(format!("sha256:{}", p.display()))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("boot_aggregate").not());
}

fn flipped(dir: &Path, src: &Path, at: usize) -> PathBuf {
    let mut b = std::fs::read(src).unwrap();
    b[at] ^= 0x80;
    let p = dir.join("binary_runtime_measurements");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn a_flipped_digest_fails_naming_pcr_bank_and_entry() {
    let c = "a-tcb-ima-ng-sha256";
    let tmp = tempfile::tempdir().unwrap();
    // Entry 2 starts at 101; its d-ng digest starts 50 bytes in.
    let p = flipped(tmp.path(), &capture(c, BIN), 101 + 50 + 3);
    imactl()
        .args(["log", "verify"])
        .arg(&p)
        .args(pcrs_args(c))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "MISMATCH: entry 2 (ima-ng /data/bin/hello): logged sha1 template digest is wrong",
        ))
        .stdout(predicate::str::contains(
            "MISMATCH: PCR 10 bank sha256: replayed",
        ))
        .stdout(predicate::str::contains(
            "can no longer match from entry 2 (ima-ng /data/bin/hello)",
        ))
        .stdout(predicate::str::contains("FAILED"));
    // The template digest itself (entry 3).
    let bin = std::fs::read(capture(c, BIN)).unwrap();
    let second_len = 4 + 20 + 4 + 6 + 4 + u32::from_le_bytes(bin[135..139].try_into().unwrap());
    let p = flipped(tmp.path(), &capture(c, BIN), 101 + second_len as usize + 4);
    imactl()
        .args(["log", "verify"])
        .arg(&p)
        .args(pcrs_args(c))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "entry 3 (ima-ng /data/bin/busybox): logged sha1",
        ));
}

/// A template name is not covered by any PCR: an entry whose name does not decode (an
/// unknown template, or one whose field count the data does not have) fails verify with
/// exit 1, naming the entry, although every PCR still replays.
#[test]
fn an_undecodable_template_name_fails_naming_the_entry() {
    let c = "a-tcb-ima-ng-sha256";
    let tmp = tempfile::tempdir().unwrap();
    let bin = std::fs::read(capture(c, BIN)).unwrap();
    let tag = b"\x06\0\0\0ima-ng";
    let at: Vec<usize> = bin
        .windows(tag.len())
        .enumerate()
        .filter(|(_, w)| *w == tag)
        .map(|(i, _)| i)
        .collect();
    for (name, want) in [
        (&b"\x06\0\0\0ima-xx"[..], "unknown template \"ima-xx\""),
        (
            &b"\x07\0\0\0ima-sig"[..],
            "template \"ima-sig\" has 3 fields, the entry has 2",
        ),
    ] {
        let mut changed = bin[..at[2]].to_vec();
        changed.extend_from_slice(name);
        changed.extend_from_slice(&bin[at[2] + tag.len()..]);
        let p = tmp.path().join("list");
        std::fs::write(&p, &changed).unwrap();
        imactl()
            .args(["log", "verify"])
            .arg(&p)
            .args(pcrs_args(c))
            .assert()
            .code(1)
            .stdout(predicate::str::contains("ok: PCR 10 bank sha256"))
            .stdout(predicate::str::contains("MISMATCH: entry 3 ("))
            .stdout(predicate::str::contains(want))
            .stdout(predicate::str::contains("FAILED"));
    }
}

#[test]
fn a_pcr_value_not_covered_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let c = "a-tcb-ima-ng-sha256";
    let p = tmp.path().join("pcrs");
    let text = std::fs::read_to_string(capture(c, "pcrs_sha256.txt")).unwrap();
    std::fs::write(&p, text.replace("\n10 E", "\n10 F")).unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(capture(c, BIN))
        .arg("--pcrs")
        .arg(format!("sha256:{}", p.display()))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISMATCH: PCR 10 bank sha256"))
        .stdout(predicate::str::contains(
            "no prefix of the list replays to it",
        ));
}

fn expect_error(args: &[&str], path: &Path, msg: &str) {
    imactl()
        .args(args)
        .arg(path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("imactl: error:"))
        .stderr(predicate::str::contains(msg));
}

#[test]
fn bad_input_exits_2_with_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bin = std::fs::read(capture("a-tcb-ima-ng-sha256", BIN)).unwrap();
    let p = d.join("truncated");
    std::fs::write(&p, &bin[..bin.len() - 5]).unwrap();
    expect_error(
        &["log", "show"],
        &p,
        "template data length at byte offset 3063: truncated",
    );

    let mut absurd = bin.clone();
    absurd[101 + 34..101 + 38].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    std::fs::write(&p, &absurd).unwrap();
    expect_error(
        &["log", "show"],
        &p,
        "template data length at byte offset 135",
    );

    let mut name = bin.clone();
    name[24..28].copy_from_slice(&100_000u32.to_le_bytes());
    std::fs::write(&p, &name).unwrap();
    expect_error(
        &["log", "show"],
        &p,
        "byte offset 24: length 100000 exceeds the maximum 255",
    );

    let ascii = std::fs::read_to_string(capture("a-tcb-ima-ng-sha256", ASCII)).unwrap();
    std::fs::write(
        &p,
        ascii.replacen("ima-ng sha256:d16c", "ima-ng sha256:g16c", 1),
    )
    .unwrap();
    expect_error(
        &["log", "convert", "--to", "binary"],
        &p,
        "line 2, column 52",
    );

    let unknown = ascii.replacen("ima-ng", "ima-xyz", 1);
    std::fs::write(&p, &unknown).unwrap();
    expect_error(&["log", "show"], &p, "unknown template \"ima-xyz\"");
    // ... which a --template NAME=FMT resolves.
    imactl()
        .args([
            "log",
            "convert",
            "--to",
            "ascii",
            "--template",
            "ima-xyz=d-ng|n-ng",
        ])
        .arg(&p)
        .assert()
        .code(0)
        .stdout(unknown);

    let pcrs = d.join("pcrs");
    std::fs::write(&pcrs, "0 00\n10 XYZ\n").unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(capture("a-tcb-ima-ng-sha256", BIN))
        .arg("--pcrs")
        .arg(format!("sha1:{}", pcrs.display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:1: PCR 0: 1 bytes, a sha1 PCR has 20",
            pcrs.display()
        )));
}

#[test]
fn json_decodes_every_field() {
    let out = imactl()
        .args(["log", "show", "--format", "json"])
        .arg(capture("g-evm-portable-sig", BIN))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    let e = &lines[1];
    assert_eq!(e["template"], "evm-sig");
    assert_eq!(e["pcr"], 10);
    let f = e["fields"].as_array().unwrap();
    assert_eq!(f.len(), 9);
    assert_eq!(f[0]["algo"], "sha256");
    assert_eq!(f[1]["value"], "/data/signed/good.txt");
    assert_eq!(f[3]["value"], "security.ima");
    assert_eq!(f[4]["value"][0], 265);
    assert_eq!(f[8]["octal"], "100644");
    let sig = &lines[1]["fields"][5];
    assert!(sig["hex"].as_str().unwrap().starts_with("030204"));
}

/// A bank file of the software PCR bank with PCR 10 set to `pcr10` in both banks (the
/// engine's layout: magic, then 24 sha1 and 24 sha256 values).
fn soft_bank(path: &Path, pcr10: u8) {
    let mut b = b"ima-soft-pcrs v1\n".to_vec();
    for len in [20, 32] {
        for i in 0..24 {
            b.extend(std::iter::repeat_n(if i == 10 { pcr10 } else { 0 }, len));
        }
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn an_empty_list_does_not_verify_against_a_non_zero_pcr_10() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let bank = tmp.path().join("bank");
    soft_bank(&bank, 0x5a);
    let before = std::fs::read(&bank).unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(&empty)
        .arg("--tpm")
        .arg(format!("soft:{}", bank.display()))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "MISMATCH: PCR 10 bank sha1: replayed 0000000000000000000000000000000000000000 \
             (0 entries), expected 5a5a",
        ))
        .stdout(predicate::str::contains(
            "the list ends before the PCR value is reached",
        ))
        .stdout(predicate::str::contains("0 entries, 0 violations: FAILED"));
    assert_eq!(
        std::fs::read(&bank).unwrap(),
        before,
        "verify wrote the bank"
    );
    // The same with --pcrs (the kernel capture's PCR 10 against an empty list).
    let c = "a-tcb-ima-ng-sha256";
    imactl()
        .args(["log", "verify"])
        .arg(&empty)
        .args(pcrs_args(c))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISMATCH: PCR 10 bank sha256"));
    // A zero PCR 10 and an empty list agree.
    soft_bank(&bank, 0);
    imactl()
        .args(["log", "verify"])
        .arg(&empty)
        .arg("--tpm")
        .arg(format!("soft:{}", bank.display()))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ok: PCR 10 bank sha256"))
        .stdout(predicate::str::contains(
            "0 entries, 0 violations: all PCRs match",
        ));
}

#[test]
fn a_list_cut_short_says_so_and_counts_are_singular_for_one() {
    let c = "a-tcb-ima-ng-sha256";
    let tmp = tempfile::tempdir().unwrap();
    // The first entry alone (101 bytes: boot_aggregate) against the full list's PCRs.
    let bin = std::fs::read(capture(c, BIN)).unwrap();
    let p = tmp.path().join("binary_runtime_measurements");
    std::fs::write(&p, &bin[..101]).unwrap();
    imactl()
        .args(["log", "verify"])
        .arg(&p)
        .args(pcrs_args(c))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("(1 entry), expected"))
        .stdout(predicate::str::contains(
            "no prefix of the list replays to it: the list ends before the PCR value is reached",
        ))
        .stdout(predicate::str::contains("can no longer match").not())
        .stdout(predicate::str::contains("1 entry, 0 violations: FAILED"));
}
