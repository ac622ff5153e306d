//! `imactl policy check|show|explain`: validate a policy file, print built-in policies in
//! the kernel's read-back format, and explain which rule decides an access.

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ima_core::policy::parse::parse_policy_bytes_with_warnings;
use ima_core::policy::{
    ActionClass, BootPolicy, Builtin, Evaluation, Event, FileFacts, Func, LsmField, Mask,
    ParseOptions, Policy, TaskCreds, Uuid,
};

/// Largest policy file we read (bounded memory).
const MAX_POLICY_FILE: u64 = 64 << 20;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: exit 0 if a Linux kernel would accept it, else print
    /// FILE:LINE:COLUMN: message for every bad line and exit 1.
    ///
    /// Strict by default: a file that passes can be written to
    /// /sys/kernel/security/ima/policy. imactl's extensions (path=, path_prefix=, glob=, exe=,
    /// cgroup=, policy_version=) are errors unless --extensions is given; measure, appraise
    /// and explain accept them.
    Check {
        /// Also accept imactl's extensions (path=, path_prefix=, glob=, exe=, cgroup=,
        /// policy_version=), which only imactl understands: the kernel refuses them.
        #[arg(long)]
        extensions: bool,
        /// Kernel language only: the default (kept for scripts written before it was).
        #[arg(long, hide = true, conflicts_with = "extensions")]
        strict_kernel: bool,
        /// Also require the file's security.ima to be a valid signature by one of these
        /// certificates (PEM or DER), as `appraise func=POLICY_CHECK appraise_type=imasig`
        /// does.
        #[arg(long, value_name = "CERT")]
        signed_by: Vec<PathBuf>,
        /// The policy file.
        file: PathBuf,
    },
    /// Print a built-in policy (or a policy file) in the kernel's read-back format.
    Show {
        /// tcb, ima_tcb, appraise_tcb, secure_boot, critical_data, fail_securely, or several
        /// joined with | as in ima_policy= (the boot-time combination).
        #[arg(long, conflicts_with = "file")]
        builtin: Option<String>,
        /// Emulate this kernel version's built-ins (before 6.14 the tcb tmpfs rule covers
        /// every hook).
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// A policy file to print in read-back form instead.
        file: Option<PathBuf>,
    },
    /// Explain which rule decides each action class for one access.
    Explain(Box<ExplainArgs>),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["policy", "builtin"])))]
pub struct ExplainArgs {
    /// A policy file.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A built-in policy (as for `show --builtin`).
    #[arg(long)]
    builtin: Option<String>,
    /// Kernel version to emulate for built-ins (as for `show --kernel`).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// The hook: FILE_CHECK, BPRM_CHECK, MMAP_CHECK, ...
    #[arg(long)]
    func: String,
    /// Requested mask (MAY_READ, MAY_READ|MAY_WRITE, ...). Default: what the hook passes
    /// (MAY_READ for FILE_CHECK and kernel reads, MAY_EXEC for exec/mmap, 0 for buffers).
    #[arg(long)]
    mask: Option<String>,
    /// The accessing task's real uid (default 0).
    #[arg(long, conflicts_with = "pid")]
    uid: Option<u32>,
    /// Default: --uid.
    #[arg(long, conflicts_with = "pid")]
    euid: Option<u32>,
    /// Saved uid. Default: --euid.
    #[arg(long, conflicts_with = "pid")]
    suid: Option<u32>,
    #[arg(long, conflicts_with = "pid")]
    gid: Option<u32>,
    /// Default: --gid.
    #[arg(long, conflicts_with = "pid")]
    egid: Option<u32>,
    /// Saved gid. Default: --egid.
    #[arg(long, conflicts_with = "pid")]
    sgid: Option<u32>,
    /// The task has CAP_SETUID / CAP_SETGID (euid=/egid= then also match real and saved ids).
    #[arg(long, conflicts_with = "pid")]
    cap_setid: bool,
    /// Take the task's ids and capabilities from this running process (/proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long)]
    fowner: Option<u32>,
    #[arg(long)]
    fgroup: Option<u32>,
    /// Filesystem magic in hex (0xef53).
    #[arg(long)]
    fsmagic: Option<String>,
    /// Filesystem type name (ext4).
    #[arg(long)]
    fsname: Option<String>,
    #[arg(long)]
    fsuuid: Option<String>,
    /// Keyring (KEY_CHECK) or label (CRITICAL_DATA).
    #[arg(long)]
    data: Option<String>,
    /// LSM labels as NAME=VALUE (obj_type=bin_t, subj_user=system_u), repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    lsm: Vec<String>,
    /// The file; owner, group and filesystem not given explicitly are read from it.
    #[arg(long)]
    path: Option<PathBuf>,
    /// The accessing program (extension selector exe=).
    #[arg(long)]
    exe: Option<PathBuf>,
    /// The accessing process's cgroup (extension selector cgroup=).
    #[arg(long)]
    cgroup: Option<String>,
    /// The boot template for rules without template= (buffer hooks default to ima-buf).
    #[arg(long, default_value = "ima-ng")]
    default_template: String,
    /// Print JSON: {"measure": ..., "appraise": ..., "audit": ..., "hash": ...}.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check {
            extensions,
            strict_kernel: _,
            signed_by,
            file,
        } => check(&file, !extensions, &signed_by),
        PolicyCommand::Show {
            builtin,
            kernel,
            file,
        } => {
            let p = match (builtin, file) {
                (Some(b), _) => builtin_policy(&b, kernel.as_deref())?,
                (None, Some(f)) => load_file(&f, &ParseOptions::default())?,
                (None, None) => bail!("give --builtin NAME or a policy FILE"),
            };
            print!("{}", p.readback());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Explain(a) => explain(*a),
    }
}

fn read_limited(file: &Path) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_POLICY_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{}", file.display()))?;
    if buf.len() as u64 > MAX_POLICY_FILE {
        bail!(
            "{}: larger than {} MiB: not a policy",
            file.display(),
            MAX_POLICY_FILE >> 20
        );
    }
    Ok(buf)
}

fn check(file: &Path, strict_kernel: bool, signed_by: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let bytes = read_limited(file)?;
    if !signed_by.is_empty() {
        let mut ring = ima_core::digsig::Keyring::new();
        for c in signed_by {
            let der = ima_sys::fs::read_limited(c, ima_sys::fs::MAX_KEY_FILE)
                .with_context(|| format!("{}", c.display()))?;
            ring.add_bytes(&der)
                .with_context(|| format!("{}", c.display()))?;
        }
        let xattr = ima_sys::xattr::get_path(file, "security.ima")
            .with_context(|| format!("{}: reading security.ima", file.display()))?;
        if let Err(e) = ima_core::policy::verify_policy_signature(&bytes, xattr.as_deref(), &ring) {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::from(1));
        }
    }
    let opts = ParseOptions {
        strict_kernel,
        ..ParseOptions::default()
    };
    let name = file.display();
    match parse_policy_bytes_with_warnings(&bytes, &opts) {
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{name}:{}:{}: {}", e.line, e.column, e.kind);
            }
            Ok(ExitCode::from(1))
        }
        Ok((p, warnings)) => {
            for w in &warnings {
                eprintln!("{name}:{}:{}: warning: {}", w.line, w.column, w.kind);
            }
            if p.is_empty() {
                eprintln!("{name}:1:1: no rules: the kernel refuses an empty policy update");
                return Ok(ExitCode::from(1));
            }
            let signed = if p.requires_signed_policy() {
                " (appraises POLICY_CHECK: later policies must be signed)"
            } else {
                ""
            };
            let sig = if signed_by.is_empty() {
                ""
            } else {
                ", signature OK"
            };
            println!(
                "{name}: {} OK{sig}{signed}",
                crate::text::count(p.len(), "rule", "rules")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn load_file(file: &Path, opts: &ParseOptions) -> anyhow::Result<Policy> {
    let bytes = read_limited(file)?;
    match parse_policy_bytes_with_warnings(&bytes, opts) {
        Ok((p, _)) => Ok(p),
        Err(errs) => {
            let mut msg = String::new();
            for e in &errs.0 {
                let _ = write!(
                    msg,
                    "\n{}:{}:{}: {}",
                    file.display(),
                    e.line,
                    e.column,
                    e.kind
                );
            }
            bail!("{}: invalid policy:{msg}", file.display())
        }
    }
}

/// Kernel versions before 6.14 have the all-hooks tmpfs rule.
fn tmpfs_all_hooks(kernel: Option<&str>) -> anyhow::Result<bool> {
    let Some(v) = kernel else { return Ok(false) };
    let mut it = v.split(['.', '-']);
    let major: u32 = it
        .next()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("--kernel {v:?}"))?;
    let minor: u32 = it
        .next()
        .unwrap_or("0")
        .parse()
        .with_context(|| format!("--kernel {v:?}"))?;
    Ok((major, minor) < (6, 14))
}

pub(crate) fn builtin_policy(names: &str, kernel: Option<&str>) -> anyhow::Result<Policy> {
    let mut bp = BootPolicy::default();
    for w in names.split(['|', ' ', ',']).filter(|w| !w.is_empty()) {
        let b: Builtin = w.parse()?;
        bp.enable(b);
    }
    bp.tmpfs_all_hooks = tmpfs_all_hooks(kernel)?;
    Ok(bp.default_policy())
}

fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = match (&a.policy, &a.builtin) {
        (Some(f), _) => load_file(f, &ParseOptions::default())?,
        (None, Some(b)) => builtin_policy(b, a.kernel.as_deref())?,
        (None, None) => bail!("give --policy FILE or --builtin NAME"),
    };
    let func: Func = a.func.parse()?;
    let mask = match &a.mask {
        Some(m) => m.parse::<Mask>()?,
        None => func.default_mask(),
    };
    let creds = match a.pid {
        Some(pid) => ima_sys::procfs::task_creds(Some(pid))
            .with_context(|| format!("--pid {pid}: the task's credentials"))?,
        None => {
            let (uid, gid) = (a.uid.unwrap_or(0), a.gid.unwrap_or(0));
            let (euid, egid) = (a.euid.unwrap_or(uid), a.egid.unwrap_or(gid));
            let caps = (1u64 << TaskCreds::CAP_SETUID) | (1u64 << TaskCreds::CAP_SETGID);
            TaskCreds {
                uid,
                euid,
                suid: a.suid.unwrap_or(euid),
                fsuid: euid,
                gid,
                egid,
                sgid: a.sgid.unwrap_or(egid),
                fsgid: egid,
                groups: Vec::new(),
                cap_eff: if a.cap_setid { caps } else { 0 },
            }
        }
    };
    // The file's facts from the file itself (opened as the tree commands open it), then
    // the options given explicitly.
    let mut facts = match &a.path {
        Some(p) => path_facts(p).with_context(|| format!("{}", p.display()))?,
        None => FileFacts {
            uid: 0,
            gid: 0,
            mode: 0,
            dev: (0, 0),
            ino: 0,
            fsmagic: 0,
            fsname: None,
            fsuuid: None,
        },
    };
    if let Some(u) = a.fowner {
        facts.uid = u;
    }
    if let Some(g) = a.fgroup {
        facts.gid = g;
    }
    if let Some(m) = &a.fsmagic {
        let h = m
            .strip_prefix("0x")
            .or_else(|| m.strip_prefix("0X"))
            .unwrap_or(m);
        facts.fsmagic =
            u64::from_str_radix(h, 16).with_context(|| format!("--fsmagic {m:?}: not hex"))?;
    }
    if let Some(n) = &a.fsname {
        facts.fsname = Some(n.clone());
    }
    if let Some(u) = &a.fsuuid {
        facts.fsuuid = Some(u.parse::<Uuid>()?);
    }
    let mut ev = Event::access(func, mask, &creds, &facts);
    ev.func_data = a.data.as_deref();
    let mut lsm: [Option<String>; 6] = Default::default();
    for l in &a.lsm {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--lsm {l:?}: expected NAME=VALUE"))?;
        let f = LsmField::ALL
            .into_iter()
            .find(|f| f.name() == k)
            .with_context(|| format!("--lsm {l:?}: unknown LSM field {k:?}"))?;
        lsm[f.index()] = Some(v.to_owned());
    }
    for (slot, v) in ev.lsm.iter_mut().zip(lsm.iter()) {
        *slot = v.as_deref();
    }
    let abs = |p: &PathBuf| -> PathBuf { std::path::absolute(p).unwrap_or_else(|_| p.clone()) };
    let path = a.path.as_ref().map(abs);
    let exe = a.exe.as_ref().map(abs);
    ev.path = path.as_ref().map(|p| p.as_os_str().as_bytes());
    ev.exe = exe.as_ref().map(|p| p.as_os_str().as_bytes());
    ev.cgroup = a.cgroup.as_deref().map(str::as_bytes);

    let e = policy.evaluate(&ev);
    let default_template = if func.is_buffer() {
        "ima-buf"
    } else {
        a.default_template.as_str()
    };
    if a.json {
        println!("{}", to_json(&e, default_template));
    } else {
        print!("{}", to_text(&e, default_template));
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy facts of `path`: a regular file as the walk opens it (never blocking), anything
/// else by `stat`.
fn path_facts(path: &Path) -> anyhow::Result<FileFacts> {
    match ima_sys::walk::Walk::new(&[path.to_path_buf()], false).next() {
        Some(Ok(ima_sys::walk::Item::File(e))) => {
            Ok(ima_sys::fs::FactsCache::new().facts(&e.file, &e.meta)?)
        }
        _ => Ok(ima_sys::fs::file_facts(path)?),
    }
}

fn flag_names(e: &Evaluation<'_>) -> Vec<&'static str> {
    let mut v = Vec::new();
    if e.digsig_required() {
        v.push("digsig_required");
    }
    if e.modsig_allowed() {
        v.push("modsig_allowed");
    }
    if e.verity_required() {
        v.push("verity_required");
    }
    if e.permit_directio() {
        v.push("permit_directio");
    }
    if e.flags()
        .contains(ima_core::policy::RuleFlags::FAIL_UNVERIFIABLE_SIGS)
    {
        v.push("fail_unverifiable_sigs");
    }
    v
}

fn to_json(e: &Evaluation<'_>, default_template: &str) -> String {
    let mut m = serde_json::Map::new();
    for class in ActionClass::ALL {
        let v = match e.decided(class) {
            None => serde_json::Value::Null,
            Some(d) => {
                let mut o = serde_json::Map::new();
                o.insert("line".into(), d.line.into());
                o.insert("rule".into(), d.text.into());
                o.insert("action".into(), d.action().name().into());
                o.insert("decision".into(), e.does(class).into());
                match class {
                    ActionClass::Measure if e.does(class) => {
                        o.insert("pcr".into(), e.pcr().into());
                        o.insert("template".into(), e.template_name(default_template).into());
                    }
                    ActionClass::Appraise if e.does(class) => {
                        o.insert("appraise_type".into(), d.rule.appraise_type().into());
                        o.insert("flags".into(), flag_names(e).into());
                        o.insert(
                            "appraise_algos".into(),
                            e.allowed_algos.map(|a| a.to_string()).into(),
                        );
                    }
                    _ => {}
                }
                serde_json::Value::Object(o)
            }
        };
        m.insert(class.name().into(), v);
    }
    serde_json::Value::Object(m).to_string()
}

fn to_text(e: &Evaluation<'_>, default_template: &str) -> String {
    let mut s = String::new();
    for class in ActionClass::ALL {
        let _ = write!(s, "{:<9} ", format!("{}:", class.name()));
        match e.decided(class) {
            None => {
                let _ = writeln!(s, "no rule matches: not done");
            }
            Some(d) => {
                let _ = write!(s, "line {}: {} => ", d.line, d.text);
                if !e.does(class) {
                    let _ = writeln!(s, "not done");
                    continue;
                }
                match class {
                    ActionClass::Measure => {
                        let _ = writeln!(
                            s,
                            "measure into PCR {} with template {}",
                            e.pcr(),
                            e.template_name(default_template)
                        );
                    }
                    ActionClass::Appraise => {
                        let _ = write!(s, "appraise");
                        let flags = flag_names(e);
                        if !flags.is_empty() {
                            let _ = write!(s, " ({})", flags.join(", "));
                        }
                        if let Some(a) = e.allowed_algos {
                            let _ = write!(s, ", algorithms {a}");
                        }
                        s.push('\n');
                    }
                    other => {
                        let _ = writeln!(s, "{other}");
                    }
                }
            }
        }
    }
    s
}
