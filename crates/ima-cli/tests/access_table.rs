//! Issue #9: one access, one matching rule. The same accesses (real/effective uid and gid,
//! CAP_SETUID, file owner, hook and mask) go through `imactl measure`, `imactl appraise` and
//! `imactl policy explain --path`, and each must name the same rule. `measure` and
//! `appraise` run as the task under test (`setpriv`); `explain` is told the same ids.
//! Measure rules carry distinct `pcr=`, so the PCR of the entry names the rule that matched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const POLICY: &str = "\
measure func=FILE_CHECK mask=MAY_READ uid=1001 pcr=11
measure func=FILE_CHECK euid=1002 pcr=12
measure func=FILE_CHECK gid=1003 pcr=13
measure func=FILE_CHECK fowner=1004 pcr=14
measure func=BPRM_CHECK mask=MAY_EXEC fowner=1004 pcr=15
measure func=MMAP_CHECK egid=1005 pcr=16
measure pcr=17
appraise func=FILE_CHECK mask=MAY_READ uid=1001
appraise func=FILE_CHECK euid=1002
appraise func=FILE_CHECK gid=1003
appraise func=FILE_CHECK fowner=1004
appraise func=BPRM_CHECK mask=MAY_EXEC fowner=1004
appraise func=MMAP_CHECK egid=1005
appraise
";

/// One access: the task's real and effective ids, the file's owner, the hook; the measure
/// and appraise rule lines expected to decide it.
struct Row {
    what: &'static str,
    ruid: u32,
    euid: u32,
    rgid: u32,
    egid: u32,
    fowner: u32,
    func: &'static str,
    measure: usize,
    appraise: usize,
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { what: "uid", ruid: 1001, euid: 1001, rgid: 1006, egid: 1006, fowner: 0, func: "FILE_CHECK", measure: 1, appraise: 8 },
    Row { what: "euid", ruid: 1006, euid: 1002, rgid: 1006, egid: 1006, fowner: 0, func: "FILE_CHECK", measure: 2, appraise: 9 },
    // Root with real uid 1002 has CAP_SETUID: euid=1002 then also matches the real uid.
    Row { what: "euid via CAP_SETUID", ruid: 1002, euid: 0, rgid: 0, egid: 0, fowner: 0, func: "FILE_CHECK", measure: 2, appraise: 9 },
    Row { what: "gid", ruid: 1006, euid: 1006, rgid: 1003, egid: 1003, fowner: 0, func: "FILE_CHECK", measure: 3, appraise: 10 },
    Row { what: "fowner", ruid: 1006, euid: 1006, rgid: 1006, egid: 1006, fowner: 1004, func: "FILE_CHECK", measure: 4, appraise: 11 },
    Row { what: "fowner, exec", ruid: 1006, euid: 1006, rgid: 1006, egid: 1006, fowner: 1004, func: "BPRM_CHECK", measure: 5, appraise: 12 },
    Row { what: "egid, mmap", ruid: 1006, euid: 1006, rgid: 1006, egid: 1005, fowner: 0, func: "MMAP_CHECK", measure: 6, appraise: 13 },
    Row { what: "root", ruid: 0, euid: 0, rgid: 0, egid: 0, fowner: 0, func: "FILE_CHECK", measure: 7, appraise: 14 },
    Row { what: "no euid match, exec", ruid: 1006, euid: 1006, rgid: 1006, egid: 1006, fowner: 0, func: "BPRM_CHECK", measure: 7, appraise: 14 },
];

fn imactl() -> String {
    env!("CARGO_BIN_EXE_imactl").to_owned()
}

/// `imactl ARGS` as the row's task.
fn as_task(r: &Row, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--ruid", &r.ruid.to_string(), "--euid", &r.euid.to_string()]);
    c.args(["--rgid", &r.rgid.to_string(), "--egid", &r.egid.to_string()]);
    c.args(["--clear-groups", "--", &imactl()]).args(args);
    c.output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `line N` of the first `[line N: ` or `(line N: ` in `text`.
fn rule_line(text: &str) -> usize {
    let at = text
        .find("line ")
        .unwrap_or_else(|| panic!("no rule line in {text:?}"));
    let rest = &text[at + 5..];
    rest[..rest.find(':').unwrap()].parse().unwrap()
}

#[test]
fn measure_appraise_and_explain_pick_the_same_rule() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = d.path().join("policy");
    std::fs::write(&policy, POLICY).unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, b"one access, one rule\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (i, r) in ROWS.iter().enumerate() {
        std::os::unix::fs::chown(&file, Some(r.fowner), Some(0)).unwrap();
        let state = d.path().join(format!("state{i}"));
        std::fs::create_dir(&state).unwrap();
        // The state directory belongs to whoever measures (the engine refuses others').
        std::os::unix::fs::chown(&state, Some(r.euid), Some(r.egid)).unwrap();

        // measure: the PCR of the file's entry names the rule.
        let o = as_task(
            r,
            &[
                "measure",
                "-v",
                "--policy",
                s(&policy),
                "--state",
                s(&state),
                "--func",
                r.func,
                s(&file),
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}: measure: {o:?}", r.what);
        let entry = out
            .lines()
            .find(|l| l.ends_with(s(&file)))
            .unwrap_or_else(|| panic!("{}: measure added no entry: {o:?}", r.what));
        let pcr: usize = entry.split(' ').next().unwrap().parse().unwrap();
        let measured = pcr - 10;

        // appraise: `PATH: FUNC: VERDICT [line N: RULE]`.
        let o = as_task(
            r,
            &[
                "appraise",
                "--policy",
                s(&policy),
                "--func",
                r.func,
                s(&file),
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}: appraise: {o:?}",
            r.what
        );
        let appraised = rule_line(&out);

        // explain, told the same task.
        let mut args = vec![
            "policy".to_owned(),
            "explain".into(),
            "--policy".into(),
            s(&policy).into(),
            "--func".into(),
            r.func.into(),
            "--path".into(),
            s(&file).into(),
            "--json".into(),
        ];
        for (k, v) in [
            ("--uid", r.ruid),
            ("--euid", r.euid),
            ("--gid", r.rgid),
            ("--egid", r.egid),
        ] {
            args.push(k.into());
            args.push(v.to_string());
        }
        // What the task had: root keeps its capabilities (CAP_SETUID, CAP_SETGID), others
        // lose them.
        if r.euid == 0 {
            args.push("--cap-setid".into());
        }
        let o = Command::new(imactl()).args(&args).output().unwrap();
        assert!(o.status.success(), "{}: explain: {o:?}", r.what);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let explained = (
            v["measure"]["line"].as_u64().unwrap() as usize,
            v["appraise"]["line"].as_u64().unwrap() as usize,
        );

        assert_eq!(
            [(measured, appraised), explained],
            [(r.measure, r.appraise); 2],
            "{}: (measure, appraise) as run, then as explained",
            r.what
        );
    }
}
