//! `imactl appraise`: for each file, the appraisal decision the kernel would make under a
//! policy (`--policy FILE` or `--builtin NAME`) and an `ima_appraise=` mode, with the rule
//! that asked for it. `--mode fix` writes `security.ima` exactly as the kernel's fix mode.
//!
//! The policy is evaluated for one hook (`--func`, FILE_CHECK by default, with `--mask`)
//! as the current task; EVM is consulted when `--evm-keys` or `--hmac-key` says what EVM
//! was initialised with, and is otherwise uninitialised (UNKNOWN), as on a kernel where
//! nothing was written to `/sys/kernel/security/evm`.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ima_core::appraise::{self, Appraisal, ImaXattr, Mode, Request, Requirements};
use ima_core::digsig::Verifier;
use ima_core::evm::{self, EvmConfig, EvmKeys, HmacKey};
use ima_core::hash::HashAlgo;
use ima_core::policy::{Event, Func, Mask, Policy, RuleFlags};
use ima_sys::xattr::SetMode;

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
    /// The hook to evaluate.
    #[arg(long, default_value = "FILE_CHECK")]
    func: Func,
    /// The access mask (default: MAY_READ for FILE_CHECK, MAY_EXEC for exec and mmap hooks).
    #[arg(long)]
    mask: Option<Mask>,
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
            let b = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
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
    };

    let single = !a.recursive && a.paths.len() == 1;
    let summary = tree::run(&a.paths, a.recursive, |p| match ctx.appraise(p) {
        Ok((line, outcome, bytes)) => {
            tree::out_line(&line);
            (outcome, bytes)
        }
        Err(e) => {
            tree::err_line(p, format_args!("{e:#}"));
            (Outcome::Error, 0)
        }
    });
    if !single {
        eprintln!("imactl: appraise: {summary}");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

impl Ctx<'_> {
    /// Decides one file: the line to print, the outcome (a failed appraisal is
    /// [`Outcome::Failed`]) and the bytes hashed.
    fn appraise(&self, path: &Path) -> anyhow::Result<(String, Outcome, u64)> {
        let a = self.a;
        let facts = ima_sys::fs::file_facts(path).with_context(|| format!("{}", path.display()))?;
        if facts.mode & 0o170000 != 0o100000 {
            let line = format!("{}: skipped (not a regular file)", path.display());
            return Ok((line, Outcome::Ok, 0));
        }
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let abs_bytes = std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str()).to_vec();
        let mask = a.mask.unwrap_or_else(|| policy::default_mask(a.func));
        let mut ev = Event::new(a.func, mask);
        ev.uid = rustix::process::getuid().as_raw();
        ev.euid = rustix::process::geteuid().as_raw();
        ev.suid = ev.euid;
        ev.gid = rustix::process::getgid().as_raw();
        ev.egid = rustix::process::getegid().as_raw();
        ev.sgid = ev.egid;
        ev.fowner = facts.uid;
        ev.fgroup = facts.gid;
        ev.fsmagic = facts.fsmagic;
        ev.fsname = facts.fsname.as_deref().unwrap_or("");
        if let Some(u) = facts.fsuuid {
            ev.fsuuid = u;
        }
        ev.path = Some(&abs_bytes);
        let eval = self.policy.evaluate(&ev);
        let Some(rule) = eval.appraise.filter(|_| eval.appraise()) else {
            let why = match eval.appraise {
                Some(d) => format!("line {}: {}", d.line, d.text),
                None => "no appraise rule matches".to_owned(),
            };
            let line = format!("{}: not appraised ({why})", path.display());
            return Ok((line, Outcome::Ok, 0));
        };
        let flags = eval.flags();
        let req = Requirements {
            digsig: flags.contains(RuleFlags::DIGSIG_REQUIRED),
            verity: flags.contains(RuleFlags::VERITY_REQUIRED),
            allowed_algos: eval.allowed_algos.map(|s| s.0),
        };

        let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let raw = match ima_sys::xattr::get(&f, evm::XATTR_IMA) {
            Ok(v) => Ok(v),
            Err(e) if e.raw_os_error() == Some(libc_enotsup()) => Err(true),
            Err(_) => Err(false),
        };
        let ima = match &raw {
            Ok(Some(v)) => ImaXattr::Value(v),
            Ok(None) => ImaXattr::Absent,
            Err(true) => ImaXattr::Unsupported,
            Err(false) => ImaXattr::Error,
        };
        let label = match ima {
            ImaXattr::Value(v) => Some(v),
            _ => None,
        };
        let algo = appraise::hash_algo(label, a.hash_algo);
        let digest = ima_sys::file::hash_file(&mut f, algo).ok();
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);

        let evm_status = if self.evm_keys.loaded() {
            let uuid = match self.uuid {
                Some(u) => Some(u),
                None => ima_sys::inode::fs_uuid(f.as_fd()).ok(),
            };
            let inode = evm_cmd::read_inode(&f, path, &self.evm_cfg, None, uuid)?;
            evm::verify_ima_xattr(&self.evm_cfg, &self.evm_keys, &inode).status
        } else {
            ima_core::appraise::Status::Unknown
        };
        let r = Request {
            mode: a.mode,
            req,
            ima,
            digest,
            evm: evm_status,
            new_file: false,
            size,
        };
        let mut result: Appraisal = appraise::appraise(&r, &self.ima_ring);
        let mut note = String::new();
        if let Some(fix) = result.fix.clone() {
            ima_sys::xattr::set(&f, evm::XATTR_IMA, &fix, SetMode::Any)
                .with_context(|| format!("{}: writing security.ima", path.display()))?;
            note = format!(" fixed: security.ima=0x{}", hex::encode(&fix));
            result = result.fixed();
        }
        let rule_txt = format!("[line {}: {}]", rule.line, rule.text);
        Ok(match (result.verdict.failure(), result.audit) {
            (None, Some(was)) => (
                format!(
                    "{}: pass (was {} {}){note} {rule_txt}",
                    path.display(),
                    was.status,
                    was.cause
                ),
                Outcome::Ok,
                size,
            ),
            (None, None) => (
                format!("{}: pass {rule_txt}", path.display()),
                Outcome::Ok,
                size,
            ),
            (Some(f), _) => {
                let deny = if result.denied(a.mode) { " denied" } else { "" };
                let line = format!(
                    "{}: {} {}{deny} {rule_txt}",
                    path.display(),
                    f.status,
                    f.cause
                );
                (line, Outcome::Failed, size)
            }
        })
    }
}

/// `ENOTSUP`/`EOPNOTSUPP` (the same value on Linux).
fn libc_enotsup() -> i32 {
    rustix::io::Errno::NOTSUP.raw_os_error()
}
