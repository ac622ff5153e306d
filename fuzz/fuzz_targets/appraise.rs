#![no_main]
//! The appraisal decision over an arbitrary `security.ima` value: never panics; a pass needs
//! a label matching the digest; fix mode only ever writes a hash label of the digest.

use ima_core::appraise::{self, ImaXattr, Mode, Request, Requirements};
use ima_core::integrity::Status;
use ima_core::digsig::{KeyId, Verifier, VerifyError};
use ima_core::hash::{Digest, HashAlgo};
use libfuzzer_sys::fuzz_target;

struct Reject;
impl Verifier for Reject {
    fn verify_digest(&self, _: KeyId, _: &Digest, _: &[u8]) -> Result<(), VerifyError> {
        Err(VerifyError::BadSignature)
    }
}

fuzz_target!(|data: &[u8]| {
    let algo = appraise::hash_algo(Some(data), HashAlgo::SHA256);
    let digest = algo.digest(b"content").ok();
    for (mode, digsig) in [(Mode::Enforce, false), (Mode::Fix, false), (Mode::Log, true)] {
        let r = Request {
            mode,
            req: Requirements { digsig, ..Requirements::default() },
            ima: ImaXattr::Value(data),
            digest,
            evm: Status::Unknown,
            new_file: false,
            size: 7,
        };
        let a = appraise::appraise(&r, &Reject);
        if a.verdict().is_pass() {
            let d = digest.unwrap();
            assert!(matches!(data[0], 1 | 4));
            assert!(data.windows(d.len()).any(|w| w == &d[..]));
        }
        if let Some(fix) = a.fix() {
            assert_eq!(fix[..], appraise::hash_xattr(&digest.unwrap())[..]);
        }
    }
});
