use hex_literal::hex;

use super::*;

use crate::digsig::{KeyId, VerifyError};

/// A keyring stand-in holding one key (`a5cacb28`) that accepts exactly one (signature,
/// digest) pair, so the decision logic can be tested without key material; real keys are
/// exercised in ima-cli's tests.
struct OneSig<'a> {
    sig: &'a [u8],
    digest: &'a [u8],
}

impl Verifier for OneSig<'_> {
    fn verify_digest(&self, keyid: KeyId, digest: &Digest, sig: &[u8]) -> Result<(), VerifyError> {
        if keyid != KeyId(0xa5ca_cb28) {
            return Err(VerifyError::NoKey(keyid));
        }
        if sig == self.sig && digest.as_bytes() == self.digest {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

const CONTENT: &[u8] = b"hello world\n";

fn sha256() -> Digest {
    HashAlgo::SHA256.digest(CONTENT).unwrap()
}

fn sig(ty: u8, version: u8) -> Vec<u8> {
    let mut v = vec![ty, version, 4, 0xa5, 0xca, 0xcb, 0x28, 0, 2, 0xde, 0xad];
    v.truncate(11);
    v
}

fn req<'a>(ima: ImaXattr<'a>, digsig: bool, evm: Status) -> Request<'a> {
    Request {
        mode: Mode::Enforce,
        req: Requirements {
            digsig,
            ..Requirements::default()
        },
        ima,
        digest: Some(sha256()),
        evm,
        new_file: false,
        size: CONTENT.len() as u64,
    }
}

fn run(r: &Request<'_>) -> Appraisal {
    let d = sha256();
    appraise(
        r,
        &OneSig {
            sig: &[0xde, 0xad],
            digest: &d,
        },
    )
}

fn cause(a: &Appraisal) -> Option<(Status, &'static str)> {
    a.verdict().failure().map(|f| (f.status, f.cause.as_str()))
}

#[test]
fn names_round_trip() {
    for s in Status::ALL {
        assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
    }
    for c in Cause::ALL {
        assert_eq!(c.to_string().parse::<Cause>().unwrap(), c);
    }
    for m in Mode::ALL {
        assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
    }
    assert!("PASS".parse::<Status>().is_err());
}

#[test]
fn hash_label() {
    let good = hash_xattr(&sha256());
    assert_eq!(good[..2], [0x04, 0x04]);
    let a = run(&req(ImaXattr::Value(&good), false, Status::Unknown));
    assert!(a.verdict().is_pass());
    assert!(!a.digsig());
    // One byte of the label or of the content changed: invalid-hash.
    let mut bad = good.clone();
    bad[10] ^= 1;
    let a = run(&req(ImaXattr::Value(&bad), false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-hash")));
    // A truncated label is an invalid hash too.
    let a = run(&req(ImaXattr::Value(&good[..20]), false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-hash")));
    // Longer than the digest: only the digest length is compared.
    let mut long = good.clone();
    long.extend_from_slice(b"extra");
    assert!(
        run(&req(ImaXattr::Value(&long), false, Status::Unknown))
            .verdict()
            .is_pass()
    );
    // A signature is required: hash labels fail unless EVM has a portable signature.
    let a = run(&req(ImaXattr::Value(&good), true, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "IMA-signature-required")));
    let a = run(&req(ImaXattr::Value(&good), true, Status::PassImmutable));
    assert!(a.verdict().is_pass());
    assert!(a.digsig());
}

#[test]
fn missing_label() {
    let a = run(&req(ImaXattr::Absent, false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::NoLabel, "missing-hash")));
    let a = run(&req(ImaXattr::Absent, true, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::NoLabel, "IMA-signature-required")));
    // A zero-length value counts as missing.
    let a = run(&req(ImaXattr::Value(&[]), false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::NoLabel, "missing-hash")));
    let mut r = req(ImaXattr::Absent, true, Status::Unknown);
    r.req.verity = true;
    assert_eq!(
        cause(&run(&r)),
        Some((Status::NoLabel, "verity-signature-required"))
    );
    // New files pass without a label when no signature is required, or while empty.
    let mut r = req(ImaXattr::Absent, false, Status::Unknown);
    r.new_file = true;
    assert!(run(&r).verdict().is_pass());
    r.req.digsig = true;
    assert!(!run(&r).verdict().is_pass());
    r.size = 0;
    assert!(run(&r).verdict().is_pass());
    // No xattr support: UNKNOWN, nothing audited or fixed.
    let mut r = req(ImaXattr::Unsupported, false, Status::Unknown);
    r.mode = Mode::Fix;
    let a = run(&r);
    assert_eq!(cause(&a), Some((Status::Unknown, "unknown")));
    assert_eq!((a.fix(), a.audit()), (None, None));
}

#[test]
fn evm_gates_the_label() {
    let good = hash_xattr(&sha256());
    for (evm, want) in [
        (Status::NoLabel, Some((Status::NoLabel, "missing-HMAC"))),
        (Status::NoXattrs, Some((Status::NoXattrs, "missing-HMAC"))),
        (Status::Fail, Some((Status::Fail, "invalid-HMAC"))),
        (
            Status::FailImmutable,
            Some((Status::FailImmutable, "invalid-fail-immutable")),
        ),
        (Status::Pass, None),
        (Status::Unknown, None),
    ] {
        assert_eq!(
            cause(&run(&req(ImaXattr::Value(&good), false, evm))),
            want,
            "{evm}"
        );
    }
}

#[test]
fn signatures() {
    let good = sig(0x03, 2);
    let a = run(&req(ImaXattr::Value(&good), true, Status::Unknown));
    assert!(a.verdict().is_pass());
    assert!(a.digsig());
    // Tampered content: the digest differs.
    let mut r = req(ImaXattr::Value(&good), true, Status::Unknown);
    r.digest = Some(HashAlgo::SHA256.digest(b"hello world!").unwrap());
    assert_eq!(cause(&run(&r)), Some((Status::Fail, "invalid-signature")));
    // Unknown key.
    let mut other = good.clone();
    other[3] = 0;
    let a = run(&req(ImaXattr::Value(&other), true, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-signature")));
    // Version 3 in a 0x03 value.
    let a = run(&req(ImaXattr::Value(&sig(0x03, 3)), true, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-signature-version")));
    // Verity required but a v2 signature.
    let mut r = req(ImaXattr::Value(&good), true, Status::Unknown);
    r.req.verity = true;
    assert_eq!(
        cause(&run(&r)),
        Some((Status::Fail, "verity-signature-required"))
    );
    // sigv3 when imasig (not verity) is required; wrong version; bad signature.
    let v3 = sig(0x06, 3);
    let a = run(&req(ImaXattr::Value(&v3), true, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "IMA-signature-required")));
    let a = run(&req(ImaXattr::Value(&sig(0x06, 2)), false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-signature-version")));
    let a = run(&req(ImaXattr::Value(&v3), false, Status::Unknown));
    assert_eq!(cause(&a), Some((Status::Fail, "invalid-verity-signature")));
    // Unknown types.
    for ty in [0x00, 0x02, 0x05, 0x07, 0xff] {
        let a = run(&req(ImaXattr::Value(&[ty, 1, 2]), false, Status::Unknown));
        assert_eq!(
            cause(&a),
            Some((Status::Unknown, "unknown-ima-data")),
            "{ty}"
        );
    }
}

#[test]
fn fix_mode_writes_what_the_kernel_writes() {
    let d = sha256();
    let mut bad = hash_xattr(&d);
    bad[5] ^= 1;
    let mut r = req(ImaXattr::Value(&bad), false, Status::Unknown);
    r.mode = Mode::Fix;
    let a = run(&r);
    assert_eq!(a.fix(), Some(&hash_xattr(&d)[..]));
    assert_eq!(a.audit().map(|f| f.cause), Some(Cause::InvalidHash));
    assert!(!a.denied(Mode::Fix));
    assert!(!a.verdict().is_pass());
    // A write that failed: still the failure, with the fix to retry.
    let (a, e) = a.apply_fix(|_| Err("read-only filesystem")).unwrap_err();
    assert_eq!(e, "read-only filesystem");
    assert!(!a.verdict().is_pass());
    // A write that succeeded: the kernel's PASS, the failure still audited.
    let mut written = None;
    let a = a
        .apply_fix(|fix| {
            written = Some(fix.to_vec());
            Ok::<_, ()>(())
        })
        .unwrap();
    assert!(a.verdict().is_pass());
    assert_eq!(written, Some(hash_xattr(&d)));
    assert_eq!(
        (a.fix(), a.audit().map(|f| f.cause)),
        (None, Some(Cause::InvalidHash))
    );
    // Without a fix (a signature in fix mode) nothing is written and no pass is made.
    let bad_sig = sig(0x03, 3);
    let mut r = req(ImaXattr::Value(&bad_sig), false, Status::Unknown);
    r.mode = Mode::Fix;
    let a = run(&r)
        .apply_fix(|_| -> Result<(), ()> { panic!("no fix to write") })
        .unwrap();
    assert!(!a.verdict().is_pass());
    // Missing: labelled. sha1 digests are written as the legacy type 0x01.
    let mut r = req(ImaXattr::Absent, false, Status::Unknown);
    r.mode = Mode::Fix;
    r.digest = Some(HashAlgo::SHA1.digest(CONTENT).unwrap());
    let a = run(&r);
    let fix = a.fix().unwrap();
    assert_eq!(fix[0], 0x01);
    assert_eq!(fix.len(), 21);
    // Signatures are never replaced, even invalid ones; a failing sigv3 is (kernel quirk).
    let bad_sig = sig(0x03, 3);
    let mut r = req(ImaXattr::Value(&bad_sig), false, Status::Unknown);
    r.mode = Mode::Fix;
    assert_eq!(run(&r).fix(), None);
    let v3 = sig(0x06, 3);
    let mut r = req(ImaXattr::Value(&v3), false, Status::Unknown);
    r.mode = Mode::Fix;
    assert!(run(&r).fix().is_some());
    // Passing labels are left alone; enforce and log modes never write.
    let good = hash_xattr(&d);
    let mut r = req(ImaXattr::Value(&good), false, Status::Unknown);
    r.mode = Mode::Fix;
    assert_eq!(run(&r).fix(), None);
    for mode in [Mode::Enforce, Mode::Log] {
        let mut r = req(ImaXattr::Value(&bad), false, Status::Unknown);
        r.mode = mode;
        let a = run(&r);
        assert_eq!(a.fix(), None);
        assert_eq!(a.denied(mode), mode == Mode::Enforce);
    }
}

#[test]
fn collect_and_algorithm_checks() {
    let good = hash_xattr(&sha256());
    let mut r = req(ImaXattr::Value(&good), false, Status::Unknown);
    r.digest = None;
    assert_eq!(cause(&run(&r)), Some((Status::Fail, "failed")));
    let mut r = req(ImaXattr::Value(&good), false, Status::Unknown);
    r.req.allowed_algos = Some(1 << HashAlgo::SHA512.0);
    r.mode = Mode::Fix;
    let a = run(&r);
    assert_eq!(cause(&a), Some((Status::Fail, "denied-hash-algorithm")));
    assert_eq!(a.fix(), None);
    r.req.allowed_algos = Some(1 << HashAlgo::SHA256.0 | 1 << HashAlgo::SHA512.0);
    assert!(run(&r).verdict().is_pass());
}

#[test]
fn hash_algo_follows_the_label() {
    let def = HashAlgo::SHA256;
    assert_eq!(hash_algo(None, def), def);
    assert_eq!(hash_algo(Some(&[0x04]), def), def);
    assert_eq!(
        hash_algo(Some(&[0x04, 6]), HashAlgo::SHA1),
        HashAlgo::SHA512
    );
    assert_eq!(hash_algo(Some(&[0x04, 99]), def), def);
    let mut sha1 = vec![0x01];
    sha1.extend_from_slice(&hex!("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"));
    assert_eq!(hash_algo(Some(&sha1), def), HashAlgo::SHA1);
    let mut md5pad = vec![0x01];
    md5pad.extend_from_slice(&[0xaa; 16]);
    md5pad.extend_from_slice(&[0; 4]);
    assert_eq!(hash_algo(Some(&md5pad), def), HashAlgo::MD5);
    assert_eq!(hash_algo(Some(&md5pad[..17]), def), HashAlgo::MD5);
    let mut s = sig(0x03, 2);
    s[2] = 2;
    assert_eq!(hash_algo(Some(&s), def), HashAlgo::SHA1);
    s[1] = 1;
    assert_eq!(hash_algo(Some(&s), def), def);
    let mut v3 = sig(0x06, 3);
    v3[2] = 6;
    assert_eq!(hash_algo(Some(&v3), def), HashAlgo::SHA512);
    assert_eq!(hash_algo(Some(&v3[..9]), def), def);
}

#[test]
fn file_id_digest_matches_reference_13_4() {
    // kernel-ima.md §13.4: ima_file_id {06, 04, SHA256("fsverity-test")} hashed with sha256.
    let d = HashAlgo::SHA256.digest(b"fsverity-test").unwrap();
    assert_eq!(
        d.as_bytes(),
        hex!("64919d592f49ecc2e6c3f51a72a8fae71582770a4685aba807f57a31cf2d1131")
    );
    assert_eq!(
        file_id_hash(XattrType::VERITY_DIGSIG, &d)
            .unwrap()
            .as_bytes(),
        hex!("85f7d0270c4d5f1681d12d2d649b34fc1f30a90dd37cfe3150f4425e9c56ec48")
    );
}

/// The byte-level readers `appraise` used before it decoded `security.ima` with
/// [`XattrValue`] (written from `ima_get_hash_algo` and `xattr_verify`), kept as the oracle
/// that the unified parser changes no decision.
mod reference {
    use super::*;

    pub fn hash_algo(xattr: Option<&[u8]>, default: HashAlgo) -> HashAlgo {
        let Some(x) = xattr.filter(|x| x.len() >= 2) else {
            return default;
        };
        let from_sig = |version: u8| {
            if x[1] != version || x.len() <= 9 || !HashAlgo(x[2]).is_known() {
                default
            } else {
                HashAlgo(x[2])
            }
        };
        match x[0] {
            0x06 => from_sig(3),
            0x03 => from_sig(2),
            0x04 if HashAlgo(x[1]).is_known() => HashAlgo(x[1]),
            0x01 if x.len() == 21 => {
                if x[17..21] == [0, 0, 0, 0] {
                    HashAlgo::MD5
                } else {
                    HashAlgo::SHA1
                }
            }
            0x01 if x.len() == 17 => HashAlgo::MD5,
            _ => default,
        }
    }

    pub fn xattr_verify(
        r: &Request<'_>,
        x: &[u8],
        digest: &Digest,
        keyring: &dyn Verifier,
        digsig: &mut bool,
    ) -> Result<(), Failure> {
        let fail = |status, cause| Err(Failure { status, cause });
        match x[0] {
            0x01 | 0x04 => {
                let start = if x[0] == 0x04 { 2 } else { 1 };
                if r.evm != Status::PassImmutable {
                    if r.req.digsig {
                        let cause = if r.req.verity {
                            Cause::VeritySignatureRequired
                        } else {
                            Cause::ImaSignatureRequired
                        };
                        return fail(Status::Fail, cause);
                    }
                } else {
                    *digsig = true;
                }
                match x.get(start..start + digest.len()) {
                    Some(stored) if stored == &digest[..] => Ok(()),
                    _ => fail(Status::Fail, Cause::InvalidHash),
                }
            }
            0x03 => {
                *digsig = true;
                if r.req.digsig && r.req.verity {
                    return fail(Status::Fail, Cause::VeritySignatureRequired);
                }
                if x.get(1).is_some_and(|&v| v >= 3) {
                    return fail(Status::Fail, Cause::InvalidSignatureVersion);
                }
                match digsig_verify(keyring, x, digest) {
                    Ok(()) => Ok(()),
                    Err(DigsigError::Unsupported(_)) => fail(Status::Unknown, Cause::Unknown),
                    Err(_) => fail(Status::Fail, Cause::InvalidSignature),
                }
            }
            0x06 => {
                *digsig = true;
                if r.req.digsig && !r.req.verity {
                    return fail(Status::Fail, Cause::ImaSignatureRequired);
                }
                if x.get(1) != Some(&3) {
                    return fail(Status::Fail, Cause::InvalidSignatureVersion);
                }
                let Ok(id) = file_id_hash(XattrType::VERITY_DIGSIG, digest) else {
                    return fail(Status::Fail, Cause::Sigv3HashingError);
                };
                match digsig_verify(keyring, x, &id) {
                    Ok(()) => Ok(()),
                    Err(_) => fail(Status::Fail, Cause::InvalidVeritySignature),
                }
            }
            _ => fail(Status::Unknown, Cause::UnknownImaData),
        }
    }
}

/// Type bytes around the defined ones, lengths around the header and digest sizes, and
/// sometimes the real digest at the right place.
fn label_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    (
        0u8..9,
        0u8..5,
        prop_oneof![Just(4u8), Just(2), 0u8..25],
        proptest::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(ty, b1, b2, mut rest, real, extra)| {
            let mut v = vec![ty, b1, b2];
            if real && (ty == 3 || ty == 6) {
                return sig(ty, b1);
            }
            if real && (ty == 1 || ty == 4) {
                v.truncate(if ty == 4 { 2 } else { 1 });
                v.extend_from_slice(sha256().as_bytes());
                rest.truncate(extra * 3);
            }
            v.extend_from_slice(&rest);
            v
        })
}

proptest::proptest! {
    #[test]
    fn unified_parser_names_the_same_algorithm(x in label_strategy(), cut in 0usize..90) {
        let x = &x[..cut.min(x.len())];
        for default in [HashAlgo::SHA256, HashAlgo::SHA1] {
            proptest::prop_assert_eq!(
                hash_algo(Some(x), default),
                reference::hash_algo(Some(x), default)
            );
        }
    }

    #[test]
    fn unified_parser_gives_the_same_verdicts(
        x in label_strategy(),
        digsig in proptest::prelude::any::<bool>(),
        verity in proptest::prelude::any::<bool>(),
        evm in 0usize..7,
    ) {
        proptest::prop_assume!(!x.is_empty());
        let d = sha256();
        let ring = OneSig { sig: &[0xde, 0xad], digest: &d };
        let mut r = req(ImaXattr::Value(&x), digsig, Status::ALL[evm]);
        r.req.verity = verity;
        let (mut new_flag, mut old_flag) = (false, false);
        let new = xattr_verify(&r, &x, &d, &ring, &mut new_flag);
        let old = reference::xattr_verify(&r, &x, &d, &ring, &mut old_flag);
        proptest::prop_assert_eq!(new, old);
        proptest::prop_assert_eq!(new_flag, old_flag);
    }
}

#[test]
fn setting_security_ima_follows_ima_inode_setxattr() {
    let sha256 = HashAlgo::SHA256;
    let label = hash_xattr(&sha256.digest(b"x").unwrap());
    let refused = |errno, cause| Err(SetxattrRefused { errno, cause });
    assert_eq!(inode_setxattr(Some(&label), sha256, None, true), Ok(()));
    // ima_protect_xattr: CAP_SYS_ADMIN for writes and removals.
    assert_eq!(
        inode_setxattr(Some(&label), sha256, None, false),
        refused("EPERM", None)
    );
    assert_eq!(
        inode_setxattr(None, sha256, None, false),
        refused("EPERM", None)
    );
    assert_eq!(inode_setxattr(None, sha256, None, true), Ok(()));
    // Empty, or a type past IMA_XATTR_LAST: EINVAL. 0x02 and 0x05 are defined types.
    assert_eq!(
        inode_setxattr(Some(&[]), sha256, None, true),
        refused("EINVAL", None)
    );
    assert_eq!(
        inode_setxattr(Some(&[7, 1]), sha256, None, true),
        refused("EINVAL", None)
    );
    assert_eq!(inode_setxattr(Some(&[2, 1]), sha256, None, true), Ok(()));
    // validate_hash_algo: any algorithm the kernel has, unless SETXATTR_CHECK restricts it.
    let sha1 = hash_xattr(&HashAlgo::SHA1.digest(b"x").unwrap());
    assert_eq!(inode_setxattr(Some(&sha1), sha256, None, true), Ok(()));
    let only_sha256 = Some(1 << HashAlgo::SHA256.0);
    assert_eq!(
        inode_setxattr(Some(&label), sha256, only_sha256, true),
        Ok(())
    );
    assert_eq!(
        inode_setxattr(Some(&sha1), sha256, only_sha256, true),
        refused("EACCES", Some("denied-hash-algorithm"))
    );
    // A known id that cannot be computed here (tgr128 = 14): unavailable-hash-algorithm;
    // unless it is ima_hash itself.
    let tgr = [4u8, 14, 0, 0];
    assert!(!HashAlgo(14).is_supported());
    assert_eq!(
        inode_setxattr(Some(&tgr), sha256, None, true),
        refused("EACCES", Some("unavailable-hash-algorithm"))
    );
    assert_eq!(inode_setxattr(Some(&tgr), HashAlgo(14), None, true), Ok(()));
}
