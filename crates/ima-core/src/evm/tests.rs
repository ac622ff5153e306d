use hex_literal::hex;

use super::*;
use crate::codec::Codec;
use crate::digsig::{KeyId, Signature, VerifyError};

/// §13.5–13.7 of kernel-ima.md (evmctl 1.4 / 1.6.2 runs): `hello world\n`, root-owned 0644,
/// only security.ima set.
const IMA: [u8; 34] = hex!("0404a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447");
const UUID: [u8; 16] = hex!("112233445566778899aabbccddeeff00");

fn inode(ino: u64, generation: u32) -> Inode {
    Inode {
        xattrs: [(XATTR_IMA.to_owned(), IMA.to_vec())].into(),
        meta: InodeMeta {
            ino,
            generation,
            uid: 0,
            gid: 0,
            mode: 0o100644,
        },
        fs_uuid: UUID,
    }
}

#[test]
fn portable_message_and_digest_13_5() {
    let cfg = EvmConfig::default();
    let m = message(&cfg, &inode(10085267, 1140783678), EvmKind::Portable).unwrap();
    let mut want = IMA.to_vec();
    want.extend_from_slice(&hex!(
        "0000000000000000 00000000 00000000 00000000 a481 0000"
    ));
    assert_eq!(m, want);
    let d = signed_digest(&cfg, &inode(1, 2), EvmKind::Portable, HashAlgo::SHA256).unwrap();
    assert_eq!(
        d.as_bytes(),
        hex!("e85c2fb741128023b50da237db65e54979a2b3b92e6293d43015fa1620ef4e83")
    );
}

#[test]
fn signature_message_with_uuid_13_6() {
    let cfg = EvmConfig::default();
    let i = inode(10085267, 1140783678);
    let m = message(&cfg, &i, EvmKind::Signature).unwrap();
    assert_eq!(
        &m[34..58],
        hex!("93e3990000000000 3efafe43 00000000 00000000 a481 0000")
    );
    assert_eq!(&m[58..], UUID);
    let d = signed_digest(&cfg, &i, EvmKind::Signature, HashAlgo::SHA256).unwrap();
    assert_eq!(
        d.as_bytes(),
        hex!("9abff874a3552a974bb8aa4b51ce2a6136b9e22fdc6fc7f1b352c19e45ec5f34")
    );
}

#[test]
fn hmac_13_7_kernel_compatible() {
    let key_bytes: Vec<u8> = (0u8..32).collect();
    let key = HmacKey::new(&key_bytes).unwrap();
    let i = inode(10085558, 3714297332);
    let cfg = EvmConfig::default();
    assert_eq!(
        key.xattr(&cfg, &i).unwrap(),
        hex!("021a87aa486703ac1a58d85dd7ecc9cca5b841d1cf")
    );
    // Without the fs UUID (evmctl -u / a kernel without EVM_ATTR_FSUUID).
    let no_uuid = EvmConfig {
        fsuuid: false,
        ..EvmConfig::default()
    };
    assert_eq!(
        key.xattr(&no_uuid, &i).unwrap(),
        hex!("02e21b00b3cc2ba6f833a73436bcc1f79979caae52")
    );
    // The key is padded to 128 bytes: the unpadded 32-byte key gives another value.
    let m = message(&cfg, &i, EvmKind::Hmac).unwrap();
    assert_ne!(
        key.hmac(&m),
        hex!("d9f8e4c91f21a57581011154d6b1a56044f142b5")
    );
    // Same key with explicit trailing zeros is the same key.
    let mut padded = key_bytes.clone();
    padded.resize(128, 0);
    assert_eq!(HmacKey::new(&padded).unwrap().hmac(&m), key.hmac(&m));
    assert!(HmacKey::new(&[0; 129]).is_err());
}

#[test]
fn evmctl_1_4_hmac_is_sha256_without_uuid() {
    // evmctl 1.4 `hmac` = HMAC-SHA256(key128, M without UUID): reproduce it to pin our
    // message bytes independently of the kernel-compatible path.
    let mut key = [0u8; 128];
    for (i, b) in key.iter_mut().take(32).enumerate() {
        *b = i as u8;
    }
    let cfg = EvmConfig {
        fsuuid: false,
        ..EvmConfig::default()
    };
    let m = message(&cfg, &inode(10085558, 3714297332), EvmKind::Hmac).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&m);
    assert_eq!(
        mac.finalize().into_bytes()[..],
        hex!("82f0313d5c3bc7839e422402394c20113e2d2e8537d69ec6bcb1410c857286e2")
    );
}

#[test]
fn h_misc_layouts() {
    let meta = InodeMeta {
        ino: 0x1_0000_0002,
        generation: 3,
        uid: 4,
        gid: 5,
        mode: 0o100600,
    };
    let mut v = Vec::new();
    HMiscLayout::LP64_LE.encode(&meta, EvmKind::Hmac, &mut v);
    assert_eq!(
        v,
        hex!("0200000001000000 03000000 04000000 05000000 8081 0000")
    );
    v.clear();
    HMiscLayout::ILP32_LE.encode(&meta, EvmKind::Hmac, &mut v);
    assert_eq!(v, hex!("02000000 03000000 04000000 05000000 8081 0000"));
    assert_eq!(v.len(), HMiscLayout::ILP32_LE.size());
    v.clear();
    let be = HMiscLayout {
        long_bytes: 8,
        endian: Endian::Big,
    };
    be.encode(&meta, EvmKind::Portable, &mut v);
    assert_eq!(
        v,
        hex!("0000000000000000 00000000 00000004 00000005 8180 0000")
    );
}

#[test]
fn xattr_order_and_enabled_flags() {
    let mut i = inode(1, 1);
    i.xattrs.insert(XATTR_CAPS.into(), b"C".to_vec());
    i.xattrs.insert(XATTR_SELINUX.into(), b"S\0".to_vec());
    i.xattrs.insert(XATTR_SMACK.into(), b"K".to_vec());
    i.xattrs.insert("user.other".into(), b"U".to_vec());
    let cfg = EvmConfig::default();
    // Enabled names in list order; SMACK64 disabled in a distro kernel; user.* never.
    let m = message(&cfg, &i, EvmKind::Hmac).unwrap();
    let mut want = b"S\0".to_vec();
    want.extend_from_slice(&IMA);
    want.extend_from_slice(b"C");
    assert_eq!(&m[..want.len()], &want[..]);
    assert_eq!(m.len(), want.len() + 24 + 16);
    // Portable signatures include disabled names too.
    let m = message(&cfg, &i, EvmKind::Portable).unwrap();
    let mut want = b"S\0K".to_vec();
    want.extend_from_slice(&IMA);
    want.extend_from_slice(b"C");
    assert_eq!(&m[..want.len()], &want[..]);
    assert_eq!(m.len(), want.len() + 24);
}

#[test]
fn message_errors() {
    let cfg = EvmConfig::default();
    let mut i = inode(1, 1);
    i.xattrs.clear();
    assert_eq!(
        message(&cfg, &i, EvmKind::Hmac),
        Err(MessageError::NoXattrs)
    );
    i.xattrs.insert(XATTR_CAPS.into(), b"C".to_vec());
    assert!(message(&cfg, &i, EvmKind::Hmac).is_ok());
    assert_eq!(
        message(&cfg, &i, EvmKind::Portable),
        Err(MessageError::PortableWithoutIma)
    );
}

struct Ring(Result<(), VerifyError>);
impl Verifier for Ring {
    fn verify_digest(&self, _: KeyId, _: &Digest, _: &[u8]) -> Result<(), VerifyError> {
        self.0.clone()
    }
}

#[test]
fn verify_statuses() {
    let cfg = EvmConfig::default();
    let key = HmacKey::new(&[7; 32]).unwrap();
    let hmac_only = EvmKeys {
        hmac: Some(&key),
        x509: None,
    };
    let mut i = inode(5, 6);

    // No key loaded: appraisal gets UNKNOWN.
    assert_eq!(
        verify_ima_xattr(&cfg, &EvmKeys::default(), &i).status,
        Status::Unknown
    );
    // No security.evm: NOLABEL with a protected xattr, NOXATTRS without.
    assert_eq!(verify(&cfg, &hmac_only, &i).status, Status::NoLabel);
    let mut bare = i.clone();
    bare.xattrs.clear();
    assert_eq!(verify(&cfg, &hmac_only, &bare).status, Status::NoXattrs);
    // A disabled name (SMACK64) still counts as a protected xattr being present.
    bare.xattrs.insert(XATTR_SMACK.into(), b"x".to_vec());
    assert_eq!(verify(&cfg, &hmac_only, &bare).status, Status::NoLabel);

    // A good HMAC passes; tampering with content of an xattr, the mode, the owner, the
    // inode number or the fs UUID fails.
    let x = key.xattr(&cfg, &i).unwrap();
    i.xattrs.insert(XATTR_EVM.into(), x.to_vec());
    assert_eq!(verify(&cfg, &hmac_only, &i).status, Status::Pass);
    let tamper: [&dyn Fn(&mut Inode); 6] = [
        &|i| i.xattrs.get_mut(XATTR_IMA).unwrap()[5] ^= 1,
        &|i| i.meta.mode = 0o100600,
        &|i| i.meta.uid = 1000,
        &|i| i.meta.gid = 1000,
        &|i| i.meta.ino += 1,
        &|i| i.fs_uuid[0] ^= 1,
    ];
    for t in tamper {
        let mut j = i.clone();
        t(&mut j);
        assert_eq!(verify(&cfg, &hmac_only, &j).status, Status::Fail);
    }
    // Wrong length, empty, unknown type.
    for bad in [&x[..20], &[][..], &[0x07, 1, 2][..]] {
        let mut j = i.clone();
        j.xattrs.insert(XATTR_EVM.into(), bad.to_vec());
        assert_eq!(verify(&cfg, &hmac_only, &j).status, Status::Fail);
    }
    // An HMAC without the HMAC key (X.509-only EVM) fails.
    let ok = Ring(Ok(()));
    let x509 = EvmKeys {
        hmac: None,
        x509: Some(&ok),
    };
    assert_eq!(verify(&cfg, &x509, &i).status, Status::Fail);
}

#[test]
fn verify_signature_statuses() {
    let cfg = EvmConfig::default();
    let ok = Ring(Ok(()));
    let bad = Ring(Err(VerifyError::BadSignature));
    let keys = |r: &'static Ring| EvmKeys {
        hmac: None,
        x509: Some(r),
    };
    let ok: &'static Ring = Box::leak(Box::new(ok));
    let bad: &'static Ring = Box::leak(Box::new(bad));
    let mut i = inode(5, 6);
    let sig = |ty: u8| [ty, 2, 4, 1, 2, 3, 4, 0, 1, 0xaa].to_vec();
    i.xattrs.insert(XATTR_EVM.into(), sig(0x05));
    assert_eq!(verify(&cfg, &keys(ok), &i).status, Status::PassImmutable);
    assert_eq!(verify(&cfg, &keys(bad), &i).status, Status::FailImmutable);
    i.xattrs.insert(XATTR_EVM.into(), sig(0x03));
    assert_eq!(verify(&cfg, &keys(ok), &i).status, Status::Pass);
    assert_eq!(verify(&cfg, &keys(bad), &i).status, Status::Fail);
    // Header only: plain FAIL even for a portable signature.
    i.xattrs.insert(XATTR_EVM.into(), sig(0x05)[..9].to_vec());
    assert_eq!(verify(&cfg, &keys(ok), &i).status, Status::Fail);
    // Unknown hash algorithm id.
    let mut s = sig(0x05);
    s[2] = 200;
    i.xattrs.insert(XATTR_EVM.into(), s);
    assert_eq!(verify(&cfg, &keys(ok), &i).status, Status::FailImmutable);
    // Portable without security.ima: FAIL_IMMUTABLE.
    i.xattrs.insert(XATTR_EVM.into(), sig(0x05));
    i.xattrs.remove(XATTR_IMA);
    i.xattrs.insert(XATTR_CAPS.into(), b"c".to_vec());
    assert_eq!(verify(&cfg, &keys(ok), &i).status, Status::FailImmutable);
}

fn testdata(f: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sigs")
        .join(f);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sign(kind: EvmKind, inode: &Inode) -> Vec<u8> {
    use crate::digsig::PrivateKey;
    use crate::integrity::XattrType;
    let key = PrivateKey::from_pem(&testdata("rsa_priv.pem"), None).unwrap();
    let cfg = EvmConfig::default();
    let d = signed_digest(&cfg, inode, kind, HashAlgo::SHA256).unwrap();
    Signature::sign_digest(&key, XattrType(kind.type_byte()), 2, key.keyid(), &d)
        .unwrap()
        .to_vec()
}

/// §13.5: evmctl 1.4 `sign --portable -a sha256 --key rsa_priv.pem` (RSA PKCS#1 v1.5 is
/// deterministic, so the bytes must match), and it verifies against the certificate.
const PORTABLE_13_5: &str = "050204a5cacb280100b3e0740b61d817a59ebacef5afd5d12d50b66ea764ec3e326fd51670ca087a4252b300aadebf415f8d22eb81de710a227999b008d7913445f54fea461e834f697a5a8b2b04d9f80a9caf041f420686631cc530813aa29d13b061a9e29dedc1c0f923c0a90840f164014ee8cf1199f4a6ea4c0e6507c24c3acaedee81a7194935651c523eab77a2bb1d351006666ee60c4d6bf4933df613abcc32784e5718a1eb2a1ff393937a268a7cbedd77b9c6caf80aa48d348c94639e2a8e638d8622c23a43208ec18ce5fbf623a38182611bf1e3bb80958fb6bd904a9973028a46b0b63c81f91559539d4eb92346bdfab51ae954ef9550cdd19066f71ec2d5c6dfa54630";
/// §13.6: evmctl 1.4 `sign -a sha256 --uuid=1122…ff00` at ino 10085267, generation 1140783678.
const SIG_13_6: &str = "030204a5cacb2801005ffa0943c8dc82aadbf2eb3b85debd615324645ddb12299ba2c90da01b3425a351afcba13bb32108941a54dc596dea0c8c44482b86272325278ebad0509c4b6db17b618ec287b11d044b9b7a4dff407f3b44e35f8d8d531a984443929f262afe7cdf90756b260fe874571e90f7149cfbb23e761896d6bb2bc2827a846336fd12a1644a95954b108919cf8c3c667057e27aa47658bf580b1cfa94ff80ef20f0c34dcb02519b3195fd8433afb32e8f9209efd96ecd9f436af23b58ac7e2eb0f9087a29857a7f71771191615e3d289499042a2b5ab022f3cdac5b78a475c930c2f25034aef5b51cdae8b794609d12a52a318edf8232a4fbda3c478cecd21602ce12";

#[test]
fn rsa_signatures_13_5_and_13_6_byte_exact() {
    let mut ring = crate::digsig::Keyring::new();
    ring.add_bytes(&testdata("rsa_x509.pem")).unwrap();
    let keys = EvmKeys {
        hmac: None,
        x509: Some(&ring),
    };
    let cfg = EvmConfig::default();
    for (kind, want, ino, generation, status) in [
        (
            EvmKind::Portable,
            PORTABLE_13_5,
            1,
            2,
            Status::PassImmutable,
        ),
        (
            EvmKind::Signature,
            SIG_13_6,
            10085267,
            1140783678,
            Status::Pass,
        ),
    ] {
        let mut i = inode(ino, generation);
        let got = sign(kind, &i);
        assert_eq!(hex::encode(&got), want, "{kind:?}");
        i.xattrs.insert(XATTR_EVM.into(), got);
        assert_eq!(verify(&cfg, &keys, &i).status, status);
        // One byte of security.ima, the mode or the owner changed: detected.
        let mut j = i.clone();
        j.xattrs.get_mut(XATTR_IMA).unwrap()[33] ^= 0x80;
        let fail = if kind == EvmKind::Portable {
            Status::FailImmutable
        } else {
            Status::Fail
        };
        assert_eq!(verify(&cfg, &keys, &j).status, fail);
        let mut j = i.clone();
        j.meta.mode = 0o100755;
        assert_eq!(verify(&cfg, &keys, &j).status, fail);
        let mut j = i.clone();
        j.meta.uid = 1;
        assert_eq!(verify(&cfg, &keys, &j).status, fail);
        // Unknown key: fails too.
        let empty = crate::digsig::Keyring::new();
        let none = EvmKeys {
            hmac: None,
            x509: Some(&empty),
        };
        assert_eq!(verify(&cfg, &none, &i).status, fail);
    }
}
