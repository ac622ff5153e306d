#![no_main]
//! `/proc/PID/fdinfo` and `/proc/PID/maps` parsing (`ima_sys::procfs`, open_writers):
//! never panics, never reports more mappings than lines.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ima_sys::procfs::fdinfo_flags(data);
    let lines = data.split(|b| *b == b'\n').count();
    assert!(ima_sys::procfs::shared_writable_mappings(data).len() <= lines);
});
