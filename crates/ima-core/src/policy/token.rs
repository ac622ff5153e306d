//! The words of the policy language: hooks, actions, masks, id comparisons, UUIDs, the
//! kernel's `kstrto*` number rules and the line tokenizer (`strsep(" \t")`).
//!
//! Every type here has `FromStr` and `Display` in the kernel's spelling, tested to round-trip,
//! so there is no hand-synced token table. Mirrors the `policy_tokens` table and the
//! `func_tokens` list of `security/integrity/ima/ima_policy.c` and `enum ima_hooks` of
//! `security/integrity/ima/ima.h`.

use std::fmt;
use std::str::FromStr;

/// An IMA hook (`enum ima_hooks`). `None` and `PostSetattr` exist as hooks but cannot be
/// named in a rule's `func=`.
///
/// ```text
/// NONE 0, FILE_CHECK 1, MMAP_CHECK 2, MMAP_CHECK_REQPROT 3, BPRM_CHECK 4, CREDS_CHECK 5,
/// POST_SETATTR 6, MODULE_CHECK 7, FIRMWARE_CHECK 8, KEXEC_KERNEL_CHECK 9,
/// KEXEC_INITRAMFS_CHECK 10, POLICY_CHECK 11, KEXEC_CMDLINE 12, KEY_CHECK 13,
/// CRITICAL_DATA 14, SETXATTR_CHECK 15, MAX_CHECK 16
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Func {
    None,
    FileCheck,
    MmapCheck,
    MmapCheckReqprot,
    BprmCheck,
    CredsCheck,
    PostSetattr,
    ModuleCheck,
    FirmwareCheck,
    KexecKernelCheck,
    KexecInitramfsCheck,
    PolicyCheck,
    KexecCmdline,
    KeyCheck,
    CriticalData,
    SetxattrCheck,
}

impl Func {
    /// Every hook, in kernel (mainline) numbering order.
    pub const ALL: [Func; 16] = [
        Func::None,
        Func::FileCheck,
        Func::MmapCheck,
        Func::MmapCheckReqprot,
        Func::BprmCheck,
        Func::CredsCheck,
        Func::PostSetattr,
        Func::ModuleCheck,
        Func::FirmwareCheck,
        Func::KexecKernelCheck,
        Func::KexecInitramfsCheck,
        Func::PolicyCheck,
        Func::KexecCmdline,
        Func::KeyCheck,
        Func::CriticalData,
        Func::SetxattrCheck,
    ];

    /// The kernel's name (`func_tokens`).
    pub fn name(self) -> &'static str {
        match self {
            Func::None => "NONE",
            Func::FileCheck => "FILE_CHECK",
            Func::MmapCheck => "MMAP_CHECK",
            Func::MmapCheckReqprot => "MMAP_CHECK_REQPROT",
            Func::BprmCheck => "BPRM_CHECK",
            Func::CredsCheck => "CREDS_CHECK",
            Func::PostSetattr => "POST_SETATTR",
            Func::ModuleCheck => "MODULE_CHECK",
            Func::FirmwareCheck => "FIRMWARE_CHECK",
            Func::KexecKernelCheck => "KEXEC_KERNEL_CHECK",
            Func::KexecInitramfsCheck => "KEXEC_INITRAMFS_CHECK",
            Func::PolicyCheck => "POLICY_CHECK",
            Func::KexecCmdline => "KEXEC_CMDLINE",
            Func::KeyCheck => "KEY_CHECK",
            Func::CriticalData => "CRITICAL_DATA",
            Func::SetxattrCheck => "SETXATTR_CHECK",
        }
    }

    /// The kernel's internal number (mainline numbering, §1.7 of the spec).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Whether a rule may say `func=` this hook (`NONE` and `POST_SETATTR` may not).
    pub fn is_rule_func(self) -> bool {
        !matches!(self, Func::None | Func::PostSetattr)
    }

    /// Buffer hooks: they have no inode, only `func_data` (keyring, label) and creds.
    pub fn is_buffer(self) -> bool {
        matches!(
            self,
            Func::KeyCheck | Func::CriticalData | Func::KexecCmdline
        )
    }
}

impl fmt::Display for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no IMA hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown func {0:?}")]
pub struct UnknownFunc(pub String);

impl FromStr for Func {
    type Err = UnknownFunc;

    /// Accepts every hook name and the kernel's aliases `PATH_CHECK` (= `FILE_CHECK`) and
    /// `FILE_MMAP` (= `MMAP_CHECK`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PATH_CHECK" => return Ok(Func::FileCheck),
            "FILE_MMAP" => return Ok(Func::MmapCheck),
            _ => {}
        }
        Func::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFunc(s.to_owned()))
    }
}

/// The class an action belongs to; the kernel decides each class independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionClass {
    Measure,
    Appraise,
    Audit,
    Hash,
}

impl ActionClass {
    /// All classes, in the order `ima_match_policy` flag bits go.
    pub const ALL: [ActionClass; 4] = [
        ActionClass::Measure,
        ActionClass::Appraise,
        ActionClass::Audit,
        ActionClass::Hash,
    ];

    /// The "do" bit of this class (`IMA_MEASURE` 0x1, `IMA_APPRAISE` 0x4, `IMA_AUDIT` 0x40,
    /// `IMA_HASH` 0x100).
    pub fn bit(self) -> u32 {
        match self {
            ActionClass::Measure => 0x1,
            ActionClass::Appraise => 0x4,
            ActionClass::Audit => 0x40,
            ActionClass::Hash => 0x100,
        }
    }

    /// Lowercase name (`measure`, `appraise`, `audit`, `hash`): the JSON keys of `explain`.
    pub fn name(self) -> &'static str {
        match self {
            ActionClass::Measure => "measure",
            ActionClass::Appraise => "appraise",
            ActionClass::Audit => "audit",
            ActionClass::Hash => "hash",
        }
    }

    /// Index 0..4 in [`ActionClass::ALL`].
    pub fn index(self) -> usize {
        match self {
            ActionClass::Measure => 0,
            ActionClass::Appraise => 1,
            ActionClass::Audit => 2,
            ActionClass::Hash => 3,
        }
    }
}

impl fmt::Display for ActionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule's action. Exactly one per rule; `audit` has no negative form.
///
/// ```text
/// #define MEASURE 0x0001  DONT_MEASURE 0x0002  APPRAISE 0x0004  DONT_APPRAISE 0x0008
/// #define AUDIT   0x0040  HASH         0x0100  DONT_HASH 0x0200
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Measure,
    DontMeasure,
    Appraise,
    DontAppraise,
    Audit,
    Hash,
    DontHash,
}

impl Action {
    /// Every action, in `policy_tokens` order.
    pub const ALL: [Action; 7] = [
        Action::Measure,
        Action::DontMeasure,
        Action::Appraise,
        Action::DontAppraise,
        Action::Audit,
        Action::Hash,
        Action::DontHash,
    ];

    /// The kernel keyword.
    pub fn name(self) -> &'static str {
        match self {
            Action::Measure => "measure",
            Action::DontMeasure => "dont_measure",
            Action::Appraise => "appraise",
            Action::DontAppraise => "dont_appraise",
            Action::Audit => "audit",
            Action::Hash => "hash",
            Action::DontHash => "dont_hash",
        }
    }

    /// The kernel's action code (see the type's doc).
    pub fn bits(self) -> u32 {
        match self {
            Action::Measure => 0x1,
            Action::DontMeasure => 0x2,
            Action::Appraise => 0x4,
            Action::DontAppraise => 0x8,
            Action::Audit => 0x40,
            Action::Hash => 0x100,
            Action::DontHash => 0x200,
        }
    }

    /// The class this action decides.
    pub fn class(self) -> ActionClass {
        match self {
            Action::Measure | Action::DontMeasure => ActionClass::Measure,
            Action::Appraise | Action::DontAppraise => ActionClass::Appraise,
            Action::Audit => ActionClass::Audit,
            Action::Hash | Action::DontHash => ActionClass::Hash,
        }
    }

    /// `true` for measure, appraise, audit, hash; `false` for the `dont_` forms.
    pub fn is_do(self) -> bool {
        matches!(
            self,
            Action::Measure | Action::Appraise | Action::Audit | Action::Hash
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A word that is no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

/// Permission mask bits (`include/linux/fs.h`), as passed by the hooks and named by `mask=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mask(pub u32);

impl Mask {
    pub const NONE: Mask = Mask(0);
    pub const MAY_EXEC: Mask = Mask(0x01);
    pub const MAY_WRITE: Mask = Mask(0x02);
    pub const MAY_READ: Mask = Mask(0x04);
    pub const MAY_APPEND: Mask = Mask(0x08);
    pub const MAY_ACCESS: Mask = Mask(0x10);
    pub const MAY_OPEN: Mask = Mask(0x20);

    /// The four bits a rule can name, in read-back order (exec, write, read, append).
    pub const RULE_BITS: [Mask; 4] = [
        Mask::MAY_EXEC,
        Mask::MAY_WRITE,
        Mask::MAY_READ,
        Mask::MAY_APPEND,
    ];

    /// The kernel name of a single rule bit.
    pub fn bit_name(self) -> Option<&'static str> {
        Some(match self {
            Mask::MAY_EXEC => "MAY_EXEC",
            Mask::MAY_WRITE => "MAY_WRITE",
            Mask::MAY_READ => "MAY_READ",
            Mask::MAY_APPEND => "MAY_APPEND",
            Mask::MAY_ACCESS => "MAY_ACCESS",
            Mask::MAY_OPEN => "MAY_OPEN",
            _ => return None,
        })
    }

    pub fn contains(self, other: Mask) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Mask) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Mask {
    type Output = Mask;
    fn bitor(self, rhs: Mask) -> Mask {
        Mask(self.0 | rhs.0)
    }
}

impl fmt::Display for Mask {
    /// `MAY_READ|MAY_WRITE` for several bits, `0` for none, hex for unnamed bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut first = true;
        let mut rest = self.0;
        for bit in 0..6 {
            let m = Mask(1 << bit);
            if self.0 & m.0 != 0 {
                if !first {
                    f.write_str("|")?;
                }
                first = false;
                f.write_str(m.bit_name().unwrap_or("?"))?;
                rest &= !m.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

/// A mask that is not `MAY_*` names joined with `|` or a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown mask {0:?} (expected MAY_EXEC, MAY_WRITE, MAY_READ, MAY_APPEND, MAY_ACCESS, MAY_OPEN, `|`-joined, or a number)"
)]
pub struct UnknownMask(pub String);

impl FromStr for Mask {
    type Err = UnknownMask;

    /// Accepts what `Display` prints: `|`-joined names, `0`, or a number (`0x` hex or decimal).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnknownMask(s.to_owned());
        let mut m = 0u32;
        for part in s.split('|') {
            let bit = match part {
                "MAY_EXEC" => 0x01,
                "MAY_WRITE" => 0x02,
                "MAY_READ" => 0x04,
                "MAY_APPEND" => 0x08,
                "MAY_ACCESS" => 0x10,
                "MAY_OPEN" => 0x20,
                _ => {
                    if let Some(h) = part.strip_prefix("0x") {
                        u32::from_str_radix(h, 16).map_err(|_| err())?
                    } else {
                        part.parse::<u32>().map_err(|_| err())?
                    }
                }
            };
            m |= bit;
        }
        Ok(Mask(m))
    }
}

/// The comparison of a `uid`/`euid`/`gid`/`egid`/`fowner`/`fgroup` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdOp {
    Eq,
    Gt,
    Lt,
}

impl IdOp {
    /// `=`, `>` or `<`.
    pub fn symbol(self) -> char {
        match self {
            IdOp::Eq => '=',
            IdOp::Gt => '>',
            IdOp::Lt => '<',
        }
    }

    /// `op(actual, rule)`: the kernel's `uid_eq`/`uid_gt`/`uid_lt` family.
    pub fn holds(self, actual: u32, rule: u32) -> bool {
        match self {
            IdOp::Eq => actual == rule,
            IdOp::Gt => actual > rule,
            IdOp::Lt => actual < rule,
        }
    }
}

/// A filesystem UUID (`uuid_t`, `sb->s_uuid`). Display is the lowercase canonical form
/// (`%pU`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID: what a filesystem without a UUID reports.
    pub const NIL: Uuid = Uuid([0; 16]);
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Text that is no canonical UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid UUID {0:?} (expected 8-4-4-4-12 hex digits)")]
pub struct InvalidUuid(pub String);

impl Uuid {
    /// The kernel's `uuid_parse`: the first 36 characters must be the canonical form
    /// (either case); like the kernel, characters after the 36th are not looked at.
    pub fn parse_kernel(s: &str) -> Result<Uuid, InvalidUuid> {
        let b = s.as_bytes();
        let err = || InvalidUuid(s.to_owned());
        if b.len() < 36 {
            return Err(err());
        }
        for (i, c) in b.iter().take(36).enumerate() {
            let dash = matches!(i, 8 | 13 | 18 | 23);
            if dash != (*c == b'-') || (!dash && !c.is_ascii_hexdigit()) {
                return Err(err());
            }
        }
        let mut out = [0u8; 16];
        let mut hex = b.iter().take(36).filter(|c| **c != b'-');
        for o in &mut out {
            let (Some(h), Some(l)) = (hex.next(), hex.next()) else {
                return Err(err());
            };
            *o = (hexval(*h) << 4) | hexval(*l);
        }
        Ok(Uuid(out))
    }
}

fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

impl FromStr for Uuid {
    type Err = InvalidUuid;

    /// Exactly the 36-character canonical form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidUuid(s.to_owned()));
        }
        Uuid::parse_kernel(s)
    }
}

/// Why a number was refused (`kstrtoul`/`kstrtoint` semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Not a number in that base (`-EINVAL`).
    Invalid,
    /// Too large for the type (`-ERANGE`).
    Range,
}

/// The kernel's `kstrtoull(s, base)`: an optional leading `+`, for base 16 an optional
/// `0x`/`0X`, at least one digit, an optional single trailing `\n`, nothing else.
pub fn kstrtoull(s: &str, base: u32) -> Result<u64, NumError> {
    let mut b = s.as_bytes();
    if let [b'+', rest @ ..] = b {
        b = rest;
    }
    if base == 16
        && let [b'0', x, rest @ ..] = b
        && x.eq_ignore_ascii_case(&b'x')
    {
        b = rest;
    }
    let mut v: u64 = 0;
    let mut n = 0usize;
    let mut overflow = false;
    while let Some(&c) = b.get(n) {
        let Some(d) = (c as char).to_digit(16).filter(|d| *d < base) else {
            break;
        };
        match v
            .checked_mul(u64::from(base))
            .and_then(|x| x.checked_add(u64::from(d)))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        n += 1;
    }
    if n == 0 {
        return Err(NumError::Invalid);
    }
    if overflow {
        return Err(NumError::Range);
    }
    let rest = &b[n..];
    if rest.is_empty() || rest == b"\n" {
        Ok(v)
    } else {
        Err(NumError::Invalid)
    }
}

/// The kernel's `kstrtoint(s, 10)`: `kstrtoull` with an optional leading `-`, then the value
/// must fit an `int`.
pub fn kstrtoint(s: &str) -> Result<i32, NumError> {
    if let Some(rest) = s.strip_prefix('-') {
        let v = kstrtoull(rest, 10)?;
        let v = i64::try_from(v).map_err(|_| NumError::Range)?;
        i32::try_from(-v).map_err(|_| NumError::Range)
    } else {
        let v = kstrtoull(s, 10)?;
        i32::try_from(v).map_err(|_| NumError::Range)
    }
}

/// One token of a rule line, with its 1-based column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: &'a str,
    pub column: usize,
}

/// Splits a rule line as the kernel does: `strsep` on space and tab, empty pieces skipped,
/// and a piece starting with `#` ends the rule (a suffixed comment, v6.14+).
pub fn tokens(line: &str) -> impl Iterator<Item = Token<'_>> {
    let mut col = 1usize;
    line.split([' ', '\t'])
        .map(move |piece| {
            let t = Token {
                text: piece,
                column: col,
            };
            col += piece.chars().count() + 1;
            t
        })
        .filter(|t| !t.text.is_empty())
        .take_while(|t| !t.text.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn func_round_trip_and_aliases() {
        for f in Func::ALL {
            assert_eq!(f.to_string().parse::<Func>(), Ok(f));
            assert_eq!(
                usize::from(f.number()),
                Func::ALL.iter().position(|x| *x == f).unwrap_or(99)
            );
        }
        assert_eq!("PATH_CHECK".parse::<Func>(), Ok(Func::FileCheck));
        assert_eq!("FILE_MMAP".parse::<Func>(), Ok(Func::MmapCheck));
        assert!("file_check".parse::<Func>().is_err());
    }

    #[test]
    fn action_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.to_string().parse::<Action>(), Ok(a));
        }
        assert!("dont_audit".parse::<Action>().is_err());
    }

    #[test]
    fn mask_round_trip() {
        for m in [0u32, 1, 2, 4, 8, 0x10, 0x20, 5, 0x3f, 0x40, 0x41] {
            assert_eq!(Mask(m).to_string().parse::<Mask>(), Ok(Mask(m)), "{m:#x}");
        }
    }

    #[test]
    fn uuid_kernel_rules() {
        let u = Uuid::parse_kernel("8F3C5B0E-1d2a-4c3b-9e4f-5a6b7c8d9e0f").unwrap();
        assert_eq!(u.to_string(), "8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f");
        assert_eq!(u.to_string().parse::<Uuid>(), Ok(u));
        // The kernel only looks at the first 36 characters.
        assert_eq!(
            Uuid::parse_kernel("8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0fzz"),
            Ok(u)
        );
        assert!(Uuid::parse_kernel("8f3c5b0e1d2a-4c3b-9e4f-5a6b7c8d9e0f00").is_err());
        assert!(Uuid::parse_kernel("8f3c5b0e-1d2a-4c3b-9e4f").is_err());
        assert!(Uuid::parse_kernel("8g3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f").is_err());
    }

    #[test]
    fn kstrto_semantics() {
        assert_eq!(kstrtoull("9fa0", 16), Ok(0x9fa0));
        assert_eq!(kstrtoull("0x9fa0", 16), Ok(0x9fa0));
        assert_eq!(kstrtoull("+0X9FA0", 16), Ok(0x9fa0));
        assert_eq!(kstrtoull("0x", 16), Err(NumError::Invalid));
        assert_eq!(kstrtoull("", 10), Err(NumError::Invalid));
        assert_eq!(kstrtoull("12a", 10), Err(NumError::Invalid));
        assert_eq!(kstrtoull("-1", 10), Err(NumError::Invalid));
        assert_eq!(kstrtoull("18446744073709551615", 10), Ok(u64::MAX));
        assert_eq!(kstrtoull("18446744073709551616", 10), Err(NumError::Range));
        assert_eq!(kstrtoull("7\n", 10), Ok(7));
        assert_eq!(kstrtoint("-0"), Ok(0));
        assert_eq!(kstrtoint("-5"), Ok(-5));
        assert_eq!(kstrtoint("2147483648"), Err(NumError::Range));
        assert_eq!(kstrtoint("-2147483648"), Ok(i32::MIN));
    }

    #[test]
    fn tokenizer_is_strsep() {
        let t: Vec<_> = tokens("measure\t func=BPRM_CHECK  # comment").collect();
        assert_eq!(
            t,
            vec![
                Token {
                    text: "measure",
                    column: 1
                },
                Token {
                    text: "func=BPRM_CHECK",
                    column: 10
                }
            ]
        );
        assert_eq!(tokens("measure x#y").count(), 2);
    }
}
