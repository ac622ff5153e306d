#![no_main]
//! A whole binary list (sha1, little endian): decoding never panics, re-encoding gives the
//! same bytes, and replay runs over whatever decodes.

use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::binary::{self, RawEntry};
use ima_core::log::ListFormat;
use ima_core::log::replay;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = ListFormat::default();
    let Ok(raw) = binary::raw_entries(data, f).collect::<Result<Vec<RawEntry<'_>>, _>>() else {
        return;
    };
    let banks = [HashAlgo::SHA1, HashAlgo::SHA256];
    let r = replay::replay(&raw, HashAlgo::SHA1, &banks, &[None, None], Endian::Little).unwrap();
    assert_eq!(r.entries, raw.len());
    if let Ok(entries) = binary::decode(data, f) {
        assert_eq!(binary::encode(&entries, f), data);
    }
});
