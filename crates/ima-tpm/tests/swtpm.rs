//! ima-tpm against a real swtpm, with tpm2-tools as the independent oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::process::Command;

use ima_core::hash::{Digest, HashAlgo};
use ima_test::Swtpm;
use ima_tpm::Tcti;
use ima_tpm::quote::{self, AkPublic, Attest};

fn tool(tcti: &str, args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .arg("-T")
        .arg(tcti)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (install tpm2-tools): {e}", args[0]));
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tpm2_pcrread(tcti: &str, dir: &Path, sel: &str) -> Vec<u8> {
    let out = dir.join("pcrread.bin");
    tool(tcti, &["tpm2_pcrread", sel, "-o", out.to_str().unwrap()]);
    std::fs::read(out).unwrap()
}

#[test]
fn extend_reads_back_and_matches_tpm2_pcrread() {
    let sw = Swtpm::start();
    let mut tpm = sw.tcti().parse::<Tcti>().unwrap().open().unwrap();
    assert!(tpm.kind().is_tpm());
    assert!(tpm.banks().contains(&HashAlgo::SHA1), "{:?}", tpm.banks());
    assert!(tpm.banks().contains(&HashAlgo::SHA256));

    let mut expect: Vec<Digest> = tpm
        .banks()
        .iter()
        .map(|b| Digest::zero(*b).unwrap())
        .collect();
    for i in 0..3u8 {
        let ds: Vec<Digest> = tpm
            .banks()
            .iter()
            .map(|b| b.digest(&[i]).unwrap())
            .collect();
        tpm.extend(10, &ds).unwrap();
        for (e, d) in expect.iter_mut().zip(&ds) {
            *e = e.extend(d).unwrap();
        }
    }
    let banks = tpm.banks().to_vec();
    for (b, e) in banks.iter().zip(&expect) {
        assert_eq!(tpm.pcr_read(*b, &[10]).unwrap(), vec![*e], "{b}");
    }
    // swtpm serves one connection at a time: hang up before tpm2-tools connects.
    assert!(tpm.pcr_read(HashAlgo::SHA256, &[24]).is_err());
    assert!(
        tpm.extend(10, &[HashAlgo::SHA1.digest(b"x").unwrap()])
            .is_err()
    );
    let z = tpm.pcr_read(HashAlgo::SHA256, &[0, 9]).unwrap();
    assert!(z.iter().all(|d| d.iter().all(|b| *b == 0)));
    drop(tpm);
    let dir = tempfile::tempdir().unwrap();
    let sha1 = expect.iter().find(|d| d.algo() == HashAlgo::SHA1).unwrap();
    let sha256 = expect
        .iter()
        .find(|d| d.algo() == HashAlgo::SHA256)
        .unwrap();
    assert_eq!(
        tpm2_pcrread(&sw.tcti(), dir.path(), "sha1:10"),
        sha1.as_bytes()
    );
    assert_eq!(
        tpm2_pcrread(&sw.tcti(), dir.path(), "sha256:10"),
        sha256.as_bytes()
    );
}

#[test]
fn our_quote_verifies_with_us_and_with_tpm2_checkquote() {
    let sw = Swtpm::start();
    let mut tpm = sw.tcti().parse::<Tcti>().unwrap().open().unwrap();
    let d: Vec<Digest> = tpm
        .banks()
        .iter()
        .map(|b| b.digest(b"q").unwrap())
        .collect();
    tpm.extend(10, &d).unwrap();
    let ak = tpm.create_ak().unwrap();
    assert_eq!(ak, tpm.create_ak().unwrap(), "the AK is deterministic");
    let nonce = b"0123456789abcdef";
    let sel = quote::parse_selection("sha256:10,0+sha1:10").unwrap();
    let q = tpm.quote(nonce, &sel).unwrap();
    assert_eq!(q.ak, ak);
    let c = quote::verify(&q.ak, &q.attest, &q.signature, nonce, Some(&q.pcrs)).unwrap();
    assert!(c.ok(), "{c:?}");
    assert_eq!(c.attest.selection, sel);
    // Wrong nonce, tampered attest, wrong PCR values: each detected.
    assert!(
        !quote::verify(&q.ak, &q.attest, &q.signature, b"other", None)
            .unwrap()
            .ok()
    );
    let mut bad = q.attest.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(
        !quote::verify(&q.ak, &bad, &q.signature, nonce, None)
            .unwrap()
            .signature_ok
    );
    let mut pcrs = q.pcrs.clone();
    let first = pcrs[0].iter().next().unwrap().0;
    pcrs[0].set(first, Digest::ones(HashAlgo::SHA256).unwrap());
    assert_eq!(
        quote::verify(&q.ak, &q.attest, &q.signature, nonce, Some(&pcrs))
            .unwrap()
            .pcrs_ok,
        Some(false)
    );

    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(p("ak.pem"), q.ak.to_pem()).unwrap();
    std::fs::write(p("quote.msg"), &q.attest).unwrap();
    std::fs::write(p("quote.sig"), &q.signature).unwrap();
    std::fs::write(p("quote.pcrs"), q.pcrs_values_bytes()).unwrap();
    let out = Command::new("tpm2_checkquote")
        .args([
            "-u",
            &p("ak.pem"),
            "-m",
            &p("quote.msg"),
            "-s",
            &p("quote.sig"),
        ])
        .args([
            "-f",
            &p("quote.pcrs"),
            "-l",
            "sha256:0,10+sha1:10",
            "-g",
            "sha256",
        ])
        .args(["-q", &hex::encode(nonce)])
        .output()
        .expect("run tpm2_checkquote (install tpm2-tools)");
    assert!(
        out.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it rejects a wrong nonce, so the success above means something.
    let out = Command::new("tpm2_checkquote")
        .args([
            "-u",
            &p("ak.pem"),
            "-m",
            &p("quote.msg"),
            "-s",
            &p("quote.sig"),
        ])
        .args(["-g", "sha256", "-q", "00"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn tpm2_tools_quote(key: &str) {
    let sw = Swtpm::start();
    let t = sw.tcti();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    tool(
        &t,
        &["tpm2_pcrextend", &format!("10:sha256={}", "ab".repeat(32))],
    );
    tool(
        &t,
        &[
            "tpm2_createprimary",
            "-C",
            "e",
            "-g",
            "sha256",
            "-G",
            key,
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
            "-c",
            &p("ak.ctx"),
        ],
    );
    tool(
        &t,
        &[
            "tpm2_readpublic",
            "-c",
            &p("ak.ctx"),
            "-f",
            "pem",
            "-o",
            &p("ak.pem"),
        ],
    );
    let nonce = "c0ffee00112233";
    tool(
        &t,
        &[
            "tpm2_quote",
            "-c",
            &p("ak.ctx"),
            "-l",
            "sha256:10,1+sha1:10",
            "-q",
            nonce,
            "-m",
            &p("msg"),
            "-s",
            &p("sig"),
            "-o",
            &p("pcrs"),
            "-F",
            "values",
            "-g",
            "sha256",
        ],
    );
    let ak = AkPublic::from_pem(&std::fs::read_to_string(p("ak.pem")).unwrap()).unwrap();
    let msg = std::fs::read(p("msg")).unwrap();
    let sig = std::fs::read(p("sig")).unwrap();
    let a = Attest::parse(&msg).unwrap();
    let pcrs = a
        .split_pcr_values(&std::fs::read(p("pcrs")).unwrap())
        .unwrap();
    let c = quote::verify(&ak, &msg, &sig, &hex::decode(nonce).unwrap(), Some(&pcrs)).unwrap();
    assert!(c.ok(), "{key}: {c:?}");
    assert!(
        !quote::verify(&ak, &msg, &sig, b"x", Some(&pcrs))
            .unwrap()
            .ok()
    );
}

#[test]
fn tpm2_quote_ecc_verifies_with_us() {
    tpm2_tools_quote("ecc256:ecdsa-sha256:null");
}

#[test]
fn tpm2_quote_rsa_verifies_with_us() {
    tpm2_tools_quote("rsa2048:rsassa-sha256:null");
}

/// The `device:` backend (`DeviceTransport`: one write per command, one read per response)
/// against swtpm in character-device mode over a SOCK_SEQPACKET socketpair, since this
/// machine has no /dev/tpm*: extend and read back every bank, and a quote that
/// tpm2_checkquote accepts.
#[test]
fn the_device_backend_against_swtpm_chardev() {
    let mut sw = ima_test::SwtpmChardev::start();
    let dev = ima_tpm::DeviceTransport::from_file(sw.take_device(), "swtpm chardev");
    let mut tpm = ima_tpm::HwTpm::new(dev).unwrap();
    use ima_tpm::Tpm as _;
    assert_eq!(tpm.kind(), ima_tpm::TpmKind::Device("swtpm chardev".into()));
    let banks = tpm.banks().to_vec();
    assert!(banks.contains(&HashAlgo::SHA1) && banks.contains(&HashAlgo::SHA256));
    let mut expect: Vec<Digest> = banks.iter().map(|b| Digest::zero(*b).unwrap()).collect();
    for i in 0..3u8 {
        let ds: Vec<Digest> = banks.iter().map(|b| b.digest(&[i]).unwrap()).collect();
        tpm.extend(10, &ds).unwrap();
        for (e, d) in expect.iter_mut().zip(&ds) {
            // PCR_new = H(PCR_old || digest), computed here independently of ima-tpm.
            *e = e
                .algo()
                .hasher()
                .unwrap()
                .chain(e.as_bytes())
                .chain(d.as_bytes())
                .finalize();
        }
    }
    for (b, e) in banks.iter().zip(&expect) {
        assert_eq!(tpm.pcr_read(*b, &[10]).unwrap(), vec![*e], "{b}");
    }
    // A TPM error comes back through the device framing as an error, not a hang.
    assert!(tpm.pcr_read(HashAlgo::SHA256, &[24]).is_err());

    let nonce = b"device-nonce";
    let sel = quote::parse_selection("sha256:10+sha1:10").unwrap();
    let q = tpm.quote(nonce, &sel).unwrap();
    let c = quote::verify(&q.ak, &q.attest, &q.signature, nonce, Some(&q.pcrs)).unwrap();
    assert!(c.ok(), "{c:?}");
    let sha256 = expect
        .iter()
        .find(|d| d.algo() == HashAlgo::SHA256)
        .unwrap();
    assert!(
        q.pcrs
            .iter()
            .any(|b| b.algo() == HashAlgo::SHA256
                && b.iter().collect::<Vec<_>>() == [(10, sha256)]),
        "{:?}",
        q.pcrs
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(p("ak.pem"), q.ak.to_pem()).unwrap();
    std::fs::write(p("quote.msg"), &q.attest).unwrap();
    std::fs::write(p("quote.sig"), &q.signature).unwrap();
    std::fs::write(p("quote.pcrs"), q.pcrs_values_bytes()).unwrap();
    let out = Command::new("tpm2_checkquote")
        .args([
            "-u",
            &p("ak.pem"),
            "-m",
            &p("quote.msg"),
            "-s",
            &p("quote.sig"),
        ])
        .args([
            "-f",
            &p("quote.pcrs"),
            "-l",
            "sha256:10+sha1:10",
            "-g",
            "sha256",
        ])
        .args(["-q", &hex::encode(nonce)])
        .output()
        .expect("run tpm2_checkquote (install tpm2-tools)");
    assert!(
        out.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// TPM2_ReadClock against tpm2_readclock (the oracle), and across a swtpm restart: the
/// reset count moves, which is how the engine knows the PCRs were reset.
#[test]
fn clock_info_matches_tpm2_readclock_and_counts_resets() {
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    let mut tpm = tcti.parse::<Tcti>().unwrap().open().unwrap();
    let before = tpm.clock_info().unwrap();
    drop(tpm); // swtpm serves one client at a time
    let yaml = tool(&tcti, &["tpm2_readclock"]);
    let field = |k: &str| -> u64 {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("{k} in {yaml}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(u64::from(before.reset_count), field("reset_count"));
    assert_eq!(u64::from(before.restart_count), field("restart_count"));
    assert!(field("clock") >= before.clock);
    let sw = sw.restart();
    let mut tpm = sw.tcti().parse::<Tcti>().unwrap().open().unwrap();
    let after = tpm.clock_info().unwrap();
    assert_ne!(
        (after.reset_count, after.restart_count),
        (before.reset_count, before.restart_count),
        "{before:?} -> {after:?}"
    );
}
