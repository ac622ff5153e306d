//! Whole-file input without a copy: large regular files are mapped read-only, everything
//! else (pipes, securityfs and procfs files that report size 0, small files) is read.
//!
//! Mapping saves the copy out of the page cache (a sixth of the CPU time of hashing a
//! page-cached tree, and a third of the sequential time of `imactl log verify` on a
//! million-entry list; BENCHMARKING.md). Mappings of 2 MiB and more are placed at a 2 MiB
//! boundary so that the kernel can map large page-cache folios with one PMD each instead of
//! 512 PTEs.
//!
//! **Truncation is survived, not fatal.** A mapped file that another process truncates raises
//! SIGBUS on the next access beyond the new end. Every live [`Mapping`] registers its address
//! range in a fixed table; a process-wide SIGBUS handler (installed on first use) replaces
//! the rest of a registered range with zero pages, records the hit, and returns, so the
//! access completes with zeros and [`Mapping::intact`] then reports the truncation (callers
//! turn it into an error, as the kernel's `ima_calc_file_hash` fails on a short read). A
//! SIGBUS at any other address restores the previous disposition and re-faults, so foreign
//! faults behave exactly as without us.

#![allow(unsafe_code)] // mmap/munmap/madvise/sigaction; each block states its invariant

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Files smaller than this are read: mapping costs more than copying a few pages.
pub const MAP_THRESHOLD: u64 = 1 << 20;

/// Alignment that lets the kernel map a 2 MiB folio with one PMD (x86-64, arm64 4K pages).
const HUGE: usize = 2 << 20;

/// Mappings that can be guarded at once; beyond that, callers fall back to reading.
const SLOTS: usize = 128;

/// A live mapping's address range, as seen by the SIGBUS handler. `end == 0` means free;
/// a slot is claimed by a CAS on `start` and published by storing `end` (released in the
/// reverse order), so the handler never sees a range that is not (or no longer) mapped.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    hit: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise GUARDS
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    hit: AtomicBool::new(false),
};

static GUARDS: [Slot; SLOTS] = [FREE; SLOTS];

/// The SIGBUS disposition before ours, restored for faults outside our mappings.
static PREVIOUS: OnceLock<Result<libc::sigaction, i32>> = OnceLock::new();

/// The page size, read once at installation (the handler may not call sysconf).
static PAGE: AtomicUsize = AtomicUsize::new(4096);

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // Only async-signal-safe work here: atomics, mmap, sigaction.
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(SeqCst);
    for slot in &GUARDS {
        let start = slot.start.load(SeqCst);
        let end = slot.end.load(SeqCst);
        if start <= CLAIMED || addr < start || addr >= end {
            continue;
        }
        let from = addr & !(page - 1);
        // SAFETY: [from, end) lies inside a mapping this module created and still owns (the
        // slot is published only while it is mapped); replacing it with private zero pages
        // changes only what its reader sees, which `intact()` then reports.
        let r = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            slot.hit.store(true, SeqCst);
            return;
        }
        break;
    }
    // Not ours (or the zero mapping failed): hand the fault back to the previous disposition.
    // SAFETY: sigaction with a valid action pointer; returning re-executes the access.
    unsafe {
        match PREVIOUS.get() {
            Some(Ok(old)) => libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()),
            _ => {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut())
            }
        };
    }
}

/// Installs the SIGBUS handler once; false if that failed (then nothing is mapped).
fn guard_installed() -> bool {
    let r = PREVIOUS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, SeqCst);
        }
        // SAFETY: a zeroed sigaction is a valid starting value; the handler only does
        // async-signal-safe work; `old` is written by the kernel.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &act, &mut old) == 0 {
                Ok(old)
            } else {
                Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
            }
        }
    });
    r.is_ok()
}

/// A read-only, truncation-guarded mapping of a whole regular file.
#[derive(Debug)]
pub struct Mapping {
    ptr: *const u8,
    len: usize,
    slot: usize,
}

// SAFETY: the mapping is read-only memory owned by this value; sharing `&[u8]` views of it
// across threads is as safe as sharing any immutable buffer.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (its size when opened: the kernel also hashes
    /// `i_size` bytes read at the start). `len` must be non-zero. Fails with `WouldBlock` when
    /// every guard slot is busy; callers then read instead.
    pub fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        if !guard_installed() {
            return Err(io::Error::other("cannot install the SIGBUS guard"));
        }
        let slot = claim_slot().ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        match map_aligned(file, len) {
            Ok(ptr) => {
                GUARDS[slot].hit.store(false, SeqCst);
                GUARDS[slot].start.store(ptr as usize, SeqCst);
                GUARDS[slot].end.store(ptr as usize + len, SeqCst);
                Ok(Self { ptr, len, slot })
            }
            Err(e) => {
                GUARDS[slot].start.store(0, SeqCst);
                Err(e)
            }
        }
    }

    /// False if the file shrank under the mapping: some bytes read as zeros instead of its
    /// contents (they were not there any more).
    pub fn intact(&self) -> bool {
        !GUARDS[self.slot].hit.load(SeqCst)
    }
}

/// `start` of a slot that is claimed but not yet published (its `end` is still 0).
const CLAIMED: usize = 1;

fn claim_slot() -> Option<usize> {
    // A placeholder start claims the slot; `new` publishes the real start, then the end.
    GUARDS
        .iter()
        .position(|s| s.start.compare_exchange(0, CLAIMED, SeqCst, SeqCst).is_ok())
}

/// Maps `len` bytes of `file` read-only, at a 2 MiB boundary when `len` is at least that.
fn map_aligned(file: &File, len: usize) -> io::Result<*const u8> {
    let page = PAGE.load(SeqCst);
    let span = len.div_ceil(page) * page;
    let reserve = if len >= HUGE { span + HUGE } else { span };
    // SAFETY: a fresh anonymous PROT_NONE reservation at an address the kernel picks.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = base as usize;
    let start = if len >= HUGE {
        (base + HUGE - 1) & !(HUGE - 1)
    } else {
        base
    };
    // SAFETY: [start, start + span) lies inside our reservation, which MAP_FIXED replaces;
    // the file descriptor is open for reading.
    let p = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            span,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        // SAFETY: unmapping our own reservation.
        unsafe { libc::munmap(base as *mut libc::c_void, reserve) };
        return Err(e);
    }
    // SAFETY: the head and tail of our reservation around the file mapping are ours.
    unsafe {
        if start > base {
            libc::munmap(base as *mut libc::c_void, start - base);
        }
        let tail = start + span;
        if base + reserve > tail {
            libc::munmap(tail as *mut libc::c_void, base + reserve - tail);
        }
        // Advice only: a failure changes speed, not results.
        libc::madvise(start as *mut libc::c_void, span, libc::MADV_SEQUENTIAL);
    }
    Ok(start as *const u8)
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes until drop; a truncation
        // turns pages into zero pages (never unmapped memory) thanks to the SIGBUS guard.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let page = PAGE.load(SeqCst);
        let span = self.len.div_ceil(page) * page;
        let slot = &GUARDS[self.slot];
        // Unpublish before unmapping, so the handler never claims an address that a later
        // mapping of someone else's may reuse.
        slot.end.store(0, SeqCst);
        slot.start.store(0, SeqCst);
        // SAFETY: the range was mapped by `new` (file pages, possibly partly replaced by zero
        // pages) and nothing borrows it any more.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, span) };
    }
}

/// The contents of a file, mapped or owned. Dereferences to the bytes.
#[derive(Debug)]
pub enum FileBytes {
    Mapped(Mapping),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// An error if the file shrank while it was mapped (its tail then reads as zeros).
    pub fn check(&self) -> io::Result<()> {
        match self {
            Self::Mapped(m) if !m.intact() => Err(shrank()),
            _ => Ok(()),
        }
    }
}

/// The error for a file that was truncated while being read.
pub fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while it was being read",
    )
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The whole contents of `path`, mapped when it is a large regular file.
pub fn read_or_map(path: &Path) -> io::Result<FileBytes> {
    read_or_map_file(File::open(path)?)
}

/// The whole contents of an open file (from offset 0 when mapped, from its current offset
/// otherwise: pass a freshly opened file), mapped when it is a large regular file.
pub fn read_or_map_file(mut file: File) -> io::Result<FileBytes> {
    let meta = file.metadata()?;
    if meta.is_file()
        && meta.len() >= MAP_THRESHOLD
        && let Ok(m) = Mapping::new(&file, meta.len())
    {
        return Ok(FileBytes::Mapped(m));
    }
    let mut v = Vec::new();
    file.read_to_end(&mut v)?;
    Ok(FileBytes::Owned(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data)
    }

    #[test]
    fn small_and_large_files_read_the_same_bytes() {
        for len in [0usize, 10, MAP_THRESHOLD as usize + 4097, HUGE * 2 + 12345] {
            let (f, data) = file_of(len);
            let got = read_or_map(f.path()).unwrap();
            assert_eq!(&got[..], &data[..]);
            assert_eq!(
                matches!(got, FileBytes::Mapped(_)),
                len as u64 >= MAP_THRESHOLD
            );
            got.check().unwrap();
        }
    }

    #[test]
    fn large_mappings_are_2mib_aligned() {
        let (f, _) = file_of(HUGE + 1);
        let m = Mapping::new(f.as_file(), (HUGE + 1) as u64).unwrap();
        assert_eq!(m.as_ptr() as usize % HUGE, 0);
    }

    #[test]
    fn the_guard_covers_exactly_the_mapping_and_is_released() {
        let (f, _) = file_of(HUGE + 7);
        let m = Mapping::new(f.as_file(), (HUGE + 7) as u64).unwrap();
        let slot = &GUARDS[m.slot];
        let range = (slot.start.load(SeqCst), slot.end.load(SeqCst));
        assert_eq!(range, (m.as_ptr() as usize, m.as_ptr() as usize + m.len()));
        let i = m.slot;
        drop(m);
        // Released (a concurrent test may reuse the slot, but never for this length).
        let now = (GUARDS[i].start.load(SeqCst), GUARDS[i].end.load(SeqCst));
        assert_ne!(now, range);
    }

    #[test]
    fn a_file_truncated_under_its_mapping_reads_zeros_and_is_reported() {
        let len = HUGE * 3;
        let (f, data) = file_of(len);
        let m = Mapping::new(f.as_file(), len as u64).unwrap();
        assert_eq!(m[..4096], data[..4096]);
        f.as_file().set_len(5000).unwrap();
        // Every page beyond the new end faults; the guard turns that into zeros.
        let sum: u64 = m.iter().map(|&b| u64::from(b)).sum();
        assert!(!m.intact());
        assert_eq!(m[..4096], data[..4096]);
        assert!(m[8192..].iter().all(|&b| b == 0));
        assert!(sum > 0);
        // Other mappings are unaffected.
        let (g, gdata) = file_of(HUGE);
        let n = Mapping::new(g.as_file(), HUGE as u64).unwrap();
        assert_eq!(&n[..], &gdata[..]);
        assert!(n.intact());
    }

    #[test]
    fn a_sigbus_outside_our_mappings_still_kills() {
        // In a forked child: install the guard, then fault on a mapping that is not ours.
        let (f, _) = file_of(3 * 4096);
        assert!(guard_installed());
        // SAFETY: the child only makes raw syscalls before _exit; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let fd = f.as_file().as_raw_fd();
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    3 * 4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if p == libc::MAP_FAILED {
                    libc::_exit(3);
                }
                libc::ftruncate(fd, 0);
                let v = std::ptr::read_volatile((p as *const u8).add(8192));
                libc::_exit(i32::from(v) + 10); // reached only if the fault was swallowed
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFSIGNALED(status), "child exited with {status:#x}");
            assert_eq!(libc::WTERMSIG(status), libc::SIGBUS);
        }
    }

    #[test]
    fn procfs_files_with_size_zero_are_read() {
        let got = read_or_map(Path::new("/proc/self/status")).unwrap();
        assert!(matches!(got, FileBytes::Owned(_)));
        assert!(got.starts_with(b"Name:"));
    }
}
