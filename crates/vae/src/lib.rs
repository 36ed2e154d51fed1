//! Stable Diffusion's `AutoencoderKL` in burn, laid out as diffusers' so that diffusers folders
//! (`config.json` + safetensors under diffusers key names) load unchanged: the encoder's
//! posterior (mean, log-variance), the decoder, strict weight loading, saving in the same
//! layout, and training a small one from frames.

pub mod autoencoder;
pub mod config;
pub mod decode;
mod error;
pub mod forward;
pub mod posterior;
pub mod train;
pub mod weights;

pub use autoencoder::{check_input, AutoencoderKL};
pub use burn;
pub use config::{VaeConfig, SD_SCALING_FACTOR};
pub use decode::{to_u8, Rgb8Video};
pub use error::VaeError;
pub use posterior::DiagonalGaussian;
pub use weights::{load_weights, save_pretrained, state_dict, VaeFolder};
