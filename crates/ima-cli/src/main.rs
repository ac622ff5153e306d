//! `imactl`: the command-line face of ima. Thin: parsing arguments, calling the libraries,
//! printing. Exit codes: 0 success, 1 a verification failed, 2 an error. Invoked as
//! `evmctl` (a link), or as `imactl evmctl ARGS...`, it is evmctl ([`evmctl`]), with
//! evmctl's command line and exit codes.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod cmd;
mod evmctl;
mod text;
mod tree;

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
    /// Write (or print, -n) the content hash to security.ima, as `evmctl ima_hash`.
    Hash(cmd::hash::HashArgs),
    /// Sign files into security.ima (v2, or fs-verity v3), as `evmctl ima_sign`.
    Sign(cmd::sign::SignArgs),
    /// Verify security.ima signatures against certificates, as `evmctl ima_verify`.
    Verify(cmd::verify::VerifyArgs),
    /// Measure files into the runtime measurement list, extending the PCR (TPM or software bank).
    Measure(Box<cmd::measure::MeasureArgs>),
    /// Read PCRs, quote, and verify quotes.
    #[command(subcommand)]
    Tpm(cmd::tpm::TpmCommand),
    /// The kernel's appraisal decision for files under a policy (fix mode writes labels).
    Appraise(cmd::appraise::AppraiseArgs),
    /// EVM: sign, verify and HMAC security.evm as the kernel computes it.
    #[command(subcommand)]
    Evm(cmd::evm::EvmCommand),
    /// Remote attestation: collect a quote and the list it covers; verify them against
    /// reference values (ours or a Keylime runtime policy).
    #[command(subcommand)]
    Attest(cmd::attest::AttestCommand),
    /// Talk to a running imad: status, load a policy, explain its last decision for a file.
    Daemon(cmd::daemon::DaemonArgs),
    /// Be evmctl: evmctl's command line (1.4-1.6) and behaviour, e.g. `imactl evmctl
    /// ima_sign --key K FILE`. A link named `evmctl` to imactl does the same.
    Evmctl {
        /// evmctl's options, command and operands.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    // Library warnings (a busy TPM or lock being waited for, a cache rebuilt) on stderr;
    // IMACTL_LOG=debug (an EnvFilter) shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMACTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .init();
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_os_string());
    if invoked_as.as_deref() == Some("evmctl".as_ref()) {
        return evmctl::main(&args[1..]);
    }
    // Before clap, so that evmctl's own `--help`, `-h` and `--version` reach evmctl mode.
    if args.get(1).map(OsString::as_os_str) == Some("evmctl".as_ref()) {
        return evmctl::main(&args[2..]);
    }
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imactl: error: {}", chain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by ": ", as `{:#}` does, except that a cause whose text
/// the message already ends with is not repeated (library errors such as `TpmError::Io`
/// print their source in their own message, for callers that print only `{}`).
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Log(c) => cmd::log::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Hash(a) => cmd::hash::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Measure(a) => cmd::measure::run(*a),
        Command::Tpm(c) => cmd::tpm::run(c),
        Command::Appraise(a) => cmd::appraise::run(a),
        Command::Evm(c) => cmd::evm::run(c),
        Command::Attest(c) => cmd::attest::run(c),
        Command::Daemon(a) => cmd::daemon::run(a),
        Command::Evmctl { args } => Ok(evmctl::main(&args)),
    }
}
