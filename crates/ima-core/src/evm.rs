//! EVM, the extended verification module: the message the kernel HMACs or signs over an
//! inode's protected `security.*` xattrs and metadata, the HMAC itself, and the kernel's
//! verification of `security.evm` (types 0x02 HMAC, 0x03 signature, 0x05 portable signature)
//! with the integrity status it yields. Callers gather the xattrs and the inode metadata and
//! hand them in as values; nothing here reads a file.
//!
//! Mirrors `security/integrity/evm/evm_crypto.c` (`evm_calc_hmac_or_hash`, `hmac_add_misc`)
//! and `security/integrity/evm/evm_main.c` (`evm_verify_hmac`, `evm_verifyxattr`). What the
//! kernel computes is followed byte for byte; where evmctl 1.4 differs (its `hmac` command
//! uses the `-a` algorithm and no fs UUID) the kernel wins.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{KeyInit, Mac};

use crate::codec::Endian;
use crate::digsig::{Verifier, digsig_verify};
use crate::hash::{Digest, HashAlgo};
use crate::integrity::Status;

pub mod protect;

/// `XATTR_NAME_EVM`.
pub const XATTR_EVM: &str = "security.evm";
/// `XATTR_NAME_IMA`.
pub const XATTR_IMA: &str = "security.ima";
/// `XATTR_NAME_SELINUX`.
pub const XATTR_SELINUX: &str = "security.selinux";
/// `XATTR_NAME_SMACK` and the extra SMACK names (`CONFIG_EVM_EXTRA_SMACK_XATTRS`).
pub const XATTR_SMACK: &str = "security.SMACK64";
pub const XATTR_SMACKEXEC: &str = "security.SMACK64EXEC";
pub const XATTR_SMACKTRANSMUTE: &str = "security.SMACK64TRANSMUTE";
pub const XATTR_SMACKMMAP: &str = "security.SMACK64MMAP";
/// `XATTR_NAME_APPARMOR`.
pub const XATTR_APPARMOR: &str = "security.apparmor";
/// `XATTR_NAME_CAPS`.
pub const XATTR_CAPS: &str = "security.capability";

/// `MAX_KEY_SIZE` in evm_crypto.c: the HMAC key is this many bytes, zero padded.
pub const HMAC_KEY_SIZE: usize = 128;
/// Length of a type 0x02 `security.evm` value (`sizeof(struct evm_xattr)`).
pub const HMAC_XATTR_LEN: usize = 21;
/// `sizeof(struct signature_v2_hdr)`: a signature value must be longer than this.
pub const SIG_HDR_LEN: usize = 9;

/// The three `security.evm` types, which also decide what the message covers.
///
/// ```text
/// EVM_XATTR_HMAC = 0x02, EVM_IMA_XATTR_DIGSIG = 0x03, EVM_XATTR_PORTABLE_DIGSIG = 0x05
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvmKind {
    /// 0x02: HMAC-SHA1 with the kernel's key; enabled xattrs, ino, generation, fs UUID.
    Hmac,
    /// 0x03: signature over the same message as the HMAC.
    Signature,
    /// 0x05: portable (immutable) signature: all listed xattrs present, no ino, generation or
    /// fs UUID, and `security.ima` is mandatory.
    Portable,
}

impl EvmKind {
    /// The xattr type byte.
    pub fn type_byte(self) -> u8 {
        match self {
            Self::Hmac => 0x02,
            Self::Signature => 0x03,
            Self::Portable => 0x05,
        }
    }

    /// The kind of a `security.evm` type byte.
    pub fn from_type_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x02 => Self::Hmac,
            0x03 => Self::Signature,
            0x05 => Self::Portable,
            _ => return None,
        })
    }
}

/// One entry of the protected-xattr list (`struct xattr_list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedXattr {
    pub name: String,
    /// Whether the kernel was built with the LSM that owns it. Disabled names still count
    /// for portable signatures and for "does the inode have protected xattrs".
    pub enabled: bool,
}

/// The ordered list of protected xattrs (`evm_config_xattrnames`). The order is the order
/// the values enter the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrList(Vec<ProtectedXattr>);

impl XattrList {
    /// The kernel's built-in list with each entry's config switch given:
    /// selinux, SMACK64, SMACK64EXEC, SMACK64TRANSMUTE, SMACK64MMAP, apparmor, ima,
    /// capability (the last always enabled).
    pub fn kernel(
        selinux: bool,
        smack: bool,
        extra_smack: bool,
        apparmor: bool,
        ima: bool,
    ) -> Self {
        let e = |name: &str, enabled| ProtectedXattr {
            name: name.to_owned(),
            enabled,
        };
        Self(vec![
            e(XATTR_SELINUX, selinux),
            e(XATTR_SMACK, smack),
            e(XATTR_SMACKEXEC, extra_smack),
            e(XATTR_SMACKTRANSMUTE, extra_smack),
            e(XATTR_SMACKMMAP, extra_smack),
            e(XATTR_APPARMOR, apparmor),
            e(XATTR_IMA, ima),
            e(XATTR_CAPS, true),
        ])
    }

    /// The list of a Debian/Ubuntu/Fedora-style kernel: SELinux, AppArmor and IMA appraisal
    /// built in, SMACK not (what Debian 12's 6.1 kernel prints at boot, see
    /// `testdata/kernel-6.1/g-evm-portable-sig/dmesg.txt`).
    pub fn distro() -> Self {
        Self::kernel(true, false, false, true, true)
    }

    /// evmctl's list (selinux, SMACK64, apparmor, ima, capability; with `--smack` the extra
    /// SMACK names too), every entry included.
    pub fn evmctl(smack: bool) -> Self {
        let mut l = Self::kernel(true, true, smack, true, true);
        if !smack {
            l.0.retain(|x| {
                ![XATTR_SMACKEXEC, XATTR_SMACKTRANSMUTE, XATTR_SMACKMMAP].contains(&x.name.as_str())
            });
        }
        l
    }

    /// Appends a name at runtime, as writing to securityfs `evm_xattrs` does.
    pub fn push(&mut self, name: &str) {
        if !self.0.iter().any(|x| x.name == name) {
            self.0.push(ProtectedXattr {
                name: name.to_owned(),
                enabled: true,
            });
        }
    }

    pub fn entries(&self) -> &[ProtectedXattr] {
        &self.0
    }

    /// `evm_protected_xattr`: whether `name` is an *enabled* protected xattr.
    pub fn is_protected(&self, name: &str) -> bool {
        self.0.iter().any(|x| x.enabled && x.name == name)
    }

    /// The names whose values enter the message of `kind`, in order.
    pub fn included(&self, kind: EvmKind) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |x| x.enabled || kind == EvmKind::Portable)
            .map(|x| x.name.as_str())
    }

    /// `evm_find_protected_xattrs`: how many listed xattrs (enabled or not) `xattrs` holds.
    pub fn count_present(&self, xattrs: &Xattrs) -> usize {
        self.0
            .iter()
            .filter(|x| xattrs.contains_key(&x.name))
            .count()
    }
}

impl Default for XattrList {
    fn default() -> Self {
        Self::distro()
    }
}

/// An inode's xattrs by name, raw values (what the kernel-internal getxattr returns).
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// The inode metadata EVM covers (`struct h_misc` before layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeMeta {
    pub ino: u64,
    /// `i_generation` (`FS_IOC_GETVERSION`).
    pub generation: u32,
    /// Owner in the initial user namespace.
    pub uid: u32,
    pub gid: u32,
    /// The full `i_mode`, file type bits included (0o100644 for a 0644 regular file).
    pub mode: u16,
}

/// The ABI of the kernel whose `struct h_misc` we lay out: `unsigned long ino` is 8 bytes on
/// 64-bit kernels (24-byte struct) and 4 on 32-bit ones (20 bytes), in CPU byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HMiscLayout {
    pub long_bytes: u8,
    pub endian: Endian,
}

impl HMiscLayout {
    /// x86-64, aarch64, ... (evmctl `--m64` on little-endian hosts).
    pub const LP64_LE: Self = Self {
        long_bytes: 8,
        endian: Endian::Little,
    };
    /// i386, armv7 (evmctl `--m32`).
    pub const ILP32_LE: Self = Self {
        long_bytes: 4,
        endian: Endian::Little,
    };

    /// Size of the struct: 24 or 20 bytes.
    pub fn size(self) -> usize {
        if self.long_bytes == 8 { 24 } else { 20 }
    }

    /// `hmac_add_misc`'s struct, zero initialised (padding zero), for `kind`: portable
    /// signatures leave ino and generation zero.
    ///
    /// ```text
    /// struct h_misc { unsigned long ino; __u32 generation; uid_t uid; gid_t gid; umode_t mode; };
    /// ```
    pub fn encode(self, meta: &InodeMeta, kind: EvmKind, out: &mut Vec<u8>) {
        let (ino, generation) = match kind {
            EvmKind::Portable => (0, 0),
            _ => (meta.ino, meta.generation),
        };
        let le = self.endian == Endian::Little;
        if self.long_bytes == 8 {
            out.extend_from_slice(&if le {
                ino.to_le_bytes()
            } else {
                ino.to_be_bytes()
            });
        } else {
            // unsigned long is 32 bits there: the kernel's i_ino is already that wide.
            let ino = ino as u32;
            out.extend_from_slice(&self.endian.u32_bytes(ino));
        }
        out.extend_from_slice(&self.endian.u32_bytes(generation));
        out.extend_from_slice(&self.endian.u32_bytes(meta.uid));
        out.extend_from_slice(&self.endian.u32_bytes(meta.gid));
        out.extend_from_slice(&if le {
            meta.mode.to_le_bytes()
        } else {
            meta.mode.to_be_bytes()
        });
        out.extend_from_slice(&[0, 0]);
    }
}

impl Default for HMiscLayout {
    fn default() -> Self {
        Self::LP64_LE
    }
}

/// How the target kernel builds EVM messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmConfig {
    pub xattrs: XattrList,
    /// `EVM_ATTR_FSUUID` (`CONFIG_EVM_ATTR_FSUUID`, on in distribution kernels): append the
    /// 16-byte fs UUID to HMAC and 0x03 messages.
    pub fsuuid: bool,
    pub layout: HMiscLayout,
}

impl Default for EvmConfig {
    fn default() -> Self {
        Self {
            xattrs: XattrList::default(),
            fsuuid: true,
            layout: HMiscLayout::default(),
        }
    }
}

/// Everything about one inode that EVM looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inode {
    pub xattrs: Xattrs,
    pub meta: InodeMeta,
    /// The filesystem's UUID (`sb->s_uuid`) in textual byte order.
    pub fs_uuid: [u8; 16],
}

/// Why no message could be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// None of the included xattrs is present (`-ENODATA`).
    #[error("no EVM-protected xattr is present")]
    NoXattrs,
    /// A portable signature needs `security.ima` (`-EPERM`).
    #[error("a portable EVM signature requires security.ima")]
    PortableWithoutIma,
}

/// `evm_calc_hmac_or_hash`'s input bytes: the included xattr values in list order, then
/// `h_misc`, then (not for portable signatures, and only with `EVM_ATTR_FSUUID`) the fs UUID.
pub fn message(cfg: &EvmConfig, inode: &Inode, kind: EvmKind) -> Result<Vec<u8>, MessageError> {
    let (out, any) = build_message(cfg, inode, kind, MiscForm::Kernel)?;
    if !any {
        return Err(MessageError::NoXattrs);
    }
    Ok(out)
}

/// What evmctl (1.4 to 1.6) signs where it departs from the kernel: a file without any
/// protected xattr is signed all the same (the kernel refuses with `-ENODATA`, so such a
/// signature can only be checked by evmctl), and `immutable` (`evmctl sign -i`, a format no
/// kernel verifies) replaces `h_misc` by `struct h_misc_digsig { uid_t uid; gid_t gid;
/// unsigned short mode; }` (12 bytes with padding) and leaves the fs UUID out.
pub fn evmctl_message(
    cfg: &EvmConfig,
    inode: &Inode,
    kind: EvmKind,
    immutable: bool,
) -> Result<Vec<u8>, MessageError> {
    let form = if immutable {
        MiscForm::Immutable
    } else {
        MiscForm::Kernel
    };
    Ok(build_message(cfg, inode, kind, form)?.0)
}

/// The `h_misc` variant of a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MiscForm {
    Kernel,
    Immutable,
}

/// The message and whether any listed xattr entered it.
fn build_message(
    cfg: &EvmConfig,
    inode: &Inode,
    kind: EvmKind,
    form: MiscForm,
) -> Result<(Vec<u8>, bool), MessageError> {
    let mut out = Vec::new();
    let mut any = false;
    let mut ima = false;
    for name in cfg.xattrs.included(kind) {
        if let Some(v) = inode.xattrs.get(name) {
            out.extend_from_slice(v);
            any = true;
            ima |= name == XATTR_IMA;
        }
    }
    match form {
        MiscForm::Kernel => {
            cfg.layout.encode(&inode.meta, kind, &mut out);
            if cfg.fsuuid && kind != EvmKind::Portable {
                out.extend_from_slice(&inode.fs_uuid);
            }
        }
        MiscForm::Immutable => {
            let e = cfg.layout.endian;
            out.extend_from_slice(&e.u32_bytes(inode.meta.uid));
            out.extend_from_slice(&e.u32_bytes(inode.meta.gid));
            out.extend_from_slice(&if e == Endian::Little {
                inode.meta.mode.to_le_bytes()
            } else {
                inode.meta.mode.to_be_bytes()
            });
            out.extend_from_slice(&[0, 0]);
        }
    }
    if kind == EvmKind::Portable && !ima {
        return Err(MessageError::PortableWithoutIma);
    }
    Ok((out, any))
}

/// The digest a 0x03 or 0x05 signature signs: `H_algo(message)`.
pub fn signed_digest(
    cfg: &EvmConfig,
    inode: &Inode,
    kind: EvmKind,
    algo: HashAlgo,
) -> Result<Digest, DigestError> {
    let msg = message(cfg, inode, kind).map_err(DigestError::Message)?;
    algo.digest(&msg).map_err(|_| DigestError::Algo(algo))
}

/// Why a signed digest could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    #[error(transparent)]
    Message(MessageError),
    #[error("hash algorithm {0} is not available")]
    Algo(HashAlgo),
}

/// The EVM HMAC key: the decrypted `evm-key` payload zero padded to 128 bytes, all of which
/// key the HMAC (so a 32-byte key file and the same file with trailing zeros are one key).
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey([u8; HMAC_KEY_SIZE]);

impl HmacKey {
    /// Fails when `key` is longer than 128 bytes (`evm_set_key` returns `-EINVAL`).
    pub fn new(key: &[u8]) -> Result<Self, KeyTooLong> {
        if key.len() > HMAC_KEY_SIZE {
            return Err(KeyTooLong(key.len()));
        }
        let mut k = [0; HMAC_KEY_SIZE];
        k[..key.len()].copy_from_slice(key);
        Ok(Self(k))
    }

    /// HMAC-SHA1 of `msg` (what the kernel stores after the 0x02 type byte).
    pub fn hmac(&self, msg: &[u8]) -> [u8; 20] {
        // RFC 2104: a key longer than the 64-byte SHA-1 block is replaced by its SHA-1, then
        // zero padded to the block; the kernel's 128-byte key always takes this path.
        let mut block = [0u8; 64];
        block[..20].copy_from_slice(&sha1_of(&self.0));
        let mut mac = hmac::Hmac::<sha1::Sha1>::new(&block.into());
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    /// The full 21-byte `security.evm` value for `inode`.
    pub fn xattr(
        &self,
        cfg: &EvmConfig,
        inode: &Inode,
    ) -> Result<[u8; HMAC_XATTR_LEN], MessageError> {
        let mac = self.hmac(&message(cfg, inode, EvmKind::Hmac)?);
        let mut out = [0; HMAC_XATTR_LEN];
        out[0] = EvmKind::Hmac.type_byte();
        out[1..].copy_from_slice(&mac);
        Ok(out)
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

/// An HMAC key longer than the kernel's 128 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("EVM HMAC key is {0} bytes, at most 128 are allowed")]
pub struct KeyTooLong(pub usize);

/// What EVM has been initialised with (`evm_initialized`).
#[derive(Clone, Copy, Default)]
pub struct EvmKeys<'a> {
    /// `EVM_INIT_HMAC`: the HMAC key.
    pub hmac: Option<&'a HmacKey>,
    /// `EVM_INIT_X509`: the `.evm` keyring.
    pub x509: Option<&'a (dyn Verifier + Sync)>,
}

impl fmt::Debug for EvmKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvmKeys")
            .field("hmac", &self.hmac.is_some())
            .field("x509", &self.x509.is_some())
            .finish()
    }
}

impl EvmKeys<'_> {
    /// `evm_key_loaded`.
    pub fn loaded(&self) -> bool {
        self.hmac.is_some() || self.x509.is_some()
    }
}

/// The outcome of verifying `security.evm`, with the reason when it is not a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmVerdict {
    pub status: Status,
    /// Human-readable detail for non-passing results (not a kernel string).
    pub detail: Option<String>,
}

impl EvmVerdict {
    fn new(status: Status) -> Self {
        Self {
            status,
            detail: None,
        }
    }

    fn because(status: Status, detail: impl fmt::Display) -> Self {
        Self {
            status,
            detail: Some(detail.to_string()),
        }
    }
}

/// `evm_verifyxattr(dentry, "security.ima", ...)`: what IMA appraisal asks EVM before it
/// trusts `security.ima`. UNKNOWN unless a key is loaded and `security.ima` is protected.
pub fn verify_ima_xattr(cfg: &EvmConfig, keys: &EvmKeys<'_>, inode: &Inode) -> EvmVerdict {
    if !keys.loaded() || !cfg.xattrs.is_protected(XATTR_IMA) {
        return EvmVerdict::because(
            Status::Unknown,
            "EVM has no key or does not protect security.ima",
        );
    }
    verify(cfg, keys, inode)
}

/// `evm_verify_hmac`: verify the inode's `security.evm` (taken from `inode.xattrs`) against
/// its current xattrs and metadata. The kernel's in-place conversion of a verified 0x03
/// signature to an HMAC is a side effect the caller may perform; it does not change the status.
pub fn verify(cfg: &EvmConfig, keys: &EvmKeys<'_>, inode: &Inode) -> EvmVerdict {
    let Some(value) = inode.xattrs.get(XATTR_EVM) else {
        return if cfg.xattrs.count_present(&inode.xattrs) > 0 {
            EvmVerdict::because(
                Status::NoLabel,
                "no security.evm but protected xattrs exist",
            )
        } else {
            EvmVerdict::because(Status::NoXattrs, "no security.evm and no protected xattrs")
        };
    };
    let Some(&ty) = value.first() else {
        return EvmVerdict::because(Status::Fail, "security.evm is empty");
    };
    let fail_msg = |immutable: bool, e: MessageError| {
        EvmVerdict::because(
            match e {
                MessageError::NoXattrs => Status::NoXattrs,
                MessageError::PortableWithoutIma if immutable => Status::FailImmutable,
                MessageError::PortableWithoutIma => Status::Fail,
            },
            e,
        )
    };
    match EvmKind::from_type_byte(ty) {
        Some(EvmKind::Hmac) => {
            if value.len() != HMAC_XATTR_LEN {
                return EvmVerdict::because(
                    Status::Fail,
                    format_args!("HMAC value is {} bytes, not {HMAC_XATTR_LEN}", value.len()),
                );
            }
            let Some(key) = keys.hmac else {
                return EvmVerdict::because(Status::Fail, "HMAC key is not set");
            };
            match key.xattr(cfg, inode) {
                Ok(x) if constant_time_eq(&x, value) => EvmVerdict::new(Status::Pass),
                Ok(_) => EvmVerdict::because(Status::Fail, "HMAC mismatch"),
                Err(e) => fail_msg(false, e),
            }
        }
        Some(kind) => {
            let immutable = kind == EvmKind::Portable;
            let fail = if immutable {
                Status::FailImmutable
            } else {
                Status::Fail
            };
            if value.len() <= SIG_HDR_LEN {
                // Checked before the portable flag is consulted: plain FAIL.
                return EvmVerdict::because(Status::Fail, "signature value has no signature bytes");
            }
            let algo = HashAlgo(value[2]);
            if !algo.is_known() {
                return EvmVerdict::because(
                    fail,
                    format_args!("invalid hash algorithm id {}", algo.0),
                );
            }
            let digest = match signed_digest(cfg, inode, kind, algo) {
                Ok(d) => d,
                Err(DigestError::Message(e)) => return fail_msg(immutable, e),
                Err(e @ DigestError::Algo(_)) => return EvmVerdict::because(fail, e),
            };
            let Some(ring) = keys.x509 else {
                return EvmVerdict::because(fail, "no EVM keyring loaded");
            };
            match digsig_verify(ring, value, &digest) {
                Ok(()) if immutable => EvmVerdict::new(Status::PassImmutable),
                Ok(()) => EvmVerdict::new(Status::Pass),
                Err(e) => EvmVerdict::because(fail, e),
            }
        }
        None => EvmVerdict::because(
            Status::Fail,
            format_args!("unknown security.evm type {ty:#04x}"),
        ),
    }
}

fn sha1_of(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
