#![no_main]
//! A whole ascii list (sha1 column): parsing never panics; what parses renders to text that
//! parses to the same entries, and survives a trip through the binary encoding.

use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::{ListFormat, ascii, binary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let e = Endian::Little;
    let Ok(entries) = ascii::decode(data, HashAlgo::SHA1, &[], e) else { return };
    let text = ascii::encode(&entries, &[], e).unwrap();
    assert_eq!(ascii::decode(&text, HashAlgo::SHA1, &[], e).unwrap(), entries);
    let bin = binary::encode(&entries, ListFormat::default());
    assert_eq!(binary::decode(&bin, ListFormat::default()).unwrap(), entries);
});
