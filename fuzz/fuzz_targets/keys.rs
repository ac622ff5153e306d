#![no_main]
//! Key readers (`PublicKey::from_spki_der`, `PublicKey::from_pem_or_cert`,
//! `PrivateKey::from_der`, `PrivateKey::from_pem`): arbitrary bytes never panic; a key that
//! parses re-parses from its own SubjectPublicKeyInfo to the same key, and a private key
//! that parses signs a digest its own public key verifies (a key that loads but cannot
//! make a valid signature would label files the kernel then refuses).

use ima_core::digsig::v1::keyid_v1;
use ima_core::digsig::{PrivateKey, PublicKey};
use ima_core::hash::HashAlgo;
use libfuzzer_sys::fuzz_target;

fn check_public(k: &PublicKey, data: &[u8]) {
    let again = PublicKey::from_spki_der(k.spki_der()).expect("own SPKI re-parses");
    assert!(again == *k);
    assert_eq!(again.default_keyid(), k.default_keyid());
    let _ = keyid_v1(k);
    let d = HashAlgo::SHA256.digest(b"x").unwrap();
    let _ = k.verify(&d, data);
}

fn check_private(k: &PrivateKey) {
    let public = k.public_key();
    assert!(PublicKey::from_spki_der(public.spki_der()).is_ok_and(|p| p == *public));
    let _ = k.keyid();
    let d = HashAlgo::SHA256.digest(b"fuzz").unwrap();
    let sig = k.sign_digest(&d).expect("a loaded key signs sha256");
    public
        .verify(&d, &sig)
        .expect("the key's own signature verifies");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = PublicKey::from_spki_der(data) {
        assert_eq!(k.spki_der(), data);
        check_public(&k, data);
    }
    if let Ok(k) = PublicKey::from_pem_or_cert(data) {
        check_public(&k, data);
    }
    if let Ok(k) = PrivateKey::from_der(data) {
        check_private(&k);
    }
    for pw in [None, Some(&b"pw"[..])] {
        if let Ok(k) = PrivateKey::from_pem(data, pw) {
            check_private(&k);
        }
    }
});
