//! Thin adapters from the engine's `Stage` contract (`latte_engine::stage`) to the domain
//! libraries in `crates/`: one module per stage kind, named after the kind.
//!
//! **Architecture invariant:** this is the only crate that depends on both the engine and the
//! domain libraries. The libraries know nothing of pipelines; the engine knows nothing of video.

use latte_engine::Registry;

// One module per stage kind, in pipeline order. To add a kind: add `pub mod <kind>;` here and
// one `r.register(...)` line in `registry()` below.
pub mod videos;
pub mod frames;
pub mod vae_train;
pub mod latents;
pub mod metrics;
pub mod train;
pub mod sample;

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
    r
}
