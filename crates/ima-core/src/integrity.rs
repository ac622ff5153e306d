//! The primitives IMA and EVM share: the integrity status every appraisal ends in and the
//! type byte that starts every `security.ima`/`security.evm` value. Both `appraise` and `evm`
//! (and `xattr` and `digsig`) build on this module and on nothing that builds on them.
//!
//! Mirrors `security/integrity/integrity.h` (`enum integrity_status`, `enum
//! evm_ima_xattr_type`). Its verification entry point, `integrity_digsig_verify`
//! (`security/integrity/digsig.c`), is [`crate::digsig::digsig_verify`].

use std::fmt;
use std::str::FromStr;

/// `enum integrity_status`, displayed with EVM's audit spelling.
///
/// ```text
/// enum integrity_status {
///     INTEGRITY_PASS = 0, INTEGRITY_PASS_IMMUTABLE, INTEGRITY_FAIL, INTEGRITY_FAIL_IMMUTABLE,
///     INTEGRITY_NOLABEL, INTEGRITY_NOXATTRS, INTEGRITY_UNKNOWN,
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pass,
    PassImmutable,
    Fail,
    FailImmutable,
    NoLabel,
    NoXattrs,
    Unknown,
}

impl Status {
    pub const ALL: [Self; 7] = [
        Self::Pass,
        Self::PassImmutable,
        Self::Fail,
        Self::FailImmutable,
        Self::NoLabel,
        Self::NoXattrs,
        Self::Unknown,
    ];

    /// `integrity_status_msg[]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::PassImmutable => "pass_immutable",
            Self::Fail => "fail",
            Self::FailImmutable => "fail_immutable",
            Self::NoLabel => "no_label",
            Self::NoXattrs => "no_xattrs",
            Self::Unknown => "unknown",
        }
    }

    pub fn is_pass(self) -> bool {
        matches!(self, Self::Pass | Self::PassImmutable)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A string that names no [`Status`] (nor an appraisal `Cause` or `Mode`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// The type byte that starts every `security.ima`/`security.evm` value
/// (`enum evm_ima_xattr_type`). Unknown values are representable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XattrType(pub u8);

impl XattrType {
    /// `IMA_XATTR_DIGEST`: `01 || digest`, md5 or sha1 without an algorithm byte.
    pub const DIGEST: Self = Self(0x01);
    /// `EVM_XATTR_HMAC`: `02 || HMAC-SHA1(metadata)` (security.evm).
    pub const EVM_HMAC: Self = Self(0x02);
    /// `EVM_IMA_XATTR_DIGSIG`: `03 || signature_v2_hdr || sig` (both attributes).
    pub const DIGSIG: Self = Self(0x03);
    /// `IMA_XATTR_DIGEST_NG`: `04 || algo || digest`.
    pub const DIGEST_NG: Self = Self(0x04);
    /// `EVM_XATTR_PORTABLE_DIGSIG`: `05 || signature_v2_hdr || sig` (security.evm).
    pub const EVM_PORTABLE_DIGSIG: Self = Self(0x05);
    /// `IMA_VERITY_DIGSIG`: `06 || signature_v2_hdr (version 3) || sig`.
    pub const VERITY_DIGSIG: Self = Self(0x06);
    /// `IMA_XATTR_LAST`: the first value the kernel does not define.
    pub const LAST: u8 = 0x07;

    /// The kernel's enumerator name, or `None` for an unknown value.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::DIGEST => "IMA_XATTR_DIGEST",
            Self::EVM_HMAC => "EVM_XATTR_HMAC",
            Self::DIGSIG => "EVM_IMA_XATTR_DIGSIG",
            Self::DIGEST_NG => "IMA_XATTR_DIGEST_NG",
            Self::EVM_PORTABLE_DIGSIG => "EVM_XATTR_PORTABLE_DIGSIG",
            Self::VERITY_DIGSIG => "IMA_VERITY_DIGSIG",
            _ => return None,
        })
    }

    /// Whether values of this type start with a `signature_v2_hdr` (0x03, 0x05, 0x06).
    pub fn is_signature(self) -> bool {
        matches!(
            self,
            Self::DIGSIG | Self::EVM_PORTABLE_DIGSIG | Self::VERITY_DIGSIG
        )
    }
}

impl fmt::Display for XattrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "xattr type 0x{:02x}", self.0),
        }
    }
}

impl fmt::Debug for XattrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XattrType(0x{:02x})", self.0)
    }
}
