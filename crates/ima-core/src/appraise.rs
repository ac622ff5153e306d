//! The appraisal decision: given a file's `security.ima` value, its collected digest, what
//! EVM said about it and what the matching policy rule requires, the integrity status and
//! cause string the kernel would reach, and (in fix mode) the label it would write. A pass is
//! the only way to obtain an [`Appraised`] token.
//!
//! Mirrors `security/integrity/ima/ima_appraise.c` (`ima_appraise_measurement`,
//! `xattr_verify`, `ima_get_hash_algo`, `ima_fix_xattr`) and the `appraise_algos` check of
//! `process_measurement` (ima_main.c). The status it ends in is [`Status`].

use std::fmt;
use std::str::FromStr;

use crate::codec::Codec;
use crate::digsig::{DigsigError, Verifier, digsig_verify, file_id_hash};
use crate::hash::{Digest, HashAlgo};
use crate::integrity::{Status, UnknownName, XattrType};
use crate::xattr::{self, XattrValue};

/// The `cause=` string of an `op=appraise_data` (or `collect_data`) audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Hashing the file failed (`collect_data`, e.g. its algorithm is unavailable).
    CollectFailed,
    /// The digest's algorithm is not in the rule's `appraise_algos` (`collect_data`).
    DeniedHashAlgorithm,
    ImaSignatureRequired,
    InvalidFailImmutable,
    InvalidHash,
    InvalidHmac,
    InvalidSignature,
    InvalidSignatureVersion,
    InvalidVeritySignature,
    MissingHash,
    MissingHmac,
    Sigv3HashingError,
    /// The default cause (e.g. no xattr support, or a read error).
    Unknown,
    UnknownImaData,
    UnverifiableSignature,
    VeritySignatureRequired,
}

impl Cause {
    pub const ALL: [Self; 16] = [
        Self::CollectFailed,
        Self::DeniedHashAlgorithm,
        Self::ImaSignatureRequired,
        Self::InvalidFailImmutable,
        Self::InvalidHash,
        Self::InvalidHmac,
        Self::InvalidSignature,
        Self::InvalidSignatureVersion,
        Self::InvalidVeritySignature,
        Self::MissingHash,
        Self::MissingHmac,
        Self::Sigv3HashingError,
        Self::Unknown,
        Self::UnknownImaData,
        Self::UnverifiableSignature,
        Self::VeritySignatureRequired,
    ];

    /// The kernel's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CollectFailed => "failed",
            Self::DeniedHashAlgorithm => "denied-hash-algorithm",
            Self::ImaSignatureRequired => "IMA-signature-required",
            Self::InvalidFailImmutable => "invalid-fail-immutable",
            Self::InvalidHash => "invalid-hash",
            Self::InvalidHmac => "invalid-HMAC",
            Self::InvalidSignature => "invalid-signature",
            Self::InvalidSignatureVersion => "invalid-signature-version",
            Self::InvalidVeritySignature => "invalid-verity-signature",
            Self::MissingHash => "missing-hash",
            Self::MissingHmac => "missing-HMAC",
            Self::Sigv3HashingError => "sigv3-hashing-error",
            Self::Unknown => "unknown",
            Self::UnknownImaData => "unknown-ima-data",
            Self::UnverifiableSignature => "unverifiable-signature",
            Self::VeritySignatureRequired => "verity-signature-required",
        }
    }

    /// The audit `op=` the kernel logs this cause under.
    pub fn op(self) -> &'static str {
        match self {
            Self::CollectFailed | Self::DeniedHashAlgorithm => "collect_data",
            _ => "appraise_data",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cause {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// `ima_appraise=`: what happens to a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Deny access (`IMA_APPRAISE_ENFORCE`).
    #[default]
    Enforce,
    /// Rewrite `security.ima` with the collected hash (unless it is a signature), then allow.
    Fix,
    /// Audit only.
    Log,
    /// No appraisal.
    Off,
}

impl Mode {
    pub const ALL: [Self; 4] = [Self::Enforce, Self::Fix, Self::Log, Self::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Fix => "fix",
            Self::Log => "log",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// What the matching `appraise` rule asks for (iint flags set from the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requirements {
    /// `appraise_type=imasig` / `sigv3` (`IMA_DIGSIG_REQUIRED`).
    pub digsig: bool,
    /// `digest_type=verity` (`IMA_VERITY_REQUIRED`).
    pub verity: bool,
    /// `appraise_algos=`: bit `1 << id` per allowed algorithm; `None` allows all.
    pub allowed_algos: Option<u32>,
}

impl Requirements {
    /// Whether `algo` passes the rule's `appraise_algos` list.
    pub fn algo_allowed(&self, algo: HashAlgo) -> bool {
        match self.allowed_algos {
            None | Some(0) => true,
            Some(mask) => algo.0 < 32 && mask & (1 << algo.0) != 0,
        }
    }
}

/// The result of reading `security.ima` (the syscall's outcome; the value itself is decoded
/// with [`XattrValue`] like everywhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImaXattr<'a> {
    /// The filesystem has no xattr support (`!(i_opflags & IOP_XATTR)`).
    Unsupported,
    /// `-ENODATA`.
    Absent,
    /// Reading failed otherwise (an errno other than ENODATA).
    Error,
    /// The raw value (a zero-length value is treated like an absent one).
    Value(&'a [u8]),
}

impl<'a> ImaXattr<'a> {
    fn value(self) -> Option<&'a [u8]> {
        match self {
            Self::Value(v) if !v.is_empty() => Some(v),
            _ => None,
        }
    }
}

/// `ima_get_hash_algo`: the algorithm the file must be hashed with for appraisal and
/// measurement, from `security.ima` when it names one ([`xattr::ima_hash_algo`], which
/// decodes it with [`XattrValue`]), else `default` (`ima_hash`).
pub fn hash_algo(xattr: Option<&[u8]>, default: HashAlgo) -> HashAlgo {
    xattr.and_then(xattr::ima_hash_algo).unwrap_or(default)
}

/// Why IMA refuses a write or removal of `security.ima` (`ima_inode_setxattr`,
/// `ima_inode_removexattr`): the errno, and the `op=set_data` audit cause when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetxattrRefused {
    pub errno: &'static str,
    pub cause: Option<&'static str>,
}

impl fmt::Display for SetxattrRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.errno)?;
        if let Some(c) = self.cause {
            write!(f, " [audit op=set_data cause={c}]")?;
        }
        Ok(())
    }
}

/// `ima_inode_setxattr` for `security.ima` (`value`; `None` is `ima_inode_removexattr`),
/// which the kernel runs before EVM's hook: CAP_SYS_ADMIN (`ima_protect_xattr`, EPERM); a
/// non-empty value of a defined type (EINVAL); and `validate_hash_algo`: the algorithm the
/// value names ([`hash_algo`], else `ima_hash`) must be in the SETXATTR_CHECK rule's
/// `appraise_algos` when one is loaded (`setxattr_algos`, bit `1 << id`;
/// `denied-hash-algorithm`), otherwise be `ima_hash` or one the kernel can compute
/// (`unavailable-hash-algorithm`); both EACCES.
pub fn inode_setxattr(
    value: Option<&[u8]>,
    ima_hash: HashAlgo,
    setxattr_algos: Option<u32>,
    cap_sys_admin: bool,
) -> Result<(), SetxattrRefused> {
    let refuse = |errno, cause| Err(SetxattrRefused { errno, cause });
    if !cap_sys_admin {
        return refuse("EPERM", None);
    }
    let Some(v) = value else {
        return Ok(());
    };
    if v.first().is_none_or(|&t| t >= XattrType::LAST) {
        return refuse("EINVAL", None);
    }
    let algo = hash_algo(Some(v), ima_hash);
    match setxattr_algos.filter(|&m| m != 0) {
        Some(mask) if algo.0 < 32 && mask & (1 << algo.0) != 0 => Ok(()),
        Some(_) => refuse("EACCES", Some("denied-hash-algorithm")),
        None if algo == ima_hash || algo.is_supported() => Ok(()),
        None => refuse("EACCES", Some("unavailable-hash-algorithm")),
    }
}

/// `ima_fix_xattr`: the `security.ima` value for a collected digest: `01 || digest` for
/// md4, md5 and sha1, else `04 || algo || digest`.
pub fn hash_xattr(digest: &Digest) -> Vec<u8> {
    XattrValue::from_digest(digest).to_vec()
}

/// Proof that a file passed appraisal. Zero-sized; only a pass of [`appraise`], or a fix
/// [`Appraisal::apply_fix`] wrote, makes one, so code that needs it by value cannot allow an
/// unappraised file.
#[derive(Debug, PartialEq, Eq)]
pub struct Appraised {
    _private: (),
}

/// A non-passing result: the status and the cause the kernel audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub cause: Cause,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cause, self.status)
    }
}

/// Pass (with its proof) or fail (with the kernel's status and cause).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass(Appraised),
    Fail(Failure),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Self::Pass(_))
    }

    pub fn failure(&self) -> Option<Failure> {
        match self {
            Self::Pass(_) => None,
            Self::Fail(f) => Some(*f),
        }
    }
}

/// The inputs of one appraisal.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub mode: Mode,
    pub req: Requirements,
    pub ima: ImaXattr<'a>,
    /// The file digest collected with [`hash_algo`]'s algorithm; `None` if hashing failed.
    pub digest: Option<Digest>,
    /// What `evm_verifyxattr(security.ima)` returned.
    pub evm: Status,
    /// The file was created by this open (`FMODE_CREATED` / `IMA_NEW_FILE`).
    pub new_file: bool,
    /// `i_size`.
    pub size: u64,
}

/// The decision, plus what fix mode would write. Only [`appraise`] makes one, and its fields
/// are read through accessors, so a pass in it is always [`appraise`]'s or an applied fix's.
#[derive(Debug, PartialEq, Eq)]
pub struct Appraisal {
    verdict: Verdict,
    fix: Option<Vec<u8>>,
    audit: Option<Failure>,
    digsig: bool,
}

impl Appraisal {
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The verdict by value (a pass carries its [`Appraised`] token).
    pub fn into_verdict(self) -> Verdict {
        self.verdict
    }

    /// In fix mode, the `security.ima` value `ima_fix_xattr` would write (see
    /// [`Appraisal::apply_fix`]).
    pub fn fix(&self) -> Option<&[u8]> {
        self.fix.as_deref()
    }

    /// The failure the kernel audits even when the final verdict is a pass (fix mode, or a
    /// new empty signed file).
    pub fn audit(&self) -> Option<Failure> {
        self.audit
    }

    /// `IMA_DIGSIG`: the file is signed (or protected by a portable EVM signature), so the
    /// kernel refuses to open it for write and never rewrites its label.
    pub fn digsig(&self) -> bool {
        self.digsig
    }

    /// Whether access is denied (only in enforce mode).
    pub fn denied(&self, mode: Mode) -> bool {
        mode == Mode::Enforce && !self.verdict.is_pass()
    }

    /// Fix mode (`ima_fix_xattr`): hands [`Appraisal::fix`] to `write`, which must write it
    /// as `security.ima` of the file appraised, and only when `write` succeeded turns the
    /// result into the kernel's PASS (the failure stays in [`Appraisal::audit`]). Without a
    /// fix, `write` is not called and nothing changes. A failed write leaves the failure;
    /// it comes back with the error.
    pub fn apply_fix<E>(
        mut self,
        write: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<Self, (Self, E)> {
        let Some(fix) = self.fix.take() else {
            return Ok(self);
        };
        match write(&fix) {
            Ok(()) => {
                self.verdict = Verdict::Pass(Appraised { _private: () });
                Ok(self)
            }
            Err(e) => {
                self.fix = Some(fix);
                Err((self, e))
            }
        }
    }
}

/// `ima_appraise_measurement` + the `appraise_algos` check. `ima_keyring` is the `.ima`
/// keyring signatures are verified against.
pub fn appraise(r: &Request<'_>, ima_keyring: &dyn Verifier) -> Appraisal {
    let fail = |status, cause| Failure { status, cause };
    let mut digsig = false;
    let xattr = r.ima.value();

    let mut result: Result<(), Failure> = (|| {
        if r.ima == ImaXattr::Unsupported {
            return Err(fail(Status::Unknown, Cause::Unknown));
        }
        let Some(x) = xattr else {
            if r.ima == ImaXattr::Error {
                return Err(fail(Status::Unknown, Cause::Unknown));
            }
            if r.new_file && (!r.req.digsig || r.size == 0) {
                return Ok(());
            }
            let cause = match (r.req.digsig, r.req.verity) {
                (true, true) => Cause::VeritySignatureRequired,
                (true, false) => Cause::ImaSignatureRequired,
                _ => Cause::MissingHash,
            };
            return Err(fail(Status::NoLabel, cause));
        };
        match r.evm {
            Status::Pass | Status::PassImmutable | Status::Unknown => {}
            Status::NoXattrs | Status::NoLabel => {
                return Err(fail(r.evm, Cause::MissingHmac));
            }
            Status::FailImmutable => {
                digsig = true;
                return Err(fail(r.evm, Cause::InvalidFailImmutable));
            }
            Status::Fail => return Err(fail(r.evm, Cause::InvalidHmac)),
        }
        let Some(digest) = r.digest else {
            return Err(fail(Status::Fail, Cause::CollectFailed));
        };
        xattr_verify(r, x, &digest, ima_keyring, &mut digsig)
    })();

    // process_measurement: collect failures skip appraisal; appraise_algos is checked after.
    if let (Ok(()), Some(d)) = (&result, r.digest)
        && !r.req.algo_allowed(d.algo())
    {
        result = Err(fail(Status::Fail, Cause::DeniedHashAlgorithm));
    }

    match result {
        Ok(()) => Appraisal {
            verdict: Verdict::Pass(Appraised { _private: () }),
            fix: None,
            audit: None,
            digsig,
        },
        Err(f) => {
            let unsupported = r.ima == ImaXattr::Unsupported;
            let is_sig = xattr.is_some_and(|x| x[0] == 0x03);
            let fix = match (r.mode, r.digest) {
                (Mode::Fix, Some(d))
                    if !unsupported && !is_sig && f.cause.op() == "appraise_data" =>
                {
                    Some(hash_xattr(&d))
                }
                _ => None,
            };
            let empty_new_signed = r.size == 0 && r.new_file && digsig;
            let verdict = if empty_new_signed {
                Verdict::Pass(Appraised { _private: () })
            } else {
                Verdict::Fail(f)
            };
            Appraisal {
                verdict,
                fix,
                audit: (!unsupported).then_some(f),
                digsig,
            }
        }
    }
}

/// `xattr_verify`, for a non-empty value.
fn xattr_verify(
    r: &Request<'_>,
    x: &[u8],
    digest: &Digest,
    keyring: &dyn Verifier,
    digsig: &mut bool,
) -> Result<(), Failure> {
    let fail = |status, cause| Err(Failure { status, cause });
    match XattrType(x[0]) {
        XattrType::DIGEST | XattrType::DIGEST_NG => {
            if r.evm != Status::PassImmutable {
                if r.req.digsig {
                    let cause = if r.req.verity {
                        Cause::VeritySignatureRequired
                    } else {
                        Cause::ImaSignatureRequired
                    };
                    return fail(Status::Fail, cause);
                }
            } else {
                *digsig = true;
            }
            // The stored digest may be longer than the computed one (md5 in a 20-byte
            // slot); a 0x04 without its algorithm byte holds no digest at all.
            match XattrValue::from_bytes(x) {
                Ok(v) if v.matches_digest(digest) => Ok(()),
                _ => fail(Status::Fail, Cause::InvalidHash),
            }
        }
        // Signatures are decoded by `digsig_verify` (the same `Signature` codec); the
        // version byte is read first, as the kernel does, even when the framing is bad.
        XattrType::DIGSIG => {
            *digsig = true;
            if r.req.digsig && r.req.verity {
                return fail(Status::Fail, Cause::VeritySignatureRequired);
            }
            if x.get(1).is_some_and(|&v| v >= 3) {
                return fail(Status::Fail, Cause::InvalidSignatureVersion);
            }
            match digsig_verify(keyring, x, digest) {
                Ok(()) => Ok(()),
                Err(DigsigError::Unsupported(_)) => fail(Status::Unknown, Cause::Unknown),
                Err(_) => fail(Status::Fail, Cause::InvalidSignature),
            }
        }
        XattrType::VERITY_DIGSIG => {
            *digsig = true;
            if r.req.digsig && !r.req.verity {
                return fail(Status::Fail, Cause::ImaSignatureRequired);
            }
            if x.get(1) != Some(&3) {
                return fail(Status::Fail, Cause::InvalidSignatureVersion);
            }
            let Ok(id) = file_id_hash(XattrType::VERITY_DIGSIG, digest) else {
                return fail(Status::Fail, Cause::Sigv3HashingError);
            };
            match digsig_verify(keyring, x, &id) {
                Ok(()) => Ok(()),
                Err(_) => fail(Status::Fail, Cause::InvalidVeritySignature),
            }
        }
        _ => fail(Status::Unknown, Cause::UnknownImaData),
    }
}

#[cfg(test)]
mod tests;
