//! The event loop: one fanotify group marking the configured filesystems, one reader thread
//! that batch-reads permission events into a bounded queue, a pool of workers (one per core)
//! that ask [`Decide`] and answer, and a deadline watchdog that answers the configured default
//! for any event not answered in time. Nothing here opens a path on a marked filesystem: the
//! object is read through the event's fd, the subject from `/proc`.
//!
//! Mirrors `ima_main.c`'s hooks (`ima_file_check`, `ima_bprm_check`): see
//! [`crate::decide::Access`] for the mapping.
//!
//! Every event is answered exactly once, whatever happens: by its decision, by the deadline
//! watchdog, by the reader when the queue is full, or by the drop of the event (a worker that
//! panicked). SIGKILL of the daemon closes the group, and the kernel then allows every pending
//! event. On a clean stop the marks are removed first, the events already queued in the kernel
//! are read and decided, and only then does the group close.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use ima_core::policy::{Func, Mask as MayMask};
use ima_sys::fanotify::{FanotifyError, Group, Mask, PermissionEvent, Response};

use crate::decide::{Access, Decide, DecideError, Verdict};
use crate::notify::{Heartbeat, Ready};

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Paths whose filesystems are marked (`FAN_MARK_FILESYSTEM`).
    pub marks: Vec<PathBuf>,
    /// Where `imad.ready` is written once the marks are in place (`None`: not written).
    pub ready_dir: Option<PathBuf>,
    /// Decision threads.
    pub workers: usize,
    /// Events read but not yet taken by a worker; beyond it the default answers at once.
    pub queue: usize,
    /// Time from reading an event to its answer, after which the default answers.
    pub deadline: Duration,
    /// The answer when no decision can be had (deadline, error, full queue, panic):
    /// `Allow` is fail-open, `Deny` fail-closed.
    pub default: Response,
    /// Put the kernel-side allow cache on cacheable allows.
    pub cache: bool,
    /// The loop's counters, shared so they can be read while it runs.
    pub counters: Arc<Counters>,
    /// Counts the rounds of the event loop and the deadline watchdog (systemd's watchdog
    /// pings only while both go round).
    pub heartbeat: Arc<Heartbeat>,
}

impl Config {
    /// Marks `marks`, one worker per core, a 4,096-event queue, a 5 s deadline, fail-open,
    /// with the allow cache.
    pub fn new(marks: Vec<PathBuf>) -> Self {
        Self {
            marks,
            ready_dir: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 4096,
            deadline: Duration::from_secs(5),
            default: Response::Allow,
            cache: true,
            counters: Arc::default(),
            heartbeat: Arc::default(),
        }
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// Permission events read.
    pub events: u64,
    /// Answered by a decision: allowed, denied.
    pub allowed: u64,
    pub denied: u64,
    /// Answered with the default: past the deadline, the decision failed, the queue was full.
    pub deadline: u64,
    pub errors: u64,
    pub queue_full: u64,
    /// Ignore marks put on inodes (allow cache).
    pub cached: u64,
    /// `FAN_Q_OVERFLOW` notices (the kernel dropped events and allowed them).
    pub overflows: u64,
}

/// Why the daemon could not run or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Fanotify(#[from] FanotifyError),
    /// A `--mark` path that must not be marked.
    #[error("--mark {path}: {why}")]
    Refused { path: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The events asked for on every marked filesystem.
pub const MARK_MASK: Mask = Mask(Mask::OPEN_PERM.0 | Mask::OPEN_EXEC_PERM.0);

/// Filesystems never marked: their files are the kernel's own interfaces, and a listener that
/// must read `/proc` to decide would wait on itself (`statfs` magics, `include/uapi/linux/magic.h`).
const NEVER_MARKED: &[(u64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x7363_6673, "securityfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpf"),
    (0x1cd1, "devpts"),
    (0x6165_676c, "pstore"),
    (0x6265_6570, "configfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4345_5243, "smackfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x6e73_6673, "nsfs"),
    (0x1980_0202, "mqueue"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6573_5543, "fusectl"),
];

/// Checks every mark path: it exists, is not on a pseudo filesystem, and is not on the
/// filesystem of `state` (the engine writes there while deciding).
pub fn check_marks(marks: &[PathBuf], state: Option<&Path>) -> Result<(), DaemonError> {
    let state_dev = match state {
        Some(s) => Some(
            std::fs::metadata(s)
                .map_err(|source| DaemonError::Io {
                    path: s.display().to_string(),
                    source,
                })?
                .dev(),
        ),
        None => None,
    };
    for m in marks {
        let refused = |why: String| DaemonError::Refused {
            path: m.display().to_string(),
            why,
        };
        let facts = ima_sys::fs::file_facts(m).map_err(|source| DaemonError::Io {
            path: m.display().to_string(),
            source,
        })?;
        if let Some((_, name)) = NEVER_MARKED
            .iter()
            .find(|(magic, _)| *magic == facts.fsmagic)
        {
            return Err(refused(format!("{name} is never marked")));
        }
        let dev = std::fs::metadata(m)
            .map_err(|source| DaemonError::Io {
                path: m.display().to_string(),
                source,
            })?
            .dev();
        if Some(dev) == state_dev {
            return Err(refused(
                "the state directory is on this filesystem (imad writes there while deciding)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// The loop's counters, live (read them with [`Counters::snapshot`] while it runs, e.g. for
/// metrics).
#[derive(Debug, Default)]
pub struct Counters {
    events: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    deadline: AtomicU64,
    errors: AtomicU64,
    queue_full: AtomicU64,
    cached: AtomicU64,
    overflows: AtomicU64,
    /// An allow-cache mark may have been put under an old policy.
    stale: AtomicBool,
}

impl Counters {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far (overflows as the loop last recorded them).
    pub fn snapshot(&self) -> Stats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            events: l(&self.events),
            allowed: l(&self.allowed),
            denied: l(&self.denied),
            deadline: l(&self.deadline),
            errors: l(&self.errors),
            queue_full: l(&self.queue_full),
            cached: l(&self.cached),
            overflows: l(&self.overflows),
        }
    }
}

/// Events by deadline, in reading order (so in deadline order).
struct Deadlines {
    q: Mutex<VecDeque<(Instant, Weak<PermissionEvent>)>>,
    cv: Condvar,
    done: AtomicBool,
}

/// Runs the loop until `stop` is set (then drains and returns) or a fatal error. Marks are
/// removed and the group closed in every case.
pub fn serve(cfg: &Config, decider: &dyn Decide, stop: &AtomicBool) -> Result<Stats, DaemonError> {
    let group = Group::new(cfg.default)?;
    if !group.reports_pidfd() {
        tracing::warn!("this kernel has no FAN_REPORT_PIDFD: subjects are read by pid only");
    }
    let mut marked = Vec::new();
    let mut result = Ok(());
    for m in &cfg.marks {
        match group.mark_filesystem(m, MARK_MASK) {
            Ok(()) => marked.push(m.clone()),
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    let counters = &*cfg.counters;
    let mut overflows = 0;
    if result.is_ok() {
        result = run(
            cfg,
            &group,
            decider,
            stop,
            counters,
            &mut overflows,
            &marked,
        );
    }
    for m in &marked {
        // Already removed by `run` on a clean stop; this is for the error paths.
        let _ = group.unmark_filesystem(m, MARK_MASK);
    }
    drop(group);
    counters.overflows.store(overflows, Ordering::Relaxed);
    result.map(|()| counters.snapshot())
}

fn run(
    cfg: &Config,
    group: &Group,
    decider: &dyn Decide,
    stop: &AtomicBool,
    counters: &Counters,
    overflows: &mut u64,
    marked: &[PathBuf],
) -> Result<(), DaemonError> {
    let (tx, rx) = mpsc::sync_channel::<Arc<PermissionEvent>>(cfg.queue.max(1));
    let rx = Mutex::new(rx);
    let deadlines = Deadlines {
        q: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
        done: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        for _ in 0..cfg.workers.max(1) {
            s.spawn(|| worker(cfg, group, decider, &rx, counters));
        }
        s.spawn(|| watchdog(cfg, &deadlines, counters));
        let ready = match &cfg.ready_dir {
            Some(d) => match Ready::announce(d) {
                Ok(r) => Some(r),
                Err(source) => {
                    return finish(
                        tx,
                        &deadlines,
                        Err(DaemonError::Io {
                            path: d.display().to_string(),
                            source,
                        }),
                    );
                }
            },
            None => None,
        };
        tracing::info!("marked {} filesystem(s); ready", marked.len());
        let dispatch = |ev: PermissionEvent| {
            Counters::add(&counters.events);
            let ev = Arc::new(ev);
            if let Ok(mut q) = deadlines.q.lock() {
                let was_empty = q.is_empty();
                q.push_back((Instant::now() + cfg.deadline, Arc::downgrade(&ev)));
                if was_empty {
                    deadlines.cv.notify_one();
                }
            }
            match tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev) | TrySendError::Disconnected(ev)) => {
                    Counters::add(&counters.queue_full);
                    answer(&ev, cfg.default);
                }
            }
        };
        let mut res = Ok(());
        let mut generation = decider.generation();
        while !stop.load(Ordering::Relaxed) {
            cfg.heartbeat.reader();
            // A new policy: cached allows may no longer hold.
            let now = decider.generation();
            if now != generation || counters.stale.swap(false, Ordering::Relaxed) {
                generation = now;
                match group.flush_inode_marks() {
                    Ok(()) => tracing::info!("policy changed: the allow cache is flushed"),
                    Err(e) => tracing::error!("flushing the allow cache: {e}"),
                }
            }
            match group
                .wait(Duration::from_millis(100))
                .and_then(|_| group.read(overflows))
            {
                Ok(evs) => evs.into_iter().for_each(&dispatch),
                Err(e) => {
                    res = Err(e.into());
                    break;
                }
            }
            counters.overflows.store(*overflows, Ordering::Relaxed);
        }
        // Stop: no new events, then decide the ones already queued in the kernel.
        for m in marked {
            if let Err(e) = group.unmark_filesystem(m, MARK_MASK) {
                tracing::warn!("{e}");
            }
        }
        while res.is_ok() {
            match group.read(overflows) {
                Ok(evs) if evs.is_empty() => break,
                Ok(evs) => evs.into_iter().for_each(&dispatch),
                Err(e) => res = Err(e.into()),
            }
        }
        let r = finish(tx, &deadlines, res);
        drop(ready);
        r
    })
}

/// Closes the queue (workers finish what is queued and exit) and stops the watchdog.
fn finish(
    tx: mpsc::SyncSender<Arc<PermissionEvent>>,
    deadlines: &Deadlines,
    res: Result<(), DaemonError>,
) -> Result<(), DaemonError> {
    drop(tx);
    deadlines.done.store(true, Ordering::Release);
    deadlines.cv.notify_all();
    res
}

fn answer(ev: &PermissionEvent, r: Response) -> bool {
    match ev.answer(r) {
        Ok(sent) => sent,
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

fn watchdog(cfg: &Config, d: &Deadlines, counters: &Counters) {
    let default = cfg.default;
    let Ok(mut q) = d.q.lock() else { return };
    // Runs until the loop is done and every queued event's deadline is handled (the workers
    // drain the queue after `done`, and can still miss deadlines).
    loop {
        cfg.heartbeat.deadlines();
        let now = Instant::now();
        // Pop the expired and the already finished (most complete in order, so the front is
        // usually done: the queue stays as short as the events in flight).
        while let Some((t, w)) = q.front() {
            if *t > now && w.strong_count() > 0 {
                break;
            }
            if let Some((_, w)) = q.pop_front()
                && let Some(ev) = w.upgrade()
                && answer(&ev, default)
            {
                tracing::warn!(
                    "pid {}: no decision within the deadline; answered {default:?}",
                    ev.pid()
                );
                Counters::add(&counters.deadline);
            }
        }
        if d.done.load(Ordering::Acquire) && q.iter().all(|(_, w)| w.strong_count() == 0) {
            return;
        }
        let wait = q.front().map_or(Duration::from_millis(100), |(t, _)| {
            t.saturating_duration_since(now)
                .min(Duration::from_millis(100))
        });
        q = match d.cv.wait_timeout(q, wait) {
            Ok((g, _)) => g,
            Err(_) => return,
        };
    }
}

fn worker(
    cfg: &Config,
    group: &Group,
    decider: &dyn Decide,
    rx: &Mutex<mpsc::Receiver<Arc<PermissionEvent>>>,
    counters: &Counters,
) {
    loop {
        // Its own statement: the guard is dropped before the decision.
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(ev)) = next else { return };
        if ev.is_answered() {
            continue; // the deadline passed while queued
        }
        handle(cfg, group, decider, &ev, counters);
    }
}

fn handle(
    cfg: &Config,
    group: &Group,
    decider: &dyn Decide,
    ev: &PermissionEvent,
    counters: &Counters,
) {
    let exec = ev.mask().contains(Mask::OPEN_EXEC_PERM);
    let (func, mask, bit) = if exec {
        (Func::BprmCheck, MayMask::MAY_EXEC, Mask::OPEN_EXEC_PERM)
    } else {
        (Func::FileCheck, MayMask::MAY_READ, Mask::OPEN_PERM)
    };
    let generation = decider.generation();
    let mut path = None;
    let decided = (|| -> Result<Verdict, DecideError> {
        let creds = crate::subject::creds(ev.pid(), ev.pidfd())?;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", ev.fd().as_raw_fd())).map_err(
            |source| DecideError::Io {
                what: "the event fd's name",
                source,
            },
        )?;
        let access = Access {
            func,
            mask,
            pid: ev.pid(),
            creds: &creds,
            fd: ev.fd(),
            path: path.insert(p),
        };
        decider.decide(&access)
    })();
    match decided {
        Ok(v) => {
            if v.allow && v.cacheable && cfg.cache && decider.generation() == generation {
                match group.ignore(ev.fd(), bit) {
                    Ok(()) => Counters::add(&counters.cached),
                    Err(e) => tracing::debug!("{e}"),
                }
                // A new policy between the decision and the mark: the loop flushes again.
                if decider.generation() != generation {
                    counters.stale.store(true, Ordering::Relaxed);
                }
            }
            let r = if v.allow {
                Response::Allow
            } else {
                Response::Deny
            };
            if answer(ev, r) {
                Counters::add(if v.allow {
                    &counters.allowed
                } else {
                    &counters.denied
                });
            }
        }
        Err(e) => {
            let why = ima_core::error_chain(&e);
            let on = path
                .map(|p| format!(" {}", p.display()))
                .unwrap_or_default();
            tracing::warn!("pid {}{on}: {why}; answered {:?}", ev.pid(), cfg.default);
            if answer(ev, cfg.default) {
                Counters::add(&counters.errors);
            }
        }
    }
}
