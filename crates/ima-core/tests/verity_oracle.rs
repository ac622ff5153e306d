//! The userspace fs-verity digest equals `fsverity digest` (fsverity-utils, the oracle; it
//! computes the digest in userspace too, so no fs-verity filesystem is needed). Sizes cover
//! empty, one partial block, exact block and level boundaries for sha256 (128 hashes per
//! block) and sha512 (64; the largest size gives it three levels).

use std::process::Command;

use ima_core::hash::HashAlgo;
use ima_core::verity;

#[test]
fn matches_fsverity_utils() {
    let dir = tempfile::tempdir().unwrap();
    const B: usize = verity::BLOCK_SIZE;
    let sizes = [
        0,
        1,
        12,
        B - 1,
        B,
        B + 1,
        64 * B,
        64 * B + 5,
        128 * B,
        128 * B + 1,
        129 * B - 3,
        64 * 64 * B + B,
    ];
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|j| (j * 31 + i) as u8).collect();
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, &data).unwrap();
        for (algo, name) in [(HashAlgo::SHA256, "sha256"), (HashAlgo::SHA512, "sha512")] {
            let out = Command::new("fsverity")
                .args(["digest", "--compact", "--block-size=4096"])
                .arg(format!("--hash-alg={name}"))
                .arg(&p)
                .output()
                .expect("fsverity (Debian package fsverity) must be installed");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = String::from_utf8(out.stdout).unwrap();
            let mut h = verity::VerityHasher::new(algo).unwrap();
            for chunk in data.chunks(10_000) {
                h.update(chunk);
            }
            assert_eq!(h.finalize().to_hex(), want.trim(), "size {n} {name}");
        }
    }
}
