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

    /// Something that should not happen: a bug on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Invalid {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    /// A node the query needs cannot answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Invalid {
            kind: ErrorKind::Unavailable,
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

impl From<Error> for datafusion::error::DataFusionError {
    /// Keeps the kind visible to whoever classifies the DataFusion error later.
    fn from(error: Error) -> Self {
        use datafusion::error::DataFusionError as E;
        match error {
            Error::DataFusion(e) => e,
            Error::Engine(e) => e.into(),
            Error::Invalid { kind, message } => match kind {
                ErrorKind::ResourceExhausted | ErrorKind::PayloadTooLarge => {
                    E::ResourcesExhausted(message)
                }
                ErrorKind::InvalidArgument | ErrorKind::MalformedProfile => E::Plan(message),
                ErrorKind::Unimplemented => E::NotImplemented(message),
                _ => E::Execution(message),
            },
        }
    }
}
