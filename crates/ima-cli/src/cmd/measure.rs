//! `imactl measure`: measure files into the runtime measurement list, extending the PCR.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::{Entry, ascii};
use ima_core::policy::{Func, ParseOptions};
use ima_core::template::TemplateDesc;
use ima_engine::measure::{self, Options};
use ima_engine::{Config, Engine};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::text::count;

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Policy file (the kernel's rule language, plus imactl's extensions). Default: the
    /// built-in `tcb` policy.
    #[arg(long, conflicts_with = "builtin")]
    policy: Option<PathBuf>,
    /// Built-in policy: tcb, ima_tcb, appraise_tcb, secure_boot, critical_data,
    /// fail_securely, or several joined with | as in ima_policy= (as `policy show`).
    #[arg(long)]
    builtin: Option<String>,
    /// Boot template (ima-ng, ima-sig, ima, ... or a format string).
    #[arg(long, default_value = "ima-ng")]
    template: String,
    /// File hash algorithm (`ima_hash=`).
    #[arg(long = "hash", default_value = "sha256")]
    hash: HashAlgo,
    /// TPM: swtpm:host=H,port=P, device:/dev/tpmrm0, or soft:FILE (a software PCR bank,
    /// created if missing). Default: the software PCR bank in the state directory (NOT
    /// hardware-rooted).
    #[arg(long)]
    tpm: Option<String>,
    /// Runtime/state directory. Default: /run/ima for root, $XDG_STATE_HOME/ima otherwise.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Descend into directories.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// The hook the access is treated as: FILE_CHECK (read, default) or BPRM_CHECK (exec), ...
    #[arg(long, default_value = "FILE_CHECK")]
    func: Func,
    /// If the list no longer replays to the TPM within this boot (the TPM was reset or
    /// replaced), archive it under STATE/archive/ and start a new list instead of refusing.
    /// (After a reboot this happens by itself for a TPM; the software bank keeps its list.)
    #[arg(long)]
    start_over: bool,
    /// Seconds to wait for another writer of the same state directory (its pid and command
    /// line are shown while waiting).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    lock_timeout: u64,
    /// Read the boot id from this file instead of /proc/sys/kernel/random/boot_id (tests).
    #[arg(long, hide = true)]
    boot_id_file: Option<PathBuf>,
    /// Print each added entry (the ascii list line) on standard output.
    #[arg(short, long)]
    verbose: bool,
    /// Print no entries: the default now (kept for scripts written before -v).
    #[arg(short, long, hide = true, conflicts_with = "verbose")]
    quiet: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(a: MeasureArgs) -> anyhow::Result<ExitCode> {
    // One parser for every command: `policy check`'s (FILE:LINE:COLUMN errors, bounded).
    let (policy, rule_set) = match (&a.policy, &a.builtin) {
        (Some(p), _) => (
            super::policy::load_file(p, &ParseOptions::default())?,
            format!("the policy in {}", p.display()),
        ),
        (None, b) => {
            let b = b.as_deref().unwrap_or("tcb");
            (
                super::policy::builtin_policy(b, None)?,
                format!("the built-in {b} policy"),
            )
        }
    };
    let dir = a.state.clone().unwrap_or_else(ima_engine::default_dir);
    let mut cfg = Config::new(dir.clone())?;
    cfg.template = TemplateDesc::lookup(&a.template)
        .map_err(|e| anyhow::anyhow!("--template {}: {e}", a.template))?;
    if !a.hash.is_supported() {
        bail!("--hash {}: not supported", a.hash);
    }
    cfg.ima_hash = a.hash;
    cfg.start_over = a.start_over;
    cfg.lock_timeout = std::time::Duration::from_secs(a.lock_timeout);
    if let Some(f) = &a.boot_id_file {
        cfg.boot_id_file = f.clone();
    }
    let opts = Options {
        policy,
        func: a.func,
        recursive: a.recursive,
        creds: ima_sys::procfs::task_creds(None).context("the task's credentials")?,
    };
    // The scan of /proc for writers needs no engine: it runs while the engine opens
    // (recovery, replay check).
    let (engine, writers) = std::thread::scope(|s| {
        let scan = s.spawn(|| measure::open_writers(opts.func));
        let engine = Engine::open_tcti(cfg, a.tpm.as_deref());
        (engine, scan.join())
    });
    let writers = writers.map_err(|_| anyhow::anyhow!("the /proc scan panicked"))?;
    let mut engine = engine.with_context(|| format!("measurement list in {}", dir.display()))?;
    let kind = engine.tpm_kind();
    if let Some(ar) = engine.archived() {
        eprintln!(
            "imactl: started a new list; the old one is kept, readable, in {} ({})",
            ar.dir.display(),
            ar.reason
        );
    }
    let rec = engine.recovery();
    if rec.any() {
        eprintln!(
            "imactl: recovered an interrupted run: {} torn bytes cut, {} entries extended, \
             derived files {}",
            rec.truncated_bytes,
            rec.rolled_forward,
            if rec.regenerated {
                "regenerated"
            } else {
                "intact"
            }
        );
    }
    let show_bank = if engine.list_banks().contains(&a.hash) {
        a.hash
    } else {
        HashAlgo::SHA1
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    let verbose = a.verbose && !a.quiet;
    let bar = progress();
    let mut print = |e: &Entry| {
        bar.inc(1);
        if !verbose {
            return;
        }
        line.clear();
        if let Ok(e) = e.in_bank(show_bank, Endian::Little)
            && ascii::render_entry(&e, &[], Endian::Little, &mut line).is_ok()
        {
            let _ = out.write_all(&line);
        }
    };
    let sum = measure::measure(&mut engine, &opts, writers, &a.paths, &mut print);
    bar.finish_and_clear();
    let sum = sum?;
    out.flush()?;
    drop(out);
    let entries = engine.len();
    engine.close()?;
    for (p, e) in &sum.errors {
        eprintln!("imactl: error: {}: {e}", p.display());
    }
    // The policy's audit records, in the kernel's text (the subject is this process).
    if verbose && !sum.audit.is_empty() {
        let me = ima_sys::procfs::audit_subject(None).context("this process's audit fields")?;
        for r in &sum.audit {
            if !r.informational() {
                eprintln!("imactl: audit: type={} {}", r.kind(), r.text(&me));
            }
        }
    }
    eprintln!(
        "imactl: {}: {} added, {}, {} already in the list, {} unchanged since measured, \
         {} not measured by the policy, {}",
        count(sum.files, "file", "files"),
        sum.added,
        count(
            sum.violations,
            "open_writers violation",
            "open_writers violations"
        ),
        sum.duplicates,
        sum.cached,
        sum.not_measured,
        count(sum.errors.len(), "error", "errors")
    );
    eprintln!(
        "imactl: list {} ({}), PCRs: {kind}",
        dir.display(),
        count(entries, "entry", "entries")
    );
    if sum.files > 0 && sum.not_measured == sum.files {
        eprintln!(
            "imactl: hint: {rule_set} measures none of these files for {} with --func {}{}",
            who(opts.creds.euid),
            opts.func,
            hint(opts.func, opts.creds.euid, rule_set.contains(" tcb "))
        );
    }
    Ok(if sum.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// "uid 1000", or "root".
fn who(euid: u32) -> String {
    if euid == 0 {
        "root".into()
    } else {
        format!("uid {euid}")
    }
}

/// What to try when a policy measured nothing: the built-in tcb policy measures only root's
/// reads (its FILE_CHECK rule carries uid=0), but executables of every user.
fn hint(func: Func, euid: u32, tcb: bool) -> &'static str {
    match func {
        Func::FileCheck if euid != 0 && tcb => {
            " (tcb measures only root's reads): add --func BPRM_CHECK to treat them as \
             executed, or --func MMAP_CHECK as mapped executable"
        }
        Func::FileCheck => ": try --func BPRM_CHECK or MMAP_CHECK, or another policy",
        _ => ": try another --func (FILE_CHECK, BPRM_CHECK, MMAP_CHECK) or another policy",
    }
}

/// A spinner counting the entries added, on standard error when it is a terminal (hidden
/// otherwise, so logs and pipes get only the summary).
fn progress() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] entries added: {pos} ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
