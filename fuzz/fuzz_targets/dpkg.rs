#![no_main]
//! dpkg's `.list` and `.md5sums` records (`ima_verifier::dpkg`, `attest refs --dpkg`): never
//! panic; what parses is absolute paths and 16-byte md5s, no more than there are lines.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|b| *b == b'\n').count();
    if let Ok(paths) = ima_verifier::dpkg::parse_list(data) {
        assert!(paths.len() <= lines);
        assert!(paths.iter().all(|p| p.starts_with('/')));
    }
    if let Ok(sums) = ima_verifier::dpkg::parse_md5sums(data) {
        assert!(sums.len() <= lines);
        assert!(sums.keys().all(|p| p.starts_with('/') && !p.starts_with("//")));
    }
});
