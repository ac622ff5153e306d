//! Running one operation over many files: the paths given on the command line, or with
//! `-r` every regular file below them. Shared by `hash`, `sign`, `verify`, `appraise` and
//! `evm`.
//!
//! Every file is opened once, by the walk ([`ima_sys::walk`]: relative to its directory,
//! never through a symlink), and the operation works on that descriptor, so a file swapped
//! for a symlink during the run is skipped, never followed. The walk feeds the engine's
//! worker pool ([`ima_engine::pool`]: largest file first, one worker per CPU, a bounded
//! queue); what an operation prints with [`out_line`] comes out in walk order all the same
//! (`nftw`'s, so `hash -n -r` lists files as `evmctl -r` does), the walker waiting when it
//! runs [`WINDOW`] files ahead of the oldest unprinted one. A progress bar is drawn on stderr
//! when it is a terminal; a summary (files, bytes, time, failures, errors) is printed to
//! stderr at the end of tree runs. Per-file errors (stderr) are printed at once and never
//! stop the run; FIFOs, devices and sockets in a tree are noted on stderr, never opened.

use std::cell::RefCell;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ima_engine::pool::Pool;
use ima_sys::walk::{Entry, Item, Walk};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files walked but not yet printed, at most: bounds the reorder buffer (each waiting file
/// holds its few output lines) while leaving the largest-first scheduler a wide choice.
pub const WINDOW: u64 = ima_engine::pool::QUEUE_MAX as u64;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (hashed, signed, verified good).
    Ok,
    /// Checked and found bad (verification failure): exit status 1.
    Failed,
    /// Could not be processed (I/O error, bad input): exit status 2.
    Error,
}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    pub failed: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// 0 if everything was fine, 1 if a check failed, 2 if any error occurred.
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 {
            2
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs / 1e9
        } else {
            0.0
        };
        write!(
            f,
            "{} files, {:.1} MB in {:.3} s ({:.2} GB/s), {} failed, {} errors",
            self.files,
            self.bytes as f64 / 1e6,
            secs,
            rate,
            self.failed,
            self.errors
        )
    }
}

thread_local! {
    /// The output of the file this worker thread is processing (`None` outside [`run`]).
    static PENDING: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// One whole line of a file's result on stdout. Inside [`run`] it is held back until every
/// file walked before this one has been printed; elsewhere it is written at once.
pub fn out_line(line: &str) {
    let held = PENDING.with(|p| match p.borrow_mut().as_mut() {
        Some(lines) => {
            lines.push(line.to_owned());
            true
        }
        None => false,
    });
    if !held {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
    }
}

/// Set once when the binary runs as `evmctl`: its messages then start `evmctl: `, as
/// evmctl's do, not `imactl: error: `.
pub static EVMCTL_MODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One error line on stderr, `imactl: error: PATH: MSG` (`evmctl: PATH: MSG` in evmctl mode).
pub fn err_line(path: &Path, msg: impl fmt::Display) {
    let prefix = if EVMCTL_MODE.load(std::sync::atomic::Ordering::Relaxed) {
        "evmctl:"
    } else {
        "imactl: error:"
    };
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{prefix} {}: {msg:#}", path.display());
}

/// Runs `op` on every file: each of `paths` that is a regular file (symlinks to one are
/// followed), and with `recursive` every regular file below the directories (opened relative
/// to its directory, symlinks never followed: [`ima_sys::walk`]). `op` gets the open file,
/// returns the outcome and the bytes it processed, and prints its own result line.
pub fn run<F>(paths: &[PathBuf], recursive: bool, op: F) -> Summary
where
    F: Fn(&mut Entry) -> (Outcome, u64) + Sync,
{
    run_to(std::io::stdout(), WINDOW, paths, recursive, op)
}

/// [`run`], printing the files' [`out_line`]s to `out`, the walker at most `window` files
/// ahead of the printer.
fn run_to<W, F>(mut out: W, window: u64, paths: &[PathBuf], recursive: bool, op: F) -> Summary
where
    W: Write,
    F: Fn(&mut Entry) -> (Outcome, u64) + Sync,
{
    let start = Instant::now();
    let mut sum = Summary::default();
    let walk_errors = AtomicU64::new(0);
    let bar = progress_bar();
    Pool::new().ordered(window).run(
        |feeder| {
            for item in Walk::new(paths, recursive) {
                match item {
                    Ok(Item::File(e)) => {
                        bar.inc_length(1);
                        feeder.push(e.meta.len(), e);
                    }
                    Ok(Item::Skipped {
                        path,
                        kind,
                        root: true,
                    }) => {
                        err_line(&path, format_args!("not a regular file ({kind})"));
                        walk_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Item::Skipped { path, kind, .. }) => {
                        let mut e = std::io::stderr().lock();
                        let _ = writeln!(e, "imactl: note: {}: skipped ({kind})", path.display());
                    }
                    Err(e) => {
                        err_line(&e.path, &e.source);
                        walk_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        },
        |mut e: Entry| {
            PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
            let (outcome, n) = op(&mut e);
            let lines = PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default();
            (outcome, n, lines)
        },
        |(outcome, n, lines)| {
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
            sum.files += 1;
            sum.bytes += n;
            match outcome {
                Outcome::Ok => {}
                Outcome::Failed => sum.failed += 1,
                Outcome::Error => sum.errors += 1,
            }
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    sum.errors += walk_errors.into_inner();
    sum.elapsed = start.elapsed();
    sum
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The end of `hash` and `sign` for one file: print the `security.ima` value (as
/// `evmctl -n` does for one file; `HEX PATH` per file otherwise), or write it through the
/// open file the value was computed from. Returns the outcome and the file's size.
pub fn print_or_label(
    e: &Entry,
    value: &[u8],
    print_only: bool,
    single: bool,
    size: u64,
) -> (Outcome, u64) {
    use ima_core::xattr::XATTR_NAME_IMA;
    if print_only {
        if single {
            out_line(&hex::encode(value));
        } else {
            out_line(&format!("{} {}", hex::encode(value), e.path.display()));
        }
        return (Outcome::Ok, size);
    }
    match ima_sys::xattr::set(&e.file, XATTR_NAME_IMA, value, ima_sys::xattr::SetMode::Any) {
        Ok(()) => (Outcome::Ok, size),
        Err(err) => {
            err_line(
                &e.path,
                format_args!("cannot write {XATTR_NAME_IMA}: {err}"),
            );
            (Outcome::Error, size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn largest_first_and_every_file_once() {
        let dir = tempfile::tempdir().unwrap();
        for (i, n) in [10usize, 5000, 300, 0, 77].iter().enumerate() {
            let sub = dir.path().join(format!("d{}", i % 2));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i}")), vec![1u8; *n]).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let seen = Mutex::new(Vec::new());
        let s = run(&[dir.path().to_path_buf()], true, |e| {
            let n = e.meta.len();
            seen.lock().unwrap().push(n);
            (
                if n == 300 {
                    Outcome::Failed
                } else {
                    Outcome::Ok
                },
                n,
            )
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, [0, 10, 77, 300, 5000], "symlinks are not followed");
        assert_eq!((s.files, s.bytes, s.failed, s.errors), (5, 5387, 1, 0));
        assert_eq!(s.exit_code(), 1);
    }

    /// Output comes in walk order whatever order the workers finish in, with a window wide
    /// or narrow (the walker then waits for the printer), and lines of one file stay together.
    #[test]
    fn output_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..60usize {
            let sub = dir
                .path()
                .join(format!("d{}", i % 4))
                .join(format!("e{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i}")), vec![0u8; (i * 7919) % 5000]).unwrap();
        }
        let walk: Vec<String> = walkdir::WalkDir::new(dir.path())
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .flat_map(|e| {
                let p = e.path().display().to_string();
                [format!("{p} a"), format!("{p} b")]
            })
            .collect();
        for window in [WINDOW, 5, 1] {
            let mut out = Vec::new();
            let s = run_to(&mut out, window, &[dir.path().to_path_buf()], true, |e| {
                // Small files finish last: completion order is far from walk order.
                let p = &e.path;
                let n = e.meta.len();
                std::thread::sleep(Duration::from_micros(5000 - n));
                out_line(&format!("{} a", p.display()));
                out_line(&format!("{} b", p.display()));
                (Outcome::Ok, n)
            });
            assert_eq!(s.files, 60);
            let got: Vec<String> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(got, walk, "window {window}");
        }
    }

    #[test]
    fn missing_paths_and_directories_without_r_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = run(
            &[dir.path().join("nope"), dir.path().to_path_buf()],
            false,
            |_| (Outcome::Ok, 0),
        );
        assert_eq!((s.files, s.errors), (0, 2));
        assert_eq!(s.exit_code(), 2);
    }
}
