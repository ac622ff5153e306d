#![no_main]
//! One binary-list entry: the first byte picks the bank and byte order. Whatever decodes
//! re-encodes to the same bytes, and renders to an ascii line that parses back to it.

use ima_core::codec::{Endian, Reader};
use ima_core::hash::HashAlgo;
use ima_core::log::binary::{self, RawEntry};
use ima_core::log::{ListFormat, ascii};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else { return };
    let bank = if sel & 1 == 0 { HashAlgo::SHA1 } else { HashAlgo::SHA256 };
    let endian = if sel & 2 == 0 { Endian::Little } else { Endian::Big };
    let f = ListFormat { bank, endian };
    let mut r = Reader::new(bytes);
    let Ok(raw) = RawEntry::decode(&mut r, f) else { return };
    let consumed = &bytes[..r.offset()];
    let Ok(e) = raw.to_entry(f) else { return };
    let mut out = Vec::new();
    binary::encode_entry(&e, f, &mut out);
    assert_eq!(out, consumed);
    let mut line = Vec::new();
    if ascii::render_entry(&e, &[], endian, &mut line).is_ok() {
        let line = line.strip_suffix(b"\n").unwrap();
        // Names holding a newline or space are not representable in the ascii list.
        if let Ok(back) = ascii::parse_line(line, 1, bank, &[], endian) {
            let mut again = Vec::new();
            ascii::render_entry(&back, &[], endian, &mut again).unwrap();
            assert_eq!(&again[..again.len() - 1], line);
        }
    }
});
