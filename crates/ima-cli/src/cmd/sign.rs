//! `imactl sign --key KEY [--cert CERT|--keyid HEX] [-a ALG] [-r] [--sigfile] [--v3] PATH...`:
//! IMA signatures in `security.ima`, as `evmctl ima_sign` writes them (type 0x03, version
//! 2, signing the file digest), or with `--v3` fs-verity signatures (type 0x06, version 3,
//! signing the hash of the `ima_file_id` of the userspace-computed fs-verity digest).
//! `--sigfile` also writes the value to `PATH.sig` (evmctl does both); `-n` writes nothing
//! and prints the value in hex.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use ima_core::codec::Codec;
use ima_core::digsig::{Certificate, KeyId, PrivateKey, Signature};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::verity::VerityHasher;
use ima_core::xattr::XattrValue;
use ima_sys::walk::Entry;

use crate::tree::{self, Outcome};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key, PEM: PKCS#8 (optionally encrypted), PKCS#1 RSA or SEC1 EC.
    #[arg(short = 'k', long)]
    pub key: PathBuf,
    /// Password of an encrypted key (else $IMACTL_KEY_PASSWORD or $EVMCTL_KEY_PASSWORD).
    #[arg(short = 'p', long = "pass")]
    pub password: Option<String>,
    /// Take the key id from this certificate's SubjectKeyIdentifier (checks it matches the key).
    #[arg(long, conflicts_with = "keyid")]
    pub cert: Option<PathBuf>,
    /// Key id to write (8 hex digits).
    #[arg(long)]
    pub keyid: Option<KeyId>,
    /// Hash algorithm (kernel name). RSA: md5, sha1, rmd160, sha224, sha256, sha384, sha512;
    /// ECDSA: any. md5, sha1, rmd160 and sha224 are legacy (a warning).
    #[arg(short = 'a', long = "hashalgo", default_value = "sha256")]
    pub algo: HashAlgo,
    /// Recurse into directories.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Also write the value to PATH.sig.
    #[arg(short = 'f', long)]
    pub sigfile: bool,
    /// fs-verity signature (sigv3, type 0x06) over the fs-verity digest (sha256 or sha512).
    #[arg(long)]
    pub v3: bool,
    /// Do not write security.ima; print the value in hex.
    #[arg(short = 'n', long = "no-xattr")]
    pub print_only: bool,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: SignArgs) -> anyhow::Result<ExitCode> {
    let key = load_private_key(&a.key, a.password.as_deref())?;
    let keyid = match (&a.cert, a.keyid) {
        (_, Some(id)) => id,
        (Some(c), None) => {
            let bytes = ima_sys::fs::read_limited(c, ima_sys::fs::MAX_KEY_FILE)
                .with_context(|| format!("{}", c.display()))?;
            let cert = Certificate::parse_all(&bytes)
                .with_context(|| format!("{}", c.display()))?
                .remove(0);
            if cert.key() != key.public_key() {
                bail!(
                    "{}: the certificate's public key does not match {}",
                    c.display(),
                    a.key.display()
                );
            }
            cert.keyid()
        }
        (None, None) => key.keyid(),
    };
    if ima_core::digsig::is_legacy_digest(a.algo) {
        eprintln!("imactl: warning: signing with {}, a legacy digest", a.algo);
    }
    // Fail early, before touching any file, if the key cannot sign this algorithm.
    let probe = a.algo.digest(b"").context("hash algorithm")?;
    if a.v3 {
        VerityHasher::new(a.algo).context("fs-verity supports sha256 and sha512 only")?;
        Signature::sign_v3(&key, keyid, &probe)
    } else {
        Signature::sign_v2(&key, keyid, &probe)
    }
    .with_context(|| format!("{}", a.key.display()))?;

    let single = !a.recursive && a.paths.len() == 1;
    let summary = tree::run(&a.paths, a.recursive, |e| {
        sign_one(e, &a, &key, keyid, single)
    });
    if !single {
        eprintln!("imactl: sign: {summary}");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// Reads a PEM private key, with the password from the option or the environment.
pub fn load_private_key(path: &Path, password: Option<&str>) -> anyhow::Result<PrivateKey> {
    let text = ima_sys::fs::read_limited(path, ima_sys::fs::MAX_KEY_FILE)
        .with_context(|| format!("{}", path.display()))?;
    let env = std::env::var("IMACTL_KEY_PASSWORD")
        .or_else(|_| std::env::var("EVMCTL_KEY_PASSWORD"))
        .ok();
    let pw = password.map(str::to_owned).or(env);
    PrivateKey::from_pem(&text, pw.as_deref().map(str::as_bytes))
        .with_context(|| format!("{}", path.display()))
}

/// The digest a signature covers: the file hash, or its fs-verity digest for `--v3`.
fn file_digest(f: &mut File, algo: HashAlgo, verity: bool) -> std::io::Result<Digest> {
    if !verity {
        return ima_sys::file::hash_file(f, algo);
    }
    ima_sys::file::verity_reader(f, algo)
}

fn sign_one(
    e: &mut Entry,
    a: &SignArgs,
    key: &PrivateKey,
    keyid: KeyId,
    single: bool,
) -> (Outcome, u64) {
    let size = e.meta.len();
    let digest = match file_digest(&mut e.file, a.algo, a.v3) {
        Ok(d) => d,
        Err(err) => {
            tree::err_line(&e.path, format_args!("cannot hash: {err}"));
            return (Outcome::Error, 0);
        }
    };
    let sig = if a.v3 {
        Signature::sign_v3(key, keyid, &digest)
    } else {
        Signature::sign_v2(key, keyid, &digest)
    };
    let value = match sig {
        Ok(s) => XattrValue::Signature(s).to_vec(),
        Err(err) => {
            tree::err_line(&e.path, format_args!("cannot sign: {err}"));
            return (Outcome::Error, size);
        }
    };
    if a.sigfile {
        // Next to the file, in the directory it was opened in: never through a symlink.
        let written = e
            .create_sibling(".sig")
            .and_then(|mut f| std::io::Write::write_all(&mut f, &value));
        if let Err(err) = written {
            let mut sig_path = e.path.as_os_str().to_owned();
            sig_path.push(".sig");
            tree::err_line(Path::new(&sig_path), err);
            return (Outcome::Error, size);
        }
    }
    tree::print_or_label(e, &value, a.print_only, single, size)
}
