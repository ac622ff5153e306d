//! `imactl log show|convert|verify|boot-aggregate`.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print a measurement list (binary or ascii, detected).
    Show { log: std::path::PathBuf },
}

pub fn run(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Show { log } => {
            anyhow::bail!("{}: log show is being written (issue 2)", log.display())
        }
    }
}
