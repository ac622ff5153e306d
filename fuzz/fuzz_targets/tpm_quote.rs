#![no_main]
//! TPMS_ATTEST, TPMT_SIGNATURE and PCR-values parsing (`ima_tpm::quote`): never panics;
//! whatever parses as an attest splits a values file of the right size.

use ima_tpm::quote::{self, AkPublic, Attest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Attest::parse(data) {
        let n: usize = a
            .selection
            .iter()
            .map(|(b, p)| b.digest_len().unwrap_or(0) * p.len())
            .sum();
        let vals = vec![0u8; n];
        assert!(a.split_pcr_values(&vals).is_ok());
        assert!(a.split_pcr_values(&vals[..n.saturating_sub(1)]).is_err() || n == 0);
    }
    let ak = AkPublic::from_p256_point(&[1; 32], &[2; 32]).unwrap();
    let _ = quote::verify_signature(&ak, b"message", data);
    let _ = quote::verify(&ak, data, data, b"", None);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = AkPublic::from_pem(s);
        let _ = quote::parse_selection(s);
    }
});
