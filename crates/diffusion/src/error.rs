use thiserror::Error;

/// What can go wrong when building a diffusion process or calling one of its steps.
#[derive(Debug, Error, PartialEq)]
pub enum DiffusionError {
    #[error("timestep {t} is out of range: this diffusion has {num_timesteps} steps (valid 0..={max})", max = num_timesteps - 1)]
    TimestepOutOfRange { t: usize, num_timesteps: usize },
    #[error("{what}: got {got} timesteps for a batch of {batch}; pass one timestep per sample")]
    BatchMismatch { what: &'static str, got: usize, batch: usize },
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch { what: &'static str, expected: Vec<usize>, got: Vec<usize> },
    #[error("timestep respacing `{spec}`: {reason}")]
    BadRespacing { spec: String, reason: String },
    #[error("beta schedule: {0}")]
    BadSchedule(String),
}
