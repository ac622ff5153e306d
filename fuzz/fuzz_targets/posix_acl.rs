#![no_main]
//! POSIX ACL xattrs as EVM reads them (`posix_acl_from_xattr` + `posix_acl_update_mode`):
//! decoding never panics, what decodes re-encodes to the same bytes, and the mode it gives
//! keeps the file type bits.

use ima_core::codec::Codec;
use ima_core::evm::protect::PosixAcl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(acl) = PosixAcl::from_bytes(data) {
        assert_eq!(acl.to_vec(), data);
        for keep in [false, true] {
            if let Some(m) = acl.mode_after(0o102755, keep) {
                assert_eq!(m & 0o170000, 0o100000);
            }
        }
    }
});
