//! `imad --config FILE`, as root, on loop-mounted ext4 only: a configuration file alone starts
//! imad with its policy and mode, a flag overrides the file, and a bad file stops imad before
//! it touches anything, naming the file, the line and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ima_test::TestMount;

mod support;
use support::*;

/// Writes `text` as a root-only configuration file in `dir`.
fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join(format!("imad.{}.toml", unique()));
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The appraise_tcb test files: one labelled with its digest, one unlabelled (root-owned).
fn files(m: &TestMount) {
    std::fs::write(m.join("good"), "content of good").unwrap();
    std::fs::write(m.join("unlabelled"), "content of unlabelled").unwrap();
    set_ima(&m.join("good"), &digest_label(b"content of good"));
}

fn enforcing(state: &Path, m: &TestMount) -> String {
    format!(
        "# as the kernel's ima_policy=tcb ima_appraise_tcb ima_appraise=enforce\n\
         ima_policy = \"tcb\"\n\
         ima_appraise_tcb = true\n\
         ima_appraise = \"enforce\"\n\
         ima_template = \"ima-sig\"\n\
         state = \"{}\"\n\
         mark = [\"{}\"]\n\
         audit = [\"stderr\"]\n\
         deadline = 3000\n",
        state.display(),
        m.path().display()
    )
}

#[test]
fn a_config_file_alone_sets_the_policy_and_the_mode() {
    let m = TestMount::ext4(32);
    files(&m);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let cfg = config(d.path(), &enforcing(&state, &m));
    let imad = Imad::spawn(&state, &["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(open_errno(&m.join("good")), None);
    assert_eq!(
        open_errno(&m.join("unlabelled")),
        Some(1),
        "EPERM: FAN_DENY"
    );
    let log = imad.stop();
    assert!(log.contains("missing-hash"), "{log}");
    let policy = buffers(&state, "imad-policy");
    assert!(policy[0].contains("\nappraise fowner=0\n"), "{policy:?}");
    assert!(
        policy[0].contains("\nmeasure func=BPRM_CHECK"),
        "{policy:?}"
    );
    let mode = buffers(&state, "imad-mode");
    assert!(
        mode[0].contains("\nappraise enforce\ntemplate ima-sig\nhash sha256\n"),
        "{mode:?}"
    );
    let names: Vec<String> = file_entries(&list(&state))
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert!(
        names.contains(&m.join("good").display().to_string()),
        "{names:?}"
    );
}

#[test]
fn a_flag_overrides_the_file() {
    let m = TestMount::ext4(32);
    files(&m);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    // The file's mark would be refused: the flag's list replaces it.
    let text = enforcing(&state, &m).replace(
        &format!("mark = [\"{}\"]", m.path().display()),
        "mark = [\"/proc\"]",
    );
    let cfg = config(d.path(), &text);
    let mark = m.path().to_str().unwrap();
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--appraise",
        "log",
        "--template",
        "ima-ng",
        "--mark",
        mark,
    ];
    let imad = Imad::spawn(&state, &args, &[]);
    assert_eq!(open_errno(&m.join("unlabelled")), None, "log mode allows");
    let log = imad.stop();
    assert!(log.contains("missing-hash"), "logged: {log}");
    let mode = buffers(&state, "imad-mode");
    assert!(
        mode[0].contains("\nappraise log\ntemplate ima-ng\n"),
        "{mode:?}"
    );
    // --builtin replaces the file's ima_policy and ima_appraise_tcb: no appraisal at all.
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--builtin",
        "tcb",
        "--template",
        "ima-ng",
        "--mark",
        mark,
    ];
    let imad = Imad::spawn(&state, &args, &[]);
    assert_eq!(open_errno(&m.join("unlabelled")), None);
    imad.stop();
    let policy = buffers(&state, "imad-policy");
    assert!(!policy[1].contains("appraise"), "{policy:?}");
}

/// The state directory's files and their contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    v
}

#[test]
fn a_bad_config_names_file_line_and_key_and_changes_nothing() {
    let m = TestMount::ext4(32);
    files(&m);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let good = enforcing(&state, &m);
    // A list from an earlier run, which no refused start may touch.
    Imad::spawn(
        &state,
        &["--config", config(d.path(), &good).to_str().unwrap()],
        &[],
    )
    .stop();
    let before = snapshot(&state);
    let nlines = good.lines().count();
    for (extra, line, what) in [
        (
            "ima_apraise = \"off\"\n",
            nlines + 1,
            "ima_apraise: unknown key",
        ),
        (
            "workers = \"4\"\n",
            nlines + 1,
            "workers: expected an integer, found string",
        ),
        (
            "policy = \"/etc/ima/policy\"\n",
            nlines + 1,
            "policy: conflicts with ima_policy (line 2)",
        ),
        ("evm = \"fix\"\n", nlines + 1, "evm: \"fix\": not supported"),
        ("deadline = 7\n", nlines + 1, "deadline: duplicate key"),
        ("ima_hash = sha1\n", nlines + 1, ""),
    ] {
        let cfg = config(d.path(), &format!("{good}{extra}"));
        let err = refused(&["--config", cfg.to_str().unwrap()]);
        let at = format!("imad: {}:{line}: {what}", cfg.display());
        assert!(err.starts_with(&at), "{extra}: want {at}\n{err}");
        // The mount was never marked: the unlabelled file opens.
        assert_eq!(open_errno(&m.join("unlabelled")), None);
        assert_eq!(snapshot(&state), before, "{extra}");
    }
    // Given and missing; writable by others: refused, naming the file.
    let missing = d.path().join("none.toml");
    let err = refused(&["--config", missing.to_str().unwrap()]);
    assert!(
        err.starts_with(&format!("imad: {}: ", missing.display())),
        "{err}"
    );
    let loose = config(d.path(), &good);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o646)).unwrap();
    let err = refused(&["--config", loose.to_str().unwrap()]);
    assert!(
        err.contains("writable by group or others (mode 0646)"),
        "{err}"
    );
    // A bad flag value is refused as well, whatever the file says.
    let cfg = config(d.path(), &good);
    refused(&[
        "--config",
        cfg.to_str().unwrap(),
        "--audit",
        "json=rel.json",
    ]);
    assert_eq!(snapshot(&state), before);
}
