//! Video I/O for Latte.
//!
//! - [`decode`]: in-process FFmpeg decoding to RGB, whole videos or a window of frames found
//!   by seeking to the keyframe before it (frame indices from timestamps).
//! - [`encode`]: H.264 mp4 / MPEG-4 part 2 avi writing and animated GIF.
//! - [`image_folder`]: videos stored as folders of PNG/JPEG frames.
//! - [`window`]: the reference's temporal sampling rule (which frames make a clip).
//! - [`transform`]: the reference's spatial transforms (torch bilinear, no antialias) and flip.
//! - [`synthetic`]: the seeded synthetic dataset of bouncing shapes.
//! - [`tile`]: several videos tiled into one grid video.

pub mod decode;
pub mod encode;
mod error;
mod frame;
pub mod image_folder;
pub mod synthetic;
pub mod tile;
pub mod transform;
pub mod window;

pub use decode::{probe, VideoInfo, VideoReader};
pub use encode::{write_gif, write_jpeg, write_video, Codec, EncodeOptions, VideoWriter};
pub use error::VideoError;
pub use frame::Frame;
pub use tile::{tile_columns, tile_grid};
pub use transform::{SpatialTransform, TransformError};
pub use window::{sample_flip, WindowError, WindowRule, WindowSpec};
