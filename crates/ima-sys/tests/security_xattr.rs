//! `security.ima` and `security.evm` on a real filesystem: an ext4 the test mounts itself
//! ([`ima_test::Ext4`]), as root (CAP_SYS_ADMIN is needed to write `security.ima`). Either
//! missing is a failure, not a skip.

use std::fs::File;

use ima_sys::xattr::{self, SetMode};

/// kernel-ima.md §13.1: `evmctl ima_hash -a sha256` of "hello world\n".
const SHA256_XATTR: &str = "0404a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";

#[test]
fn security_ima_round_trips_on_the_temp_filesystem() {
    let ext4 = ima_test::Ext4::new();
    let dir = tempfile::tempdir_in(ext4.path()).unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"hello world\n").unwrap();
    let f = File::open(&p).unwrap();
    let v = hex::decode(SHA256_XATTR).unwrap();
    xattr::set(&f, "security.ima", &v, SetMode::Any).unwrap_or_else(|e| {
        panic!(
            "cannot set security.ima in {} ({e}): run as root on ext4/xfs/btrfs",
            dir.path().display()
        )
    });
    assert_eq!(xattr::get(&f, "security.ima").unwrap(), Some(v.clone()));
    // getfattr, the independent reader, sees the same bytes.
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "security.ima"])
        .arg(&p)
        .output()
        .expect("getfattr (package attr) must be installed");
    assert!(out.status.success());
    assert_eq!(out.stdout, v, "getfattr --only-values prints the raw value");
    let names = xattr::list(&f).unwrap();
    assert!(names.iter().any(|n| n == "security.ima"), "{names:?}");
    assert!(xattr::remove(&f, "security.ima").unwrap());
    assert_eq!(xattr::get(&f, "security.ima").unwrap(), None);
    // A value past the 1 KiB first try exercises the size-query path.
    let big = vec![0x05u8; 3000];
    xattr::set_path(&p, "security.evm", &big, SetMode::Create).unwrap();
    assert_eq!(xattr::get_path(&p, "security.evm").unwrap(), Some(big));
}
