//! Shared burn utilities for the Latte crates.
//!
//! - [`device`]: picking a burn [`Device`](burn::tensor::Device) by name.
//! - [`init`]: the one way parameters are created, each under its state-dict key: drawn from a
//!   seed (per-path lazy streams, or one sequential stream) or read from a [`tensor_file`].
//! - [`tensor_file`]: a safetensors file handing out each tensor once, by key or alias.
//! - [`layers`]: PyTorch-layout Conv2d and GroupNorm, and PyTorch-initialised Linear.
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
//! - [`threads`]: running work in a rayon pool of its own (CPU ranks, parallel workers).
//! - [`fused`]: the fused flex kernels with hand-written backward passes (a burn backend
//!   extension with an `Autodiff` implementation).
//! - [`conv`]: 2-D and 3-D convolutions on flex with burn's bits and less data movement.

pub mod adamw;
pub mod attention;
pub mod conv;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod ema;
pub mod error;
pub mod fused;
pub mod gradcheck;
pub mod host;
pub mod init;
pub mod layers;
pub mod ops;
pub mod tensor_file;
pub mod threads;
pub mod weights;

pub use burn;
pub use error::NnError;
