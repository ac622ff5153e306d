//! Evaluating a policy for one access: the kernel's `ima_match_rules` (does one rule match?)
//! and `ima_match_policy` (first match per action class), as a plain linear interpreter and
//! as an [`IndexedMatcher`] that skips rules which cannot match (by hook and fsmagic) and
//! gives the same answer (differential property tests in `tests.rs`).
//!
//! Mirrors `ima_match_rules`, `ima_match_rule_data`, `get_subaction` and `ima_match_policy`
//! in `security/integrity/ima/ima_policy.c`.

use super::token::{Action, ActionClass, Func, IdOp, Mask, Uuid};
use super::{AlgoSet, IdCond, Policy, PolicyRule, Rule, RuleFlags, Template, path_has_prefix};

/// Every action class: `IMA_MEASURE | IMA_APPRAISE | IMA_AUDIT | IMA_HASH`.
pub const ALL_CLASSES: u32 = 0x1 | 0x4 | 0x40 | 0x100;

/// `IMA_DO_MASK`.
const DO_MASK: u32 = ALL_CLASSES;

/// Appraise subaction bits (`IMA_FILE_APPRAISE` etc., `ima.h`): which per-hook appraisal
/// cache the caller uses.
pub mod subaction {
    pub const FILE_APPRAISE: u32 = 0x1000;
    pub const MMAP_APPRAISE: u32 = 0x4000;
    pub const BPRM_APPRAISE: u32 = 0x10000;
    pub const READ_APPRAISE: u32 = 0x40000;
    pub const CREDS_APPRAISE: u32 = 0x100000;
}

/// One access to decide: the hook, the requested mask, the task's credentials, the file's
/// owner and filesystem, LSM labels, and (extensions) paths and cgroup.
///
/// Build with [`Event::new`] (root credentials, everything else zero/empty) and set fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub func: Func,
    /// `MAY_READ|MAY_WRITE|MAY_EXEC|MAY_APPEND` for FILE_CHECK, `MAY_EXEC` for exec/mmap,
    /// `MAY_READ` for kernel reads, 0 for buffers.
    pub mask: Mask,
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    /// The task has CAP_SETUID: `euid=` then also matches the real or saved uid.
    pub cap_setuid: bool,
    /// The task has CAP_SETGID: `egid=` then also matches the real or saved gid.
    pub cap_setgid: bool,
    /// The inode's owner and group as seen through the mount's idmap.
    pub fowner: u32,
    pub fgroup: u32,
    /// `sb->s_magic`.
    pub fsmagic: u64,
    /// `sb->s_type->name` (`ext4`, `tmpfs`).
    pub fsname: &'a str,
    /// `sb->s_uuid` (nil when the filesystem has none).
    pub fsuuid: Uuid,
    /// LSM labels, indexed by [`super::LsmField::index`]: object user/role/type of the inode,
    /// subject user/role/type of the task. `None` when there is no LSM: a rule with an LSM
    /// condition then never matches, as in the kernel.
    pub lsm: [Option<&'a str>; 6],
    /// The keyring (KEY_CHECK) or critical-data label (CRITICAL_DATA).
    pub func_data: Option<&'a str>,
    /// Extension: the file's absolute path.
    pub path: Option<&'a [u8]>,
    /// Extension: the accessing program's absolute path.
    pub exe: Option<&'a [u8]>,
    /// Extension: the accessing process's cgroup path (`/system.slice/x.service`).
    pub cgroup: Option<&'a [u8]>,
}

impl Event<'_> {
    /// An access by root (all ids 0, no capabilities considered) to a root-owned file on a
    /// filesystem with magic 0, no name and no UUID.
    pub fn new(func: Func, mask: Mask) -> Event<'static> {
        Event {
            func,
            mask,
            uid: 0,
            euid: 0,
            suid: 0,
            gid: 0,
            egid: 0,
            sgid: 0,
            cap_setuid: false,
            cap_setgid: false,
            fowner: 0,
            fgroup: 0,
            fsmagic: 0,
            fsname: "",
            fsuuid: Uuid::NIL,
            lsm: [None; 6],
            func_data: None,
            path: None,
            exe: None,
            cgroup: None,
        }
    }
}

/// The rule that decided one action class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided<'p> {
    /// Index in the policy's rule list.
    pub index: usize,
    /// Line in the policy file (built-ins: position in the list, 1-based).
    pub line: usize,
    /// The rule as written (built-ins: read-back text).
    pub text: &'p str,
    pub rule: &'p Rule,
}

impl Decided<'_> {
    /// The deciding rule's action (a `dont_` action means "not done").
    pub fn action(&self) -> Action {
        self.rule.action
    }
}

/// The outcome of `ima_match_policy` for one event, with the deciding rule per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evaluation<'p> {
    /// The kernel's return value: the "do" bits of the decided classes, the accumulated
    /// non-action flags and the appraise subaction bit.
    pub action: u32,
    pub measure: Option<Decided<'p>>,
    pub appraise: Option<Decided<'p>>,
    pub audit: Option<Decided<'p>>,
    pub hash: Option<Decided<'p>>,
    /// `pcr=` of the deciding measure rule, if it had one.
    pub pcr: Option<u32>,
    /// `template=` of the deciding measure rule, if it had one.
    pub template: Option<&'p Template>,
    /// `appraise_algos=` of the deciding appraise rule, if it had one.
    pub allowed_algos: Option<AlgoSet>,
}

impl<'p> Evaluation<'p> {
    fn empty() -> Self {
        Evaluation {
            action: 0,
            measure: None,
            appraise: None,
            audit: None,
            hash: None,
            pcr: None,
            template: None,
            allowed_algos: None,
        }
    }

    /// Whether the file is to be measured.
    pub fn measure(&self) -> bool {
        self.action & ActionClass::Measure.bit() != 0
    }

    /// Whether the file is to be appraised.
    pub fn appraise(&self) -> bool {
        self.action & ActionClass::Appraise.bit() != 0
    }

    /// Whether an audit record (AUDIT_INTEGRITY_RULE) is to be written.
    pub fn audit(&self) -> bool {
        self.action & ActionClass::Audit.bit() != 0
    }

    /// Whether `security.ima` is to be (re)written with the file hash (a later appraise
    /// match clears this, as in the kernel).
    pub fn hash(&self) -> bool {
        self.action & ActionClass::Hash.bit() != 0
    }

    /// Whether `class` is to be done.
    pub fn does(&self, class: ActionClass) -> bool {
        self.action & class.bit() != 0
    }

    /// The deciding rule of `class`.
    pub fn decided(&self, class: ActionClass) -> Option<Decided<'p>> {
        match class {
            ActionClass::Measure => self.measure,
            ActionClass::Appraise => self.appraise,
            ActionClass::Audit => self.audit,
            ActionClass::Hash => self.hash,
        }
    }

    /// The PCR to extend: the rule's `pcr=`, else [`super::DEFAULT_PCR`].
    pub fn pcr(&self) -> u32 {
        self.pcr.unwrap_or(super::DEFAULT_PCR)
    }

    /// The template name to use: the rule's `template=`, else `default` (the boot template
    /// for files, `ima-buf` for buffer measurements).
    pub fn template_name<'a>(&'a self, default: &'a str) -> &'a str {
        self.template.map_or(default, |t| t.name.as_str())
    }

    /// Accumulated non-action flags of all matched rules.
    pub fn flags(&self) -> RuleFlags {
        RuleFlags(self.action & RuleFlags::NONACTION.0)
    }

    /// A signature is required (`appraise_type=imasig`/`sigv3`/`imasig|modsig`).
    pub fn digsig_required(&self) -> bool {
        self.flags().contains(RuleFlags::DIGSIG_REQUIRED)
    }

    /// Appended (module-style) signatures are accepted.
    pub fn modsig_allowed(&self) -> bool {
        self.flags().contains(RuleFlags::MODSIG_ALLOWED)
    }

    /// fs-verity digests are required (`digest_type=verity`).
    pub fn verity_required(&self) -> bool {
        self.flags().contains(RuleFlags::VERITY_REQUIRED)
    }

    /// O_DIRECT opens may pass (`permit_directio`).
    pub fn permit_directio(&self) -> bool {
        self.flags().contains(RuleFlags::PERMIT_DIRECTIO)
    }

    /// The appraise subaction bit (one of [`subaction`]), 0 when not appraising.
    pub fn subaction(&self) -> u32 {
        self.action
            & (subaction::FILE_APPRAISE
                | subaction::MMAP_APPRAISE
                | subaction::BPRM_APPRAISE
                | subaction::READ_APPRAISE
                | subaction::CREDS_APPRAISE)
    }
}

fn id_holds(c: &IdCond, plain: u32, effective: u32, saved: u32, cap: bool) -> bool {
    if !c.effective {
        c.op.holds(plain, c.id)
    } else if cap {
        c.op.holds(effective, c.id) || c.op.holds(saved, c.id) || c.op.holds(plain, c.id)
    } else {
        c.op.holds(effective, c.id)
    }
}

/// `ima_match_rules`: whether one rule matches the event (all its conditions hold).
pub fn rule_matches(r: &Rule, ev: &Event<'_>) -> bool {
    if let Some(f) = r.func
        && f != ev.func
        && ev.func != Func::PostSetattr
    {
        return false;
    }
    if matches!(ev.func, Func::KeyCheck | Func::CriticalData) {
        // `ima_match_rule_data`: only uid and the keyring/label list count.
        if r.func != Some(ev.func) {
            return false;
        }
        if let Some(c) = &r.uid
            && !c.effective
            && !c.op.holds(ev.uid, c.id)
        {
            return false;
        }
        let list = if ev.func == Func::KeyCheck {
            &r.keyrings
        } else {
            &r.label
        };
        return match list {
            None => true,
            Some(items) => ev.func_data.is_some_and(|d| items.iter().any(|i| i == d)),
        };
    }
    if let Some(m) = r.mask
        && ev.func != Func::PostSetattr
    {
        let ok = if m.in_mask {
            m.mask.intersects(ev.mask)
        } else {
            m.mask == ev.mask
        };
        if !ok {
            return false;
        }
    }
    if r.fsmagic.is_some_and(|m| m != ev.fsmagic) {
        return false;
    }
    if r.fsname.as_deref().is_some_and(|n| n != ev.fsname) {
        return false;
    }
    if r.fsuuid.is_some_and(|u| u != ev.fsuuid) {
        return false;
    }
    if let Some(c) = &r.uid
        && !id_holds(c, ev.uid, ev.euid, ev.suid, ev.cap_setuid)
    {
        return false;
    }
    if let Some(c) = &r.gid
        && !id_holds(c, ev.gid, ev.egid, ev.sgid, ev.cap_setgid)
    {
        return false;
    }
    if r.fowner.is_some_and(|c| !c.op.holds(ev.fowner, c.id)) {
        return false;
    }
    if r.fgroup.is_some_and(|c| !c.op.holds(ev.fgroup, c.id)) {
        return false;
    }
    for (want, have) in r.lsm.iter().zip(ev.lsm.iter()) {
        if let Some(w) = want
            && *have != Some(w.as_str())
        {
            return false;
        }
    }
    ext_matches(r, ev)
}

fn ext_matches(r: &Rule, ev: &Event<'_>) -> bool {
    let x = &r.ext;
    if let Some(p) = &x.path
        && ev.path != Some(p.as_bytes())
    {
        return false;
    }
    if let Some(p) = &x.path_prefix
        && !ev.path.is_some_and(|e| path_has_prefix(e, p.as_bytes()))
    {
        return false;
    }
    if let Some(g) = &x.glob
        && !ev.path.is_some_and(|e| g.matches(e))
    {
        return false;
    }
    if let Some(p) = &x.exe
        && ev.exe != Some(p.as_bytes())
    {
        return false;
    }
    if let Some(p) = &x.cgroup
        && !ev.cgroup.is_some_and(|e| path_has_prefix(e, p.as_bytes()))
    {
        return false;
    }
    true
}

/// `get_subaction`.
fn subaction_of(r: &Rule, func: Func) -> u32 {
    if r.func.is_none() {
        return subaction::FILE_APPRAISE;
    }
    match func {
        Func::MmapCheck | Func::MmapCheckReqprot => subaction::MMAP_APPRAISE,
        Func::BprmCheck => subaction::BPRM_APPRAISE,
        Func::CredsCheck => subaction::CREDS_APPRAISE,
        Func::FileCheck | Func::PostSetattr => subaction::FILE_APPRAISE,
        _ => subaction::READ_APPRAISE,
    }
}

/// The fold step of `ima_match_policy` for one matching rule; returns the new `actmask`.
fn apply<'p>(
    e: &mut Evaluation<'p>,
    actmask: u32,
    index: usize,
    pr: &'p PolicyRule,
    func: Func,
    fail_securely: bool,
) -> u32 {
    let r = &pr.rule;
    let bits = r.action.bits();
    e.action |= r.flags.0 & RuleFlags::NONACTION.0;
    e.action |= bits & DO_MASK;
    if r.action == Action::Appraise {
        e.action |= subaction_of(r, func);
        e.action &= !ActionClass::Hash.bit();
        if fail_securely {
            e.action |= RuleFlags::FAIL_UNVERIFIABLE_SIGS.0;
        }
        if let Some(a) = r.appraise_algos {
            e.allowed_algos = Some(a);
        }
    }
    let d = Some(Decided {
        index,
        line: pr.line,
        text: &pr.text,
        rule: r,
    });
    match r.action.class() {
        ActionClass::Measure => e.measure = d,
        ActionClass::Appraise => e.appraise = d,
        ActionClass::Audit => e.audit = d,
        ActionClass::Hash => e.hash = d,
    }
    if let Some(p) = r.pcr {
        e.pcr = Some(p);
    }
    if let Some(t) = &r.template {
        e.template = Some(t);
    }
    if r.action.is_do() {
        actmask & !(bits | bits << 1)
    } else {
        actmask & !(bits | bits >> 1)
    }
}

/// The reference interpreter: walk every rule in order, exactly as `ima_match_policy`.
pub fn evaluate_linear<'p>(policy: &'p Policy, ev: &Event<'_>, classes: u32) -> Evaluation<'p> {
    let mut e = Evaluation::empty();
    let mut actmask = classes | (classes << 1);
    for (i, pr) in policy.rules.iter().enumerate() {
        if pr.rule.action.bits() & actmask == 0 || !rule_matches(&pr.rule, ev) {
            continue;
        }
        actmask = apply(&mut e, actmask, i, pr, ev.func, policy.fail_securely);
        if actmask == 0 {
            break;
        }
    }
    e
}

/// Rules keyed by one equality condition, sorted by key for binary search.
#[derive(Clone, Debug)]
struct Keyed<K> {
    entries: Vec<(K, Vec<u32>)>,
}

impl<K: Ord + Copy> Keyed<K> {
    fn new() -> Self {
        Keyed {
            entries: Vec::new(),
        }
    }

    fn push(&mut self, k: K, idx: u32) {
        match self.entries.binary_search_by_key(&k, |(key, _)| *key) {
            Ok(p) => self.entries[p].1.push(idx),
            Err(p) => self.entries.insert(p, (k, vec![idx])),
        }
    }

    fn get(&self, k: K) -> &[u32] {
        match self.entries.binary_search_by_key(&k, |(key, _)| *key) {
            Ok(p) => &self.entries[p].1,
            Err(_) => &[],
        }
    }
}

/// Candidate rules for one hook. Each rule sits in exactly one list: keyed by the first of
/// its equality conditions `fsmagic=`, `fsuuid=`, `fowner=`, `uid=` (a rule can only match
/// an event with that value), or in `any` when it has none. Every list is in policy order.
#[derive(Clone, Debug)]
struct Bucket {
    any: Vec<u32>,
    by_magic: Keyed<u64>,
    by_uuid: Keyed<[u8; 16]>,
    by_fowner: Keyed<u32>,
    by_uid: Keyed<u32>,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            any: Vec::new(),
            by_magic: Keyed::new(),
            by_uuid: Keyed::new(),
            by_fowner: Keyed::new(),
            by_uid: Keyed::new(),
        }
    }
}

/// A policy compiled for fast evaluation: rules are bucketed by hook and then keyed by one
/// equality condition, so an event only visits the rules that could match it, in policy
/// order. Same answers as [`Policy::evaluate`] (property-tested).
#[derive(Clone, Debug)]
pub struct IndexedMatcher {
    policy: Policy,
    /// Indexed by `Func::number()`.
    buckets: Vec<Bucket>,
    /// Action bits per rule, to skip decided classes without touching the rule.
    action_bits: Vec<u32>,
}

impl IndexedMatcher {
    /// Compiles `policy`.
    pub fn new(policy: Policy) -> IndexedMatcher {
        let mut buckets = vec![Bucket::new(); Func::ALL.len()];
        for f in Func::ALL {
            let b = &mut buckets[usize::from(f.number())];
            let buffer = matches!(f, Func::KeyCheck | Func::CriticalData);
            for (i, pr) in policy.rules.iter().enumerate() {
                let r = &pr.rule;
                let can = match f {
                    Func::PostSetattr => true,
                    Func::KeyCheck | Func::CriticalData => r.func == Some(f),
                    _ => r.func.is_none_or(|rf| rf == f),
                };
                if !can {
                    continue;
                }
                let idx = u32::try_from(i).unwrap_or(u32::MAX);
                let uid_eq = r
                    .uid
                    .filter(|c| c.op == IdOp::Eq && !c.effective)
                    .map(|c| c.id);
                // Buffer hooks look only at uid= (and the keyring/label list).
                if let (Some(m), false) = (r.fsmagic, buffer) {
                    b.by_magic.push(m, idx);
                } else if let (Some(u), false) = (r.fsuuid, buffer) {
                    b.by_uuid.push(u.0, idx);
                } else if let (Some(o), false) =
                    (r.fowner.filter(|c| c.op == IdOp::Eq).map(|c| c.id), buffer)
                {
                    b.by_fowner.push(o, idx);
                } else if let Some(u) = uid_eq {
                    b.by_uid.push(u, idx);
                } else {
                    b.any.push(idx);
                }
            }
        }
        let action_bits = policy.rules.iter().map(|r| r.rule.action.bits()).collect();
        IndexedMatcher {
            policy,
            buckets,
            action_bits,
        }
    }

    /// The compiled policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// [`Policy::evaluate`], faster.
    pub fn evaluate(&self, ev: &Event<'_>) -> Evaluation<'_> {
        self.evaluate_classes(ev, ALL_CLASSES)
    }

    /// [`Policy::evaluate_classes`], faster.
    pub fn evaluate_classes(&self, ev: &Event<'_>, classes: u32) -> Evaluation<'_> {
        let mut e = Evaluation::empty();
        let mut actmask = classes | (classes << 1);
        let Some(b) = self.buckets.get(usize::from(ev.func.number())) else {
            return e;
        };
        let lists: [&[u32]; 5] = [
            &b.any,
            b.by_magic.get(ev.fsmagic),
            b.by_uuid.get(ev.fsuuid.0),
            b.by_fowner.get(ev.fowner),
            b.by_uid.get(ev.uid),
        ];
        let mut pos = [0usize; 5];
        loop {
            // Merge the ordered candidate lists: take the smallest head.
            let mut best: Option<(usize, u32)> = None;
            for (l, list) in lists.iter().enumerate() {
                if let Some(&v) = list.get(pos[l])
                    && best.is_none_or(|(_, bv)| v < bv)
                {
                    best = Some((l, v));
                }
            }
            let Some((l, next)) = best else { break };
            pos[l] += 1;
            let k = next as usize;
            if self
                .action_bits
                .get(k)
                .is_none_or(|bits| bits & actmask == 0)
            {
                continue;
            }
            let Some(pr) = self.policy.rules.get(k) else {
                continue;
            };
            if !rule_matches(&pr.rule, ev) {
                continue;
            }
            actmask = apply(&mut e, actmask, k, pr, ev.func, self.policy.fail_securely);
            if actmask == 0 {
                break;
            }
        }
        e
    }
}

impl IdOp {
    /// All comparisons (for generators and tests).
    pub const ALL: [IdOp; 3] = [IdOp::Eq, IdOp::Gt, IdOp::Lt];
}
