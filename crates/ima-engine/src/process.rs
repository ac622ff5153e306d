//! The library home of the kernel's `process_measurement` for one open file: the policy
//! decision for an access ([`decide`]: `Event::access` from the task's credentials and the
//! file's facts, then the matcher), and the appraisal the decision asks for ([`Appraiser`]:
//! `security.ima` and EVM read from the open file, the digest computed from it, the kernel's
//! verdict, and in fix mode the label written back through the same descriptor together with
//! EVM's post-setxattr HMAC update). `imactl appraise` and `policy explain --path` are thin
//! callers; the measurement side of a decision is appended by [`crate::measure`].
//!
//! Mirrors `process_measurement`, `ima_appraise_measurement` and `ima_fix_xattr` in
//! `security/integrity/ima/ima_main.c` and `ima_appraise.c`.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;

use ima_core::appraise::{self, Cause, ImaXattr, Mode, Request, Requirements};
use ima_core::digsig::Verifier;
use ima_core::evm::{self, EvmConfig, EvmKeys, Inode, protect};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::integrity::Status;
use ima_core::policy::{Evaluation, Event, FileFacts, Func, Mask, Policy, RuleFlags, TaskCreds};
use ima_sys::xattr::SetMode;

/// One access to decide: who, what, through which hook.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    pub creds: &'a TaskCreds,
    pub file: &'a FileFacts,
    pub func: Func,
    /// `None`: the hook's default ([`Func::default_mask`]).
    pub mask: Option<Mask>,
    /// The file's absolute path, for the `path=`/`path_prefix=`/`glob=` extensions.
    pub path: Option<&'a [u8]>,
}

/// The policy's decision for an access: which rules decide measure, appraise and audit.
pub fn decide<'p>(policy: &'p Policy, a: &Access<'_>) -> Evaluation<'p> {
    let mask = a.mask.unwrap_or_else(|| a.func.default_mask());
    let ev = Event {
        path: a.path,
        ..Event::access(a.func, mask, a.creds, a.file)
    };
    policy.evaluate(&ev)
}

/// What an appraise rule asks of the file (`IMA_DIGSIG_REQUIRED`, `IMA_VERITY_REQUIRED`,
/// `appraise_algos=`), or `None` when the decision is not to appraise.
pub fn requirements(eval: &Evaluation<'_>) -> Option<Requirements> {
    if !eval.appraise() {
        return None;
    }
    let flags = eval.flags();
    Some(Requirements {
        digsig: flags.contains(RuleFlags::DIGSIG_REQUIRED),
        verity: flags.contains(RuleFlags::VERITY_REQUIRED),
        allowed_algos: eval.allowed_algos.map(|s| s.0),
    })
}

/// The result of appraising one file under one rule's requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appraisal {
    /// The file passes; `was` is the failure a fix repaired (fix mode), `fixed` the
    /// `security.ima` value written.
    Pass {
        was: Option<(Status, Cause)>,
        fixed: Option<Vec<u8>>,
    },
    /// The file fails; `denied` if the mode denies the access.
    Fail {
        status: Status,
        cause: Cause,
        denied: bool,
    },
}

/// How the kernel appraising files is set up: `ima_appraise=`, `ima_hash=`, the `.ima`
/// keyring and what EVM was initialised with.
#[derive(Clone, Copy)]
pub struct Appraiser<'a> {
    pub mode: Mode,
    pub ima_hash: HashAlgo,
    pub ima_keys: &'a (dyn Verifier + Sync),
    pub evm_cfg: &'a EvmConfig,
    pub evm_keys: EvmKeys<'a>,
    /// The filesystem UUID for EVM when the filesystem cannot report it.
    pub uuid: Option<[u8; 16]>,
}

impl std::fmt::Debug for Appraiser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appraiser")
            .field("mode", &self.mode)
            .field("ima_hash", &self.ima_hash)
            .finish_non_exhaustive()
    }
}

/// Why a file could not be appraised (the verdict is a value; this is "could not decide").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ProcessError {
    move |source| ProcessError::Io { what, source }
}

impl Appraiser<'_> {
    /// `ima_appraise_measurement` for the open file `f` (of `size` bytes) under `req`:
    /// `security.ima` and EVM's state are read afresh (a fix since may have changed them);
    /// digests already computed for this file are taken from `digests` and new ones added.
    /// In fix mode the repaired label is written through `f`, and with an HMAC key EVM's
    /// post-setxattr hook updates `security.evm`.
    pub fn appraise(
        &self,
        f: &mut File,
        size: u64,
        req: Requirements,
        digests: &mut Vec<Digest>,
    ) -> Result<Appraisal, ProcessError> {
        let raw = match ima_sys::xattr::get(&*f, evm::XATTR_IMA) {
            Ok(v) => Ok(v),
            Err(e) if ima_sys::xattr::is_unsupported(&e) => Err(true),
            Err(_) => Err(false),
        };
        let ima = match &raw {
            Ok(Some(v)) => ImaXattr::Value(v),
            Ok(None) => ImaXattr::Absent,
            Err(true) => ImaXattr::Unsupported,
            Err(false) => ImaXattr::Error,
        };
        let label = match ima {
            ImaXattr::Value(v) => Some(v),
            _ => None,
        };
        let algo = appraise::hash_algo(label, self.ima_hash);
        let digest = match digests.iter().find(|d| d.algo() == algo) {
            Some(d) => Some(*d),
            None => {
                f.seek(SeekFrom::Start(0)).map_err(io_err("seek"))?;
                // A digest that cannot be computed is the kernel's failed collect_data.
                let d = ima_sys::file::hash_file(f, algo).ok();
                digests.extend(d);
                d
            }
        };
        let evm_inode = if self.evm_keys.loaded() {
            let uuid = match self.uuid {
                Some(u) => Some(u),
                None => ima_sys::inode::fs_uuid(f.as_fd()).ok(),
            };
            Some(evm_inode(f, self.evm_cfg, None, uuid)?)
        } else {
            None
        };
        let evm_status = match &evm_inode {
            Some(inode) => evm::verify_ima_xattr(self.evm_cfg, &self.evm_keys, inode).status,
            None => Status::Unknown,
        };
        let r = Request {
            mode: self.mode,
            req,
            ima,
            digest,
            evm: evm_status,
            new_file: false,
            size,
        };
        let mut fixed = None;
        let result = appraise::appraise(&r, self.ima_keys)
            .apply_fix(|fix| {
                ima_sys::xattr::set(&*f, evm::XATTR_IMA, fix, SetMode::Any)
                    .map_err(io_err("writing security.ima"))?;
                fixed = Some(fix.to_vec());
                // ima_fix_xattr writes through __vfs_setxattr_noperm, so EVM's post-setxattr
                // hook recomputes the HMAC when an HMAC key is loaded.
                let protected = self.evm_cfg.xattrs.is_protected(evm::XATTR_IMA);
                if let (Some(key), Some(inode), true) = (self.evm_keys.hmac, &evm_inode, protected)
                {
                    let mut after = inode.clone();
                    after.xattrs.insert(evm::XATTR_IMA.to_owned(), fix.to_vec());
                    match protect::update_evmxattr(self.evm_cfg, key, &after) {
                        protect::EvmUpdate::Set(v) => {
                            ima_sys::xattr::set(&*f, evm::XATTR_EVM, &v, SetMode::Any)
                                .map_err(io_err("writing security.evm"))?;
                        }
                        protect::EvmUpdate::Remove | protect::EvmUpdate::Immutable => {}
                    }
                }
                Ok(())
            })
            .map_err(|(_, e)| e)?;
        Ok(match (result.verdict().failure(), result.audit()) {
            (None, was) => Appraisal::Pass {
                was: was.map(|w| (w.status, w.cause)),
                fixed,
            },
            (Some(fail), _) => Appraisal::Fail {
                status: fail.status,
                cause: fail.cause,
                denied: result.denied(self.mode),
            },
        })
    }
}

/// What EVM reads from an open file: `security.evm` and the protected xattrs `cfg` lists
/// that exist, `fstat`, the generation (unless given; regular files only, others 0) and the
/// fs UUID (unless given, and only when `cfg` hashes one).
pub fn evm_inode(
    f: &File,
    cfg: &EvmConfig,
    generation: Option<u32>,
    uuid: Option<[u8; 16]>,
) -> Result<Inode, ProcessError> {
    let mut inode = Inode {
        meta: ima_sys::inode::stat(f).map_err(io_err("stat"))?,
        ..Inode::default()
    };
    let names = cfg.xattrs.entries().iter().map(|x| x.name.as_str());
    for name in names.chain([evm::XATTR_EVM]) {
        if let Some(v) = ima_sys::xattr::get(f, name).map_err(io_err("reading an EVM xattr"))? {
            inode.xattrs.insert(name.to_owned(), v);
        }
    }
    inode.meta.generation = match generation {
        Some(g) => g,
        None if inode.meta.mode & 0o170000 == 0o100000 => ima_sys::inode::generation(f.as_fd())
            .map_err(io_err(
                "cannot read the generation (FS_IOC_GETVERSION); pass --generation",
            ))?,
        None => 0,
    };
    if cfg.fsuuid {
        inode.fs_uuid = match uuid {
            Some(u) => u,
            None => ima_sys::inode::fs_uuid(f.as_fd()).map_err(io_err(
                "cannot read the filesystem UUID (FS_IOC_GETFSUUID); pass --uuid=UUID",
            ))?,
        };
    }
    Ok(inode)
}

/// What the EVM hooks know about an open file besides its xattrs and metadata: regular,
/// writable (`IS_RDONLY`, `IS_IMMUTABLE`), on a pseudo filesystem (tmpfs, sysfs).
pub fn evm_facts(f: &File, inode: &Inode) -> Result<protect::InodeFacts, ProcessError> {
    /// `TMPFS_MAGIC`, `SYSFS_MAGIC` (include/uapi/linux/magic.h).
    const PSEUDO: [u64; 2] = [0x0102_1994, 0x6265_6572];
    Ok(protect::InodeFacts {
        regular: inode.meta.mode & 0o170000 == 0o100000,
        writable: ima_sys::inode::evm_writable(f.as_fd())
            .map_err(io_err("statvfs/FS_IOC_GETFLAGS"))?,
        new_file: false,
        pseudo_fs: PSEUDO.contains(&ima_sys::inode::fs_magic(f.as_fd()).map_err(io_err("statfs"))?),
        hmac_unsupported: false,
    })
}

/// Writes what `evm_update_evmxattr` decided through `f`; returns it in words.
pub fn apply_evm_update(f: &File, u: protect::EvmUpdate) -> Result<&'static str, ProcessError> {
    Ok(match u {
        protect::EvmUpdate::Set(v) => {
            ima_sys::xattr::set(f, evm::XATTR_EVM, &v, SetMode::Any)
                .map_err(io_err("writing security.evm"))?;
            "HMAC written"
        }
        protect::EvmUpdate::Remove => {
            ima_sys::xattr::remove(f, evm::XATTR_EVM).map_err(io_err("removing security.evm"))?;
            "removed (no protected xattr left)"
        }
        protect::EvmUpdate::Immutable => "kept (portable signatures are never updated)",
    })
}

/// `evm_verify_hmac` of the open file `f` (whose EVM view is `inode`), and with `fix` (the
/// loaded HMAC key) what the kernel then does on a writable inode: a verified type 0x03
/// signature is replaced by the HMAC, written through `f`. Returns the verdict and whether
/// the signature was replaced.
pub fn evm_verify(
    f: &File,
    cfg: &EvmConfig,
    keys: &EvmKeys<'_>,
    inode: &Inode,
    fix: Option<&evm::HmacKey>,
) -> Result<(evm::EvmVerdict, bool), ProcessError> {
    let v = evm::verify(cfg, keys, inode);
    let mut converted = false;
    if let (true, Some(key)) = (v.status.is_pass(), fix) {
        let facts = evm_facts(f, inode)?;
        if protect::converts_to_hmac(keys, &facts, inode, v.status) {
            apply_evm_update(f, protect::update_evmxattr(cfg, key, inode))?;
            converted = true;
        }
    }
    Ok((v, converted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ima_core::digsig::Keyring;

    #[test]
    fn decide_then_appraise_fix_then_pass() {
        let policy = Policy::parse("appraise func=FILE_CHECK fowner=1234\n").unwrap();
        let creds = TaskCreds::default();
        let mut facts = FileFacts {
            uid: 1234,
            gid: 0,
            mode: 0o100644,
            dev: (0, 0),
            ino: 1,
            fsmagic: 0xef53,
            fsname: Some("ext4".into()),
            fsuuid: None,
        };
        let access = |f: &FileFacts| {
            let a = Access {
                creds: &creds,
                file: f,
                func: Func::FileCheck,
                mask: None,
                path: None,
            };
            requirements(&decide(&policy, &a))
        };
        let req = access(&facts).unwrap();
        facts.uid = 1;
        assert_eq!(access(&facts), None, "another owner is not appraised");

        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"content").unwrap();
        let mut f = File::open(&p).unwrap();
        let ring = Keyring::new();
        let cfg = EvmConfig::default();
        let mut ap = Appraiser {
            mode: Mode::Fix,
            ima_hash: HashAlgo::SHA256,
            ima_keys: &ring,
            evm_cfg: &cfg,
            evm_keys: EvmKeys {
                hmac: None,
                x509: None,
            },
            uuid: None,
        };
        let mut digests = Vec::new();
        let Appraisal::Pass {
            was: Some(_),
            fixed: Some(label),
        } = ap.appraise(&mut f, 7, req, &mut digests).unwrap()
        else {
            panic!("fix mode repairs a missing label")
        };
        // The label went through the same file: read back by path, it is there.
        assert_eq!(
            ima_sys::xattr::get_path(&p, evm::XATTR_IMA).unwrap(),
            Some(label)
        );
        assert_eq!(digests.len(), 1, "hashed once");
        ap.mode = Mode::Enforce;
        assert_eq!(
            ap.appraise(&mut f, 7, req, &mut digests).unwrap(),
            Appraisal::Pass {
                was: None,
                fixed: None
            }
        );
        std::fs::write(&p, b"changed").unwrap();
        let mut f = File::open(&p).unwrap();
        let Appraisal::Fail { denied: true, .. } =
            ap.appraise(&mut f, 7, req, &mut Vec::new()).unwrap()
        else {
            panic!("a changed file fails and is denied in enforce mode")
        };
    }
}
