#![no_main]
//! Certificate readers (`Certificate::from_der`, `Certificate::parse_all`,
//! `Keyring::add_bytes`): arbitrary bytes never panic; a certificate that parses keeps its
//! exact DER, its key re-parses from its SubjectPublicKeyInfo, its key id is the one the
//! kernel would compute, and a keyring (which also takes PEM public keys) adds every
//! certificate `parse_all` finds and finds each by that id.

use ima_core::digsig::{Certificate, KeyId, Keyring, PublicKey};
use libfuzzer_sys::fuzz_target;

fn check(c: &Certificate) {
    let key = PublicKey::from_spki_der(c.key().spki_der()).expect("own SPKI re-parses");
    assert!(key == *c.key());
    let want = match c.skid() {
        Some(s) if !s.is_empty() => KeyId::from_skid(s),
        _ => c.key().default_keyid(),
    };
    assert_eq!(c.keyid(), want);
    let again = Certificate::from_der(c.der()).expect("own DER re-parses");
    assert_eq!(again.keyid(), c.keyid());
    assert_eq!(again.subject(), c.subject());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Certificate::from_der(data) {
        assert_eq!(c.der(), data);
        check(&c);
    }
    let all = Certificate::parse_all(data);
    if let Ok(certs) = &all {
        assert!(!certs.is_empty());
        certs.iter().for_each(check);
    }
    let mut ring = Keyring::new();
    match (ring.add_bytes(data), &all) {
        (Ok(n), Ok(certs)) => {
            assert!(n >= certs.len());
            assert_eq!(ring.len(), n);
            assert_eq!(ring.iter().count(), certs.len());
            for c in certs {
                assert!(ring.find(c.keyid()).is_some());
                assert!(ring.find_key(c.keyid()).is_some());
            }
        }
        // Only public keys.
        (Ok(n), Err(_)) => assert!(n > 0 && ring.iter().count() == 0 && ring.len() == n),
        (Err(_), _) => assert!(ring.is_empty()),
    }
});
