//! `imactl attest quote|verify`: one-shot remote attestation. `quote` collects the evidence
//! (a quote, its PCR values, the AK, and exactly the list prefix the quote covers) into a
//! directory; `verify` decides with `ima_core::attest` whether it can be trusted.
//!
//! Evidence directory (the quote files are tpm2-tools', as `imactl tpm quote` writes them):
//!
//! ```text
//! quote.msg   TPMS_ATTEST            quote.sig   TPMT_SIGNATURE
//! quote.pcrs  PCR values in selection order (tpm2_quote -F values)
//! ak.pem      the AK's SubjectPublicKeyInfo
//! binary_runtime_measurements   the list (sha1 bank, binary) the quote covers
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use ima_core::attest::{self, Baseline, Checkpoint, Failure, Miss, Refs, Verdict};
use ima_core::digsig::Keyring;
use ima_core::hash::HashAlgo;
use ima_core::log::{ListFormat, binary};
use ima_core::template::TemplateDesc;
use ima_tpm::quote::{self, AkPublic, Attest};
use serde_json::{Value, json};

/// The list file `attest quote` writes.
pub const LIST_FILE: &str = "binary_runtime_measurements";
/// Largest quote, signature, PCR or PEM file read.
const SMALL_FILE_MAX: u64 = 1 << 20;
/// Largest reference or key file read.
const REFS_MAX: u64 = 1 << 30;

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Quote every PCR of every bank the TPM has with the AK (bound to --nonce) and write
    /// the quote, its signature, the PCR values, the AK (PEM) and exactly the list that the
    /// quoted PCRs cover into --out. Opens the engine's list (taking its lock, committing
    /// what is pending) and quotes with nothing appended in between.
    Quote {
        /// swtpm:host=H,port=P or device:/dev/tpmrm0.
        #[arg(long)]
        tpm: String,
        /// The verifier's nonce, hex (at most 64 bytes).
        #[arg(long)]
        nonce: String,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// The engine's state directory. Default: /run/ima for root, $XDG_STATE_HOME/ima
        /// otherwise.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Verify an evidence directory: quote signature and nonce, PCR digest, replay per
    /// bank, boot_aggregate against PCRs 0-9, then every entry against the reference values
    /// and keys. Exit 0 trusted, 1 failed, 2 error.
    Verify {
        dir: PathBuf,
        /// The nonce the quote must carry, hex.
        #[arg(long)]
        nonce: String,
        /// The AK to trust (PEM). Default: DIR/ak.pem, which only checks the quote is
        /// self-consistent, not whose TPM made it.
        #[arg(long)]
        ak: Option<PathBuf>,
        /// Reference values: our text format (see ima_core::attest::refs) or a Keylime
        /// runtime policy (JSON). Repeat to merge.
        #[arg(long)]
        refs: Vec<PathBuf>,
        /// Certificates (PEM or DER) for ima-sig / evm-sig signatures. Repeat.
        #[arg(long)]
        keys: Vec<PathBuf>,
        /// Checkpoint file: read when present to verify only new entries, written after a
        /// trusted verdict.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The list (default: DIR/binary_runtime_measurements, else
        /// DIR/ascii_runtime_measurements). Its bank comes from its name, else sha1.
        #[arg(long)]
        list: Option<PathBuf>,
        /// A template this tool does not know, as NAME=FORMAT.
        #[arg(long = "template", value_name = "NAME=FMT")]
        templates: Vec<String>,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Build reference values that accept a known-good list (`--from-list`), the files of
    /// directory trees (`--tree`, hashed with -a) and the files of installed Debian packages
    /// (`--dpkg`), in our text format or as a Keylime runtime policy (`--keylime`).
    Refs {
        /// A known-good measurement list (binary or ascii; bank from its name, else sha1).
        #[arg(long = "from-list")]
        from_list: Vec<PathBuf>,
        /// Hash every regular file under DIR (symlinks below it are not followed); paths as
        /// given.
        #[arg(long = "tree")]
        trees: Vec<PathBuf>,
        /// Hash the files an installed package installed (repeatable; `all`: every installed
        /// package). A file whose md5 differs from the package's md5sums (changed since it was
        /// installed) is left out with a warning; files dpkg keeps no md5 of (conffiles) are
        /// hashed as found.
        #[arg(long = "dpkg", value_name = "PKG|all")]
        dpkg: Vec<String>,
        /// dpkg's database directory (its --admindir).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/dpkg")]
        dpkg_admindir: PathBuf,
        /// Hash algorithm for --tree and --dpkg (the target's `ima_hash`).
        #[arg(short = 'a', long = "hash", default_value = "sha256")]
        algo: HashAlgo,
        /// Write a Keylime runtime policy (JSON) instead of our text format.
        #[arg(long)]
        keylime: bool,
        /// A template this tool does not know, as NAME=FORMAT.
        #[arg(long = "template", value_name = "NAME=FMT")]
        templates: Vec<String>,
        /// Output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(c: AttestCommand) -> anyhow::Result<ExitCode> {
    match c {
        AttestCommand::Quote {
            tpm,
            nonce,
            out,
            state,
        } => quote_cmd(&tpm, &nonce, &out, state),
        AttestCommand::Verify {
            dir,
            nonce,
            ak,
            refs,
            keys,
            checkpoint,
            list,
            templates,
            json,
        } => verify_cmd(&VerifyArgs {
            dir,
            nonce,
            ak,
            refs,
            keys,
            checkpoint,
            list,
            templates,
            json,
        }),
        AttestCommand::Refs {
            from_list,
            trees,
            dpkg,
            dpkg_admindir,
            algo,
            keylime,
            templates,
            output,
        } => refs_cmd(
            &Sources {
                lists: &from_list,
                trees: &trees,
                dpkg: &dpkg,
                admindir: &dpkg_admindir,
            },
            algo,
            keylime,
            &templates,
            output.as_deref(),
        ),
    }
}

fn parse_templates(templates: &[String]) -> anyhow::Result<Vec<TemplateDesc>> {
    let mut out = Vec::new();
    for t in templates {
        let (name, fmt) = t
            .split_once('=')
            .with_context(|| format!("--template {t:?}: expected NAME=FMT"))?;
        out.push(TemplateDesc::with_name(name, fmt).with_context(|| format!("--template {t:?}"))?);
    }
    Ok(out)
}

/// What `attest refs` builds references from.
struct Sources<'a> {
    lists: &'a [PathBuf],
    trees: &'a [PathBuf],
    dpkg: &'a [String],
    admindir: &'a Path,
}

fn refs_cmd(
    src: &Sources<'_>,
    algo: HashAlgo,
    keylime: bool,
    templates: &[String],
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (lists, trees) = (src.lists, src.trees);
    if lists.is_empty() && trees.is_empty() && src.dpkg.is_empty() {
        bail!("nothing to build references from: give --from-list, --tree or --dpkg");
    }
    algo.hasher()
        .with_context(|| format!("cannot hash with {algo}"))?;
    let templates = parse_templates(templates)?;
    let mut refs = Refs::new();
    for p in lists {
        let bytes =
            ima_sys::map::read_or_map(p).with_context(|| format!("{}: read", p.display()))?;
        let bank = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(ListFormat::bank_from_file_name)
            .unwrap_or(HashAlgo::SHA1);
        let l = attest::List::new(&bytes, ListFormat::new(bank), &templates);
        let entries = if l.binary {
            binary::decode(&bytes, l.format)
                .with_context(|| format!("{}: binary list", p.display()))?
        } else {
            ima_core::log::ascii::decode(&bytes, bank, &templates, l.format.endian)
                .with_context(|| format!("{}: ascii list", p.display()))?
        };
        bytes.check().with_context(|| p.display().to_string())?;
        let (r, unknown) = attest::refs_from_list(&entries, &templates);
        if unknown > 0 {
            bail!(
                "{}: {unknown} entries of templates not known (give --template NAME=FMT)",
                p.display()
            );
        }
        refs.merge(r);
    }
    // Regular files only, each opened relative to its directory without following a
    // symlink, and hashed through the descriptor the walk opened.
    for item in ima_sys::walk::Walk::new(trees, true) {
        let item = item.context("--tree")?;
        let ima_sys::walk::Item::File(mut e) = item else {
            continue;
        };
        let d = ima_sys::file::hash_file(&mut e.file, algo)
            .with_context(|| format!("{}: hash", e.path.display()))?;
        let path = e
            .path
            .to_str()
            .with_context(|| format!("{}: not UTF-8", e.path.display()))?;
        refs.add_file(path, (&d).into());
    }
    if !src.dpkg.is_empty() {
        dpkg_refs(src.admindir, src.dpkg, algo, &mut refs)?;
    }
    let text = if keylime {
        ima_verifier::keylime::RuntimePolicy::from_refs(&refs, "sha1").to_json()? + "\n"
    } else {
        refs.to_text()
    };
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("{}: write", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn quote_cmd(
    tcti: &str,
    nonce: &str,
    out: &Path,
    state: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let nonce = hex::decode(nonce).context("--nonce: not hex")?;
    let state = state.unwrap_or_else(ima_engine::default_dir);
    let t: ima_tpm::Tcti = tcti.parse()?;
    if matches!(t, ima_tpm::Tcti::Soft(_)) {
        bail!("--tpm {tcti}: the software PCR bank cannot quote (it is not hardware-rooted)");
    }
    // The engine, holding the state's lock, commits what is pending and quotes with nothing
    // appended in between: the list it returns is exactly what the quoted PCRs replay.
    let mut cfg = ima_engine::Config::new(state.clone())?;
    cfg.create = false;
    let mut engine = ima_engine::Engine::open_tcti(cfg, Some(tcti))
        .with_context(|| format!("measurement list in {}", state.display()))?;
    let all: Vec<u32> = (0..ima_tpm::NUM_PCRS).collect();
    let selection: Vec<(HashAlgo, Vec<u32>)> = engine
        .tpm_banks()
        .iter()
        .filter(|b| b.is_supported())
        .map(|b| (*b, all.clone()))
        .collect();
    let lq = engine
        .quote(&nonce, &selection)
        .with_context(|| format!("--tpm {tcti}: quote"))?;
    engine
        .close()
        .with_context(|| format!("measurement list in {}", state.display()))?;
    let q = lq.quote;
    std::fs::create_dir_all(out).with_context(|| format!("{}: create", out.display()))?;
    for (name, bytes) in [
        ("quote.msg", q.attest.clone()),
        ("quote.sig", q.signature.clone()),
        ("quote.pcrs", q.pcrs_values_bytes()),
        ("ak.pem", q.ak.to_pem().into_bytes()),
        (LIST_FILE, lq.list),
    ] {
        let p = out.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("{}: write", p.display()))?;
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

struct VerifyArgs {
    dir: PathBuf,
    nonce: String,
    ak: Option<PathBuf>,
    refs: Vec<PathBuf>,
    keys: Vec<PathBuf>,
    checkpoint: Option<PathBuf>,
    list: Option<PathBuf>,
    templates: Vec<String>,
    json: bool,
}

/// Reads a regular file of at most `max` bytes (never a device or FIFO that never ends).
fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("{}: open", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("{}: stat", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{}: read", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{}: larger than {max} bytes", path.display());
    }
    Ok(buf)
}

fn verify_cmd(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let nonce = hex::decode(&a.nonce).context("--nonce: not hex")?;
    let file = |name: &str| a.dir.join(name);
    let ak_path = a.ak.clone().unwrap_or_else(|| file("ak.pem"));
    let ak_text = String::from_utf8(read_bounded(&ak_path, SMALL_FILE_MAX)?)
        .with_context(|| format!("{}: not PEM text", ak_path.display()))?;
    let ak = AkPublic::from_pem(&ak_text).with_context(|| ak_path.display().to_string())?;
    let msg_path = file("quote.msg");
    let sig_path = file("quote.sig");
    let pcrs_path = file("quote.pcrs");
    let attest_bytes = read_bounded(&msg_path, SMALL_FILE_MAX)?;
    let signature = read_bounded(&sig_path, SMALL_FILE_MAX)?;
    let a_parsed = Attest::parse(&attest_bytes).with_context(|| msg_path.display().to_string())?;
    let pcrs = a_parsed
        .split_pcr_values(&read_bounded(&pcrs_path, SMALL_FILE_MAX)?)
        .with_context(|| pcrs_path.display().to_string())?;
    let check = quote::verify(&ak, &attest_bytes, &signature, &nonce, Some(&pcrs))
        .with_context(|| sig_path.display().to_string())?;
    let quoted = check.quoted(Some(&pcrs));

    // Reference values and keys.
    let mut refs = Refs::new();
    for p in &a.refs {
        refs.merge(load_refs(p)?);
    }
    let mut keys = Keyring::new();
    for p in &a.keys {
        let n = keys
            .add_bytes(&read_bounded(p, REFS_MAX)?)
            .with_context(|| format!("{}: certificates", p.display()))?;
        if n == 0 {
            bail!("{}: no certificate", p.display());
        }
    }
    let templates = parse_templates(&a.templates)?;

    // The list.
    let list_path = match &a.list {
        Some(p) => p.clone(),
        None if file(LIST_FILE).exists() => file(LIST_FILE),
        None => file("ascii_runtime_measurements"),
    };
    let bytes = ima_sys::map::read_or_map(&list_path)
        .with_context(|| format!("{}: read", list_path.display()))?;
    let bank = list_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(ListFormat::bank_from_file_name)
        .unwrap_or(HashAlgo::SHA1);
    let list = attest::List::new(&bytes, ListFormat::new(bank), &templates);

    let cp = match &a.checkpoint {
        Some(p) if p.exists() => {
            let text = String::from_utf8(read_bounded(p, SMALL_FILE_MAX)?)
                .with_context(|| format!("{}: not text", p.display()))?;
            Some(Checkpoint::parse(&text).with_context(|| p.display().to_string())?)
        }
        _ => None,
    };
    let verdict = attest::verify(
        &quoted,
        &list,
        &attest::Policy {
            refs: &refs,
            keys: &keys,
        },
        cp.as_ref(),
    )
    .with_context(|| list_path.display().to_string())?;
    bytes
        .check()
        .with_context(|| list_path.display().to_string())?;
    if let (Some(p), Some(next)) = (&a.checkpoint, &verdict.checkpoint) {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, next.to_string())
            .and_then(|()| std::fs::rename(&tmp, p))
            .with_context(|| format!("{}: write", p.display()))?;
    }
    if a.json {
        println!("{}", verdict_json(&verdict, &quoted));
    } else {
        print!("{}", verdict_text(&verdict, &quoted, a.ak.is_none()));
    }
    Ok(if verdict.trusted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Our text format, or a Keylime runtime policy (JSON: the first non-blank byte is `{`).
/// The files of the installed packages `names` (`all`: every one), hashed with `algo`, into
/// `refs`; files changed since installed are left out (reported).
fn dpkg_refs(
    admindir: &Path,
    names: &[String],
    algo: HashAlgo,
    refs: &mut Refs,
) -> anyhow::Result<()> {
    use ima_verifier::dpkg;
    let info = admindir.join("info");
    let mut lists: Vec<(String, PathBuf)> = std::fs::read_dir(&info)
        .with_context(|| format!("--dpkg: {}", info.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let pkg = dpkg::package_of(&n)?.to_owned();
            Some((pkg, e.path()))
        })
        .collect();
    lists.sort();
    let all = names.iter().any(|n| n == "all");
    for n in names.iter().filter(|n| *n != "all") {
        if !lists.iter().any(|(p, _)| p == n) {
            bail!("--dpkg {n}: not installed (no {}/{n}.list)", info.display());
        }
    }
    lists.retain(|(p, _)| all || names.contains(p));
    // (path, md5 as shipped) for every path the packages installed.
    let mut files: Vec<(String, Option<[u8; 16]>)> = Vec::new();
    for (_, list) in &lists {
        let read = |p: &Path| ima_sys::fs::read_limited(p, 64 << 20);
        let text = read(list).with_context(|| format!("{}", list.display()))?;
        let paths = dpkg::parse_list(&text).with_context(|| format!("{}", list.display()))?;
        let sums_path = list.with_extension("md5sums");
        let sums = match read(&sums_path) {
            Ok(t) => dpkg::parse_md5sums(&t).with_context(|| format!("{}", sums_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e).with_context(|| format!("{}", sums_path.display())),
        };
        for p in paths {
            let md5 = sums.get(&p).copied();
            files.push((p, md5));
        }
    }
    // Hashed in parallel, one slice a thread; each file opened without following a symlink
    // (the kernel measures a file under its real path, which a package lists too).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    let results: Vec<Vec<(String, Hashed)>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|(p, md5)| (p.clone(), hash_packaged(Path::new(p), *md5, algo)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    /// Changed files named one by one; the rest are counted.
    const SHOWN: usize = 20;
    let (mut referenced, mut changed, mut unsummed) = (0, 0, 0);
    for (path, h) in results.into_iter().flatten() {
        match h {
            Hashed::Ok { digest, summed } => {
                refs.add_file(&path, (&digest).into());
                referenced += 1;
                unsummed += usize::from(!summed);
            }
            Hashed::Changed => {
                if changed < SHOWN {
                    eprintln!(
                        "imactl: warning: {path}: changed since its package installed it: left out"
                    );
                }
                changed += 1;
            }
            Hashed::NotAFile => {}
            Hashed::Err(e) => bail!("{path}: {e}"),
        }
    }
    if changed > SHOWN {
        eprintln!(
            "imactl: warning: ... and {} more changed files left out",
            changed - SHOWN
        );
    }
    eprintln!(
        "imactl: dpkg: {} packages, {referenced} files referenced ({unsummed} without a package \
         md5, hashed as found), {changed} changed since installed (left out)",
        lists.len()
    );
    Ok(())
}

/// One packaged path, hashed.
#[derive(Default)]
enum Hashed {
    Ok {
        digest: ima_core::hash::Digest,
        /// Checked against the package's md5.
        summed: bool,
    },
    /// Its md5 is not the package's.
    Changed,
    /// A directory, a symlink, or gone.
    #[default]
    NotAFile,
    Err(String),
}

fn hash_packaged(path: &Path, md5: Option<[u8; 16]>, algo: HashAlgo) -> Hashed {
    let mut f = match ima_sys::fs::open_regular_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error().is_some() || e.kind() == std::io::ErrorKind::InvalidInput => {
            return match e.kind() {
                std::io::ErrorKind::PermissionDenied => Hashed::Err(e.to_string()),
                _ => Hashed::NotAFile,
            };
        }
        Err(e) => return Hashed::Err(e.to_string()),
    };
    if let Some(want) = md5 {
        match ima_sys::file::hash_file(&mut f, HashAlgo::MD5) {
            Ok(d) if d.as_bytes() == want => {}
            Ok(_) => return Hashed::Changed,
            Err(e) => return Hashed::Err(e.to_string()),
        }
        if let Err(e) = std::io::Seek::rewind(&mut f) {
            return Hashed::Err(e.to_string());
        }
    }
    match ima_sys::file::hash_file(&mut f, algo) {
        Ok(digest) => Hashed::Ok {
            digest,
            summed: md5.is_some(),
        },
        Err(e) => Hashed::Err(e.to_string()),
    }
}

fn load_refs(p: &Path) -> anyhow::Result<Refs> {
    let bytes = read_bounded(p, REFS_MAX)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let policy = ima_verifier::keylime::RuntimePolicy::parse(&bytes)
            .with_context(|| format!("{}: Keylime runtime policy", p.display()))?;
        return policy
            .to_refs()
            .with_context(|| format!("{}: Keylime runtime policy", p.display()));
    }
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8 text", p.display()))?;
    Refs::parse(text).with_context(|| format!("{}: reference values", p.display()))
}

fn verdict_text(v: &Verdict, q: &attest::Quoted, ak_from_dir: bool) -> String {
    let yes = |b: bool| if b { "ok" } else { "FAILED" };
    let mut s = format!(
        "quote: signature {}, nonce {}, PCR digest {} (TPM resets {}, restarts {}, clock {})\n",
        yes(q.signature_ok),
        yes(q.nonce_ok),
        yes(q.pcr_digest_ok),
        q.reset_count,
        q.restart_count,
        q.clock
    );
    if ak_from_dir {
        s.push_str("note: AK taken from the evidence directory (no --ak): whose TPM signed is not checked\n");
    }
    s.push_str(&match &v.baseline {
        Baseline::Fresh => "baseline: whole list\n".to_owned(),
        Baseline::Continued { from } => format!("baseline: checkpoint, from entry {from}\n"),
        Baseline::NewBoot { reason } => format!("baseline: new boot ({reason}), whole list\n"),
    });
    if let Some(c) = &v.boot_aggregate {
        s.push_str(&format!("{c}\n"));
    }
    let st = &v.stats;
    s.push_str(&format!(
        "entries: {} read, {} in the list",
        st.entries, v.total_entries
    ));
    if v.refs_checked {
        s.push_str(&format!(
            ": {} by digest, {} by signature, {} excluded, {} keys loaded, {} buffers\n",
            st.by_digest, st.by_signature, st.excluded, st.keys_loaded, st.buffers
        ));
    } else {
        s.push_str(" (no --refs or --keys: entries replayed, not checked against references)\n");
    }
    for f in &v.failures {
        s.push_str(&format!("FAILED: {f}\n"));
    }
    s.push_str(&if v.trusted() {
        "verdict: TRUSTED\n".to_owned()
    } else {
        format!("verdict: FAILED ({} failures)\n", v.failures.len())
    });
    s
}

fn failure_kind(f: &Failure) -> &'static str {
    match f {
        Failure::QuoteSignature => "quote_signature",
        Failure::Nonce => "nonce",
        Failure::PcrDigest => "pcr_digest",
        Failure::CountersWentBack { .. } => "counters_went_back",
        Failure::Truncated { .. } => "truncated",
        Failure::Rewritten { .. } => "rewritten",
        Failure::PcrNotQuoted { .. } => "pcr_not_quoted",
        Failure::Replay { .. } => "replay",
        Failure::TemplateDigest { .. } => "template_digest",
        Failure::AlteredViolation { .. } => "altered_violation",
        Failure::BootAggregate(_) => "boot_aggregate",
        Failure::EmptyList => "empty_list",
        Failure::BootEntry { .. } => "boot_entry",
        Failure::BootEntryInvalid { .. } => "boot_entry_invalid",
        Failure::Reference { miss, .. } => match miss {
            Miss::NoPath => "not_in_refs",
            Miss::DigestDiffers { .. } => "digest_not_in_refs",
            Miss::Keyring { .. } => "keyring",
            Miss::Buf { .. } => "buf",
            Miss::Denied { .. } => "denied",
            Miss::Violation => "violation",
            Miss::UnknownTemplate => "unknown_template",
        },
        _ => "other",
    }
}

fn verdict_json(v: &Verdict, q: &attest::Quoted) -> Value {
    let failures: Vec<Value> = v
        .failures
        .iter()
        .map(|f| {
            let mut o = json!({"kind": failure_kind(f), "message": f.to_string()});
            let entry = match f {
                Failure::TemplateDigest { entry }
                | Failure::AlteredViolation { entry }
                | Failure::Reference { entry, .. } => Some(entry),
                Failure::Replay { from, .. } => from.as_ref(),
                _ => None,
            };
            if let Some(e) = entry {
                o["entry"] = json!({
                    "index": e.index, "template": e.template, "path": e.path, "digest": e.digest,
                });
            }
            if let Failure::Reference {
                accept: Some(a), ..
            } = f
            {
                o["accept"] = json!(a);
            }
            o
        })
        .collect();
    let st = &v.stats;
    json!({
        "verdict": if v.trusted() { "trusted" } else { "failed" },
        "quote": {
            "signature_ok": q.signature_ok, "nonce_ok": q.nonce_ok,
            "pcr_digest_ok": q.pcr_digest_ok, "reset_count": q.reset_count,
            "restart_count": q.restart_count, "clock": q.clock,
        },
        "baseline": match &v.baseline {
            Baseline::Fresh => json!({"kind": "fresh"}),
            Baseline::Continued { from } => json!({"kind": "checkpoint", "from": from}),
            Baseline::NewBoot { reason } => json!({"kind": "new_boot", "reason": reason}),
        },
        "boot_aggregate": v.boot_aggregate.as_ref().map(ToString::to_string),
        "entries": {
            "read": st.entries, "total": v.total_entries, "by_digest": st.by_digest,
            "by_signature": st.by_signature, "excluded": st.excluded,
            "keys_loaded": st.keys_loaded, "buffers": st.buffers,
            "refs_checked": v.refs_checked,
        },
        "failures": failures,
    })
}
