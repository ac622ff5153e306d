use super::*;
use crate::xattr::XattrValue;
use hex_literal::hex;
use proptest::prelude::*;

// Vectors: kernel-ima.md §13 (evmctl 1.4/1.6.2 + openssl), copied to testdata/sigs with
// their provenance.
const RSA_CERT: &str = include_str!("../../../../testdata/sigs/rsa_x509.pem");
const EC_CERT: &str = include_str!("../../../../testdata/sigs/ec_x509.pem");
const RSA_KEY: &str = include_str!("../../../../testdata/sigs/rsa_priv.pem");
const EC_KEY: &str = include_str!("../../../../testdata/sigs/ec_priv.pem");
const SIG_RSA_SHA256: &str = include_str!("../../../../testdata/sigs/ima-sig-rsa-sha256.hex");
const SIG_RSA_SHA1: &str = include_str!("../../../../testdata/sigs/ima-sig-rsa-sha1.hex");
const SIG_EC_SHA256: &str = include_str!("../../../../testdata/sigs/ima-sig-ec-sha256.hex");
const SIGV3_RSA: &str = include_str!("../../../../testdata/sigs/ima-sigv3-rsa-sha256.hex");
const DATA: &[u8] = b"hello world\n";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).unwrap()
}

fn keyring() -> Keyring {
    let mut k = Keyring::new();
    k.add_bytes(RSA_CERT.as_bytes()).unwrap();
    k.add_bytes(EC_CERT.as_bytes()).unwrap();
    k
}

fn sig_of(hexstr: &str) -> Signature {
    match XattrValue::from_bytes(&unhex(hexstr)).unwrap() {
        XattrValue::Signature(s) => s,
        other => panic!("not a signature: {other:?}"),
    }
}

#[test]
fn certificate_keyids_are_the_skid_tail() {
    let k = keyring();
    let ids: Vec<String> = k.iter().map(|c| c.keyid().to_string()).collect();
    assert_eq!(ids, ["a5cacb28", "7a03a59e"]);
    let rsa = k.find(KeyId(0xa5cacb28)).unwrap();
    assert_eq!(rsa.key().algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
    assert!(
        rsa.subject().contains("ima test signing key"),
        "{}",
        rsa.subject()
    );
    // OpenSSL's default SKID is SHA-1 of the public key bits, so evmctl's fallback agrees.
    assert_eq!(rsa.key().default_keyid(), KeyId(0xa5cacb28));
    assert_eq!(
        k.find(KeyId(0x7a03a59e)).unwrap().key().algorithm(),
        KeyAlgorithm::Ecdsa(Curve::P256)
    );
    // DER works as well as PEM.
    let der = rsa.der().to_vec();
    assert_eq!(
        Certificate::parse_all(&der).unwrap()[0].keyid(),
        rsa.keyid()
    );
}

#[test]
fn evmctl_v2_signatures_verify_and_reencode() {
    let k = keyring();
    for (hexstr, algo) in [
        (SIG_RSA_SHA256, HashAlgo::SHA256),
        (SIG_RSA_SHA1, HashAlgo::SHA1),
        (SIG_EC_SHA256, HashAlgo::SHA256),
    ] {
        let s = sig_of(hexstr);
        assert_eq!(
            (s.kind, s.version, s.hash_algo),
            (XattrType::DIGSIG, 2, algo)
        );
        assert_eq!(XattrValue::Signature(s.clone()).to_vec(), unhex(hexstr));
        let d = algo.digest(DATA).unwrap();
        s.verify(&k, &d).unwrap();
        // One changed content byte.
        let bad = algo.digest(b"hello world!").unwrap();
        assert_eq!(s.verify(&k, &bad), Err(VerifyError::BadSignature));
        // One changed signature byte.
        let mut t = s.clone();
        let last = t.sig.len() - 1;
        t.sig[last] ^= 0x01;
        assert_eq!(t.verify(&k, &d), Err(VerifyError::BadSignature));
    }
}

#[test]
fn evmctl_rsa_signature_is_reproduced_exactly() {
    // PKCS#1 v1.5 is deterministic: our signature must equal evmctl's byte for byte.
    let key = PrivateKey::from_pem(RSA_KEY.as_bytes(), None).unwrap();
    assert_eq!(key.keyid(), KeyId(0xa5cacb28));
    let d = HashAlgo::SHA256.digest(DATA).unwrap();
    let s = Signature::sign_v2(&key, key.keyid(), &d).unwrap();
    assert_eq!(XattrValue::Signature(s).to_vec(), unhex(SIG_RSA_SHA256));
}

#[test]
fn evmctl_v3_verity_signature() {
    let s = sig_of(SIGV3_RSA);
    assert_eq!((s.kind, s.version), (XattrType::VERITY_DIGSIG, 3));
    // §13.4: the "fs-verity digest" stand-in is SHA256("fsverity-test").
    let vd = HashAlgo::SHA256.digest(b"fsverity-test").unwrap();
    assert_eq!(
        vd.to_hex(),
        "64919d592f49ecc2e6c3f51a72a8fae71582770a4685aba807f57a31cf2d1131"
    );
    assert_eq!(
        file_id_hash(XattrType::VERITY_DIGSIG, &vd)
            .unwrap()
            .to_hex(),
        "85f7d0270c4d5f1681d12d2d649b34fc1f30a90dd37cfe3150f4425e9c56ec48"
    );
    s.verify(&keyring(), &vd).unwrap();
    let key = PrivateKey::from_pem(RSA_KEY.as_bytes(), None).unwrap();
    let ours = Signature::sign_v3(&key, key.keyid(), &vd).unwrap();
    assert_eq!(XattrValue::Signature(ours).to_vec(), unhex(SIGV3_RSA));
}

#[test]
fn ec_sign_verify_every_hash() {
    let key = PrivateKey::from_pem(EC_KEY.as_bytes(), None).unwrap();
    assert_eq!(key.keyid(), KeyId(0x7a03a59e));
    let k = keyring();
    for algo in [
        HashAlgo::SHA1,
        HashAlgo::SHA224,
        HashAlgo::SHA256,
        HashAlgo::SHA384,
        HashAlgo::SHA512,
        HashAlgo::SM3_256,
    ] {
        let d = algo.digest(DATA).unwrap();
        let s = Signature::sign_v2(&key, key.keyid(), &d).unwrap();
        s.verify(&k, &d).unwrap();
        let other = algo.digest(b"other").unwrap();
        assert_eq!(
            s.verify(&k, &other),
            Err(VerifyError::BadSignature),
            "{algo}"
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let k = keyring();
    let mut s = sig_of(SIG_RSA_SHA256);
    let d = HashAlgo::SHA256.digest(DATA).unwrap();
    let d1 = HashAlgo::SHA1.digest(DATA).unwrap();
    assert!(matches!(
        s.verify(&k, &d1),
        Err(VerifyError::AlgoMismatch { .. })
    ));
    s.keyid = KeyId(0x01020304);
    assert_eq!(s.verify(&k, &d), Err(VerifyError::NoKey(KeyId(0x01020304))));
    s.keyid = KeyId(0xa5cacb28);
    s.version = 4;
    assert_eq!(s.verify(&k, &d), Err(VerifyError::UnsupportedVersion(4)));
    // An RSA signature checked with the EC key (wrong key type under the same id).
    let mut s = sig_of(SIG_RSA_SHA256);
    s.keyid = KeyId(0x7a03a59e);
    assert_eq!(s.verify(&k, &d), Err(VerifyError::BadSignature));
    // RSA has no DigestInfo for sm3 here (the kernel's pkcs1pad has none either).
    let rsa = PrivateKey::from_pem(RSA_KEY.as_bytes(), None).unwrap();
    let dsm3 = HashAlgo::SM3_256.digest(DATA).unwrap();
    assert!(matches!(
        Signature::sign_v2(&rsa, rsa.keyid(), &dsm3),
        Err(SignError::UnsupportedCombination { .. })
    ));
}

const RSA1024_CERT: &str = include_str!("../../../../testdata/sigs/rsa1024_x509.pem");
const RSA1024_KEY: &str = include_str!("../../../../testdata/sigs/rsa1024_priv.pem");
const RSA1024_PUB: &str = include_str!("../../../../testdata/sigs/rsa1024_pub.pem");
const P192_CERT: &str = include_str!("../../../../testdata/sigs/p192_x509.pem");
const P192_KEY: &str = include_str!("../../../../testdata/sigs/p192_priv.pem");

/// evmctl 1.4's RSA-1024 signatures with legacy digests verify, and ours are the same bytes
/// (PKCS#1 v1.5 is deterministic).
#[test]
fn rsa1024_legacy_digests_match_evmctl() {
    let mut ring = Keyring::new();
    ring.add_bytes(RSA1024_CERT.as_bytes()).unwrap();
    let key = PrivateKey::from_pem(RSA1024_KEY.as_bytes(), None).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 1024 });
    for (algo, file) in [
        (
            HashAlgo::MD5,
            include_str!("../../../../testdata/sigs/ima-sig-rsa1024-md5.hex"),
        ),
        (
            HashAlgo::SHA1,
            include_str!("../../../../testdata/sigs/ima-sig-rsa1024-sha1.hex"),
        ),
        (
            HashAlgo::SHA224,
            include_str!("../../../../testdata/sigs/ima-sig-rsa1024-sha224.hex"),
        ),
        (
            HashAlgo::RIPE_MD_160,
            include_str!("../../../../testdata/sigs/ima-sig-rsa1024-rmd160.hex"),
        ),
    ] {
        let s = sig_of(file);
        let d = algo.digest(DATA).unwrap();
        s.verify(&ring, &d)
            .unwrap_or_else(|e| panic!("{algo}: {e}"));
        let ours = Signature::sign_v2(&key, key.keyid(), &d).unwrap();
        assert_eq!(ours, s, "{algo}");
    }
    // The PEM public key (no certificate) verifies too, also from a keyring, under
    // evmctl's key id for it (here the certificate's SubjectKeyIdentifier).
    let pk = PublicKey::from_pem_or_cert(RSA1024_PUB.as_bytes()).unwrap();
    assert_eq!(&pk, key.public_key());
    let mut bare = Keyring::new();
    assert_eq!(bare.add_bytes(RSA1024_PUB.as_bytes()).unwrap(), 1);
    assert_eq!((bare.len(), bare.iter().count()), (1, 0));
    assert_eq!(bare.find_key(pk.default_keyid()), Some(&pk));
    let s = sig_of(include_str!(
        "../../../../testdata/sigs/ima-sig-rsa1024-sha1.hex"
    ));
    s.verify(&bare, &HashAlgo::SHA1.digest(DATA).unwrap())
        .unwrap();
    // A PEM file with neither a certificate nor a public key adds nothing.
    let err = bare.add_bytes(RSA1024_KEY.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("certificate or public key"),
        "{err}"
    );
    assert_eq!(bare.len(), 1);
}

#[test]
fn p192_signs_and_verifies_every_hash() {
    let mut ring = Keyring::new();
    ring.add_bytes(P192_CERT.as_bytes()).unwrap();
    let s = sig_of(include_str!(
        "../../../../testdata/sigs/ima-sig-p192-sha256.hex"
    ));
    let d = HashAlgo::SHA256.digest(DATA).unwrap();
    s.verify(&ring, &d).unwrap();
    let key = PrivateKey::from_pem(P192_KEY.as_bytes(), None).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Ecdsa(Curve::P192));
    assert_eq!(key.keyid(), s.keyid);
    for algo in [
        HashAlgo::MD5,
        HashAlgo::SHA1,
        HashAlgo::SHA224,
        HashAlgo::SHA256,
        HashAlgo::SHA384,
        HashAlgo::SHA512,
    ] {
        let d = algo.digest(DATA).unwrap();
        let ours = Signature::sign_v2(&key, key.keyid(), &d).unwrap();
        ours.verify(&ring, &d).unwrap();
        let other = algo.digest(b"other").unwrap();
        assert_eq!(
            ours.verify(&ring, &other),
            Err(VerifyError::BadSignature),
            "{algo}"
        );
    }
}

#[test]
fn digest_info_prefixes_are_rfc8017s() {
    // RFC 8017 §9.2 note 1 lists these byte strings.
    assert_eq!(
        hex::encode(digest_info_prefix(HashAlgo::SHA256).unwrap()),
        "3031300d060960864801650304020105000420"
    );
    assert_eq!(
        hex::encode(digest_info_prefix(HashAlgo::SHA1).unwrap()),
        "3021300906052b0e03021a05000414"
    );
    assert_eq!(
        hex::encode(digest_info_prefix(HashAlgo::MD5).unwrap()),
        "3020300c06082a864886f70d020505000410"
    );
    assert_eq!(digest_info_prefix(HashAlgo::SM3_256), None);
}

#[test]
fn key_parsing_errors() {
    assert!(matches!(
        PrivateKey::from_pem(b"nothing here", None),
        Err(KeyError::Missing(_))
    ));
    let broken = RSA_KEY.replace(
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDdgyoeoPNrim63",
        "!!!!",
    );
    let e = PrivateKey::from_pem(broken.as_bytes(), None).unwrap_err();
    assert!(matches!(e, KeyError::Pem { line: 1, .. }), "{e}");
    // A certificate is not a private key.
    assert!(PrivateKey::from_pem(RSA_CERT.as_bytes(), None).is_err());
    // Garbage DER certificate.
    let e = Certificate::parse_all(&[0x30, 0x03, 1, 2, 3]).unwrap_err();
    assert!(matches!(e, KeyError::Der { .. }), "{e}");
    // A key with the certificate appended: keyid comes from the certificate.
    let with_cert = format!("{RSA_KEY}{EC_CERT}");
    let k = PrivateKey::from_pem(with_cert.as_bytes(), None).unwrap();
    assert_eq!(k.keyid(), KeyId(0x7a03a59e));
}

#[test]
fn keyid_parsing() {
    assert_eq!("1badcafe".parse::<KeyId>().unwrap(), KeyId(0x1badcafe));
    assert_eq!("0xA5CACB28".parse::<KeyId>().unwrap(), KeyId(0xa5cacb28));
    assert!("123456789".parse::<KeyId>().is_err());
    assert!("xyz".parse::<KeyId>().is_err());
    assert_eq!(KeyId(0xab).to_string(), "000000ab");
    assert_eq!(KeyId::from_skid(&hex!("0102030405")), KeyId(0x02030405));
}

#[test]
fn header_framing() {
    let s = Signature::from_bytes(&hex!("030204a5cacb280002aabb")).unwrap();
    assert_eq!(s.sig, [0xaa, 0xbb]);
    let e = Signature::from_bytes(&hex!("030204a5cacb280001aabb")).unwrap_err();
    assert!(
        matches!(e.kind, DecodeErrorKind::TrailingBytes { count: 1 }),
        "{e}"
    );
    let e = Signature::from_bytes(&hex!("030204a5cacb280000")).unwrap_err();
    assert_eq!(e.offset, 7);
}

proptest! {
    #[test]
    fn signature_codec_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(s) = Signature::from_bytes(&bytes) {
            prop_assert_eq!(s.to_vec(), bytes);
        }
    }
}

#[test]
fn kernel_shaped_digsig_verify() {
    // `digsig_verify` (integrity_digsig_verify) over this crate's Keyring.
    let k = keyring();
    let x = unhex(SIG_RSA_SHA256);
    let d = HashAlgo::SHA256.digest(DATA).unwrap();
    digsig_verify(&k, &x, &d).unwrap();
    let d1 = HashAlgo::SHA1.digest(DATA).unwrap();
    assert!(matches!(
        digsig_verify(&k, &x, &d1),
        Err(DigsigError::Invalid(_))
    ));
    let mut bad = x.clone();
    bad[20] ^= 1;
    assert!(matches!(
        digsig_verify(&k, &bad, &d),
        Err(DigsigError::Invalid(_))
    ));
    // Version 1 goes to the kernel's v1 path, which has no key here: a failure, not
    // EOPNOTSUPP (so appraisal says invalid-signature, as the kernel does).
    let mut v1 = x.clone();
    v1[1] = 1;
    assert!(matches!(
        digsig_verify(&k, &v1, &d),
        Err(DigsigError::Invalid(_))
    ));
    let mut v4 = x.clone();
    v4[1] = 4;
    assert!(matches!(
        digsig_verify(&k, &v4, &d),
        Err(DigsigError::Unsupported(_))
    ));
    let mut nokey = x.clone();
    nokey[3] ^= 0xff;
    assert_eq!(
        digsig_verify(&k, &nokey, &d),
        Err(DigsigError::NoKey(KeyId(0x5aca_cb28)))
    );
    assert!(matches!(
        digsig_verify(&k, &x[..12], &d),
        Err(DigsigError::Invalid(_))
    ));
    // v3: the caller passes H(ima_file_id).
    let v3 = unhex(SIGV3_RSA);
    let vd = HashAlgo::SHA256.digest(b"fsverity-test").unwrap();
    let id = file_id_hash(XattrType::VERITY_DIGSIG, &vd).unwrap();
    digsig_verify(&k, &v3, &id).unwrap();
}
