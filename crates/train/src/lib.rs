//! The Latte training loop as a library.
//!
//! [`train`] runs the reference's recipe (spec §3) on [`LatentClips`] for any burn module whose
//! forward pass the caller supplies: per step, micro-batches of freshly sampled, scaled latent
//! clips (drawn on a loader thread) go through the IDDPM hybrid loss of `latte-diffusion`;
//! gradients are accumulated, optionally clipped to a global norm, applied by AdamW, and an
//! EMA of the weights follows. Checkpoints ([`checkpoint`]) are atomic and a resumed run is
//! bit-identical to an uninterrupted one; `on_step` can stop a run at a step boundary with a
//! checkpoint of that step ([`StepControl`]). Each step is logged to `loss.jsonl` ([`StepLog`]);
//! `loss.png` is drawn at the end.
//!
//! [`train_with`] runs the same loop as one rank of a data-parallel group ([`parallel`]):
//! gradients summed over the ranks, weights independent of the number of ranks;
//! [`train_on_devices`] runs one rank per local device, each on a thread.
//!
//! **Architecture invariant:** this crate knows nothing of the pipeline, the latents store or
//! the Latte model; the caller fills [`LatentClips`] and passes the forward closure.

pub mod checkpoint;
mod config;
mod data;
mod ema;
mod error;
mod grad_norm;
mod log;
pub mod parallel;
mod plot;
pub mod trained;
mod trainer;

pub use config::{LrDecay, TrainConfig};
pub use data::{loader_clips_per_second, Batch, ClipReader, LatentClips, ReadError, WindowDraw};
pub use ema::update_ema;
pub use error::TrainError;
pub use grad_norm::{clip_global_norm, global_norm};
pub use log::{read_log, StepLog};
pub use parallel::{Collective, TcpOptions, World};
pub use plot::{loss_chart, plot_loss};
/// The generator the data stream draws from (window rules receive it).
pub use rand_chacha::ChaCha8Rng;
pub use trained::{DiffusionInfo, LatentsInfo, TrainOutputConfig, TRAIN_OUTPUT_CONFIG};
pub use trainer::{step_gradients, train, train_on_devices, train_with, MicroLosses, ModelInput, RunPaths, StepControl, Trained};
