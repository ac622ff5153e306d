//! Every security.ima/security.evm value the Linux 6.1 captures wrote decodes and re-encodes
//! byte for byte, and the IMA signatures verify (or fail) as the kernel decided for reads
//! in the imasig scenario (f-appraise-imasig: appraise_type=imasig, no EVM enforcement).
//! Content digests come from the capture's data-disk-manifest.tsv (computed in the guest).

// Test helpers outside #[test] fns: a malformed fixture should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ima_core::codec::Codec;
use ima_core::digsig::{Keyring, VerifyError};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::xattr::XattrValue;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/kernel-6.1")
        .join(name)
}

/// (file under /data, attribute name, value) from `getfattr -d -e hex` output.
fn xattrs(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let text = std::fs::read_to_string(dir.join("data-disk-xattrs.txt")).unwrap();
    let mut out = Vec::new();
    let mut file = String::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("# file: ") {
            file = format!("/data/{f}");
        } else if let Some((name, v)) = line.split_once("=0x") {
            out.push((file.clone(), name.to_owned(), hex::decode(v).unwrap()));
        }
    }
    out
}

/// path → (sha1, sha256) from data-disk-manifest.tsv.
fn manifest(dir: &Path) -> HashMap<String, (Digest, Digest)> {
    let text = std::fs::read_to_string(dir.join("data-disk-manifest.tsv")).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let d1 = Digest::new(HashAlgo::SHA1, &hex::decode(f[1]).unwrap()).unwrap();
            let d256 = Digest::new(HashAlgo::SHA256, &hex::decode(f[2]).unwrap()).unwrap();
            (f[0].to_owned(), (d1, d256))
        })
        .collect()
}

#[test]
fn every_captured_xattr_round_trips() {
    let mut n = 0;
    for s in ["f-appraise-imasig", "g-evm-portable-sig"] {
        for (file, name, v) in xattrs(&capture(s)) {
            let x = XattrValue::from_bytes(&v).unwrap_or_else(|e| panic!("{s} {file} {name}: {e}"));
            assert_eq!(x.to_vec(), v, "{file} {name}");
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} values");
}

#[test]
fn ima_signatures_verify_as_the_kernel_decided() {
    let dir = capture("f-appraise-imasig");
    let mut keys = Keyring::new();
    keys.add_bytes(&std::fs::read(dir.join("keys/ima-cert.der")).unwrap())
        .unwrap();
    let digests = manifest(&dir);
    let results = std::fs::read_to_string(dir.join("access_results.tsv")).unwrap();
    let kernel: HashMap<&str, &str> = results
        .lines()
        .filter_map(|l| l.strip_prefix("read\t"))
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let mut checked = 0;
    for (file, name, v) in xattrs(&dir) {
        if name != "security.ima" {
            continue;
        }
        let Some(sig) = XattrValue::from_bytes(&v).unwrap().signature().cloned() else {
            continue;
        };
        let (d1, d256) = digests[&file];
        let d = if sig.hash_algo == HashAlgo::SHA1 {
            d1
        } else {
            d256
        };
        let ours = sig.verify(&keys, &d);
        let Some(&verdict) = kernel.get(file.as_str()) else {
            continue;
        };
        assert_eq!(
            ours.is_ok(),
            verdict == "OK",
            "{file}: ours {ours:?}, kernel {verdict}"
        );
        if file.ends_with("wrongkey.txt") {
            assert!(matches!(ours, Err(VerifyError::NoKey(_))), "{ours:?}");
        }
        if file.ends_with("/tampered.txt") {
            assert_eq!(ours, Err(VerifyError::BadSignature));
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} signatures compared");
}
