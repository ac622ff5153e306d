//! `imactl log show|convert|verify|boot-aggregate`: the kernel's measurement lists.
//!
//! LOG arguments are binary or ascii lists, told apart by their first bytes (a binary list
//! starts with a u32 PCR index, which has a zero byte; an ascii list starts with `%2d `).
//! The bank of the template-digest column comes from the file name
//! (`..._runtime_measurements_sha256` → sha256, otherwise sha1) unless `--input-bank` says.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::binary::{self, RawEntry};
use ima_core::log::replay::{self, PcrBank, Replay, ReplayEntry};
use ima_core::log::{Entry, ListFormat, ascii};
use ima_core::template::{Field, FieldValue, TemplateDesc};
use serde_json::{Map, Value, json};

use crate::text::count;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print a measurement list (binary or ascii, detected) as the kernel's ascii list or
    /// as JSON (one object per entry and line, every field decoded).
    Show {
        #[arg(long, value_enum, default_value_t = ShowFormat::Ascii)]
        format: ShowFormat,
        /// Bank of the template-digest column to print (recomputed from the data when it
        /// is not the input's bank). Default: the input's bank.
        #[arg(long)]
        bank: Option<HashAlgo>,
        #[command(flatten)]
        input: InputOpts,
        log: PathBuf,
    },
    /// Convert a list between binary, ascii and JSON; ascii → binary reproduces the
    /// kernel's binary list byte for byte.
    Convert {
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// Bank of the output's template-digest column. Default: the input's bank.
        #[arg(long)]
        bank: Option<HashAlgo>,
        #[command(flatten)]
        input: InputOpts,
        input_path: PathBuf,
        /// Output file (default: standard output).
        output: Option<PathBuf>,
    },
    /// Replay the list into every bank given and compare every PCR it uses; check the first
    /// entry's boot_aggregate whenever PCRs 0-9 of its bank are given. Exit 0 when all
    /// match, 1 on a mismatch or a wrong template digest, 2 on an error.
    Verify {
        log: PathBuf,
        /// PCR values of one bank: ALG:FILE, FILE in evmctl's `PCR-NN: hex` form or
        /// `INDEX HEX` per line. Repeat for each bank.
        #[arg(
            long = "pcrs",
            value_name = "ALG:FILE",
            required_unless_present = "tpm"
        )]
        pcrs: Vec<PcrsArg>,
        /// Compare with the live PCRs of every allocated bank of this TPM instead
        /// (swtpm:host=H,port=P, device:/dev/tpmrm0, soft:FILE).
        #[arg(long, conflicts_with = "pcrs")]
        tpm: Option<String>,
        #[command(flatten)]
        input: InputOpts,
    },
    /// Print boot_aggregate (`ALG:HEX`) as the kernel computes it from PCRs 0-9. With one
    /// bank given, in that bank; with several, in the one the kernel picks: the bank of
    /// --ima-hash (default sha256), else sha256, else sha1. The rule that chose the bank is
    /// printed on stderr.
    BootAggregate {
        #[arg(long = "pcrs", value_name = "ALG:FILE", required = true)]
        pcrs: Vec<PcrsArg>,
        /// The kernel's `ima_hash=` (its bank is preferred when present; default sha256).
        #[arg(long)]
        ima_hash: Option<HashAlgo>,
    },
}

/// Options describing the input list.
#[derive(Debug, Default, Args)]
pub struct InputOpts {
    /// Bank of the input's template-digest column (default: from the file name, else sha1).
    #[arg(long)]
    input_bank: Option<HashAlgo>,
    /// Binary lists (read and written) are big endian: a big-endian kernel without
    /// `ima_canonical_fmt`. Also applies to integers in ascii-rendered fields.
    #[arg(long)]
    big_endian: bool,
    /// A template this tool does not know, as NAME=FORMAT (e.g. `mine=d-ng|n-ng|iuid`).
    #[arg(long = "template", value_name = "NAME=FMT")]
    templates: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Ascii,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertTo {
    Binary,
    Ascii,
    Json,
}

/// `ALG:FILE`.
#[derive(Debug, Clone)]
pub struct PcrsArg {
    algo: HashAlgo,
    path: PathBuf,
}

impl std::str::FromStr for PcrsArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once(':')
            .ok_or_else(|| format!("expected ALG:FILE, got {s:?}"))?;
        let algo: HashAlgo = a.parse().map_err(|e| format!("{e}"))?;
        if !algo.is_supported() {
            return Err(format!("hash algorithm {algo} is not supported"));
        }
        Ok(Self {
            algo,
            path: p.into(),
        })
    }
}

pub fn run(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Show {
            format,
            bank,
            input,
            log,
        } => {
            let list = Input::load(&log, &input)?;
            let to = match format {
                ShowFormat::Ascii => ConvertTo::Ascii,
                ShowFormat::Json => ConvertTo::Json,
            };
            let out = list.render(to, bank)?;
            write_out(None, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Convert {
            to,
            bank,
            input,
            input_path,
            output,
        } => {
            let list = Input::load(&input_path, &input)?;
            let out = list.render(to, bank)?;
            write_out(output.as_deref(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Verify {
            log,
            pcrs,
            tpm,
            input,
        } => verify(&log, &pcrs, tpm.as_deref(), &input),
        LogCommand::BootAggregate { pcrs, ima_hash } => {
            let banks = load_pcrs(&pcrs)?;
            let algos: Vec<HashAlgo> = banks.iter().map(PcrBank::algo).collect();
            let (algo, why) = aggregate_bank(&algos, ima_hash)?;
            eprintln!("boot_aggregate in bank {algo}: {why}");
            let bank = banks
                .iter()
                .find(|b| b.algo() == algo)
                .context("bank chosen but not loaded")?;
            println!("{}", replay::boot_aggregate(bank)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_out(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("{}: write", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(bytes).and_then(|()| out.flush()) {
                // A closed pipe (`| head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("standard output"),
            }
        }
    }
}

/// Every PCR of every allocated bank (that we can replay) of the TPM `tcti` names.
fn live_pcrs(tcti: &str) -> anyhow::Result<Vec<PcrBank>> {
    let t: ima_tpm::Tcti = tcti.parse()?;
    let mut tpm = t
        .open_read_only()
        .with_context(|| format!("--tpm {tcti}"))?;
    eprintln!("imactl: PCRs from {}", tpm.kind());
    let all: Vec<u32> = (0..ima_tpm::NUM_PCRS).collect();
    let mut banks = Vec::new();
    for algo in tpm.banks().to_vec() {
        if !algo.is_supported() {
            continue;
        }
        let mut b = PcrBank::new(algo);
        for (i, v) in all.iter().zip(tpm.pcr_read(algo, &all)?) {
            b.set(*i, v);
        }
        banks.push(b);
    }
    Ok(banks)
}

fn load_pcrs(args: &[PcrsArg]) -> anyhow::Result<Vec<PcrBank>> {
    let mut banks: Vec<PcrBank> = Vec::new();
    for a in args {
        if banks.iter().any(|b| b.algo() == a.algo) {
            bail!("--pcrs {}: bank given twice", a.algo);
        }
        let bytes = ima_sys::fs::read_limited(&a.path, ima_sys::fs::MAX_TEXT_FILE)
            .with_context(|| format!("{}: read", a.path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: byte offset {}: not UTF-8 text",
                a.path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        let bank = PcrBank::parse(&text, a.algo).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: {} ({} PCRs)",
                a.path.display(),
                e.line,
                e.msg,
                a.algo
            )
        })?;
        banks.push(bank);
    }
    Ok(banks)
}

/// The bank `log boot-aggregate` computes in, and the rule that chose it.
fn aggregate_bank(
    given: &[HashAlgo],
    ima_hash: Option<HashAlgo>,
) -> anyhow::Result<(HashAlgo, String)> {
    if let [only] = given {
        let why = match ima_hash {
            Some(h) if h != *only => format!(
                "the only bank given (the kernel would take {h}, else sha256, else sha1, \
                 from a TPM that has them)"
            ),
            _ => "the only bank given".to_owned(),
        };
        return Ok((*only, why));
    }
    let h = ima_hash.unwrap_or(HashAlgo::SHA256);
    let Some(algo) = replay::boot_aggregate_bank(given, h) else {
        let list: Vec<String> = given.iter().map(ToString::to_string).collect();
        bail!(
            "boot_aggregate: none of the banks given ({}) is the ima_hash bank ({h}), sha256 \
             or sha1, so the kernel would not pick one; give --ima-hash ALG or one bank",
            list.join(", ")
        );
    };
    let why = if algo == h {
        match ima_hash {
            Some(_) => "the --ima-hash bank".to_owned(),
            None => "the bank of the kernel's default ima_hash (sha256)".to_owned(),
        }
    } else if algo == HashAlgo::SHA256 {
        format!("no {h} bank given, and the kernel then takes sha256")
    } else if h == HashAlgo::SHA256 {
        "no sha256 bank given, and the kernel then takes sha1".to_owned()
    } else {
        format!("no {h} or sha256 bank given, and the kernel then takes sha1")
    };
    Ok((algo, why))
}

/// A loaded input list.
struct Input {
    path: PathBuf,
    bytes: ima_sys::map::FileBytes,
    binary: bool,
    format: ListFormat,
    extra: Vec<TemplateDesc>,
}

/// Whether a list is binary: its first u32 (a PCR index below 2^24) has a zero byte, which
/// an ascii list never has.
fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(4).any(|&b| b == 0)
}

impl Input {
    fn load(path: &Path, opts: &InputOpts) -> anyhow::Result<Self> {
        let bytes =
            ima_sys::map::read_or_map(path).with_context(|| format!("{}: read", path.display()))?;
        let bank = match opts.input_bank {
            Some(b) => b,
            None => path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(ListFormat::bank_from_file_name)
                .unwrap_or(HashAlgo::SHA1),
        };
        if !bank.is_supported() {
            bail!("{}: bank {bank} is not supported", path.display());
        }
        let endian = if opts.big_endian {
            Endian::Big
        } else {
            Endian::Little
        };
        let mut extra = Vec::new();
        for t in &opts.templates {
            let (name, fmt) = t
                .split_once('=')
                .with_context(|| format!("--template {t:?}: expected NAME=FMT"))?;
            extra.push(
                TemplateDesc::with_name(name, fmt).with_context(|| format!("--template {t:?}"))?,
            );
        }
        Ok(Self {
            path: path.to_owned(),
            binary: is_binary(&bytes),
            bytes,
            format: ListFormat { bank, endian },
            extra,
        })
    }

    fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let p = self.path.display();
        let entries = if self.binary {
            binary::decode(&self.bytes, self.format).with_context(|| format!("{p}: binary list"))
        } else {
            ascii::decode(
                &self.bytes,
                self.format.bank,
                &self.extra,
                self.format.endian,
            )
            .with_context(|| format!("{p}: ascii list"))
        };
        self.intact()?;
        entries
    }

    /// An error if the list was truncated while mapped (what was decoded is not the file).
    fn intact(&self) -> anyhow::Result<()> {
        self.bytes
            .check()
            .with_context(|| format!("{}", self.path.display()))
    }

    fn render(&self, to: ConvertTo, bank: Option<HashAlgo>) -> anyhow::Result<Vec<u8>> {
        let mut entries = self.entries()?;
        let endian = self.format.endian;
        let bank = bank.unwrap_or(self.format.bank);
        if bank != self.format.bank {
            for e in &mut entries {
                *e = e.in_bank(bank, endian)?;
            }
        }
        let p = self.path.display();
        Ok(match to {
            ConvertTo::Binary => binary::encode(&entries, ListFormat { bank, endian }),
            ConvertTo::Ascii => ascii::encode(&entries, &self.extra, endian)
                .map_err(|(i, e)| anyhow::anyhow!("{p}: entry {}: {e}", i + 1))?,
            ConvertTo::Json => {
                let mut out = Vec::new();
                for (i, e) in entries.iter().enumerate() {
                    let v = entry_json(i, e, &self.extra, endian)
                        .with_context(|| format!("{p}: entry {}", i + 1))?;
                    serde_json::to_writer(&mut out, &v)?;
                    out.push(b'\n');
                }
                out
            }
        })
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One entry as a JSON object: every field decoded, with its raw bytes in hex.
fn entry_json(
    index: usize,
    e: &Entry,
    extra: &[TemplateDesc],
    endian: Endian,
) -> anyhow::Result<Value> {
    let desc = TemplateDesc::resolve(&e.template_name, extra)?;
    if desc.fields().len() != e.data.fields().len() {
        bail!(
            "template {} has {} fields, the entry has {}",
            e.template_name,
            desc.fields().len(),
            e.data.fields().len()
        );
    }
    let mut fields = Vec::new();
    for (f, data) in desc.fields().iter().zip(e.data.fields()) {
        let mut o = Map::new();
        o.insert("id".into(), json!(f.id()));
        o.insert("len".into(), json!(data.len()));
        o.insert("hex".into(), json!(hex::encode(data)));
        match f.decode(data, endian) {
            FieldValue::Empty | FieldValue::Bytes(_) => {}
            FieldValue::Str(s) => {
                o.insert("value".into(), json!(lossy(s)));
            }
            FieldValue::Digest {
                digest_type,
                algo,
                digest,
                ..
            } => {
                if let Some(t) = digest_type {
                    o.insert("type".into(), json!(lossy(t)));
                }
                o.insert("algo".into(), json!(lossy(algo)));
                o.insert("digest".into(), json!(hex::encode(digest)));
            }
            FieldValue::Uint(v) => {
                o.insert("value".into(), json!(v));
            }
            FieldValue::Lengths(v) => {
                o.insert("value".into(), json!(v));
            }
        }
        if matches!(f, Field::Sig | Field::EvmSig)
            && let Some(sig) = signature_json(data)
        {
            o.insert("signature".into(), sig);
        }
        if *f == Field::Imode
            && let FieldValue::Uint(v) = f.decode(data, endian)
        {
            o.insert("octal".into(), json!(format!("{v:o}")));
        }
        fields.push(Value::Object(o));
    }
    Ok(json!({
        "index": index,
        "pcr": e.pcr,
        "template": e.template_name,
        "template_digest": e.template_digest.to_hex(),
        "template_digest_algo": e.template_digest.algo().to_string(),
        "violation": e.is_violation(),
        "fields": fields,
    }))
}

/// The signature header v2/v3 of a `security.ima`/`security.evm` signature value
/// (`struct signature_v2_hdr`: type, version, hash_algo, keyid (BE), sig_size (BE), sig).
fn signature_json(v: &[u8]) -> Option<Value> {
    if v.len() < 9 || !matches!(v[0], 3 | 5 | 6) || !matches!(v[1], 2 | 3) {
        return None;
    }
    let size = usize::from(u16::from_be_bytes([v[7], v[8]]));
    if size != v.len() - 9 {
        return None;
    }
    Some(json!({
        "type": v[0],
        "version": v[1],
        "hash_algo": HashAlgo(v[2]).to_string(),
        "keyid": hex::encode(&v[3..7]),
        "sig_size": size,
        "sig": hex::encode(&v[9..]),
    }))
}

fn verify(
    log: &Path,
    pcrs: &[PcrsArg],
    tpm: Option<&str>,
    opts: &InputOpts,
) -> anyhow::Result<ExitCode> {
    let banks = match tpm {
        Some(t) => live_pcrs(t)?,
        None => load_pcrs(pcrs)?,
    };
    let input = Input::load(log, opts)?;
    let algos: Vec<HashAlgo> = banks.iter().map(PcrBank::algo).collect();
    let expected: Vec<Option<&PcrBank>> = banks.iter().map(Some).collect();
    let f = input.format;
    let p = log.display();
    if input.binary {
        let raw: Vec<RawEntry<'_>> = binary::raw_entries(&input.bytes, f)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{p}: binary list"))?;
        let r = replay::replay(&raw, f.bank, &algos, &expected, f.endian)?;
        input.intact()?;
        let unreadable: Vec<(usize, String)> = raw
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.check_template(f, &input.extra).err()?)))
            .collect();
        report(&r, &raw, &unreadable, f.bank, &banks)
    } else {
        // Parsing an ascii list already reads every entry by its template.
        let entries = input.entries()?;
        let r = replay::replay(&entries, f.bank, &algos, &expected, f.endian)?;
        report(&r, &entries, &[], f.bank, &banks)
    }
}

/// `unreadable`: entries whose template name does not decode, with the reason.
fn report<E: ReplayEntry>(
    r: &Replay,
    entries: &[E],
    unreadable: &[(usize, String)],
    log_bank: HashAlgo,
    banks: &[PcrBank],
) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let mut failed = false;
    // boot_aggregate against PCRs 0-9, whenever they are given in the entry's bank.
    if let Some(first) = entries.first() {
        let c = replay::check_boot_aggregate(first, banks);
        match &c {
            replay::BootAggregateCheck::Match { .. } => out.push_str(&format!("ok: {c}\n")),
            replay::BootAggregateCheck::NotChecked { missing, algo } => {
                let last = replay::last_boot_pcr(*algo) as usize;
                if missing.len() <= last {
                    out.push_str(&format!("note: {c}\n"));
                }
            }
            // Only a check of boot PCRs that were given can fail.
            replay::BootAggregateCheck::NotBootAggregate { .. }
                if !banks.iter().any(|b| b.get(0).is_some()) => {}
            _ => {
                failed = true;
                out.push_str(&format!("MISMATCH: entry 1 ({}): {c}\n", first.describe()));
            }
        }
    }
    let name = |i: usize| {
        entries
            .get(i)
            .map(|e| format!("entry {} ({})", i + 1, e.describe()))
            .unwrap_or_default()
    };
    for (i, why) in unreadable {
        failed = true;
        out.push_str(&format!(
            "MISMATCH: {}: template name {:?} does not decode ({why}); no PCR covers a \
             template name, and an entry that cannot be read does not pass\n",
            name(*i),
            entries[*i].template()
        ));
    }
    for &i in &r.bad_digests {
        failed = true;
        out.push_str(&format!(
            "MISMATCH: {}: logged {log_bank} template digest is wrong\n",
            name(i)
        ));
    }
    for &i in &r.bad_violations {
        failed = true;
        out.push_str(&format!(
            "MISMATCH: {}: violation (zero template digest) with a non-zero file digest\n",
            name(i)
        ));
    }
    let suspect = |i: usize| r.bad_digests.contains(&i) || r.bad_violations.contains(&i);
    for b in &r.banks {
        for pcr in &b.pcrs {
            let Some(exp) = &pcr.expected else {
                failed = true;
                out.push_str(&format!(
                    "MISMATCH: PCR {} bank {}: no expected value given (replayed {})\n",
                    pcr.index,
                    b.algo,
                    pcr.value.to_hex()
                ));
                continue;
            };
            if pcr.matches() {
                out.push_str(&format!(
                    "ok: PCR {} bank {}: {} ({})\n",
                    pcr.index,
                    b.algo,
                    pcr.value.to_hex(),
                    count(pcr.entries, "entry", "entries")
                ));
                continue;
            }
            failed = true;
            out.push_str(&format!(
                "MISMATCH: PCR {} bank {}: replayed {} ({}), expected {}",
                pcr.index,
                b.algo,
                pcr.value.to_hex(),
                count(pcr.entries, "entry", "entries"),
                exp.to_hex()
            ));
            match (pcr.first_unmatchable, pcr.last_match) {
                (Some(i), _) if suspect(i) => {
                    out.push_str(&format!("; can no longer match from {}", name(i)));
                }
                (Some(i), Some(m)) => out.push_str(&format!(
                    "; the replay equals it after {}: the PCR does not contain the list's \
                     entries from {} on",
                    name(m),
                    name(i)
                )),
                _ => out.push_str(
                    "; no prefix of the list replays to it: the list ends before the PCR \
                     value is reached (entries missing at its end, or an entry replaced \
                     together with its template digest)",
                ),
            }
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "{}, {}: {}\n",
        count(r.entries, "entry", "entries"),
        count(r.violations, "violation", "violations"),
        if failed { "FAILED" } else { "all PCRs match" }
    ));
    print!("{out}");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
