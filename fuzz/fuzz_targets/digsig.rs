#![no_main]
//! Signature headers: parsing arbitrary bytes never panics; a decoded signature re-encodes
//! to the same bytes and verifying it against the committed test keyring returns an answer
//! (never a panic). Key and certificate files have their own targets (`keys`, `certs`).

use std::sync::OnceLock;

use ima_core::codec::Codec;
use ima_core::digsig::{Keyring, Signature};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let mut k = Keyring::new();
        let _ = k.add_bytes(include_bytes!("../../testdata/sigs/rsa_x509.pem"));
        let _ = k.add_bytes(include_bytes!("../../testdata/sigs/ec_x509.pem"));
        k
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Signature::from_bytes(data) {
        assert_eq!(s.to_vec(), data);
        if let Some(Ok(d)) = s.hash_algo.is_known().then(|| s.hash_algo.digest(b"x")) {
            let _ = s.verify(keyring(), &d);
        }
    }
});
