//! The Latte video diffusion transformer ("Latte: Latent Diffusion Transformer for Video
//! Generation") in burn.
//!
//! Variant 1 with uniform patches, adaLN-Zero and absolute sin-cos positions computes the
//! reference's function (`maxin-cn/Latte`, `models/latte.py` / `latte_img.py`) and loads its
//! weights under the same key names. The paper's other options, absent from the released code,
//! are implemented as documented [ours] choices on [`LatteConfig`] and in each module.
//!
//! [ours] choices (the reference has no code for them):
//! - Every variant keeps `depth` blocks under `blocks.{i}`. V2: blocks `0..depth/2` spatial, the
//!   rest temporal. V3: every block is spatial attention → temporal attention → MLP with 6·D
//!   adaLN outputs (the two attentions share `shift, scale, gate`; extra keys
//!   `blocks.{i}.attn_temporal.*`), and fewer blocks than `depth` (23 for 28, see
//!   [`LatteConfig::num_blocks`]), so that V3 has about V1's parameters as in the paper's
//!   Table 3 (676.35 M against the paper's 676.33 M at XL/2; 28 blocks with a 9·D adaLN, our
//!   earlier choice, had 934 M). V4: heads `0..H/2` spatial, `H/2..H` temporal, one `qkv`
//!   and one `proj`.
//! - The absolute temporal table is added once, before the first temporal operation: V1 after
//!   block 0 (the reference), V2 before block `depth/2`, V3 inside block 0 between its spatial
//!   and temporal attention, V4 before block 0.
//! - Image frames (joint training) skip temporal blocks and V3's temporal attention (the
//!   reference for V1); in V4 each image is a temporal sequence of its own. With per-image
//!   labels ([`Latte::forward_joint`]'s `y_image`, §1.11) an image frame is conditioned on
//!   `temb + y_embed(its label)` wherever it is processed (spatial sub-layers, V4's split
//!   attention, the final layer); with all-tokens conditioning its prefix is `[temb, its label]`.
//! - Tubelet: `x_embedder.proj` is a Conv3d weight `(D, C, s, p, p)`, `temp_embed` has F/s rows,
//!   `temporal_upsample` is a ConvTranspose3d weight `(C', C', s, 1, 1)` initialised to repeat
//!   frames; extra image frames are refused with tubelets.
//! - All-tokens: timestep (then class) embeddings are prepended to every attention sequence
//!   (fresh at every block, after the block's affine LayerNorm) and dropped after attention;
//!   blocks use affine LayerNorms `norm1`/`norm2` (`norm_temporal` in V3) without gates; the
//!   final layer is `norm_final` (affine) → `linear`.
//! - RoPE: rotate-half pairing in temporal attention only (see [`rope`]), no `temp_embed`.
//! - Trainable parameters exclude `pos_embed` and `temp_embed`, as the paper's Table 4.

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

pub use config::{Conditioning, LatteConfig, PatchEmbedKind, TemporalPos, Variant};
pub use error::ModelError;
pub use latte::Latte;
pub use latte_nn::weights::LoadReport;

/// Re-exported so that callers (the CLI, stages) need only this crate.
pub use burn;
pub use latte_nn;
