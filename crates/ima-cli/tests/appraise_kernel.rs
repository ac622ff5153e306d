//! The appraisal decisions of a real Linux 6.1 kernel (testdata/kernel-6.1 scenarios
//! f-appraise-imasig and g-evm-portable-sig) reproduced from the captured inputs: every
//! xattr of `data-disk-xattrs.txt` decodes, and for every access in `access_results.tsv`
//! our decision (policy from `policy.written`, keys from `keys/`, digests and
//! uid:gid:mode from `data-disk-manifest.tsv`, EVM as initialised in `workload.log`) is the
//! kernel's: OK ⇔ pass, EACCES ⇔ fail with the cause the kernel audited in `dmesg.txt`.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;

use ima_core::appraise::{self, ImaXattr, Mode, Request, Requirements};
use ima_core::codec::Codec;
use ima_core::digsig::{Keyring, Signature, Verifier};
use ima_core::evm::{self, EvmConfig, EvmKeys, Inode, InodeMeta};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::integrity::Status;
use ima_core::policy::{Event, Func, Mask, Policy, RuleFlags, Uuid};

/// The data disk's UUID (testdata/kernel-6.1/README.md).
const DATA_UUID: [u8; 16] = [
    0x8f, 0x3c, 0x5b, 0x0e, 0x1d, 0x2a, 0x4c, 0x3b, 0x9e, 0x4f, 0x5a, 0x6b, 0x7c, 0x8d, 0x9e, 0x0f,
];
const EXT4_MAGIC: u64 = 0xef53;

/// Scripts whose exec also appraises their interpreter (the kernel audits the interpreter:
/// f-appraise-imasig/dmesg.txt `name="/data/bin/busybox" cause=IMA-signature-required`).
const INTERPRETERS: &[(&str, &str)] = &[("/data/signed/good.sh", "/data/bin/busybox")];

/// sha1, sha256, uid, gid, permission bits.
type ManifestEntry = (Vec<u8>, Vec<u8>, u32, u32, u16);

struct Capture {
    xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// path -> (sha1, sha256, uid, gid, permission bits)
    manifest: BTreeMap<String, ManifestEntry>,
    policy: Policy,
    keys: Keyring,
    evm_x509: bool,
    /// path -> first audited appraise cause
    causes: BTreeMap<String, String>,
    accesses: Vec<(String, String, String)>,
}

fn load(name: &str) -> Capture {
    let dir = ima_test::kernel_capture(name);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"))
    };
    let mut xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut cur = String::new();
    for line in read("data-disk-xattrs.txt").lines() {
        if let Some(f) = line.strip_prefix("# file: ") {
            cur = format!("/data/{f}");
            xattrs.entry(cur.clone()).or_default();
        } else if let Some((k, v)) = line.split_once("=0x") {
            xattrs
                .get_mut(&cur)
                .unwrap()
                .insert(k.to_owned(), hex::decode(v).unwrap());
        }
    }
    let mut manifest = BTreeMap::new();
    for line in read("data-disk-manifest.tsv").lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let ugm: Vec<&str> = f[3].split(':').collect();
        manifest.insert(
            f[0].to_owned(),
            (
                hex::decode(f[1]).unwrap(),
                hex::decode(f[2]).unwrap(),
                ugm[0].parse().unwrap(),
                ugm[1].parse().unwrap(),
                u16::from_str_radix(ugm[2], 8).unwrap(),
            ),
        );
    }
    let policy = Policy::parse(&read("policy.written")).unwrap();
    let mut keys = Keyring::new();
    keys.add_bytes(&std::fs::read(dir.join("keys/ima-cert.der")).unwrap())
        .unwrap();
    // workload.log: "echo 2 > evm rc=0" enables EVM_INIT_X509 (scenario g only).
    let evm_x509 = read("workload.log").contains("echo 2 > evm rc=0");
    let mut causes = BTreeMap::new();
    for line in read("dmesg.txt").lines() {
        if !line.contains("type=1800") || !line.contains("op=appraise_data") {
            continue;
        }
        let cause = line
            .split(" cause=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let file = line
            .split(" name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        causes
            .entry(file.to_owned())
            .or_insert_with(|| cause.to_owned());
    }
    let accesses = read("access_results.tsv")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    Capture {
        xattrs,
        manifest,
        policy,
        keys,
        evm_x509,
        causes,
        accesses,
    }
}

impl Capture {
    /// The kernel's decision for one hook on one file: `None` if not appraised.
    fn decide(&self, path: &str, func: Func, mask: Mask) -> Option<Result<(), String>> {
        let (sha1, sha256, uid, gid, perm) = &self.manifest[path];
        let mut ev = Event::new(func, mask);
        ev.fowner = *uid;
        ev.fgroup = *gid;
        ev.fsmagic = EXT4_MAGIC;
        ev.fsname = "ext4";
        ev.fsuuid = Uuid(DATA_UUID);
        let eval = self.policy.evaluate(&ev);
        if !eval.appraise() {
            return None;
        }
        let flags = eval.flags();
        let req = Requirements {
            digsig: flags.contains(RuleFlags::DIGSIG_REQUIRED),
            verity: flags.contains(RuleFlags::VERITY_REQUIRED),
            allowed_algos: eval.allowed_algos.map(|a| a.0),
        };
        let empty = BTreeMap::new();
        let xattrs = self.xattrs.get(path).unwrap_or(&empty);
        let label = xattrs.get(evm::XATTR_IMA).map(Vec::as_slice);
        let algo = appraise::hash_algo(label, HashAlgo::SHA256);
        let digest = match algo {
            HashAlgo::SHA1 => Digest::new(algo, sha1),
            HashAlgo::SHA256 => Digest::new(algo, sha256),
            other => panic!("{path}: no manifest digest for {other}"),
        };
        let inode = Inode {
            xattrs: xattrs.clone(),
            meta: InodeMeta {
                ino: 0,
                generation: 0,
                uid: *uid,
                gid: *gid,
                mode: 0o100000 | perm,
            },
            fs_uuid: DATA_UUID,
        };
        let ring: &(dyn Verifier + Sync) = &self.keys;
        let keys = EvmKeys {
            hmac: None,
            x509: self.evm_x509.then_some(ring),
        };
        let evm_status = evm::verify_ima_xattr(&EvmConfig::default(), &keys, &inode).status;
        let r = Request {
            mode: Mode::Enforce,
            req,
            ima: label.map_or(ImaXattr::Absent, ImaXattr::Value),
            digest,
            evm: evm_status,
            new_file: false,
            size: 1,
        };
        let a = appraise::appraise(&r, &self.keys);
        Some(match a.verdict().failure() {
            None => Ok(()),
            Some(f) => Err(f.cause.to_string()),
        })
    }

    fn check(&self, name: &str) {
        assert!(!self.accesses.is_empty());
        for (op, path, result) in &self.accesses {
            let hooks: Vec<(Func, Mask)> = match op.as_str() {
                "read" => vec![(Func::FileCheck, Mask::MAY_READ)],
                // execve: FILE_CHECK on the open (MAY_EXEC), then BPRM_CHECK.
                "exec" => vec![
                    (Func::FileCheck, Mask::MAY_EXEC),
                    (Func::BprmCheck, Mask::MAY_EXEC),
                ],
                other => panic!("unknown op {other}"),
            };
            let mut files = vec![path.as_str()];
            if op == "exec" {
                files.extend(INTERPRETERS.iter().filter(|i| i.0 == path).map(|i| i.1));
            }
            let mut outcome: Result<(), (String, String)> = Ok(());
            'files: for f in &files {
                for &(func, mask) in &hooks {
                    if let Some(Err(cause)) = self.decide(f, func, mask) {
                        outcome = Err((f.to_string(), cause));
                        break 'files;
                    }
                }
            }
            match (result.as_str(), &outcome) {
                ("OK", Ok(())) => {}
                ("EACCES", Err((file, cause))) => {
                    let kernel = self.causes.get(file).unwrap_or_else(|| {
                        panic!("{name}: {op} {path}: kernel audited nothing for {file}")
                    });
                    assert_eq!(cause, kernel, "{name}: {op} {path}: cause");
                }
                _ => panic!("{name}: {op} {path}: kernel said {result}, we say {outcome:?}"),
            }
        }
    }
}

#[test]
fn every_xattr_decodes() {
    for name in ["f-appraise-imasig", "g-evm-portable-sig"] {
        let c = load(name);
        assert_eq!(c.xattrs.len(), 10, "{name}");
        for (path, xs) in &c.xattrs {
            for (k, v) in xs {
                match v[0] {
                    0x03 | 0x05 => {
                        let s =
                            Signature::from_bytes(v).unwrap_or_else(|e| panic!("{path} {k}: {e}"));
                        assert_eq!(s.to_vec(), *v, "{path} {k}: re-encodes");
                    }
                    0x04 => assert_eq!(v.len(), 34, "{path} {k}"),
                    t => panic!("{path} {k}: unexpected type {t:#x}"),
                }
            }
        }
    }
}

#[test]
fn f_appraise_imasig_matches_the_kernel() {
    let c = load("f-appraise-imasig");
    assert!(!c.evm_x509);
    c.check("f-appraise-imasig");
}

#[test]
fn g_evm_portable_sig_matches_the_kernel() {
    let c = load("g-evm-portable-sig");
    assert!(c.evm_x509);
    c.check("g-evm-portable-sig");
}

#[test]
fn g_evm_statuses() {
    // The EVM verdicts behind scenario g's causes, one by one.
    let c = load("g-evm-portable-sig");
    let status = |path: &str, mode_override: Option<u16>| {
        let (_, _, uid, gid, perm) = c.manifest[path];
        let inode = Inode {
            xattrs: c.xattrs[path].clone(),
            meta: InodeMeta {
                uid,
                gid,
                mode: 0o100000 | mode_override.unwrap_or(perm),
                ..InodeMeta::default()
            },
            fs_uuid: DATA_UUID,
        };
        let ring: &(dyn Verifier + Sync) = &c.keys;
        let keys = EvmKeys {
            hmac: None,
            x509: Some(ring),
        };
        evm::verify(&EvmConfig::default(), &keys, &inode).status
    };
    assert_eq!(
        status("/data/signed/evm-good.txt", None),
        Status::PassImmutable
    );
    // Content tampered after signing: EVM still passes (it covers the label, not the data).
    assert_eq!(
        status("/data/signed/evm-tampered.txt", None),
        Status::PassImmutable
    );
    // chmod 600 after signing at 644.
    assert_eq!(
        status("/data/signed/evm-badmeta.txt", None),
        Status::FailImmutable
    );
    assert_eq!(
        status("/data/signed/evm-badmeta.txt", Some(0o644)),
        Status::PassImmutable
    );
    assert_eq!(status("/data/signed/good.txt", None), Status::NoLabel);
}
