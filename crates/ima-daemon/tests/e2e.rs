//! imad end to end, as root, on filesystems mounted for the test only (tmpfs or a loop ext4;
//! never `/`). Every imad runs under a watchdog that SIGKILLs it (which makes the kernel allow
//! anything it left pending), and every wait has a deadline, so a bug fails the test instead
//! of freezing the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ima_test::{Swtpm, TestMount};

mod support;
use support::*;

#[test]
fn tcb_measures_reads_and_execs_as_the_kernel_would() {
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    std::fs::write(m.join("a.txt"), "alpha").unwrap();
    std::fs::copy("/bin/true", m.join("prog")).unwrap();
    std::fs::set_permissions(m.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let imad = Imad::start(&state, &["--builtin", "tcb"], m.path());
    assert_eq!(read(&m.join("a.txt")), b"alpha");
    exec(&m.join("prog"));
    exec(&m.join("prog"));
    assert_eq!(read(&m.join("a.txt")), b"alpha");
    let log = imad.stop();
    let l = list(&state);
    let name = |p: &str| m.join(p).display().to_string();
    assert_eq!(l[0].2, "boot_aggregate");
    let rest = file_entries(&l);
    assert_eq!(
        rest,
        [
            (
                "ima-ng".into(),
                format!("sha256:{}", sha256(&m.join("a.txt"))),
                name("a.txt")
            ),
            (
                "ima-ng".into(),
                format!("sha256:{}", sha256(&m.join("prog"))),
                name("prog")
            ),
        ],
        "{log}"
    );
    // uid=0 rules tell openers apart: nothing was cached, every open was an event.
    assert!(events(&log) >= 4, "{log}");
}

#[test]
fn a_cached_open_sends_no_event_and_a_modified_file_is_measured_again() {
    let m = TestMount::tmpfs();
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let policy = d.path().join("policy");
    std::fs::write(
        &policy,
        "measure func=FILE_CHECK\nmeasure func=BPRM_CHECK\n",
    )
    .unwrap();
    std::fs::write(m.join("f"), "one").unwrap();
    let imad = Imad::start(&state, &["--policy", policy.to_str().unwrap()], m.path());
    for _ in 0..5 {
        assert_eq!(read(&m.join("f")), b"one");
    }
    let first = sha256(&m.join("f")); // also an open: cached
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("f"))
        .unwrap();
    // Opening for append is an open too (cached: no event); the write clears the mark.
    std::fs::write(m.join("f"), "two").unwrap();
    assert_eq!(read(&m.join("f")), b"two");
    assert_eq!(read(&m.join("f")), b"two");
    let log = imad.stop();
    let l = list(&state);
    let f = m.join("f").display().to_string();
    let got: Vec<(String, String)> = file_entries(&l)
        .iter()
        .map(|e| (e.1.clone(), e.2.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (format!("sha256:{first}"), f.clone()),
            (format!("sha256:{}", sha256(&m.join("f"))), f.clone())
        ],
        "{log}"
    );
    // Exactly two events: the first open, and the first open after the write (the truncating
    // open for the write itself was still cached). The other opens never reached imad.
    assert_eq!(events(&log), 2, "{log}");
}

#[test]
fn refuses_pseudo_filesystems_and_the_state_filesystem() {
    let d = tempfile::tempdir().unwrap();
    for (mark, state, what) in [
        ("/proc", d.path().join("s1"), "proc is never marked"),
        ("/sys", d.path().join("s2"), "sysfs is never marked"),
        (
            d.path().to_str().unwrap(),
            d.path().join("s3"),
            "state directory",
        ),
    ] {
        std::fs::create_dir_all(&state).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_imad"))
            .arg("--state")
            .arg(&state)
            .args(["--mark", mark])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(what) && err.contains(mark), "{err}");
        assert!(!state.join("imad.ready").exists());
    }
}

/// Opens files on `dir` from `n` threads until `stop`, recording each thread's opens and
/// the longest single open.
fn openers(
    files: Vec<PathBuf>,
    n: usize,
    per_thread: Option<usize>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(usize, Duration)>> {
    (0..n)
        .map(|i| {
            let files = files.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut count = 0;
                let mut longest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) && per_thread.is_none_or(|p| count < p) {
                    let t = Instant::now();
                    let f = File::open(&files[(i + count) % files.len()]).unwrap();
                    longest = longest.max(t.elapsed());
                    drop(f);
                    count += 1;
                }
                (count, longest)
            })
        })
        .collect()
}

#[test]
fn sigkill_releases_every_opener_and_a_restart_resumes_the_list() {
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let files: Vec<PathBuf> = (0..64).map(|i| m.join(format!("f{i}"))).collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(f, format!("file {i}")).unwrap();
    }
    let imad = Imad::start(&state, &["--builtin", "tcb", "--tpm", &tcti], m.path());
    let stop = Arc::new(AtomicBool::new(false));
    let threads = openers(files.clone(), 16, None, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    imad.kill();
    let killed = Instant::now();
    // Every opener goes on: the kernel allowed what was pending when the group closed.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut longest = Duration::ZERO;
    for t in threads {
        let (count, l) = t.join().unwrap();
        assert!(count > 0);
        longest = longest.max(l);
    }
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "openers stayed blocked"
    );
    eprintln!("longest open while imad was killed: {longest:?}");
    let before = list(&state);
    assert!(
        !file_entries(&before).is_empty(),
        "nothing measured before the kill"
    );

    // Restart on the same list and TPM: opening it checks that it replays to the PCRs.
    let imad = Imad::start(&state, &["--builtin", "tcb", "--tpm", &tcti], m.path());
    for f in &files {
        read(f);
    }
    let log = imad.stop();
    let after = list(&state);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the list changed across the restart"
    );
    // Every file exactly once: nothing lost, nothing doubled.
    let after_files = file_entries(&after);
    let mut names: Vec<&str> = after_files.iter().map(|e| e.2.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "{log}");
}

#[test]
fn a_burst_of_opens_is_answered_without_a_stall() {
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let files: Vec<PathBuf> = (0..256).map(|i| m.join(format!("f{i}"))).collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(f, format!("{i}")).unwrap();
    }
    // tcb: uid=0 rules, so no allow is cached and every open is an event.
    let imad = Imad::start(&state, &["--builtin", "tcb"], m.path());
    let threads = openers(files, 16, Some(5000), Arc::new(AtomicBool::new(false)));
    let total: usize = threads.into_iter().map(|t| t.join().unwrap().0).sum();
    assert_eq!(total, 16 * 5000);
    let log = imad.stop();
    assert_eq!(events(&log), 16 * 5000, "{log}");
    assert!(
        log.contains(" 0 past the deadline, 0 undecidable, 0 with the queue full"),
        "{log}"
    );
    assert_eq!(file_entries(&list(&state)).len(), 256);
}

#[test]
fn enforce_denies_tampered_unlabelled_and_wrongly_signed_files_with_eperm() {
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    for name in ["good", "tampered", "unlabelled", "badsig"] {
        std::fs::write(m.join(name), format!("content of {name}")).unwrap();
    }
    set_ima(&m.join("good"), &digest_label(b"content of good"));
    set_ima(&m.join("tampered"), &digest_label(b"what it said before"));
    set_ima(&m.join("badsig"), &unknown_key_signature());
    std::fs::copy("/bin/true", m.join("prog")).unwrap();
    std::fs::set_permissions(m.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ["--builtin", "tcb|appraise_tcb", "--appraise", "enforce"];
    let imad = Imad::start(&state, &args, m.path());
    assert_eq!(read(&m.join("good")), b"content of good");
    for bad in ["tampered", "unlabelled", "badsig"] {
        assert_eq!(
            open_errno(&m.join(bad)),
            Some(1),
            "{bad}: EPERM (fanotify's FAN_DENY)"
        );
    }
    let err = Command::new(m.join("prog")).status().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(1), "exec of an unlabelled binary");
    // Denials are decided anew on every open (never cached).
    assert_eq!(open_errno(&m.join("unlabelled")), Some(1));
    let log = imad.stop();
    for cause in ["invalid-hash", "missing-hash", "denied"] {
        assert!(log.contains(cause), "{cause}:\n{log}");
    }
    // Every denial is in the list, before the opener saw it, with its cause and opener;
    // the policy and the mode are recorded when imad starts.
    let denials = buffers(&state, "imad-denial");
    for (bad, cause) in [
        ("tampered", "invalid-hash"),
        ("unlabelled", "missing-hash"),
        ("badsig", "invalid-signature"),
        ("prog", "missing-hash"),
    ] {
        let name = format!("name=\"{}\"", m.join(bad).display());
        assert!(
            denials.iter().any(|b| b.starts_with("imad-denial v1\n")
                && b.contains(&name)
                && b.contains(&format!("cause={cause} "))),
            "{bad}: {denials:#?}"
        );
    }
    let policy = buffers(&state, "imad-policy");
    assert_eq!(policy.len(), 1, "{policy:?}");
    assert!(policy[0].contains("\nappraise fowner=0\n"), "{}", policy[0]);
    let mode = buffers(&state, "imad-mode");
    assert!(mode[0].contains("\nappraise enforce\n"), "{mode:?}");
    // Measured first, as process_measurement does: the denied files are in the list too.
    let names: Vec<String> = file_entries(&list(&state))
        .iter()
        .map(|e| e.2.clone())
        .collect();
    for f in ["good", "tampered", "unlabelled", "badsig"] {
        assert!(
            names.contains(&m.join(f).display().to_string()),
            "{f}: {names:?}"
        );
    }
}

#[test]
fn fix_mode_labels_through_the_event_fd_and_log_mode_allows() {
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(m.join("unlabelled"), "fix me").unwrap();
    std::fs::write(m.join("tampered"), "now").unwrap();
    set_ima(&m.join("tampered"), &digest_label(b"before"));
    let state = d.path().join("log");
    let imad = Imad::start(
        &state,
        &["--builtin", "appraise_tcb", "--appraise", "log"],
        m.path(),
    );
    assert_eq!(read(&m.join("tampered")), b"now");
    assert_eq!(read(&m.join("unlabelled")), b"fix me");
    let log = imad.stop();
    assert!(
        log.contains("invalid-hash") && !log.contains("; denied"),
        "{log}"
    );
    assert_eq!(
        ima_sys::xattr::get_path(&m.join("unlabelled"), "security.ima").unwrap(),
        None
    );

    let state = d.path().join("fix");
    let imad = Imad::start(
        &state,
        &["--builtin", "appraise_tcb", "--appraise", "fix"],
        m.path(),
    );
    assert_eq!(read(&m.join("unlabelled")), b"fix me");
    let log = imad.stop();
    assert_eq!(
        ima_sys::xattr::get_path(&m.join("unlabelled"), "security.ima").unwrap(),
        Some(digest_label(b"fix me")),
        "{log}"
    );
    // Fixed: now it passes in enforce mode.
    let state = d.path().join("enforce");
    let args = ["--builtin", "appraise_tcb", "--appraise", "enforce"];
    let imad = Imad::start(&state, &args, m.path());
    assert_eq!(read(&m.join("unlabelled")), b"fix me");
    imad.stop();
}

/// auditd running (started if it is not), so user messages reach /var/log/audit/audit.log.
fn auditd_running() {
    let st = Command::new("auditctl").arg("-s").output().unwrap();
    let s = String::from_utf8_lossy(&st.stdout).into_owned();
    if s.lines().any(|l| l.starts_with("pid ") && l != "pid 0") {
        return;
    }
    assert!(Command::new("auditd").status().unwrap().success());
    let t = Instant::now();
    loop {
        let st = Command::new("auditctl").arg("-s").output().unwrap();
        let s = String::from_utf8_lossy(&st.stdout).into_owned();
        if s.lines().any(|l| l.starts_with("pid ") && l != "pid 0") {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "auditd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn audit_rules_and_appraisal_failures_reach_json_and_the_kernel_audit_log() {
    auditd_running();
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let tag = format!("audited-{}-{}", std::process::id(), unique());
    let good = m.join(&tag);
    std::fs::write(&good, b"audit me").unwrap();
    let bad = m.join(format!("{tag}-tampered"));
    std::fs::write(&bad, b"now").unwrap();
    set_ima(&bad, &digest_label(b"before"));
    let policy = d.path().join("policy");
    std::fs::write(
        &policy,
        "audit func=FILE_CHECK mask=^MAY_READ\nappraise func=FILE_CHECK fowner=0\n",
    )
    .unwrap();
    let json = d.path().join("audit.json");
    let json_arg = format!("json={}", json.display());
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--appraise",
        "log",
        "--audit",
        "kernel",
        "--audit",
        &json_arg,
    ];
    let imad = Imad::start(&state, &args, m.path());
    let cat = |p: &Path| {
        let out = Command::new("cat").arg(p).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert_eq!(cat(&good), b"audit me");
    assert_eq!(cat(&good), b"audit me");
    assert_eq!(cat(&bad), b"now", "log mode allows");
    imad.stop();
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "INTEGRITY_RULE" && r["file"] == good.to_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 1, "audited once until it changes: {recs:#?}");
    let r = rules[0];
    assert_eq!(r["hash"], format!("sha256:{}", sha256(&good)));
    assert_eq!(r["comm"], "cat", "the opener, not imad");
    assert_eq!(r["type_id"], 1805);
    assert!(r["exe"].as_str().unwrap().ends_with("/cat"), "{r}");
    let data: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "INTEGRITY_DATA" && r["name"] == bad.to_str().unwrap())
        .collect();
    assert!(!data.is_empty(), "{recs:#?}");
    assert_eq!(data[0]["op"], "appraise_data");
    assert_eq!(data[0]["cause"], "invalid-hash");
    assert_eq!(data[0]["res"], 0);
    assert!(
        data[0]["dev"].as_str().unwrap().starts_with("loop"),
        "{}",
        data[0]
    );
    // The kernel's audit log has the same records, in the kernel's text.
    let want = format!(
        "file=\"{}\" hash=\"sha256:{}\"",
        good.display(),
        sha256(&good)
    );
    let t = Instant::now();
    loop {
        let log = std::fs::read_to_string("/var/log/audit/audit.log").unwrap_or_default();
        if log.lines().any(|l| {
            l.starts_with("type=TRUSTED_APP")
                && l.contains("ima_type=INTEGRITY_RULE")
                && l.contains(&want)
        }) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{want} not in /var/log/audit/audit.log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ctl(state: &Path, req: serde_json::Value) -> serde_json::Value {
    ima_daemon::control::call(state, &req).unwrap()
}

#[test]
fn the_control_socket_reloads_policies_all_or_nothing_and_explains_decisions() {
    let m = TestMount::ext4(32);
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    std::fs::write(m.join("unlabelled"), b"no label").unwrap();
    let pol = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let appraising = pol(
        "p1",
        "policy_version=1\nappraise func=FILE_CHECK fowner=0\n",
    );
    // A free local port for the metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let args = [
        "--policy",
        appraising.to_str().unwrap(),
        "--appraise",
        "enforce",
        "--audit",
        "none",
        "--metrics",
        &metrics,
    ];
    let imad = Imad::start(&state, &args, m.path());
    assert_eq!(open_errno(&m.join("unlabelled")), Some(1));
    let s = ctl(&state, serde_json::json!({"op": "status"}));
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["status"]["policy_version"], 1);
    assert_eq!(s["status"]["policy_source"], appraising.to_str().unwrap());
    assert!(s["status"]["denied"].as_u64().unwrap() >= 1, "{s}");
    let e = ctl(
        &state,
        serde_json::json!({"op": "explain", "path": m.join("unlabelled")}),
    );
    let e = &e["explain"];
    assert_eq!(e["allowed"], false, "{e}");
    assert_eq!(e["cause"], "missing-hash");
    assert!(
        e["appraise"]
            .as_str()
            .unwrap()
            .starts_with("line 2: appraise"),
        "{e}"
    );
    assert!(e["remedy"].as_str().unwrap().contains("imactl hash"), "{e}");

    // A bad line: nothing changes, and the answer names the line.
    let bad = pol("bad", "measure func=FILE_CHECK\nmeasure func=NOPE\n");
    let r = ctl(&state, serde_json::json!({"op": "reload", "policy": bad}));
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("bad:2:9: unknown func"),
        "{r}"
    );
    assert_eq!(open_errno(&m.join("unlabelled")), Some(1), "still enforced");

    // A policy without appraisal: loaded at once, and recorded in the list.
    let measuring = pol("p2", "policy_version=2\nmeasure func=FILE_CHECK\n");
    let r = ctl(
        &state,
        serde_json::json!({"op": "reload", "policy": measuring}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["status"]["policy_generation"], 1);
    assert_eq!(read(&m.join("unlabelled")), b"no label");
    // An older version is a rollback.
    let r = ctl(
        &state,
        serde_json::json!({"op": "reload", "policy": appraising}),
    );
    assert!(r["error"].as_str().unwrap().contains("rollback"), "{r}");

    // A policy that asks for signed policies: the next one must pass appraisal.
    let signed = pol(
        "p3",
        "policy_version=3\nmeasure func=FILE_CHECK\nappraise func=POLICY_CHECK\n",
    );
    assert_eq!(
        ctl(
            &state,
            serde_json::json!({"op": "reload", "policy": signed})
        )["ok"],
        true
    );
    let next = pol("p4", "policy_version=4\nmeasure func=FILE_CHECK\n");
    let r = ctl(&state, serde_json::json!({"op": "reload", "policy": next}));
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("signed policy required"),
        "{r}"
    );
    set_ima(
        &next,
        &digest_label(b"policy_version=4\nmeasure func=FILE_CHECK\n"),
    );
    let r = ctl(&state, serde_json::json!({"op": "reload", "policy": next}));
    assert_eq!(r["ok"], true, "{r}");
    // The metrics count what happened.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut conn, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut conn, &mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("\nimad_policy_loads_total 3\n"), "{text}");
    let denied: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("imad_denied_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(denied >= 1, "{text}");
    // Unknown requests are refused.
    let r = ctl(&state, serde_json::json!({"op": "format-disk"}));
    assert!(r["error"].as_str().unwrap().contains("bad request"), "{r}");
    imad.stop();
    let policies = buffers(&state, "imad-policy");
    assert_eq!(policies.len(), 4, "{policies:#?}");
    assert!(!state.join("imad.sock").exists(), "socket left behind");

    // The version survives a restart: the old policy is refused at start.
    let out = Command::new(env!("CARGO_BIN_EXE_imad"))
        .arg("--state")
        .arg(&state)
        .arg("--mark")
        .arg(m.path())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollback"), "{err}");

    // A symlink planted as the version file is never followed (nor its target read).
    let target = d.path().join("target");
    std::fs::write(&target, b"0\n").unwrap();
    std::fs::remove_file(state.join("imad.policy-version")).unwrap();
    std::os::unix::fs::symlink(&target, state.join("imad.policy-version")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imad"))
        .arg("--state")
        .arg(&state)
        .arg("--mark")
        .arg(m.path())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a planted link is refused");
    assert_eq!(std::fs::read(&target).unwrap(), b"0\n");
}
