//! `imactl policy check|show|explain` against the contract in issue 3.

use assert_cmd::Command;
use predicates::prelude::*;

fn imactl() -> Command {
    #[allow(clippy::unwrap_used)] // test helper: the binary is built by cargo for this test
    Command::cargo_bin("imactl").unwrap()
}

#[test]
fn check_accepts_the_capture_policy_and_rejects_bad_lines() {
    let good = ima_test::kernel_capture("d-custom-policy-ngv2-buf").join("policy.written");
    imactl()
        .args(["policy", "check", "--strict-kernel"])
        .arg(&good)
        .assert()
        .success()
        .stdout(predicate::str::contains("20 rules OK"));

    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.policy");
    std::fs::write(
        &bad,
        "# ok\nmeasure func=BPRM_CHECK\nmeasure func=FOO\nappraise pcr=3\nmeasure path=/opt\n",
    )
    .unwrap();
    let name = bad.display().to_string();
    // Strict by default: what passes, the kernel accepts (#14).
    imactl()
        .args(["policy", "check"])
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{name}:3:9: unknown func \"FOO\""
        )))
        .stderr(predicate::str::contains(format!(
            "{name}:4:10: pcr= is only valid on measure rules"
        )))
        .stderr(predicate::str::contains(format!(
            "{name}:5:9: \"path=/opt\" is an extension"
        )));
    // With --extensions the extension is fine, the other two errors stay.
    imactl()
        .args(["policy", "check", "--extensions"])
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(":5:").not());

    let one = d.path().join("one.policy");
    std::fs::write(&one, "measure func=BPRM_CHECK\n").unwrap();
    imactl()
        .args(["policy", "check"])
        .arg(&one)
        .assert()
        .success()
        .stdout(format!("{}: 1 rule OK\n", one.display()));

    let empty = d.path().join("empty.policy");
    std::fs::write(&empty, "# nothing\n").unwrap();
    imactl()
        .args(["policy", "check"])
        .arg(&empty)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no rules"));
    imactl()
        .args(["policy", "check", "/nonexistent/policy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "imactl: error: /nonexistent/policy",
        ));
}

#[test]
fn show_prints_kernel_readback() {
    imactl()
        .args(["policy", "show", "--builtin", "secure_boot"])
        .assert()
        .success()
        .stdout(
            "appraise func=MODULE_CHECK appraise_type=imasig \n\
             appraise func=FIRMWARE_CHECK appraise_type=imasig \n\
             appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig \n\
             appraise func=POLICY_CHECK appraise_type=imasig \n",
        );
    imactl()
        .args(["policy", "show", "--builtin", "tcb", "--kernel", "6.1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "dont_measure fsmagic=0x1021994 \n",
        ));
    imactl()
        .args(["policy", "show", "--builtin", "tcb|critical_data"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "dont_measure func=FILE_CHECK fsmagic=0x1021994 \n",
        ))
        .stdout(predicate::str::ends_with(
            "measure func=POLICY_CHECK \nmeasure func=CRITICAL_DATA \n",
        ));
    imactl()
        .args(["policy", "show", "--builtin", "nope"])
        .assert()
        .code(2);
}

#[test]
fn explain_json_contract() {
    let pol = ima_test::kernel_capture("d-custom-policy-ngv2-buf").join("policy.written");
    let out = imactl()
        .args(["policy", "explain", "--policy"])
        .arg(&pol)
        .args([
            "--func",
            "FILE_CHECK",
            "--mask",
            "MAY_READ",
            "--uid",
            "0",
            "--fowner",
            "1000",
        ])
        .args([
            "--fgroup",
            "1000",
            "--fsmagic",
            "0xef53",
            "--fsname",
            "ext4",
        ])
        .args(["--fsuuid", "8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["measure"]["line"], 20);
    assert_eq!(v["measure"]["pcr"], 11);
    assert_eq!(v["measure"]["template"], "ima-ng");
    assert_eq!(
        v["measure"]["rule"],
        "measure func=FILE_CHECK mask=MAY_READ uid=0 fowner=1000 pcr=11 template=ima-ng"
    );
    for k in ["appraise", "audit", "hash"] {
        assert!(v[k].is_null(), "{k}: {v}");
    }
}

#[test]
fn explain_reads_owner_and_filesystem_from_path() {
    // /proc is PROC_SUPER_MAGIC: the tcb policy's first rule decides "don't measure".
    let out = imactl()
        .args([
            "policy",
            "explain",
            "--builtin",
            "tcb",
            "--func",
            "FILE_CHECK",
        ])
        .args(["--path", "/proc/self/status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["measure"]["line"], 1);
    assert_eq!(v["measure"]["decision"], false);
    // A root-owned file on a regular filesystem, read by root: measured by the uid=0 rule
    // (the euid=0 rule comes first and matches too).
    let d = tempfile::tempdir_in(ima_test::repo_root()).unwrap();
    let f = d.path().join("x");
    std::fs::write(&f, "x").unwrap();
    let out = imactl()
        .args([
            "policy",
            "explain",
            "--builtin",
            "appraise_tcb",
            "--func",
            "FILE_CHECK",
        ])
        .arg("--path")
        .arg(&f)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&f).unwrap().uid();
    if owner == 0 {
        assert_eq!(v["appraise"]["rule"], "appraise fowner=0");
    } else {
        assert!(v["appraise"].is_null(), "{v}");
    }
    imactl()
        .args(["policy", "explain", "--builtin", "tcb", "--func", "BPRM_CHECK", "--fsmagic", "0xef53"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "measure:  line 15: measure func=BPRM_CHECK mask=MAY_EXEC => measure into PCR 10 with template ima-ng",
        ));
}

#[test]
fn check_signed_by_verifies_an_evmctl_signature() {
    let sigs = ima_test::repo_root().join("testdata/sigs");
    // A real filesystem that keeps security.* xattrs (we run as root).
    let d = tempfile::tempdir_in(ima_test::repo_root()).unwrap();
    let f = d.path().join("signed.policy");
    std::fs::write(
        &f,
        "measure func=BPRM_CHECK\nappraise func=POLICY_CHECK appraise_type=imasig\n",
    )
    .unwrap();
    let cert = sigs.join("rsa_x509.pem");
    imactl()
        .args(["policy", "check", "--signed-by"])
        .arg(&cert)
        .arg(&f)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no security.ima"));
    let st = std::process::Command::new("evmctl")
        .args(["ima_sign", "-a", "sha256", "--key"])
        .arg(sigs.join("rsa_priv.pem"))
        .arg(&f)
        .status()
        .expect("evmctl is required (ima-evm-utils)");
    assert!(st.success());
    imactl()
        .args(["policy", "check", "--signed-by"])
        .arg(&cert)
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "2 rules OK, signature OK (appraises POLICY_CHECK",
        ));
    // Another key: refused.
    imactl()
        .args(["policy", "check", "--signed-by"])
        .arg(sigs.join("ec_x509.pem"))
        .arg(&f)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("signature"));
    // Changing the file breaks the signature.
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("audit\n");
    std::fs::write(&f, text).unwrap();
    imactl()
        .args(["policy", "check", "--signed-by"])
        .arg(&cert)
        .arg(&f)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not verify"));
}
