#![no_main]
//! Hash algorithm names: parsing any string either fails or round-trips through Display.

use ima_core::hash::HashAlgo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = s.parse::<HashAlgo>() {
            let back: HashAlgo = a.to_string().parse().unwrap();
            assert_eq!(a, back);
        }
    }
});
