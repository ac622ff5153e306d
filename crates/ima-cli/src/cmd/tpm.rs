//! `imactl tpm pcrread|quote|verify-quote`: the TPM as tpm2-tools shows it, and quotes whose
//! files tpm2-tools reads (`tpm2_checkquote`) and writes (`tpm2_quote`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use ima_core::hash::HashAlgo;
use ima_tpm::quote::{self, AkPublic, Attest};

#[derive(Debug, Subcommand)]
pub enum TpmCommand {
    /// Print PCR values (`tpm2_pcrread` layout).
    Pcrread {
        /// swtpm:host=H,port=P, device:/dev/tpmrm0, or soft:FILE. Default: the software bank
        /// of the state directory.
        #[arg(long)]
        tpm: Option<String>,
        /// State directory whose software bank is read when --tpm is not given (under the
        /// state's lock: the values of a finished commit, never of a bank being written).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Seconds to wait for a writer of the state directory (its pid and command line are
        /// shown while waiting).
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        lock_timeout: u64,
        /// Only this bank (default: every allocated bank).
        #[arg(long)]
        bank: Option<HashAlgo>,
        /// PCR indexes (default: 0-23).
        pcrs: Vec<u32>,
    },
    /// Quote PCRs with the attestation key (ECDSA P-256, a primary key of the endorsement
    /// hierarchy). Writes quote.msg, quote.sig, quote.pcrs (values) and ak.pem into --out,
    /// and prints the `tpm2_checkquote` command that checks them: quote.pcrs holds the bare
    /// values (`tpm2_quote -F values`), so tpm2_checkquote needs the selection as
    /// `-l SEL` (e.g. `-l sha1:10+sha256:10`).
    /// The software bank cannot quote.
    Quote {
        #[arg(long, required = true)]
        tpm: String,
        /// Nonce (qualifying data), hex, at most 64 bytes.
        #[arg(long)]
        nonce: String,
        /// PCR selection, tpm2-tools syntax.
        #[arg(long, default_value = "sha1:10+sha256:10")]
        pcrs: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Verify a quote (ours or `tpm2_quote`'s): signature with the AK public key (PEM),
    /// nonce, and the PCR values file (`-F values` layout) against the quoted digest.
    VerifyQuote {
        /// AK public key, PEM (`tpm2_readpublic -f pem`, or our ak.pem).
        #[arg(long)]
        ak: PathBuf,
        /// TPMS_ATTEST (`tpm2_quote -m`).
        #[arg(long)]
        msg: PathBuf,
        /// TPMT_SIGNATURE (`tpm2_quote -s`).
        #[arg(long)]
        sig: PathBuf,
        /// The expected nonce, hex.
        #[arg(long)]
        nonce: String,
        /// PCR values (`tpm2_quote -o FILE -F values`).
        #[arg(long = "pcrs-file")]
        pcrs_file: Option<PathBuf>,
    },
}

pub fn run(c: TpmCommand) -> anyhow::Result<ExitCode> {
    match c {
        TpmCommand::Pcrread {
            tpm,
            state,
            lock_timeout,
            bank,
            pcrs,
        } => {
            let pcrs: Vec<u32> = if pcrs.is_empty() {
                (0..ima_tpm::NUM_PCRS).collect()
            } else {
                pcrs
            };
            // The values are printed after the bank (and the state's lock) is let go.
            let read = |t: &mut dyn ima_tpm::Tpm| {
                let banks: Vec<HashAlgo> = match bank {
                    Some(b) => vec![b],
                    None => t.banks().to_vec(),
                };
                let mut text = String::new();
                for b in banks {
                    text.push_str(&format!("  {b}:\n"));
                    for (i, v) in pcrs.iter().zip(t.pcr_read(b, &pcrs)?) {
                        text.push_str(&format!("    {i:<2}: 0x{}\n", v.to_hex().to_uppercase()));
                    }
                }
                Ok::<_, ima_tpm::TpmError>((t.kind().to_string(), text))
            };
            let (kind, text) = match &tpm {
                Some(t) => read(t.parse::<ima_tpm::Tcti>()?.open_read_only()?.as_mut())?,
                None => {
                    let dir = state.unwrap_or_else(ima_engine::default_dir);
                    let soft = ima_engine::soft_pcrs_path(&dir);
                    if !soft.exists() {
                        bail!(
                            "no --tpm and no software PCR bank at {} (run imactl measure first)",
                            soft.display()
                        );
                    }
                    let mut cfg = ima_engine::Config::new(dir)?;
                    cfg.lock_timeout = std::time::Duration::from_secs(lock_timeout);
                    ima_engine::with_soft_bank(&cfg, read)?
                }
            };
            eprintln!("imactl: {kind}");
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        TpmCommand::Quote {
            tpm,
            nonce,
            pcrs,
            out,
        } => {
            let nonce = hex::decode(&nonce).context("--nonce: not hex")?;
            let sel = quote::parse_selection(&pcrs)?;
            let mut t = tpm.parse::<ima_tpm::Tcti>()?.open_read_only()?;
            let q = t.quote(&nonce, &sel)?;
            std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
            for (name, bytes) in [
                ("quote.msg", q.attest.clone()),
                ("quote.sig", q.signature.clone()),
                ("quote.pcrs", q.pcrs_values_bytes()),
                ("ak.pem", q.ak.to_pem().into_bytes()),
            ] {
                let p = out.join(name);
                std::fs::write(&p, bytes).with_context(|| format!("{}: write", p.display()))?;
                println!("{}", p.display());
            }
            // quote.pcrs holds bare values (`-F values`): tpm2_checkquote needs the selection
            // as -l to split them.
            let f = |n: &str| shell_word(&out.join(n).display().to_string());
            eprintln!(
                "imactl: check with: tpm2_checkquote -u {} -m {} -s {} -f {} -l {} -g sha256 -q {}",
                f("ak.pem"),
                f("quote.msg"),
                f("quote.sig"),
                f("quote.pcrs"),
                selection_string(&sel),
                hex::encode(&nonce)
            );
            Ok(ExitCode::SUCCESS)
        }
        TpmCommand::VerifyQuote {
            ak,
            msg,
            sig,
            nonce,
            pcrs_file,
        } => {
            let read = |p: &PathBuf| {
                ima_sys::fs::read_limited(p, ima_sys::fs::MAX_KEY_FILE)
                    .with_context(|| format!("{}: read", p.display()))
            };
            let ak_text = String::from_utf8(read(&ak)?)
                .with_context(|| format!("{}: not PEM text", ak.display()))?;
            let ak_pub = AkPublic::from_pem(&ak_text).with_context(|| ak.display().to_string())?;
            let attest = read(&msg)?;
            let signature = read(&sig)?;
            let nonce = hex::decode(&nonce).context("--nonce: not hex")?;
            let a = Attest::parse(&attest).with_context(|| msg.display().to_string())?;
            let pcrs = match &pcrs_file {
                Some(p) => Some(
                    a.split_pcr_values(&read(p)?)
                        .with_context(|| p.display().to_string())?,
                ),
                None => None,
            };
            let c = quote::verify(&ak_pub, &attest, &signature, &nonce, pcrs.as_deref())
                .with_context(|| sig.display().to_string())?;
            let yes = |b: bool| if b { "ok" } else { "FAILED" };
            println!("signature: {}", yes(c.signature_ok));
            println!("nonce: {}", yes(c.nonce_ok));
            match c.pcrs_ok {
                Some(ok) => println!("pcr digest: {}", yes(ok)),
                None => println!("pcr digest: not checked (no --pcrs-file)"),
            }
            for (b, idx) in &c.attest.selection {
                println!(
                    "quoted: {b}:{}",
                    idx.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                );
            }
            if let Some(p) = &pcrs {
                for bank in p {
                    for (i, d) in bank.iter() {
                        println!("  {} {i:2}: {}", bank.algo(), d.to_hex());
                    }
                }
            }
            println!(
                "clock {} resets {} restarts {} safe {}",
                c.attest.clock, c.attest.reset_count, c.attest.restart_count, c.attest.safe
            );
            Ok(if c.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// A PCR selection in tpm2-tools syntax (`sha1:10+sha256:0,10`).
fn selection_string(sel: &[(HashAlgo, Vec<u32>)]) -> String {
    sel.iter()
        .map(|(b, idx)| {
            let idx: Vec<String> = idx.iter().map(u32::to_string).collect();
            format!("{b}:{}", idx.join(","))
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// `s` quoted for a POSIX shell when it holds anything but safe characters.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
