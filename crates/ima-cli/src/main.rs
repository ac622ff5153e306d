//! `imactl`: the command-line face of ima. Thin: parsing arguments, calling the libraries,
//! printing. Exit codes: 0 success, 1 a verification failed, 2 an error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Userspace IMA/EVM: measure, appraise, sign, verify and replay, kernel-compatible.
#[derive(Debug, Parser)]
#[command(name = "imactl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show, convert and verify measurement lists.
    #[command(subcommand)]
    Log(cmd::log::LogCommand),
    /// Check, show and explain IMA policies (kernel language plus extensions).
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imactl: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Log(c) => cmd::log::run(c),
        Command::Policy(c) => cmd::policy::run(c),
    }
}
