//! What EVM does around a metadata change: whether the kernel lets a `chmod`/`chown`,
//! `setxattr` or `removexattr` go ahead given the inode's current EVM status, and which
//! `security.evm` it writes before (a verified 0x03 signature becomes an HMAC) and after
//! (the HMAC is recomputed, or `security.evm` removed). Pure decisions over values; the
//! caller performs the writes.
//!
//! Mirrors the LSM hooks of `security/integrity/evm/evm_main.c` (`evm_inode_setattr`,
//! `evm_inode_setxattr`, `evm_inode_removexattr`, their `evm_protect_xattr` core and the
//! `evm_inode_post_*` hooks), `evm_verify_hmac`'s in-place conversion, and
//! `evm_update_evmxattr`/`evm_is_immutable` in `evm_crypto.c`. Written from Linux 6.1;
//! later kernels add `SB_I_EVM_HMAC_UNSUPPORTED` filesystems ([`InodeFacts::hmac_unsupported`]).

use std::fmt;

use super::{EvmConfig, EvmKeys, HMAC_XATTR_LEN, HmacKey, Inode, MessageError, XATTR_EVM};
use crate::codec::{Codec, DecodeError, Reader};
use crate::integrity::Status;

/// `XATTR_NAME_POSIX_ACL_ACCESS` and `XATTR_NAME_POSIX_ACL_DEFAULT`: not protected, but
/// writing them can change `i_mode`, so EVM guards them too (`posix_xattr_acl`).
pub const XATTR_POSIX_ACL_ACCESS: &str = "system.posix_acl_access";
pub const XATTR_POSIX_ACL_DEFAULT: &str = "system.posix_acl_default";

/// The `evm_initialized` bits and boot option the hooks consult besides the keys
/// ([`EvmKeys`] stands for `EVM_INIT_HMAC` and `EVM_INIT_X509`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvmFlags {
    /// `EVM_ALLOW_METADATA_WRITES`: protected metadata may change whatever the status (only
    /// settable while no HMAC key is loaded; loading one clears it).
    pub allow_metadata_writes: bool,
    /// `EVM_SETUP_COMPLETE`: no HMAC key can be loaded any more (loading one sets it).
    pub setup_complete: bool,
    /// `evm=fix` on the kernel command line: the current status is not checked.
    pub fix_mode: bool,
}

impl EvmFlags {
    /// `evm_hmac_disabled` (`evm_ignore_error_safe` in the patch series that added it): no
    /// HMAC key is loaded and none ever can be, so letting an unverifiable inode change cannot
    /// make it valid.
    pub fn hmac_disabled(&self, keys: &EvmKeys<'_>) -> bool {
        keys.hmac.is_none() && self.setup_complete
    }
}

/// What the hooks know about the inode besides its xattrs and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeFacts {
    /// `S_ISREG`: only regular files are verified before a change.
    pub regular: bool,
    /// Not `IS_RDONLY`, not `s_readonly_remount`, not `IS_IMMUTABLE` (chattr +i): the
    /// conversion of a verified 0x03 signature to an HMAC happens only then.
    pub writable: bool,
    /// `IMA_NEW_FILE` (6.1; `EVM_NEW_FILE` later): created and not yet closed.
    pub new_file: bool,
    /// tmpfs or sysfs: exempt when the inode has no protected xattr.
    pub pseudo_fs: bool,
    /// `SB_I_EVM_HMAC_UNSUPPORTED` (Linux 6.9+, e.g. overlayfs); false on 6.1.
    pub hmac_unsupported: bool,
}

impl Default for InodeFacts {
    /// A regular file on a writable, ordinary filesystem.
    fn default() -> Self {
        Self {
            regular: true,
            writable: true,
            new_file: false,
            pseudo_fs: false,
            hmac_unsupported: false,
        }
    }
}

/// One metadata operation as the VFS hands it to EVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// `notify_change` with `ATTR_MODE`/`ATTR_UID`/`ATTR_GID` (chmod, chown): the new full
    /// `i_mode` and owner, `None` for what is not being set.
    SetAttr {
        mode: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `setxattr(2)` of `name` to `value`.
    SetXattr { name: &'a str, value: &'a [u8] },
    /// `removexattr(2)` of `name`.
    RemoveXattr { name: &'a str },
}

impl Change<'_> {
    /// `chmod(2)` to the permission bits `perm` (07777): the new `i_mode` keeps the type.
    pub fn chmod(current_mode: u16, perm: u16) -> Self {
        Self::SetAttr {
            mode: Some((current_mode & !0o7777) | (perm & 0o7777)),
            uid: None,
            gid: None,
        }
    }

    /// `chown(2)`: for anything but a directory the VFS also asks to drop set-user-ID, and
    /// set-group-ID when group-executable (`chown_common`, `notify_change`), which EVM then
    /// sees as an `ATTR_MODE` change.
    pub fn chown(current_mode: u16, uid: Option<u32>, gid: Option<u32>) -> Self {
        let mut mode = current_mode;
        if current_mode & 0o170000 != 0o040000 {
            mode &= !0o4000;
            if mode & 0o2010 == 0o2010 {
                mode &= !0o2000;
            }
        }
        Self::SetAttr {
            mode: (mode != current_mode).then_some(mode),
            uid,
            gid,
        }
    }

    /// The inode as it is after the change.
    pub fn apply(&self, inode: &Inode) -> Inode {
        let mut after = inode.clone();
        match *self {
            Self::SetAttr { mode, uid, gid } => {
                after.meta.mode = mode.unwrap_or(after.meta.mode);
                after.meta.uid = uid.unwrap_or(after.meta.uid);
                after.meta.gid = gid.unwrap_or(after.meta.gid);
            }
            Self::SetXattr { name, value } => {
                after.xattrs.insert(name.to_owned(), value.to_vec());
            }
            Self::RemoveXattr { name } => {
                after.xattrs.remove(name);
            }
        }
        after
    }
}

/// The errno a refused operation fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// `EPERM`
    Perm,
    /// `EINVAL`
    Inval,
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Perm => "EPERM (Operation not permitted)",
            Self::Inval => "EINVAL (Invalid argument)",
        })
    }
}

/// Why the kernel refuses a change: the errno, the EVM status that decided (when one was
/// computed) and the `AUDIT_INTEGRITY_METADATA` operations it logs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub errno: Errno,
    pub status: Option<Status>,
    /// `"update_metadata"`, `"appraise_metadata"`.
    pub audit: Vec<&'static str>,
    /// What the kernel code checked, in words.
    pub reason: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno, self.reason)?;
        if let Some(s) = self.status {
            write!(f, " (EVM status {s})")?;
        }
        for op in &self.audit {
            write!(f, " [audit op={op}]")?;
        }
        Ok(())
    }
}

/// What happens to `security.evm` when the kernel (re)computes it (`evm_update_evmxattr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvmUpdate {
    /// Written as this HMAC (type 0x02).
    Set([u8; HMAC_XATTR_LEN]),
    /// Removed: no enabled protected xattr is left (`-ENODATA` from the HMAC).
    Remove,
    /// Left alone: a portable signature is never transformed (`evm_is_immutable`, `-EPERM`).
    Immutable,
}

/// `evm_update_evmxattr` for the inode as it now is: the kernel's HMAC, or removal when no
/// enabled protected xattr remains; a portable (0x05) `security.evm` is left untouched.
pub fn update_evmxattr(cfg: &EvmConfig, key: &HmacKey, inode: &Inode) -> EvmUpdate {
    if inode.xattrs.get(XATTR_EVM).and_then(|v| v.first()) == Some(&0x05) {
        return EvmUpdate::Immutable;
    }
    match key.xattr(cfg, inode) {
        Ok(v) => EvmUpdate::Set(v),
        // An HMAC message cannot lack security.ima (only portable ones can): the only
        // failure is "nothing to protect".
        Err(MessageError::NoXattrs | MessageError::PortableWithoutIma) => EvmUpdate::Remove,
    }
}

/// Whether `evm_verify_hmac`, having verified `inode`'s `security.evm` with `status`,
/// replaces it with an HMAC: a type 0x03 signature that verified, an HMAC key loaded (else
/// `evm_calc_hmac` fails with `-ENOKEY` and nothing is written) and a writable inode.
pub fn converts_to_hmac(
    keys: &EvmKeys<'_>,
    facts: &InodeFacts,
    inode: &Inode,
    status: Status,
) -> bool {
    status == Status::Pass
        && keys.hmac.is_some()
        && inode.xattrs.get(XATTR_EVM).and_then(|v| v.first()) == Some(&0x03)
        && facts.writable
        && !facts.hmac_unsupported
}

/// What the kernel does around one allowed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The pre-hook verified a 0x03 signature and rewrote it as this HMAC before the change.
    pub converted: Option<[u8; HMAC_XATTR_LEN]>,
    /// The post-hook recomputes `security.evm` over the changed inode
    /// ([`update_evmxattr`] on the state after the change).
    pub update: bool,
}

/// Everything the pre-hook needs.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub cfg: &'a EvmConfig,
    pub keys: &'a EvmKeys<'a>,
    pub flags: EvmFlags,
    pub facts: InodeFacts,
    /// `capable(CAP_SYS_ADMIN)` of the caller.
    pub cap_sys_admin: bool,
    /// The caller is in the file's group or has CAP_FSETID: setting an ACL keeps the
    /// set-group-ID bit (`posix_acl_update_mode`).
    pub keeps_sgid: bool,
}

/// The kernel's decision for `change` on `inode` (whose `xattrs` hold the protected xattrs
/// and `security.evm`): refused with its errno, or allowed with what happens to
/// `security.evm` before and after. The EVM status is computed only where the kernel
/// computes it (with [`super::verify`]), since only then can the 0x03 → HMAC conversion
/// happen.
pub fn decide(ctx: &Context<'_>, inode: &Inode, change: &Change<'_>) -> Result<Plan, Refused> {
    // The status evm_verify_hmac returned, if the hook ran it.
    let mut verified = None;
    let current = || {
        if !ctx.keys.loaded() || !ctx.facts.regular || ctx.flags.fix_mode {
            // evm_verify_current_integrity: PASS without looking when no key is loaded,
            // the inode is not a regular file, or in `evm=fix` mode.
            return Status::Pass;
        }
        let s = super::verify(ctx.cfg, ctx.keys, inode).status;
        verified = Some(s);
        s
    };
    let pre = match *change {
        Change::SetAttr { mode, uid, gid } => inode_setattr(ctx, inode, mode, uid, gid, current),
        Change::SetXattr { name, value } => inode_setxattr(ctx, inode, name, value, current),
        Change::RemoveXattr { name } => {
            // evm_inode_removexattr
            if ctx.flags.allow_metadata_writes {
                Ok(())
            } else {
                protect_xattr(ctx, inode, name, &[], current)
            }
        }
    };
    // A conversion needs a verified PASS, and PASS always lets the change through, so a
    // refused change never converted anything.
    pre?;
    let converted = match (verified, ctx.keys.hmac) {
        (Some(s), Some(key)) if converts_to_hmac(ctx.keys, &ctx.facts, inode, s) => {
            match update_evmxattr(ctx.cfg, key, inode) {
                EvmUpdate::Set(v) => Some(v),
                EvmUpdate::Remove | EvmUpdate::Immutable => None,
            }
        }
        _ => None,
    };
    Ok(Plan {
        converted,
        update: post_update(ctx, change),
    })
}

/// Why a non-passing status blocks a change, in words.
fn why_not(status: Status) -> &'static str {
    match status {
        Status::NoLabel => "protected xattrs exist but security.evm does not",
        Status::NoXattrs => "no protected xattr yet and an HMAC could be computed",
        Status::Unknown => "the EVM status cannot be determined",
        _ => "the current security.evm does not verify",
    }
}

fn refuse(errno: Errno, status: Option<Status>, reason: &'static str) -> Refused {
    Refused {
        errno,
        status,
        audit: Vec::new(),
        reason,
    }
}

/// `evm_inode_setattr`.
fn inode_setattr(
    ctx: &Context<'_>,
    inode: &Inode,
    mode: Option<u16>,
    uid: Option<u32>,
    gid: Option<u32>,
    current: impl FnOnce() -> Status,
) -> Result<(), Refused> {
    if ctx.flags.allow_metadata_writes || ctx.facts.hmac_unsupported {
        return Ok(());
    }
    if mode.is_none() && uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let status = current();
    let hmac_disabled = ctx.flags.hmac_disabled(ctx.keys);
    if matches!(
        status,
        Status::Pass | Status::NoXattrs | Status::FailImmutable
    ) || (hmac_disabled && matches!(status, Status::NoLabel | Status::Unknown))
    {
        return Ok(());
    }
    // evm_attr_change: is any of the given values different from the inode's?
    let m = &inode.meta;
    let changes = mode.is_some_and(|v| v != m.mode)
        || uid.is_some_and(|v| v != m.uid)
        || gid.is_some_and(|v| v != m.gid);
    if status == Status::PassImmutable && !changes {
        return Ok(());
    }
    Err(Refused {
        audit: vec!["appraise_metadata"],
        ..refuse(
            Errno::Perm,
            Some(status),
            if status == Status::PassImmutable {
                "a portable signature covers mode and owner"
            } else {
                why_not(status)
            },
        )
    })
}

/// `evm_inode_setxattr`.
fn inode_setxattr(
    ctx: &Context<'_>,
    inode: &Inode,
    name: &str,
    value: &[u8],
    current: impl FnOnce() -> Status,
) -> Result<(), Refused> {
    if ctx.flags.allow_metadata_writes {
        return Ok(());
    }
    if name == XATTR_EVM {
        match value.first() {
            None => return Err(refuse(Errno::Inval, None, "empty security.evm")),
            Some(0x03 | 0x05) => {}
            Some(_) => {
                return Err(refuse(
                    Errno::Perm,
                    None,
                    "userspace may write only signatures (0x03, 0x05) to security.evm",
                ));
            }
        }
    }
    protect_xattr(ctx, inode, name, value, current)
}

/// `evm_protect_xattr`: `value` is the new value (empty for a removal).
fn protect_xattr(
    ctx: &Context<'_>,
    inode: &Inode,
    name: &str,
    value: &[u8],
    current: impl FnOnce() -> Status,
) -> Result<(), Refused> {
    let hmac_disabled = ctx.flags.hmac_disabled(ctx.keys);
    let mut audit = Vec::new();
    let status;
    if name == XATTR_EVM {
        if !ctx.cap_sys_admin {
            return Err(refuse(
                Errno::Perm,
                None,
                "security.evm needs CAP_SYS_ADMIN",
            ));
        }
        if ctx.facts.hmac_unsupported {
            return Err(refuse(
                Errno::Perm,
                None,
                "filesystem without EVM HMAC support",
            ));
        }
        status = current();
        if no_xattrs_allowed(ctx, hmac_disabled, status, &mut audit) {
            return Ok(());
        }
    } else if !ctx.cfg.xattrs.is_protected(name) {
        if !is_posix_acl(name) || ctx.facts.hmac_unsupported {
            return Ok(());
        }
        status = current();
        if matches!(status, Status::Pass | Status::NoXattrs) {
            return Ok(());
        }
    } else {
        if ctx.facts.hmac_unsupported {
            return Ok(());
        }
        status = current();
        if no_xattrs_allowed(ctx, hmac_disabled, status, &mut audit) {
            return Ok(());
        }
    }
    // The kernel's `out:` label.
    if hmac_disabled && matches!(status, Status::NoLabel | Status::Unknown) {
        return Ok(());
    }
    // Portable signatures are never updated, so other xattrs may change under a failing one.
    if status == Status::FailImmutable {
        return Ok(());
    }
    if status == Status::PassImmutable && !xattr_change(ctx, inode, name, value) {
        return Ok(());
    }
    if status == Status::Pass {
        return Ok(());
    }
    if status != Status::PassImmutable {
        audit.push("appraise_metadata");
    }
    Err(Refused {
        audit,
        ..refuse(
            Errno::Perm,
            Some(status),
            if status == Status::PassImmutable {
                "a portable signature covers this xattr"
            } else {
                why_not(status)
            },
        )
    })
}

/// The NOXATTRS branch of `evm_protect_xattr`: allowed when no HMAC will ever be computed,
/// for new files and on tmpfs/sysfs; otherwise audited as `update_metadata` and decided at
/// `out:` (where NOXATTRS is refused).
fn no_xattrs_allowed(
    ctx: &Context<'_>,
    hmac_disabled: bool,
    status: Status,
    audit: &mut Vec<&'static str>,
) -> bool {
    if status != Status::NoXattrs {
        return false;
    }
    if hmac_disabled || ctx.facts.new_file || ctx.facts.pseudo_fs {
        return true;
    }
    audit.push("update_metadata");
    false
}

/// `evm_xattr_change`: whether `value` differs from the current value (an absent xattr
/// always differs). A POSIX ACL is a change when it would change `i_mode`
/// (`evm_xattr_acl_change`, 6.1): an ACL that does not parse, an empty one (or a removal)
/// always is.
fn xattr_change(ctx: &Context<'_>, inode: &Inode, name: &str, value: &[u8]) -> bool {
    if is_posix_acl(name) {
        let mode = inode.meta.mode;
        return match PosixAcl::from_bytes(value) {
            Ok(acl) if !acl.0.is_empty() => acl.mode_after(mode, ctx.keeps_sgid) != Some(mode),
            _ => true,
        };
    }
    inode.xattrs.get(name).is_none_or(|cur| cur[..] != *value)
}

/// A POSIX ACL as stored in `system.posix_acl_access`/`_default` (`posix_acl_xattr_header`
/// version 2, then `posix_acl_xattr_entry`s, all little-endian).
///
/// ```text
/// struct posix_acl_xattr_header { __le32 a_version; };
/// struct posix_acl_xattr_entry { __le16 e_tag; __le16 e_perm; __le32 e_id; };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixAcl(pub Vec<AclEntry>);

/// One `posix_acl_xattr_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

impl AclEntry {
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
}

/// `POSIX_ACL_XATTR_VERSION`.
const ACL_XATTR_VERSION: u32 = 2;

impl<'a> Codec<'a> for PosixAcl {
    /// `posix_acl_from_xattr`: version 2, a whole number of entries, known tags, and a
    /// valid id (not `(uid_t)-1`) for named users and groups.
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if r.u32_le("ACL version")? != ACL_XATTR_VERSION {
            return Err(r.invalid("ACL version", "not POSIX_ACL_XATTR_VERSION (2)"));
        }
        if !r.remaining().is_multiple_of(8) {
            return Err(r.invalid("ACL entries", "not a whole number of 8-byte entries"));
        }
        let mut entries = Vec::with_capacity(r.remaining() / 8);
        while !r.is_empty() {
            let e = AclEntry {
                tag: r.u16_le("ACL tag")?,
                perm: r.u16_le("ACL perm")?,
                id: r.u32_le("ACL id")?,
            };
            match e.tag {
                AclEntry::USER_OBJ | AclEntry::GROUP_OBJ | AclEntry::MASK | AclEntry::OTHER => {}
                AclEntry::USER | AclEntry::GROUP if e.id != u32::MAX => {}
                _ => return Err(r.invalid("ACL tag", format!("tag {:#x} id {}", e.tag, e.id))),
            }
            entries.push(e);
        }
        Ok(Self(entries))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ACL_XATTR_VERSION.to_le_bytes());
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
    }
}

impl PosixAcl {
    /// `posix_acl_update_mode`: the `i_mode` after setting this ACL on an inode whose mode
    /// is `mode` (`posix_acl_equiv_mode`: owner, group (or mask) and other permission bits
    /// from the entries; set-group-ID dropped unless the caller is in the file's group or
    /// has CAP_FSETID). `None` where the kernel fails (a tag it does not know).
    pub fn mode_after(&self, mode: u16, keeps_sgid: bool) -> Option<u16> {
        let mut bits = 0u16;
        for e in &self.0 {
            let p = e.perm & 0o7;
            match e.tag {
                AclEntry::USER_OBJ => bits |= p << 6,
                AclEntry::GROUP_OBJ => bits |= p << 3,
                AclEntry::OTHER => bits |= p,
                AclEntry::MASK => bits = (bits & !0o070) | (p << 3),
                AclEntry::USER | AclEntry::GROUP => {}
                _ => return None,
            }
        }
        let mut m = (mode & !0o777) | bits;
        if !keeps_sgid {
            m &= !0o2000;
        }
        Some(m)
    }
}

/// `posix_xattr_acl`.
pub fn is_posix_acl(name: &str) -> bool {
    name == XATTR_POSIX_ACL_ACCESS || name == XATTR_POSIX_ACL_DEFAULT
}

/// Whether the post-hook of an allowed `change` recomputes `security.evm`
/// (`evm_inode_post_setattr`, `evm_inode_post_setxattr`, `evm_inode_post_removexattr`,
/// each gated by `evm_revalidate_status` and `EVM_INIT_HMAC`).
fn post_update(ctx: &Context<'_>, change: &Change<'_>) -> bool {
    if !ctx.keys.loaded() || ctx.keys.hmac.is_none() {
        return false;
    }
    match *change {
        Change::SetAttr { mode, uid, gid } => {
            !ctx.facts.hmac_unsupported && (mode.is_some() || uid.is_some() || gid.is_some())
        }
        Change::SetXattr { name, .. } => {
            name != XATTR_EVM
                && (ctx.cfg.xattrs.is_protected(name) || is_posix_acl(name))
                && !ctx.facts.hmac_unsupported
        }
        // evm_inode_post_removexattr has no unsupported-filesystem check.
        Change::RemoveXattr { name } => {
            name != XATTR_EVM && (ctx.cfg.xattrs.is_protected(name) || is_posix_acl(name))
        }
    }
}

#[cfg(test)]
mod tests;
