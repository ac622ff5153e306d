//! The policy engine predicts real kernel measurement lists: the tcb built-in (scenario a)
//! and the custom policy of scenario d, applied to the accesses of each capture's
//! `workload.log`, yield exactly the entries (PCR, template, name) of the captured ascii
//! list, in order. The kernel's per-inode cache (a file is measured once per PCR until it is
//! written) and the hooks an exec/read runs are modelled here; the decisions come from the
//! policy engine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ima_core::policy::defaults::magic;
use ima_core::policy::{
    BootPolicy, Event, Func, LoadMode, Mask, Policy, PolicySource, PolicyState, Uuid,
};

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/kernel-6.1")
        .join(name)
}

const DATA_UUID: &str = "8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f";

/// One file the workload touches.
#[derive(Clone)]
struct File {
    /// The name the kernel logs (the resolved path).
    path: String,
    /// Inode identity (hard links share it).
    inode: String,
    uid: u32,
    gid: u32,
    on_data: bool,
}

struct Sim {
    state: PolicyState,
    default_template: String,
    /// uid:gid per data-disk path (data-disk-manifest.tsv).
    owners: HashMap<String, (u32, u32)>,
    /// measured PCRs per inode (`iint->measured_pcrs`).
    measured: HashMap<String, HashSet<u32>>,
    queued_keys: Vec<String>,
    log: Vec<(u32, String, String)>,
}

impl Sim {
    fn new(dir: &Path, boot: BootPolicy) -> Sim {
        let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
        let default_template = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ima_template="))
            .unwrap()
            .to_owned();
        let manifest = std::fs::read_to_string(dir.join("data-disk-manifest.tsv")).unwrap();
        let owners = manifest
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let o: Vec<u32> = f[3]
                    .split(':')
                    .take(2)
                    .map(|x| x.parse().unwrap())
                    .collect();
                (f[0].to_owned(), (o[0], o[1]))
            })
            .collect();
        Sim {
            state: PolicyState::new(&boot),
            default_template,
            owners,
            measured: HashMap::new(),
            queued_keys: Vec::new(),
            log: Vec::new(),
        }
    }

    /// A file by the path the workload used: data-disk files get their owner from the
    /// manifest; anything else lives in the initramfs (tmpfs, root-owned).
    fn file(&self, path: &str) -> File {
        // Facts of the data disk as built on the host: symlink.txt -> symlink-target.txt,
        // hardlink.txt is a hard link of hardtarget.txt.
        let resolved = path.replace("/data/files/symlink.txt", "/data/files/symlink-target.txt");
        let inode = resolved.replace("/data/files/hardlink.txt", "/data/files/hardtarget.txt");
        let (uid, gid, on_data) = match self.owners.get(&resolved) {
            Some(&(u, g)) => (u, g, true),
            None => {
                assert!(
                    !resolved.starts_with("/data/"),
                    "{resolved} not in the manifest"
                );
                (0, 0, false)
            }
        };
        File {
            path: resolved,
            inode,
            uid,
            gid,
            on_data,
        }
    }

    fn event<'a>(&self, func: Func, mask: Mask, f: &'a File, uid: u32) -> Event<'a> {
        let mut ev = Event::new(func, mask);
        (ev.uid, ev.euid, ev.suid, ev.gid, ev.egid, ev.sgid) = (uid, uid, uid, uid, uid, uid);
        ev.cap_setuid = uid == 0;
        ev.cap_setgid = uid == 0;
        ev.fowner = f.uid;
        ev.fgroup = f.gid;
        if f.on_data {
            ev.fsmagic = magic::EXT4_SUPER_MAGIC;
            ev.fsname = "ext4";
            ev.fsuuid = DATA_UUID.parse::<Uuid>().unwrap();
        } else {
            ev.fsmagic = magic::TMPFS_MAGIC;
            ev.fsname = "tmpfs";
        }
        ev.path = Some(f.path.as_bytes());
        ev
    }

    /// `process_measurement` for a file hook, reduced to measurement.
    fn access(&mut self, func: Func, mask: Mask, path: &str, uid: u32) {
        let f = self.file(path);
        let ev = self.event(func, mask, &f, uid);
        let e = self.state.active().evaluate(&ev);
        if !e.measure() {
            return;
        }
        let pcr = e.pcr();
        let template = e.template_name(&self.default_template).to_owned();
        if self
            .measured
            .entry(f.inode.clone())
            .or_default()
            .insert(pcr)
        {
            self.log.push((pcr, template, f.path.replace(' ', "_")));
        }
    }

    /// A buffer measurement (`process_buffer_measurement`): default template ima-buf.
    fn buffer(&mut self, func: Func, data: Option<&str>, name: &str) {
        let mut ev = Event::new(func, Mask::NONE);
        ev.func_data = data;
        let e = self.state.active().evaluate(&ev);
        if e.measure() {
            let t = e.template_name("ima-buf").to_owned();
            self.log.push((e.pcr(), t, name.to_owned()));
        }
    }

    /// The last writer closed: the inode is re-measured on its next access.
    fn written(&mut self, path: &str) {
        let f = self.file(path);
        self.access(Func::FileCheck, Mask::MAY_WRITE, path, 0);
        self.measured.remove(&f.inode);
    }

    /// execve as `uid`: the open (FILE_CHECK with MAY_EXEC), BPRM_CHECK, CREDS_CHECK, the
    /// ELF mapping (MMAP_CHECK_REQPROT, MMAP_CHECK); for a dynamic binary the interpreter
    /// (opened by the kernel, mapped) and libc (opened for read by ld.so, mapped); for a
    /// script the shell reading it.
    fn exec(&mut self, path: &str, uid: u32) {
        for func in [Func::FileCheck, Func::BprmCheck, Func::CredsCheck] {
            self.access(func, Mask::MAY_EXEC, path, uid);
        }
        if path.ends_with(".sh") {
            self.exec("/bin/sh", uid);
            self.access(Func::FileCheck, Mask::MAY_READ, path, uid);
            return;
        }
        self.mmap(path, uid);
        if path.ends_with("-dyn") {
            let ld = "/data/lib64/ld-linux-x86-64.so.2";
            self.access(Func::FileCheck, Mask::MAY_EXEC, ld, uid);
            self.mmap(ld, uid);
            let libc = "/data/lib/x86_64-linux-gnu/libc.so.6";
            self.access(Func::FileCheck, Mask::MAY_READ, libc, uid);
            self.mmap(libc, uid);
        }
    }

    fn mmap(&mut self, path: &str, uid: u32) {
        self.access(Func::MmapCheckReqprot, Mask::MAY_EXEC, path, uid);
        self.access(Func::MmapCheck, Mask::MAY_EXEC, path, uid);
    }

    fn add_key(&mut self, ring: &str) {
        if self.state.custom_loaded() {
            self.buffer(Func::KeyCheck, Some(ring), ring);
        } else {
            // CONFIG_IMA_QUEUE_EARLY_BOOT_KEYS: measured when a custom policy is loaded.
            self.queued_keys.push(ring.to_owned());
        }
    }

    fn load(&mut self, policy: Policy) {
        self.state
            .load(policy, PolicySource::Literal, LoadMode::Append)
            .unwrap();
        for ring in std::mem::take(&mut self.queued_keys) {
            self.buffer(Func::KeyCheck, Some(&ring), &ring);
        }
    }

    /// Replays `workload.log`.
    fn run_workload(&mut self, dir: &Path, custom: Option<Policy>) {
        let log = std::fs::read_to_string(dir.join("workload.log")).unwrap();
        let mut custom = custom;
        let mut reads: HashMap<String, usize> = HashMap::new();
        let mut modify_section = false;
        for line in log.lines() {
            if line.starts_with("# policy write rc=0") {
                self.load(custom.take().expect("policy written once"));
            } else if line.starts_with("# common workload: modify then re-read") {
                modify_section = true;
            } else if line.starts_with("# common workload: write-only open by root") {
                self.written("/data/files/write-only.txt");
            } else if let Some(rest) = line.strip_prefix("$ imahelper addkey ") {
                self.add_key(rest.split_whitespace().next().unwrap());
            } else if let Some(rest) = line.strip_prefix("$ imahelper kexec ") {
                let kernel = rest.split_whitespace().next().unwrap();
                self.exec("/bin/imahelper", 0);
                self.access(Func::KexecKernelCheck, Mask::MAY_READ, kernel, 0);
                self.buffer(Func::KexecCmdline, None, "kexec-cmdline");
            } else if let Some(cmd) = line.strip_prefix("exec ").and_then(|l| l.strip_suffix(':')) {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                match words.as_slice() {
                    ["chroot", root, prog] => {
                        self.exec("/bin/chroot", 0);
                        self.exec(&format!("{root}{prog}"), 0);
                    }
                    ["imahelper", "runas", uid, prog] => {
                        self.exec("/bin/imahelper", 0);
                        self.exec(prog, uid.parse().unwrap());
                    }
                    [prog, ..] => self.exec(prog, 0),
                    [] => panic!("empty exec"),
                }
            } else if let Some(rest) = line.strip_prefix("read ") {
                let (path, status) = rest.rsplit_once(": ").unwrap();
                assert!(status.starts_with("OK"), "{line}");
                let n = reads.entry(path.to_owned()).or_default();
                *n += 1;
                if modify_section && *n == 2 {
                    self.written(path);
                }
                self.access(Func::FileCheck, Mask::MAY_READ, path, 0);
            } else if line.starts_with("read-by-user OK") {
                self.access(
                    Func::FileCheck,
                    Mask::MAY_READ,
                    "/data/files/read-by-user.txt",
                    1000,
                );
            }
        }
        assert!(custom.is_none(), "the custom policy was never loaded");
    }
}

/// (pcr, template, name) of every entry after boot_aggregate.
fn captured(dir: &Path) -> Vec<(u32, String, String)> {
    let text = std::fs::read_to_string(dir.join("ima/ascii_runtime_measurements")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().unwrap(), f[2].to_owned(), f[4].to_owned())
        })
        .collect()
}

fn boot_policy(dir: &Path) -> BootPolicy {
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
    let param = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ima_policy="))
        .unwrap();
    let mut b = BootPolicy::from_param(param).unwrap();
    b.tmpfs_all_hooks = true; // Linux 6.1: the tcb tmpfs rule covers every hook
    b
}

/// Every access of access_results.tsv is one the workload log replays.
fn assert_covers_access_results(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("workload.log")).unwrap();
    let results = std::fs::read_to_string(dir.join("access_results.tsv")).unwrap();
    for l in results.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f[2], "OK", "{l}");
        let want = format!("{} {}", f[0], f[1]);
        assert!(log.contains(&want), "{want} missing from workload.log");
    }
}

#[test]
fn tcb_predicts_capture_a() {
    let dir = capture("a-tcb-ima-ng-sha256");
    assert_covers_access_results(&dir);
    let mut sim = Sim::new(&dir, boot_policy(&dir));
    sim.buffer(Func::CriticalData, Some("kernel_info"), "kernel_version");
    sim.add_key(".builtin_trusted_keys");
    sim.run_workload(&dir, None);
    assert_eq!(sim.log, captured(&dir));
    // Sanity: the interesting decisions are all in there.
    assert!(
        sim.log
            .iter()
            .any(|(_, _, n)| n == "/data/lib64/ld-linux-x86-64.so.2")
    );
    assert!(
        !sim.log
            .iter()
            .any(|(_, _, n)| n.contains("read-by-user") || n.contains("hardlink"))
    );
}

#[test]
fn custom_policy_predicts_capture_d() {
    let dir = capture("d-custom-policy-ngv2-buf");
    assert_covers_access_results(&dir);
    let text = std::fs::read_to_string(dir.join("policy.written")).unwrap();
    let custom = Policy::parse_with(&text, &ima_core::policy::ParseOptions::strict()).unwrap();
    let mut sim = Sim::new(&dir, boot_policy(&dir));
    // Boot: the critical_data built-in measures kernel_version; Debian's built-in key is
    // queued until a custom policy is loaded.
    sim.buffer(Func::CriticalData, Some("kernel_info"), "kernel_version");
    sim.add_key(".builtin_trusted_keys");
    sim.run_workload(&dir, Some(custom));
    assert_eq!(sim.log, captured(&dir));
    assert!(
        sim.log
            .contains(&(11, "ima-ng".into(), "/data/files/user-owned.txt".into()))
    );
    assert!(
        sim.log
            .contains(&(10, "ima-sigv2".into(), "/data/bin/hello-user".into()))
    );
}
