//! Post-parse validation: which actions, conditions and options each hook accepts, and the
//! combinations the kernel forbids.
//!
//! Mirrors `ima_validate_rule` in `security/integrity/ima/ima_policy.c`.

use super::token::{Action, Func};
use super::{LsmField, Rule, RuleFlags};

/// A part of a rule, to point an error at the token that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Action,
    Func,
    Mask,
    Fsmagic,
    Fsname,
    Fsuuid,
    Uid,
    Gid,
    Fowner,
    Fgroup,
    Lsm(LsmField),
    Keyrings,
    Label,
    Pcr,
    Template,
    AppraiseType,
    DigestType,
    PermitDirectio,
    AppraiseAlgos,
    Extension,
}

/// Which conditions and options a hook's rules may use (a row of `ima_validate_rule`).
struct Allowed {
    mask: bool,
    file: bool, // fsmagic, fsname, fsuuid, fowner, fgroup
    euid_egid: bool,
    lsm: bool,
    keyrings: bool,
    label: bool,
    appraise: bool, // appraise_type (imasig), appraise_algos, permit_directio
    modsig: bool,
    verity: bool,
    ext: bool,
    measure_only: bool,
}

fn allowed(func: Option<Func>) -> Allowed {
    let file_hook = Allowed {
        mask: true,
        file: true,
        euid_egid: true,
        lsm: true,
        keyrings: false,
        label: false,
        appraise: true,
        modsig: false,
        verity: true,
        ext: true,
        measure_only: false,
    };
    match func {
        None
        | Some(Func::FileCheck)
        | Some(Func::MmapCheck)
        | Some(Func::MmapCheckReqprot)
        | Some(Func::BprmCheck)
        | Some(Func::CredsCheck)
        | Some(Func::PostSetattr)
        | Some(Func::FirmwareCheck)
        | Some(Func::PolicyCheck) => file_hook,
        Some(Func::ModuleCheck)
        | Some(Func::KexecKernelCheck)
        | Some(Func::KexecInitramfsCheck) => Allowed {
            modsig: true,
            verity: false,
            ..file_hook
        },
        Some(Func::KexecCmdline) => Allowed {
            mask: false,
            appraise: false,
            verity: false,
            ext: false,
            measure_only: true,
            ..file_hook
        },
        Some(Func::KeyCheck) | Some(Func::CriticalData) => Allowed {
            mask: false,
            file: false,
            euid_egid: false,
            lsm: false,
            keyrings: func == Some(Func::KeyCheck),
            label: func == Some(Func::CriticalData),
            appraise: false,
            modsig: false,
            verity: false,
            ext: false,
            measure_only: true,
        },
        // SETXATTR_CHECK and NONE-as-func are handled by the caller.
        Some(Func::SetxattrCheck) | Some(Func::None) => file_hook,
    }
}

/// Checks a fully parsed rule; on failure names the offending part and why.
pub fn validate(r: &Rule) -> Result<(), (Field, &'static str)> {
    let is = |f: RuleFlags| r.flags.contains(f);
    if r.action != Action::Measure && r.pcr.is_some() {
        return Err((Field::Pcr, "pcr= is only valid on measure rules"));
    }
    if r.action != Action::Appraise {
        if is(RuleFlags::DIGSIG_REQUIRED)
            || is(RuleFlags::MODSIG_ALLOWED)
            || is(RuleFlags::CHECK_BLACKLIST)
        {
            return Err((
                Field::AppraiseType,
                "appraise_type= is only valid on appraise rules",
            ));
        }
        if r.appraise_algos.is_some() {
            return Err((
                Field::AppraiseAlgos,
                "appraise_algos= is only valid on appraise rules",
            ));
        }
    }
    if r.func == Some(Func::SetxattrCheck) {
        if r.action != Action::Appraise {
            return Err((
                Field::Action,
                "func=SETXATTR_CHECK is only valid with appraise",
            ));
        }
        if r.appraise_algos.is_none() {
            return Err((Field::Func, "func=SETXATTR_CHECK requires appraise_algos="));
        }
        let other = [
            (r.mask.is_some(), Field::Mask),
            (r.fsmagic.is_some(), Field::Fsmagic),
            (r.fsname.is_some(), Field::Fsname),
            (r.fsuuid.is_some(), Field::Fsuuid),
            (r.uid.is_some(), Field::Uid),
            (r.gid.is_some(), Field::Gid),
            (r.fowner.is_some(), Field::Fowner),
            (r.fgroup.is_some(), Field::Fgroup),
            (r.keyrings.is_some(), Field::Keyrings),
            (r.label.is_some(), Field::Label),
            (r.flags.0 & RuleFlags::NONACTION.0 != 0, Field::AppraiseType),
            (!r.ext.is_empty(), Field::Extension),
        ];
        if let Some((_, f)) = other.iter().find(|(set, _)| *set) {
            let f = if *f == Field::AppraiseType && is(RuleFlags::PERMIT_DIRECTIO) {
                Field::PermitDirectio
            } else if *f == Field::AppraiseType && is(RuleFlags::VERITY_REQUIRED) {
                Field::DigestType
            } else {
                *f
            };
            return Err((f, "func=SETXATTR_CHECK accepts only appraise_algos="));
        }
        return Ok(());
    }
    let a = allowed(r.func);
    if a.measure_only && !matches!(r.action, Action::Measure | Action::DontMeasure) {
        return Err((
            Field::Action,
            match r.func {
                Some(Func::KeyCheck) => "func=KEY_CHECK is only valid with measure or dont_measure",
                Some(Func::CriticalData) => {
                    "func=CRITICAL_DATA is only valid with measure or dont_measure"
                }
                _ => "func=KEXEC_CMDLINE is only valid with measure or dont_measure",
            },
        ));
    }
    let checks: [(bool, bool, Field, &'static str); 14] = [
        (
            r.mask.is_some(),
            a.mask,
            Field::Mask,
            "mask= is not valid with this func",
        ),
        (
            r.fsmagic.is_some(),
            a.file,
            Field::Fsmagic,
            "fsmagic= is not valid with this func",
        ),
        (
            r.fsname.is_some(),
            a.file,
            Field::Fsname,
            "fsname= is not valid with this func",
        ),
        (
            r.fsuuid.is_some(),
            a.file,
            Field::Fsuuid,
            "fsuuid= is not valid with this func",
        ),
        (
            r.fowner.is_some(),
            a.file,
            Field::Fowner,
            "fowner= is not valid with this func",
        ),
        (
            r.fgroup.is_some(),
            a.file,
            Field::Fgroup,
            "fgroup= is not valid with this func",
        ),
        (
            r.uid.is_some_and(|c| c.effective),
            a.euid_egid,
            Field::Uid,
            "euid= is not valid with this func (only uid=)",
        ),
        (
            r.gid.is_some_and(|c| c.effective),
            a.euid_egid,
            Field::Gid,
            "egid= is not valid with this func (only gid=)",
        ),
        (
            r.keyrings.is_some(),
            a.keyrings,
            Field::Keyrings,
            "keyrings= is only valid with func=KEY_CHECK",
        ),
        (
            r.label.is_some(),
            a.label,
            Field::Label,
            "label= is only valid with func=CRITICAL_DATA",
        ),
        (
            is(RuleFlags::DIGSIG_REQUIRED) || r.appraise_algos.is_some(),
            a.appraise,
            if r.appraise_algos.is_some() && !is(RuleFlags::DIGSIG_REQUIRED) {
                Field::AppraiseAlgos
            } else {
                Field::AppraiseType
            },
            "appraisal options are not valid with this func",
        ),
        (
            is(RuleFlags::PERMIT_DIRECTIO),
            a.appraise,
            Field::PermitDirectio,
            "permit_directio is not valid with this func",
        ),
        (
            is(RuleFlags::MODSIG_ALLOWED),
            a.modsig,
            Field::AppraiseType,
            "appraise_type=imasig|modsig is only valid with MODULE_CHECK, KEXEC_KERNEL_CHECK or KEXEC_INITRAMFS_CHECK",
        ),
        (
            is(RuleFlags::VERITY_REQUIRED),
            a.verity,
            Field::DigestType,
            "digest_type=verity is not valid with this func",
        ),
    ];
    if let Some((_, _, f, msg)) = checks.iter().find(|(set, ok, _, _)| *set && !*ok) {
        return Err((*f, msg));
    }
    if !a.lsm
        && let Some(f) = LsmField::ALL
            .into_iter()
            .find(|f| r.lsm[f.index()].is_some())
    {
        return Err((Field::Lsm(f), "LSM conditions are not valid with this func"));
    }
    if !a.ext && !r.ext.is_empty() {
        return Err((
            Field::Extension,
            "path/glob/exe/cgroup selectors are only valid with file hooks (extension)",
        ));
    }
    if is(RuleFlags::CHECK_BLACKLIST) && !is(RuleFlags::DIGSIG_REQUIRED) {
        return Err((
            Field::AppraiseType,
            "check_blacklist requires a signature requirement",
        ));
    }
    if r.action == Action::Appraise
        && is(RuleFlags::VERITY_REQUIRED)
        && !is(RuleFlags::DIGSIG_REQUIRED)
    {
        return Err((
            Field::DigestType,
            "appraise with digest_type=verity requires appraise_type=sigv3",
        ));
    }
    Ok(())
}
