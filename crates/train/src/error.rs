use std::path::PathBuf;

use thiserror::Error;

/// What stops a training run.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("training config key `{key}`: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("training data: {0}")]
    Data(String),
    #[error(transparent)]
    Diffusion(#[from] latte_diffusion::DiffusionError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("copying {}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loss figure {}: {source}", path.display())]
    Figure { path: PathBuf, source: latte_plot::PlotError },
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "the {what} became non-finite ({value}) at step {step}; training stopped. {} \
         Lower `lr`, enable gradient clipping (`clip_from_step`), or check the latents for NaN.",
        match last_good { Some(p) => format!("The last good checkpoint is {}.", p.display()), None => "No checkpoint was written yet.".to_owned() }
    )]
    NonFinite { what: &'static str, value: f64, step: u64, last_good: Option<PathBuf> },
    /// `on_step` asked to stop; the run resumes from `checkpoint` (the stopped step's).
    #[error("training interrupted after step {step}; checkpoint {} written, the next run resumes from it", checkpoint.display())]
    Interrupted { step: u64, checkpoint: PathBuf },
    /// A launcher variable (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`)
    /// is missing or unusable.
    #[error("environment variable {var}{}: {reason}", match value { Some(v) => format!(" = {v:?}"), None => String::new() })]
    Env { var: &'static str, value: Option<String>, reason: String },
    /// Talking to another rank of a data-parallel group failed (`peer` names it and, over
    /// TCP, its address).
    #[error("data parallel, {peer}: {message}")]
    Collective { peer: String, message: String },
    /// The device to train on cannot be opened.
    #[error("device: {0}")]
    Device(String),
    /// Rank `rank` of an in-process group failed while rank 0 did not ([`crate::train_on_devices`]).
    #[error("data-parallel rank {rank}")]
    Rank {
        rank: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
