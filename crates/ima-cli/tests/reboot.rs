//! Reboot safety of a persistent list: a real swtpm (restarted with its state, or replaced by
//! a fresh one) and an injected boot id. A TPM whose PCRs were reset within the same boot is
//! refused until `--start-over`; a later boot archives the list and starts a new one; the
//! software bank keeps its list across reboots. Archived lists stay readable evidence
//! (evmctl replays them against the PCR values they had).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use ima_test::{Swtpm, run_ok};
use predicates::prelude::PredicateBooleanExt;

/// `imactl measure -q -r` of `tree` into `state` in boot `boot` (a file holding the id).
fn measure(tpm: Option<&str>, state: &Path, boot: &Path, tree: &Path, extra: &[&str]) -> Assert {
    let mut c = Command::cargo_bin("imactl").unwrap();
    c.args(["measure", "-q", "-r", "--state"])
        .arg(state)
        .arg("--boot-id-file")
        .arg(boot)
        .args(extra);
    if let Some(t) = tpm {
        c.args(["--tpm", t]);
    }
    c.arg(tree).assert()
}

fn count(state: &Path) -> String {
    std::fs::read_to_string(state.join("runtime_measurements_count")).unwrap()
}

fn archives(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("archive"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `evmctl ima_measurement` of `list` against the sha1 and sha256 PCR values `pcrs` (as
/// `tpm2_pcrread` printed them, or read now from `tcti`).
fn evmctl_accepts(list: &Path, pcrs: &Path) {
    let out = Std::new("evmctl")
        .args(["ima_measurement", "-v", "--pcrs"])
        .arg(format!("sha1,{}", pcrs.join("sha1").display()))
        .arg("--pcrs")
        .arg(format!("sha256,{}", pcrs.join("sha256").display()))
        .arg(list)
        .output()
        .expect("run evmctl (install ima-evm-utils)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "evmctl on {}: {err}", list.display());
}

/// PCR 0..=23 of sha1 and sha256 in evmctl's `--pcrs` format, saved under `dir`.
fn save_pcrs(tcti: &str, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for bank in ["sha1", "sha256"] {
        let all: Vec<String> = (0..24).map(|i| i.to_string()).collect();
        let bin = dir.join(format!("{bank}.bin"));
        run_ok(
            Std::new("tpm2_pcrread")
                .arg(format!("{bank}:{}", all.join(",")))
                .arg("-o")
                .arg(&bin)
                .args(["-T", tcti]),
        );
        let bytes = std::fs::read(&bin).unwrap();
        let mut s = String::new();
        for (i, v) in bytes.chunks(bytes.len() / 24).enumerate() {
            s.push_str(&format!("PCR-{i:02}: {}\n", hex::encode(v)));
        }
        std::fs::write(dir.join(bank), s).unwrap();
    }
    dir.to_path_buf()
}

fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(&t).unwrap();
    for i in 0..5 {
        std::fs::write(t.join(format!("f{i}")), format!("file {i}\n").repeat(i + 1)).unwrap();
    }
    t
}

#[test]
fn a_reset_tpm_is_refused_in_the_same_boot_and_archived_after_a_reboot() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let state = d.path().join("state");
    let boot_a = d.path().join("boot-a");
    let boot_b = d.path().join("boot-b");
    std::fs::write(&boot_a, "1c0ffee0-aaaa-4aaa-8aaa-000000000001\n").unwrap();
    std::fs::write(&boot_b, "1c0ffee0-bbbb-4bbb-8bbb-000000000002\n").unwrap();
    let list = state.join("binary_runtime_measurements");

    let sw = Swtpm::start();
    let tcti = sw.tcti();
    measure(Some(&tcti), &state, &boot_a, &t, &[]).success();
    assert_eq!(count(&state), "7\n");
    let record = std::fs::read_to_string(state.join(".engine/boot")).unwrap();
    assert!(
        record.starts_with("boot_id 1c0ffee0-aaaa-4aaa-8aaa-000000000001\n"),
        "{record}"
    );
    assert!(record.contains("tpm_id ak-sha256:"), "{record}");
    let pcrs_first = save_pcrs(&tcti, &d.path().join("pcrs-first"));
    evmctl_accepts(&list, &pcrs_first);

    // The same TPM, restarted (PCRs reset) within the same boot: refused, list untouched.
    let sw = sw.restart();
    assert_eq!(sw.tcti(), tcti);
    let out = measure(Some(&tcti), &state, &boot_a, &t, &[]).code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("does not replay to the TPM"), "{err}");
    assert!(
        err.contains("its PCRs were reset, or it is another TPM"),
        "{err}"
    );
    assert!(err.contains("--start-over"), "{err}");
    // Same TPM: the identity it reports is the one recorded.
    let id = record
        .lines()
        .find_map(|l| l.strip_prefix("tpm_id "))
        .unwrap();
    assert!(
        err.contains(&format!(
            "this is boot 1c0ffee0-aaaa-4aaa-8aaa-000000000001 with TPM id {id}"
        )),
        "{err}"
    );
    assert_eq!(count(&state), "7\n");
    assert!(archives(&state).is_empty());

    // --start-over: archived (readable, still replays to the values it had), new list.
    let out = measure(Some(&tcti), &state, &boot_a, &t, &["--start-over"]).success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("the old one is kept, readable, in"), "{err}");
    let arch = archives(&state);
    assert_eq!(arch.len(), 1, "{arch:?}");
    assert!(
        arch[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-1c0ffee0-aaaa-4aaa-8aaa-000000000001")
    );
    evmctl_accepts(&arch[0].join("binary_runtime_measurements"), &pcrs_first);
    assert!(
        std::fs::read_to_string(arch[0].join("reason"))
            .unwrap()
            .contains("--start-over")
    );
    assert_eq!(
        std::fs::read_to_string(arch[0].join("boot")).unwrap(),
        record
    );
    assert_eq!(
        std::fs::read_to_string(arch[0].join("runtime_measurements_count")).unwrap(),
        "7\n"
    );
    // The new list holds every file again (the cache went with the old list) and replays.
    assert_eq!(count(&state), "7\n");
    evmctl_accepts(&list, &save_pcrs(&tcti, &d.path().join("pcrs-second")));

    // A later boot with a fresh TPM: archived by itself, new list with a fresh
    // boot_aggregate, in the new TPM.
    drop(sw);
    let sw2 = Swtpm::start();
    let tcti2 = sw2.tcti();
    let out = measure(Some(&tcti2), &state, &boot_b, &t, &[]).success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("later boot (1c0ffee0-bbbb"), "{err}");
    assert_eq!(archives(&state).len(), 2);
    assert_eq!(count(&state), "7\n");
    let record2 = std::fs::read_to_string(state.join(".engine/boot")).unwrap();
    assert!(record2.starts_with("boot_id 1c0ffee0-bbbb"), "{record2}");
    assert_ne!(record2, record, "another TPM, another identity");
    evmctl_accepts(&list, &save_pcrs(&tcti2, &d.path().join("pcrs-third")));
    // ... and then goes on normally in that boot.
    measure(Some(&tcti2), &state, &boot_b, &t, &[])
        .success()
        .stderr(predicates::str::contains("5 unchanged since measured"));
    assert_eq!(archives(&state).len(), 2);

    // A TPM that survived the reboot (its PCRs still hold the list) keeps it.
    measure(Some(&tcti2), &state, &boot_a, &t, &[])
        .success()
        .stderr(predicates::str::contains("5 unchanged since measured"));
    assert_eq!(archives(&state).len(), 2);

    // A new list on a TPM whose PCR 10 someone else extends cannot replay: refused.
    run_ok(
        Std::new("tpm2_pcrextend")
            .arg(format!("10:sha256={}", "ab".repeat(32)))
            .args(["-T", &tcti2]),
    );
    measure(Some(&tcti2), &d.path().join("fresh"), &boot_b, &t, &[])
        .code(2)
        .stderr(predicates::str::contains("PCR 10 of swtpm at"))
        .stderr(predicates::str::contains("is not at its reset value"));
    // Nor can an existing list be restarted on it: nothing is archived.
    measure(Some(&tcti2), &state, &boot_b, &t, &["--start-over"])
        .code(2)
        .stderr(predicates::str::contains("is not at its reset value"));
    assert_eq!(archives(&state).len(), 2);
}

#[test]
fn the_software_bank_keeps_its_list_across_reboots() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path());
    let state = d.path().join("state");
    let boot_a = d.path().join("boot-a");
    let boot_b = d.path().join("boot-b");
    std::fs::write(&boot_a, "aaaaaaaa-0000-4000-8000-000000000001\n").unwrap();
    std::fs::write(&boot_b, "bbbbbbbb-0000-4000-8000-000000000002\n").unwrap();
    measure(None, &state, &boot_a, &t, &[]).success();
    measure(None, &state, &boot_b, &t, &[])
        .success()
        .stderr(predicates::str::contains("5 unchanged since measured"));
    assert!(archives(&state).is_empty());
    let record = std::fs::read_to_string(state.join(".engine/boot")).unwrap();
    assert!(
        record.starts_with(&format!(
            "boot_id bbbbbbbb-0000-4000-8000-000000000002\ntpm software PCR bank {} (NOT \
             hardware-rooted: no TPM was given)\ntpm_id software:",
            state.join(".engine/soft-pcrs").display()
        )),
        "{record}"
    );
    // The bank's file lost: refused, then --start-over archives list and bank together.
    std::fs::remove_file(state.join(".engine/soft-pcrs")).unwrap();
    measure(None, &state, &boot_b, &t, &[])
        .code(2)
        .stderr(predicates::str::contains("does not replay"));
    measure(None, &state, &boot_b, &t, &["--start-over"])
        .success()
        .stderr(predicates::str::contains("torn").not());
    let arch = archives(&state);
    assert_eq!(arch.len(), 1);
    assert!(arch[0].join("binary_runtime_measurements_sha1").is_file());
    assert_eq!(count(&state), "7\n");
    let soft = format!("soft:{}", state.join(".engine/soft-pcrs").display());
    Command::cargo_bin("imactl")
        .unwrap()
        .args(["log", "verify", "--tpm", &soft])
        .arg(state.join("binary_runtime_measurements"))
        .assert()
        .success();
    // The boot id source must be readable and hold one id; the record must parse.
    measure(None, &state, &d.path().join("missing"), &t, &[])
        .code(2)
        .stderr(predicates::str::contains("read boot id"));
    let empty = d.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    measure(None, &state, &empty, &t, &[])
        .code(2)
        .stderr(predicates::str::contains(format!(
            "{}:1: not a boot id",
            empty.display()
        )));
    let rec = state.join(".engine/boot");
    let good = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, format!("{good}bogus 1\n")).unwrap();
    measure(None, &state, &boot_b, &t, &[])
        .code(2)
        .stderr(predicates::str::contains(format!(
            "{}:4: unknown key \"bogus\"",
            rec.display()
        )));
}
