//! Query errors, with the shared status vocabulary.

use hearth_engine::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid { kind: ErrorKind, message: String },
    #[error(transparent)]
    Engine(#[from] hearth_engine::Error),
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl Error {
    /// A request the caller got wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { kind, .. } => *kind,
            Error::Engine(e) => e.kind(),
            Error::DataFusion(e) => hearth_engine::error::datafusion_kind(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
