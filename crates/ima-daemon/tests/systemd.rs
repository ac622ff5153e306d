//! imad under systemd's protocols, without systemd as PID 1: the notification socket is a real
//! datagram socket (`NOTIFY_SOCKET`), the watchdog interval a real `WATCHDOG_USEC`; and the
//! packaged unit passes `systemd-analyze verify`. As root, marking a loop-mounted ext4 only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ima_test::TestMount;

mod support;
use support::*;

fn socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (sock, path.to_str().unwrap().to_owned())
}

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification within 5 s");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// A marked mount, a state directory and a notification socket for one imad.
struct Setup {
    m: TestMount,
    _d: tempfile::TempDir,
    state: std::path::PathBuf,
    sock: UnixDatagram,
    path: String,
}

impl Setup {
    fn new() -> Self {
        let m = TestMount::ext4(32);
        let d = tempfile::tempdir().unwrap();
        let (sock, path) = socket(d.path());
        let state = d.path().join("state");
        Self {
            m,
            _d: d,
            state,
            sock,
            path,
        }
    }

    fn args(&self) -> [&str; 6] {
        let (s, mark) = (
            self.state.to_str().unwrap(),
            self.m.path().to_str().unwrap(),
        );
        ["--state", s, "--mark", mark, "--audit", "none"]
    }

    /// imad with `NOTIFY_SOCKET` and a half-second `WATCHDOG_USEC`, and `env`.
    fn start(&self, env: &[(&str, &str)]) -> Imad {
        let mut all = vec![
            ("NOTIFY_SOCKET", self.path.as_str()),
            ("WATCHDOG_USEC", "500000"),
        ];
        all.extend_from_slice(env);
        Imad::spawn(&self.state, &self.args(), &all)
    }
}

#[test]
fn notifies_ready_pings_the_watchdog_and_notifies_stopping() {
    let setup = Setup::new();
    let (m, sock) = (&setup.m, &setup.sock);
    let imad = setup.start(&[]);
    assert_eq!(next(sock), "READY=1");
    let t = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(next(sock), "WATCHDOG=1");
    }
    // Every 250 ms (half of WATCHDOG_USEC): three pings in 0.5 to 1.5 s.
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    std::fs::write(m.join("f"), "x").unwrap(); // events keep the loop going round
    let log = imad.stop();
    assert!(
        log.contains("systemd watchdog: WATCHDOG=1 every 250ms"),
        "{log}"
    );
    let mut rest = Vec::new();
    while let Ok(n) = {
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 256];
        sock.recv(&mut buf).map(|n| buf[..n].to_vec())
    } {
        rest.push(String::from_utf8(n).unwrap());
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{rest:?}"
    );
}

#[test]
fn no_pings_for_another_pid_and_a_bad_interval_is_refused() {
    let setup = Setup::new();
    let sock = &setup.sock;
    // WATCHDOG_PID names another process (systemd's rule): the watchdog is not ours.
    let imad = setup.start(&[("WATCHDOG_PID", "1")]);
    assert_eq!(next(sock), "READY=1");
    sock.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        sock.recv(&mut buf).is_err(),
        "a ping for another pid's watchdog"
    );
    imad.stop();
    for bad in ["100", "ten", "-1"] {
        let env = [
            ("NOTIFY_SOCKET", setup.path.as_str()),
            ("WATCHDOG_USEC", bad),
        ];
        let err = refused_env(&setup.args(), &env);
        assert!(
            err.contains(&format!("WATCHDOG_USEC={bad}: expected microseconds")),
            "{err}"
        );
    }
}

#[test]
fn the_packaged_unit_verifies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let unit = std::fs::read_to_string(root.join("packaging/systemd/imad.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/sbin/imad --config /etc/ima/imad.toml",
        "WatchdogSec=30s",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    // /usr/sbin/imad is not installed here: verify the unit with this build's imad.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("imad.service");
    std::fs::write(
        &p,
        unit.replace("/usr/sbin/imad", env!("CARGO_BIN_EXE_imad")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&p)
        .output()
        .expect("systemd-analyze (the systemd package)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    // The OpenRC script is at least valid sh.
    let st = Command::new("sh")
        .arg("-n")
        .arg(root.join("packaging/openrc/imad"))
        .status()
        .unwrap();
    assert!(st.success());
}

/// The state letter of `/proc/PID/stat` (`T`: stopped).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(") ").unwrap().1;
    after.chars().next().unwrap()
}

#[test]
fn ctrl_z_does_not_stop_imad() {
    let m = TestMount::ext4(32);
    std::fs::write(m.join("f"), "x").unwrap();
    let d = tempfile::tempdir().unwrap();
    let state_dir = d.path().join("state");
    let imad = Imad::start(&state_dir, &["--audit", "none"], m.path());
    let pid = imad.pid().to_string();
    for sig in ["-TSTP", "-TTIN", "-TTOU"] {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(200));
        let st = state(imad.pid());
        if st == 'T' {
            // Let it go on before failing, so the openers of the mount are not frozen.
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
            panic!("{sig} stopped imad");
        }
    }
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"x");
    let log = imad.stop();
    assert_eq!(events(&log), 1, "{log}");
}
