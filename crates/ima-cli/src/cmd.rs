//! One module per `imactl` subcommand.

pub mod hash;
pub mod log;
pub mod policy;
pub mod sign;
pub mod verify;
