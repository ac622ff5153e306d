//! `imactl hash [-a ALG] [-r] [-n] PATH...`: label files with their content hash
//! (`security.ima` type 0x04, or 0x01 for md5/sha1), as `evmctl ima_hash` and the kernel's
//! fix mode write it. With `-n` nothing is written and the value is printed in hex: for a
//! single file exactly what `evmctl ima_hash -n` prints, otherwise `HEX PATH` per file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use ima_core::codec::Codec;
use ima_core::hash::HashAlgo;
use ima_core::xattr::XattrValue;
use ima_sys::walk::Entry;

use crate::tree::{self, Outcome};

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Hash algorithm (kernel name: sha256, sha1, sha512, sm3, ...).
    #[arg(short = 'a', long = "hashalgo", default_value = "sha256")]
    pub algo: HashAlgo,
    /// Recurse into directories (regular files only, symlinks not followed).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Do not write security.ima; print the value in hex.
    #[arg(short = 'n', long = "no-xattr")]
    pub print_only: bool,
    /// Files (or directories, with -r).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: HashArgs) -> anyhow::Result<ExitCode> {
    a.algo
        .hasher()
        .with_context(|| format!("cannot hash with {}", a.algo))?;
    let single = !a.recursive && a.paths.len() == 1;
    let summary = tree::run(&a.paths, a.recursive, |p| hash_one(p, &a, single));
    if !single {
        eprintln!("imactl: hash: {summary}");
    }
    Ok(ExitCode::from(summary.exit_code()))
}

fn hash_one(e: &mut Entry, a: &HashArgs, single: bool) -> (Outcome, u64) {
    let digest = match ima_sys::file::hash_file(&mut e.file, a.algo) {
        Ok(d) => d,
        Err(err) => {
            // Nothing is written for a file that could not be hashed.
            tree::err_line(&e.path, format_args!("cannot hash: {err}"));
            return (Outcome::Error, 0);
        }
    };
    let value = XattrValue::from_digest(&digest).to_vec();
    let size = e.meta.len();
    tree::print_or_label(e, &value, a.print_only, single, size)
}
