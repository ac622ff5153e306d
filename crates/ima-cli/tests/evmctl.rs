//! Lists written by our encoder are accepted by the real `evmctl ima_measurement --pcrs`
//! (ima-evm-utils 1.4, kernel-ima.md §12.5/§12.7), and evmctl and `imactl log verify` agree
//! when a digest is flipped. evmctl must be installed (`.ci/run` installs ima-evm-utils).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::process::Command;

use ima_core::codec::Endian;
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::replay::{self, PcrBank};
use ima_core::log::{Entry, ListFormat, binary};
use ima_core::template::{Event, InodeAttrs, TemplateDesc};

const BANKS: [HashAlgo; 2] = [HashAlgo::SHA1, HashAlgo::SHA256];

/// PCR 0-9 as in kernel-ima.md §13.8: `H_bank("pcr<i>")`.
fn firmware_pcrs() -> Vec<PcrBank> {
    BANKS
        .iter()
        .map(|&a| {
            let mut b = PcrBank::new(a);
            for i in 0..10 {
                b.set(i, a.digest(format!("pcr{i}").as_bytes()).unwrap());
            }
            b
        })
        .collect()
}

/// A list like a kernel with `ima_template=ima-sig ima_hash=sha256` writes: boot_aggregate,
/// files, a signature, a buffer event, a violation, an entry on PCR 11.
fn build_list(legacy: bool) -> Vec<Entry> {
    let fw = firmware_pcrs();
    let e = Endian::Little;
    let mut out = Vec::new();
    let mut add = |desc: &TemplateDesc, pcr: u32, ev: Event<'_>, violation: bool| {
        let data = desc.build(&ev, e).unwrap();
        out.push(if violation {
            Entry::violation(pcr, desc, data, HashAlgo::SHA1).unwrap()
        } else {
            Entry::new(pcr, desc, data, HashAlgo::SHA1, e).unwrap()
        });
    };
    let file = |name: &'static [u8], content: &[u8]| Event {
        digest: Some(HashAlgo::SHA256.digest(content).unwrap()),
        legacy_digest: Some(HashAlgo::SHA1.digest(content).unwrap()),
        name,
        inode: Some(InodeAttrs {
            uid: 0,
            gid: 0,
            mode: 0o100755,
        }),
        ..Event::default()
    };
    if legacy {
        let ima = TemplateDesc::builtin("ima").unwrap();
        let agg = replay::boot_aggregate(&fw[0]).unwrap();
        add(
            &ima,
            10,
            Event {
                digest: Some(agg),
                name: b"boot_aggregate",
                ..Event::default()
            },
            false,
        );
        for i in 0..40u32 {
            let name: &'static [u8] = Box::leak(format!("/usr/bin/tool {i}").into_bytes().into());
            add(&ima, 10 + i % 2, file(name, &i.to_le_bytes()), false);
        }
        return out;
    }
    let sig = TemplateDesc::builtin("ima-sig").unwrap();
    let ng = TemplateDesc::builtin("ima-ng").unwrap();
    let buf = TemplateDesc::builtin("ima-buf").unwrap();
    let agg = replay::boot_aggregate(&fw[1]).unwrap();
    add(
        &sig,
        10,
        Event {
            digest: Some(agg),
            name: b"boot_aggregate",
            ..Event::default()
        },
        false,
    );
    add(&sig, 10, file(b"/usr/bin/hello world", b"hello"), false);
    let signed = Event {
        ima_xattr: Some(&[3, 2, 4, 0xa5, 0xca, 0xcb, 0x28, 0, 4, 1, 2, 3, 4]),
        ..file(b"/usr/bin/signed", b"signed")
    };
    add(&sig, 10, signed, false);
    let kv = b"6.1.0-test";
    add(
        &buf,
        10,
        Event {
            digest: Some(HashAlgo::SHA256.digest(kv).unwrap()),
            name: b"kernel_version",
            buf: Some(kv),
            ..Event::default()
        },
        false,
    );
    let zero = Event {
        digest: Digest::zero(HashAlgo::SHA256),
        ..file(b"/tmp/busy", b"")
    };
    add(&sig, 10, zero, true);
    for i in 0..30u32 {
        let name: &'static [u8] = Box::leak(format!("/etc/conf-{i}").into_bytes().into());
        add(
            &ng,
            if i % 3 == 0 { 11 } else { 10 },
            file(name, &i.to_be_bytes()),
            false,
        );
    }
    out
}

/// Writes the list and the PCR files (evmctl's `PCR-NN:` form) the TPM would hold.
fn write_case(dir: &Path, entries: &[Entry]) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let list = dir.join("binary_runtime_measurements");
    std::fs::write(&list, binary::encode(entries, ListFormat::default())).unwrap();
    let r = replay::replay(
        entries,
        HashAlgo::SHA1,
        &BANKS,
        &[None, None],
        Endian::Little,
    )
    .unwrap();
    assert!(r.bad_digests.is_empty());
    let mut files = Vec::new();
    for (fw, bank) in firmware_pcrs().into_iter().zip(&r.banks) {
        let mut all = fw;
        for (i, v) in bank.values().iter() {
            all.set(i, *v);
        }
        let p = dir.join(format!("pcrs_{}.txt", bank.algo));
        std::fs::write(&p, all.to_evmctl()).unwrap();
        files.push(p);
    }
    (list, files)
}

fn evmctl(list: &Path, pcrs: &[std::path::PathBuf], ignore_violations: bool) -> (i32, String) {
    let mut c = Command::new("evmctl");
    c.arg("ima_measurement");
    if ignore_violations {
        c.arg("--ignore-violations");
    }
    for (a, p) in ["sha1", "sha256"].iter().zip(pcrs) {
        c.arg("--pcrs").arg(format!("{a},{}", p.display()));
    }
    let out = c
        .arg(list)
        .output()
        .expect("evmctl (ima-evm-utils) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn imactl_verify(list: &Path, pcrs: &[std::path::PathBuf]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imactl"));
    c.args(["log", "verify"]).arg(list);
    for (a, p) in ["sha1", "sha256"].iter().zip(pcrs) {
        c.arg("--pcrs").arg(format!("{a}:{}", p.display()));
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn evmctl_accepts_our_lists() {
    for legacy in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let entries = build_list(legacy);
        let (list, pcrs) = write_case(tmp.path(), &entries);
        let (code, text) = evmctl(&list, &pcrs, true);
        assert_eq!(code, 0, "legacy={legacy}: {text}");
        assert!(
            text.contains("Matched per TPM bank calculated digest(s)."),
            "{text}"
        );
        let (code, text) = imactl_verify(&list, &pcrs);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("ok: PCR 11 bank sha256"), "{text}");
        if !legacy {
            // Without --ignore-violations evmctl replays the violation as zeros: no match.
            let (code, text) = evmctl(&list, &pcrs, false);
            assert_eq!(code, 1, "{text}");
        }
    }
}

#[test]
fn evmctl_and_imactl_both_reject_a_flipped_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = build_list(false);
    let (list, pcrs) = write_case(tmp.path(), &entries);
    let good = std::fs::read(&list).unwrap();
    // Offsets of entry 3's template digest and of the last byte of its d-ng digest.
    let mut at = 0;
    for e in &entries[..2] {
        at += binary::encode(std::slice::from_ref(e), ListFormat::default()).len();
    }
    let len3 = binary::encode(std::slice::from_ref(&entries[2]), ListFormat::default()).len();
    let d_ng_end = at + 4 + 20 + 4 + 7 + 4 + 4 + 8 + 32 - 1;
    for flip in [at + 4, at + 23, d_ng_end, at + len3 - 1] {
        let mut bytes = good.clone();
        bytes[flip] ^= 0x55;
        std::fs::write(&list, &bytes).unwrap();
        let (code, text) = evmctl(&list, &pcrs, true);
        assert_eq!(code, 1, "evmctl, flip at {flip}: {text}");
        let (code, text) = imactl_verify(&list, &pcrs);
        assert_eq!(code, 1, "imactl, flip at {flip}: {text}");
        assert!(text.contains("entry 3 (ima-sig /usr/bin/signed)"), "{text}");
    }
}
