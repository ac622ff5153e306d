#![no_main]
//! The software PCR bank file (`ima_tpm::SoftPcrs`), the engine's cache file and its boot
//! record: parsing never panics.

use ima_tpm::{SoftPcrs, Tpm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut s) = SoftPcrs::from_bytes(std::path::Path::new("fuzz"), data) {
        assert_eq!(s.pcr_read(ima_core::hash::HashAlgo::SHA256, &[23]).unwrap().len(), 1);
    }
    let _ = ima_engine::Cache::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ima_engine::boot::BootRecord::parse(text, std::path::Path::new("fuzz"));
    }
});
