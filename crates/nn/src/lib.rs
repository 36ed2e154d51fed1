//! TODO
pub use burn;
