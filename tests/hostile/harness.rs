//! Runs a reader over seeded mutations of a valid file and holds it to the contract: `Ok` or
//! `Err`, never a panic, within a time bound, and within a heap bound checked at every
//! allocation (see `alloc`) plus a peak-RSS bound that also sees C code (FFmpeg, zstd).
//!
//! Environment: `LATTE_HOSTILE_CASES` (cases per reader, overrides the CI default and the long
//! run's), `LATTE_HOSTILE_SEED` (the base seed), `LATTE_HOSTILE_CASE` (run only that case,
//! as printed in a failure), `LATTE_HOSTILE_KEEP` (keep the scratch files of the last case).

use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::mutate::Mutator;

/// Cases per reader in CI (`cargo test`); the `#[ignore]` long runs take [`LONG`].
pub const CI: usize = 2_000;
pub const LONG: usize = 100_000;

/// One case may take this long before it counts as a hang.
const CASE_TIME: Duration = Duration::from_secs(5);
/// A case still running after this long is a hang that would never return: the watchdog
/// reports it and aborts the binary.
const HANG_ABORT: Duration = Duration::from_secs(60);

const MIB: usize = 1 << 20;

/// The heap a case may use: a reader may hold the file a few times over and build its result,
/// but nothing a header merely claims.
pub fn heap_bound(file_bytes: usize) -> usize {
    64 * file_bytes + 64 * MIB
}

/// Peak resident memory a case may add (page granularity and C allocations included).
fn rss_bound(heap: usize) -> usize {
    heap + 64 * MIB
}

/// The allocator's count is process-wide, so readers run one at a time: each test holds this
/// from before it makes its valid file until its last case.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since `EPOCH` at which the current case started; 0 while none runs.
static STARTED: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn watchdog() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        epoch();
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let started = STARTED.load(Relaxed);
            if started != 0 && (epoch().elapsed().as_millis() as u64).saturating_sub(started) > HANG_ABORT.as_millis() as u64 {
                let _ = writeln!(std::io::stderr(), "\nhostile {}: ran for over {HANG_ABORT:?}, the reader hangs", alloc::current_case());
                std::process::abort();
            }
        });
    });
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Peak RSS since the last reset, in bytes (`VmHWM`); `None` where `/proc` lacks it.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<usize>().ok()? * 1024)
}

fn current_rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<usize>().ok()? * 4096)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so the next read is this case's peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a reader did with its cases.
pub struct Tally {
    pub ok: usize,
    pub err: usize,
    pub failures: Vec<String>,
    pub max_heap: usize,
    pub max_rss: usize,
    pub slowest: Duration,
    /// Time spent in the reader, without making the inputs.
    pub reading: Duration,
    /// Heap the reader still held after its cases returned (reference cycles, caches).
    pub leaked: isize,
}

/// A mutated input: what the reader will see and its size in bytes (for the memory bound).
pub struct Case<I> {
    pub input: I,
    pub bytes: usize,
}

/// Runs `cases` cases (or the environment's count) of reader `name`: `make` builds a mutated
/// input from the case's generator (unbounded: it is the test's work), `read` runs the reader
/// on it (bounded). `Err` carries the reader's message, which must be non-empty and, when
/// `names` is given, contain it (the file the user must fix).
pub fn run<I>(
    name: &'static str,
    cases: usize,
    names: Option<&str>,
    make: impl FnMut(&mut Mutator) -> Case<I>,
    read: impl FnMut(&I) -> Result<(), String>,
) -> Tally {
    run_with_output(name, cases, names, 0, make, read)
}

/// As [`run`], for a reader whose output is legitimately far larger than its input (decoded
/// video frames): it may use `output` bytes beyond the file-based bounds, a limit the reader
/// itself must enforce.
pub fn run_with_output<I>(
    name: &'static str,
    cases: usize,
    names: Option<&str>,
    output: usize,
    mut make: impl FnMut(&mut Mutator) -> Case<I>,
    mut read: impl FnMut(&I) -> Result<(), String>,
) -> Tally {
    watchdog();
    alloc::set_reader(name);
    let cases = env_usize("LATTE_HOSTILE_CASES").unwrap_or(cases);
    let base_seed = env_usize("LATTE_HOSTILE_SEED").unwrap_or(15) as u64;
    let only = env_usize("LATTE_HOSTILE_CASE");
    let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let rss = reset_peak_rss();
    let mut t =
        Tally { ok: 0, err: 0, failures: Vec::new(), max_heap: 0, max_rss: 0, slowest: Duration::ZERO, reading: Duration::ZERO, leaked: 0 };
    let started = Instant::now();
    // One case alone reproduces as in the run that printed it: its seed depends on its index only.
    let range = match only {
        Some(o) => o as u64..o as u64 + 1,
        None => 0..cases as u64,
    };
    for case in range {
        let seed = base_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ name_hash ^ case;
        let mut m = Mutator::new(seed);
        let Case { input, bytes } = make(&mut m);
        let what = m.describe();
        let heap = heap_bound(bytes) + output;
        let rss_before = if rss {
            reset_peak_rss();
            current_rss()
        } else {
            None
        };
        STARTED.store(epoch().elapsed().as_millis() as u64 + 1, Relaxed);
        alloc::begin(case, seed, &what, heap);
        let t0 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| read(&input)));
        let dt = t0.elapsed();
        let peak = alloc::end();
        STARTED.store(0, Relaxed);
        let rss_peak = match (rss_before, peak_rss()) {
            (Some(b), Some(p)) => p.saturating_sub(b),
            _ => 0,
        };
        t.max_heap = t.max_heap.max(peak);
        t.max_rss = t.max_rss.max(rss_peak);
        t.slowest = t.slowest.max(dt);
        t.reading += dt;
        let mut why: Vec<String> = Vec::new();
        let mut err = false;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.trim().is_empty() => why.push("an error with an empty message".into()),
            Ok(Err(e)) if names.is_some_and(|n| !e.contains(n)) => {
                why.push(format!("the error does not name the file `{}`: {e}", names.unwrap_or_default()))
            }
            // Bound by value so the message is freed before what the reader kept is counted.
            Ok(Err(message)) => {
                drop(message);
                err = true;
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                why.push(format!("panicked: {msg}"));
            }
        }
        // The case's result is dropped by now (the input was made before the case began):
        // what is left, the reader kept.
        t.leaked += alloc::held();
        drop(input);
        if dt > CASE_TIME {
            why.push(format!("took {dt:?} (bound {CASE_TIME:?}): a hang"));
        }
        // C code beside the Rust heap (FFmpeg's pictures) may hold as much output again.
        let rss_limit = rss_bound(heap + output);
        if rss_peak > rss_limit {
            why.push(format!("peak RSS grew by {} MiB (bound {} MiB)", rss_peak / MIB, rss_limit / MIB));
        }
        match (why.is_empty(), err) {
            (false, _) => {
                t.failures.push(format!("case {case} (LATTE_HOSTILE_CASE={case}, seed {seed}, mutations: {what}): {}", why.join("; ")))
            }
            (true, true) => t.err += 1,
            (true, false) => t.ok += 1,
        }
    }
    let tried = t.ok + t.err + t.failures.len();
    // Written past libtest's capture so CI logs show the counts of passing runs too.
    let _ = writeln!(
        std::io::stderr(),
        "hostile {name}: {tried} cases, {} ok, {} err, {} failed; max heap {:.1} MiB, max RSS growth {:.1} MiB, {:.1} MiB left allocated, slowest case {:.1} ms, {:.1} s reading, {:.1} s in all",
        t.ok,
        t.err,
        t.failures.len(),
        t.max_heap as f64 / MIB as f64,
        t.max_rss as f64 / MIB as f64,
        t.leaked as f64 / MIB as f64,
        t.slowest.as_secs_f64() * 1e3,
        t.reading.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    t
}

/// Fails the test with every failing case listed.
pub fn check(name: &str, t: Tally) {
    assert!(t.failures.is_empty(), "hostile {name}: {} failing cases:\n{}", t.failures.len(), t.failures.join("\n"));
}

/// A fresh scratch directory for one reader's cases, removed when dropped unless
/// `LATTE_HOSTILE_KEEP` is set (then the last case's files stay there, to reproduce it).
pub fn scratch() -> tempfile::TempDir {
    let keep = std::env::var_os("LATTE_HOSTILE_KEEP").is_some();
    let dir = tempfile::Builder::new().prefix("latte-hostile-").disable_cleanup(keep).tempdir().expect("a temporary directory");
    if keep {
        let _ = writeln!(std::io::stderr(), "hostile: keeping {}", dir.path().display());
    }
    dir
}
