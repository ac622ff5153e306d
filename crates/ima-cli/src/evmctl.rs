//! evmctl mode: `imactl` invoked as `evmctl` (a symlink or hard link), or `imactl evmctl
//! ARGS...`, takes evmctl's command line (ima-evm-utils 1.4 to 1.6) and does what evmctl
//! does, through the same library calls as the native commands.
//!
//! The command line is `getopt_long`'s ([`getopt`]): global options anywhere, then the
//! command and its operands. Commands: `ima_hash`, `ima_sign`, `ima_verify`, `sign`,
//! `verify`, `hmac`, `sign_hash`, `ima_fix`, `ima_clear`, `ima_boot_aggregate`,
//! `ima_measurement`. Exit codes follow evmctl: 0 success, 1 a failed verification or a
//! command-line error, 125 any other error (evmctl's `-1`), and usage with no command is 0.
//!
//! As evmctl does (and unlike the native commands): a command other than `ima_verify` takes
//! one path (more are ignored, with a warning), `-r` walks it and ignores per-file errors,
//! `-n` prints bare hex, the default key is `/etc/keys/privkey_evm.pem`, the default
//! certificate `/etc/keys/x509_evm.der`, and EVM signs files without any protected xattr
//! (the kernel refuses; `imactl evm sign` keeps the refusal).

mod cmds;
pub mod getopt;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use getopt::{HasArg, Opt};

/// evmctl's `struct option opts[]` and short options `hvnsda:op::fu::k:t:ri`.
const OPTIONS: &[Opt] = &[
    opt("help", Some("help"), Some(b'h'), HasArg::No),
    opt("verbose", None, Some(b'v'), HasArg::No),
    opt("no-xattr", None, Some(b'n'), HasArg::No),
    opt("imasig", Some("imasig"), Some(b's'), HasArg::No),
    opt("imahash", Some("imahash"), Some(b'd'), HasArg::No),
    opt("hashalgo", Some("hashalgo"), Some(b'a'), HasArg::Required),
    opt("pass", Some("pass"), Some(b'p'), HasArg::Optional),
    opt("sigfile", Some("sigfile"), Some(b'f'), HasArg::No),
    opt("uuid", Some("uuid"), Some(b'u'), HasArg::Optional),
    opt("rsa", Some("rsa"), None, HasArg::No),
    opt("key", Some("key"), Some(b'k'), HasArg::Required),
    opt("type", Some("type"), Some(b't'), HasArg::Required),
    opt("recursive", Some("recursive"), Some(b'r'), HasArg::No),
    opt("m32", Some("m32"), None, HasArg::No),
    opt("m64", Some("m64"), None, HasArg::No),
    opt("portable", Some("portable"), Some(b'o'), HasArg::No),
    opt("immutable", None, Some(b'i'), HasArg::No),
    opt("smack", Some("smack"), None, HasArg::No),
    opt("version", Some("version"), None, HasArg::No),
    opt("inode", Some("inode"), None, HasArg::Required),
    opt("uid", Some("uid"), None, HasArg::Required),
    opt("gid", Some("gid"), None, HasArg::Required),
    opt("mode", Some("mode"), None, HasArg::Required),
    opt("generation", Some("generation"), None, HasArg::Required),
    opt("ima", Some("ima"), None, HasArg::Required),
    opt("selinux", Some("selinux"), None, HasArg::Required),
    opt("caps", Some("caps"), None, HasArg::Optional),
    opt("verify-sig", Some("verify-sig"), None, HasArg::No),
    opt("engine", Some("engine"), None, HasArg::Required),
    opt("xattr-user", Some("xattr-user"), None, HasArg::No),
    opt(
        "ignore-violations",
        Some("ignore-violations"),
        None,
        HasArg::No,
    ),
    opt("pcrs", Some("pcrs"), None, HasArg::Required),
    opt("verify-bank", Some("verify-bank"), None, HasArg::Optional),
    opt("keyid", Some("keyid"), None, HasArg::Required),
    opt(
        "keyid-from-cert",
        Some("keyid-from-cert"),
        None,
        HasArg::Required,
    ),
];

const fn opt(id: &'static str, long: Option<&'static str>, short: Option<u8>, arg: HasArg) -> Opt {
    Opt {
        id,
        long,
        short,
        arg,
    }
}

/// evmctl's exit status for errors other than a failed verification (`-1` → 125).
pub const EXIT_ERROR: u8 = 125;

/// The global options, as evmctl keeps them.
#[derive(Debug, Default)]
pub struct Opts {
    pub verbose: u32,
    pub imahash: bool,
    pub imasig: bool,
    /// `-n`: write no xattr, print the value.
    pub print_only: bool,
    pub hashalgo: Option<String>,
    pub pass: Option<String>,
    pub sigfile: bool,
    /// `-u`/`--uuid`: `Some(None)` leaves the UUID out, `Some(Some(U))` uses U.
    pub uuid: Option<Option<String>>,
    pub rsa: bool,
    pub key: Option<String>,
    pub search_type: Option<String>,
    pub recursive: bool,
    pub m32: bool,
    pub portable: bool,
    pub immutable: bool,
    pub smack: bool,
    pub inode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<String>,
    pub generation: Option<String>,
    pub ima: Option<String>,
    pub selinux: Option<String>,
    /// `--caps`: `Some(None)` omits security.capability.
    pub caps: Option<Option<String>>,
    pub verify_sig: bool,
    pub xattr_user: bool,
    pub ignore_violations: bool,
    pub pcrs: Vec<String>,
    pub verify_bank: Option<Option<String>>,
    pub keyid: Option<u32>,
    pub keyid_from_cert: Option<PathBuf>,
}

impl Opts {
    /// The IMA xattr name (`--xattr-user`: `user.ima`).
    pub fn xattr_ima(&self) -> &'static str {
        if self.xattr_user {
            "user.ima"
        } else {
            ima_core::xattr::XATTR_NAME_IMA
        }
    }

    /// The EVM xattr name (`--xattr-user`: `user.evm`).
    pub fn xattr_evm(&self) -> &'static str {
        if self.xattr_user {
            "user.evm"
        } else {
            ima_core::xattr::XATTR_NAME_EVM
        }
    }
}

/// Runs evmctl mode on `args` (without the program name).
pub fn main(args: &[OsString]) -> ExitCode {
    crate::tree::EVMCTL_MODE.store(true, std::sync::atomic::Ordering::Relaxed);
    let parsed = match getopt::parse("evmctl", OPTIONS, args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(1);
        }
    };
    let mut o = Opts::default();
    for f in parsed.opts {
        let v = f.value.map(|v| v.to_string_lossy().into_owned());
        match f.id {
            "help" => {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
            "version" => {
                println!(
                    "evmctl {} (imactl {})",
                    EVMCTL_VERSION,
                    env!("CARGO_PKG_VERSION")
                );
                return ExitCode::SUCCESS;
            }
            "verbose" => o.verbose += 1,
            "no-xattr" => o.print_only = true,
            "imasig" => o.imasig = true,
            "imahash" => o.imahash = true,
            "hashalgo" => o.hashalgo = v,
            "pass" => o.pass = Some(v.unwrap_or_else(read_password)),
            "sigfile" => o.sigfile = true,
            "uuid" => o.uuid = Some(v),
            "rsa" => o.rsa = true,
            "key" => o.key = v,
            "type" => o.search_type = v,
            "recursive" => o.recursive = true,
            "m32" => o.m32 = true,
            "m64" => o.m32 = false,
            "portable" if o.immutable => eprintln!(
                "evmctl: Portable and immutable options are exclusive, ignoring portable option."
            ),
            "portable" => o.portable = true,
            "immutable" if o.portable => eprintln!(
                "evmctl: Portable and immutable options are exclusive, ignoring immutable option."
            ),
            "immutable" => o.immutable = true,
            "smack" => o.smack = true,
            "inode" => o.inode = v,
            "uid" => o.uid = v,
            "gid" => o.gid = v,
            "mode" => o.mode = v,
            "generation" => o.generation = v,
            "ima" => o.ima = v,
            "selinux" => o.selinux = v,
            "caps" => o.caps = Some(v),
            "verify-sig" => o.verify_sig = true,
            "engine" => {
                eprintln!(
                    "evmctl: engine {}: OpenSSL engines are not supported by imactl",
                    v.unwrap_or_default()
                );
                return ExitCode::from(1);
            }
            "xattr-user" => o.xattr_user = true,
            "ignore-violations" => o.ignore_violations = true,
            "pcrs" => o.pcrs.extend(v),
            "verify-bank" => o.verify_bank = Some(v),
            "keyid" => match v.as_deref().and_then(parse_keyid) {
                Some(id) => o.keyid = Some(id),
                None => {
                    eprintln!("evmctl: Invalid keyid value.");
                    return ExitCode::from(1);
                }
            },
            "keyid-from-cert" => o.keyid_from_cert = v.map(PathBuf::from),
            other => {
                eprintln!("evmctl: getopt() returned: {other}");
            }
        }
    }
    if o.pass.is_none() {
        o.pass = std::env::var("EVMCTL_KEY_PASSWORD").ok();
    }
    let mut operands = parsed.operands.into_iter();
    let Some(command) = operands.next() else {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    };
    let operands: Vec<OsString> = operands.collect();
    let command = command.to_string_lossy().into_owned();
    match cmds::run(&command, &o, &operands) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("evmctl: {}", crate::chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The evmctl release whose command line this mode follows.
pub const EVMCTL_VERSION: &str = "1.4";

/// `--keyid`: hex (`strtoul(…, 16)`, so an optional `0x`), non-zero, at most 32 bits.
fn parse_keyid(s: &str) -> Option<u32> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok().filter(|&k| k != 0)
}

/// `-p`/`--pass` without a value: evmctl prompts on the terminal; we read one line from
/// standard input (at most 1 KiB).
fn read_password() -> String {
    use std::io::{BufRead as _, Read as _, Write as _};
    print!("PEM password: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().take(1024).read_line(&mut line);
    line.trim_end_matches(['\n', '\r']).to_owned()
}

fn usage() -> String {
    format!(
        "usage: evmctl [-v] <command> [OPTIONS]   (imactl {} in evmctl {} mode)\n\
         \n\
         commands:\n \
         ima_hash file                 Make file content hash.\n \
         ima_sign [--sigfile] [--key key] [--pass [password] file   Make file content signature.\n \
         ima_verify file...            Verify IMA signature.\n \
         sign [-r] [--imahash | --imasig ] [--key key] [--pass [password] file   Sign file metadata.\n \
         verify file                   Verify EVM signature.\n \
         hmac [--imahash | --imasig ] file   Sign file metadata with HMAC (the kernel's).\n \
         sign_hash [--key key] [--pass [password]   Sign hashes from shaXsum output.\n \
         ima_fix [-t fdsxm] path       Recursively fix IMA/EVM xattrs in fix mode.\n \
         ima_clear [-t fdsxm] path     Recursively remove IMA/EVM xattrs.\n \
         ima_boot_aggregate [--pcrs hash-algorithm,file]   Per-bank boot_aggregate.\n \
         ima_measurement [--pcrs [hash-algorithm,]file ...] file   Verify a measurement list.\n\
         \n\
         options:\n  \
         -a, --hashalgo     sha1, sha224, sha256, sha384, sha512, md5, rmd160, sm3, streebog256/512\n  \
         -s, --imasig       make IMA signature\n  \
         -d, --imahash      make IMA hash\n  \
         -f, --sigfile      store IMA signature in .sig file instead of xattr\n      \
         --xattr-user   store xattrs in user namespace (for testing purposes)\n      \
         --rsa          use RSA key type and signing scheme v1\n  \
         -k, --key          path to signing key (default: /etc/keys/{{privkey,pubkey}}_evm.pem)\n                     \
         or a comma separated list of certificates to verify with\n  \
         -o, --portable     generate portable EVM signatures\n  \
         -p, --pass         password for encrypted signing key\n  \
         -r, --recursive    recurse into directories (sign)\n  \
         -t, --type         file types to fix 'fxm' (f: file)\n  \
         -n                 print result to stdout instead of setting xattr\n  \
         -u, --uuid         use custom FS UUID for EVM (unspecified: from FS, empty: do not use)\n      \
         --smack        use extra SMACK xattrs for EVM\n      \
         --m32          force EVM hmac/signature for 32 bit target system\n      \
         --m64          force EVM hmac/signature for 64 bit target system\n      \
         --ino/--uid/--gid/--mode/--generation/--ima/--selinux/--caps   use these values for EVM\n      \
         --keyid n      overwrite signature keyid with a 32-bit value in hex\n      \
         --keyid-from-cert file   read keyid value from SKID of a x509 cert file\n      \
         --pcrs         file containing TPM pcrs, one per hash-algorithm/bank\n      \
         --ignore-violations   ignore ToMToU measurement violations\n  \
         -v                 increase verbosity level\n  \
         -h, --help         display this help and exit\n\
         \n\
         Differences from evmctl: no OpenSSL engines (--engine) or PKCS#11 keys; hmac is the\n\
         kernel's HMAC (evmctl 1.5+); -i signatures follow evmctl and no kernel verifies them.\n",
        env!("CARGO_PKG_VERSION"),
        EVMCTL_VERSION
    )
}
