//! Drawing videos from a trained Latte, as the reference's `sample/sample_ddp.py` does (spec
//! latte-reference §5.1): the model's weights ([`ModelSource`]), the seeded reverse process of
//! `latte-diffusion` with classifier-free guidance beside the model
//! (`Latte::guided_forward`), decoding by `latte-vae` and the written sample folder
//! ([`sample_to_dir`]). The `sample` and `eval_curve` stages and `cargo xtask sample` call it.
//!
//! Sampling: DDPM (`p_sample_loop`) or DDIM over uniformly respaced steps; with a
//! class-conditional model and `cfg_scale ≠ 1` the batch is doubled with the null class and
//! guided by `Latte::forward_with_cfg` (§1.12), and the conditional half is kept. [ours] The
//! reference guides only when `cfg_scale > 1` and otherwise calls the network with `y = None`,
//! which fails for a class-conditional model; here `cfg_scale = 1` is the plain
//! class-conditional forward and `0 ≤ cfg_scale < 1` interpolates toward the unconditional
//! output. A `cfg_scale ≠ 1` on an unconditional model is an error rather than silently
//! ignored. The diffusion arithmetic runs in float32; the network in the `precision` asked.
//!
//! **Invariant:** every random draw of sample i (its class, its initial noise, each step's
//! noise, in that order) comes from the ChaCha8 stream `(seed, i)`, so a sample does not depend
//! on the batch it was drawn in, on `n`, or on the other samples.

mod error;
mod folder;
mod options;
mod source;

pub use error::SampleError;
pub use folder::{sample_to_dir, SampleProgress, SampleReport, Silent};
pub use options::{parse_method, SampleOptions, PRECISIONS};
pub use source::{load_model, vae_folder, ModelSource};
