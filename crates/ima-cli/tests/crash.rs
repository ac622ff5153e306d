//! Crash consistency: SIGKILL `imactl measure` at random instants while it measures a tree
//! into a real swtpm; after every restart the list must replay to the TPM's PCRs (so nothing
//! that was extended is missing from it). IMA_CRASH_KILLS sets the number of kills (default
//! 15 here; `bench/crash-stress` runs 1,000 on a release build).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ima_test::Swtpm;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn imactl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imactl"))
}

fn measure(tcti: &str, state: &Path, tree: &Path) -> Command {
    let mut c = imactl();
    c.args(["measure", "-q", "--tpm", tcti, "--state"])
        .arg(state)
        .arg("-r")
        .arg(tree)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn random_sigkills_never_break_the_list() {
    let kills: usize = std::env::var("IMA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let files: usize = std::env::var("IMA_CRASH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let sw = Swtpm::start();
    let tcti = sw.tcti();
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    let state = d.path().join("state");
    std::fs::create_dir(&tree).unwrap();
    let mut rng = Lcg(0x1a5e_ed00_u64.wrapping_add(kills as u64));
    for i in 0..files {
        let len = 1 + (rng.next() % 16384) as usize;
        std::fs::write(tree.join(format!("f{i:05}")), vec![(i % 251) as u8; len]).unwrap();
    }
    assert!(measure(&tcti, &state, &tree).status().unwrap().success());
    // New work for a run: change a random quarter of the files (re-hashed, new entries).
    let mutate = |rng: &mut Lcg| {
        for _ in 0..files / 4 {
            let i = rng.next() as usize % files;
            let len = 1 + (rng.next() % 16384) as usize;
            let byte = (rng.next() % 256) as u8;
            std::fs::write(tree.join(format!("f{i:05}")), vec![byte; len]).unwrap();
        }
    };
    // One uninterrupted incremental run tells how long such a run takes.
    mutate(&mut rng);
    let t0 = Instant::now();
    assert!(measure(&tcti, &state, &tree).status().unwrap().success());
    let full = t0.elapsed().as_micros().max(1000) as u64;

    let mut interrupted = 0;
    let mut recovered = 0;
    for k in 0..kills {
        mutate(&mut rng);
        let mut child = measure(&tcti, &state, &tree).spawn().unwrap();
        // A third of the kills at a random instant of the run; the others a random 0-30 ms
        // after the journal grew, i.e. inside the sync / extend / derived-files window.
        let journal = state.join("binary_runtime_measurements_sha1");
        let before = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        let delay = if k % 3 == 0 {
            let d = rng.next() % (full * 12 / 10);
            std::thread::sleep(Duration::from_micros(d));
            d
        } else {
            let t = Instant::now();
            while child.try_wait().unwrap().is_none()
                && std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) == before
                && t.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_micros(100));
            }
            let d = rng.next() % 30_000;
            std::thread::sleep(Duration::from_micros(d));
            t.elapsed().as_micros() as u64
        };
        let was_running = child.try_wait().unwrap().is_none();
        if was_running {
            interrupted += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Restart: opening the list recovers it (a non-regular path measures nothing).
        let out = imactl()
            .args(["measure", "--tpm", &tcti, "--state"])
            .arg(&state)
            .arg("/dev/null")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "restart after kill {k}: {err}");
        let did_recover = err.contains("recovered an interrupted run");
        if did_recover {
            recovered += 1;
        }

        let out = imactl()
            .args(["log", "verify", "--tpm", &tcti])
            .arg(state.join("binary_runtime_measurements"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kill {k} (after {delay} us): list does not replay to the TPM:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "{kills} kills, {interrupted} interrupted a running measure, {recovered} restarts \
         recovered something; an incremental run takes {full} us"
    );
    // The test means something only if kills hit running measurements and recovery had work.
    assert!(
        interrupted * 2 >= kills,
        "{interrupted} of {kills} kills hit a running process"
    );
    assert!(recovered > 0, "no kill needed recovery");
    // A final uninterrupted run completes the list and it still replays.
    assert!(measure(&tcti, &state, &tree).status().unwrap().success());
    let st = imactl()
        .args(["log", "verify", "--tpm", &tcti])
        .arg(state.join("binary_runtime_measurements"))
        .status()
        .unwrap();
    assert!(st.success());
}
