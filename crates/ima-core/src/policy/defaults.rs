//! The kernel's built-in policies (`ima_policy=tcb|appraise_tcb|secure_boot|critical_data|
//! fail_securely`, `ima_tcb`, `ima_appraise_tcb`) with their exact rule lists and the order in
//! which `ima_init_policy` assembles the boot-time list.
//!
//! Mirrors the `*_rules[]` arrays, `policy_setup` and `ima_init_policy` in
//! `security/integrity/ima/ima_policy.c`.

use std::fmt;
use std::str::FromStr;

use super::token::{Action, Func, IdOp, Mask};
use super::{IdCond, MaskCond, Policy, Rule, RuleFlags};

/// Filesystem magics of `include/uapi/linux/magic.h` used by the built-in rules.
pub mod magic {
    pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    pub const SYSFS_MAGIC: u64 = 0x6265_6572;
    pub const DEBUGFS_MAGIC: u64 = 0x6462_6720;
    pub const TMPFS_MAGIC: u64 = 0x0102_1994;
    pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
    pub const DEVPTS_SUPER_MAGIC: u64 = 0x1cd1;
    pub const BINFMTFS_MAGIC: u64 = 0x4249_4e4d;
    pub const SECURITYFS_MAGIC: u64 = 0x7363_6673;
    pub const SELINUX_MAGIC: u64 = 0xf97c_ff8c;
    pub const SMACK_MAGIC: u64 = 0x4341_5d53;
    pub const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
    pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    pub const NSFS_MAGIC: u64 = 0x6e73_6673;
    pub const EFIVARFS_MAGIC: u64 = 0xde5e_81e4;
    pub const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
    pub const EXT4_SUPER_MAGIC: u64 = 0xef53;
}

use magic::*;

/// A named built-in policy (one word of `ima_policy=`, or `ima_tcb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `ima_policy=tcb` (DEFAULT_TCB).
    Tcb,
    /// `ima_tcb` (ORIGINAL_TCB).
    OriginalTcb,
    /// `ima_policy=appraise_tcb` / `ima_appraise_tcb`.
    AppraiseTcb,
    /// `ima_policy=secure_boot`.
    SecureBoot,
    /// `ima_policy=critical_data`.
    CriticalData,
    /// `ima_policy=fail_securely` (a flag: no rules of its own).
    FailSecurely,
}

impl Builtin {
    pub const ALL: [Builtin; 6] = [
        Builtin::Tcb,
        Builtin::OriginalTcb,
        Builtin::AppraiseTcb,
        Builtin::SecureBoot,
        Builtin::CriticalData,
        Builtin::FailSecurely,
    ];

    /// The boot-parameter word.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Tcb => "tcb",
            Builtin::OriginalTcb => "ima_tcb",
            Builtin::AppraiseTcb => "appraise_tcb",
            Builtin::SecureBoot => "secure_boot",
            Builtin::CriticalData => "critical_data",
            Builtin::FailSecurely => "fail_securely",
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A word that names no built-in policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown built-in policy {0:?} (expected tcb, ima_tcb, appraise_tcb, secure_boot, critical_data or fail_securely)"
)]
pub struct UnknownBuiltin(pub String);

impl FromStr for Builtin {
    type Err = UnknownBuiltin;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ima_appraise_tcb" => return Ok(Builtin::AppraiseTcb),
            "original_tcb" => return Ok(Builtin::OriginalTcb),
            _ => {}
        }
        Builtin::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBuiltin(s.to_owned()))
    }
}

fn fsmagic(action: Action, m: u64) -> Rule {
    Rule {
        fsmagic: Some(m),
        ..Rule::new(action)
    }
}

fn func(action: Action, f: Func) -> Rule {
    Rule {
        func: Some(f),
        ..Rule::new(action)
    }
}

fn sig(f: Func) -> Rule {
    // Built-in rules carry DIGSIG_REQUIRED only (no CHECK_BLACKLIST).
    Rule {
        flags: RuleFlags::DIGSIG_REQUIRED,
        ..func(Action::Appraise, f)
    }
}

fn masked(f: Func, mask: Mask, in_mask: bool) -> Rule {
    Rule {
        mask: Some(MaskCond { mask, in_mask }),
        ..func(Action::Measure, f)
    }
}

fn root(effective: bool) -> Option<IdCond> {
    Some(IdCond {
        op: IdOp::Eq,
        id: 0,
        effective,
    })
}

/// `dont_measure_rules[]`. `tmpfs_all_hooks` selects the v6.13-and-older tmpfs rule (every
/// hook) instead of the v6.14+ one (FILE_CHECK only).
pub fn dont_measure_rules(tmpfs_all_hooks: bool) -> Vec<Rule> {
    let tmpfs = if tmpfs_all_hooks {
        fsmagic(Action::DontMeasure, TMPFS_MAGIC)
    } else {
        Rule {
            func: Some(Func::FileCheck),
            ..fsmagic(Action::DontMeasure, TMPFS_MAGIC)
        }
    };
    let mut v: Vec<Rule> = [PROC_SUPER_MAGIC, SYSFS_MAGIC, DEBUGFS_MAGIC]
        .into_iter()
        .map(|m| fsmagic(Action::DontMeasure, m))
        .collect();
    v.push(tmpfs);
    v.extend(
        [
            DEVPTS_SUPER_MAGIC,
            BINFMTFS_MAGIC,
            SECURITYFS_MAGIC,
            SELINUX_MAGIC,
            SMACK_MAGIC,
            CGROUP_SUPER_MAGIC,
            CGROUP2_SUPER_MAGIC,
            NSFS_MAGIC,
            EFIVARFS_MAGIC,
        ]
        .into_iter()
        .map(|m| fsmagic(Action::DontMeasure, m)),
    );
    v
}

/// `original_measurement_rules[]` (`ima_tcb`).
pub fn original_measurement_rules() -> Vec<Rule> {
    vec![
        masked(Func::MmapCheck, Mask::MAY_EXEC, false),
        masked(Func::BprmCheck, Mask::MAY_EXEC, false),
        Rule {
            uid: root(false),
            ..masked(Func::FileCheck, Mask::MAY_READ, false)
        },
        func(Action::Measure, Func::ModuleCheck),
        func(Action::Measure, Func::FirmwareCheck),
    ]
}

/// `default_measurement_rules[]` (`ima_policy=tcb`).
pub fn default_measurement_rules() -> Vec<Rule> {
    vec![
        masked(Func::MmapCheck, Mask::MAY_EXEC, false),
        masked(Func::BprmCheck, Mask::MAY_EXEC, false),
        Rule {
            uid: root(true),
            ..masked(Func::FileCheck, Mask::MAY_READ, true)
        },
        Rule {
            uid: root(false),
            ..masked(Func::FileCheck, Mask::MAY_READ, true)
        },
        func(Action::Measure, Func::ModuleCheck),
        func(Action::Measure, Func::FirmwareCheck),
        func(Action::Measure, Func::PolicyCheck),
    ]
}

/// `default_appraise_rules[]` (`appraise_tcb`). `write_policy` = CONFIG_IMA_WRITE_POLICY
/// (adds a signed POLICY_CHECK rule); `signed_init` = CONFIG_IMA_APPRAISE_SIGNED_INIT (the
/// `fowner=0` rule then requires signatures).
pub fn default_appraise_rules(write_policy: bool, signed_init: bool) -> Vec<Rule> {
    let mut v: Vec<Rule> = [
        PROC_SUPER_MAGIC,
        SYSFS_MAGIC,
        DEBUGFS_MAGIC,
        TMPFS_MAGIC,
        RAMFS_MAGIC,
        DEVPTS_SUPER_MAGIC,
        BINFMTFS_MAGIC,
        SECURITYFS_MAGIC,
        SELINUX_MAGIC,
        SMACK_MAGIC,
        NSFS_MAGIC,
        EFIVARFS_MAGIC,
        CGROUP_SUPER_MAGIC,
        CGROUP2_SUPER_MAGIC,
    ]
    .into_iter()
    .map(|m| fsmagic(Action::DontAppraise, m))
    .collect();
    if write_policy {
        v.push(sig(Func::PolicyCheck));
    }
    let mut owner = Rule {
        fowner: root(false),
        ..Rule::new(Action::Appraise)
    };
    if signed_init {
        owner.flags = RuleFlags::DIGSIG_REQUIRED;
    }
    v.push(owner);
    v
}

/// `secure_boot_rules[]`.
pub fn secure_boot_rules() -> Vec<Rule> {
    [
        Func::ModuleCheck,
        Func::FirmwareCheck,
        Func::KexecKernelCheck,
        Func::PolicyCheck,
    ]
    .into_iter()
    .map(sig)
    .collect()
}

/// `critical_data_rules[]`.
pub fn critical_data_rules() -> Vec<Rule> {
    vec![func(Action::Measure, Func::CriticalData)]
}

/// Which TCB measurement policy is selected (`ima_tcb` vs `ima_policy=tcb`: the first seen
/// wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcb {
    Original,
    Default,
}

/// The boot-time policy configuration: boot parameters plus the build options that shape
/// the built-in lists. [`BootPolicy::default_policy`] is the list active until a custom
/// policy is loaded; [`BootPolicy::custom_seed`] the rules every custom policy starts with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootPolicy {
    pub tcb: Option<Tcb>,
    pub appraise_tcb: bool,
    pub secure_boot: bool,
    pub critical_data: bool,
    pub fail_securely: bool,
    /// Emulate v6.13 and older: the tcb tmpfs rule covers every hook (Linux 6.1 captures).
    pub tmpfs_all_hooks: bool,
    /// CONFIG_IMA_WRITE_POLICY.
    pub write_policy: bool,
    /// CONFIG_IMA_APPRAISE_SIGNED_INIT.
    pub appraise_signed_init: bool,
    /// Architecture rules (`arch_get_ima_policy`, e.g. x86 secure boot), already parsed.
    pub arch_rules: Vec<Rule>,
    /// CONFIG_IMA_APPRAISE_REQUIRE_{MODULE,FIRMWARE,KEXEC,POLICY}_SIGS, in that order.
    pub build_sig_funcs: Vec<Func>,
}

/// Unknown words in `ima_policy=` (the kernel logs `policy "X" not found` and goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ima_policy= word(s): {}", .0.join(", "))]
pub struct UnknownPolicyWords(pub Vec<String>);

impl BootPolicy {
    /// The configuration for one built-in on its own.
    pub fn single(b: Builtin) -> BootPolicy {
        let mut p = BootPolicy::default();
        p.enable(b);
        p
    }

    /// Turns on a built-in, with the kernel's rule that the first TCB choice wins.
    pub fn enable(&mut self, b: Builtin) {
        match b {
            Builtin::Tcb => {
                self.tcb.get_or_insert(Tcb::Default);
            }
            Builtin::OriginalTcb => {
                self.tcb.get_or_insert(Tcb::Original);
            }
            Builtin::AppraiseTcb => self.appraise_tcb = true,
            Builtin::SecureBoot => self.secure_boot = true,
            Builtin::CriticalData => self.critical_data = true,
            Builtin::FailSecurely => self.fail_securely = true,
        }
    }

    /// The value of `ima_policy=`: words separated by `|` or spaces (`policy_setup`).
    /// Unknown words are reported (the kernel only logs them); the known ones are applied.
    pub fn from_param(value: &str) -> Result<BootPolicy, (BootPolicy, UnknownPolicyWords)> {
        let mut p = BootPolicy::default();
        let mut unknown = Vec::new();
        for w in value.split([' ', '|', '\n']).filter(|w| !w.is_empty()) {
            match w {
                "tcb" | "appraise_tcb" | "secure_boot" | "critical_data" | "fail_securely" => {
                    if let Ok(b) = w.parse() {
                        p.enable(b);
                    }
                }
                _ => unknown.push(w.to_owned()),
            }
        }
        if unknown.is_empty() {
            Ok(p)
        } else {
            Err((p, UnknownPolicyWords(unknown)))
        }
    }

    fn build_rules(&self) -> Vec<Rule> {
        self.build_sig_funcs.iter().map(|f| sig(*f)).collect()
    }

    /// The boot ("default") rule list in `ima_init_policy` order: dont_measure block (if
    /// any TCB), the TCB measure rules, arch rules, secure_boot, build-time appraise rules
    /// (unless secure_boot, which covers them), appraise_tcb, critical_data.
    pub fn default_policy(&self) -> Policy {
        let mut rules = Vec::new();
        if let Some(t) = self.tcb {
            rules.extend(dont_measure_rules(self.tmpfs_all_hooks));
            rules.extend(match t {
                Tcb::Original => original_measurement_rules(),
                Tcb::Default => default_measurement_rules(),
            });
        }
        rules.extend(self.arch_rules.iter().cloned());
        if self.secure_boot {
            rules.extend(secure_boot_rules());
        } else {
            rules.extend(self.build_rules());
        }
        if self.appraise_tcb {
            rules.extend(default_appraise_rules(
                self.write_policy,
                self.appraise_signed_init,
            ));
        }
        if self.critical_data {
            rules.extend(critical_data_rules());
        }
        let mut p = Policy::from_rules(rules);
        p.fail_securely = self.fail_securely;
        p
    }

    /// The rules the custom list is seeded with at boot (arch rules, then build-time
    /// appraise rules): they precede every loaded rule.
    pub fn custom_seed(&self) -> Vec<Rule> {
        let mut v: Vec<Rule> = self.arch_rules.clone();
        v.extend(self.build_rules());
        v
    }
}
