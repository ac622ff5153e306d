//! Each case names the branch of `evm_main.c` (Linux 6.1) it follows.

use super::*;
use crate::codec::Codec;
use crate::digsig::{Keyring, PrivateKey, Signature};
use crate::evm::{EvmKind, InodeMeta, XATTR_CAPS, XATTR_IMA, signed_digest};
use crate::hash::HashAlgo;
use crate::integrity::XattrType;

const IMA: &[u8] = &[4, 4, 1, 2, 3];

fn testdata(f: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sigs")
        .join(f);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ring() -> Keyring {
    let mut r = Keyring::new();
    r.add_bytes(&testdata("rsa_x509.pem")).unwrap();
    r
}

fn file() -> Inode {
    Inode {
        xattrs: [(XATTR_IMA.to_owned(), IMA.to_vec())].into(),
        meta: InodeMeta {
            ino: 12,
            generation: 34,
            uid: 0,
            gid: 0,
            mode: 0o100644,
        },
        fs_uuid: [9; 16],
    }
}

/// `file()` with a real RSA EVM signature of `kind`.
fn signed(kind: EvmKind) -> Inode {
    let mut i = file();
    let key = PrivateKey::from_pem(&testdata("rsa_priv.pem"), None).unwrap();
    let d = signed_digest(&EvmConfig::default(), &i, kind, HashAlgo::SHA256).unwrap();
    let sig = Signature::sign_digest(&key, XattrType(kind.type_byte()), 2, key.keyid(), &d)
        .unwrap()
        .to_vec();
    i.xattrs.insert(XATTR_EVM.into(), sig);
    i
}

fn hmac_key() -> HmacKey {
    HmacKey::new(&[7; 32]).unwrap()
}

/// `file()` with the kernel's HMAC.
fn hmaced() -> Inode {
    let mut i = file();
    let v = hmac_key().xattr(&EvmConfig::default(), &i).unwrap();
    i.xattrs.insert(XATTR_EVM.into(), v.to_vec());
    i
}

struct Env {
    cfg: EvmConfig,
    hmac: Option<HmacKey>,
    ring: Option<Keyring>,
    flags: EvmFlags,
    facts: InodeFacts,
    cap: bool,
}

impl Env {
    fn new(hmac: bool, x509: bool) -> Self {
        Self {
            cfg: EvmConfig::default(),
            hmac: hmac.then(hmac_key),
            ring: x509.then(ring),
            // Loading the HMAC key sets EVM_SETUP_COMPLETE.
            flags: EvmFlags {
                setup_complete: hmac,
                ..EvmFlags::default()
            },
            facts: InodeFacts::default(),
            cap: true,
        }
    }

    fn decide(&self, inode: &Inode, change: Change<'_>) -> Result<Plan, Refused> {
        let keys = EvmKeys {
            hmac: self.hmac.as_ref(),
            x509: self
                .ring
                .as_ref()
                .map(|r| r as &(dyn crate::digsig::Verifier + Sync)),
        };
        let ctx = Context {
            cfg: &self.cfg,
            keys: &keys,
            flags: self.flags,
            facts: self.facts,
            cap_sys_admin: self.cap,
            keeps_sgid: true,
        };
        decide(&ctx, inode, &change)
    }
}

const CHMOD_600: Change<'static> = Change::SetAttr {
    mode: Some(0o100600),
    uid: None,
    gid: None,
};

fn allowed(update: bool) -> Result<Plan, Refused> {
    Ok(Plan {
        converted: None,
        update,
    })
}

fn eperm(status: Status, audit: &[&'static str]) -> (Errno, Option<Status>, Vec<&'static str>) {
    (Errno::Perm, Some(status), audit.to_vec())
}

fn refusal(r: Result<Plan, Refused>) -> (Errno, Option<Status>, Vec<&'static str>) {
    let e = r.expect_err("must be refused");
    (e.errno, e.status, e.audit)
}

fn tampered(mut i: Inode) -> Inode {
    i.meta.uid = 1000;
    i
}

#[test]
fn setattr_follows_evm_inode_setattr() {
    // evm_verify_current_integrity: no key loaded → PASS without looking.
    let none = Env::new(false, false);
    assert_eq!(none.decide(&tampered(hmaced()), CHMOD_600), allowed(false));

    // HMAC key: a good HMAC passes and the post-hook recomputes it.
    let hmac = Env::new(true, false);
    assert_eq!(hmac.decide(&hmaced(), CHMOD_600), allowed(true));
    // A bad HMAC: EPERM with an appraise_metadata audit record.
    assert_eq!(
        refusal(hmac.decide(&tampered(hmaced()), CHMOD_600)),
        eperm(Status::Fail, &["appraise_metadata"])
    );
    // EVM_ALLOW_METADATA_WRITES: allowed whatever the status.
    let mut amw = Env::new(false, true);
    amw.flags.allow_metadata_writes = true;
    assert_eq!(
        amw.decide(&tampered(signed(EvmKind::Signature)), CHMOD_600),
        allowed(false)
    );
    // evm=fix: the status is not checked.
    let mut fix = Env::new(true, false);
    fix.flags.fix_mode = true;
    assert_eq!(fix.decide(&tampered(hmaced()), CHMOD_600), allowed(true));
    // Only regular files are checked.
    let mut dir = Env::new(true, false);
    dir.facts.regular = false;
    assert_eq!(dir.decide(&tampered(hmaced()), CHMOD_600), allowed(true));
    // No ATTR_MODE/UID/GID (e.g. a utimes): no check at all.
    let nothing = Change::SetAttr {
        mode: None,
        uid: None,
        gid: None,
    };
    assert_eq!(hmac.decide(&tampered(hmaced()), nothing), allowed(false));
}

#[test]
fn setattr_under_signatures() {
    // 0x03 verified with an HMAC key on a writable inode: evm_verify_hmac converts it to
    // the HMAC of the inode as it was, then the post-hook recomputes it.
    let both = Env::new(true, true);
    let i = signed(EvmKind::Signature);
    let want = hmac_key().xattr(&both.cfg, &i).unwrap();
    assert_eq!(
        both.decide(&i, CHMOD_600),
        Ok(Plan {
            converted: Some(want),
            update: true
        })
    );
    // Read-only or immutable inode: no conversion.
    let mut ro = Env::new(true, true);
    ro.facts.writable = false;
    assert_eq!(ro.decide(&i, CHMOD_600), allowed(true));
    // No verification, no conversion: not a regular file, or evm=fix (the post-hook still
    // writes the HMAC afterwards).
    let mut dir = Env::new(true, true);
    dir.facts.regular = false;
    assert_eq!(dir.decide(&i, CHMOD_600), allowed(true));
    let mut fix = Env::new(true, true);
    fix.flags.fix_mode = true;
    assert_eq!(fix.decide(&i, CHMOD_600), allowed(true));
    // X.509 only: allowed, nothing rewritten (the signature no longer matches afterwards).
    let x509 = Env::new(false, true);
    assert_eq!(x509.decide(&i, CHMOD_600), allowed(false));

    // Portable: PASS_IMMUTABLE refuses a real change of mode, owner or group...
    let p = signed(EvmKind::Portable);
    assert_eq!(
        refusal(x509.decide(&p, CHMOD_600)),
        eperm(Status::PassImmutable, &["appraise_metadata"])
    );
    let chown = Change::chown(p.meta.mode, Some(1), None);
    assert_eq!(
        refusal(both.decide(&p, chown)),
        eperm(Status::PassImmutable, &["appraise_metadata"])
    );
    // ...but not one that changes nothing (evm_attr_change); no HMAC ever replaces it.
    let same = Change::SetAttr {
        mode: Some(0o100644),
        uid: Some(0),
        gid: Some(0),
    };
    assert_eq!(both.decide(&p, same), allowed(true));
    assert_eq!(
        update_evmxattr(&both.cfg, &hmac_key(), &same.apply(&p)),
        EvmUpdate::Immutable
    );
    // FAIL_IMMUTABLE: allowed (a portable signature is never updated).
    assert_eq!(x509.decide(&tampered(p), CHMOD_600), allowed(false));
}

#[test]
fn setattr_without_security_evm() {
    // NOLABEL (security.ima, no security.evm): refused while an HMAC can be computed...
    let hmac = Env::new(true, false);
    assert_eq!(
        refusal(hmac.decide(&file(), CHMOD_600)),
        eperm(Status::NoLabel, &["appraise_metadata"])
    );
    // ...or while one could still be loaded (no EVM_SETUP_COMPLETE)...
    let x509 = Env::new(false, true);
    assert_eq!(
        refusal(x509.decide(&file(), CHMOD_600)),
        eperm(Status::NoLabel, &["appraise_metadata"])
    );
    // ...allowed once evm_hmac_disabled().
    let mut done = Env::new(false, true);
    done.flags.setup_complete = true;
    assert_eq!(done.decide(&file(), CHMOD_600), allowed(false));
    // NOXATTRS: always allowed for setattr.
    let mut bare = file();
    bare.xattrs.clear();
    assert_eq!(hmac.decide(&bare, CHMOD_600), allowed(true));
}

#[test]
fn setxattr_follows_evm_protect_xattr() {
    let hmac = Env::new(true, false);
    let new_ima = Change::SetXattr {
        name: XATTR_IMA,
        value: &[4, 4, 9],
    };
    // Not protected, not an ACL: never checked, never updated.
    let user = Change::SetXattr {
        name: "user.x",
        value: b"1",
    };
    assert_eq!(hmac.decide(&tampered(hmaced()), user), allowed(false));
    // Protected: PASS allows and recomputes; FAIL refuses.
    assert_eq!(hmac.decide(&hmaced(), new_ima), allowed(true));
    assert_eq!(
        refusal(hmac.decide(&tampered(hmaced()), new_ima)),
        eperm(Status::Fail, &["appraise_metadata"])
    );
    // A disabled name (SMACK64 on a distro kernel) is not protected.
    let smack = Change::SetXattr {
        name: crate::evm::XATTR_SMACK,
        value: b"x",
    };
    assert_eq!(hmac.decide(&tampered(hmaced()), smack), allowed(false));

    // NOXATTRS on an ordinary filesystem: audited twice and refused...
    let mut bare = file();
    bare.xattrs.clear();
    assert_eq!(
        refusal(hmac.decide(&bare, new_ima)),
        eperm(Status::NoXattrs, &["update_metadata", "appraise_metadata"])
    );
    // ...except on tmpfs/sysfs, for new files, or when no HMAC can ever be computed.
    let mut tmpfs = Env::new(true, false);
    tmpfs.facts.pseudo_fs = true;
    assert_eq!(tmpfs.decide(&bare, new_ima), allowed(true));
    let mut new = Env::new(true, false);
    new.facts.new_file = true;
    assert_eq!(new.decide(&bare, new_ima), allowed(true));
    let mut done = Env::new(false, true);
    done.flags.setup_complete = true;
    assert_eq!(done.decide(&bare, new_ima), allowed(false));
    // NOLABEL: refused with an HMAC key, allowed when HMAC is disabled.
    assert_eq!(
        refusal(hmac.decide(&file(), new_ima)),
        eperm(Status::NoLabel, &["appraise_metadata"])
    );
    assert_eq!(done.decide(&file(), new_ima), allowed(false));
}

#[test]
fn setxattr_under_portable_signatures() {
    let x509 = Env::new(false, true);
    let p = signed(EvmKind::Portable);
    // PASS_IMMUTABLE: the same value is no change (evm_xattr_change); another is EPERM,
    // without an audit record.
    let same = Change::SetXattr {
        name: XATTR_IMA,
        value: IMA,
    };
    assert_eq!(x509.decide(&p, same), allowed(false));
    let other = Change::SetXattr {
        name: XATTR_IMA,
        value: &[4, 4, 9],
    };
    assert_eq!(
        refusal(x509.decide(&p, other)),
        eperm(Status::PassImmutable, &[])
    );
    // Adding a protected xattr that was absent is a change.
    let caps = Change::SetXattr {
        name: XATTR_CAPS,
        value: b"c",
    };
    assert_eq!(
        refusal(x509.decide(&p, caps)),
        eperm(Status::PassImmutable, &[])
    );
    // FAIL_IMMUTABLE: allowed; with an HMAC key the post-hook runs but leaves 0x05 alone.
    let both = Env::new(true, true);
    let bad = tampered(p);
    assert_eq!(both.decide(&bad, other), allowed(true));
    assert_eq!(
        update_evmxattr(&both.cfg, &hmac_key(), &other.apply(&bad)),
        EvmUpdate::Immutable
    );
}

#[test]
fn security_evm_writes() {
    let both = Env::new(true, true);
    let i = hmaced();
    // evm_inode_setxattr: empty is EINVAL, an HMAC (or any non-signature type) EPERM.
    let r = both.decide(
        &i,
        Change::SetXattr {
            name: XATTR_EVM,
            value: &[],
        },
    );
    assert_eq!(refusal(r), (Errno::Inval, None, vec![]));
    let r = both.decide(
        &i,
        Change::SetXattr {
            name: XATTR_EVM,
            value: &[2; 21],
        },
    );
    assert_eq!(refusal(r), (Errno::Perm, None, vec![]));
    // A signature needs CAP_SYS_ADMIN...
    let sig = signed(EvmKind::Signature).xattrs[XATTR_EVM].clone();
    let write = Change::SetXattr {
        name: XATTR_EVM,
        value: &sig,
    };
    let mut user = Env::new(true, true);
    user.cap = false;
    assert_eq!(refusal(user.decide(&i, write)), (Errno::Perm, None, vec![]));
    // ...and a valid current security.evm; writing security.evm itself updates nothing.
    assert_eq!(both.decide(&i, write), allowed(false));
    assert_eq!(
        refusal(both.decide(&tampered(i), write)),
        eperm(Status::Fail, &["appraise_metadata"])
    );
    // Over NOLABEL with an HMAC key: refused (sign files before loading the HMAC key).
    assert_eq!(
        refusal(both.decide(&file(), write)),
        eperm(Status::NoLabel, &["appraise_metadata"])
    );
    // Removing a portable signature that verifies is a change: EPERM.
    let p = signed(EvmKind::Portable);
    let rm = Change::RemoveXattr { name: XATTR_EVM };
    assert_eq!(
        refusal(both.decide(&p, rm)),
        eperm(Status::PassImmutable, &[])
    );
}

#[test]
fn removexattr_and_acls() {
    let hmac = Env::new(true, false);
    // Removing the last protected xattr under a good HMAC: allowed, and the post-hook
    // finds nothing to HMAC and removes security.evm.
    let i = hmaced();
    let rm = Change::RemoveXattr { name: XATTR_IMA };
    assert_eq!(hmac.decide(&i, rm), allowed(true));
    assert_eq!(
        update_evmxattr(&hmac.cfg, &hmac_key(), &rm.apply(&i)),
        EvmUpdate::Remove
    );
    // With another protected xattr left, the HMAC is recomputed over it.
    let mut j = i.clone();
    j.xattrs.insert(XATTR_CAPS.into(), b"c".to_vec());
    let after = rm.apply(&j);
    assert_eq!(
        update_evmxattr(&hmac.cfg, &hmac_key(), &after),
        EvmUpdate::Set(hmac_key().xattr(&hmac.cfg, &after).unwrap())
    );
    // POSIX ACLs: checked (they can change i_mode); PASS and NOXATTRS allow, FAIL refuses.
    let acl = Change::SetXattr {
        name: XATTR_POSIX_ACL_ACCESS,
        value: b"acl",
    };
    assert_eq!(hmac.decide(&i, acl), allowed(true));
    let mut bare = file();
    bare.xattrs.clear();
    assert_eq!(hmac.decide(&bare, acl), allowed(true));
    assert_eq!(
        refusal(hmac.decide(&tampered(i), acl)),
        eperm(Status::Fail, &["appraise_metadata"])
    );
}

#[test]
fn verify_converts_only_verified_signatures() {
    let key = hmac_key();
    let r = ring();
    let keys = EvmKeys {
        hmac: Some(&key),
        x509: Some(&r),
    };
    let facts = InodeFacts::default();
    let cfg = EvmConfig::default();
    let s = signed(EvmKind::Signature);
    let st = crate::evm::verify(&cfg, &keys, &s).status;
    assert_eq!(st, Status::Pass);
    assert!(converts_to_hmac(&keys, &facts, &s, st));
    // Not a failing one, not a portable one, not an HMAC, not on a read-only inode, not
    // without an HMAC key.
    assert!(!converts_to_hmac(
        &keys,
        &facts,
        &tampered(s.clone()),
        Status::Fail
    ));
    let p = signed(EvmKind::Portable);
    assert!(!converts_to_hmac(&keys, &facts, &p, Status::PassImmutable));
    assert!(!converts_to_hmac(&keys, &facts, &hmaced(), Status::Pass));
    let ro = InodeFacts {
        writable: false,
        ..facts
    };
    assert!(!converts_to_hmac(&keys, &ro, &s, st));
    let x509 = EvmKeys {
        hmac: None,
        x509: Some(&r),
    };
    assert!(!converts_to_hmac(&x509, &facts, &s, st));
    // The HMAC written is the kernel's over the unchanged inode, and it then verifies.
    let EvmUpdate::Set(v) = update_evmxattr(&cfg, &key, &s) else {
        panic!("not converted");
    };
    let mut after = s;
    after.xattrs.insert(XATTR_EVM.into(), v.to_vec());
    assert_eq!(crate::evm::verify(&cfg, &keys, &after).status, Status::Pass);
}

#[test]
fn chown_drops_setid_bits_as_the_vfs_does() {
    let c = |mode, uid| Change::chown(mode, uid, None);
    let m = |ch: Change<'_>| match ch {
        Change::SetAttr { mode, .. } => mode,
        _ => unreachable!(),
    };
    assert_eq!(m(c(0o104755, Some(1))), Some(0o100755));
    assert_eq!(m(c(0o102755, Some(1))), Some(0o100755));
    // set-group-ID without group execute is mandatory locking, kept.
    assert_eq!(m(c(0o102745, Some(1))), None);
    assert_eq!(m(c(0o100644, Some(1))), None);
    assert_eq!(m(c(0o046755, Some(1))), None, "directories keep them");
}

fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    PosixAcl(
        entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect(),
    )
    .to_vec()
}

#[test]
fn acls_change_what_they_do_to_the_mode() {
    use AclEntry as E;
    let x509 = Env::new(false, true);
    let p = signed(EvmKind::Portable); // mode 0644
    let set = |v: &[u8]| {
        x509.decide(
            &p,
            Change::SetXattr {
                name: XATTR_POSIX_ACL_ACCESS,
                value: v,
            },
        )
        .map(|_| ())
    };
    // Equivalent to 0644: no change (evm_xattr_acl_change), allowed under PASS_IMMUTABLE.
    let same = acl(&[(E::USER_OBJ, 6, 0), (E::GROUP_OBJ, 4, 0), (E::OTHER, 4, 0)]);
    assert_eq!(set(&same), Ok(()));
    // A named user with mask r--: the group bits come from the mask, still 0644.
    let named = acl(&[
        (E::USER_OBJ, 6, 0),
        (E::USER, 7, 1000),
        (E::GROUP_OBJ, 4, 0),
        (E::MASK, 4, 0),
        (E::OTHER, 4, 0),
    ]);
    assert_eq!(set(&named), Ok(()));
    // u::rwx would make it 0744: refused.
    let wider = acl(&[(E::USER_OBJ, 7, 0), (E::GROUP_OBJ, 4, 0), (E::OTHER, 4, 0)]);
    assert_eq!(set(&wider).unwrap_err().status, Some(Status::PassImmutable));
    // Malformed, empty or removed: always a change.
    let bad_version = [&[1u8, 0, 0, 0][..], &same[4..]].concat();
    for v in [
        &bad_version[..],
        &same[..same.len() - 1],
        &acl(&[]),
        &[][..],
    ] {
        assert!(set(v).is_err(), "{v:?}");
    }
    let rm = x509.decide(
        &p,
        Change::RemoveXattr {
            name: XATTR_POSIX_ACL_ACCESS,
        },
    );
    assert!(rm.is_err());

    // posix_acl_equiv_mode in detail: entry order, mask, set-group-ID, unknown tags.
    let a = PosixAcl::from_bytes(&named).unwrap();
    assert_eq!(a.to_vec(), named);
    assert_eq!(a.mode_after(0o102755, true), Some(0o102644));
    assert_eq!(a.mode_after(0o102755, false), Some(0o100644));
    let group_after_mask = PosixAcl(vec![
        AclEntry {
            tag: E::MASK,
            perm: 4,
            id: 0,
        },
        AclEntry {
            tag: E::GROUP_OBJ,
            perm: 3,
            id: 0,
        },
    ]);
    assert_eq!(group_after_mask.mode_after(0o100000, true), Some(0o100070));
    assert!(PosixAcl::from_bytes(&acl(&[(0x40, 7, 0)])).is_err());
    assert!(PosixAcl::from_bytes(&acl(&[(E::USER, 7, u32::MAX)])).is_err());
}
