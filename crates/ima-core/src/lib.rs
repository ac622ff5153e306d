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
