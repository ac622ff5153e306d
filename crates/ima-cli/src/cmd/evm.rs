//! `imactl evm sign|verify|hmac`: `security.evm` as the kernel computes it, with evmctl's
//! options for overriding what goes into the message (`--uuid`, `--generation`, `--ino`,
//! `--uid`, `--gid`, `--mode`, `--ima`, `--selinux`, `--caps`, `--m32/--m64`). Each runs on
//! the shared tree runner (`-r`: parallel over a tree, with a progress bar and a summary).
//!
//! Unlike evmctl 1.4, `hmac` is the kernel's HMAC-SHA1 over a 128-byte zero-padded key with
//! the fs UUID (evmctl 1.5+ behaviour).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use ima_core::appraise;
use ima_core::codec::Codec;
use ima_core::digsig::{Certificate, KeyId, Keyring, PrivateKey, Signature, Verifier};
use ima_core::evm::{
    self, EvmConfig, EvmKeys, EvmKind, HMiscLayout, HmacKey, Inode, XattrList, protect,
};
use ima_core::hash::HashAlgo;
use ima_core::integrity::XattrType;
use ima_core::policy::TaskCreds;
use ima_engine::process;
use ima_sys::walk::Entry;
use ima_sys::xattr::SetMode;

use crate::tree::{self, Outcome};

#[derive(Debug, Subcommand)]
pub enum EvmCommand {
    /// Sign the EVM message: security.evm type 0x03, or 0x05 with --portable.
    Sign(SignArgs),
    /// Verify security.evm: signatures with --keys, HMACs with --hmac-key.
    Verify(VerifyArgs),
    /// Compute the kernel's HMAC (security.evm type 0x02) with a plain key file.
    Hmac(HmacArgs),
    /// chmod, chown, setxattr or removexattr only if the kernel's EVM would allow it, then
    /// update security.evm as the kernel does (refused with the kernel's errno otherwise).
    Change(ChangeArgs),
}

/// What goes into the EVM message, with evmctl's overrides.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// Filesystem UUID: `--uuid=U` uses U, a bare `--uuid` (or `--uuid=`) leaves it out (a
    /// kernel without EVM_ATTR_FSUUID), absent reads it from the filesystem (FS_IOC_GETFSUUID).
    #[arg(short = 'u', long, num_args = 0..=1, require_equals = true, value_name = "UUID")]
    uuid: Option<Option<String>>,
    /// Generation number instead of FS_IOC_GETVERSION (a bare `--generation` means 0).
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "N")]
    generation: Option<Option<u32>>,
    /// Inode number instead of the file's.
    #[arg(long, value_name = "N")]
    ino: Option<u64>,
    /// Owner instead of the file's.
    #[arg(long, value_name = "N")]
    uid: Option<u32>,
    /// Group instead of the file's.
    #[arg(long, value_name = "N")]
    gid: Option<u32>,
    /// Mode (i_mode, decimal as evmctl takes it, or 0o-prefixed octal) instead of the file's.
    #[arg(long, value_name = "N", value_parser = parse_mode)]
    mode: Option<u16>,
    /// security.ima value (hex) instead of the file's.
    #[arg(long, value_name = "HEX")]
    ima: Option<String>,
    /// security.selinux label instead of the file's (a NUL is appended, as evmctl does).
    #[arg(long, value_name = "LABEL")]
    selinux: Option<String>,
    /// security.capability value (raw text) instead of the file's; a bare `--caps` omits it.
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "CAPS")]
    caps: Option<Option<String>>,
    /// Include the extra SMACK xattrs (evmctl --smack).
    #[arg(long)]
    smack: bool,
    /// Lay out h_misc for a 32-bit kernel.
    #[arg(long, conflicts_with = "m64")]
    m32: bool,
    /// Lay out h_misc for a 64-bit kernel (the default here).
    #[arg(long)]
    m64: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1; a certificate in the same file sets the keyid).
    #[arg(short = 'k', long, default_value = "/etc/keys/privkey_evm.pem")]
    key: PathBuf,
    /// Password of an encrypted key (or EVMCTL_KEY_PASSWORD / IMACTL_KEY_PASSWORD).
    #[arg(short = 'p', long)]
    pass: Option<String>,
    /// Key id to write (8 hex digits) instead of the key's.
    #[arg(long)]
    keyid: Option<String>,
    /// Take the key id from this certificate's subject key identifier.
    #[arg(long, value_name = "CERT")]
    keyid_from_cert: Option<PathBuf>,
    /// Hash algorithm of the signed digest.
    #[arg(short = 'a', long = "hashalgo", default_value = "sha256")]
    algo: HashAlgo,
    /// Portable (immutable) signature: type 0x05, no inode number, generation or UUID.
    #[arg(short = 'o', long)]
    portable: bool,
    /// First write security.ima as a hash (evmctl --imahash).
    #[arg(short = 'd', long, conflicts_with = "imasig")]
    imahash: bool,
    /// First write security.ima as a signature with the same key (evmctl --imasig).
    #[arg(short = 's', long)]
    imasig: bool,
    /// Print the value instead of writing security.evm.
    #[arg(short = 'n')]
    no_write: bool,
    /// Recurse into directories (regular files only, symlinks not followed).
    #[arg(short = 'r', long)]
    recursive: bool,
    #[command(flatten)]
    msg: MessageArgs,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Certificates (DER or PEM files, or directories of them) of the .evm keyring.
    /// Repeat the option or separate with commas (evmctl's `--key a,b`).
    #[arg(
        short = 'k',
        long = "keys",
        alias = "key",
        value_delimiter = ',',
        value_name = "CERT|DIR"
    )]
    keys: Vec<PathBuf>,
    /// HMAC key file (enables HMAC verification, EVM_INIT_HMAC).
    #[arg(long, value_name = "FILE")]
    hmac_key: Option<PathBuf>,
    /// Print failures only.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do what the kernel's verification does on a writable inode: replace a verified type
    /// 0x03 signature with the HMAC (needs --hmac-key).
    #[arg(long, requires = "hmac_key")]
    fix: bool,
    /// Recurse into directories (regular files only, symlinks not followed).
    #[arg(short = 'r', long)]
    recursive: bool,
    #[command(flatten)]
    msg: MessageArgs,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HmacArgs {
    /// HMAC key file (the plain `evm-key` payload, at most 128 bytes).
    #[arg(long, value_name = "FILE", default_value = "/etc/keys/evm-key-plain")]
    hmac_key: PathBuf,
    /// Print the value instead of writing security.evm.
    #[arg(short = 'n')]
    no_write: bool,
    /// Recurse into directories (regular files only, symlinks not followed).
    #[arg(short = 'r', long)]
    recursive: bool,
    #[command(flatten)]
    msg: MessageArgs,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("op").required(true).multiple(false))]
pub struct ChangeArgs {
    /// Certificates of the .evm keyring (EVM_INIT_X509), as for `verify`.
    #[arg(
        short = 'k',
        long = "keys",
        value_delimiter = ',',
        value_name = "CERT|DIR"
    )]
    keys: Vec<PathBuf>,
    /// HMAC key file (EVM_INIT_HMAC; implies EVM_SETUP_COMPLETE).
    #[arg(long, value_name = "FILE")]
    hmac_key: Option<PathBuf>,
    /// EVM_ALLOW_METADATA_WRITES (the kernel refuses it once an HMAC key is loaded).
    #[arg(long, conflicts_with = "hmac_key")]
    allow_metadata_writes: bool,
    /// EVM_SETUP_COMPLETE without an HMAC key: no HMAC can ever be computed.
    #[arg(long)]
    setup_complete: bool,
    /// The `evm=fix` boot option: the current status is not checked.
    #[arg(long)]
    evm_fix: bool,
    /// `ima_hash=`: for a write of security.ima, IMA (whose hook runs before EVM's) accepts
    /// this algorithm or any other it can compute...
    #[arg(long, default_value = "sha256", value_name = "ALG")]
    ima_hash: HashAlgo,
    /// ...unless a SETXATTR_CHECK rule limits security.ima writes to these algorithms
    /// (its `appraise_algos=`, comma separated).
    #[arg(long, value_delimiter = ',', value_name = "ALG,...")]
    setxattr_algos: Vec<HashAlgo>,
    /// chmod to MODE (octal permission bits).
    #[arg(long, group = "op", value_name = "MODE", value_parser = parse_octal)]
    chmod: Option<u16>,
    /// chown to USER, USER:GROUP, :GROUP or USER: (with the user's login group), as chown
    /// takes them: names (from /etc/passwd, /etc/group) or numbers.
    #[arg(long, group = "op", value_name = "USER[:GROUP]")]
    chown: Option<String>,
    /// setxattr NAME to VALUE, as `setfattr -v` takes it: 0x and hex, 0s and base64, or
    /// "text" (a bare value is hex).
    #[arg(long, group = "op", value_name = "NAME=VALUE")]
    setxattr: Option<String>,
    /// removexattr NAME.
    #[arg(long, group = "op", value_name = "NAME")]
    removexattr: Option<String>,
    /// Recurse into directories (regular files only, symlinks not followed).
    #[arg(short = 'r', long)]
    recursive: bool,
    #[command(flatten)]
    msg: MessageArgs,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn parse_octal(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?}: not an octal mode (0000-7777)"))
}

fn parse_mode(s: &str) -> Result<u16, String> {
    let v = match s.strip_prefix("0o") {
        Some(oct) => u32::from_str_radix(oct, 8),
        None => s.parse::<u32>(),
    }
    .map_err(|e| format!("invalid mode {s:?}: {e}"))?;
    u16::try_from(v).map_err(|_| format!("mode {s:?} does not fit i_mode"))
}

pub fn run(cmd: EvmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvmCommand::Sign(a) => sign(&a),
        EvmCommand::Verify(a) => verify(&a),
        EvmCommand::Hmac(a) => hmac(&a),
        EvmCommand::Change(a) => change(&a),
    }
}

impl MessageArgs {
    /// The kernel configuration the message follows.
    fn config(&self) -> EvmConfig {
        let mut cfg = EvmConfig::default();
        if self.smack {
            cfg.xattrs = XattrList::evmctl(true);
        }
        if self.m32 {
            cfg.layout = HMiscLayout::ILP32_LE;
        }
        // `--uuid` and `--uuid=` (evmctl's "empty: do not use") leave the UUID out.
        if matches!(&self.uuid, Some(None)) || matches!(&self.uuid, Some(Some(u)) if u.is_empty()) {
            cfg.fsuuid = false;
        }
        cfg
    }

    /// Reads the open file's protected xattrs and metadata, then applies the overrides.
    fn inode(&self, f: &File, path: &Path, cfg: &EvmConfig) -> anyhow::Result<Inode> {
        let uuid = match &self.uuid {
            Some(Some(u)) if !u.is_empty() => Some(
                ima_sys::inode::parse_uuid(u).ok_or_else(|| anyhow!("--uuid {u:?}: not a UUID"))?,
            ),
            _ => None,
        };
        let generation = self.generation.map(|g| g.unwrap_or(0));
        let mut inode = read_inode(f, path, cfg, generation, uuid)?;
        if let Some(ino) = self.ino {
            inode.meta.ino = ino;
        }
        if let Some(uid) = self.uid {
            inode.meta.uid = uid;
        }
        if let Some(gid) = self.gid {
            inode.meta.gid = gid;
        }
        if let Some(mode) = self.mode {
            inode.meta.mode = mode;
        }
        apply_xattr_overrides(
            &mut inode,
            self.ima.as_deref(),
            self.selinux.as_deref(),
            self.caps.as_ref().map(Option::as_deref),
        )?;
        Ok(inode)
    }
}

/// Applies the `--ima HEX`, `--selinux LABEL` and `--caps[=VALUE]` overrides to the xattrs EVM
/// hashes (native `evm sign` and evmctl mode alike): `--caps` alone removes the capability.
pub(crate) fn apply_xattr_overrides(
    inode: &mut Inode,
    ima: Option<&str>,
    selinux: Option<&str>,
    caps: Option<Option<&str>>,
) -> anyhow::Result<()> {
    if let Some(h) = ima {
        let v = hex::decode(h).map_err(|e| anyhow!("--ima {h:?}: {e}"))?;
        inode.xattrs.insert(evm::XATTR_IMA.into(), v);
    }
    if let Some(s) = selinux {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        inode.xattrs.insert(evm::XATTR_SELINUX.into(), v);
    }
    match caps {
        None => {}
        Some(None) => {
            inode.xattrs.remove(evm::XATTR_CAPS);
        }
        Some(Some(c)) => {
            inode
                .xattrs
                .insert(evm::XATTR_CAPS.into(), c.as_bytes().to_vec());
        }
    }
    Ok(())
}

/// What EVM reads from an open file ([`ima_engine::process::evm_inode`]), errors naming
/// the file.
fn read_inode(
    f: &File,
    path: &Path,
    cfg: &EvmConfig,
    generation: Option<u32>,
    uuid: Option<[u8; 16]>,
) -> anyhow::Result<Inode> {
    ima_engine::process::evm_inode(f, cfg, generation, uuid)
        .with_context(|| format!("{}", path.display()))
}

fn key_password(pass: &Option<String>) -> Option<Vec<u8>> {
    pass.clone()
        .or_else(|| std::env::var("IMACTL_KEY_PASSWORD").ok())
        .or_else(|| std::env::var("EVMCTL_KEY_PASSWORD").ok())
        .map(String::into_bytes)
}

fn sign(a: &SignArgs) -> anyhow::Result<ExitCode> {
    let pem = ima_sys::fs::read_limited(&a.key, ima_sys::fs::MAX_KEY_FILE)
        .with_context(|| format!("{}: cannot read key", a.key.display()))?;
    let key = PrivateKey::from_pem(&pem, key_password(&a.pass).as_deref())
        .with_context(|| format!("{}: bad private key", a.key.display()))?;
    let keyid = match (&a.keyid, &a.keyid_from_cert) {
        (Some(k), _) => k.parse::<KeyId>()?,
        (None, Some(c)) => {
            let bytes = ima_sys::fs::read_limited(c, ima_sys::fs::MAX_KEY_FILE)
                .with_context(|| format!("{}: cannot read", c.display()))?;
            Certificate::parse_all(&bytes)
                .with_context(|| format!("{}: bad certificate", c.display()))?
                .first()
                .map(Certificate::keyid)
                .ok_or_else(|| anyhow!("{}: no certificate", c.display()))?
        }
        (None, None) => key.keyid(),
    };
    // Fail before touching any file if the key cannot sign with this algorithm.
    let probe = a.algo.digest(b"").context("hash algorithm")?;
    Signature::sign_digest(&key, XattrType(0x03), 2, keyid, &probe)
        .with_context(|| format!("{}", a.key.display()))?;
    let cfg = a.msg.config();
    let single = !a.recursive && a.files.len() == 1;
    let summary = tree::run(&a.files, a.recursive, |e| {
        let path = e.path.as_path();
        per_file(e, |f| sign_one(f, path, a, &cfg, &key, keyid))
    });
    Ok(finish("evm sign", &summary, single))
}

/// Runs `op` on the file the walk opened, turning its error into an error line.
fn per_file(e: &Entry, op: impl FnOnce(&File) -> anyhow::Result<(Outcome, u64)>) -> (Outcome, u64) {
    match op(&e.file) {
        Ok(r) => r,
        Err(err) => {
            tree::err_line(&e.path, err);
            (Outcome::Error, 0)
        }
    }
}

/// The summary line of a tree run (not for a single file) and the exit status.
fn finish(what: &str, summary: &tree::Summary, single: bool) -> ExitCode {
    if !single {
        eprintln!("imactl: {what}: {summary}");
    }
    ExitCode::from(summary.exit_code())
}

/// Signs one open file: optionally labels security.ima first (through the same fd), then
/// builds the EVM message from what the file now holds. Returns the bytes hashed.
fn sign_one(
    f: &File,
    path: &Path,
    a: &SignArgs,
    cfg: &EvmConfig,
    key: &PrivateKey,
    keyid: KeyId,
) -> anyhow::Result<(Outcome, u64)> {
    let kind = if a.portable {
        EvmKind::Portable
    } else {
        EvmKind::Signature
    };
    let mut size = 0;
    if a.imahash || a.imasig {
        let mut reader = f;
        let digest = ima_sys::file::hash_reader(&mut reader, a.algo).context("cannot hash")?;
        size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let value = if a.imasig {
            Signature::sign_v2(key, keyid, &digest)?.to_vec()
        } else {
            appraise::hash_xattr(&digest)
        };
        if !a.no_write {
            ima_sys::xattr::set(f, evm::XATTR_IMA, &value, SetMode::Any)
                .context("writing security.ima")?;
        }
    }
    let inode = a.msg.inode(f, path, cfg)?;
    let digest = evm::signed_digest(cfg, &inode, kind, a.algo).map_err(|e| match e {
        evm::DigestError::Message(evm::MessageError::NoXattrs) => anyhow!(
            "no EVM-protected xattr is present: the kernel would refuse this signature \
             (-ENODATA), so it is not made (evmctl signs such files: `imactl evmctl sign`)"
        ),
        e => anyhow::Error::from(e).context("building the EVM message"),
    })?;
    let sig = Signature::sign_digest(key, XattrType(kind.type_byte()), 2, keyid, &digest)
        .context("signing")?;
    emit(f, path, &sig.to_vec(), a.no_write)?;
    Ok((Outcome::Ok, size))
}

/// Prints `HEX PATH` (`-n`) or writes security.evm through the open file.
fn emit(f: &File, path: &Path, value: &[u8], print_only: bool) -> anyhow::Result<()> {
    if print_only {
        tree::out_line(&format!("{} {}", hex::encode(value), path.display()));
        Ok(())
    } else {
        ima_sys::xattr::set(f, evm::XATTR_EVM, value, SetMode::Any).context("writing security.evm")
    }
}

fn hmac(a: &HmacArgs) -> anyhow::Result<ExitCode> {
    let key = read_hmac_key(&a.hmac_key)?;
    let cfg = a.msg.config();
    let single = !a.recursive && a.files.len() == 1;
    let summary = tree::run(&a.files, a.recursive, |e| {
        let path = e.path.as_path();
        per_file(e, |f| {
            let inode = a.msg.inode(f, path, &cfg)?;
            let v = key
                .xattr(&cfg, &inode)
                .context("building the EVM message")?;
            emit(f, path, &v, a.no_write)?;
            Ok((Outcome::Ok, 0))
        })
    });
    Ok(finish("evm hmac", &summary, single))
}

fn read_hmac_key(path: &Path) -> anyhow::Result<HmacKey> {
    let bytes = ima_sys::fs::read_limited(path, ima_sys::fs::MAX_KEY_FILE)
        .with_context(|| format!("{}: cannot read HMAC key", path.display()))?;
    HmacKey::new(&bytes).with_context(|| format!("{}: bad HMAC key", path.display()))
}

fn verify(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if a.keys.is_empty() && a.hmac_key.is_none() {
        bail!("nothing to verify with: give --keys and/or --hmac-key");
    }
    let ring = load_keyring(&a.keys)?;
    let hmac_key = a.hmac_key.as_deref().map(read_hmac_key).transpose()?;
    let ring_ref: &(dyn Verifier + Sync) = &ring;
    let evm_keys = EvmKeys {
        hmac: hmac_key.as_ref(),
        x509: (!a.keys.is_empty()).then_some(ring_ref),
    };
    let cfg = a.msg.config();
    let single = !a.recursive && a.files.len() == 1;
    let summary = tree::run(&a.files, a.recursive, |e| {
        let path = e.path.as_path();
        per_file(e, |f| {
            let inode = a.msg.inode(f, path, &cfg)?;
            let fix = hmac_key.as_ref().filter(|_| a.fix);
            let (v, converted) = process::evm_verify(f, &cfg, &evm_keys, &inode, fix)?;
            if v.status.is_pass() {
                let note = if converted {
                    " (signature replaced by the HMAC)"
                } else {
                    ""
                };
                if !a.quiet || !note.is_empty() {
                    tree::out_line(&format!("{}: {}{note}", path.display(), v.status));
                }
                return Ok((Outcome::Ok, 0));
            }
            match &v.detail {
                Some(d) => tree::out_line(&format!("{}: {} ({d})", path.display(), v.status)),
                None => tree::out_line(&format!("{}: {}", path.display(), v.status)),
            }
            Ok((Outcome::Failed, 0))
        })
    });
    Ok(finish("evm verify", &summary, single))
}

/// [`process::evm_facts`], errors in words.
fn inode_facts(f: &File, inode: &Inode) -> anyhow::Result<protect::InodeFacts> {
    Ok(process::evm_facts(f, inode)?)
}

/// [`process::apply_evm_update`], errors in words.
fn apply_update(f: &File, u: protect::EvmUpdate) -> anyhow::Result<&'static str> {
    Ok(process::apply_evm_update(f, u)?)
}

/// The operation `imactl evm change` was asked for.
enum Op {
    Chmod(u16),
    Chown(Option<u32>, Option<u32>),
    Set(String, Vec<u8>),
    Remove(String),
}

impl ChangeArgs {
    fn op(&self) -> anyhow::Result<Op> {
        if let Some(m) = self.chmod {
            return Ok(Op::Chmod(m));
        }
        if let Some(o) = &self.chown {
            let (u, g) = crate::args::owner(o).with_context(|| format!("--chown {o:?}"))?;
            return Ok(Op::Chown(u, g));
        }
        if let Some(x) = &self.setxattr {
            let (name, value) = x
                .split_once('=')
                .ok_or_else(|| anyhow!("--setxattr {x:?}: expected NAME=VALUE"))?;
            let value =
                crate::args::xattr_value(value).with_context(|| format!("--setxattr {x:?}"))?;
            return Ok(Op::Set(name.to_owned(), value));
        }
        match &self.removexattr {
            Some(n) => Ok(Op::Remove(n.clone())),
            None => bail!("give one of --chmod, --chown, --setxattr, --removexattr"),
        }
    }
}

fn change(a: &ChangeArgs) -> anyhow::Result<ExitCode> {
    let op = a.op()?;
    let ring = load_keyring(&a.keys)?;
    let hmac_key = a.hmac_key.as_deref().map(read_hmac_key).transpose()?;
    let ring_ref: &(dyn Verifier + Sync) = &ring;
    let keys = EvmKeys {
        hmac: hmac_key.as_ref(),
        x509: (!a.keys.is_empty()).then_some(ring_ref),
    };
    let flags = protect::EvmFlags {
        allow_metadata_writes: a.allow_metadata_writes,
        setup_complete: a.setup_complete || hmac_key.is_some(),
        fix_mode: a.evm_fix,
    };
    let cfg = a.msg.config();
    let creds = ima_sys::procfs::task_creds(None).context("the task's credentials")?;
    let single = !a.recursive && a.files.len() == 1;
    let summary = tree::run(&a.files, a.recursive, |e| {
        let path = e.path.as_path();
        per_file(e, |f| {
            let inode = a.msg.inode(f, path, &cfg)?;
            let ctx = protect::Context {
                cfg: &cfg,
                keys: &keys,
                flags,
                facts: inode_facts(f, &inode)?,
                cap_sys_admin: creds.capable(TaskCreds::CAP_SYS_ADMIN),
                keeps_sgid: creds.capable(TaskCreds::CAP_FSETID) || creds.in_group(inode.meta.gid),
            };
            let m = inode.meta.mode;
            let change = match &op {
                Op::Chmod(p) => protect::Change::chmod(m, *p),
                Op::Chown(u, g) => protect::Change::chown(m, *u, *g),
                Op::Set(name, value) => protect::Change::SetXattr { name, value },
                Op::Remove(name) => protect::Change::RemoveXattr { name },
            };
            // security_inode_setxattr/removexattr: IMA's hook, then EVM's.
            let ima_value = match &op {
                Op::Set(name, value) if name == evm::XATTR_IMA => Some(Some(&value[..])),
                Op::Remove(name) if name == evm::XATTR_IMA => Some(None),
                _ => None,
            };
            if let Some(v) = ima_value {
                let algos = (a.setxattr_algos.iter())
                    .fold(0u32, |m, h| m | 1u32.checked_shl(h.0.into()).unwrap_or(0));
                let cap = creds.capable(TaskCreds::CAP_SYS_ADMIN);
                if let Err(r) = appraise::inode_setxattr(v, a.ima_hash, Some(algos), cap) {
                    tree::out_line(&format!("{}: refused by IMA: {r}", path.display()));
                    return Ok((Outcome::Failed, 0));
                }
            }
            let plan = match protect::decide(&ctx, &inode, &change) {
                Ok(p) => p,
                Err(refused) => {
                    tree::out_line(&format!("{}: refused: {refused}", path.display()));
                    return Ok((Outcome::Failed, 0));
                }
            };
            let mut done = Vec::new();
            if let Some(v) = plan.converted {
                ima_sys::xattr::set(f, evm::XATTR_EVM, &v, SetMode::Any)
                    .context("writing security.evm")?;
                done.push("verified 0x03 signature replaced by the HMAC");
            }
            match &op {
                Op::Chmod(p) => {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(u32::from(*p)))
                        .context("chmod")?;
                }
                Op::Chown(u, g) => std::os::unix::fs::fchown(f, *u, *g).context("chown")?,
                Op::Set(name, value) => ima_sys::xattr::set(f, name, value, SetMode::Any)
                    .with_context(|| format!("setxattr {name}"))?,
                Op::Remove(name) => {
                    ima_sys::xattr::remove(f, name)
                        .with_context(|| format!("removexattr {name}"))?;
                }
            }
            match (plan.update, hmac_key.as_ref()) {
                (true, Some(key)) => {
                    // The post-hook sees the inode as the change left it (a chown may also
                    // have dropped set-ID bits).
                    let after = a.msg.inode(f, path, &cfg)?;
                    done.push(apply_update(
                        f,
                        protect::update_evmxattr(&cfg, key, &after),
                    )?);
                }
                _ => done.push("security.evm not updated"),
            }
            tree::out_line(&format!("{}: done; {}", path.display(), done.join(", ")));
            Ok((Outcome::Ok, 0))
        })
    });
    Ok(finish("evm change", &summary, single))
}

/// A keyring from certificate files and directories of them (as `imactl verify` loads
/// one); empty when no path is given (HMAC-only verification).
pub(crate) fn load_keyring(paths: &[PathBuf]) -> anyhow::Result<Keyring> {
    if paths.is_empty() {
        return Ok(Keyring::new());
    }
    super::verify::load_keyring(paths)
}
