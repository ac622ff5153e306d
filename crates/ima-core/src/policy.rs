//! The IMA policy language, exactly as Linux parses and evaluates it, plus a few clearly
//! marked extensions (path/exe/cgroup selectors, policy versions).
//!
//! A policy is a list of [`Rule`]s, one per line. [`Policy::parse`] reads a policy file with
//! the kernel's all-or-nothing semantics (one bad line rejects the file, every error carries
//! its line and column); [`defaults`] builds the boot-time built-in policies in the kernel's
//! order; [`Policy::evaluate`] answers, for one access ([`Event`]), which rule decides each
//! action class (measure, appraise, audit, hash) and what the decision is ([`Evaluation`]),
//! with `ima_match_policy`'s semantics. [`Rule`]'s `Display` is the kernel's read-back format
//! (`/sys/kernel/security/ima/policy`).
//!
//! ```
//! use ima_core::policy::{Event, Func, Mask, Policy};
//!
//! let p = Policy::parse("dont_measure fsmagic=0x9fa0\nmeasure func=BPRM_CHECK pcr=11\n").unwrap();
//! let mut ev = Event::new(Func::BprmCheck, Mask::MAY_EXEC);
//! ev.fsmagic = 0xef53;
//! let e = p.evaluate(&ev);
//! assert!(e.measure());
//! assert_eq!(e.pcr(), 11);
//! assert_eq!(e.measure.unwrap().line, 2);
//! ```
//!
//! Mirrors `security/integrity/ima/ima_policy.c` and `Documentation/ABI/testing/ima_policy`.

use std::fmt;

use crate::hash::HashAlgo;

pub mod access;
pub mod defaults;
pub mod load;
pub mod matcher;
pub mod parse;
pub mod token;
pub mod validate;

pub use access::{CredsError, FileFacts, TaskCreds};
pub use defaults::{BootPolicy, Builtin};
pub use load::{
    LoadError, LoadMode, PolicySignatureError, PolicySource, PolicyState, verify_policy_signature,
};
pub use matcher::{Decided, Evaluation, Event, IndexedMatcher};
pub use parse::{ParseOptions, PolicyError, PolicyErrorKind, PolicyErrors};
pub use token::{Action, ActionClass, Func, IdOp, Mask, Uuid};

/// The default measurement PCR (`CONFIG_IMA_MEASURE_PCR_IDX`).
pub const DEFAULT_PCR: u32 = 10;

/// Rules may name PCRs 0..64 (`INVALID_PCR`: the bit width of `measured_pcrs`, an
/// `unsigned long`).
pub const PCR_LIMIT: i32 = 64;

/// Longest line we accept: the kernel's literal `write()` path looks at `PAGE_SIZE - 1`
/// bytes, so a longer rule could not be written with `echo`/`cat` either.
pub const MAX_LINE_LEN: usize = 4095;

/// Non-action flags a rule carries and `ima_match_policy` accumulates (`IMA_DIGSIG_REQUIRED`
/// etc., `ima.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleFlags(pub u32);

impl RuleFlags {
    pub const DIGSIG_REQUIRED: RuleFlags = RuleFlags(0x0100_0000);
    pub const PERMIT_DIRECTIO: RuleFlags = RuleFlags(0x0200_0000);
    pub const FAIL_UNVERIFIABLE_SIGS: RuleFlags = RuleFlags(0x1000_0000);
    pub const MODSIG_ALLOWED: RuleFlags = RuleFlags(0x2000_0000);
    pub const CHECK_BLACKLIST: RuleFlags = RuleFlags(0x4000_0000);
    pub const VERITY_REQUIRED: RuleFlags = RuleFlags(0x8000_0000);
    /// `IMA_NONACTION_FLAGS`: the bits `ima_match_policy` ORs into its result.
    pub const NONACTION: RuleFlags = RuleFlags(0xff00_0000);

    pub fn contains(self, f: RuleFlags) -> bool {
        self.0 & f.0 == f.0
    }

    pub fn insert(&mut self, f: RuleFlags) {
        self.0 |= f.0;
    }
}

/// A set of hash algorithms (`appraise_algos=`): bit `1 << id` per kernel id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AlgoSet(pub u32);

impl AlgoSet {
    pub fn contains(self, a: HashAlgo) -> bool {
        a.0 < 32 && self.0 & (1 << a.0) != 0
    }

    pub fn insert(&mut self, a: HashAlgo) {
        if a.0 < 32 {
            self.0 |= 1 << a.0;
        }
    }

    /// The members in ascending id order.
    pub fn iter(self) -> impl Iterator<Item = HashAlgo> {
        (0u8..32)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(HashAlgo)
    }
}

impl fmt::Display for AlgoSet {
    /// Comma-separated kernel names in ascending id order (`ima_policy_show_appraise_algos`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// `mask=` (exact match) or `mask=^` (any common bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskCond {
    pub mask: Mask,
    /// `^`: `IMA_INMASK`.
    pub in_mask: bool,
}

/// An id comparison: `uid`/`euid` share one slot (`effective` tells which was given), as do
/// `gid`/`egid`; `fowner` and `fgroup` have their own (and `effective` is false).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdCond {
    pub op: IdOp,
    pub id: u32,
    pub effective: bool,
}

/// The six LSM label conditions, in the kernel's `lsm_rule_types` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LsmField {
    ObjUser,
    ObjRole,
    ObjType,
    SubjUser,
    SubjRole,
    SubjType,
}

impl LsmField {
    pub const ALL: [LsmField; 6] = [
        LsmField::ObjUser,
        LsmField::ObjRole,
        LsmField::ObjType,
        LsmField::SubjUser,
        LsmField::SubjRole,
        LsmField::SubjType,
    ];

    /// `obj_user` etc.
    pub fn name(self) -> &'static str {
        match self {
            LsmField::ObjUser => "obj_user",
            LsmField::ObjRole => "obj_role",
            LsmField::ObjType => "obj_type",
            LsmField::SubjUser => "subj_user",
            LsmField::SubjRole => "subj_role",
            LsmField::SubjType => "subj_type",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A template a rule names with `template=`: a defined descriptor (looked up by name or by
/// exact format string, `lookup_template_desc`), stored by its name and format.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Template {
    /// Descriptor name (`ima-ng`), or, for the boot-time custom format, the format string.
    pub name: String,
    /// Field ids joined with `|` (`d-ng|n-ng`).
    pub fmt: String,
}

pub use crate::template::BUILTIN_TEMPLATES;

impl Template {
    /// A built-in descriptor by name.
    pub fn builtin(name: &str) -> Option<Template> {
        BUILTIN_TEMPLATES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, f)| Template {
                name: (*n).to_owned(),
                fmt: (*f).to_owned(),
            })
    }

    /// `lookup_template_desc`: a defined descriptor whose name or format equals `s`.
    /// `custom_fmt` is the boot-time `ima_template_fmt=` descriptor, if any.
    pub fn lookup(s: &str, custom_fmt: Option<&str>) -> Option<Template> {
        if let Some((n, f)) = BUILTIN_TEMPLATES.iter().find(|(n, f)| *n == s || *f == s) {
            return Some(Template {
                name: (*n).to_owned(),
                fmt: (*f).to_owned(),
            });
        }
        match custom_fmt {
            Some(c) if c == s => Some(Template {
                name: c.to_owned(),
                fmt: c.to_owned(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A `glob=` pattern (extension): `*` and `?` stay within one path component, `**` crosses
/// components, `[abc]`/`[a-z]`/`[!a]` are classes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Glob(pub String);

impl Glob {
    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &[u8]) -> bool {
        glob_match(self.0.as_bytes(), path)
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with one backtrack point per star kind; patterns are short.
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            if p.get(1) == Some(&b'*') {
                let rest = &p[2..];
                (0..=s.len()).any(|i| glob_match(rest, &s[i..]))
            } else {
                let rest = &p[1..];
                let limit = s.iter().position(|c| *c == b'/').unwrap_or(s.len());
                (0..=limit).any(|i| glob_match(rest, &s[i..]))
            }
        }
        Some(b'?') => match s.first() {
            Some(c) if *c != b'/' => glob_match(&p[1..], &s[1..]),
            _ => false,
        },
        Some(b'[') => {
            let Some(close) = p.iter().skip(2).position(|c| *c == b']').map(|i| i + 2) else {
                return s.first() == Some(&b'[') && glob_match(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let mut class = &p[1..close];
            let negate = matches!(class.first(), Some(b'!') | Some(b'^'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && c != b'/' && glob_match(&p[close + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && glob_match(&p[1..], &s[1..]),
    }
}

/// Selectors beyond the kernel's language. Each is rejected when parsing with
/// [`ParseOptions::strict_kernel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extensions {
    /// `path=`: the accessed file's absolute path equals this.
    pub path: Option<String>,
    /// `path_prefix=`: the path is this directory or below it (component-wise).
    pub path_prefix: Option<String>,
    /// `glob=`: the path matches this pattern.
    pub glob: Option<Glob>,
    /// `exe=`: the accessing program's path equals this.
    pub exe: Option<String>,
    /// `cgroup=`: the accessing process's cgroup path is this or below it.
    pub cgroup: Option<String>,
}

impl Extensions {
    pub fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.path_prefix.is_none()
            && self.glob.is_none()
            && self.exe.is_none()
            && self.cgroup.is_none()
    }
}

/// Whether `path` is `prefix` or lies below it, comparing whole components
/// (`/opt/app` covers `/opt/app/x` but not `/opt/apple`).
pub fn path_has_prefix(path: &[u8], prefix: &[u8]) -> bool {
    let prefix = if prefix.len() > 1 {
        prefix.strip_suffix(b"/").unwrap_or(prefix)
    } else {
        prefix
    };
    if prefix == b"/" {
        return path.first() == Some(&b'/');
    }
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// One policy rule (`struct ima_rule_entry`). A `Rule` that exists passed the kernel's parse
/// and validation (`ima_parse_rule`, `ima_validate_rule`), or is a kernel built-in.
///
/// ```text
/// struct ima_rule_entry {
///     int action; unsigned int flags; enum ima_hooks func; int mask;
///     unsigned long fsmagic; uuid_t fsuuid; kuid_t uid; kgid_t gid; kuid_t fowner;
///     kgid_t fgroup; (*uid_op)(); (*gid_op)(); (*fowner_op)(); (*fgroup_op)();
///     int pcr; unsigned int allowed_algos; struct { ... } lsm[MAX_LSM_RULES];
///     char *fsname; struct ima_rule_opt_list *keyrings; struct ima_rule_opt_list *label;
///     struct ima_template_desc *template;
/// };
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    pub func: Option<Func>,
    pub mask: Option<MaskCond>,
    pub fsmagic: Option<u64>,
    pub fsname: Option<String>,
    pub fsuuid: Option<Uuid>,
    /// `uid` or `euid` (one slot).
    pub uid: Option<IdCond>,
    /// `gid` or `egid` (one slot).
    pub gid: Option<IdCond>,
    pub fowner: Option<IdCond>,
    pub fgroup: Option<IdCond>,
    /// LSM labels indexed by [`LsmField::index`].
    pub lsm: [Option<String>; 6],
    pub keyrings: Option<Vec<String>>,
    pub label: Option<Vec<String>>,
    pub pcr: Option<u32>,
    pub template: Option<Template>,
    pub flags: RuleFlags,
    pub appraise_algos: Option<AlgoSet>,
    pub ext: Extensions,
}

impl Rule {
    /// A rule with only an action (matches everything).
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            func: None,
            mask: None,
            fsmagic: None,
            fsname: None,
            fsuuid: None,
            uid: None,
            gid: None,
            fowner: None,
            fgroup: None,
            lsm: Default::default(),
            keyrings: None,
            label: None,
            pcr: None,
            template: None,
            flags: RuleFlags::default(),
            appraise_algos: None,
            ext: Extensions::default(),
        }
    }

    /// Parses one rule line (kernel grammar, extensions allowed). Comments and blank lines
    /// are an error here; use [`Policy::parse`] for files.
    pub fn parse(line: &str) -> Result<Rule, PolicyError> {
        parse::parse_rule(line, 1, &ParseOptions::default())
    }

    /// Whether the rule uses any extension (and so cannot be loaded into a kernel).
    pub fn uses_extensions(&self) -> bool {
        !self.ext.is_empty()
    }

    /// The kernel's exact read-back line for this rule (without the newline); differs from
    /// `Display` only for ids above `i32::MAX` and for `digest_type=verity` with a signature.
    pub fn readback(&self) -> ReadBack<'_> {
        ReadBack(self)
    }

    /// The `appraise_type=` this rule's flags read back as, if any.
    pub fn appraise_type(&self) -> Option<&'static str> {
        if !self.flags.contains(RuleFlags::DIGSIG_REQUIRED) {
            None
        } else if self.flags.contains(RuleFlags::VERITY_REQUIRED) {
            Some("sigv3")
        } else if self.flags.contains(RuleFlags::MODSIG_ALLOWED) {
            Some("imasig|modsig")
        } else {
            Some("imasig")
        }
    }
}

fn write_id(f: &mut fmt::Formatter<'_>, name: &str, c: &IdCond, kernel_exact: bool) -> fmt::Result {
    if kernel_exact {
        // The kernel prints the uid_t with `%d`.
        write!(
            f,
            "{name}{}{} ",
            c.op.symbol(),
            i32::from_ne_bytes(c.id.to_ne_bytes())
        )
    } else {
        write!(f, "{name}{}{} ", c.op.symbol(), c.id)
    }
}

impl fmt::Display for Rule {
    /// The kernel's read-back format (`ima_policy_show`): every element followed by one
    /// space, in the kernel's fixed order (not the order written); extensions follow. Two
    /// deviations keep the output re-parseable: ids print unsigned (the kernel uses `%d`),
    /// and `digest_type=verity` precedes `appraise_type=sigv3` (the kernel prints them the
    /// other way round, which its own parser rejects). [`Rule::readback`] is byte-exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_rule(self, f, false)
    }
}

/// [`Rule::readback`]: the kernel's exact read-back line (without the newline).
#[derive(Clone, Copy, Debug)]
pub struct ReadBack<'a>(&'a Rule);

impl fmt::Display for ReadBack<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_rule(self.0, f, true)
    }
}

fn fmt_rule(r: &Rule, f: &mut fmt::Formatter<'_>, kernel_exact: bool) -> fmt::Result {
    {
        let this = r;
        write!(f, "{} ", this.action)?;
        if let Some(func) = this.func {
            write!(f, "func={func} ")?;
        }
        if let Some(m) = this.mask {
            for bit in Mask::RULE_BITS {
                if m.mask.intersects(bit) {
                    let caret = if m.in_mask { "^" } else { "" };
                    write!(f, "mask={caret}{}", bit.bit_name().unwrap_or("?"))?;
                }
            }
            f.write_str(" ")?;
        }
        if let Some(m) = this.fsmagic {
            write!(f, "fsmagic={m:#x} ")?;
        }
        if let Some(n) = &this.fsname {
            write!(f, "fsname={n} ")?;
        }
        if let Some(k) = &this.keyrings {
            write!(f, "keyrings={} ", k.join("|"))?;
        }
        if let Some(l) = &this.label {
            write!(f, "label={} ", l.join("|"))?;
        }
        if let Some(p) = this.pcr {
            write!(f, "pcr={p} ")?;
        }
        if let Some(u) = this.fsuuid {
            write!(f, "fsuuid={u} ")?;
        }
        if let Some(c) = &this.uid {
            write_id(f, if c.effective { "euid" } else { "uid" }, c, kernel_exact)?;
        }
        if let Some(c) = &this.gid {
            write_id(f, if c.effective { "egid" } else { "gid" }, c, kernel_exact)?;
        }
        if let Some(c) = &this.fowner {
            write_id(f, "fowner", c, kernel_exact)?;
        }
        if let Some(c) = &this.fgroup {
            write_id(f, "fgroup", c, kernel_exact)?;
        }
        if let Some(a) = this.appraise_algos {
            write!(f, "appraise_algos={a} ")?;
        }
        for field in LsmField::ALL {
            if let Some(v) = &this.lsm[field.index()] {
                write!(f, "{}={v} ", field.name())?;
            }
        }
        if let Some(t) = &this.template {
            write!(f, "template={t} ")?;
        }
        let verity = this.flags.contains(RuleFlags::VERITY_REQUIRED);
        if verity && !kernel_exact {
            f.write_str("digest_type=verity ")?;
        }
        if let Some(t) = this.appraise_type() {
            write!(f, "appraise_type={t} ")?;
        }
        if verity && kernel_exact {
            f.write_str("digest_type=verity ")?;
        }
        if this.flags.contains(RuleFlags::PERMIT_DIRECTIO) {
            f.write_str("permit_directio ")?;
        }
        if let Some(p) = &this.ext.path {
            write!(f, "path={p} ")?;
        }
        if let Some(p) = &this.ext.path_prefix {
            write!(f, "path_prefix={p} ")?;
        }
        if let Some(g) = &this.ext.glob {
            write!(f, "glob={} ", g.0)?;
        }
        if let Some(p) = &this.ext.exe {
            write!(f, "exe={p} ")?;
        }
        if let Some(p) = &this.ext.cgroup {
            write!(f, "cgroup={p} ")?;
        }
        Ok(())
    }
}

/// A rule with where it came from: its line in the policy file (1-based; for built-ins the
/// position in the list) and the text as written (for built-ins, the read-back text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    pub rule: Rule,
    pub line: usize,
    pub text: String,
}

/// An ordered list of rules: a parsed policy file, a built-in policy, or the active list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
    /// `policy_version=N` (extension): anti-rollback version of this policy.
    pub version: Option<u64>,
    /// `ima_policy=fail_securely` (a boot flag, not a rule): appraise decisions also carry
    /// `FAIL_UNVERIFIABLE_SIGS`.
    pub fail_securely: bool,
}

impl Policy {
    /// Parses a policy file with default options (kernel grammar plus extensions). All or
    /// nothing: any bad line makes this an error listing every bad line.
    pub fn parse(text: &str) -> Result<Policy, PolicyErrors> {
        parse::parse_policy(text, &ParseOptions::default())
    }

    /// Parses with explicit options (e.g. [`ParseOptions::strict_kernel`]).
    pub fn parse_with(text: &str, opts: &ParseOptions) -> Result<Policy, PolicyErrors> {
        parse::parse_policy(text, opts)
    }

    /// Parses raw file bytes: like [`Policy::parse_with`], but NUL bytes and invalid UTF-8
    /// are reported as errors with their position instead of being impossible.
    pub fn parse_bytes(bytes: &[u8], opts: &ParseOptions) -> Result<Policy, PolicyErrors> {
        parse::parse_policy_bytes(bytes, opts)
    }

    /// A policy from rules (line = position in the list, text = read-back form): how
    /// built-in policies are presented.
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> Policy {
        Policy {
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(i, rule)| PolicyRule {
                    text: rule.to_string().trim_end().to_owned(),
                    rule,
                    line: i + 1,
                })
                .collect(),
            version: None,
            fail_securely: false,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The kernel's read-back text: one `Display` line per rule, each ending in `" \n"`.
    pub fn readback(&self) -> String {
        let mut s = String::new();
        for r in &self.rules {
            s.push_str(&r.rule.readback().to_string());
            s.push('\n');
        }
        s
    }

    /// Evaluates every action class for one event (linear first-match, `ima_match_policy`).
    /// For many events over a large policy build an [`IndexedMatcher`] once instead.
    pub fn evaluate(&self, event: &Event<'_>) -> Evaluation<'_> {
        matcher::evaluate_linear(self, event, matcher::ALL_CLASSES)
    }

    /// Evaluates only the classes in `classes` (bits of [`ActionClass::bit`]), as the kernel
    /// does when it passes `ima_policy_flag`.
    pub fn evaluate_classes(&self, event: &Event<'_>, classes: u32) -> Evaluation<'_> {
        matcher::evaluate_linear(self, event, classes)
    }

    /// Whether a policy containing these rules requires that further policies be signed:
    /// an `appraise func=POLICY_CHECK` rule sets the kernel's `IMA_APPRAISE_POLICY`, after
    /// which literal rules written to securityfs are refused and a policy file must carry a
    /// valid `security.ima` signature.
    pub fn requires_signed_policy(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.rule.action == Action::Appraise && r.rule.func == Some(Func::PolicyCheck))
    }

    /// `ima_policy_flag`: the OR of the "do" classes of all rules (SETXATTR_CHECK excluded).
    pub fn policy_flag(&self) -> u32 {
        self.rules
            .iter()
            .filter(|r| r.rule.func != Some(Func::SetxattrCheck) && r.rule.action.is_do())
            .fold(0, |acc, r| acc | r.rule.action.bits())
    }

    /// The `security.ima` write allow-list: `appraise_algos` of the first SETXATTR_CHECK rule.
    pub fn setxattr_allowed_algos(&self) -> Option<AlgoSet> {
        self.rules
            .iter()
            .find(|r| r.rule.func == Some(Func::SetxattrCheck))
            .and_then(|r| r.rule.appraise_algos)
    }

    /// Whether any rule uses an extension.
    pub fn uses_extensions(&self) -> bool {
        self.version.is_some() || self.rules.iter().any(|r| r.rule.uses_extensions())
    }
}

#[cfg(test)]
mod tests;
