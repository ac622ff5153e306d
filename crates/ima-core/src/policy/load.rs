//! Loading policies at run time: the boot list until the first successful load, then the
//! custom list (seeded with arch and build-time rules); all-or-nothing loads; append (the
//! kernel's only mode) or replace (extension); the signed-policy requirement; and the
//! version anti-rollback check (extension).
//!
//! Mirrors `ima_write_policy`/`ima_release_policy` (`ima_fs.c`) and `ima_update_policy`,
//! `ima_check_policy` (`ima_policy.c`).

use super::defaults::BootPolicy;
use super::{Policy, PolicyRule};

/// How a loaded policy combines with the active custom rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// The kernel's behaviour: new rules are appended after the active ones.
    Append,
    /// Extension: the new rules replace the previously loaded ones (the boot-time seed of
    /// arch and build rules stays in front).
    Replace,
}

/// Where the policy came from, as the kernel distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// Rules written literally to the securityfs file.
    Literal,
    /// A policy file named by path; `signature_valid` says whether its `security.ima`
    /// signature was verified by the caller against the IMA keyring.
    File { signature_valid: bool },
}

/// Why a load was refused. The active policy is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("the policy has no rules (the kernel refuses an empty policy update)")]
    Empty,
    #[error("a policy was already loaded and further loads need CONFIG_IMA_WRITE_POLICY")]
    AlreadyLoaded,
    #[error(
        "signed policy required: the active policy appraises POLICY_CHECK, so rules must come from a file with a valid security.ima signature"
    )]
    SignatureRequired,
    #[error("policy version {new:?} is lower than the active version {active} (anti-rollback)")]
    Rollback { active: u64, new: Option<u64> },
}

/// The policy state of one system: boot rules, custom rules, and which list is active.
#[derive(Clone, Debug)]
pub struct PolicyState {
    boot: Policy,
    custom: Policy,
    seed_len: usize,
    custom_active: bool,
    write_policy: bool,
    version: Option<u64>,
}

impl PolicyState {
    /// The state right after boot with `boot` as configuration.
    pub fn new(boot: &BootPolicy) -> PolicyState {
        let custom = Policy {
            fail_securely: boot.fail_securely,
            ..Policy::from_rules(boot.custom_seed())
        };
        PolicyState {
            boot: boot.default_policy(),
            seed_len: custom.rules.len(),
            custom,
            custom_active: false,
            write_policy: boot.write_policy,
            version: None,
        }
    }

    /// The list `ima_match_policy` walks now.
    pub fn active(&self) -> &Policy {
        if self.custom_active {
            &self.custom
        } else {
            &self.boot
        }
    }

    /// Whether a custom policy has been loaded.
    pub fn custom_loaded(&self) -> bool {
        self.custom_active
    }

    /// The active anti-rollback version, if a versioned policy was loaded.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// `IMA_APPRAISE_POLICY`: any boot or loaded rule appraises POLICY_CHECK, so new
    /// policies must be signed files.
    pub fn requires_signed_policy(&self) -> bool {
        self.boot.requires_signed_policy() || self.custom.requires_signed_policy()
    }

    /// Loads `new` (already parsed, so already all-or-nothing). On error nothing changes.
    pub fn load(
        &mut self,
        new: Policy,
        source: PolicySource,
        mode: LoadMode,
    ) -> Result<(), LoadError> {
        if self.requires_signed_policy()
            && !matches!(
                source,
                PolicySource::File {
                    signature_valid: true
                }
            )
        {
            return Err(LoadError::SignatureRequired);
        }
        if new.rules.is_empty() {
            return Err(LoadError::Empty);
        }
        if self.custom_active && !self.write_policy && mode == LoadMode::Append {
            return Err(LoadError::AlreadyLoaded);
        }
        if let Some(active) = self.version
            && new.version.is_none_or(|v| v < active)
        {
            return Err(LoadError::Rollback {
                active,
                new: new.version,
            });
        }
        if mode == LoadMode::Replace {
            self.custom.rules.truncate(self.seed_len);
        }
        let base = self.custom.rules.len();
        self.custom
            .rules
            .extend(new.rules.into_iter().enumerate().map(|(i, r)| PolicyRule {
                line: if r.line == 0 { base + i + 1 } else { r.line },
                ..r
            }));
        if new.version.is_some() {
            self.version = new.version;
        }
        self.custom_active = true;
        Ok(())
    }
}

/// Why a policy file's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicySignatureError {
    #[error("no security.ima: a signed policy is required")]
    Missing,
    #[error("security.ima is not a signature (type {0:#04x}): a signed policy is required")]
    NotASignature(u8),
    #[error("security.ima: {0}")]
    Decode(#[from] crate::codec::DecodeError),
    #[error(
        "signature version {0} cannot sign a policy file (appraise_type=imasig needs version 2)"
    )]
    Version(u8),
    #[error("signature: {0}")]
    Verify(#[from] crate::digsig::VerifyError),
}

/// The appraisal the kernel applies to a policy file under `appraise func=POLICY_CHECK
/// appraise_type=imasig`: `security_ima` must hold a version-2 signature over the file's
/// digest that `verifier` (the `.ima` keyring) accepts. On success the file may be loaded
/// as [`PolicySource::File`] with `signature_valid: true`.
pub fn verify_policy_signature(
    contents: &[u8],
    security_ima: Option<&[u8]>,
    verifier: &impl crate::digsig::Verifier,
) -> Result<(), PolicySignatureError> {
    use crate::codec::Codec as _;
    use crate::xattr::XattrValue;
    let raw = security_ima.ok_or(PolicySignatureError::Missing)?;
    let sig = match XattrValue::from_bytes(raw)? {
        XattrValue::Signature(s) => s,
        other => return Err(PolicySignatureError::NotASignature(other.kind().0)),
    };
    if sig.version != 2 {
        return Err(PolicySignatureError::Version(sig.version));
    }
    let digest = sig
        .hash_algo
        .digest(contents)
        .map_err(|e| crate::digsig::VerifyError::UnsupportedHash(e.0))?;
    sig.verify(verifier, &digest)?;
    Ok(())
}
