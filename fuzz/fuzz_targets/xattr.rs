#![no_main]
//! security.ima / security.evm values: decoding never panics, and whatever decodes
//! re-encodes to the same bytes.

use ima_core::codec::Codec;
use ima_core::xattr::XattrValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = XattrValue::from_bytes(data) {
        assert_eq!(v.to_vec(), data);
        let _ = v.hash_algo();
        let _ = v.to_string();
    }
});
