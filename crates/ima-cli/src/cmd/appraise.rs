//! `imactl appraise`: for each file, the appraisal decision the kernel would make under a
//! policy (`--policy FILE` or `--builtin NAME`) and an `ima_appraise=` mode, with the rule
//! that asked for it. `--mode fix` writes `security.ima` exactly as the kernel's fix mode.
//!
//! The policy is evaluated as the current task for every hook that appraises file content
//! (one line per hook whose rule asks for appraisal: `PATH: HOOK: VERDICT [line N: RULE]`,
//! or `--json` objects), or for the one hook `--func` names (with `--mask`); EVM is consulted when `--evm-keys` or `--hmac-key` says what EVM
//! was initialised with, and is otherwise uninitialised (UNKNOWN), as on a kernel where
//! nothing was written to `/sys/kernel/security/evm`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ima_core::appraise::Cause;
use ima_core::appraise::{Mode, Requirements};
use ima_core::digsig::Verifier;
use ima_core::evm::{EvmConfig, EvmKeys, HmacKey};
use ima_core::hash::HashAlgo;
use ima_core::integrity::Status;
use ima_core::policy::{Func, Mask, Policy, TaskCreds};
use ima_engine::process::{self, Appraisal};
use ima_sys::fs::FactsCache;
use ima_sys::walk::Entry;

use super::{evm as evm_cmd, policy};
use crate::tree::{self, Outcome};

#[derive(Debug, Args)]
pub struct AppraiseArgs {
    /// Policy file (kernel policy syntax).
    #[arg(long, conflicts_with = "builtin", required_unless_present = "builtin")]
    policy: Option<PathBuf>,
    /// Built-in policy (`ima_policy=` words, e.g. `appraise_tcb` or `tcb|appraise_tcb`).
    #[arg(long, value_name = "NAME")]
    builtin: Option<String>,
    /// `ima_appraise=` mode: enforce (deny), fix (write labels) or log.
    #[arg(long, default_value = "enforce")]
    mode: Mode,
    /// The one hook to evaluate (default: every file hook whose rule asks for appraisal:
    /// FILE_CHECK, BPRM_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, CREDS_CHECK, MODULE_CHECK,
    /// FIRMWARE_CHECK, KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK, POLICY_CHECK).
    #[arg(long)]
    func: Option<Func>,
    /// The access mask (default: MAY_READ for FILE_CHECK, MAY_EXEC for exec and mmap hooks).
    #[arg(long, requires = "func")]
    mask: Option<Mask>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// `ima_hash=`: the algorithm used when security.ima names none.
    #[arg(long, default_value = "sha256")]
    hash_algo: HashAlgo,
    /// Certificates (files or directories) of the .ima keyring.
    /// Repeat the option or separate with commas.
    #[arg(
        short = 'k',
        long = "keys",
        value_delimiter = ',',
        value_name = "CERT|DIR"
    )]
    keys: Vec<PathBuf>,
    /// Certificates of the .evm keyring (EVM_INIT_X509).
    #[arg(long, value_delimiter = ',', value_name = "CERT|DIR")]
    evm_keys: Vec<PathBuf>,
    /// EVM HMAC key file (EVM_INIT_HMAC).
    #[arg(long, value_name = "FILE")]
    hmac_key: Option<PathBuf>,
    /// Filesystem UUID for EVM when the filesystem cannot report it.
    #[arg(long, value_name = "UUID")]
    uuid: Option<String>,
    /// Recurse into directories.
    #[arg(short = 'r', long)]
    recursive: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// The state shared by all files of one run.
struct Ctx<'a> {
    a: &'a AppraiseArgs,
    policy: Policy,
    ima_ring: ima_core::digsig::Keyring,
    evm_cfg: EvmConfig,
    evm_keys: EvmKeys<'a>,
    uuid: Option<[u8; 16]>,
    creds: TaskCreds,
    facts: FactsCache,
}

pub fn run(a: AppraiseArgs) -> anyhow::Result<ExitCode> {
    let policy = match (&a.policy, &a.builtin) {
        (Some(f), _) => policy::load_file(f, &Default::default())?,
        (None, Some(b)) => policy::builtin_policy(b, None)?,
        (None, None) => bail!("give --policy FILE or --builtin NAME"),
    };
    if a.mode == Mode::Off {
        bail!("--mode off appraises nothing");
    }
    let ima_ring = evm_cmd::load_keyring(&a.keys)?;
    let evm_ring = evm_cmd::load_keyring(&a.evm_keys)?;
    let hmac = a
        .hmac_key
        .as_deref()
        .map(|p| -> anyhow::Result<HmacKey> {
            let b = ima_sys::fs::read_limited(p, ima_sys::fs::MAX_KEY_FILE)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            HmacKey::new(&b).with_context(|| format!("{}: bad HMAC key", p.display()))
        })
        .transpose()?;
    let uuid = a
        .uuid
        .as_deref()
        .map(|u| ima_sys::inode::parse_uuid(u).with_context(|| format!("--uuid {u:?}: not a UUID")))
        .transpose()?;
    let evm_ring_ref: &(dyn Verifier + Sync) = &evm_ring;
    let ctx = Ctx {
        a: &a,
        policy,
        ima_ring,
        evm_cfg: EvmConfig::default(),
        evm_keys: EvmKeys {
            hmac: hmac.as_ref(),
            x509: (!a.evm_keys.is_empty()).then_some(evm_ring_ref),
        },
        uuid,
        creds: ima_sys::procfs::task_creds(None).context("the task's credentials")?,
        facts: FactsCache::new(),
    };

    let single = !a.recursive && a.paths.len() == 1;
    let summary = tree::run(&a.paths, a.recursive, |e| match ctx.run_file(e) {
        Ok(r) => r,
        Err(err) => {
            tree::err_line(&e.path, format_args!("{err:#}"));
            (Outcome::Error, 0)
        }
    });
    if !single {
        eprintln!("imactl: appraise: {summary}");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// The hooks that appraise a file's content, in the order reported when `--func` is not
/// given (the buffer hooks KEXEC_CMDLINE, KEY_CHECK, CRITICAL_DATA and the POST_SETATTR and
/// SETXATTR_CHECK queries appraise no file).
const FILE_HOOKS: [Func; 10] = [
    Func::FileCheck,
    Func::BprmCheck,
    Func::MmapCheck,
    Func::MmapCheckReqprot,
    Func::CredsCheck,
    Func::ModuleCheck,
    Func::FirmwareCheck,
    Func::KexecKernelCheck,
    Func::KexecInitramfsCheck,
    Func::PolicyCheck,
];

/// One reported decision: a file under one hook (or "not appraised" at all).
struct Report {
    func: Option<Func>,
    /// The deciding rule (line, text): the appraise rule, or the dont_appraise rule.
    rule: Option<(usize, String)>,
    kind: ReportKind,
}

#[derive(Clone)]
enum ReportKind {
    NotAppraised,
    Pass {
        was: Option<(Status, Cause)>,
        fixed: Option<Vec<u8>>,
    },
    Fail {
        status: Status,
        cause: Cause,
        denied: bool,
    },
}

impl Report {
    fn outcome(&self) -> Outcome {
        match self.kind {
            ReportKind::Fail { .. } => Outcome::Failed,
            _ => Outcome::Ok,
        }
    }

    /// `PATH: FUNC: VERDICT [line N: RULE]`.
    fn text(&self, path: &Path) -> String {
        let mut out = format!("{}: ", path.display());
        if let Some(f) = self.func {
            out.push_str(f.name());
            out.push_str(": ");
        }
        match &self.kind {
            ReportKind::NotAppraised => {
                out.push_str("not appraised");
                match &self.rule {
                    Some((line, text)) => out.push_str(&format!(" (line {line}: {text})")),
                    None if self.func.is_some() => out.push_str(" (no appraise rule matches)"),
                    None => out.push_str(" (no appraise rule matches any hook)"),
                }
                return out;
            }
            ReportKind::Pass { was, fixed } => {
                out.push_str("pass");
                if let Some((status, cause)) = was {
                    out.push_str(&format!(" (was {status} {cause})"));
                }
                if let Some(v) = fixed {
                    out.push_str(&format!(" fixed: security.ima=0x{}", hex::encode(v)));
                }
            }
            ReportKind::Fail {
                status,
                cause,
                denied,
            } => {
                out.push_str(&format!("{status} {cause}"));
                if *denied {
                    out.push_str(" denied");
                }
            }
        }
        if let Some((line, text)) = &self.rule {
            out.push_str(&format!(" [line {line}: {text}]"));
        }
        out
    }

    /// One JSON object: path, func, verdict (`pass`, a status name, or `not_appraised`),
    /// cause, denied, was, fixed, rule.
    fn json(&self, path: &Path) -> String {
        use serde_json::{Value, json};
        let (verdict, cause, denied, was, fixed) = match &self.kind {
            ReportKind::NotAppraised => (
                "not_appraised".into(),
                Value::Null,
                false,
                Value::Null,
                Value::Null,
            ),
            ReportKind::Pass { was, fixed } => (
                "pass".to_owned(),
                Value::Null,
                false,
                was.map_or(
                    Value::Null,
                    |(s, c)| json!({"status": s.as_str(), "cause": c.as_str()}),
                ),
                fixed
                    .as_ref()
                    .map_or(Value::Null, |v| Value::from(hex::encode(v))),
            ),
            ReportKind::Fail {
                status,
                cause,
                denied,
            } => (
                status.as_str().to_owned(),
                Value::from(cause.as_str()),
                *denied,
                Value::Null,
                Value::Null,
            ),
        };
        json!({
            "path": path.to_string_lossy(),
            "func": self.func.map(Func::name),
            "verdict": verdict,
            "cause": cause,
            "denied": denied,
            "was": was,
            "fixed": fixed,
            "rule": self.rule.as_ref().map(|(line, text)| json!({"line": line, "text": text})),
        })
        .to_string()
    }
}

impl Ctx<'_> {
    /// Appraises one file under `--func`, or under every file hook whose policy rule asks
    /// for appraisal; prints one line per decision. Returns the outcome (any failed
    /// appraisal is [`Outcome::Failed`]) and the bytes hashed.
    fn run_file(&self, e: &mut Entry) -> anyhow::Result<(Outcome, u64)> {
        let a = self.a;
        let path = e.path.clone();
        let path = path.as_path();
        let facts = self
            .facts
            .facts(&e.file, &e.meta)
            .with_context(|| format!("{}", path.display()))?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let abs_bytes = std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str()).to_vec();
        let funcs: &[Func] = match &a.func {
            Some(f) => std::slice::from_ref(f),
            None => &FILE_HOOKS,
        };
        let mut reports = Vec::new();
        let mut known = process::Known::default();
        let mut bytes = 0;
        let mut decided: Vec<(Requirements, ReportKind)> = Vec::new();
        let boot =
            ima_core::template::TemplateDesc::lookup("ima-ng").context("the ima-ng template")?;
        // The kernel's process_measurement for each hook, appraisal only (no list).
        let setup = process::Setup {
            template: &boot,
            ima_hash: a.hash_algo,
            measure: false,
            appraiser: Some(self.appraiser()),
            evm_cfg: &self.evm_cfg,
        };
        for &func in funcs {
            let access = process::Access {
                creds: &self.creds,
                file: &facts,
                func,
                mask: a.mask,
                path: Some(&abs_bytes),
            };
            let eval = process::decide(&self.policy, &access);
            let (Some(rule), Some(req)) = (eval.appraise, process::requirements(&eval)) else {
                // A single hook says why; over all hooks only appraised ones are listed.
                if a.func.is_some() {
                    reports.push(Report {
                        func: Some(func),
                        rule: eval.appraise.map(|d| (d.line, d.text.to_string())),
                        kind: ReportKind::NotAppraised,
                    });
                }
                continue;
            };
            // Hooks whose rules ask for the same thing get the same answer: appraise once
            // (a signature is checked once), unless a fix since changed the labels.
            let kind = match decided.iter().find(|(r, _)| *r == req) {
                Some((_, k)) => k.clone(),
                None => {
                    let obj = process::Object {
                        file: &mut e.file,
                        meta: &e.meta,
                        path: &abs_bytes,
                        fsname: facts.fsname.as_deref(),
                    };
                    let d = process::process(&setup, &eval, obj, known)
                        .with_context(|| format!("{}", path.display()))?;
                    bytes += d.bytes_hashed;
                    known.digest = d.digest.or(known.digest);
                    let Some(appraisal) = d.appraisal else {
                        continue;
                    };
                    let k = ReportKind::from(appraisal);
                    if matches!(k, ReportKind::Pass { fixed: Some(_), .. }) {
                        decided.clear();
                    } else {
                        decided.push((req, k.clone()));
                    }
                    k
                }
            };
            reports.push(Report {
                func: Some(func),
                rule: Some((rule.line, rule.text.to_string())),
                kind,
            });
        }
        if reports.is_empty() {
            reports.push(Report {
                func: None,
                rule: None,
                kind: ReportKind::NotAppraised,
            });
        }
        let mut outcome = Outcome::Ok;
        for r in &reports {
            if r.outcome() == Outcome::Failed {
                outcome = Outcome::Failed;
            }
            tree::out_line(&if a.json { r.json(path) } else { r.text(path) });
        }
        Ok((outcome, bytes))
    }

    fn appraiser(&self) -> process::Appraiser<'_> {
        process::Appraiser {
            mode: self.a.mode,
            ima_hash: self.a.hash_algo,
            ima_keys: &self.ima_ring,
            evm_cfg: &self.evm_cfg,
            evm_keys: self.evm_keys,
            uuid: self.uuid,
        }
    }
}

impl From<Appraisal> for ReportKind {
    fn from(a: Appraisal) -> Self {
        match a {
            Appraisal::Pass { was, fixed } => ReportKind::Pass { was, fixed },
            Appraisal::Fail {
                status,
                cause,
                denied,
            } => ReportKind::Fail {
                status,
                cause,
                denied,
            },
        }
    }
}
