//! `imad`: IMA's hooks in userspace. Thin: arguments, then `ima_daemon::serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ima_core::appraise::Mode;
use ima_core::digsig::Keyring;
use ima_core::hash::HashAlgo;
use ima_core::policy::{BootPolicy, Policy};
use ima_core::template::TemplateDesc;
use ima_daemon::audit::AuditLog;
use ima_daemon::config::{self, FileConfig};
use ima_daemon::control::Control;
use ima_daemon::metrics::Metrics;
use ima_daemon::process::ProcessDecider;
use ima_daemon::{Config, serve};
use ima_engine::Engine;
use ima_sys::fanotify::Response;

/// IMA's hooks in userspace: measure and appraise every open and exec on the marked filesystems into the
/// runtime measurement list (fanotify permission events; root only). Runs in the foreground,
/// logs to stderr, writes STATE/imad.ready once its marks are in place, and on SIGTERM answers
/// every pending event, removes the ready file and exits.
///
/// Every setting can also come from --config FILE; a flag overrides the file.
#[derive(Debug, Parser)]
#[command(name = "imad", version)]
struct Args {
    /// Configuration file (TOML; see packaging/imad.toml): keys named after the kernel's boot
    /// parameters (ima_policy, ima_appraise_tcb, ima_template, ima_template_fmt, ima_hash,
    /// ima_appraise, integrity_audit) and after these flags (policy, tpm, state, mark,
    /// default, deadline, workers, audit, audit_rate, decision_entries, lock_timeout, keys,
    /// metrics). A flag overrides the file's value (a list flag replaces the file's list;
    /// --appraise-tcb and --integrity-audit can only turn on). Only read when given; an
    /// unknown key, a wrong value, a conflict or a file others may write stops imad before it
    /// starts. `evm` is refused: imad loads no EVM key.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Policy file (the kernel's rule language).
    #[arg(long, conflicts_with_all = ["builtin", "appraise_tcb"])]
    policy: Option<PathBuf>,
    /// Built-in policies as the kernel's ima_policy=: tcb, appraise_tcb, secure_boot,
    /// critical_data, joined by '|'. Default: tcb.
    #[arg(long)]
    builtin: Option<String>,
    /// ima_appraise_tcb: add appraise_tcb to the built-in policies.
    #[arg(long)]
    appraise_tcb: bool,
    /// ima_appraise=: enforce (a failure denies: EPERM to the opener), fix (relabel through
    /// the opened file, then allow), log (allow, log the failure) or off (appraise rules
    /// ignored). Default: off.
    #[arg(long, value_enum)]
    appraise: Option<Appraise>,
    /// Certificates (DER or PEM files, or directories of them) of the .ima keyring that
    /// signatures in security.ima are checked against (repeatable).
    #[arg(long = "keys", value_name = "CERT|DIR")]
    keys: Vec<PathBuf>,
    /// Boot template (ima-ng, ima-sig, ima, ... or a format string). Default: ima-ng.
    #[arg(long)]
    template: Option<String>,
    /// File hash algorithm (ima_hash=). Default: sha256.
    #[arg(long = "hash")]
    hash: Option<HashAlgo>,
    /// TPM: swtpm:host=H,port=P or device:/dev/tpmrm0. Default: the software PCR bank in the
    /// state directory (NOT hardware-rooted).
    #[arg(long)]
    tpm: Option<String>,
    /// Runtime/state directory (the list, imad.ready). Default: /run/ima.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Mark the filesystem holding PATH (repeatable; required here or in the configuration).
    /// Pseudo filesystems (proc, sysfs, securityfs, ...) and the state directory's filesystem
    /// are refused.
    #[arg(long = "mark", value_name = "PATH")]
    marks: Vec<PathBuf>,
    /// Answer when no decision comes in time or it fails: allow (fail-open) or deny
    /// (fail-closed, EPERM to the opener). Default: allow.
    #[arg(long, value_enum)]
    default: Option<Default>,
    /// Milliseconds from an event to its answer before the default answers. Default: 5000.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline: Option<u64>,
    /// Decision threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: Option<u64>,
    /// Where audit records go (repeatable): kernel (the audit log through netlink, as
    /// AUDIT_TRUSTED_APP messages; the default), stderr (the daemon's log, journald under
    /// systemd), json=PATH (JSON lines appended to PATH), none.
    #[arg(long = "audit", value_name = "SINK")]
    audit: Vec<String>,
    /// Audit records a second at most (0: unlimited); the rest of a second are counted and
    /// reported. Default: 1000.
    #[arg(long, value_name = "N")]
    audit_rate: Option<u32>,
    /// Also write informational records (hash_added, hash_exists), as the kernel's
    /// integrity_audit=1.
    #[arg(long)]
    integrity_audit: bool,
    /// Record the policy, the mode and every denial as ima-buf entries of the list
    /// (imad-policy, imad-mode, imad-denial), so a remote verifier sees what was blocked.
    /// Default: on.
    #[arg(long, value_enum)]
    decision_entries: Option<OnOff>,
    /// Seconds to wait for another writer of the same state directory. Default: 10.
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; keep it local:
    /// the counts say what the host opens).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// The settings in effect: the flags over the configuration file over the defaults.
#[derive(Debug)]
struct Settings {
    policy: PolicySource,
    appraise: Mode,
    keys: Vec<PathBuf>,
    template: String,
    hash: HashAlgo,
    tpm: Option<String>,
    state: PathBuf,
    marks: Vec<PathBuf>,
    default: Response,
    deadline: u64,
    workers: Option<usize>,
    audit: Vec<String>,
    audit_rate: u32,
    integrity_audit: bool,
    decision_entries: bool,
    lock_timeout: u64,
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, PartialEq)]
enum PolicySource {
    File(PathBuf),
    Builtin(String),
}

impl Settings {
    /// `a` over `f` over the defaults. The policy is one setting: a `--policy` or
    /// `--builtin` flag replaces the file's `policy`, `ima_policy` and `ima_appraise_tcb`.
    fn merge(a: Args, f: FileConfig) -> anyhow::Result<Self> {
        let policy = match (a.policy, a.builtin, f.policy, f.ima_policy) {
            (Some(p), _, _, _) => PolicySource::File(p),
            (None, Some(b), _, _) => PolicySource::Builtin(with_appraise_tcb(b, a.appraise_tcb)),
            (None, None, Some(p), _) if !a.appraise_tcb => PolicySource::File(p),
            (None, None, Some(_), _) => {
                bail!("--appraise-tcb: the configuration's policy is a file, not built-ins")
            }
            (None, None, None, b) => PolicySource::Builtin(with_appraise_tcb(
                b.unwrap_or_else(|| "tcb".into()),
                a.appraise_tcb || f.ima_appraise_tcb == Some(true),
            )),
        };
        let marks = if a.marks.is_empty() {
            f.mark.unwrap_or_default()
        } else {
            a.marks
        };
        if marks.is_empty() {
            bail!("no filesystem to mark: give --mark PATH (or mark = [...] in --config)");
        }
        Ok(Self {
            policy,
            appraise: match a.appraise {
                Some(Appraise::Enforce) => Mode::Enforce,
                Some(Appraise::Fix) => Mode::Fix,
                Some(Appraise::Log) => Mode::Log,
                Some(Appraise::Off) => Mode::Off,
                None => f.ima_appraise.unwrap_or(Mode::Off),
            },
            keys: if a.keys.is_empty() {
                f.keys.unwrap_or_default()
            } else {
                a.keys
            },
            template: a.template.or(f.template).unwrap_or_else(|| "ima-ng".into()),
            hash: a.hash.or(f.ima_hash).unwrap_or(HashAlgo::SHA256),
            tpm: a.tpm.or(f.tpm),
            state: a.state.or(f.state).unwrap_or_else(ima_engine::default_dir),
            marks,
            default: match a.default {
                Some(Default::Allow) => Response::Allow,
                Some(Default::Deny) => Response::Deny,
                None => f.default.unwrap_or(Response::Allow),
            },
            deadline: a.deadline.or(f.deadline).unwrap_or(5000),
            workers: match a.workers {
                Some(w) => Some(usize::try_from(w)?),
                None => f.workers,
            },
            audit: if a.audit.is_empty() {
                f.audit.unwrap_or_default()
            } else {
                a.audit
            },
            audit_rate: a.audit_rate.or(f.audit_rate).unwrap_or(1000),
            integrity_audit: a.integrity_audit || f.integrity_audit == Some(true),
            decision_entries: match a.decision_entries {
                Some(o) => o == OnOff::On,
                None => f.decision_entries.unwrap_or(true),
            },
            lock_timeout: a.lock_timeout.or(f.lock_timeout).unwrap_or(10),
            metrics: a.metrics.or(f.metrics),
        })
    }
}

/// `names` with appraise_tcb added when `add`.
fn with_appraise_tcb(names: String, add: bool) -> String {
    if add {
        format!("{names}|appraise_tcb")
    } else {
        names
    }
}

#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum Appraise {
    Enforce,
    Fix,
    Log,
    Off,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum Default {
    Allow,
    Deny,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imad: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> anyhow::Result<ExitCode> {
    let file = match &a.config {
        Some(p) => config::load(p)?,
        None => FileConfig::default(),
    };
    let a = Settings::merge(a, file)?;
    let watchdog = ima_daemon::notify::watchdog_interval().map_err(anyhow::Error::msg)?;
    for s in &a.audit {
        config::audit_sink(s).map_err(|e| anyhow::anyhow!("--audit {e}"))?;
    }
    let policy = match &a.policy {
        PolicySource::File(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("{}: read", p.display()))?;
            Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        PolicySource::Builtin(b) => BootPolicy::from_param(b)
            .map_err(|(_, e)| anyhow::anyhow!("--builtin: {e}"))?
            .default_policy(),
    };
    // A ready file left by a killed imad must not announce this one before its marks.
    let dir = a.state.clone();
    match std::fs::remove_file(dir.join("imad.ready")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(format!("{}: stale imad.ready", dir.display()));
        }
        _ => {}
    }
    // Signals are blocked before any thread starts, so every thread inherits the mask.
    let term = ima_sys::signal::Termination::block().context("blocking SIGTERM")?;
    let mut cfg = ima_engine::Config::new(dir.clone())?;
    cfg.template = TemplateDesc::lookup(&a.template)
        .map_err(|e| anyhow::anyhow!("--template {}: {e}", a.template))?;
    if !a.hash.is_supported() {
        bail!("--hash {}: not supported", a.hash);
    }
    cfg.ima_hash = a.hash;
    cfg.lock_timeout = Duration::from_secs(a.lock_timeout);
    let engine = Engine::open_tcti(cfg, a.tpm.as_deref())
        .with_context(|| format!("measurement list in {}", dir.display()))?;
    ima_daemon::serve::check_marks(&a.marks, Some(&dir))?;
    let mode = a.appraise;
    let audit = audit_log(&a)?;
    let template = engine.config().template.name().to_owned();
    let policy_file = match &a.policy {
        PolicySource::File(p) => Some(p.clone()),
        PolicySource::Builtin(_) => None,
    };
    let mut decider = ProcessDecider::new(engine, policy, mode, load_keyring(&a.keys)?, audit)
        .with_policy_version_file(dir.join(POLICY_VERSION), policy_file)
        .context("the policy")?;
    if a.decision_entries {
        let m = ima_core::log::decision::ModeRecord {
            appraise: format!("{:?}", a.appraise).to_lowercase(),
            template,
            hash: a.hash.to_string(),
            default: format!("{:?}", a.default).to_lowercase(),
        };
        decider = decider
            .with_decision_entries(&m)
            .context("recording the policy and mode in the list")?;
    }
    let control = Control::bind(&dir).context("the control socket")?;
    let metrics = match a.metrics {
        Some(addr) => Some(Metrics::bind(addr).context("metrics")?),
        None => None,
    };
    let mut scfg = Config::new(a.marks.clone());
    scfg.ready_dir = Some(dir);
    scfg.deadline = Duration::from_millis(a.deadline);
    scfg.default = a.default;
    if let Some(w) = a.workers {
        scfg.workers = w;
    }
    // systemd's watchdog (WatchdogSec=): pings while the event loop goes round.
    if let (Some(sock), Some(every)) = (std::env::var_os("NOTIFY_SOCKET"), watchdog) {
        ima_daemon::notify::spawn_watchdog(sock, every, Arc::clone(&scfg.heartbeat))
            .context("starting the systemd watchdog thread")?;
        tracing::info!("systemd watchdog: WATCHDOG=1 every {:?}", every / 2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || match term.wait() {
            Ok(sig) => {
                tracing::info!("{sig}: answering pending events, then exiting");
                stop.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("waiting for signals: {e}"),
        });
    }
    let stats = std::thread::scope(|s| {
        let ctl = s.spawn(|| control.serve(&decider, &stop));
        if let Some(m) = &metrics {
            s.spawn(|| m.serve(&scfg.counters, &decider, &stop));
        }
        let r = serve(&scfg, &decider, &stop);
        // serve returns on SIGTERM (stop set) or an error: stop the control thread either way.
        stop.store(true, Ordering::Relaxed);
        let _ = ctl.join();
        r
    })?;
    drop(control);
    decider.close().context("closing the measurement list")?;
    tracing::info!(
        "{} events: {} allowed, {} denied, {} past the deadline, {} undecidable, {} with the \
         queue full, {} cached, {} kernel overflows",
        stats.events,
        stats.allowed,
        stats.denied,
        stats.deadline,
        stats.errors,
        stats.queue_full,
        stats.cached,
        stats.overflows
    );
    Ok(ExitCode::SUCCESS)
}

/// The highest `policy_version` loaded, in the state directory (anti-rollback across
/// restarts).
const POLICY_VERSION: &str = "imad.policy-version";

/// The audit sinks `--audit` names (kernel when none is named).
fn audit_log(a: &Settings) -> anyhow::Result<AuditLog> {
    let mut log = AuditLog::none().limits(a.audit_rate, a.integrity_audit);
    let sinks: Vec<&str> = if a.audit.is_empty() {
        vec!["kernel"]
    } else {
        a.audit.iter().map(String::as_str).collect()
    };
    for s in sinks {
        log = match s {
            "none" => log,
            "stderr" => log.with_stderr(),
            "kernel" => log
                .with_kernel()
                .context("--audit kernel: the kernel audit log (netlink, CAP_AUDIT_WRITE)")?,
            _ => match s.strip_prefix("json=") {
                Some(p) if !p.is_empty() => log
                    .with_json(std::path::Path::new(p))
                    .with_context(|| format!("--audit {s}"))?,
                _ => bail!("--audit {s}: expected kernel, stderr, json=PATH or none"),
            },
        };
    }
    Ok(log)
}

/// The certificates in `paths` (files, or the files of directories, sorted).
fn load_keyring(paths: &[PathBuf]) -> anyhow::Result<Keyring> {
    let mut ring = Keyring::new();
    for p in paths {
        let mut files = vec![p.clone()];
        if p.is_dir() {
            files = std::fs::read_dir(p)
                .with_context(|| format!("--keys {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| e.is_file())
                .collect();
            files.sort();
        }
        for f in files {
            let b = std::fs::read(&f).with_context(|| format!("--keys {}", f.display()))?;
            ring.add_bytes(&b)
                .with_context(|| format!("--keys {}", f.display()))?;
        }
    }
    Ok(ring)
}
