//! `imactl evm sign|verify|hmac` and `imactl appraise` on real files with real
//! `security.*` xattrs (a temp dir on the root filesystem, ext4 here; the tests run as
//! root), against the real evmctl 1.4 (/usr/bin/evmctl) both ways, plus the kernel-ima.md
//! §13.5–13.7 vectors through the command line. A missing tool or a filesystem without
//! `security.*` xattrs fails the test; nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ima_core::digsig::Certificate;

const TIMEOUT: Duration = Duration::from_secs(60);
const UUID: &str = "11223344-5566-7788-99aa-bbccddeeff00";
/// security.ima of `hello world\n` (sha256, type 0x04), kernel-ima.md §13.5.
const IMA_HELLO: &str = "0404a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";

/// Runs a command, killing it (and failing) after [`TIMEOUT`].
fn run(mut cmd: Command) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e} (is it installed?)"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{desc} timed out");
        }
    }
}

fn imactl(args: &[&str]) -> Output {
    let mut c = Command::cargo_bin("imactl").unwrap();
    c.args(args);
    run(c)
}

fn evmctl(args: &[&str]) -> Output {
    let mut c = Command::new("/usr/bin/evmctl");
    c.args(args);
    run(c)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn testdata(f: &str) -> PathBuf {
    ima_test::testdata().join("sigs").join(f)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A temp dir on the root filesystem with `f` = `hello world\n` (root, 0644) labelled with
/// its sha256 hash; fails when security.* xattrs cannot be set there.
struct Fixture {
    dir: tempfile::TempDir,
    /// DER copies of the test certificates (evmctl 1.4 reads DER).
    rsa_der: PathBuf,
    ec_der: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello world\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        set_xattr(&f, "security.ima", &hex::decode(IMA_HELLO).unwrap());
        let der = |pem: &str, name: &str| {
            let certs = Certificate::parse_all(&std::fs::read(testdata(pem)).unwrap()).unwrap();
            let p = dir.path().join(name);
            std::fs::write(&p, certs[0].der()).unwrap();
            p
        };
        let rsa_der = der("rsa_x509.pem", "rsa.der");
        let ec_der = der("ec_x509.pem", "ec.der");
        Self {
            dir,
            rsa_der,
            ec_der,
        }
    }

    fn f(&self) -> PathBuf {
        self.dir.path().join("f")
    }
}

fn set_xattr(p: &Path, name: &str, v: &[u8]) {
    ima_sys::xattr::set_path(p, name, v, ima_sys::xattr::SetMode::Any).unwrap_or_else(|e| {
        panic!(
            "{}: cannot set {name} ({e}): the tests need root and a filesystem with security.* xattrs",
            p.display()
        )
    });
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    ima_sys::xattr::get_path(p, name).unwrap()
}

#[test]
fn hmac_vector_13_7() {
    let fx = Fixture::new();
    let key = fx.dir.path().join("key");
    std::fs::write(&key, (0u8..32).collect::<Vec<u8>>()).unwrap();
    let common = [
        "evm",
        "hmac",
        "-n",
        "--hmac-key",
        s(&key),
        "--ino",
        "10085558",
        "--generation=3714297332",
        "--uid",
        "0",
        "--gid",
        "0",
        "--mode",
        "33188",
        "--ima",
        IMA_HELLO,
    ];
    let f = fx.f();
    let with_uuid = ok(&imactl(
        &[&common[..], &[&format!("--uuid={UUID}"), s(&f)]].concat(),
    ));
    assert_eq!(
        with_uuid.split_whitespace().next(),
        Some("021a87aa486703ac1a58d85dd7ecc9cca5b841d1cf")
    );
    // A bare `--uuid` and evmctl's empty `--uuid=` both leave the UUID out.
    for bare in ["--uuid", "--uuid="] {
        let without = ok(&imactl(&[&common[..], &[bare, s(&f)]].concat()));
        assert_eq!(
            without.split_whitespace().next(),
            Some("02e21b00b3cc2ba6f833a73436bcc1f79979caae52"),
            "{bare}"
        );
    }
}

/// kernel-ima.md §13.5 (evmctl 1.4 `sign --portable`; RSA PKCS#1 v1.5 is deterministic).
const PORTABLE_13_5: &str = "050204a5cacb280100b3e0740b61d817a59ebacef5afd5d12d50b66ea764ec3e326fd51670ca087a4252b300aadebf415f8d22eb81de710a227999b008d7913445f54fea461e834f697a5a8b2b04d9f80a9caf041f420686631cc530813aa29d13b061a9e29dedc1c0f923c0a90840f164014ee8cf1199f4a6ea4c0e6507c24c3acaedee81a7194935651c523eab77a2bb1d351006666ee60c4d6bf4933df613abcc32784e5718a1eb2a1ff393937a268a7cbedd77b9c6caf80aa48d348c94639e2a8e638d8622c23a43208ec18ce5fbf623a38182611bf1e3bb80958fb6bd904a9973028a46b0b63c81f91559539d4eb92346bdfab51ae954ef9550cdd19066f71ec2d5c6dfa54630";
/// kernel-ima.md §13.6 (ino 10085267, generation 1140783678, the UUID above).
const SIG_13_6: &str = "030204a5cacb2801005ffa0943c8dc82aadbf2eb3b85debd615324645ddb12299ba2c90da01b3425a351afcba13bb32108941a54dc596dea0c8c44482b86272325278ebad0509c4b6db17b618ec287b11d044b9b7a4dff407f3b44e35f8d8d531a984443929f262afe7cdf90756b260fe874571e90f7149cfbb23e761896d6bb2bc2827a846336fd12a1644a95954b108919cf8c3c667057e27aa47658bf580b1cfa94ff80ef20f0c34dcb02519b3195fd8433afb32e8f9209efd96ecd9f436af23b58ac7e2eb0f9087a29857a7f71771191615e3d289499042a2b5ab022f3cdac5b78a475c930c2f25034aef5b51cdae8b794609d12a52a318edf8232a4fbda3c478cecd21602ce12";

#[test]
fn sign_vectors_13_5_and_13_6() {
    let fx = Fixture::new();
    let f = fx.f();
    let key = testdata("rsa_priv.pem");
    let portable = ok(&imactl(&[
        "evm",
        "sign",
        "-n",
        "--portable",
        "-a",
        "sha256",
        "-k",
        s(&key),
        s(&f),
    ]));
    assert_eq!(portable.split_whitespace().next(), Some(PORTABLE_13_5));
    let sig = ok(&imactl(&[
        "evm",
        "sign",
        "-n",
        "-a",
        "sha256",
        "-k",
        s(&key),
        "--ino",
        "10085267",
        "--generation=1140783678",
        &format!("--uuid={UUID}"),
        s(&f),
    ]));
    assert_eq!(sig.split_whitespace().next(), Some(SIG_13_6));
}

#[test]
fn evmctl_verifies_our_signatures() {
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    for (key, cert) in [("rsa_priv.pem", &fx.rsa_der), ("ec_priv.pem", &fx.ec_der)] {
        for algo in ["sha256", "sha384", "sha512"] {
            for portable in [false, true] {
                let k = testdata(key);
                let mut args: Vec<String> = ["evm", "sign", "-a", algo, "-k", s(&k)]
                    .into_iter()
                    .map(String::from)
                    .collect();
                if portable {
                    args.push("--portable".into());
                } else {
                    args.push(uuid.clone());
                }
                args.push(s(&f).into());
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                ok(&imactl(&a));
                let ty = get_xattr(&f, "security.evm").unwrap()[0];
                assert_eq!(ty, if portable { 5 } else { 3 });
                let mut v = vec!["verify", "--key", s(cert)];
                if !portable {
                    v.push(&uuid);
                }
                v.push(s(&f));
                let o = evmctl(&v);
                assert_eq!(
                    code(&o),
                    0,
                    "{key} {algo} portable={portable}: {}",
                    text(&o)
                );
                // And we accept what we wrote.
                let o = imactl(&[
                    "evm",
                    "verify",
                    "--keys",
                    s(cert),
                    if portable { "--uuid" } else { &uuid },
                    s(&f),
                ]);
                assert_eq!(code(&o), 0, "{}", text(&o));
            }
        }
    }
}

#[test]
fn we_verify_evmctl_signatures() {
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    for (key, cert) in [
        ("rsa_priv.pem", "rsa_x509.pem"),
        ("ec_priv.pem", "ec_x509.pem"),
    ] {
        for algo in ["sha1", "sha256", "sha384", "sha512"] {
            for portable in [false, true] {
                let k = testdata(key);
                let mut args = vec!["sign", "--key", s(&k), "-a", algo];
                args.push(if portable { "--portable" } else { &uuid });
                args.push(s(&f));
                ok(&evmctl(&args));
                let out = ok(&imactl(&[
                    "evm",
                    "verify",
                    "--keys",
                    s(&testdata(cert)),
                    &uuid,
                    s(&f),
                ]));
                let want = if portable { "pass_immutable" } else { "pass" };
                assert_eq!(
                    out.trim(),
                    format!("{}: {want}", f.display()),
                    "{key} {algo}"
                );
            }
        }
    }
}

#[test]
fn evm_detects_tampering_of_label_mode_and_owner() {
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    let verify = |extra: &[&str]| {
        let mut a = vec!["evm", "verify", "--keys", s(&fx.rsa_der), &uuid];
        a.extend_from_slice(extra);
        a.push(s(&f));
        imactl(&a)
    };
    let rsa_key = testdata("rsa_priv.pem");
    for portable in [true, false] {
        let mut a = vec!["sign", "--key", s(&rsa_key), "-a", "sha256"];
        a.push(if portable { "--portable" } else { &uuid });
        a.push(s(&f));
        ok(&evmctl(&a));
        let fail = if portable { "fail_immutable" } else { "fail" };
        assert_eq!(code(&verify(&[])), 0);
        // One byte of security.ima.
        let mut ima = hex::decode(IMA_HELLO).unwrap();
        ima[20] ^= 1;
        set_xattr(&f, "security.ima", &ima);
        let o = verify(&[]);
        assert_eq!(code(&o), 1, "{}", text(&o));
        assert!(ok_or_fail(&o).contains(fail));
        set_xattr(&f, "security.ima", &hex::decode(IMA_HELLO).unwrap());
        assert_eq!(code(&verify(&[])), 0);
        // The mode.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(code(&verify(&[])), 1);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The owner and the group.
        std::os::unix::fs::chown(&f, Some(1), None).unwrap();
        assert_eq!(code(&verify(&[])), 1);
        std::os::unix::fs::chown(&f, Some(0), Some(1)).unwrap();
        assert_eq!(code(&verify(&[])), 1);
        std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
        assert_eq!(code(&verify(&[])), 0);
        // One byte of security.evm itself.
        let mut evm = get_xattr(&f, "security.evm").unwrap();
        let n = evm.len();
        evm[n - 1] ^= 1;
        set_xattr(&f, "security.evm", &evm);
        assert_eq!(code(&verify(&[])), 1);
    }
    // A 0x03 signature also covers the inode's generation (not a copy's).
    ok(&evmctl(&[
        "sign",
        "--key",
        s(&testdata("rsa_priv.pem")),
        &uuid,
        s(&f),
    ]));
    assert_eq!(code(&verify(&[])), 0);
    assert_eq!(code(&verify(&["--generation=1"])), 1);
}

fn ok_or_fail(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn hmac_round_trip_and_tampering() {
    let fx = Fixture::new();
    let f = fx.f();
    let key = fx.dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let uuid = format!("--uuid={UUID}");
    ok(&imactl(&[
        "evm",
        "hmac",
        "--hmac-key",
        s(&key),
        &uuid,
        s(&f),
    ]));
    let v = get_xattr(&f, "security.evm").unwrap();
    assert_eq!((v.len(), v[0]), (21, 2));
    let verify = || imactl(&["evm", "verify", "--hmac-key", s(&key), &uuid, s(&f)]);
    assert_eq!(ok(&verify()).trim(), format!("{}: pass", f.display()));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(code(&verify()), 1);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(code(&verify()), 0);
    // Another key, or no UUID: different HMAC.
    let other = fx.dir.path().join("other");
    std::fs::write(&other, [8u8; 32]).unwrap();
    assert_eq!(
        code(&imactl(&[
            "evm",
            "verify",
            "--hmac-key",
            s(&other),
            &uuid,
            s(&f)
        ])),
        1
    );
    assert_eq!(
        code(&imactl(&[
            "evm",
            "verify",
            "--hmac-key",
            s(&key),
            "--uuid",
            s(&f)
        ])),
        1
    );
}

/// `imactl appraise` with an EVM-protected hash label: content, label, mode and owner
/// tampering each give the kernel's cause; fix mode relabels content changes only when
/// EVM does not forbid it, exactly as the kernel writes.
#[test]
fn appraise_detects_tampering_with_evm() {
    let fx = Fixture::new();
    let f = fx.f();
    let pol = fx.dir.path().join("policy");
    std::fs::write(&pol, "appraise func=FILE_CHECK fowner=0\n").unwrap();
    let uuid = format!("--uuid={UUID}");
    ok(&evmctl(&[
        "sign",
        "--key",
        s(&testdata("rsa_priv.pem")),
        "--portable",
        s(&f),
    ]));
    let appraise = |mode: &str| {
        imactl(&[
            "appraise",
            "--policy",
            s(&pol),
            "--mode",
            mode,
            "--evm-keys",
            s(&fx.rsa_der),
            &uuid,
            s(&f),
        ])
    };
    let line = |o: &Output| ok_or_fail(o).trim().to_owned();
    let o = appraise("enforce");
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(line(&o).starts_with(&format!("{}: FILE_CHECK: pass", f.display())));
    // Content: one byte.
    std::fs::write(&f, b"hello world!").unwrap();
    let o = appraise("enforce");
    assert_eq!(code(&o), 1);
    assert!(
        line(&o).contains(": fail invalid-hash denied"),
        "{}",
        line(&o)
    );
    // In log mode: same verdict, not denied.
    let o = appraise("log");
    assert!(line(&o).contains(": fail invalid-hash ["), "{}", line(&o));
    std::fs::write(&f, b"hello world\n").unwrap();
    // Label: one byte (EVM catches it before the hash is compared).
    let mut ima = hex::decode(IMA_HELLO).unwrap();
    ima[33] ^= 1;
    set_xattr(&f, "security.ima", &ima);
    let o = appraise("enforce");
    assert!(
        line(&o).contains(": fail_immutable invalid-fail-immutable denied"),
        "{}",
        line(&o)
    );
    set_xattr(&f, "security.ima", &hex::decode(IMA_HELLO).unwrap());
    // Mode and owner.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(line(&appraise("enforce")).contains("invalid-fail-immutable"));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&f, Some(0), Some(5)).unwrap();
    assert!(line(&appraise("enforce")).contains("invalid-fail-immutable"));
    std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
    assert_eq!(code(&appraise("enforce")), 0);
    // No security.evm at all: missing-HMAC.
    ima_sys::xattr::remove_path(&f, "security.evm").unwrap();
    assert!(line(&appraise("enforce")).contains(": no_label missing-HMAC denied"));
}

#[test]
fn appraise_fix_mode_writes_what_the_kernel_writes() {
    let fx = Fixture::new();
    let dir = fx.dir.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    let pol = fx.dir.path().join("policy");
    std::fs::write(&pol, "appraise func=FILE_CHECK fowner=0\n").unwrap();
    let (a, b, c, d) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
    for p in [&a, &b, &c, &d] {
        std::fs::write(p, p.to_str().unwrap()).unwrap();
    }
    // a: no label. b: a stale sha1 label (type 0x01). c: an evmctl signature over other
    // content. d: a correct label followed by extra bytes (passes, left alone).
    set_xattr(&b, "security.ima", &[&[1u8][..], &[0xaa; 20]].concat());
    ok(&evmctl(&[
        "ima_sign",
        "--key",
        s(&testdata("rsa_priv.pem")),
        s(&c),
    ]));
    std::fs::write(&c, b"changed").unwrap();
    let d_label = [
        ima_core::appraise::hash_xattr(
            &ima_core::hash::HashAlgo::SHA256
                .digest(d.to_str().unwrap().as_bytes())
                .unwrap(),
        ),
        b"extra".to_vec(),
    ]
    .concat();
    set_xattr(&d, "security.ima", &d_label);
    let c_label = get_xattr(&c, "security.ima").unwrap();

    let o = imactl(&[
        "appraise",
        "--policy",
        s(&pol),
        "--mode",
        "fix",
        "-r",
        s(&dir),
    ]);
    let out = ok_or_fail(&o);
    assert_eq!(code(&o), 1, "the signed file still fails: {}", text(&o));
    let sha = |p: &Path, algo| {
        ima_core::appraise::hash_xattr(&ima_sys::file::hash_path(p, algo).unwrap())
    };
    use ima_core::hash::HashAlgo;
    assert_eq!(
        get_xattr(&a, "security.ima").unwrap(),
        sha(&a, HashAlgo::SHA256)
    );
    // The old label implied sha1: the new one is sha1 too, legacy type 0x01.
    let nb = get_xattr(&b, "security.ima").unwrap();
    assert_eq!(nb, sha(&b, HashAlgo::SHA1));
    assert_eq!((nb[0], nb.len()), (1, 21));
    assert_eq!(
        get_xattr(&c, "security.ima").unwrap(),
        c_label,
        "signatures are never rewritten"
    );
    assert_eq!(get_xattr(&d, "security.ima").unwrap(), d_label);
    assert!(
        out.contains("pass (was no_label missing-hash) fixed"),
        "{out}"
    );
    assert!(out.contains("pass (was fail invalid-hash) fixed"), "{out}");
    assert!(out.contains(": fail invalid-signature ["), "{out}");
    // Now enforce passes everywhere but the signed file.
    let o = imactl(&[
        "appraise",
        "--policy",
        s(&pol),
        "--keys",
        s(&fx.rsa_der),
        "-r",
        s(&dir),
    ]);
    let out = ok_or_fail(&o);
    assert_eq!(out.matches(": pass [").count(), 3, "{out}");
    assert_eq!(out.matches("invalid-signature denied").count(), 1, "{out}");
}

#[test]
fn appraise_requires_signatures_and_checks_them() {
    let fx = Fixture::new();
    let f = fx.f();
    let pol = fx.dir.path().join("policy");
    std::fs::write(
        &pol,
        "appraise func=FILE_CHECK fowner=0 appraise_type=imasig\n",
    )
    .unwrap();
    let run = || {
        imactl(&[
            "appraise",
            "--policy",
            s(&pol),
            "--keys",
            s(&fx.rsa_der),
            s(&f),
        ])
    };
    let o = run();
    assert!(
        ok_or_fail(&o).contains(": fail IMA-signature-required denied"),
        "{}",
        text(&o)
    );
    for key in ["rsa_priv.pem", "ec_priv.pem"] {
        ok(&evmctl(&["ima_sign", "--key", s(&testdata(key)), s(&f)]));
        let o = run();
        if key == "rsa_priv.pem" {
            assert_eq!(code(&o), 0, "{}", text(&o));
        } else {
            // Signed by a key that is not in the keyring.
            assert!(
                ok_or_fail(&o).contains(": fail invalid-signature denied"),
                "{}",
                text(&o)
            );
        }
    }
    // Not appraised: a file owned by someone else.
    std::os::unix::fs::chown(&f, Some(1000), None).unwrap();
    let o = run();
    assert_eq!(code(&o), 0);
    assert!(ok_or_fail(&o).contains("not appraised"), "{}", text(&o));
}

/// A small tree (nested directories, a symlink that must not be followed) of files labelled
/// with their sha256 hash; returns the regular files.
fn labelled_tree(root: &Path, n: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in 0..n {
        let d = root.join(format!("d{}", i % 3)).join(format!("e{}", i % 2));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join(format!("f{i}"));
        std::fs::write(&f, vec![i as u8; i * 1000]).unwrap();
        files.push(f);
    }
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    ok(&imactl(&["hash", "-r", s(root)]));
    files
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn evm_sign_and_verify_recursive_interop_with_evmctl() {
    let fx = Fixture::new();
    let uuid = format!("--uuid={UUID}");
    let root = fx.dir.path().join("tree");
    let files = labelled_tree(&root, 12);
    let rsa = testdata("rsa_priv.pem");
    let ec = testdata("ec_priv.pem");

    // 0x03 with RSA over the whole tree: one summary, every file signed, evmctl agrees.
    let o = imactl(&["evm", "sign", "-r", "-k", s(&rsa), &uuid, s(&root)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stderr(&o).contains("imactl: evm sign: 12 files"),
        "{}",
        text(&o)
    );
    for f in &files {
        assert_eq!(
            get_xattr(f, "security.evm").unwrap()[0],
            3,
            "{}",
            f.display()
        );
        let o = evmctl(&["verify", "--key", s(&fx.rsa_der), &uuid, s(f)]);
        assert_eq!(code(&o), 0, "{}: {}", f.display(), text(&o));
    }
    let o = imactl(&[
        "evm",
        "verify",
        "-r",
        "--keys",
        s(&fx.rsa_der),
        &uuid,
        s(&root),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 12);
    assert!(stderr(&o).contains("12 files"), "{}", text(&o));

    // Portable 0x05 with ECDSA/sha384, with --imasig (security.ima signed first, same fd).
    let o = imactl(&[
        "evm",
        "sign",
        "-r",
        "--portable",
        "--imasig",
        "-a",
        "sha384",
        "-k",
        s(&ec),
        s(&root),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    for f in &files {
        assert_eq!(get_xattr(f, "security.evm").unwrap()[0], 5);
        assert_eq!(get_xattr(f, "security.ima").unwrap()[0], 3);
        let o = evmctl(&["verify", "--key", s(&fx.ec_der), s(f)]);
        assert_eq!(code(&o), 0, "{}: {}", f.display(), text(&o));
        let o = evmctl(&["ima_verify", "--key", s(&fx.ec_der), s(f)]);
        assert_eq!(code(&o), 0, "{}: {}", f.display(), text(&o));
    }

    // One tampered mode and one file without any protected xattr: verify -r reports the
    // failure (exit 1), sign -r reports the error (exit 2) and still signs the rest.
    std::fs::set_permissions(&files[4], std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = imactl(&[
        "evm",
        "verify",
        "-r",
        "-q",
        "--keys",
        s(&fx.ec_der),
        s(&root),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        out.trim(),
        format!(
            "{}: fail_immutable (invalid signature: signature does not verify)",
            files[4].display()
        ),
        "only the tampered file is printed with -q"
    );
    std::fs::set_permissions(&files[4], std::fs::Permissions::from_mode(0o644)).unwrap();

    // The other direction: evmctl sign -r, imactl evm verify -r.
    ok(&evmctl(&["sign", "-r", "--key", s(&rsa), &uuid, s(&root)]));
    let o = imactl(&[
        "evm",
        "verify",
        "-r",
        "--keys",
        s(&fx.rsa_der),
        &uuid,
        s(&root),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stderr(&o).contains("12 files, "), "{}", text(&o));

    let bare = root.join("d0").join("bare");
    std::fs::write(&bare, b"no label").unwrap();
    let o = imactl(&["evm", "sign", "-r", "-k", s(&rsa), &uuid, s(&root)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!(
            "imactl: error: {}: no EVM-protected xattr is present: the kernel would refuse",
            bare.display()
        )),
        "{}",
        text(&o)
    );
    assert!(stderr(&o).contains("13 files, "), "{}", text(&o));
    assert!(stderr(&o).contains(", 0 failed, 1 errors"), "{}", text(&o));
    assert!(get_xattr(&bare, "security.evm").is_none());
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn evm_change_refuses_what_a_portable_signature_covers() {
    let fx = Fixture::new();
    let f = fx.f();
    let rsa = testdata("rsa_priv.pem");
    ok(&imactl(&[
        "evm",
        "sign",
        "--portable",
        "-k",
        s(&rsa),
        s(&f),
    ]));
    let evm_before = get_xattr(&f, "security.evm").unwrap();
    let change = |op: &[&str]| {
        let mut a = vec!["evm", "change", "--keys", s(&fx.rsa_der)];
        a.extend_from_slice(op);
        a.push(s(&f));
        imactl(&a)
    };
    // A real change of mode, owner or security.ima: EPERM as evm_inode_setattr /
    // evm_protect_xattr return it, and nothing is touched.
    for op in [
        &["--chmod", "600"][..],
        &["--chown", "1000"],
        &["--chown", ":1000"],
        &["--setxattr", "security.ima=0404aa"],
        &["--removexattr", "security.ima"],
    ] {
        let o = change(op);
        assert_eq!(code(&o), 1, "{op:?}: {}", text(&o));
        assert!(
            stdout(&o).contains("refused: EPERM (Operation not permitted)")
                && stdout(&o).contains("pass_immutable"),
            "{op:?}: {}",
            text(&o)
        );
    }
    assert_eq!(mode_of(&f), 0o644);
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), 0);
    assert_eq!(
        get_xattr(&f, "security.ima").unwrap(),
        hex::decode(IMA_HELLO).unwrap()
    );
    assert_eq!(get_xattr(&f, "security.evm").unwrap(), evm_before);
    // IMA's hook runs first for security.ima: an undefined type is EINVAL, an algorithm
    // outside the SETXATTR_CHECK list EACCES.
    let o = change(&["--setxattr", "security.ima=07aa"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        stdout(&o).contains("refused by IMA: EINVAL"),
        "{}",
        text(&o)
    );
    let sha1 = format!("security.ima=01{}", "22".repeat(20));
    let o = change(&["--setxattr-algos", "sha256,sha512", "--setxattr", &sha1]);
    assert!(
        stdout(&o)
            .contains("refused by IMA: EACCES [audit op=set_data cause=denied-hash-algorithm]"),
        "{}",
        text(&o)
    );
    // Writing security.evm from userspace as an HMAC: EPERM before any check.
    let o = change(&["--setxattr", &format!("security.evm=02{}", "00".repeat(20))]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stdout(&o).contains("only signatures"), "{}", text(&o));
    // No change at all (same mode, same security.ima) is allowed.
    ok(&change(&["--chmod", "644"]));
    ok(&change(&[
        "--setxattr",
        &format!("security.ima={IMA_HELLO}"),
    ]));
    // An unprotected xattr is none of EVM's business.
    ok(&change(&["--setxattr", "user.note=6869"]));
    // A POSIX ACL is judged by the mode it gives (evm_xattr_acl_change): u::rw,g::r,o::r
    // is 0644 again and allowed; u::rwx would be 0744 and is refused.
    let acl = |user: &str| {
        format!(
            "system.posix_acl_access=02000000\
             0100{user}00ffffffff04000400ffffffff20000400ffffffff"
        )
    };
    ok(&change(&["--setxattr", &acl("06")]));
    let o = change(&["--setxattr", &acl("07")]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stdout(&o).contains("pass_immutable"), "{}", text(&o));
    assert_eq!(mode_of(&f), 0o644);
    assert_eq!(get_xattr(&f, "security.evm").unwrap(), evm_before);
    let o = evmctl(&["verify", "--key", s(&fx.rsa_der), s(&f)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn signature_becomes_hmac_as_the_kernel_converts_it() {
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    let rsa = testdata("rsa_priv.pem");
    let key = fx.dir.path().join("hmac-key");
    std::fs::write(&key, (0u8..32).collect::<Vec<u8>>()).unwrap();
    ok(&imactl(&["evm", "sign", "-k", s(&rsa), &uuid, s(&f)]));
    let o = evmctl(&["verify", "--key", s(&fx.rsa_der), &uuid, s(&f)]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    // Without --fix verification changes nothing; with it a verified 0x03 becomes the
    // kernel's HMAC of the same inode (what `evm hmac` computes, vector-tested in §13.7).
    let verify = |extra: &[&str]| {
        let mut a = vec![
            "evm",
            "verify",
            "--keys",
            s(&fx.rsa_der),
            "--hmac-key",
            s(&key),
            &uuid,
        ];
        a.extend_from_slice(extra);
        a.push(s(&f));
        imactl(&a)
    };
    assert_eq!(
        stdout(&verify(&[])).trim(),
        format!("{}: pass", f.display())
    );
    assert_eq!(get_xattr(&f, "security.evm").unwrap()[0], 3);
    // An immutable inode (chattr +i, IS_IMMUTABLE) is never converted.
    let set_immutable = |on: bool| {
        let file = std::fs::File::open(&f).unwrap();
        let flags = rustix::fs::ioctl_getflags(&file).unwrap();
        let flags = if on {
            flags | rustix::fs::IFlags::IMMUTABLE
        } else {
            flags - rustix::fs::IFlags::IMMUTABLE
        };
        rustix::fs::ioctl_setflags(&file, flags).unwrap();
    };
    set_immutable(true);
    let o = verify(&["--fix"]);
    set_immutable(false);
    assert_eq!(
        stdout(&o).trim(),
        format!("{}: pass", f.display()),
        "{}",
        text(&o)
    );
    assert_eq!(get_xattr(&f, "security.evm").unwrap()[0], 3);
    let want = ok(&imactl(&[
        "evm",
        "hmac",
        "-n",
        "--hmac-key",
        s(&key),
        &uuid,
        s(&f),
    ]));
    let o = verify(&["--fix"]);
    assert_eq!(
        stdout(&o).trim(),
        format!("{}: pass (signature replaced by the HMAC)", f.display()),
        "{}",
        text(&o)
    );
    let evm = get_xattr(&f, "security.evm").unwrap();
    assert_eq!(evm.len(), 21);
    assert_eq!(want.split_whitespace().next().unwrap(), hex::encode(&evm));
    // An HMAC is never "converted" again.
    assert_eq!(
        stdout(&verify(&["--fix"])).trim(),
        format!("{}: pass", f.display())
    );
    // evmctl no longer finds a signature.
    let o = evmctl(&["verify", "--key", s(&fx.rsa_der), &uuid, s(&f)]);
    assert_ne!(code(&o), 0, "{}", text(&o));

    // A chmod through `evm change` with the HMAC key: allowed (PASS), and the HMAC is
    // recomputed over the new mode, so it still verifies.
    let change = |op: &[&str]| {
        let mut a = vec!["evm", "change", "--hmac-key", s(&key), &uuid];
        a.extend_from_slice(op);
        a.push(s(&f));
        imactl(&a)
    };
    let o = change(&["--chmod", "600"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains("HMAC written"), "{}", text(&o));
    assert_eq!(mode_of(&f), 0o600);
    let o = imactl(&["evm", "verify", "--hmac-key", s(&key), &uuid, s(&f)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A chmod behind EVM's back (plain chmod) breaks the HMAC; EVM then refuses every
    // protected change (invalid HMACs are never recomputed into valid ones).
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = change(&["--chmod", "600"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stdout(&o).contains("EVM status fail"), "{}", text(&o));
    assert!(
        stdout(&o).contains("audit op=appraise_metadata"),
        "{}",
        text(&o)
    );
    assert_eq!(mode_of(&f), 0o640);

    // A 0x03 signature, HMAC key loaded: the pre-hook's verification converts it, then
    // the post-hook recomputes the HMAC over the changed owner.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&imactl(&["evm", "sign", "-k", s(&rsa), &uuid, s(&f)]));
    let o = imactl(&[
        "evm",
        "change",
        "--keys",
        s(&fx.rsa_der),
        "--hmac-key",
        s(&key),
        &uuid,
        "--chown",
        "1000:1000",
        s(&f),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("replaced by the HMAC, HMAC written"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), 1000);
    assert_eq!(get_xattr(&f, "security.evm").unwrap().len(), 21);
    let o = imactl(&["evm", "verify", "--hmac-key", s(&key), &uuid, s(&f)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // Removing the only protected xattr: the post-hook removes security.evm.
    let o = change(&["--removexattr", "security.ima"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("removed (no protected xattr left)"),
        "{}",
        text(&o)
    );
    assert!(get_xattr(&f, "security.evm").is_none());
}

#[test]
fn x509_only_evm_lets_signed_metadata_go_stale() {
    // With only the .evm keyring (no HMAC key), a verified 0x03 signature allows a chmod
    // and nothing recomputes it: afterwards the signature no longer verifies (evmctl agrees).
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    ok(&imactl(&[
        "evm",
        "sign",
        "-k",
        s(&testdata("rsa_priv.pem")),
        &uuid,
        s(&f),
    ]));
    let o = imactl(&[
        "evm",
        "change",
        "--keys",
        s(&fx.rsa_der),
        &uuid,
        "--chmod",
        "600",
        s(&f),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("security.evm not updated"),
        "{}",
        text(&o)
    );
    assert_eq!(mode_of(&f), 0o600);
    let o = evmctl(&["verify", "--key", s(&fx.rsa_der), &uuid, s(&f)]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    // Now FAIL: a further change is refused...
    let o = imactl(&[
        "evm",
        "change",
        "--keys",
        s(&fx.rsa_der),
        &uuid,
        "--chmod",
        "644",
        s(&f),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    // ...unless EVM_ALLOW_METADATA_WRITES is set.
    ok(&imactl(&[
        "evm",
        "change",
        "--keys",
        s(&fx.rsa_der),
        &uuid,
        "--allow-metadata-writes",
        "--chmod",
        "644",
        s(&f),
    ]));
    assert_eq!(mode_of(&f), 0o644);
    let o = evmctl(&["verify", "--key", s(&fx.rsa_der), &uuid, s(&f)]);
    assert_eq!(code(&o), 0, "back to the signed mode: {}", text(&o));
}

/// Without `--func`, `imactl appraise` reports every file hook whose rule asks for
/// appraisal, each with its own rule and requirements; `--func` picks one; `--json` gives
/// the same decisions as objects.
#[test]
fn appraise_reports_every_hook() {
    let fx = Fixture::new();
    let f = fx.f();
    let pol = fx.dir.path().join("policy");
    std::fs::write(
        &pol,
        "dont_appraise fsmagic=0x9fa0\n\
         appraise func=BPRM_CHECK fowner=0 appraise_type=imasig\n\
         appraise func=MODULE_CHECK appraise_type=imasig\n\
         appraise func=FILE_CHECK fowner=0\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec!["appraise", "--policy", s(&pol), "--keys", s(&fx.rsa_der)];
        a.extend_from_slice(extra);
        a.push(s(&f));
        imactl(&a)
    };
    let p = f.display();
    // A hash label: FILE_CHECK passes, the two hooks that need a signature fail; hooks no
    // rule appraises (MMAP_CHECK, ...) are not listed.
    let o = run(&[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{p}: FILE_CHECK: pass [line 4: appraise func=FILE_CHECK fowner=0]\n\
             {p}: BPRM_CHECK: fail IMA-signature-required denied \
             [line 2: appraise func=BPRM_CHECK fowner=0 appraise_type=imasig]\n\
             {p}: MODULE_CHECK: fail IMA-signature-required denied \
             [line 3: appraise func=MODULE_CHECK appraise_type=imasig]\n"
        )
    );
    // --func picks one hook (and says why one is not appraised).
    let o = run(&["--func", "FILE_CHECK"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("{p}: FILE_CHECK: pass [line 4: appraise func=FILE_CHECK fowner=0]\n")
    );
    let o = run(&["--func", "MMAP_CHECK"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("{p}: MMAP_CHECK: not appraised (no appraise rule matches)\n")
    );
    // JSON: one object per decision, same content.
    let o = run(&["--json"]);
    let objs: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[1]["func"], "BPRM_CHECK");
    assert_eq!(objs[1]["verdict"], "fail");
    assert_eq!(objs[1]["cause"], "IMA-signature-required");
    assert_eq!(objs[1]["denied"], true);
    assert_eq!(objs[1]["rule"]["line"], 2);
    assert_eq!(objs[0]["verdict"], "pass");
    assert_eq!(objs[0]["path"], s(&f));

    // Signed: every hook passes (the signature satisfies the hash rule too).
    ok(&evmctl(&[
        "ima_sign",
        "--key",
        s(&testdata("rsa_priv.pem")),
        s(&f),
    ]));
    let o = run(&[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(stdout(&o).matches(": pass [").count(), 3, "{}", text(&o));
    // Owned by someone else: only the rule without fowner= applies.
    std::os::unix::fs::chown(&f, Some(1000), None).unwrap();
    let o = run(&[]);
    assert_eq!(
        stdout(&o),
        format!(
            "{p}: MODULE_CHECK: pass [line 3: appraise func=MODULE_CHECK appraise_type=imasig]\n"
        )
    );
    // No hook at all: one line saying so.
    std::fs::write(&pol, "appraise func=BPRM_CHECK fowner=0\n").unwrap();
    let o = run(&[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!("{p}: not appraised (no appraise rule matches any hook)\n")
    );
    // One rule for every hook: ten decisions. In fix mode the first hook relabels a stale
    // hash and the later ones see the new label (they pass without fixing again).
    std::os::unix::fs::chown(&f, Some(0), None).unwrap();
    std::fs::write(&pol, "appraise fowner=0\n").unwrap();
    set_xattr(&f, "security.ima", &hex::decode(IMA_HELLO).unwrap());
    std::fs::write(&f, b"changed\n").unwrap();
    let o = run(&["--mode", "fix"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "{p}: FILE_CHECK: pass (was fail invalid-hash) fixed"
        )),
        "{out}"
    );
    for l in &lines[1..] {
        assert!(l.ends_with(": pass [line 1: appraise fowner=0]"), "{out}");
    }
    let o = run(&[]);
    assert_eq!(
        stdout(&o).matches(": pass [line 1").count(),
        10,
        "{}",
        text(&o)
    );
}

/// Fix mode with an HMAC key: `ima_fix_xattr` writes security.ima through the VFS, so EVM's
/// post-setxattr hook recomputes the HMAC and the file then passes in enforce mode.
#[test]
fn appraise_fix_mode_keeps_the_hmac_current() {
    let fx = Fixture::new();
    let f = fx.f();
    let uuid = format!("--uuid={UUID}");
    let key = fx.dir.path().join("hmac-key");
    std::fs::write(&key, [5u8; 32]).unwrap();
    let pol = fx.dir.path().join("policy");
    std::fs::write(&pol, "appraise func=FILE_CHECK fowner=0\n").unwrap();
    ok(&imactl(&[
        "evm",
        "hmac",
        "--hmac-key",
        s(&key),
        &uuid,
        s(&f),
    ]));
    let appraise = |mode: &str| {
        imactl(&[
            "appraise",
            "--policy",
            s(&pol),
            "--mode",
            mode,
            "--hmac-key",
            s(&key),
            &uuid,
            s(&f),
        ])
    };
    ok(&appraise("enforce"));
    std::fs::write(&f, b"new content\n").unwrap();
    let o = appraise("enforce");
    assert!(
        stdout(&o).contains("fail invalid-hash denied"),
        "{}",
        text(&o)
    );
    let o = appraise("fix");
    assert!(
        stdout(&o).contains("pass (was fail invalid-hash) fixed"),
        "{}",
        text(&o)
    );
    let o = imactl(&["evm", "verify", "--hmac-key", s(&key), &uuid, s(&f)]);
    assert_eq!(code(&o), 0, "the HMAC covers the new label: {}", text(&o));
    assert_eq!(code(&appraise("enforce")), 0);
}

/// `evm change` takes values as setfattr and owners as chown spell them (issue #14).
#[test]
fn evm_change_takes_setfattr_values_and_owner_names() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"hello world\n").unwrap();
    let want = hex::decode(IMA_HELLO).unwrap();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&want)
    };
    for v in [
        format!("0x{IMA_HELLO}"),
        format!("0s{b64}"),
        IMA_HELLO.to_owned(),
    ] {
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, b"hello world\n").unwrap();
        let arg = format!("security.ima={v}");
        ok(&imactl(&["evm", "change", "--setxattr", &arg, s(&f)]));
        assert_eq!(get_xattr(&f, "security.ima").unwrap(), want, "{v}");
    }
    let o = imactl(&["evm", "change", "--setxattr", "security.ima=0xzz", s(&f)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("\"zz\" is not hex"), "{}", text(&o));

    // nobody:nogroup from /etc/passwd and /etc/group, as chown reads them.
    let id = |db: &str, name: &str| -> u32 {
        let t = std::fs::read_to_string(db).unwrap();
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap();
        line.split(':').nth(2).unwrap().parse().unwrap()
    };
    ok(&imactl(&[
        "evm",
        "change",
        "--chown",
        "nobody:nogroup",
        s(&f),
    ]));
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (id("/etc/passwd", "nobody"), id("/etc/group", "nogroup"))
    );
    let o = imactl(&["evm", "change", "--chown", "no-such-user-14", s(&f)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("no user \"no-such-user-14\" in /etc/passwd"),
        "{}",
        text(&o)
    );
}
