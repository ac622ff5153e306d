//! `imactl measure`: measure files into the runtime measurement list, extending the PCR.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::{Entry, ascii};
use ima_core::policy::{BootPolicy, Builtin, Func, Policy};
use ima_core::template::TemplateDesc;
use ima_engine::measure::{self, Options};
use ima_engine::{Config, Engine};

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Policy file (the kernel's rule language). Default: the built-in `tcb` policy.
    #[arg(long, conflicts_with = "builtin")]
    policy: Option<PathBuf>,
    /// Built-in policy: tcb, ima_tcb, appraise_tcb, secure_boot, critical_data.
    #[arg(long)]
    builtin: Option<Builtin>,
    /// Boot template (ima-ng, ima-sig, ima, ... or a format string).
    #[arg(long, default_value = "ima-ng")]
    template: String,
    /// File hash algorithm (`ima_hash=`).
    #[arg(long = "hash", default_value = "sha256")]
    hash: HashAlgo,
    /// TPM: swtpm:host=H,port=P or device:/dev/tpmrm0. Default: the software PCR bank in the
    /// state directory (NOT hardware-rooted).
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
    /// Do not print the added entries.
    #[arg(short, long)]
    quiet: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(a: MeasureArgs) -> anyhow::Result<ExitCode> {
    let policy = match (&a.policy, a.builtin) {
        (Some(p), _) => {
            let bytes = ima_sys::fs::read_limited(p, ima_sys::fs::MAX_TEXT_FILE)
                .with_context(|| format!("{}: read", p.display()))?;
            let text =
                String::from_utf8(bytes).with_context(|| format!("{}: not text", p.display()))?;
            Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        (None, b) => BootPolicy::single(b.unwrap_or(Builtin::Tcb)).default_policy(),
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
    let kind = engine.tpm().kind();
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
    let quiet = a.quiet;
    let mut print = |e: &Entry| {
        if quiet {
            return;
        }
        line.clear();
        if let Ok(e) = e.in_bank(show_bank, Endian::Little)
            && ascii::render_entry(&e, &[], Endian::Little, &mut line).is_ok()
        {
            let _ = out.write_all(&line);
        }
    };
    let sum = measure::measure(&mut engine, &opts, writers, &a.paths, &mut print)?;
    out.flush()?;
    drop(out);
    let entries = engine.len();
    engine.close()?;
    for (p, e) in &sum.errors {
        eprintln!("imactl: error: {}: {e}", p.display());
    }
    eprintln!(
        "imactl: {} files: {} added, {} open_writers violations, {} already in the list, {} \
         unchanged since measured, {} not measured by the policy, {} errors",
        sum.files,
        sum.added,
        sum.violations,
        sum.duplicates,
        sum.cached,
        sum.not_measured,
        sum.errors.len()
    );
    eprintln!(
        "imactl: list {} ({entries} entries), PCRs: {kind}",
        dir.display()
    );
    Ok(if sum.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
