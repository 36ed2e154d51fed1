//! Thin adapters from the engine's `Stage` contract (`latte_engine::stage`) to the domain
//! libraries in `crates/`: one module per stage kind, named after the kind.
//!
//! **Architecture invariant:** this is the only crate that depends on both the engine and the
//! domain libraries. The libraries know nothing of pipelines; the engine knows nothing of video.

use latte_engine::{Interrupted, ParamSpec, ParamType, Params, Registry, StageError};

// One module per stage kind, in pipeline order. To add a kind: add `pub mod <kind>;` here and
// one `r.register(...)` line in `registry()` below.
pub mod eval_curve;
pub mod frames;
pub mod latents;
pub mod metrics;
pub mod sample;
pub mod train;
pub mod vae_train;
pub mod videos;

/// Every stage kind a pipeline file may name in `kind = "..."`.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    // One line per stage kind, in pipeline order.
    r.register(videos::Videos);
    r.register(frames::Frames);
    r.register(vae_train::VaeTrain);
    r.register(latents::Latents);
    r.register(metrics::Metrics);
    r.register(train::Train);
    r.register(sample::Sample);
    r.register(eval_curve::EvalCurve);
    r
}

/// The `device` parameter of every stage that computes with burn. The cache key records its
/// kind only (`ParamType::Device`): CPU and GPU results differ in their last bits, two GPUs'
/// do not.
pub(crate) const DEVICE: ParamSpec = ParamSpec {
    name: "device",
    ty: ParamType::Device,
    default: Some("\"cpu\""),
    help: "compute device: \"cpu\", \"wgpu\" (any GPU through WGSL, or Mesa's software renderer), \"cuda\" (every GPU), \"cuda:N\"; needs a build with `--features cuda` for CUDA",
};

/// The stage's `device` parameter, parsed: refuses an unknown name, or CUDA in a build without
/// it, when the pipeline loads (touches no device).
pub(crate) fn device_spec(p: &Params) -> Result<latte_nn::device::DeviceSpec, String> {
    let name = p.str("device").map_err(|e| e.to_string())?;
    latte_nn::device::DeviceSpec::parse(name).map_err(|e| format!("parameter `device`: {e}"))
}

/// The one device the stage runs on, checked to start (a missing driver is an error naming it).
pub(crate) fn open_device(p: &Params) -> anyhow::Result<latte_nn::burn::tensor::Device> {
    let spec = device_spec(p).map_err(anyhow::Error::msg)?;
    spec.open_one().map_err(|e| anyhow::anyhow!("parameter `device`: {e}"))
}

/// A `precision` parameter: `None` for f32 (the reference), else the compute dtype; `allowed`
/// lists the names the stage accepts.
pub(crate) fn precision(p: &Params, key: &str, allowed: &[&str]) -> Result<Option<latte_nn::burn::tensor::FloatDType>, String> {
    let name = p.str(key).map_err(|e| e.to_string())?;
    match latte_nn::device::compute_dtype(name) {
        Some(dtype) if allowed.contains(&name) => Ok(dtype),
        _ => Err(format!(
            "parameter `{key}` is \"{name}\"; use one of {}",
            allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A stage's `anyhow::Error` as the engine takes it, with an `Interrupted` anywhere in it kept
/// visible: anyhow's own conversion boxes its wrapper, whose `source()` chain starts below the
/// error it wraps, so the runner would report a stopped stage as failed.
pub(crate) fn stage_error(e: anyhow::Error) -> StageError {
    if e.chain().any(|c| c.is::<Interrupted>()) {
        Box::new(Interrupted)
    } else {
        e.into()
    }
}

/// Stopping a stage from inside a callback that cannot return an error (the VAE trainer's
/// `on_step`, the frame extractor's per-clip `progress`, a `Progress::inc` deep in a sampling
/// loop whose signature the CLI shares): `stop_if_cancelled` unwinds
/// with a payload of its own once the run is cancelled, and `stoppable` turns that unwind back
/// into `Interrupted` at the stage's edge. `resume_unwind` runs no panic hook, so nothing is
/// printed; rayon carries the payload across its pools unchanged (the frames stage's test
/// stops the extractor from its workers). The libraries hold no state
/// that outlives the call, so unwinding out of them loses only the interrupted output.
pub(crate) mod cancel {
    use latte_engine::{Cancel, Interrupted, Progress};

    struct Unwind;

    pub(crate) fn stop_if_cancelled(cancel: &Cancel) {
        if cancel.is_cancelled() {
            std::panic::resume_unwind(Box::new(Unwind));
        }
    }

    /// Runs `f`, mapping an unwind from `stop_if_cancelled` to `Err(Interrupted)`; any other
    /// panic goes on unwinding (the runner reports it).
    pub(crate) fn stoppable<T>(f: impl FnOnce() -> T) -> Result<T, Interrupted> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            Err(payload) if payload.is::<Unwind>() => Err(Interrupted),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// A progress sink that stops the stage at its next `inc` once `cancel` is set (for use
    /// inside `stoppable`).
    pub(crate) struct Stopping<'a> {
        pub(crate) inner: &'a dyn Progress,
        pub(crate) cancel: &'a Cancel,
    }

    impl Progress for Stopping<'_> {
        fn set_length(&self, len: u64) {
            self.inner.set_length(len);
        }
        fn inc(&self, delta: u64) {
            self.inner.inc(delta);
            stop_if_cancelled(self.cancel);
        }
        fn set_message(&self, msg: &str) {
            self.inner.set_message(msg);
        }
        fn log(&self, line: &str) {
            self.inner.log(line);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use anyhow::Context as _;

        #[test]
        fn an_interrupted_anyhow_error_stays_interrupted_for_the_engine() {
            for e in [anyhow::Error::new(Interrupted), Err::<(), _>(Interrupted).context("while stepping").unwrap_err()] {
                assert!(Interrupted::is_in(crate::stage_error(e).as_ref()));
            }
            let other = crate::stage_error(anyhow::anyhow!("disk full"));
            assert!(!Interrupted::is_in(other.as_ref()));
            assert_eq!(other.to_string(), "disk full");
        }

        #[test]
        fn an_unwind_becomes_interrupted_and_other_panics_pass() {
            let cancel = Cancel::new();
            assert_eq!(stoppable(|| stop_if_cancelled(&cancel)), Ok(()));
            cancel.cancel();
            assert_eq!(stoppable(|| stop_if_cancelled(&cancel)), Err(Interrupted));
            let other = std::panic::catch_unwind(|| stoppable(|| std::panic::resume_unwind(Box::new(7u8))));
            assert_eq!(other.err().and_then(|p| p.downcast::<u8>().ok()).map(|b| *b), Some(7));
        }
    }
}

/// What the stages' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use latte_engine::{Cancel, NoProgress, Params, Stage, StageContext, StageError};

    /// Runs `stage` as the runner would, into `out` (created) with a scratch folder beside it
    /// (`out.work`, also the memo): one thread, no progress display.
    pub(crate) fn run_stage(
        stage: &dyn Stage,
        params: &Params,
        inputs: &BTreeMap<String, PathBuf>,
        out: &Path,
        cancel: &Cancel,
    ) -> Result<(), StageError> {
        std::fs::create_dir_all(out).expect("creating a test stage's output folder");
        let work = out.with_extension("work");
        let ctx =
            StageContext { name: stage.kind(), params, inputs, out, work: &work, memo: &work, threads: 1, progress: &NoProgress, cancel };
        stage.run(&ctx)
    }
}
