//! The one error type of this crate.

/// What stops a training run on a latents store. Messages name the store, the option or the
/// device at fault and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// An option that cannot work (the message names it and the values that do).
    #[error("{0}")]
    Options(String),
    /// The latents store cannot serve the run (the message names the store).
    #[error("{0}")]
    Data(String),
    /// The model configuration, completed from the store, is not a valid Latte.
    #[error("model configuration")]
    ModelConfig(#[source] latte_model::ModelError),
    /// Writing one of the output files named.
    #[error("writing {file}")]
    Write {
        file: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Model(#[from] latte_model::ModelError),
    #[error(transparent)]
    Store(#[from] latte_store::StoreError),
    #[error(transparent)]
    Train(#[from] latte_train::TrainError),
}
