//! Shared burn utilities for the Latte crates.
//!
//! - [`device`]: picking a burn [`Device`](burn::tensor::Device) by name.
//! - [`init`]: seeded, lazy parameter initialisers (xavier, normal, zeros, fixed values), so that
//!   the same seed gives the same bits and a model can be built (and its parameters counted)
//!   without allocating its weights.
//! - [`host`]: plain host-side tensors read from and written to safetensors files (inputs,
//!   outputs, fixtures), independent of any module.
//! - [`weights`]: loading and saving a burn module under PyTorch key names (safetensors and
//!   pickle-free `.pt` reading).
//! - [`ops`]: the ops of a DiT block (LayerNorm without affine + adaLN modulation, tanh GELU,
//!   attention): fused on flex, composed from primitive ops elsewhere.
//! - [`adamw`]: AdamW with a one-pass update kernel, bit-identical to burn's.
//! - [`attention`]: fused multi-head self-attention over spatial or temporal sequences read
//!   straight from the `qkv` projection, with a recomputing backward pass.
//! - [`ema`]: the EMA weight update in one pass.
//! - [`gradcheck`]: the finite-difference gradient check the tests of ops and models use.
//! - [`fused`]: the fused flex kernels with hand-written backward passes (a burn backend
//!   extension with an `Autodiff` implementation).

pub mod adamw;
pub mod attention;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod ema;
pub mod error;
pub mod fused;
pub mod gradcheck;
pub mod host;
pub mod init;
pub mod ops;
pub mod weights;

pub use burn;
pub use error::NnError;
