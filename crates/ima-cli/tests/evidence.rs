//! The list is evidence and the TPM is its judge: deleting or editing the engine's marker
//! files after a TPM reset or a reboot never makes removed entries' absence verify; a forged
//! archiving plan moves nothing; bad journals are named by file and offset. With a real
//! swtpm (restarted to reset it) and injected boot ids.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use ima_core::log::ListFormat;
use ima_core::log::binary::{decode, encode_entry};
use ima_test::Swtpm;
use predicates::prelude::PredicateBooleanExt;

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

fn log_verify(tcti: &str, list: &Path) -> Assert {
    Command::cargo_bin("imactl")
        .unwrap()
        .args(["log", "verify", "--tpm", tcti])
        .arg(list)
        .assert()
}

fn tree(dir: &Path, n: usize) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(&t).unwrap();
    for i in 0..n {
        std::fs::write(t.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    t
}

fn boot_file(dir: &Path, name: &str, id: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{id}\n")).unwrap();
    p
}

/// Drops the journal's last entry (as an attacker hiding it would).
fn drop_last_entry(state: &Path) -> usize {
    let j = state.join("binary_runtime_measurements_sha1");
    let entries = decode(&std::fs::read(&j).unwrap(), ListFormat::default()).unwrap();
    let mut out = Vec::new();
    for e in &entries[..entries.len() - 1] {
        encode_entry(e, ListFormat::default(), &mut out);
    }
    std::fs::write(&j, out).unwrap();
    entries.len() - 1
}

fn remove_markers(state: &Path) {
    for m in ["derived", "boot", "cache"] {
        let _ = std::fs::remove_file(state.join(".engine").join(m));
    }
}

fn archives(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("archive"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A TPM reset within the same boot, then the markers deleted and the last entry cut: the
/// shortened list is refused, never re-extended into the reset TPM (so it cannot verify).
#[test]
fn markers_deleted_after_a_tpm_reset_do_not_re_anchor_a_shortened_list() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 4);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "aaaaaaaa-0000-4000-8000-000000000001");
    let list = state.join("binary_runtime_measurements");
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    measure(Some(&tcti), &state, &boot, &t, &[]).success();
    log_verify(&tcti, &list).success();

    let sw = sw.restart(); // PCRs reset; the TPM's reset count moves
    let kept = drop_last_entry(&state);
    remove_markers(&state);
    let out = measure(Some(&tcti), &state, &boot, &t, &[]).code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("does not replay to the TPM"), "{err}");
    assert!(
        err.contains("the TPM was reset or restarted since the list started"),
        "{err}"
    );
    // Nothing was extended on the list's behalf: it does not verify, and still has only
    // what the attacker left.
    log_verify(&tcti, &list).code(1);
    let now = decode(&std::fs::read(&list).unwrap(), ListFormat::default()).unwrap();
    assert_eq!(now.len(), kept);
    // Without the cut (markers only): refused just the same.
    measure(Some(&tcti), &state, &boot, &t, &[]).code(2);
    log_verify(&tcti, &list).code(1);
    drop(sw);
}

/// A reboot (new boot id) with a reset TPM, then the boot record and derived marker
/// deleted: the old list is archived, never extended into the new boot.
#[test]
fn markers_deleted_after_a_reboot_archive_the_list() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 3);
    let state = d.path().join("state");
    let boot_a = boot_file(d.path(), "boot-a", "aaaaaaaa-0000-4000-8000-000000000001");
    let boot_b = boot_file(d.path(), "boot-b", "bbbbbbbb-0000-4000-8000-000000000002");
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    measure(Some(&tcti), &state, &boot_a, &t, &[]).success();
    let old = std::fs::read(state.join("binary_runtime_measurements_sha1")).unwrap();
    let sw = sw.restart();
    remove_markers(&state);
    measure(Some(&tcti), &state, &boot_b, &t, &[])
        .success()
        .stderr(predicates::str::contains("later boot (bbbbbbbb"));
    let arch = archives(&state);
    assert_eq!(arch.len(), 1, "{arch:?}");
    assert_eq!(
        std::fs::read(arch[0].join("binary_runtime_measurements_sha1")).unwrap(),
        old,
        "the old list, archived as it was"
    );
    // The new list starts afresh (boot_aggregate, boot entry, 3 files) in boot b, and
    // replays to the TPM.
    assert_eq!(
        std::fs::read_to_string(state.join("runtime_measurements_count")).unwrap(),
        "5\n"
    );
    log_verify(&tcti, &state.join("binary_runtime_measurements")).success();
    let ascii = std::fs::read_to_string(state.join("ascii_runtime_measurements")).unwrap();
    let second = ascii.lines().nth(1).unwrap();
    assert!(second.contains(" ima-buf "), "{second}");
    assert!(second.contains(" ima-engine-boot "), "{second}");
    drop(sw);
}

/// The boot entry is in the list, on PCR 10, and says what the TPM said: boot id, AK
/// identity, reset and restart counts (checked against tpm2_readclock).
#[test]
fn the_boot_entry_records_boot_tpm_and_its_counts() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 1);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "cccccccc-0000-4000-8000-000000000003");
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    measure(Some(&tcti), &state, &boot, &t, &[]).success();
    let list = decode(
        &std::fs::read(state.join("binary_runtime_measurements_sha1")).unwrap(),
        ListFormat::default(),
    )
    .unwrap();
    let e = &list[1];
    assert_eq!(e.pcr, 10);
    assert_eq!(e.template_name, "ima-buf");
    let buf = String::from_utf8(e.data.fields()[2].clone()).unwrap();
    let out = std::process::Command::new("tpm2_readclock")
        .args(["-T", &tcti])
        .output()
        .expect("run tpm2_readclock (install tpm2-tools)");
    let yaml = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> String {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
            .unwrap()
            .trim()
            .to_owned()
    };
    let record = std::fs::read_to_string(state.join(".engine/boot")).unwrap();
    let tpm_id = record
        .lines()
        .find_map(|l| l.strip_prefix("tpm_id "))
        .unwrap();
    assert!(tpm_id.starts_with("ak-sha256:"), "{record}");
    let want = format!(
        "ima-engine-boot v1\nboot_id cccccccc-0000-4000-8000-000000000003\ntpm_id {tpm_id}\n\
         reset_count {}\nrestart_count {}\n",
        field("reset_count"),
        field("restart_count")
    );
    assert!(buf.starts_with(&want), "{buf}\nvs\n{want}");
    assert!(buf.lines().last().unwrap().starts_with("clock "), "{buf}");
}

/// A forged archiving plan (a path outside the archive, a file to move) is refused and
/// moves nothing.
#[test]
fn a_forged_archiving_plan_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 2);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "dddddddd-0000-4000-8000-000000000004");
    measure(None, &state, &boot, &t, &[]).success();
    let outside = d.path().join("outside");
    let precious = d.path().join("precious");
    std::fs::write(&precious, b"keep me\n").unwrap();
    let count = std::fs::read_to_string(state.join("runtime_measurements_count")).unwrap();
    for plan in [
        format!("{}\n{}\n", outside.display(), precious.display()),
        "../../outside\n".to_owned(),
        "1-ok\n../../../precious\n".to_owned(),
        "1-ok\nsoft-pcrs\nextra\n".to_owned(),
        String::new(),
    ] {
        std::fs::write(state.join(".engine/archiving"), &plan).unwrap();
        measure(None, &state, &boot, &t, &[])
            .code(2)
            .stderr(predicates::str::contains(".engine/archiving:"));
        assert!(!outside.exists(), "{plan:?}");
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep me\n", "{plan:?}");
        assert_eq!(
            std::fs::read_to_string(state.join("runtime_measurements_count")).unwrap(),
            count,
            "{plan:?}"
        );
        assert!(archives(&state).is_empty(), "{plan:?}");
    }
}

/// An emptied or garbage journal is not blamed on another measurer, and a journal entry
/// naming a PCR out of range is named by file and offset.
#[test]
fn bad_journals_are_named_by_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 1);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "eeeeeeee-0000-4000-8000-000000000005");
    measure(None, &state, &boot, &t, &[]).success();
    let j = state.join("binary_runtime_measurements_sha1");
    let good = std::fs::read(&j).unwrap();
    for (bytes, want) in [
        (Vec::new(), "the journal is empty, but PCR 10"),
        (
            b"garbage garbage garbage".to_vec(),
            "no measurement list entry parses here",
        ),
    ] {
        std::fs::write(&j, &bytes).unwrap();
        let out = measure(None, &state, &boot, &t, &[]).code(2);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            err.contains(&format!("{}: entry at byte offset 0", j.display())),
            "{err}"
        );
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("kernel's own IMA"), "{err}");
        assert_eq!(std::fs::read(&j).unwrap(), bytes, "left as it is");
    }
    // PCR 245 in the second entry (its first 4 bytes).
    let mut bad = good.clone();
    let first = decode(&good, ListFormat::default()).unwrap();
    let mut one = Vec::new();
    encode_entry(&first[0], ListFormat::default(), &mut one);
    bad[one.len()..one.len() + 4].copy_from_slice(&245u32.to_le_bytes());
    std::fs::write(&j, &bad).unwrap();
    measure(None, &state, &boot, &t, &[])
        .code(2)
        .stderr(predicates::str::contains(format!(
            "{}: entry at byte offset {}: PCR 245 is out of range",
            j.display(),
            one.len()
        )));
}

/// Derived files are compared with the journal byte for byte: a same-length forgery of a
/// path in the ascii list, a forged count and a compat link pointed at a foreign file are
/// all repaired on the next open.
#[test]
fn forged_derived_files_counts_and_links_are_repaired() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 3);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "ffffffff-0000-4000-8000-000000000006");
    measure(None, &state, &boot, &t, &[]).success();
    let names = [
        "ascii_runtime_measurements_sha1",
        "ascii_runtime_measurements_sha256",
        "binary_runtime_measurements_sha256",
        "runtime_measurements_count",
    ];
    let good: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(state.join(n)).unwrap())
        .collect();
    for n in &names[..2] {
        let p = state.join(n);
        let text = std::fs::read_to_string(&p).unwrap();
        let forged = text.replace("/tree/f1\n", "/tree/f7\n");
        assert_ne!(forged, text);
        assert_eq!(forged.len(), text.len());
        std::fs::write(&p, forged).unwrap();
    }
    let p = state.join("binary_runtime_measurements_sha256");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    std::fs::write(&p, b).unwrap();
    std::fs::write(state.join("runtime_measurements_count"), "9\n").unwrap();
    let foreign = d.path().join("foreign");
    std::fs::write(&foreign, b"not a list\n").unwrap();
    std::fs::remove_file(state.join("ascii_runtime_measurements")).unwrap();
    std::os::unix::fs::symlink(&foreign, state.join("ascii_runtime_measurements")).unwrap();
    measure(None, &state, &boot, &t, &[])
        .success()
        .stderr(predicates::str::contains("derived files regenerated"));
    for (n, g) in names.iter().zip(&good) {
        assert_eq!(
            &std::fs::read(state.join(n)).unwrap(),
            g,
            "{n} not repaired"
        );
    }
    assert_eq!(
        std::fs::read_link(state.join("ascii_runtime_measurements")).unwrap(),
        Path::new("ascii_runtime_measurements_sha1")
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not a list\n");
    // And an intact state is left alone.
    measure(None, &state, &boot, &t, &[])
        .success()
        .stderr(predicates::str::contains("regenerated").not());
}

/// A corrupt cache is reported and rebuilt: every file is hashed again, nothing is lost.
#[test]
fn a_corrupt_cache_is_reported_and_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(d.path(), 3);
    let state = d.path().join("state");
    let boot = boot_file(d.path(), "boot", "abababab-0000-4000-8000-000000000007");
    measure(None, &state, &boot, &t, &[]).success();
    measure(None, &state, &boot, &t, &[])
        .success()
        .stderr(predicates::str::contains("3 unchanged since measured"));
    std::fs::write(state.join(".engine/cache"), b"ima-engine-cache v4\ngarbage").unwrap();
    measure(None, &state, &boot, &t, &[])
        .success()
        .stderr(predicates::str::contains("discarding the corrupt cache"))
        .stderr(predicates::str::contains(
            "list entries at byte offset 20: truncated: needed 8 bytes, 7 left",
        ))
        .stderr(predicates::str::contains(" 0 unchanged since measured"));
    measure(None, &state, &boot, &t, &[])
        .success()
        .stderr(predicates::str::contains("3 unchanged since measured"))
        .stderr(predicates::str::contains("corrupt").not());
}
