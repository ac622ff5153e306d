//! `imactl attest quote|verify` end to end against real swtpm instances: a trusted round, a
//! checkpointed round, and each kind of tampering detected (issue #12).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;
use ima_core::hash::HashAlgo;
use ima_core::log::{ListFormat, binary};
use ima_test::{Swtpm, run_ok};
use predicates::prelude::*;

const N1: &str = "00112233445566778899aabbccddeeff";
const N2: &str = "ffeeddccbbaa99887766554433221100";

fn imactl() -> Command {
    Command::cargo_bin("imactl").unwrap()
}

/// A machine: a swtpm, a state directory and a few files measured into it.
struct Machine {
    tpm: Swtpm,
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let m = Self {
            tpm: Swtpm::start(),
            dir: tempfile::tempdir().unwrap(),
        };
        let files = m.files();
        std::fs::create_dir_all(&files).unwrap();
        for i in 0..5 {
            std::fs::write(files.join(format!("f{i}")), format!("content {i}\n")).unwrap();
        }
        m
    }

    fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn measure(&self, paths: &[PathBuf]) {
        imactl()
            .args(["measure", "-q", "-r", "--tpm", &self.tpm.tcti(), "--state"])
            .arg(self.state())
            .args(paths)
            .assert()
            .success();
    }

    fn measure_all(&self) {
        self.measure(&[self.files()]);
    }

    /// `attest quote` into DIR/<name>.
    fn quote(&self, nonce: &str, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        imactl()
            .args([
                "attest",
                "quote",
                "--tpm",
                &self.tpm.tcti(),
                "--nonce",
                nonce,
                "--out",
            ])
            .arg(&out)
            .arg("--state")
            .arg(self.state())
            .assert()
            .success();
        out
    }

    /// Our reference file for every file under files/ (sha256, as measured).
    fn refs(&self) -> PathBuf {
        let mut s = String::from("# test references\n");
        let mut names: Vec<_> = std::fs::read_dir(self.files())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let d = HashAlgo::SHA256
                .digest(&std::fs::read(&p).unwrap())
                .unwrap();
            s.push_str(&format!("file {d} {}\n", p.display()));
        }
        let out = self.dir.path().join("refs");
        std::fs::write(&out, s).unwrap();
        out
    }

    /// The same references as a Keylime runtime policy.
    fn keylime_policy(&self) -> PathBuf {
        let mut digests = serde_json::Map::new();
        for e in std::fs::read_dir(self.files()).unwrap() {
            let p = e.unwrap().path();
            let d = HashAlgo::SHA256
                .digest(&std::fs::read(&p).unwrap())
                .unwrap();
            digests.insert(p.display().to_string(), serde_json::json!([d.to_hex()]));
        }
        let policy = serde_json::json!({
            "meta": {"version": 1, "generator": 0},
            "release": 0,
            "digests": digests,
            "excludes": [],
            "keyrings": {},
            "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
            "ima-buf": {},
            "verification-keys": "",
        });
        let out = self.dir.path().join("policy.json");
        std::fs::write(&out, serde_json::to_vec_pretty(&policy).unwrap()).unwrap();
        out
    }
}

fn verify(dir: &Path, nonce: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    imactl()
        .args(["attest", "verify"])
        .arg(dir)
        .args(["--nonce", nonce])
        .args(extra)
        .assert()
}

fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

fn list_of(dir: &Path) -> PathBuf {
    dir.join("binary_runtime_measurements")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_measured_machine_is_trusted_and_a_foreign_file_is_named() {
    let m = Machine::new();
    m.measure_all();
    let refs = m.refs();
    let policy = m.keylime_policy();
    let ev = m.quote(N1, "ev1");
    // The list written is exactly what the quote covers: 1 boot_aggregate, the engine's boot
    // entry (checked against the quote's clock info, not the references) + 5 files.
    let entries =
        binary::decode(&std::fs::read(list_of(&ev)).unwrap(), ListFormat::default()).unwrap();
    assert_eq!(entries.len(), 7);
    for r in [&refs, &policy] {
        verify(&ev, N1, &["--refs", s(r)])
            .code(0)
            .stdout(predicate::str::contains("verdict: TRUSTED"))
            .stdout(predicate::str::contains("5 by digest"))
            .stdout(predicate::str::contains(
                "boot_aggregate (sha256) matches PCRs 0-9",
            ));
    }
    let out = verify(&ev, N1, &["--refs", s(&refs), "--json"]).code(0);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["verdict"], "trusted");
    assert_eq!(v["entries"]["by_digest"], 5);

    // A file outside the references is measured: named, with the line that would accept it.
    let intruder = m.dir.path().join("intruder");
    std::fs::write(&intruder, b"not in the refs\n").unwrap();
    m.measure(std::slice::from_ref(&intruder));
    let ev = m.quote(N2, "ev2");
    let d = HashAlgo::SHA256.digest(b"not in the refs\n").unwrap();
    for r in [&refs, &policy] {
        verify(&ev, N2, &["--refs", s(r)])
            .code(1)
            .stdout(predicate::str::contains(format!(
                "FAILED: entry 7 (ima-ng {} {d}): no reference digest for this path",
                intruder.display()
            )))
            .stdout(predicate::str::contains(format!(
                "accepted by the reference \"file {d} {}\"",
                intruder.display()
            )))
            .stdout(predicate::str::contains("verdict: FAILED (1 failures)"));
    }
    let out = verify(&ev, N2, &["--refs", s(&refs), "--json"]).code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["failures"][0]["kind"], "not_in_refs");
    assert_eq!(v["failures"][0]["entry"]["index"], 7);
    assert_eq!(v["failures"][0]["entry"]["path"], s(&intruder));
}

#[test]
fn an_edited_or_removed_entry_and_an_old_nonce_fail() {
    let m = Machine::new();
    m.measure_all();
    let refs = m.refs();
    let ev = m.quote(N1, "ev");
    verify(&ev, N1, &["--refs", s(&refs)]).code(0);

    // A replayed quote: the verifier asked for another nonce.
    verify(&ev, N2, &["--refs", s(&refs)])
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED: quote: not made for this nonce",
        ));

    // An entry edited (its file digest): wrong template digest, and PCR 10 cannot match.
    let bytes = std::fs::read(list_of(&ev)).unwrap();
    let entries = binary::decode(&bytes, ListFormat::default()).unwrap();
    let edited = copy_dir(&ev, &m.dir.path().join("edited"));
    let mut b = bytes.clone();
    let start = binary::encode(&entries[..3], ListFormat::default()).len();
    let len3 = binary::encode(&entries[3..4], ListFormat::default()).len();
    b[start + len3 - 60] ^= 0x01; // inside entry 3's d-ng digest (the name is ~45 bytes)
    std::fs::write(list_of(&edited), &b).unwrap();
    verify(&edited, N1, &["--refs", s(&refs)])
        .code(1)
        .stdout(predicate::str::contains("FAILED: entry 3 (ima-ng"))
        .stdout(predicate::str::contains(
            "logged template digest is not the digest of its data",
        ))
        .stdout(predicate::str::contains("FAILED: PCR 10 (sha256)"));

    // An entry removed: the list no longer replays to the quote.
    let removed = copy_dir(&ev, &m.dir.path().join("removed"));
    let mut fewer = entries.clone();
    fewer.remove(2);
    std::fs::write(
        list_of(&removed),
        binary::encode(&fewer, ListFormat::default()),
    )
    .unwrap();
    verify(&removed, N1, &["--refs", s(&refs)])
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED: PCR 10 (sha1): the list replays to",
        ))
        .stdout(predicate::str::contains(
            "FAILED: PCR 10 (sha256): the list replays to",
        ));
}

#[test]
fn a_quote_signed_by_another_tpm_fails() {
    let a = Machine::new();
    a.measure_all();
    let ev_a = a.quote(N1, "ev");
    let b = Machine::new();
    b.measure_all();
    let ev_b = b.quote(N1, "ev");
    // Each TPM's own AK verifies its own quote...
    verify(&ev_b, N1, &["--ak", s(&ev_b.join("ak.pem"))]).code(0);
    // ...but B's quote is not signed by A's AK, which the verifier trusts.
    assert_ne!(
        std::fs::read(ev_a.join("ak.pem")).unwrap(),
        std::fs::read(ev_b.join("ak.pem")).unwrap()
    );
    verify(&ev_b, N1, &["--ak", s(&ev_a.join("ak.pem"))])
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED: quote: the signature does not verify with the AK",
        ));
}

#[test]
fn pcr_0_changed_after_the_list_started_fails_boot_aggregate() {
    let m = Machine::new();
    m.measure_all();
    // Other firmware than the one the list's boot_aggregate was computed under: extend
    // PCR 0 behind the list's back (as if the list came from another boot).
    run_ok(
        Std::new("tpm2_pcrextend")
            .arg(format!(
                "0:sha1={},sha256={}",
                "11".repeat(20),
                "22".repeat(32)
            ))
            .arg("-T")
            .arg(m.tpm.tcti()),
    );
    let refs = m.refs();
    let ev = m.quote(N1, "ev");
    verify(&ev, N1, &["--refs", s(&refs)])
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED: entry 0: boot_aggregate: logged sha256:",
        ))
        .stdout(predicate::str::contains("verdict: FAILED (1 failures)"));
    // `log verify` against the same TPM says so too (it used to report all PCRs matching).
    imactl()
        .args(["log", "verify", "--tpm", &m.tpm.tcti()])
        .arg(list_of(&ev))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("boot_aggregate: logged"));
}

#[test]
fn a_checkpoint_reads_only_new_entries_and_catches_truncation() {
    let m = Machine::new();
    m.measure_all();
    let refs = m.dir.path().join("refs-all");
    let cp = m.dir.path().join("checkpoint");
    let ev1 = m.quote(N1, "ev1");
    // More files, known to the references.
    let more = m.dir.path().join("more");
    std::fs::write(&more, b"more\n").unwrap();
    std::fs::write(
        &refs,
        format!(
            "{}file {} {}\n",
            std::fs::read_to_string(m.refs()).unwrap(),
            HashAlgo::SHA256.digest(b"more\n").unwrap(),
            more.display()
        ),
    )
    .unwrap();
    verify(&ev1, N1, &["--refs", s(&refs), "--checkpoint", s(&cp)])
        .code(0)
        .stdout(predicate::str::contains("baseline: whole list"));
    assert!(
        std::fs::read_to_string(&cp)
            .unwrap()
            .contains("entries 7\n")
    );
    m.measure(std::slice::from_ref(&more));
    let ev2 = m.quote(N2, "ev2");
    // The list truncated behind the checkpoint (entries removed and the quote's PCRs
    // replaced by a forger cannot help: the list is shorter than what was verified).
    let cut = copy_dir(&ev2, &m.dir.path().join("cut"));
    let bytes = std::fs::read(list_of(&ev2)).unwrap();
    let entries = binary::decode(&bytes, ListFormat::default()).unwrap();
    std::fs::write(
        list_of(&cut),
        binary::encode(&entries[..4], ListFormat::default()),
    )
    .unwrap();
    let cp_before = std::fs::read_to_string(&cp).unwrap();
    verify(&cut, N2, &["--refs", s(&refs), "--checkpoint", s(&cp)])
        .code(1)
        .stdout(predicate::str::contains(
            "FAILED: list truncated behind the checkpoint",
        ));
    assert_eq!(
        std::fs::read_to_string(&cp).unwrap(),
        cp_before,
        "a failed round does not move the checkpoint"
    );
    // The honest list: only the one new entry is read.
    verify(&ev2, N2, &["--refs", s(&refs), "--checkpoint", s(&cp)])
        .code(0)
        .stdout(predicate::str::contains(
            "baseline: checkpoint, from entry 7",
        ))
        .stdout(predicate::str::contains("entries: 1 read, 8 in the list"));
    assert!(
        std::fs::read_to_string(&cp)
            .unwrap()
            .contains("entries 8\n")
    );
}

#[test]
fn malformed_evidence_is_an_error_naming_file_and_position() {
    let m = Machine::new();
    m.measure_all();
    let ev = m.quote(N1, "ev");
    let refs = m.refs();

    let bad = copy_dir(&ev, &m.dir.path().join("bad-quote"));
    let msg = std::fs::read(bad.join("quote.msg")).unwrap();
    std::fs::write(bad.join("quote.msg"), &msg[..msg.len() - 5]).unwrap();
    verify(&bad, N1, &[])
        .code(2)
        .stderr(predicate::str::contains("quote.msg"))
        .stderr(predicate::str::contains("byte offset"));

    let bad = copy_dir(&ev, &m.dir.path().join("bad-pcrs"));
    std::fs::write(bad.join("quote.pcrs"), b"short").unwrap();
    verify(&bad, N1, &[])
        .code(2)
        .stderr(predicate::str::contains("quote.pcrs"))
        .stderr(predicate::str::contains("byte offset"));

    let bad = copy_dir(&ev, &m.dir.path().join("bad-list"));
    let list = std::fs::read(list_of(&bad)).unwrap();
    std::fs::write(list_of(&bad), &list[..list.len() - 7]).unwrap();
    verify(&bad, N1, &[])
        .code(2)
        .stderr(predicate::str::contains("binary_runtime_measurements"))
        .stderr(predicate::str::contains("offset"));

    let bad_refs = m.dir.path().join("bad-refs");
    std::fs::write(&bad_refs, "# ok\nfile sha256:zz /x\n").unwrap();
    verify(&ev, N1, &["--refs", s(&bad_refs)])
        .code(2)
        .stderr(predicate::str::contains("bad-refs"))
        .stderr(predicate::str::contains("line 2"));

    let bad_policy = m.dir.path().join("bad-policy.json");
    std::fs::write(
        &bad_policy,
        "{\n  \"meta\": {\"version\": 1},\n  \"digests\": [\n",
    )
    .unwrap();
    verify(&ev, N1, &["--refs", s(&bad_policy)])
        .code(2)
        .stderr(predicate::str::contains("bad-policy.json"))
        .stderr(predicate::str::contains("line 3"));

    verify(&ev, N1, &["--refs", "/dev/zero"])
        .code(2)
        .stderr(predicate::str::contains("not a regular file"));
    verify(&ev, N1, &["--refs", s(&refs), "--nonce", "zz"]).code(2);
}

#[test]
fn refs_built_from_a_tree_or_a_known_good_list_accept_the_machine() {
    let m = Machine::new();
    m.measure_all();
    let ev = m.quote(N1, "ev");
    let out = m.dir.path();
    imactl()
        .args(["attest", "refs", "--tree"])
        .arg(m.files())
        .arg("-o")
        .arg(out.join("tree.refs"))
        .assert()
        .success();
    imactl()
        .args(["attest", "refs", "--keylime", "--from-list"])
        .arg(list_of(&ev))
        .arg("-o")
        .arg(out.join("list.json"))
        .assert()
        .success();
    let tree_refs = std::fs::read_to_string(out.join("tree.refs")).unwrap();
    assert_eq!(tree_refs.lines().count(), 5, "{tree_refs}");
    for r in ["tree.refs", "list.json"] {
        verify(&ev, N1, &["--refs", s(&out.join(r))])
            .code(0)
            .stdout(predicate::str::contains("5 by digest"));
    }
    // A file changed after the references were taken is caught by both.
    std::fs::write(m.files().join("f0"), b"changed\n").unwrap();
    m.measure_all();
    let ev = m.quote(N2, "ev2");
    for r in ["tree.refs", "list.json"] {
        verify(&ev, N2, &["--refs", s(&out.join(r))])
            .code(1)
            .stdout(predicate::str::contains(format!(
                "{}/f0 {}): digest not in the references",
                m.files().display(),
                HashAlgo::SHA256.digest(b"changed\n").unwrap()
            )));
    }
    imactl().args(["attest", "refs"]).assert().code(2);
}

/// `attest quote` reads a list, it never starts one: a state directory without a list is an
/// error, and no list (nor PCR extend) is made there.
#[test]
fn quote_without_a_list_fails_and_starts_none() {
    let m = Machine::new();
    let out = m.dir.path().join("ev");
    imactl()
        .args([
            "attest",
            "quote",
            "--tpm",
            &m.tpm.tcti(),
            "--nonce",
            N1,
            "--out",
        ])
        .arg(&out)
        .arg("--state")
        .arg(m.state())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no measurement list"));
    assert!(!m.state().join("binary_runtime_measurements").exists());
    assert!(!out.exists());
    // PCR 10 untouched: a list started now still replays from zero.
    m.measure_all();
    let ev = m.quote(N1, "ev");
    verify(&ev, N1, &["--refs", s(&m.refs())]).success();
}

/// `refs --dpkg` from dpkg's records (a database made for the test: `--dpkg-admindir`), and
/// from the real one for an installed package.
#[test]
fn refs_from_installed_packages_leave_out_changed_files() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let (same, changed, conf) = (
        root.join("bin/same"),
        root.join("bin/changed"),
        root.join("conf"),
    );
    std::fs::write(&same, b"as shipped\n").unwrap();
    std::fs::write(&changed, b"edited here\n").unwrap();
    std::fs::write(&conf, b"local config\n").unwrap();
    std::os::unix::fs::symlink(&same, root.join("bin/link")).unwrap();
    let info = d.path().join("db/info");
    std::fs::create_dir_all(&info).unwrap();
    let md5 = |b: &[u8]| hex::encode(HashAlgo::MD5.digest(b).unwrap().as_bytes());
    let rel = |p: &Path| p.strip_prefix("/").unwrap().display().to_string();
    std::fs::write(
        info.join("demo:amd64.list"),
        format!(
            "/.\n{}\n{}\n{}\n{}\n{}\n",
            root.join("bin").display(),
            same.display(),
            changed.display(),
            conf.display(),
            root.join("bin/link").display()
        ),
    )
    .unwrap();
    std::fs::write(
        info.join("demo:amd64.md5sums"),
        format!(
            "{}  {}\n{}  {}\n",
            md5(b"as shipped\n"),
            rel(&same),
            md5(b"as shipped before the edit\n"),
            rel(&changed)
        ),
    )
    .unwrap();
    let out = imactl()
        .args(["attest", "refs", "--dpkg", "demo", "--dpkg-admindir"])
        .arg(d.path().join("db"))
        .output()
        .unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    let sha = |b: &[u8]| hex::encode(HashAlgo::SHA256.digest(b).unwrap().as_bytes());
    assert!(
        text.contains(&format!(
            "file sha256:{} {}",
            sha(b"as shipped\n"),
            same.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "file sha256:{} {}",
            sha(b"local config\n"),
            conf.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("bin/changed") && !text.contains("bin/link"),
        "{text}"
    );
    assert!(
        err.contains(&format!(
            "{}: changed since its package installed it",
            changed.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("1 packages, 2 files referenced (1 without a package md5"),
        "{err}"
    );
    // Not installed: an error naming the package.
    imactl()
        .args(["attest", "refs", "--dpkg", "nope", "--dpkg-admindir"])
        .arg(d.path().join("db"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--dpkg nope: not installed"));
    // The real database: attr (installed for the tests) is referenced as it is on disk.
    let out = imactl()
        .args(["attest", "refs", "--dpkg", "attr"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let getfattr = std::fs::read("/usr/bin/getfattr").unwrap();
    assert!(
        text.contains(&format!("file sha256:{} /usr/bin/getfattr", sha(&getfattr))),
        "{text}"
    );
}
