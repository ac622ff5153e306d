//! One module per `imactl` subcommand.

pub mod log;
pub mod policy;
