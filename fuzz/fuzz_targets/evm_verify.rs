#![no_main]
//! EVM verification over arbitrary `security.evm` and `security.ima` values: never panics,
//! and an HMAC value only passes when it is the one we compute.

use ima_core::integrity::Status;
use ima_core::digsig::{KeyId, Verifier, VerifyError};
use ima_core::evm::{self, EvmConfig, EvmKeys, HmacKey, Inode};
use ima_core::hash::Digest;
use libfuzzer_sys::fuzz_target;

struct Reject;
impl Verifier for Reject {
    fn verify_digest(&self, _: KeyId, _: &Digest, _: &[u8]) -> Result<(), VerifyError> {
        Err(VerifyError::BadSignature)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (evm_value, ima_value) = rest.split_at(usize::from(len).min(rest.len()));
    let mut inode = Inode::default();
    inode.xattrs.insert(evm::XATTR_EVM.into(), evm_value.to_vec());
    if !ima_value.is_empty() {
        inode.xattrs.insert(evm::XATTR_IMA.into(), ima_value.to_vec());
    }
    let key = HmacKey::new(&[1; 32]).unwrap();
    let keys = EvmKeys { hmac: Some(&key), x509: Some(&Reject) };
    let cfg = EvmConfig::default();
    let v = evm::verify(&cfg, &keys, &inode);
    if v.status == Status::Pass {
        assert_eq!(key.xattr(&cfg, &inode).unwrap()[..], evm_value[..]);
    }
    let _ = evm::verify_ima_xattr(&cfg, &keys, &inode);
});
