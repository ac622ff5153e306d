//! `imactl verify --keys DIR|CERT... [-r] PATH...`: check the IMA signatures in
//! `security.ima` (or `PATH.sig` with `--sigfile`) against a keyring, as `evmctl ima_verify`
//! does, and also fs-verity (sigv3) signatures, computing the fs-verity digest in
//! userspace. Each file prints `PATH: OK` or `PATH: FAIL (cause: detail)` with the kernel's
//! cause names; exit 0 if all pass, 1 if any fails, 2 on an error (unreadable file, ...).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use ima_core::codec::Codec;
use ima_core::digsig::{Keyring, Signature, VerifyError};
use ima_core::integrity::XattrType;
use ima_core::verity::VerityHasher;
use ima_core::xattr::{XATTR_NAME_IMA, XattrValue};
use ima_sys::walk::Entry;

use crate::tree::{self, Outcome};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Certificates (DER or PEM), PEM public keys, or directories of them: the keyring.
    /// Repeat the option or separate with commas (as evmctl's `-k a.der,b.der`).
    #[arg(short = 'k', long = "keys", required = true, value_delimiter = ',')]
    pub keys: Vec<PathBuf>,
    /// Recurse into directories.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Read the signature from PATH.sig instead of security.ima.
    #[arg(short = 'f', long)]
    pub sigfile: bool,
    /// Accept files labelled with a hash only (type 0x01/0x04) when the hash matches.
    #[arg(long)]
    pub allow_hash: bool,
    /// Print failures only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keyring = load_keyring(&a.keys)?;
    let single = !a.recursive && a.paths.len() == 1;
    let summary = tree::run(&a.paths, a.recursive, |e| verify_one(e, &a, &keyring));
    if !single {
        eprintln!("imactl: verify: {summary}");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// Builds a keyring from certificate (or PEM public key) files and directories of them.
/// As evmctl does with `-k a.der,b.der`, an empty entry (a trailing comma) is ignored and a
/// file that is missing, too large or holds no key is skipped with a warning, the others
/// used; it is an error only if no key is left.
pub fn load_keyring(paths: &[PathBuf]) -> anyhow::Result<Keyring> {
    let mut ring = Keyring::new();
    for p in paths.iter().filter(|p| !p.as_os_str().is_empty()) {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| e.is_file())
                .collect();
            entries.sort();
            for e in entries {
                let added = ima_sys::fs::read_limited(&e, ima_sys::fs::MAX_KEY_FILE)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(ring.add_bytes(&b)?));
                if let Err(err) = added {
                    eprintln!("imactl: warning: {}: skipped: {err:#}", e.display());
                }
            }
        } else {
            let added = ima_sys::fs::read_limited(p, ima_sys::fs::MAX_KEY_FILE)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(ring.add_bytes(&b)?));
            if let Err(err) = added {
                eprintln!("imactl: warning: {}: skipped: {err:#}", p.display());
            }
        }
    }
    if ring.is_empty() {
        bail!("no certificates or public keys found in {:?}", paths);
    }
    Ok(ring)
}

enum Check {
    Pass(&'static str),
    Fail(&'static str, String),
}

fn verify_one(e: &mut Entry, a: &VerifyArgs, keyring: &Keyring) -> (Outcome, u64) {
    let size = e.meta.len();
    let path = e.path.clone();
    let raw = if a.sigfile {
        match e.read_sibling(".sig", SIG_LIMIT) {
            Ok(b) => b,
            Err(err) => {
                let mut sig_path = path.as_os_str().to_owned();
                sig_path.push(".sig");
                tree::err_line(Path::new(&sig_path), err);
                return (Outcome::Error, 0);
            }
        }
    } else {
        match ima_sys::xattr::get(&e.file, XATTR_NAME_IMA) {
            Ok(v) => v,
            Err(err) => {
                tree::err_line(&path, format_args!("cannot read {XATTR_NAME_IMA}: {err}"));
                return (Outcome::Error, 0);
            }
        }
    };
    let check = match raw {
        None if a.allow_hash => Check::Fail("missing-hash", "no security.ima".into()),
        None => Check::Fail("IMA-signature-required", "no security.ima".into()),
        Some(raw) => match XattrValue::from_bytes(&raw) {
            Err(err) => Check::Fail("invalid-signature", format!("malformed xattr: {err}")),
            Ok(v) => match check_value(&mut e.file, &v, a.allow_hash, keyring) {
                Ok(c) => c,
                Err(err) => {
                    tree::err_line(&path, format_args!("cannot hash: {err}"));
                    return (Outcome::Error, 0);
                }
            },
        },
    };
    match check {
        Check::Pass(what) => {
            if !a.quiet {
                tree::out_line(&format!("{}: OK{what}", path.display()));
            }
            (Outcome::Ok, size)
        }
        Check::Fail(cause, detail) => {
            tree::out_line(&format!("{}: FAIL ({cause}: {detail})", path.display()));
            (Outcome::Failed, size)
        }
    }
}

/// A `PATH.sig` file is one `security.ima` value: far below this.
const SIG_LIMIT: u64 = 64 * 1024;

/// The decision for one decoded value; `Err` only for I/O errors reading the content.
fn check_value(
    f: &mut File,
    v: &XattrValue,
    allow_hash: bool,
    keyring: &Keyring,
) -> std::io::Result<Check> {
    Ok(match v {
        XattrValue::Digest(_) | XattrValue::DigestNg { .. } => {
            if !allow_hash {
                return Ok(Check::Fail(
                    "IMA-signature-required",
                    "labelled with a hash, not a signature".into(),
                ));
            }
            let Some(algo) = v.hash_algo().filter(|a| a.is_supported()) else {
                return Ok(Check::Fail(
                    "invalid-hash",
                    format!("unsupported algorithm in {v}"),
                ));
            };
            let d = ima_sys::file::hash_file(f, algo)?;
            if v.matches_digest(&d) {
                Check::Pass(" (hash)")
            } else {
                Check::Fail("invalid-hash", format!("content is {d}"))
            }
        }
        XattrValue::Signature(s) if s.kind == XattrType::DIGSIG => match s.version {
            2 => verify_sig(f, s, false, keyring, "invalid-signature")?,
            v => Check::Fail("invalid-signature-version", format!("version {v}")),
        },
        XattrValue::Signature(s) if s.kind == XattrType::VERITY_DIGSIG => match s.version {
            3 => verify_sig(f, s, true, keyring, "invalid-verity-signature")?,
            v => Check::Fail("invalid-signature-version", format!("version {v}")),
        },
        XattrValue::SignatureV1(_) => Check::Fail(
            "invalid-signature-version",
            "deprecated v1 (RSA) signature".into(),
        ),
        other => Check::Fail("unknown-ima-data", format!("{other}")),
    })
}

fn verify_sig(
    f: &mut File,
    s: &Signature,
    verity: bool,
    keyring: &Keyring,
    cause: &'static str,
) -> std::io::Result<Check> {
    if !s.hash_algo.is_supported() || (verity && VerityHasher::new(s.hash_algo).is_err()) {
        return Ok(Check::Fail(
            cause,
            format!("unsupported hash algorithm {}", s.hash_algo),
        ));
    }
    // Look the key up before reading the file: a missing key needs no hashing.
    if keyring.find_key(s.keyid).is_none() {
        return Ok(Check::Fail(cause, VerifyError::NoKey(s.keyid).to_string()));
    }
    let d = if verity {
        ima_sys::file::verity_reader(f, s.hash_algo)?
    } else {
        ima_sys::file::hash_file(f, s.hash_algo)?
    };
    Ok(match s.verify(keyring, &d) {
        Ok(()) => Check::Pass(""),
        Err(e) => Check::Fail(cause, e.to_string()),
    })
}
