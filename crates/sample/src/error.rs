//! The one error type of this crate.

/// What stops a sampling run. Messages name the option, file or folder at fault and what to
/// give instead.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// An option that cannot work (the message names it and the values that do).
    #[error("{0}")]
    Options(String),
    /// The model, the VAE or a file disagree with each other.
    #[error("{0}")]
    Mismatch(String),
    /// A step that failed, saying what it was doing; the cause is the source.
    #[error("{what}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Diffusion(#[from] latte_diffusion::DiffusionError),
    #[error(transparent)]
    Model(#[from] latte_model::ModelError),
    #[error(transparent)]
    Vae(#[from] latte_vae::VaeError),
    #[error(transparent)]
    Store(#[from] latte_store::StoreError),
    #[error(transparent)]
    Train(#[from] latte_train::TrainError),
}

/// Says what a failing step was doing (anyhow's `context`, for a library error type).
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, SampleError>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, SampleError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, SampleError> {
        self.with_context(|| what.to_owned())
    }
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, SampleError> {
        self.map_err(|source| SampleError::Step { what: what(), source: Box::new(source) })
    }
}
