//! Ctrl-C and SIGTERM (what a cluster scheduler sends before a kill) for `run` and `grid`.
//!
//! The first signal cancels the run: no stage starts any more and the running ones stop at
//! their next safe point (the train stage after writing a checkpoint of its current step), so
//! the next `run` resumes. A second signal exits at once. Either way nothing partial is
//! cached, since the engine installs an output only when its stage returned `Ok`, by a rename.
//! The exit status is 128 + the signal, as a shell reports a process it killed: 130 for
//! SIGINT, 143 for SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use latte_engine::Cancel;
use signal_hook::consts::{SIGINT, SIGTERM};

/// The signal that arrived last (0: none), set inside the handler so that it is known however
/// soon the run returns.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
/// The token the handlers cancel: one per process, however many runs a command makes.
static TOKEN: OnceLock<Cancel> = OnceLock::new();

const NOTICE: &str = "interrupted: stopping at a safe point (press Ctrl-C again to exit at once)";

/// Installs the handlers (once) and returns the token they cancel.
pub fn install() -> anyhow::Result<Cancel> {
    if let Some(token) = TOKEN.get() {
        return Ok(token.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let received = Arc::clone(RECEIVED.get_or_init(Default::default));
    for signal in [SIGINT, SIGTERM] {
        // signal-hook runs a signal's actions in the order they were registered: the exit
        // checks the flag before this same signal sets it, so it fires from the second on.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&flag))?;
        signal_hook::flag::register_usize(signal, Arc::clone(&received), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    // A handler may not write to the terminal; this thread says what is happening.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("{NOTICE}");
        }
    });
    Ok(TOKEN.get_or_init(|| Cancel::from_flag(flag)).clone())
}

/// The exit status of a run that `err` says was interrupted, else `None`.
pub fn exit_code(err: &anyhow::Error) -> Option<u8> {
    let interrupted = matches!(err.downcast_ref::<latte_engine::Error>(), Some(latte_engine::Error::Interrupted { .. }));
    let signal = RECEIVED.get().map_or(0, |r| r.load(Ordering::SeqCst));
    // Cancelled by nothing but a signal, so 0 cannot happen; SIGINT's status is the default.
    interrupted.then(|| 128 + if signal == 0 { SIGINT as u8 } else { signal as u8 })
}
