//! Running one operation over many files: the paths given on the command line, or with
//! `-r` every regular file below them. Shared by `hash`, `sign` and `verify` (and usable by
//! any per-file command).
//!
//! Parallel and streaming: one thread walks (walkdir, not following symlinks) and feeds a
//! bounded queue; one worker per CPU takes the **largest** queued file first, so a few huge
//! files (libLLVM, node) start early instead of finishing alone at the end, while memory
//! stays bounded by the queue size (not the tree size). What an operation prints with
//! [`out_line`] comes out in input/walk order all the same (walkdir's order is `nftw`'s, so
//! `hash -n -r` lists files as `evmctl -r` does): a bounded reorder buffer holds the lines
//! of files that finished early, and the walker waits when it runs [`WINDOW`] files ahead
//! of the oldest unprinted one. A progress bar is drawn on stderr when it is a terminal; a
//! summary (files, bytes, time, failures, errors) is printed to stderr at the end of tree
//! runs. Per-file errors (stderr) are printed at once and never stop the run.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files waiting for a worker, at most (bounds memory on huge trees).
const QUEUE_MAX: usize = 65536;

/// Files walked but not yet printed, at most: bounds the reorder buffer (each waiting file
/// holds its few output lines) while leaving the largest-first scheduler a wide choice.
pub const WINDOW: u64 = QUEUE_MAX as u64;

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

/// Lines of finished files, released in walk order.
struct Reorder<W> {
    state: Mutex<ReorderState<W>>,
    window: u64,
    /// Signalled when the oldest unprinted file advances (the walker waits on it).
    advanced: Condvar,
}

struct ReorderState<W> {
    /// Sequence number of the oldest file not yet printed.
    next: u64,
    waiting: BTreeMap<u64, Vec<String>>,
    out: W,
}

impl<W: Write> Reorder<W> {
    fn new(out: W, window: u64) -> Self {
        Self {
            window: window.max(1),
            state: Mutex::new(ReorderState {
                next: 0,
                waiting: BTreeMap::new(),
                out,
            }),
            advanced: Condvar::new(),
        }
    }

    /// Records the lines of file `seq` and prints every file now complete in order.
    fn done(&self, seq: u64, lines: Vec<String>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.insert(seq, lines);
        let mut moved = false;
        loop {
            let next = s.next;
            let Some(lines) = s.waiting.remove(&next) else {
                break;
            };
            for l in lines {
                let _ = writeln!(s.out, "{l}");
            }
            s.next += 1;
            moved = true;
        }
        if moved {
            let _ = s.out.flush();
            self.advanced.notify_all();
        }
    }

    /// Blocks the walker until file `seq` is within the window of the oldest unprinted one.
    fn wait_for_room(&self, seq: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while seq >= s.next + self.window {
            s = self.advanced.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// One error line on stderr, `imactl: error: PATH: MSG`.
pub fn err_line(path: &Path, msg: impl fmt::Display) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "imactl: error: {}: {msg:#}", path.display());
}

struct Queue {
    state: Mutex<State>,
    /// Signalled when an item is pushed or the walk ends.
    ready: Condvar,
    /// Signalled when an item is taken (the walker waits when the queue is full).
    space: Condvar,
}

/// A queued file: size (largest first), then walk order, then where it is.
type Item = (u64, Reverse<u64>, PathBuf);

#[derive(Default)]
struct State {
    heap: BinaryHeap<Item>,
    done: bool,
}

impl Queue {
    fn push(&self, item: Item) {
        let mut s = lock(&self.state);
        while s.heap.len() >= QUEUE_MAX {
            s = self.space.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.heap.push(item);
        self.ready.notify_one();
    }

    fn finish(&self) {
        lock(&self.state).done = true;
        self.ready.notify_all();
    }

    fn pop(&self) -> Option<Item> {
        let mut s = lock(&self.state);
        loop {
            if let Some(item) = s.heap.pop() {
                self.space.notify_one();
                return Some(item);
            }
            if s.done {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A worker that panicked cannot leave the heap inconsistent (push/pop are atomic
    // from its point of view), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `op` on every file: each of `paths` that is a regular file (symlinks to one are
/// followed), and with `recursive` every regular file below the directories. `op`
/// returns the outcome and the bytes it processed, and prints its own result line.
pub fn run<F>(paths: &[PathBuf], recursive: bool, op: F) -> Summary
where
    F: Fn(&Path) -> (Outcome, u64) + Sync,
{
    run_to(std::io::stdout(), WINDOW, paths, recursive, op)
}

/// [`run`], printing the files' [`out_line`]s to `out`, the walker at most `window` files
/// ahead of the printer.
fn run_to<W, F>(out: W, window: u64, paths: &[PathBuf], recursive: bool, op: F) -> Summary
where
    W: Write + Send,
    F: Fn(&Path) -> (Outcome, u64) + Sync,
{
    let reorder = Reorder::new(out, window);
    let start = Instant::now();
    let queue = Queue {
        state: Mutex::new(State::default()),
        ready: Condvar::new(),
        space: Condvar::new(),
    };
    let files = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let bar = progress_bar();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());

    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some((_, Reverse(seq), path)) = queue.pop() {
                    PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
                    let (outcome, n) = op(&path);
                    let lines = PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default();
                    reorder.done(seq, lines);
                    files.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(n, Ordering::Relaxed);
                    match outcome {
                        Outcome::Ok => {}
                        Outcome::Failed => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Error => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    bar.inc(1);
                }
            });
        }
        // The walker runs here; workers start as soon as the first file is queued.
        let mut seq = 0u64;
        let mut push = |size: u64, path: PathBuf| {
            reorder.wait_for_room(seq);
            bar.inc_length(1);
            queue.push((size, Reverse(seq), path));
            seq += 1;
        };
        for root in paths {
            walk_root(root, recursive, &mut push, &errors);
        }
        queue.finish();
    });
    bar.finish_and_clear();
    Summary {
        files: files.into_inner(),
        bytes: bytes.into_inner(),
        failed: failed.into_inner(),
        errors: errors.into_inner(),
        elapsed: start.elapsed(),
    }
}

fn walk_root(
    root: &Path,
    recursive: bool,
    push: &mut impl FnMut(u64, PathBuf),
    errors: &AtomicU64,
) {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) => {
            err_line(root, e);
            errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if meta.is_file() {
        push(meta.len(), root.to_path_buf());
        return;
    }
    if !meta.is_dir() {
        // FIFOs and devices: opening one could block or have side effects.
        err_line(root, "not a regular file");
        errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !recursive {
        err_line(root, "is a directory (use -r)");
        errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        match entry {
            Ok(e) if e.file_type().is_file() => {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                push(size, e.into_path());
            }
            Ok(_) => {}
            Err(e) => {
                let p = e.path().unwrap_or(root).to_path_buf();
                err_line(&p, e);
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
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
    path: &Path,
    f: &std::fs::File,
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
            out_line(&format!("{} {}", hex::encode(value), path.display()));
        }
        return (Outcome::Ok, size);
    }
    match ima_sys::xattr::set(f, XATTR_NAME_IMA, value, ima_sys::xattr::SetMode::Any) {
        Ok(()) => (Outcome::Ok, size),
        Err(e) => {
            err_line(path, format_args!("cannot write {XATTR_NAME_IMA}: {e}"));
            (Outcome::Error, size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = run(&[dir.path().to_path_buf()], true, |p| {
            let n = std::fs::metadata(p).unwrap().len();
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
            let s = run_to(&mut out, window, &[dir.path().to_path_buf()], true, |p| {
                // Small files finish last: completion order is far from walk order.
                let n = std::fs::metadata(p).unwrap().len();
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
