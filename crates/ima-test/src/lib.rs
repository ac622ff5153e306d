//! Fixtures shared by the workspace's tests: where the golden vectors live, and (as the
//! engine grows) the swtpm harness and temporary filesystems.

use std::path::PathBuf;

mod ext4;
mod mount;
mod swtpm;

pub use ext4::Ext4;
pub use mount::TestMount;
pub use swtpm::{Swtpm, SwtpmChardev};

/// Runs `cmd` and returns its stdout; panics (the test's failure report) with the command,
/// its stdout and stderr if it cannot start or exits non-zero.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/ima-test at compile time.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `testdata/` at the repository root: golden vectors, each directory with a PROVENANCE.md.
pub fn testdata() -> PathBuf {
    repo_root().join("testdata")
}

/// A real-kernel capture committed under `testdata/kernel-6.1/NAME`.
pub fn kernel_capture(name: &str) -> PathBuf {
    testdata().join("kernel-6.1").join(name)
}

/// The PCR banks a capture has values for (`pcrs_<bank>.txt`), sorted: `["sha1", "sha256"]`
/// for most, more where the oracle's TPM had more banks.
pub fn kernel_capture_banks(name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(kernel_capture(name))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|f| Some(f.strip_prefix("pcrs_")?.strip_suffix(".txt")?.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The names of every committed real-kernel capture, sorted.
pub fn kernel_captures() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(testdata().join("kernel-6.1"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
