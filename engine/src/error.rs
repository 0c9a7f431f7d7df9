//! The engine's error type and the status vocabulary every crate shares.

use std::fmt;

/// What kind of failure an error is, independent of the surface that reports it.
///
/// Only the edges turn a kind into a wire status, each in one module: `src/status.rs` of the
/// binary (HTTP and Connect) and `hearth_flight::status` (gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is wrong: bad labels, bad selector, out-of-range parameter.
    InvalidArgument,
    /// The payload could not be decoded or is not a valid profile.
    MalformedProfile,
    /// The request body, before or after decompression, is over a size limit.
    PayloadTooLarge,
    /// A tenant is required and none was given.
    Unauthenticated,
    /// A rate or resource limit was hit.
    ResourceExhausted,
    /// The thing asked for does not exist.
    NotFound,
    /// The method or format is not implemented.
    Unimplemented,
    /// The service cannot take the request now (starting, shutting down, no replicas).
    Unavailable,
    /// A bug or an I/O failure on our side.
    Internal,
}

impl ErrorKind {
    /// The kind's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::MalformedProfile => "malformed_profile",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind named `name` (as [`ErrorKind::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [
            ErrorKind::InvalidArgument,
            ErrorKind::MalformedProfile,
            ErrorKind::PayloadTooLarge,
            ErrorKind::Unauthenticated,
            ErrorKind::ResourceExhausted,
            ErrorKind::NotFound,
            ErrorKind::Unimplemented,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// Whether the same request may succeed if sent again (to the same node after a pause, or
    /// to another replica): the failure was the server's state, not the request.
    pub fn retryable(self) -> bool {
        match self {
            ErrorKind::Unavailable | ErrorKind::ResourceExhausted | ErrorKind::Internal => true,
            ErrorKind::InvalidArgument
            | ErrorKind::MalformedProfile
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Unauthenticated
            | ErrorKind::NotFound
            | ErrorKind::Unimplemented => false,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid { kind: ErrorKind, message: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl Error {
    /// An error in the caller's input, with a message naming what is wrong.
    pub fn invalid(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Invalid {
            kind,
            message: message.into(),
        }
    }

    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    pub fn corrupt(what: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { kind, .. } => *kind,
            Error::ShuttingDown => ErrorKind::Unavailable,
            Error::DataFusion(e) => datafusion_kind(e),
            _ => ErrorKind::Internal,
        }
    }
}

/// The kind of a DataFusion error, from its root cause.
pub fn datafusion_kind(error: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as E;
    match error.find_root() {
        E::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        E::Plan(_) | E::SQL(..) | E::SchemaError(..) => ErrorKind::InvalidArgument,
        E::NotImplemented(_) => ErrorKind::Unimplemented,
        E::External(e) => match e.downcast_ref::<Error>() {
            Some(error) => error.kind(),
            None if out_of_reach(e.as_ref()) => ErrorKind::Unavailable,
            None => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// Whether `error` comes from a peer that refused or dropped a connection (another querier
/// running a stage of the query): worth trying again once the cluster has noticed.
fn out_of_reach(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as Io;
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::NotConnected
                    | Io::BrokenPipe
                    | Io::TimedOut
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
            )
        {
            return true;
        }
        next = error.source();
    }
    false
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for datafusion::error::DataFusionError {
    fn from(error: Error) -> Self {
        match error {
            Error::DataFusion(e) => e,
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}
