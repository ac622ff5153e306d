//! The evmctl commands, each mapped onto the library calls the native commands use:
//! hashing (`ima_sys::file`), labels (`ima_core::xattr`), signatures (`ima_core::digsig`,
//! `digsig::v1` for `--rsa`), EVM messages (`ima_core::evm`, the inode read by
//! `ima_engine::process::evm_inode`), PCR files and boot_aggregate (`ima_core::log::replay`),
//! list verification (`imactl log verify`).

use std::cell::OnceCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use ima_core::codec::Codec;
use ima_core::digsig::v1::SignatureV1;
use ima_core::digsig::{Certificate, KeyId, Keyring, PrivateKey, PublicKey, Signature};
use ima_core::evm::{self, EvmConfig, EvmKind, HMiscLayout, HmacKey, Inode, XattrList};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::integrity::XattrType;
use ima_core::log::replay::{PcrBank, boot_aggregate};
use ima_core::xattr::XattrValue;
use ima_sys::fs::{MAX_KEY_FILE, MAX_TEXT_FILE, read_limited};
use ima_sys::walk::Entry;
use ima_sys::xattr::SetMode;

use super::{EXIT_ERROR, Opts};
use crate::tree::{self, Outcome};

const DEFAULT_PRIVKEY: &str = "/etc/keys/privkey_evm.pem";
const DEFAULT_PUBKEY: &str = "/etc/keys/pubkey_evm.pem";
const DEFAULT_X509: &str = "/etc/keys/x509_evm.der";
const DEFAULT_HMAC_KEY: &str = "/etc/keys/evm-key-plain";
/// The largest `.sig` file evmctl reads (`MAX_SIGNATURE_SIZE`).
const MAX_SIG_FILE: u64 = 1024;

pub fn run(command: &str, o: &Opts, operands: &[OsString]) -> anyhow::Result<ExitCode> {
    match command {
        "ima_hash" => {
            let algo = hash_algo(o)?;
            per_path(o, operands, |p| ima_hash(o, algo, p))
        }
        "ima_sign" => {
            let k = SignKey::load(o)?;
            per_path(o, operands, |p| ima_sign(o, &k, p))
        }
        "sign" => {
            let k = SignKey::load(o)?;
            per_path(o, operands, |p| evm_sign(o, &k, p))
        }
        "hmac" => {
            let key = read_limited(Path::new(DEFAULT_HMAC_KEY), MAX_KEY_FILE)
                .with_context(|| format!("{DEFAULT_HMAC_KEY}: cannot read the HMAC key"))?;
            let key = HmacKey::new(&key).with_context(|| DEFAULT_HMAC_KEY.to_owned())?;
            let k = if o.imasig {
                Some(SignKey::load(o)?)
            } else {
                None
            };
            per_path(o, operands, |p| evm_hmac(o, &key, k.as_ref(), p))
        }
        "ima_verify" => ima_verify(o, operands),
        "verify" => evm_verify(o, operands),
        "sign_hash" => sign_hash(o),
        "ima_fix" => per_path(o, operands, |p| ima_fix(o, p)),
        "ima_clear" => per_path(o, operands, |p| ima_clear(o, p)),
        "ima_boot_aggregate" => ima_boot_aggregate(o, operands),
        "ima_measurement" => ima_measurement(o, operands),
        "help" => {
            print!("{}", super::usage());
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("Invalid command: {other}"),
    }
}

/// `do_cmd`: the first operand only (evmctl ignores the rest); with `-r` every regular
/// file below it, errors on single files reported and ignored as evmctl's `find` does.
/// Files are opened by the shared walker (no symlink followed below the root) and every
/// operation works on that open file.
fn per_path(
    o: &Opts,
    operands: &[OsString],
    op: impl Fn(&mut Entry) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<ExitCode> {
    let Some(path) = operands.first().map(PathBuf::from) else {
        bail!("Parameters missing");
    };
    if operands.len() > 1 {
        eprintln!(
            "evmctl: warning: evmctl takes one path; ignoring {} more",
            operands.len() - 1
        );
    }
    if o.recursive {
        std::fs::read_dir(&path)
            .with_context(|| format!("Failed to open directory {}", path.display()))?;
    }
    let summary = tree::run(std::slice::from_ref(&path), o.recursive, |e| match op(e) {
        Ok(()) => (Outcome::Ok, 0),
        Err(err) => {
            eprintln!("evmctl: {}: {}", e.path.display(), crate::chain(&err));
            (Outcome::Error, 0)
        }
    });
    Ok(if !o.recursive && summary.errors > 0 {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

/// `-a`/`--hashalgo` (default sha256): the kernel's names, plus OpenSSL's GOST names.
fn hash_algo(o: &Opts) -> anyhow::Result<HashAlgo> {
    let name = o.hashalgo.as_deref().unwrap_or("sha256");
    let algo = match name {
        "md_gost12_256" => HashAlgo::STREEBOG_256,
        "md_gost12_512" => HashAlgo::STREEBOG_512,
        n => n
            .parse::<HashAlgo>()
            .map_err(|_| anyhow!("Unknown hash algo: {n}"))?,
    };
    algo.hasher()
        .map_err(|_| anyhow!("hash algorithm {name} is not supported"))?;
    Ok(algo)
}

/// `-n` prints the value; otherwise it is written to `name` through the open file.
fn emit(o: &Opts, f: &File, name: &str, value: &[u8]) -> anyhow::Result<()> {
    if o.print_only {
        tree::out_line(&hex::encode(value));
        return Ok(());
    }
    ima_sys::xattr::set(f, name, value, SetMode::Any)
        .with_context(|| format!("setxattr {name} failed"))
}

fn ima_hash(o: &Opts, algo: HashAlgo, e: &mut Entry) -> anyhow::Result<()> {
    let digest = ima_sys::file::hash_file(&mut e.file, algo).context("cannot hash")?;
    emit(
        o,
        &e.file,
        o.xattr_ima(),
        &XattrValue::from_digest(&digest).to_vec(),
    )
}

/// The signing key and the key id written with it.
struct SignKey {
    key: PrivateKey,
    keyid: KeyId,
    algo: HashAlgo,
}

impl SignKey {
    fn load(o: &Opts) -> anyhow::Result<Self> {
        let algo = hash_algo(o)?;
        let path = o.key.as_deref().unwrap_or(DEFAULT_PRIVKEY);
        if path.starts_with("pkcs11:") {
            bail!("{path}: PKCS#11 keys are not supported by imactl");
        }
        let pem = read_limited(Path::new(path), MAX_KEY_FILE)
            .with_context(|| format!("{path}: cannot read the key"))?;
        let key = PrivateKey::from_pem(&pem, o.pass.as_deref().map(str::as_bytes))
            .with_context(|| format!("{path}: bad private key"))?;
        let keyid = match (&o.keyid, &o.keyid_from_cert) {
            (Some(id), _) => KeyId(*id),
            (None, Some(c)) => {
                let bytes = read_limited(c, MAX_KEY_FILE)
                    .with_context(|| format!("{}: Error reading keyid.", c.display()))?;
                Certificate::parse_all(&bytes)
                    .with_context(|| format!("{}: Error reading keyid.", c.display()))?
                    .first()
                    .map(Certificate::keyid)
                    .ok_or_else(|| anyhow!("{}: Error reading keyid.", c.display()))?
            }
            (None, None) => key.keyid(),
        };
        if ima_core::digsig::is_legacy_digest(algo) {
            eprintln!("evmctl: warning: signing with {algo}, a legacy digest");
        }
        Ok(Self { key, keyid, algo })
    }

    /// The xattr value signing `digest`: type byte `kind`, then a v2 header (or v1 with
    /// `--rsa`) and the signature.
    fn value(&self, o: &Opts, kind: XattrType, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        if o.rsa {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            let s = SignatureV1::sign(&self.key, digest, now)
                .context("Signature version 1 cannot sign this")?;
            let mut v = vec![kind.0];
            s.encode(&mut v);
            return Ok(v);
        }
        Ok(
            Signature::sign_digest(&self.key, kind, 2, self.keyid, digest)
                .context("signing failed")?
                .to_vec(),
        )
    }
}

/// `ima_sign`; `--sigfile` also writes `FILE.sig`, created in the directory the file was
/// opened in without following a symlink.
fn ima_sign(o: &Opts, k: &SignKey, e: &mut Entry) -> anyhow::Result<()> {
    use std::io::Write as _;
    let digest = ima_sys::file::hash_file(&mut e.file, k.algo).context("cannot hash")?;
    let value = k.value(o, XattrType::DIGSIG, &digest)?;
    if o.sigfile {
        e.create_sibling(".sig")
            .and_then(|mut f| f.write_all(&value))
            .with_context(|| format!("Failed to write {}.sig", e.path.display()))?;
    }
    emit(o, &e.file, o.xattr_ima(), &value)
}

/// The EVM configuration evmctl's options describe: evmctl's xattr list, the fs UUID unless
/// `--uuid`/`--uuid=` (or a portable or immutable signature), 64-bit `h_misc` unless `--m32`.
fn evm_config(o: &Opts, kind: EvmKind) -> EvmConfig {
    let no_uuid = matches!(&o.uuid, Some(None)) || matches!(&o.uuid, Some(Some(u)) if u.is_empty());
    EvmConfig {
        xattrs: XattrList::evmctl(o.smack),
        fsuuid: !no_uuid && kind != EvmKind::Portable && !o.immutable,
        layout: if o.m32 {
            HMiscLayout::ILP32_LE
        } else {
            HMiscLayout::LP64_LE
        },
    }
}

/// `strtoul(s, NULL, 10)`, as evmctl reads `--inode` and friends.
fn strtoul(what: &str, s: &str) -> anyhow::Result<u64> {
    s.trim()
        .parse::<u64>()
        .map_err(|e| anyhow!("--{what} {s:?}: {e}"))
}

/// The inode as evmctl's `calc_evm_hash` sees it: the file's listed xattrs and metadata,
/// with the command-line overrides; under `--xattr-user` a portable signature covers
/// `user.ima` in place of `security.ima` (evmctl 1.4 reads only that one from user.*).
fn evm_inode(
    o: &Opts,
    f: &File,
    path: &Path,
    cfg: &EvmConfig,
    kind: EvmKind,
) -> anyhow::Result<Inode> {
    let generation = match &o.generation {
        Some(g) => Some(strtoul("generation", g)? as u32),
        None if o.immutable || kind == EvmKind::Portable => Some(0),
        None => None,
    };
    let uuid = match &o.uuid {
        Some(Some(u)) if !u.is_empty() => {
            Some(ima_sys::inode::parse_uuid(u).ok_or_else(|| anyhow!("--uuid {u:?}: not a UUID"))?)
        }
        _ => None,
    };
    let mut inode = ima_engine::process::evm_inode(f, cfg, generation, uuid)
        .with_context(|| path.display().to_string())?;
    if let Some(v) = &o.inode {
        inode.meta.ino = strtoul("inode", v)?;
    }
    if let Some(v) = &o.uid {
        inode.meta.uid = strtoul("uid", v)? as u32;
    }
    if let Some(v) = &o.gid {
        inode.meta.gid = strtoul("gid", v)? as u32;
    }
    if let Some(v) = &o.mode {
        inode.meta.mode = strtoul("mode", v)? as u16;
    }
    if o.xattr_user && kind == EvmKind::Portable {
        match ima_sys::xattr::get(f, o.xattr_ima()).context("reading user.ima")? {
            Some(v) => inode.xattrs.insert(evm::XATTR_IMA.into(), v),
            None => inode.xattrs.remove(evm::XATTR_IMA),
        };
    }
    crate::cmd::evm::apply_xattr_overrides(
        &mut inode,
        o.ima.as_deref(),
        o.selinux.as_deref(),
        o.caps.as_ref().map(Option::as_deref),
    )?;
    Ok(inode)
}

/// The digest an EVM signature of `kind` signs, with `algo`.
fn evm_digest(
    o: &Opts,
    f: &File,
    path: &Path,
    kind: EvmKind,
    algo: HashAlgo,
) -> anyhow::Result<Digest> {
    let cfg = evm_config(o, kind);
    let inode = evm_inode(o, f, path, &cfg, kind)?;
    let msg =
        evm::evmctl_message(&cfg, &inode, kind, o.immutable).context("building the EVM message")?;
    Ok(algo.digest(&msg)?)
}

/// `--imasig`/`--imahash` before an EVM operation, through the same open file.
fn ima_first(o: &Opts, k: Option<&SignKey>, e: &mut Entry) -> anyhow::Result<()> {
    if o.imasig {
        let k = k.ok_or_else(|| anyhow!("--imasig needs a signing key"))?;
        ima_sign(o, k, e)?;
    }
    if o.imahash {
        ima_hash(o, hash_algo(o)?, e)?;
    }
    Ok(())
}

fn evm_sign(o: &Opts, k: &SignKey, e: &mut Entry) -> anyhow::Result<()> {
    ima_first(o, Some(k), e)?;
    let (f, path) = (&e.file, e.path.as_path());
    let kind = if o.portable {
        EvmKind::Portable
    } else {
        EvmKind::Signature
    };
    let digest = evm_digest(o, f, path, kind, k.algo)?;
    let mut value = k.value(o, XattrType(kind.type_byte()), &digest)?;
    if o.immutable {
        // evmctl marks an immutable signature by overwriting the version byte with 3.
        value[1] = 3;
    }
    emit(o, f, o.xattr_evm(), &value)
}

fn evm_hmac(o: &Opts, key: &HmacKey, k: Option<&SignKey>, e: &mut Entry) -> anyhow::Result<()> {
    ima_first(o, k, e)?;
    let (f, path) = (&e.file, e.path.as_path());
    let cfg = evm_config(o, EvmKind::Hmac);
    let inode = evm_inode(o, f, path, &cfg, EvmKind::Hmac)?;
    let msg = evm::evmctl_message(&cfg, &inode, EvmKind::Hmac, false)
        .context("building the EVM message")?;
    let mut value = vec![EvmKind::Hmac.type_byte()];
    value.extend_from_slice(&key.hmac(&msg));
    emit(o, f, o.xattr_evm(), &value)
}

/// The keys a verification uses, loaded when first needed: the keyring of `-k a,b,...`
/// (certificates; a missing or bad entry is a warning, as in evmctl's `init_public_keys`)
/// and the single public key v1 signatures are checked with.
struct VerifyKeys<'o> {
    o: &'o Opts,
    ring: OnceCell<Keyring>,
    v1: OnceCell<Result<PublicKey, String>>,
}

impl<'o> VerifyKeys<'o> {
    fn new(o: &'o Opts) -> Self {
        Self {
            o,
            ring: OnceCell::new(),
            v1: OnceCell::new(),
        }
    }

    fn ring(&self) -> &Keyring {
        self.ring.get_or_init(|| {
            let list = self.o.key.as_deref().unwrap_or(DEFAULT_X509);
            let mut ring = Keyring::new();
            for entry in list.split(',').filter(|e| !e.is_empty()) {
                let added = read_limited(Path::new(entry), MAX_KEY_FILE)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(ring.add_bytes(&b)?));
                if let Err(e) = added {
                    eprintln!(
                        "evmctl: warning: {entry}: key not loaded: {}",
                        crate::chain(&e)
                    );
                }
            }
            ring
        })
    }

    fn v1(&self) -> Result<&PublicKey, String> {
        self.v1
            .get_or_init(|| {
                let path = self.o.key.as_deref().unwrap_or(DEFAULT_PUBKEY);
                read_limited(Path::new(path), MAX_KEY_FILE)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(PublicKey::from_pem_or_cert(&b)?))
                    .map_err(|e| format!("{path}: {}", crate::chain(&e)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Checks a 0x03/0x05 value (`raw`, type byte included) over a digest computed by
    /// `digest_of` with the signature's algorithm. `Ok(Err(why))` is a failed check.
    fn check(
        &self,
        raw: &[u8],
        digest_of: impl FnOnce(HashAlgo) -> anyhow::Result<Digest>,
    ) -> anyhow::Result<Result<(), String>> {
        if raw.get(1) == Some(&1) {
            let s = match SignatureV1::from_bytes(&raw[1..]) {
                Ok(s) => s,
                Err(e) => return Ok(Err(format!("invalid signature: {e}"))),
            };
            let Some(algo) = s.hash_algo() else {
                return Ok(Err("unknown hash algo".into()));
            };
            let key = match self.v1() {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            let d = digest_of(algo)?;
            return Ok(s.verify(key, &d).map_err(|e| e.to_string()));
        }
        let s = match Signature::from_bytes(raw) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("invalid signature: {e}"))),
        };
        if s.version != 2 {
            return Ok(Err(format!("unsupported signature version {}", s.version)));
        }
        if !s.hash_algo.is_supported() {
            return Ok(Err(format!("unknown hash algo {}", s.hash_algo)));
        }
        let d = digest_of(s.hash_algo)?;
        Ok(s.verify(self.ring(), &d).map_err(|e| e.to_string()))
    }
}

/// `ima_verify FILE...`: every operand; exit 1 if any does not verify.
fn ima_verify(o: &Opts, operands: &[OsString]) -> anyhow::Result<ExitCode> {
    if operands.is_empty() {
        bail!("Parameters missing");
    }
    let keys = VerifyKeys::new(o);
    let mut fails = 0;
    for p in operands.iter().map(PathBuf::from) {
        match verify_ima_one(o, &keys, &p) {
            Ok(Ok(())) => {
                if o.verbose > 0 {
                    println!("{}: verification is OK", p.display());
                }
            }
            Ok(Err(why)) => {
                eprintln!("evmctl: {}: verification failed: {why}", p.display());
                fails += 1;
            }
            Err(e) => {
                eprintln!("evmctl: {}: {}", p.display(), crate::chain(&e));
                fails += 1;
            }
        }
    }
    Ok(ExitCode::from(u8::from(fails > 0)))
}

fn verify_ima_one(
    o: &Opts,
    keys: &VerifyKeys<'_>,
    path: &Path,
) -> anyhow::Result<Result<(), String>> {
    let mut f = File::open(path).context("cannot open")?;
    let raw = if o.sigfile {
        let mut sig = path.as_os_str().to_owned();
        sig.push(".sig");
        read_limited(Path::new(&sig), MAX_SIG_FILE)
            .with_context(|| format!("Failed reading: {}", Path::new(&sig).display()))?
    } else {
        match ima_sys::xattr::get(&f, o.xattr_ima()).context("getxattr failed")? {
            Some(v) => v,
            None => return Ok(Err(format!("no {}", o.xattr_ima()))),
        }
    };
    if raw.first() != Some(&XattrType::DIGSIG.0) {
        return Ok(Err("xattr ima has no signature".into()));
    }
    keys.check(&raw, |algo| Ok(ima_sys::file::hash_file(&mut f, algo)?))
}

/// `verify FILE`: the EVM signature of one file.
fn evm_verify(o: &Opts, operands: &[OsString]) -> anyhow::Result<ExitCode> {
    let Some(path) = operands.first().map(PathBuf::from) else {
        bail!("Parameters missing");
    };
    let f = File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
    let raw = ima_sys::xattr::get(&f, o.xattr_evm())
        .with_context(|| format!("{}: getxattr failed", path.display()))?
        .ok_or_else(|| anyhow!("{}: getxattr failed: no {}", path.display(), o.xattr_evm()))?;
    let kind = match raw.first() {
        Some(0x03) => EvmKind::Signature,
        Some(0x05) if raw.get(1) == Some(&2) => EvmKind::Portable,
        Some(0x05) => bail!("{}: Portable sig: invalid type", path.display()),
        _ => bail!("{}: {} has no signature", path.display(), o.xattr_evm()),
    };
    let keys = VerifyKeys::new(o);
    let r = keys.check(&raw, |algo| evm_digest(o, &f, &path, kind, algo))?;
    Ok(match r {
        Ok(()) => {
            if o.verbose > 0 {
                println!("{}: verification is OK", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("evmctl: {}: verification failed: {why}", path.display());
            ExitCode::from(1)
        }
    })
}

/// `sign_hash`: for each `HEX[ ,\t]REST` line on standard input, the line, a space and the
/// hex of `03 || signature` (v2, or v1 with `--rsa`) over that digest.
fn sign_hash(o: &Opts) -> anyhow::Result<ExitCode> {
    let k = SignKey::load(o)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock().take(MAX_TEXT_FILE);
    let mut any = false;
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        n += 1;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let hexlen = text.find([',', ' ', '\t']).unwrap_or(text.len());
        let bytes = hex::decode(&text[..hexlen & !1])
            .with_context(|| format!("standard input line {n}: not a hex digest"))?;
        let digest = Digest::new(k.algo, &bytes).ok_or_else(|| {
            anyhow!(
                "standard input line {n}: {} bytes is no {} digest",
                bytes.len(),
                k.algo
            )
        })?;
        let value = k.value(o, XattrType::DIGSIG, &digest)?;
        println!("{text} {}", hex::encode(value));
        any = true;
    }
    if !any {
        bail!("Parameters missing");
    }
    Ok(ExitCode::SUCCESS)
}

/// `ima_fix`: each file is opened for reading (by the walker), which is what makes a
/// kernel appraising in fix mode label it; evmctl does nothing else.
fn ima_fix(o: &Opts, e: &mut Entry) -> anyhow::Result<()> {
    if o.verbose > 0 {
        tree::out_line(&e.path.display().to_string());
    }
    Ok(())
}

/// `ima_clear`: remove the IMA and EVM xattrs (absent ones are fine).
fn ima_clear(o: &Opts, e: &mut Entry) -> anyhow::Result<()> {
    if o.verbose > 0 {
        tree::out_line(&e.path.display().to_string());
    }
    for name in [o.xattr_ima(), o.xattr_evm()] {
        ima_sys::xattr::remove(&e.file, name).with_context(|| format!("removing {name}"))?;
    }
    Ok(())
}

/// `--pcrs [ALG,]FILE` (evmctl's form: the bank defaults to sha1).
fn pcrs_arg(s: &str) -> anyhow::Result<(HashAlgo, PathBuf)> {
    Ok(match s.split_once(',') {
        Some((a, f)) => (
            a.parse::<HashAlgo>()
                .map_err(|_| anyhow!("--pcrs {s:?}: unknown hash algorithm {a:?}"))?,
            PathBuf::from(f),
        ),
        None => (HashAlgo::SHA1, PathBuf::from(s)),
    })
}

fn read_pcr_file(algo: HashAlgo, path: &Path) -> anyhow::Result<PcrBank> {
    let bytes = read_limited(path, MAX_TEXT_FILE).with_context(|| path.display().to_string())?;
    let text = String::from_utf8(bytes).with_context(|| format!("{}: not text", path.display()))?;
    PcrBank::parse(&text, algo).with_context(|| path.display().to_string())
}

/// PCRs 0-9 of every bank sysfs shows (`/sys/class/tpm/tpm0/pcr-ALG/N`, Linux 5.12+).
fn sysfs_banks() -> Vec<PcrBank> {
    let mut banks = Vec::new();
    for algo in [
        HashAlgo::SHA1,
        HashAlgo::SHA256,
        HashAlgo::SHA384,
        HashAlgo::SHA512,
        HashAlgo::SM3_256,
    ] {
        let dir = PathBuf::from(format!("/sys/class/tpm/tpm0/pcr-{algo}"));
        let mut bank = PcrBank::new(algo);
        for i in 0..10u32 {
            let v = read_limited(&dir.join(i.to_string()), 256)
                .ok()
                .and_then(|b| hex::decode(String::from_utf8_lossy(&b).trim()).ok())
                .and_then(|b| Digest::new(algo, &b));
            if let Some(v) = v {
                bank.set(i, v);
            }
        }
        if !bank.is_empty() {
            banks.push(bank);
        }
    }
    banks
}

/// `ima_boot_aggregate [--pcrs ALG,FILE]...`: `ALG:HEX` per bank.
fn ima_boot_aggregate(o: &Opts, operands: &[OsString]) -> anyhow::Result<ExitCode> {
    if !operands.is_empty() {
        bail!("TPM 1.2 BIOS event logs are not supported; give --pcrs ALG,FILE");
    }
    let banks = if o.pcrs.is_empty() {
        sysfs_banks()
    } else {
        o.pcrs
            .iter()
            .map(|s| pcrs_arg(s).and_then(|(a, p)| read_pcr_file(a, &p)))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if banks.is_empty() {
        bail!("Failed to read any TPM PCRs");
    }
    for b in &banks {
        let d = boot_aggregate(b)?;
        println!("{}:{}", b.algo(), d.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}

/// `ima_measurement --pcrs [ALG,]FILE... LIST`: `imactl log verify` on the list.
fn ima_measurement(o: &Opts, operands: &[OsString]) -> anyhow::Result<ExitCode> {
    let Some(list) = operands.first().map(PathBuf::from) else {
        bail!("Parameters missing");
    };
    if o.verify_sig {
        bail!(
            "--verify-sig is not supported in evmctl mode; use `imactl log verify` and `imactl verify`"
        );
    }
    if o.pcrs.is_empty() {
        bail!(
            "give the PCR values with --pcrs [ALG,]FILE (reading a TPM is `imactl log verify --tpm`)"
        );
    }
    let mut pcrs = Vec::new();
    for s in &o.pcrs {
        let (algo, path) = pcrs_arg(s)?;
        pcrs.push(
            format!("{algo}:{}", path.display())
                .parse()
                .map_err(|e: String| anyhow!(e))?,
        );
    }
    let code = crate::cmd::log::run(crate::cmd::log::LogCommand::Verify {
        log: list,
        pcrs,
        tpm: None,
        input: crate::cmd::log::InputOpts::default(),
    })?;
    // evmctl: 0 when the list replays to the PCRs, otherwise an error (-1 → 125).
    Ok(if code == ExitCode::SUCCESS {
        code
    } else {
        ExitCode::from(EXIT_ERROR)
    })
}
