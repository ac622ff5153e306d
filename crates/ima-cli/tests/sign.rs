//! `imactl hash|sign|verify` against the real evmctl 1.4 (/usr/bin/evmctl), both ways,
//! with keys made by openssl in each run, on real `security.ima` xattrs in a temp dir on
//! the root filesystem (ext4 here). The tests run as root; a missing tool or a filesystem
//! without `security.*` xattrs fails the test (it is never skipped).

// Test helpers outside #[test] fns: a broken fixture should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ima_core::codec::Codec;
use ima_core::digsig::Keyring;
use ima_core::hash::{Digest, HashAlgo};
use ima_core::xattr::XattrValue;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a command with a timeout (killed and failed when it hangs).
fn run(mut cmd: Command) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e} (is it installed?)"));
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn imactl(args: &[&str]) -> Output {
    let mut c = Command::cargo_bin("imactl").unwrap();
    c.args(args);
    run(c)
}

fn tool(name: &str, args: &[&str]) -> Output {
    let mut c = Command::new(name);
    c.args(args);
    run(c)
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A key pair made with openssl: the private key (PEM) and its certificate (DER, as evmctl
/// wants; OpenSSL 3 puts `subjectKeyIdentifier=hash` in it by default).
struct Key {
    name: &'static str,
    key: PathBuf,
    cert: PathBuf,
    /// Hash algorithms to sign with.
    algos: &'static [&'static str],
}

struct Keys {
    _dir: tempfile::TempDir,
    all: Vec<Key>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut all = Vec::new();
        let mk = |name: &'static str, gen_args: &[&str], algos: &'static [&'static str]| {
            let key = d.join(format!("{name}.pem"));
            // "-out FILE" goes first: genrsa wants the bit count last.
            let mut args = vec![gen_args[0], "-out", s(&key)];
            args.extend_from_slice(&gen_args[1..]);
            ok(&tool("openssl", &args));
            let cert = d.join(format!("{name}.der"));
            ok(&tool(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    s(&key),
                    "-subj",
                    "/CN=imactl test",
                    "-days",
                    "2",
                    "-outform",
                    "DER",
                    "-out",
                    s(&cert),
                ],
            ));
            Key {
                name,
                key,
                cert,
                algos,
            }
        };
        // PKCS#8 RSA-2048, PKCS#1 ("traditional") RSA-3072, SEC1 P-256, PKCS#8 P-384, P-521.
        all.push(mk(
            "rsa2048",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            &["sha256", "sha384", "sha512"],
        ));
        all.push(mk(
            "rsa3072",
            &["genrsa", "-traditional", "3072"],
            &["sha256", "sha512"],
        ));
        all.push(mk(
            "p256",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            &["sha1", "sha256", "sha384", "sha512"],
        ));
        all.push(mk(
            "p384",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            &["sha256", "sha384"],
        ));
        all.push(mk(
            "p521",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-521",
            ],
            &["sha512"],
        ));
        Keys { _dir: dir, all }
    })
}

fn key(name: &str) -> &'static Key {
    keys().all.iter().find(|k| k.name == name).unwrap()
}

/// A temp dir where `security.ima` can be written; fails (not skips) otherwise.
fn xattr_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join(".probe");
    std::fs::write(&probe, b"x").unwrap();
    let o = tool(
        "setfattr",
        &["-n", "security.ima", "-v", "0x0401", s(&probe)],
    );
    assert!(
        o.status.success(),
        "{} does not take security.ima xattrs (need root on ext4/xfs/btrfs): {}",
        dir.path().display(),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(probe).unwrap();
    dir
}

fn content(i: usize) -> Vec<u8> {
    (0..(i * 7919 % 100_000))
        .map(|j| (j * 31 + i) as u8)
        .collect()
}

fn getfattr_hex(p: &Path) -> String {
    let o = ok(&tool(
        "getfattr",
        &["-n", "security.ima", "-e", "hex", s(p)],
    ));
    o.lines()
        .find_map(|l| l.strip_prefix("security.ima=0x"))
        .unwrap()
        .to_owned()
}

#[test]
fn evmctl_verifies_every_signature_we_write() {
    let dir = xattr_dir();
    let mut n = 0;
    for k in &keys().all {
        for (i, algo) in k.algos.iter().enumerate() {
            let f = dir.path().join(format!("{}-{algo}", k.name));
            std::fs::write(&f, content(n + i + 1)).unwrap();
            ok(&imactl(&["sign", "--key", s(&k.key), "-a", algo, s(&f)]));
            let v = tool("evmctl", &["ima_verify", "--key", s(&k.cert), s(&f)]);
            let out = String::from_utf8_lossy(&v.stderr).to_string()
                + &String::from_utf8_lossy(&v.stdout);
            assert!(v.status.success(), "{} {algo}: evmctl says {out}", k.name);
            assert!(out.contains("verification is OK"), "{out}");
            // And we agree.
            ok(&imactl(&["verify", "--keys", s(&k.cert), s(&f)]));
            n += 1;
        }
    }
    assert!(n >= 12, "{n}");
}

#[test]
fn we_verify_every_evmctl_signature() {
    let dir = xattr_dir();
    // evmctl can sign sha1 with RSA too (we can verify it; aws-lc-rs cannot sign it).
    for k in &keys().all {
        let mut algos = k.algos.to_vec();
        if k.name == "rsa2048" {
            algos.push("sha1");
        }
        for (i, algo) in algos.iter().enumerate() {
            let f = dir.path().join(format!("e-{}-{algo}", k.name));
            std::fs::write(&f, content(100 + i)).unwrap();
            let o = tool(
                "evmctl",
                &["ima_sign", "-a", algo, "--key", s(&k.key), s(&f)],
            );
            assert!(
                o.status.success(),
                "evmctl ima_sign {} {algo}: {o:?}",
                k.name
            );
            let out = ok(&imactl(&["verify", "--keys", s(&k.cert), s(&f)]));
            assert_eq!(out, format!("{}: OK\n", f.display()));
        }
    }
    // A whole tree of evmctl signatures, verified with -r against a keys directory.
    let keydir = dir.path().join("keys");
    std::fs::create_dir(&keydir).unwrap();
    for k in &keys().all {
        std::fs::copy(&k.cert, keydir.join(format!("{}.der", k.name))).unwrap();
    }
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    for i in 0..12 {
        let f = tree
            .join(if i % 2 == 0 { "a" } else { "a/b" })
            .join(format!("f{i}"));
        std::fs::write(&f, content(200 + i)).unwrap();
        let k = &keys().all[i % keys().all.len()];
        ok(&tool(
            "evmctl",
            &["ima_sign", "-a", k.algos[0], "--key", s(&k.key), s(&f)],
        ));
    }
    let o = imactl(&["verify", "-r", "--keys", s(&keydir), s(&tree)]);
    let out = ok(&o);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": OK")).count(),
        12,
        "{out}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("12 files") && err.contains("0 failed"),
        "{err}"
    );
}

#[test]
fn hash_matches_evmctl_ima_hash() {
    let dir = xattr_dir();
    let sizes = [0usize, 1, 12, 4096, 300_001];
    for (i, n) in sizes.iter().enumerate() {
        let f = dir.path().join(format!("h{i}"));
        std::fs::write(&f, (0..*n).map(|j| (j % 253) as u8).collect::<Vec<_>>()).unwrap();
        for algo in ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] {
            let theirs = ok(&tool("evmctl", &["ima_hash", "-n", "-a", algo, s(&f)]));
            let ours = ok(&imactl(&["hash", "-n", "-a", algo, s(&f)]));
            assert_eq!(ours, theirs, "{algo} of {n} bytes");
            // Written form: the xattr equals what evmctl would write.
            ok(&imactl(&["hash", "-a", algo, s(&f)]));
            assert_eq!(getfattr_hex(&f), theirs.trim(), "{algo} xattr");
        }
    }
    // -r over a nested tree whose sizes make the workers finish out of walk order: the same
    // values as `evmctl -r ima_hash -n`, line for line in the same (nftw) order, and the
    // paths in `find -type f` order.
    for i in 0..40usize {
        let d = dir
            .path()
            .join(format!("d{}", i % 3))
            .join(format!("e{}", i % 2));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("t{i}")), content(i * 13)).unwrap();
    }
    let theirs = ok(&tool("evmctl", &["-r", "ima_hash", "-n", s(dir.path())]));
    let ours = ok(&imactl(&["hash", "-r", "-n", s(dir.path())]));
    let values: Vec<&str> = ours.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(values, theirs.lines().collect::<Vec<_>>());
    let paths: Vec<&str> = ours.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    let find = ok(&tool("find", &[s(dir.path()), "-type", "f"]));
    assert_eq!(paths, find.lines().collect::<Vec<_>>());
    // sign -n prints in the same order.
    let k = key("rsa2048");
    let signed = ok(&imactl(&[
        "sign",
        "-r",
        "-n",
        "--key",
        s(&k.key),
        s(dir.path()),
    ]));
    let paths: Vec<&str> = signed
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(paths, find.lines().collect::<Vec<_>>());
}

#[test]
fn tampering_is_detected() {
    let dir = xattr_dir();
    let k = key("rsa2048");
    let e = key("p256");
    let ring = format!("{},{}", s(&k.cert), s(&e.cert));
    let mk = |name: &str, kk: &Key| {
        let f = dir.path().join(name);
        std::fs::write(&f, b"the quick brown fox\n").unwrap();
        ok(&imactl(&["sign", "--key", s(&kk.key), s(&f)]));
        f
    };
    // One content byte.
    for kk in [k, e] {
        let f = mk(&format!("content-{}", kk.name), kk);
        std::fs::write(&f, b"the quick brown fox!").unwrap();
        let o = imactl(&["verify", "--keys", &ring, s(&f)]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("FAIL (invalid-signature: signature does not verify)"),
            "{out}"
        );
        // evmctl agrees.
        assert!(
            !tool("evmctl", &["ima_verify", "--key", s(&kk.cert), s(&f)])
                .status
                .success()
        );
    }
    // One signature byte, one header byte (keyid), truncation, an oversized value, a
    // hash label where a signature is required.
    let f = mk("xattr", k);
    let good = hex::decode(getfattr_hex(&f)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "sigbyte",
            {
                let mut v = good.clone();
                v[100] ^= 0x20;
                v
            },
            "invalid-signature: signature does not verify",
        ),
        (
            "keyid",
            {
                let mut v = good.clone();
                v[4] ^= 0x01;
                v
            },
            "invalid-signature: no key with keyid",
        ),
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "signature size at byte offset 7: truncated",
        ),
        (
            "oversized",
            {
                let mut v = good.clone();
                v.extend_from_slice(&[0u8; 2000]);
                v
            },
            "2000 unexpected trailing bytes",
        ),
        (
            "hashonly",
            hex::decode("0404a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447")
                .unwrap(),
            "IMA-signature-required",
        ),
        ("empty-type", vec![0x09], "unknown-ima-data"),
    ];
    for (name, value, want) in &cases {
        let hexv = format!("0x{}", hex::encode(value));
        ok(&tool(
            "setfattr",
            &["-n", "security.ima", "-v", &hexv, s(&f)],
        ));
        let o = imactl(&["verify", "--keys", &ring, s(&f)]);
        assert_eq!(o.status.code(), Some(1), "{name}: {o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(want), "{name}: {out}");
    }
    // The content unchanged and the original value back: passes again.
    let hexv = format!("0x{}", hex::encode(&good));
    ok(&tool(
        "setfattr",
        &["-n", "security.ima", "-v", &hexv, s(&f)],
    ));
    ok(&imactl(&["verify", "--keys", &ring, s(&f)]));
}

#[test]
fn trees_continue_past_bad_files() {
    let dir = xattr_dir();
    let k = key("p384");
    let tree = dir.path().join("t");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..8 {
        std::fs::write(tree.join(format!("f{i}")), content(i + 300)).unwrap();
    }
    let o = imactl(&["sign", "-r", "--key", s(&k.key), s(&tree)]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("8 files"));
    // Break two files, add an unsigned one.
    ok(&tool(
        "setfattr",
        &["-n", "security.ima", "-v", "0x0302", s(&tree.join("f1"))],
    ));
    std::fs::write(tree.join("f2"), b"changed").unwrap();
    std::fs::write(tree.join("new"), b"unsigned").unwrap();
    let o = imactl(&["verify", "-r", "--keys", s(&k.cert), s(&tree)]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": OK")).count(),
        6,
        "{out}"
    );
    assert!(
        out.contains("f1: FAIL (invalid-signature: malformed xattr"),
        "{out}"
    );
    assert!(
        out.contains("f2: FAIL (invalid-signature: signature does not verify)"),
        "{out}"
    );
    assert!(out.contains("new: FAIL (IMA-signature-required"), "{out}");
    // A missing path is an error (exit 2); the other files are still processed.
    let o = imactl(&[
        "verify",
        "--keys",
        s(&k.cert),
        s(&tree.join("f0")),
        s(&tree.join("missing")),
        s(&tree.join("f3")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches(": OK").count(),
        2
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing: No such file"));
    // hash: a missing path does not stop the others, and writes nothing for it.
    let o = imactl(&["hash", s(&tree.join("missing")), s(&tree.join("new"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(getfattr_hex(&tree.join("new")).starts_with("0404"));
}

#[test]
fn keys_certs_and_sigfiles() {
    let dir = xattr_dir();
    let f = dir.path().join("f");
    std::fs::write(&f, b"sigfile test\n").unwrap();
    let k = key("rsa2048");
    // --sigfile writes PATH.sig (= the xattr value) and the xattr, as evmctl does.
    ok(&imactl(&[
        "sign",
        "--sigfile",
        "--key",
        s(&k.key),
        "--cert",
        s(&k.cert),
        s(&f),
    ]));
    let sig = std::fs::read(dir.path().join("f.sig")).unwrap();
    assert_eq!(hex::encode(&sig), getfattr_hex(&f));
    let o = tool(
        "evmctl",
        &["ima_verify", "--sigfile", "--key", s(&k.cert), s(&f)],
    );
    assert!(o.status.success(), "{o:?}");
    ok(&imactl(&[
        "verify",
        "--sigfile",
        "--keys",
        s(&k.cert),
        s(&f),
    ]));
    // --keyid is written as given (then no key matches it).
    ok(&imactl(&[
        "sign",
        "--keyid",
        "1badcafe",
        "--key",
        s(&k.key),
        s(&f),
    ]));
    assert!(getfattr_hex(&f).starts_with("0302041badcafe"));
    let o = imactl(&["verify", "--keys", s(&k.cert), s(&f)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("no key with keyid 1badcafe"));
    // A certificate of another key is refused before any file is touched.
    let o = imactl(&[
        "sign",
        "--key",
        s(&k.key),
        "--cert",
        s(&key("p256").cert),
        s(&f),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not match"));
    // RSA signs sha1 (a legacy digest: a warning), but has no DigestInfo for sm3, and
    // says so up front.
    let o = imactl(&["sign", "-n", "-a", "sha1", "--key", s(&k.key), s(&f)]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sha1, a legacy digest"),
        "{o:?}"
    );
    let o = imactl(&["sign", "-a", "sm3", "--key", s(&k.key), s(&f)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot sign sm3"),
        "{o:?}"
    );
    // Encrypted PKCS#8 key: needs the password.
    let enc = dir.path().join("enc.pem");
    ok(&tool(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-in",
            s(&key("p256").key),
            "-passout",
            "pass:s3cret",
            "-out",
            s(&enc),
        ],
    ));
    let o = imactl(&["sign", "--key", s(&enc), s(&f)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("encrypted"),
        "{o:?}"
    );
    ok(&imactl(&[
        "sign",
        "--key",
        s(&enc),
        "--pass",
        "s3cret",
        s(&f),
    ]));
    ok(&imactl(&["verify", "--keys", s(&key("p256").cert), s(&f)]));
    let o = imactl(&["sign", "--key", s(&enc), "--pass", "wrong", s(&f)]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("wrong password"),
        "{o:?}"
    );
    // A bad file in a keys directory is skipped with a warning; a bad explicit one fails.
    let kd = dir.path().join("kd");
    std::fs::create_dir(&kd).unwrap();
    std::fs::copy(&key("p256").cert, kd.join("good.der")).unwrap();
    std::fs::write(kd.join("junk.der"), b"\x30\x03\x02\x01").unwrap();
    let o = imactl(&["verify", "--keys", s(&kd), s(&f)]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("junk.der: skipped"));
    let o = imactl(&["verify", "--keys", s(&kd.join("junk.der")), s(&f)]);
    assert_eq!(o.status.code(), Some(2));
    // A PEM public key works where a certificate does (natively and in evmctl mode), under
    // evmctl's key id for it; another key's does not verify.
    let pubkey = |k: &Key, name: &str| {
        let p = dir.path().join(name);
        ok(&tool(
            "openssl",
            &["pkey", "-in", s(&k.key), "-pubout", "-out", s(&p)],
        ));
        p
    };
    let good = pubkey(key("p256"), "p256.pub.pem");
    let other = pubkey(key("p384"), "p384.pub.pem");
    ok(&imactl(&["verify", "--keys", s(&good), s(&f)]));
    ok(&imactl(&["evmctl", "ima_verify", "--key", s(&good), s(&f)]));
    let o = imactl(&["verify", "--keys", s(&other), s(&f)]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("no key with keyid"));
}

#[test]
fn verity_signatures() {
    let dir = xattr_dir();
    let f = dir.path().join("v");
    std::fs::write(&f, content(42)).unwrap();
    for (k, algo) in [("rsa2048", "sha256"), ("p384", "sha512")] {
        let k = key(k);
        ok(&imactl(&[
            "sign",
            "--v3",
            "-a",
            algo,
            "--key",
            s(&k.key),
            s(&f),
        ]));
        let v = getfattr_hex(&f);
        assert!(v.starts_with("0603"), "{v}");
        let out = ok(&imactl(&["verify", "--keys", s(&k.cert), s(&f)]));
        assert!(out.ends_with(": OK\n"));
        // The signature binds the fs-verity digest that fsverity-utils computes.
        let fsv = ok(&tool(
            "fsverity",
            &["digest", "--compact", &format!("--hash-alg={algo}"), s(&f)],
        ));
        let a: HashAlgo = algo.parse().unwrap();
        let d = Digest::new(a, &hex::decode(fsv.trim()).unwrap()).unwrap();
        let mut ring = Keyring::new();
        ring.add_bytes(&std::fs::read(&k.cert).unwrap()).unwrap();
        let x = XattrValue::from_bytes(&hex::decode(&v).unwrap()).unwrap();
        x.signature().unwrap().verify(&ring, &d).unwrap();
        std::fs::write(&f, content(43)).unwrap();
        let o = imactl(&["verify", "--keys", s(&k.cert), s(&f)]);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stdout).contains("invalid-verity-signature"));
        std::fs::write(&f, content(42)).unwrap();
    }
}
