//! Shared by the imad integration tests: imad under a watchdog that SIGKILLs it (which makes
//! the kernel allow anything it left pending), readers of the list it writes, and labels.
#![allow(dead_code)] // each test binary uses some of these

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest any imad may live in a test.
pub const WATCHDOG: Duration = Duration::from_secs(120);

pub struct Imad {
    child: Option<Child>,
    state: PathBuf,
    stderr: PathBuf,
    done: Arc<AtomicBool>,
}

impl Imad {
    /// Starts imad and waits for `STATE/imad.ready`.
    pub fn start(state: &Path, args: &[&str], mark: &Path) -> Self {
        let (s, m) = (state.to_str().unwrap(), mark.to_str().unwrap());
        let all: Vec<&str> = ["--state", s, "--mark", m]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Self::spawn(state, &all, &[])
    }

    /// Starts imad with exactly `args` and `env` (the state directory `state` must be the one
    /// they name) and waits for `STATE/imad.ready`.
    pub fn spawn(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(state).unwrap();
        let stderr = state.with_extension(format!("stderr.{}", unique()));
        let child = Command::new(env!("CARGO_BIN_EXE_imad"))
            .args(args)
            .envs(env.iter().copied())
            .env("IMAD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        let done = Arc::new(AtomicBool::new(false));
        {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let t = Instant::now();
                while t.elapsed() < WATCHDOG {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            });
        }
        let mut me = Self {
            child: Some(child),
            state: state.to_owned(),
            stderr,
            done,
        };
        let t = Instant::now();
        // The file names the pid: one a SIGKILLed imad left behind is not this one's.
        let ready = state.join("imad.ready");
        while std::fs::read_to_string(&ready).ok().as_deref() != Some(&format!("{pid}\n")) {
            if let Some(st) = me.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("imad exited ({st}) before ready:\n{}", me.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "imad not ready:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit (within a deadline) and its log.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "imad ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        assert!(st.success(), "imad: {st}\n{log}");
        assert!(
            !self.state.join("imad.ready").exists(),
            "imad.ready left behind"
        );
        log
    }

    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Imad {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.done.store(true, Ordering::Relaxed);
    }
}

pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The ascii list's (template, name) per entry.
pub fn list(state: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(state.join("ascii_runtime_measurements"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2].to_owned(), f[3].to_owned(), f[4].to_owned())
        })
        .collect()
}

/// The entries of files: without boot_aggregate, the engine's and imad's own records.
pub fn file_entries(l: &[(String, String, String)]) -> Vec<(String, String, String)> {
    l.iter()
        .filter(|e| {
            e.2 != "boot_aggregate" && e.2 != "ima-engine-boot" && !e.2.starts_with("imad-")
        })
        .cloned()
        .collect()
}

/// The buffers of the ima-buf entries named `name` (the ascii list's last field, hex).
pub fn buffers(state: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(state.join("ascii_runtime_measurements"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2] == "ima-buf" && f[4] == name)
                .then(|| String::from_utf8(hex_decode(f[5])).unwrap())
        })
        .collect()
}

/// `imad` reports its counts on exit: "N events: A allowed, ...".
pub fn events(log: &str) -> u64 {
    let l = log
        .lines()
        .rev()
        .find(|l| l.contains(" events: "))
        .expect(log);
    let n = l
        .split(" events: ")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    n.parse().unwrap()
}

pub fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

pub fn exec(p: &Path) {
    let st = Command::new(p).status().unwrap();
    assert!(st.success());
}

pub fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

pub fn sha256_bytes(data: &[u8]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    std::fs::write(&p, data).unwrap();
    hex_decode(&sha256(&p))
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `security.ima` = IMA_XATTR_DIGEST_NG (0x04), sha256 (id 4), the digest of `content`.
pub fn digest_label(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04, 0x04];
    v.extend(sha256_bytes(content));
    v
}

/// A well-formed signature v2 (`signature_v2_hdr`: type 0x03, version 2, sha256, key id,
/// big-endian length) by a key no keyring holds.
pub fn unknown_key_signature() -> Vec<u8> {
    let mut v = vec![0x03, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef];
    v.extend(256u16.to_be_bytes());
    v.extend([0x5a; 256]);
    v
}

pub fn set_ima(p: &Path, value: &[u8]) {
    ima_sys::xattr::set_path(p, "security.ima", value, ima_sys::xattr::SetMode::Any).unwrap();
}

pub fn open_errno(p: &Path) -> Option<i32> {
    File::open(p).err().map(|e| e.raw_os_error().unwrap())
}

/// Runs imad with `args`, which must make it refuse to start: its exit code must be 2 within
/// 30 s (else it is killed and the test fails). Returns its stderr.
pub fn refused(args: &[&str]) -> String {
    refused_env(args, &[])
}

/// [`refused`] with `env` added to imad's environment.
pub fn refused_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imad"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("imad did not refuse to start: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(2), "{args:?}: {err}");
    err
}
