//! Parsing policy text into [`Rule`]s with the kernel's exact acceptance rules
//! (`ima_parse_rule`, `ima_parse_add_rule`), every error with its line and column.
//!
//! Mirrors `ima_parse_rule` and `ima_parse_add_rule` in `security/integrity/ima/ima_policy.c`
//! and `match_token` in `lib/parser.c`.

use std::fmt;

use super::token::{self, Action, Func, IdOp, Mask, NumError, Uuid, kstrtoint, kstrtoull};
use super::validate::{self, Field};
use super::{
    AlgoSet, Glob, IdCond, LsmField, MAX_LINE_LEN, MaskCond, PCR_LIMIT, Policy, PolicyRule, Rule,
    RuleFlags, Template,
};
use crate::hash::HashAlgo;

/// How to parse: which kernel build to emulate and whether extensions are allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Reject everything a Linux kernel would not accept (the extensions).
    pub strict_kernel: bool,
    /// `CONFIG_IMA_APPRAISE_MODSIG`: `appraise_type=imasig|modsig` is accepted.
    pub modsig: bool,
    /// `CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS`: `func=KEY_CHECK` and `keyrings=` are accepted.
    pub asymmetric_keys: bool,
    /// The boot-time `ima_template_fmt=` format, which `template=` may then name.
    pub custom_template_fmt: Option<String>,
}

impl Default for ParseOptions {
    /// Mainline with every policy feature configured; extensions allowed.
    fn default() -> Self {
        ParseOptions {
            strict_kernel: false,
            modsig: true,
            asymmetric_keys: true,
            custom_template_fmt: None,
        }
    }
}

impl ParseOptions {
    /// Mainline kernel language only.
    pub fn strict() -> Self {
        ParseOptions {
            strict_kernel: true,
            ..ParseOptions::default()
        }
    }
}

/// What is wrong with a token or line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    #[error("unknown token {0:?}{hint}", hint = unknown_hint(.0))]
    UnknownToken(String),
    #[error("a second action {second:?}: a rule has exactly one action (first was {first:?})")]
    SecondAction { first: Action, second: Action },
    #[error(
        "rule has no action (expected measure, dont_measure, appraise, dont_appraise, audit, hash or dont_hash first)"
    )]
    NoAction,
    #[error("duplicate {0}= (given twice in one rule)")]
    Duplicate(&'static str),
    #[error(
        "unknown func {0:?} (expected FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, CREDS_CHECK, MODULE_CHECK, FIRMWARE_CHECK, KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK, POLICY_CHECK, KEXEC_CMDLINE, KEY_CHECK, CRITICAL_DATA or SETXATTR_CHECK)"
    )]
    UnknownFunc(String),
    #[error(
        "unknown mask {0:?} (expected MAY_EXEC, MAY_WRITE, MAY_READ or MAY_APPEND, optionally prefixed with ^)"
    )]
    UnknownMask(String),
    #[error("{option}= {value:?} is not a {expected}")]
    BadNumber {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{option}= {value:?} is out of range ({range})")]
    OutOfRange {
        option: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("fsuuid= {0:?} is not a UUID (expected 8-4-4-4-12 hex digits)")]
    BadUuid(String),
    #[error("{option}= {value:?} has an empty item (items are separated by a single |)")]
    EmptyListItem { option: &'static str, value: String },
    #[error(
        "appraise_algos= {0:?}: unknown or unavailable hash algorithm (expected kernel names like sha256,sha512)"
    )]
    UnknownAlgo(String),
    #[error(
        "template= {0:?} is no defined template (expected ima, ima-ng, ima-ngv2, ima-sig, ima-sigv2, ima-buf, ima-modsig, evm-sig or one of their formats)"
    )]
    UnknownTemplate(String),
    #[error("template= must follow the measure action (it is only valid on measure rules)")]
    TemplateNotMeasure,
    #[error(
        "appraise_type= {0:?} is not accepted (expected imasig, imasig|modsig, or sigv3 after digest_type=verity)"
    )]
    BadAppraiseType(String),
    #[error("appraise_type=imasig|modsig needs a kernel with CONFIG_IMA_APPRAISE_MODSIG")]
    ModsigNotConfigured,
    #[error("appraise_type=sigv3 is only valid after digest_type=verity")]
    Sigv3WithoutVerity,
    #[error(
        "appraise_type={0} cannot be combined with digest_type=verity (use appraise_type=sigv3)"
    )]
    SigWithVerity(&'static str),
    #[error("digest_type=verity must come before appraise_type= (the kernel checks the order)")]
    VerityAfterSig,
    #[error("digest_type= {0:?} is not accepted (expected verity)")]
    BadDigestType(String),
    #[error("{0} needs a kernel with CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS")]
    KeysNotConfigured(&'static str),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{token:?} is an extension, not accepted by the kernel (--strict-kernel)")]
    Extension { token: String },
    #[error("{option}= {value:?} must be an absolute path")]
    NotAbsolute { option: &'static str, value: String },
    #[error("line is {0} bytes long; the limit is 4095 (the kernel reads one page per write)")]
    LineTooLong(usize),
    #[error("carriage return in a rule (DOS line ending?): the kernel makes it part of the token")]
    CarriageReturn,
    #[error("NUL byte: this is binary data, not a policy text")]
    NulByte,
    #[error("invalid UTF-8: this is binary data, not a policy text")]
    InvalidUtf8,
    #[error("policy_version= must be alone on its line and given once")]
    BadVersionLine,
}

fn unknown_hint(t: &str) -> &'static str {
    let key = t.split(['=', '<', '>']).next().unwrap_or("");
    if t == "dont_audit" {
        " (audit has no negative form)"
    } else if t.ends_with('=') {
        " (an option needs a non-empty value)"
    } else if KEYS_WITH_VALUE.contains(&key) && !t.contains(['=', '<', '>']) {
        " (missing =value)"
    } else if matches!(
        key,
        "mask" | "fsmagic" | "fsname" | "fsuuid" | "func" | "pcr" | "template"
    ) {
        " (this option only takes =)"
    } else {
        " (expected an action, condition or option)"
    }
}

const KEYS_WITH_VALUE: [&str; 31] = [
    "func",
    "mask",
    "fsmagic",
    "fsname",
    "fsuuid",
    "uid",
    "euid",
    "gid",
    "egid",
    "fowner",
    "fgroup",
    "subj_user",
    "subj_role",
    "subj_type",
    "obj_user",
    "obj_role",
    "obj_type",
    "digest_type",
    "appraise_type",
    "appraise_flag",
    "appraise_algos",
    "pcr",
    "template",
    "keyrings",
    "label",
    "path",
    "path_prefix",
    "glob",
    "exe",
    "cgroup",
    "policy_version",
];

/// One error (or warning) at a position: `LINE:COLUMN: message`. Callers prefix the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct PolicyError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The offending token (truncated to 80 characters), empty for line-level errors.
    pub token: String,
    pub kind: PolicyErrorKind,
}

/// Every error of a rejected policy, in line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

fn trunc(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Columns of the tokens that set each field, to point validation errors at them.
#[derive(Default)]
struct Seen<'a> {
    at: Vec<(Field, token::Token<'a>)>,
}

impl<'a> Seen<'a> {
    fn set(&mut self, f: Field, t: token::Token<'a>) {
        self.at.push((f, t));
    }
    fn find(&self, f: Field) -> Option<token::Token<'a>> {
        self.at.iter().rev().find(|(g, _)| *g == f).map(|(_, t)| *t)
    }
}

fn parse_id(opt: &'static str, v: &str) -> Result<u32, PolicyErrorKind> {
    let n = kstrtoull(v, 10).map_err(|e| match e {
        NumError::Invalid => PolicyErrorKind::BadNumber {
            option: opt,
            value: trunc(v),
            expected: "decimal id",
        },
        NumError::Range => PolicyErrorKind::OutOfRange {
            option: opt,
            value: trunc(v),
            range: "0..4294967294",
        },
    })?;
    match u32::try_from(n) {
        Ok(id) if id != u32::MAX => Ok(id),
        _ => Err(PolicyErrorKind::OutOfRange {
            option: opt,
            value: trunc(v),
            range: "0..4294967294",
        }),
    }
}

fn parse_list(opt: &'static str, v: &str) -> Result<Vec<String>, PolicyErrorKind> {
    let items: Vec<String> = v.split('|').map(str::to_owned).collect();
    if items.iter().any(String::is_empty) {
        return Err(PolicyErrorKind::EmptyListItem {
            option: opt,
            value: trunc(v),
        });
    }
    Ok(items)
}

fn abs_path(opt: &'static str, v: &str) -> Result<String, PolicyErrorKind> {
    if v.starts_with('/') {
        Ok(v.to_owned())
    } else {
        Err(PolicyErrorKind::NotAbsolute {
            option: opt,
            value: trunc(v),
        })
    }
}

/// Parses one rule (the line must hold a rule, not a comment). `line` is used in errors.
pub fn parse_rule(text: &str, line: usize, opts: &ParseOptions) -> Result<Rule, PolicyError> {
    parse_rule_inner(text, line, opts).map(|(r, _)| r)
}

fn parse_rule_inner(
    text: &str,
    line: usize,
    opts: &ParseOptions,
) -> Result<(Rule, Vec<PolicyError>), PolicyError> {
    let mut rule = Rule::new(Action::Measure);
    let mut action: Option<Action> = None;
    let mut seen = Seen::default();
    let mut warnings = Vec::new();
    let mut lsm_set = [false; 6];
    for tok in token::tokens(text) {
        let err = |kind| PolicyError {
            line,
            column: tok.column,
            token: trunc(tok.text),
            kind,
        };
        apply_token(
            &mut rule,
            &mut action,
            &mut seen,
            &mut lsm_set,
            &mut warnings,
            tok,
            line,
            opts,
        )
        .map_err(err)?;
    }
    let Some(a) = action else {
        return Err(PolicyError {
            line,
            column: 1 + text.len() - text.trim_start_matches([' ', '\t']).len(),
            token: String::new(),
            kind: PolicyErrorKind::NoAction,
        });
    };
    rule.action = a;
    if let Err((field, msg)) = validate::validate(&rule) {
        let t = seen
            .find(field)
            .or_else(|| seen.find(Field::Func))
            .or_else(|| seen.find(Field::Action));
        return Err(PolicyError {
            line,
            column: t.map_or(1, |t| t.column),
            token: t.map_or_else(String::new, |t| trunc(t.text)),
            kind: PolicyErrorKind::Invalid(msg),
        });
    }
    Ok((rule, warnings))
}

#[allow(clippy::too_many_arguments)] // one call site; the state is the parser's
fn apply_token<'a>(
    rule: &mut Rule,
    action: &mut Option<Action>,
    seen: &mut Seen<'a>,
    lsm_set: &mut [bool; 6],
    warnings: &mut Vec<PolicyError>,
    tok: token::Token<'a>,
    line: usize,
    opts: &ParseOptions,
) -> Result<(), PolicyErrorKind> {
    use PolicyErrorKind as K;
    let t = tok.text;
    if t.contains('\r') {
        return Err(K::CarriageReturn);
    }
    if let Ok(a) = t.parse::<Action>() {
        if let Some(first) = *action {
            return Err(K::SecondAction { first, second: a });
        }
        *action = Some(a);
        seen.set(Field::Action, tok);
        return Ok(());
    }
    let warn = |w: &mut Vec<PolicyError>, kind| {
        w.push(PolicyError {
            line,
            column: tok.column,
            token: trunc(t),
            kind,
        })
    };
    // `key=%s` / `key<%s` / `key>%s` with a non-empty value, as match_token does.
    let (key, op, value) = match t.find(['=', '<', '>']) {
        Some(i) if i + 1 < t.len() => {
            let op = match t.as_bytes()[i] {
                b'<' => IdOp::Lt,
                b'>' => IdOp::Gt,
                _ => IdOp::Eq,
            };
            (&t[..i], op, &t[i + 1..])
        }
        _ => {
            if t == "permit_directio" {
                rule.flags.insert(RuleFlags::PERMIT_DIRECTIO);
                seen.set(Field::PermitDirectio, tok);
                return Ok(());
            }
            return Err(K::UnknownToken(trunc(t)));
        }
    };
    let is_id_key = matches!(key, "uid" | "euid" | "gid" | "egid" | "fowner" | "fgroup");
    if op != IdOp::Eq && !is_id_key {
        return Err(K::UnknownToken(trunc(t)));
    }
    match key {
        "func" => {
            if rule.func.is_some() {
                return Err(K::Duplicate("func"));
            }
            let f = value
                .parse::<Func>()
                .ok()
                .filter(|f| f.is_rule_func())
                .ok_or_else(|| K::UnknownFunc(trunc(value)))?;
            if f == Func::KeyCheck && !opts.asymmetric_keys {
                return Err(K::KeysNotConfigured("func=KEY_CHECK"));
            }
            rule.func = Some(f);
            seen.set(Field::Func, tok);
        }
        "mask" => {
            if rule.mask.is_some() {
                return Err(K::Duplicate("mask"));
            }
            let (in_mask, name) = match value.strip_prefix('^') {
                Some(n) => (true, n),
                None => (false, value),
            };
            let mask = Mask::RULE_BITS
                .into_iter()
                .find(|m| m.bit_name() == Some(name))
                .ok_or_else(|| K::UnknownMask(trunc(value)))?;
            rule.mask = Some(MaskCond { mask, in_mask });
            seen.set(Field::Mask, tok);
        }
        "fsmagic" => {
            // The kernel's duplicate check is `if (entry->fsmagic)`: a zero value can be
            // overwritten.
            if rule.fsmagic.is_some_and(|m| m != 0) {
                return Err(K::Duplicate("fsmagic"));
            }
            let m = kstrtoull(value, 16).map_err(|e| match e {
                NumError::Invalid => K::BadNumber {
                    option: "fsmagic",
                    value: trunc(value),
                    expected: "hexadecimal number",
                },
                NumError::Range => K::OutOfRange {
                    option: "fsmagic",
                    value: trunc(value),
                    range: "at most 0xffffffffffffffff",
                },
            })?;
            rule.fsmagic = Some(m);
            seen.set(Field::Fsmagic, tok);
        }
        "fsname" => {
            if rule.fsname.is_some() {
                warn(
                    warnings,
                    K::Invalid("duplicate fsname=: the kernel silently keeps the last one"),
                );
            }
            rule.fsname = Some(value.to_owned());
            seen.set(Field::Fsname, tok);
        }
        "keyrings" => {
            if !opts.asymmetric_keys {
                return Err(K::KeysNotConfigured("keyrings="));
            }
            if rule.keyrings.is_some() {
                return Err(K::Duplicate("keyrings"));
            }
            rule.keyrings = Some(parse_list("keyrings", value)?);
            seen.set(Field::Keyrings, tok);
        }
        "label" => {
            if rule.label.is_some() {
                return Err(K::Duplicate("label"));
            }
            rule.label = Some(parse_list("label", value)?);
            seen.set(Field::Label, tok);
        }
        "fsuuid" => {
            // The kernel's duplicate check is `!uuid_is_null(&entry->fsuuid)`.
            if rule.fsuuid.is_some_and(|u| u != Uuid::NIL) {
                return Err(K::Duplicate("fsuuid"));
            }
            let u = Uuid::parse_kernel(value).map_err(|_| K::BadUuid(trunc(value)))?;
            rule.fsuuid = Some(u);
            seen.set(Field::Fsuuid, tok);
        }
        "uid" | "euid" => {
            if rule.uid.is_some() {
                return Err(K::Duplicate(if rule.uid.is_some_and(|c| c.effective) {
                    "euid"
                } else {
                    "uid"
                }));
            }
            let id = parse_id(if key == "uid" { "uid" } else { "euid" }, value)?;
            rule.uid = Some(IdCond {
                op,
                id,
                effective: key == "euid",
            });
            seen.set(Field::Uid, tok);
        }
        "gid" | "egid" => {
            if rule.gid.is_some() {
                return Err(K::Duplicate(if rule.gid.is_some_and(|c| c.effective) {
                    "egid"
                } else {
                    "gid"
                }));
            }
            let id = parse_id(if key == "gid" { "gid" } else { "egid" }, value)?;
            rule.gid = Some(IdCond {
                op,
                id,
                effective: key == "egid",
            });
            seen.set(Field::Gid, tok);
        }
        "fowner" => {
            if rule.fowner.is_some() {
                return Err(K::Duplicate("fowner"));
            }
            rule.fowner = Some(IdCond {
                op,
                id: parse_id("fowner", value)?,
                effective: false,
            });
            seen.set(Field::Fowner, tok);
        }
        "fgroup" => {
            if rule.fgroup.is_some() {
                return Err(K::Duplicate("fgroup"));
            }
            rule.fgroup = Some(IdCond {
                op,
                id: parse_id("fgroup", value)?,
                effective: false,
            });
            seen.set(Field::Fgroup, tok);
        }
        "obj_user" | "obj_role" | "obj_type" | "subj_user" | "subj_role" | "subj_type" => {
            let field = LsmField::ALL
                .into_iter()
                .find(|f| f.name() == key)
                .ok_or_else(|| K::UnknownToken(trunc(t)))?;
            let i = field.index();
            if lsm_set[i] {
                return Err(K::Duplicate(field.name()));
            }
            lsm_set[i] = true;
            rule.lsm[i] = Some(value.to_owned());
            seen.set(Field::Lsm(field), tok);
        }
        "digest_type" => {
            if rule.flags.contains(RuleFlags::DIGSIG_REQUIRED) {
                return Err(K::VerityAfterSig);
            }
            if value != "verity" {
                return Err(K::BadDigestType(trunc(value)));
            }
            rule.flags.insert(RuleFlags::VERITY_REQUIRED);
            seen.set(Field::DigestType, tok);
        }
        "appraise_type" => {
            let verity = rule.flags.contains(RuleFlags::VERITY_REQUIRED);
            let add = match value {
                "imasig" => {
                    if verity {
                        return Err(K::SigWithVerity("imasig"));
                    }
                    RuleFlags(RuleFlags::DIGSIG_REQUIRED.0 | RuleFlags::CHECK_BLACKLIST.0)
                }
                "sigv3" => {
                    if !verity {
                        return Err(K::Sigv3WithoutVerity);
                    }
                    RuleFlags(RuleFlags::DIGSIG_REQUIRED.0 | RuleFlags::CHECK_BLACKLIST.0)
                }
                "imasig|modsig" => {
                    if !opts.modsig {
                        return Err(K::ModsigNotConfigured);
                    }
                    if verity {
                        return Err(K::SigWithVerity("imasig|modsig"));
                    }
                    RuleFlags(
                        RuleFlags::DIGSIG_REQUIRED.0
                            | RuleFlags::MODSIG_ALLOWED.0
                            | RuleFlags::CHECK_BLACKLIST.0,
                    )
                }
                _ => return Err(K::BadAppraiseType(trunc(value))),
            };
            rule.flags.insert(add);
            seen.set(Field::AppraiseType, tok);
        }
        "appraise_flag" => {
            warn(
                warnings,
                K::Invalid(
                    "appraise_flag= is accepted and ignored by the kernel (check_blacklist is implied by imasig)",
                ),
            );
        }
        "appraise_algos" => {
            if rule.appraise_algos.is_some() {
                return Err(K::Duplicate("appraise_algos"));
            }
            let mut set = AlgoSet::default();
            for name in value.split(',') {
                let a = name
                    .parse::<HashAlgo>()
                    .ok()
                    .filter(|a| a.name() == Some(name) && a.is_supported())
                    .ok_or_else(|| K::UnknownAlgo(trunc(name)))?;
                set.insert(a);
            }
            rule.appraise_algos = Some(set);
            seen.set(Field::AppraiseAlgos, tok);
        }
        "pcr" => {
            let range = "0..63";
            let p = kstrtoint(value).map_err(|e| match e {
                NumError::Invalid => K::BadNumber {
                    option: "pcr",
                    value: trunc(value),
                    expected: "decimal PCR index",
                },
                NumError::Range => K::OutOfRange {
                    option: "pcr",
                    value: trunc(value),
                    range,
                },
            })?;
            if !(0..PCR_LIMIT).contains(&p) {
                return Err(K::OutOfRange {
                    option: "pcr",
                    value: trunc(value),
                    range,
                });
            }
            if rule.pcr.is_some() {
                warn(
                    warnings,
                    K::Invalid("duplicate pcr=: the kernel silently keeps the last one"),
                );
            }
            rule.pcr = u32::try_from(p).ok();
            seen.set(Field::Pcr, tok);
        }
        "template" => {
            if *action != Some(Action::Measure) {
                return Err(K::TemplateNotMeasure);
            }
            if rule.template.is_some() {
                return Err(K::Duplicate("template"));
            }
            let tpl = Template::lookup(value, opts.custom_template_fmt.as_deref())
                .ok_or_else(|| K::UnknownTemplate(trunc(value)))?;
            rule.template = Some(tpl);
            seen.set(Field::Template, tok);
        }
        "path" | "path_prefix" | "glob" | "exe" | "cgroup" => {
            if opts.strict_kernel {
                return Err(K::Extension { token: trunc(t) });
            }
            let (slot, name): (&mut Option<String>, &'static str) = match key {
                "path" => (&mut rule.ext.path, "path"),
                "path_prefix" => (&mut rule.ext.path_prefix, "path_prefix"),
                "exe" => (&mut rule.ext.exe, "exe"),
                "cgroup" => (&mut rule.ext.cgroup, "cgroup"),
                _ => {
                    if rule.ext.glob.is_some() {
                        return Err(K::Duplicate("glob"));
                    }
                    rule.ext.glob = Some(Glob(abs_path("glob", value)?));
                    seen.set(Field::Extension, tok);
                    return Ok(());
                }
            };
            if slot.is_some() {
                return Err(K::Duplicate(name));
            }
            *slot = Some(abs_path(name, value)?);
            seen.set(Field::Extension, tok);
        }
        _ => return Err(K::UnknownToken(trunc(t))),
    }
    Ok(())
}

/// A parsed policy plus the warnings (kernel-accepted oddities) found on the way.
pub(crate) fn parse_policy_full(
    text: &str,
    opts: &ParseOptions,
) -> Result<(Policy, Vec<PolicyError>), PolicyErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut policy = Policy::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        if let Err(e) = parse_line(raw, line, opts, &mut policy, &mut warnings) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok((policy, warnings))
    } else {
        Err(PolicyErrors(errors))
    }
}

fn parse_line(
    raw: &str,
    line: usize,
    opts: &ParseOptions,
    policy: &mut Policy,
    warnings: &mut Vec<PolicyError>,
) -> Result<(), PolicyError> {
    if raw.len() > MAX_LINE_LEN {
        return Err(PolicyError {
            line,
            column: MAX_LINE_LEN + 1,
            token: String::new(),
            kind: PolicyErrorKind::LineTooLong(raw.len()),
        });
    }
    let body = raw.trim_start_matches([' ', '\t']);
    if body.is_empty() || body.starts_with('#') {
        return Ok(());
    }
    let lead = raw.len() - body.len();
    if let Some(v) = body.strip_prefix("policy_version=") {
        let column = lead + 1;
        let err = |kind| PolicyError {
            line,
            column,
            token: trunc(body),
            kind,
        };
        if opts.strict_kernel {
            return Err(err(PolicyErrorKind::Extension { token: trunc(body) }));
        }
        let v = v.trim_end_matches([' ', '\t']);
        if policy.version.is_some() || v.contains([' ', '\t']) {
            return Err(err(PolicyErrorKind::BadVersionLine));
        }
        let n = kstrtoull(v, 10).map_err(|_| {
            err(PolicyErrorKind::BadNumber {
                option: "policy_version",
                value: trunc(v),
                expected: "decimal number",
            })
        })?;
        policy.version = Some(n);
        return Ok(());
    }
    let (rule, w) = parse_rule_inner(raw, line, opts)?;
    warnings.extend(w);
    policy.rules.push(PolicyRule {
        rule,
        line,
        text: raw.trim_matches([' ', '\t']).to_owned(),
    });
    Ok(())
}

/// [`Policy::parse_with`].
pub fn parse_policy(text: &str, opts: &ParseOptions) -> Result<Policy, PolicyErrors> {
    parse_policy_full(text, opts).map(|(p, _)| p)
}

/// Parses raw bytes and also returns warnings (duplicates the kernel silently accepts,
/// ignored options, a missing final newline). A NUL byte anywhere is one error for the
/// whole file; invalid UTF-8 is an error on its (non-comment) line.
pub fn parse_policy_bytes_with_warnings(
    bytes: &[u8],
    opts: &ParseOptions,
) -> Result<(Policy, Vec<PolicyError>), PolicyErrors> {
    if let Some(off) = bytes.iter().position(|b| *b == 0) {
        let (line, column) = position(bytes, off);
        return Err(PolicyErrors(vec![PolicyError {
            line,
            column,
            token: String::new(),
            kind: PolicyErrorKind::NulByte,
        }]));
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut policy = Policy::default();
    let mut start = 0usize;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let off = start;
        start += raw.len() + 1;
        match std::str::from_utf8(raw) {
            Ok(s) => {
                if let Err(e) = parse_line(s, line, opts, &mut policy, &mut warnings) {
                    errors.push(e);
                }
            }
            Err(u) => {
                let body = raw.iter().position(|b| *b != b' ' && *b != b'\t');
                if body.is_some_and(|p| raw[p] == b'#') || body.is_none() {
                    continue; // a comment: the kernel never looks inside
                }
                let (_, column) = position(bytes, off + u.valid_up_to());
                errors.push(PolicyError {
                    line,
                    column,
                    token: String::new(),
                    kind: PolicyErrorKind::InvalidUtf8,
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
        let (_, column) = position(bytes, bytes.len());
        warnings.push(PolicyError {
            line,
            column,
            token: String::new(),
            kind: PolicyErrorKind::Invalid(
                "the file does not end with a newline: the kernel's policy file loader may reject it",
            ),
        });
    }
    warnings.sort_by_key(|w| (w.line, w.column));
    Ok((policy, warnings))
}

/// [`Policy::parse_bytes`].
pub fn parse_policy_bytes(bytes: &[u8], opts: &ParseOptions) -> Result<Policy, PolicyErrors> {
    parse_policy_bytes_with_warnings(bytes, opts).map(|(p, _)| p)
}

/// (line, column) of byte offset `off`, both 1-based; the column counts characters (bytes
/// of invalid UTF-8 count one each).
fn position(bytes: &[u8], off: usize) -> (usize, usize) {
    let before = &bytes[..off.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}
