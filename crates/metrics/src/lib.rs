//! Video generation metrics, natively in Rust.
//!
//! - [`frechet`]: feature statistics and the Fréchet distance in float64 (FVD and FID share it).
//! - [`npy`]: reading `N×d` float feature matrices from `.npy` files.
//! - [`i3d`]: the FVD feature network; [`numpy_pickle`] reads its published checkpoint.
//! - [`inception`]: the FID feature network; [`torchscript`] reads its published file.
//! - [`c3d`]: the IS (UCF101) class-probability network (user-supplied weights);
//!   [`inception_score`] turns its probabilities into the score.
//! - [`network`]: the three networks behind one call; [`evaluate`]: the one FVD/FID/IS chain
//!   (clip choice → pixels → features → statistics → a typed report) that the metrics stage,
//!   `eval_curve` and the CLI share; [`report`]: `metrics.json` (an entry per metric, computed
//!   or saying why not); [`curve`]: the entries of a run's checkpoints as lines over steps.
//! - [`pickle`]: a non-executing pickle reader; [`tensors`]: safetensors files.

pub mod c3d;
pub mod curve;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod frechet;
pub mod i3d;
pub mod inception;
pub mod inception_score;
pub mod network;
pub mod npy;
pub mod numpy_pickle;
pub mod pickle;
pub mod report;
pub mod resize;
pub mod sampling;
pub mod tensors;
pub mod torchscript;
pub mod weights;

/// The tensor framework this crate runs on, for callers that pick a device.
pub use burn;
pub use error::MetricsError;
