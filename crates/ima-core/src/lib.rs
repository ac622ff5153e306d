#![doc = include_str!("../README.md")]

pub mod appraise;
pub mod attest;
pub mod audit;
pub mod codec;
pub mod digsig;
pub mod evm;
pub mod hash;
pub mod integrity;
pub mod log;
pub mod policy;
pub mod template;
pub mod verity;
pub mod xattr;

/// An error and its sources, `: `-joined (`what: why: root cause`), for the places that log
/// or answer an error as text (a daemon's log, a socket reply, a per-file summary line).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
