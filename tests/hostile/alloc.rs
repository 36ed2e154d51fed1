//! A counting global allocator that bounds the heap of one case.
//!
//! The bound is checked at the allocation itself, not after the case: a reader that trusts a
//! header claiming a 1 TB tensor must be caught *before* the allocation, because afterwards
//! the process is already dead (or the machine is swapping). Exceeding the bound prints the
//! reader, case and seed, then fails the allocation, which aborts the test binary: that is
//! the failure report. The counter is process-wide (readers allocate on rayon threads too),
//! so cases run one at a time (see `harness::serial`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static CASE: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
/// The reader under test and the case's mutations, for the abort message (set outside any
/// bounded section: reading them there does not allocate).
static READER: Mutex<&'static str> = Mutex::new("");
static WHAT: Mutex<String> = Mutex::new(String::new());

impl Counting {
    fn grow(size: usize) -> bool {
        let now = CURRENT.fetch_add(size, Relaxed).saturating_add(size);
        if now > LIMIT.load(Relaxed) {
            CURRENT.fetch_sub(size, Relaxed);
            over_bound(size, now);
            return false;
        }
        PEAK.fetch_max(now, Relaxed);
        true
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::grow(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                CURRENT.fetch_sub(new_size - old, Relaxed);
            }
        } else if new_size < old {
            CURRENT.fetch_sub(old - new_size, Relaxed);
        }
        p
    }
}

/// Formats into a stack buffer: the allocator must not allocate while reporting.
struct StackBuf {
    buf: [u8; 512],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn over_bound(size: usize, would_be: usize) {
    // Only the first report matters; the failed allocation aborts the process right after.
    let reader = READER.try_lock().map(|g| *g).unwrap_or("?");
    let base = BASE.load(Relaxed);
    let mut m = StackBuf { buf: [0; 512], len: 0 };
    let _ = write!(
        m,
        "\nhostile {reader}: case {} (seed {}) asked for {size} bytes, which would raise the case's heap to {} bytes, over its bound of {} bytes; reproduce with LATTE_HOSTILE_CASE={}\n",
        CASE.load(Relaxed),
        SEED.load(Relaxed),
        would_be.saturating_sub(base),
        LIMIT.load(Relaxed).saturating_sub(base),
        CASE.load(Relaxed),
    );
    let _ = std::io::stderr().write_all(&m.buf[..m.len]);
    if let Ok(what) = WHAT.try_lock() {
        let _ = std::io::stderr().write_all(b"mutations: ");
        let _ = std::io::stderr().write_all(what.as_bytes());
        let _ = std::io::stderr().write_all(b"\n");
    }
}

static BASE: AtomicUsize = AtomicUsize::new(0);

/// The case being run, for the watchdog's report.
pub fn current_case() -> String {
    let reader = *READER.lock().unwrap_or_else(|e| e.into_inner());
    let what = WHAT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let case = CASE.load(Relaxed);
    format!("{reader}: case {case} (seed {}; reproduce with LATTE_HOSTILE_CASE={case}), mutations: {what}", SEED.load(Relaxed))
}

pub fn set_reader(name: &'static str) {
    *READER.lock().unwrap_or_else(|e| e.into_inner()) = name;
}

/// Starts a bounded section: from now on the heap may grow by at most `bound` bytes.
pub fn begin(case: u64, seed: u64, what: &str, bound: usize) {
    {
        let mut w = WHAT.lock().unwrap_or_else(|e| e.into_inner());
        w.clear();
        w.push_str(what);
    }
    CASE.store(case, Relaxed);
    SEED.store(seed, Relaxed);
    let base = CURRENT.load(Relaxed);
    BASE.store(base, Relaxed);
    PEAK.store(base, Relaxed);
    LIMIT.store(base.saturating_add(bound), Relaxed);
}

/// Ends the bounded section; returns its peak heap growth.
pub fn end() -> usize {
    LIMIT.store(usize::MAX, Relaxed);
    PEAK.load(Relaxed).saturating_sub(BASE.load(Relaxed))
}

/// Heap allocated since the last `begin` and not freed.
pub fn held() -> isize {
    CURRENT.load(Relaxed) as isize - BASE.load(Relaxed) as isize
}
