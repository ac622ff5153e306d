//! One module per `imactl` subcommand.

pub mod appraise;
pub mod attest;
pub mod daemon;
pub mod evm;
pub mod hash;
pub mod log;
pub mod measure;
pub mod policy;
pub mod sign;
pub mod tpm;
pub mod verify;
