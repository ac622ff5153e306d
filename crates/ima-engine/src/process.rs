//! The library home of the kernel's `process_measurement` for one open file, in two steps:
//! the policy decision for an access ([`decide`]: `Event::access` from the task's credentials
//! and the file's facts, then the matcher; no I/O, so a caller can consult its per-inode cache
//! before opening anything), then [`process`]: with the open file, everything the decision asks
//! for, as one [`Decision`] value — the entry to append, the appraisal (in fix mode with the
//! label already written back through the same descriptor, with EVM's post-setxattr HMAC
//! update) and the audit records. `imactl measure`, `imactl appraise`, `policy explain --path`
//! and `imad` are callers; none of them decides anything of its own.
//!
//! Mirrors `process_measurement`, `ima_collect_measurement`, `ima_store_measurement`,
//! `ima_audit_measurement`, `ima_appraise_measurement` and `ima_fix_xattr` in
//! `security/integrity/ima/ima_main.c`, `ima_api.c` and `ima_appraise.c`.

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use ima_core::appraise::{self, Cause, ImaXattr, Mode, Request, Requirements};
use ima_core::audit::{InodeId, Record};
use ima_core::digsig::Verifier;
use ima_core::evm::{self, EvmConfig, EvmKeys, Inode, protect};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::integrity::Status;
use ima_core::policy::{Evaluation, Event, FileFacts, Func, Mask, Policy, RuleFlags, TaskCreds};
use ima_core::template::{self, Field, InodeAttrs, TemplateDesc};
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
    #[error("template {name:?}")]
    Template {
        name: String,
        #[source]
        source: template::TemplateError,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ProcessError {
    move |source| ProcessError::Io { what, source }
}

/// How the measuring and appraising "kernel" is set up (its boot parameters).
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// `ima_template=`: the template of measure rules without `template=`.
    pub template: &'a TemplateDesc,
    /// `ima_hash=`.
    pub ima_hash: HashAlgo,
    /// Whether the caller keeps a list: `false` leaves measure rules unacted on.
    pub measure: bool,
    /// Appraisal; `None` (or mode off) leaves appraise rules unacted on.
    pub appraiser: Option<Appraiser<'a>>,
    /// EVM's protected xattrs (for the `xattrnames`/`xattrlengths`/`xattrvalues` fields).
    pub evm_cfg: &'a EvmConfig,
}

/// What the per-inode cache (the kernel's iint) already knows about the file since it last
/// changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// Measured into the decided PCR (`measured_pcrs`).
    pub measured: bool,
    /// A digest collected before (`IMA_COLLECTED`): reused when its algorithm is the one
    /// the file is hashed with.
    pub digest: Option<Digest>,
    /// Audited already (`IMA_AUDITED`).
    pub audited: bool,
}

/// The open file a decision is about. Everything is read through `file`; `path` is only the
/// name the list and the audit records give it.
#[derive(Debug)]
pub struct Object<'a> {
    pub file: &'a mut File,
    /// `fstat` of `file`.
    pub meta: &'a Metadata,
    pub path: &'a [u8],
    /// The filesystem's type name ([`FileFacts::fsname`]), for the `dev=` of audit records
    /// on filesystems without a block device.
    pub fsname: Option<&'a str>,
}

/// The list entry a decision asks for (`ima_store_measurement`'s event data, owned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    pub template: TemplateDesc,
    pub pcr: u32,
    pub digest: Digest,
    /// For the legacy `d` field when `digest` is neither sha1 nor md5.
    pub legacy_digest: Option<Digest>,
    pub name: Vec<u8>,
    /// `security.ima`, when the template records signatures.
    pub ima_xattr: Option<Vec<u8>>,
    /// `security.evm`, when the template records signatures.
    pub evm_xattr: Option<Vec<u8>>,
    /// The present EVM-protected xattrs in EVM's order, when the template records them.
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub inode: InodeAttrs,
}

impl Measurement {
    /// Calls `f` with the template event (borrowing from `self`).
    pub fn with_event<R>(&self, f: impl FnOnce(&template::Event<'_>) -> R) -> R {
        let xattrs: Vec<(&str, &[u8])> = self
            .xattrs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let basename = self.name.rsplit(|&b| b == b'/').next();
        f(&template::Event {
            digest: Some(self.digest),
            legacy_digest: self.legacy_digest,
            name: &self.name,
            basename,
            ima_xattr: self.ima_xattr.as_deref(),
            evm_xattr: self.evm_xattr.as_deref(),
            xattrs: &xattrs,
            inode: Some(self.inode),
            ..template::Event::default()
        })
    }
}

/// Everything `process_measurement` decided for one access, as one value.
#[derive(Debug, Default)]
pub struct Decision {
    /// The entry to append (measured into its PCR before the access proceeds).
    pub measurement: Option<Measurement>,
    /// The appraisal verdict; in fix mode the label is already written.
    pub appraisal: Option<Appraisal>,
    /// The audit records, in the kernel's order.
    pub audit: Vec<Record>,
    /// The digest collected (or reused), for the per-inode cache.
    pub digest: Option<Digest>,
    /// Bytes read to hash the file (0 when nothing was hashed).
    pub bytes_hashed: u64,
    /// Why the file's digest could not be collected (`collect_data` failed): nothing is
    /// measured; an appraisal fails as the kernel's does.
    pub collect_error: Option<String>,
}

impl Decision {
    /// Whether the access is denied (an appraisal failure in enforce mode).
    pub fn denied(&self) -> bool {
        matches!(self.appraisal, Some(Appraisal::Fail { denied: true, .. }))
    }
}

/// `ima_read_xattr`: unreadable or unsupported is "no label", as in the kernel.
fn read_xattr(f: &File, name: &str) -> Option<Vec<u8>> {
    ima_sys::xattr::get(f, name).ok().flatten()
}

/// `process_measurement` for the open file of `obj`, under the policy's decision `eval`
/// (from [`decide`]) and what the per-inode cache already knows: collects the digest once
/// (with the algorithm `security.ima` names), builds the entry to append, appraises (fix mode
/// writes through the file), and lists the audit records.
pub fn process(
    setup: &Setup<'_>,
    eval: &Evaluation<'_>,
    mut obj: Object<'_>,
    known: Known,
) -> Result<Decision, ProcessError> {
    let mut d = Decision {
        digest: known.digest,
        ..Decision::default()
    };
    let measure = setup.measure && eval.measure() && !known.measured;
    let appraise = match (setup.appraiser, requirements(eval)) {
        (Some(a), Some(req)) if a.mode != Mode::Off => Some((a, req)),
        _ => None,
    };
    let audit = eval.audit() && !known.audited;
    if !measure && appraise.is_none() && !audit {
        return Ok(d);
    }
    let template = if measure {
        let name = eval.template_name(setup.template.name());
        Some(if name == setup.template.name() {
            setup.template.clone()
        } else {
            TemplateDesc::lookup(name).map_err(|source| ProcessError::Template {
                name: name.to_owned(),
                source,
            })?
        })
    } else {
        None
    };
    // The kernel reads `security.ima` when appraising or for a template other than `ima`,
    // and then hashes with the algorithm it names.
    let reads_xattr = appraise.is_some() || template.as_ref().is_some_and(|t| !t.is_legacy());
    let ima_xattr = if reads_xattr {
        read_xattr(obj.file, evm::XATTR_IMA)
    } else {
        None
    };
    // Only records naming the inode need the superblock's id (a readlink): made lazily.
    let (meta, fsname) = (obj.meta, obj.fsname);
    let inode_id = || {
        Some(InodeId {
            dev: ima_sys::fs::sb_id(meta.dev(), fsname),
            ino: meta.ino(),
        })
    };
    let algo = appraise::hash_algo(ima_xattr.as_deref(), setup.ima_hash);
    let collected = collect(obj.file, obj.meta, algo, known.digest, &mut d.bytes_hashed);
    let digest = match collected {
        Ok(dg) => Some(dg),
        Err(e) => {
            d.collect_error = Some(e);
            d.audit.push(Record::Message {
                kind: ima_core::audit::Kind::Data,
                op: "collect_data".to_owned(),
                cause: "failed".to_owned(),
                name: Some(obj.path.to_vec()),
                inode: inode_id(),
                ok: false,
                errno: 0,
                info: false,
            });
            None
        }
    };
    d.digest = digest;
    if let (Some(t), Some(dg)) = (template, digest) {
        match measurement(setup, eval, &mut obj, t, dg, ima_xattr) {
            Ok(m) => d.measurement = Some(m),
            Err(e) => d.collect_error = Some(e),
        }
    }
    if let Some((ap, req)) = appraise {
        let mut digests: Vec<Digest> = digest.into_iter().collect();
        let a = ap.appraise(obj.file, obj.meta.size(), req, &mut digests)?;
        // `ima_appraise_measurement` audits every failure, also one fix mode repaired.
        match &a {
            Appraisal::Pass {
                was: Some((_, cause)),
                ..
            } => d
                .audit
                .push(Record::appraise(*cause, obj.path, inode_id(), true)),
            Appraisal::Fail { cause, .. } => {
                d.audit
                    .push(Record::appraise(*cause, obj.path, inode_id(), false));
            }
            Appraisal::Pass { was: None, .. } => {}
        }
        d.appraisal = Some(a);
    }
    if let (true, Some(dg)) = (audit, digest) {
        d.audit.push(Record::Rule {
            file: obj.path.to_vec(),
            hash: dg,
        });
    }
    Ok(d)
}

/// `ima_collect_measurement`: the digest with `algo`, reused from `known` when it has it.
fn collect(
    f: &mut File,
    meta: &Metadata,
    algo: HashAlgo,
    known: Option<Digest>,
    bytes: &mut u64,
) -> Result<Digest, String> {
    if let Some(k) = known.filter(|k| k.algo() == algo) {
        return Ok(k);
    }
    // An algorithm the kernel knows but we cannot compute: a kernel without it fails
    // `collect_data` the same way.
    if !algo.is_supported() {
        return Err(format!(
            "security.ima names hash algorithm {algo}, which cannot be computed here: not \
             measured (a kernel without {algo} fails collect_data the same way)"
        ));
    }
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let d = ima_sys::file::hash_file(f, algo).map_err(|e| e.to_string())?;
    *bytes += meta.size();
    Ok(d)
}

/// `ima_store_measurement`'s event data for the template `t`.
fn measurement(
    setup: &Setup<'_>,
    eval: &Evaluation<'_>,
    obj: &mut Object<'_>,
    t: TemplateDesc,
    digest: Digest,
    ima_xattr: Option<Vec<u8>>,
) -> Result<Measurement, String> {
    let legacy_digest = match legacy_algo(&t, digest.algo(), setup.ima_hash) {
        Some(a) => {
            obj.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| e.to_string())?;
            Some(ima_sys::file::hash_file(obj.file, a).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let sigs = t.has(Field::Sig) || t.has(Field::EvmSig);
    let evm_xattr = if sigs {
        read_xattr(obj.file, evm::XATTR_EVM)
    } else {
        None
    };
    let xattrs = if [Field::XattrNames, Field::XattrLengths, Field::XattrValues]
        .iter()
        .any(|x| t.has(*x))
    {
        setup
            .evm_cfg
            .xattrs
            .entries()
            .iter()
            .filter(|x| x.enabled)
            .filter_map(|x| read_xattr(obj.file, &x.name).map(|v| (x.name.clone(), v)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Measurement {
        pcr: eval.pcr(),
        digest,
        legacy_digest,
        name: obj.path.to_vec(),
        ima_xattr: ima_xattr.filter(|_| sigs),
        evm_xattr,
        xattrs,
        inode: InodeAttrs {
            uid: obj.meta.uid(),
            gid: obj.meta.gid(),
            mode: (obj.meta.mode() & 0xffff) as u16,
        },
        template: t,
    })
}

/// `ima_eventdigest_init` (the legacy `d` field): the collected digest if it is sha1 or
/// md5, else the file hashed again with `ima_hash` if that is sha1 or md5, else with sha1.
/// `None` when no second hash is needed.
fn legacy_algo(t: &TemplateDesc, collected: HashAlgo, ima_hash: HashAlgo) -> Option<HashAlgo> {
    let legacy_ok = |a: HashAlgo| a == HashAlgo::SHA1 || a == HashAlgo::MD5;
    if !t.has(Field::D) || legacy_ok(collected) {
        return None;
    }
    Some(if legacy_ok(ima_hash) {
        ima_hash
    } else {
        HashAlgo::SHA1
    })
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

    #[test]
    fn one_decision_carries_the_entry_the_appraisal_and_the_audit_records() {
        let policy = Policy::parse(
            "measure func=FILE_CHECK template=evm-sig\nappraise func=FILE_CHECK\n\
             audit func=FILE_CHECK\n",
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"content").unwrap();
        // A wrong digest label: appraisal fails (log mode: allowed, recorded).
        let mut label = vec![0x04, 4];
        label.extend([0u8; 32]);
        ima_sys::xattr::set_path(&p, evm::XATTR_IMA, &label, SetMode::Any).unwrap();
        let mut f = File::open(&p).unwrap();
        let meta = f.metadata().unwrap();
        let facts = ima_sys::fs::file_facts(&p).unwrap();
        let creds = TaskCreds::default();
        let eval = decide(
            &policy,
            &Access {
                creds: &creds,
                file: &facts,
                func: Func::FileCheck,
                mask: None,
                path: None,
            },
        );
        let ring = Keyring::new();
        let cfg = EvmConfig::default();
        let boot = TemplateDesc::lookup("ima-ng").unwrap();
        let setup = Setup {
            template: &boot,
            ima_hash: HashAlgo::SHA256,
            measure: true,
            appraiser: Some(Appraiser {
                mode: Mode::Log,
                ima_hash: HashAlgo::SHA256,
                ima_keys: &ring,
                evm_cfg: &cfg,
                evm_keys: EvmKeys {
                    hmac: None,
                    x509: None,
                },
                uuid: None,
            }),
            evm_cfg: &cfg,
        };
        let path = p.as_os_str().as_encoded_bytes();
        let obj = Object {
            file: &mut f,
            meta: &meta,
            path,
            fsname: facts.fsname.as_deref(),
        };
        let dec = process(&setup, &eval, obj, Known::default()).unwrap();
        let m = dec.measurement.as_ref().expect("measured");
        assert_eq!(m.template.name(), "evm-sig");
        assert_eq!(m.digest, HashAlgo::SHA256.digest(b"content").unwrap());
        // evm-sig records the present EVM-protected xattrs: security.ima here.
        assert_eq!(m.xattrs, vec![(evm::XATTR_IMA.to_owned(), label.clone())]);
        assert!(matches!(
            dec.appraisal,
            Some(Appraisal::Fail {
                cause: Cause::InvalidHash,
                denied: false,
                ..
            })
        ));
        assert!(!dec.denied());
        assert_eq!(
            dec.bytes_hashed, 7,
            "hashed once for the entry and the appraisal"
        );
        let kinds: Vec<u16> = dec.audit.iter().map(|r| r.kind().number()).collect();
        assert_eq!(kinds, [1800, 1805], "{:?}", dec.audit);
        // What the cache knows is not done again.
        let obj = Object {
            file: &mut f,
            meta: &meta,
            path,
            fsname: None,
        };
        let known = Known {
            measured: true,
            digest: dec.digest,
            audited: true,
        };
        let again = process(&setup, &eval, obj, known).unwrap();
        assert!(again.measurement.is_none());
        assert_eq!(again.bytes_hashed, 0);
        assert_eq!(again.audit.len(), 1, "only the appraisal failure");
    }
}
