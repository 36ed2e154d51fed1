//! The Latte video diffusion transformer ("Latte: Latent Diffusion Transformer for Video
//! Generation") in burn.
//!
//! Variant 1 with uniform patches, adaLN-Zero and absolute sin-cos positions computes the
//! reference's function (`maxin-cn/Latte`, `models/latte.py` / `latte_img.py`) and loads its
//! weights under the same key names. The paper's other options, absent from the released code,
//! are implemented as documented [ours] choices on [`LatteConfig`] and in each module.

pub mod attention;
pub mod block;
pub mod config;
pub mod embed;
mod error;
pub mod flops;
pub mod latte;
pub mod reference;
pub mod rope;
pub mod weights;

pub use config::{Conditioning, LatteConfig, PatchEmbedKind, TemporalPos};
pub use error::ModelError;
pub use latte::Latte;
pub use latte_nn::weights::LoadReport;

/// Re-exported so that callers (the CLI, stages) need only this crate.
pub use burn;
pub use latte_nn;
