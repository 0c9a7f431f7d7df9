//! Ingest errors: a status kind, a reason (the `reason` label of the discard metrics, as
//! Pyroscope names them) and a message naming what is wrong.

use hearth_engine::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Rejected {
        kind: ErrorKind,
        reason: &'static str,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] hearth_engine::Error),
}

impl Error {
    pub fn rejected(kind: ErrorKind, reason: &'static str, message: impl Into<String>) -> Self {
        Error::Rejected {
            kind,
            reason,
            message: message.into(),
        }
    }

    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Error::rejected(ErrorKind::InvalidArgument, reason, message)
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Rejected { kind, .. } => *kind,
            Error::Engine(e) => e.kind(),
        }
    }

    /// Why the data was discarded, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Rejected { reason, .. } => reason,
            Error::Engine(e) => match e.kind() {
                ErrorKind::MalformedProfile => reason::MALFORMED_PROFILE,
                ErrorKind::PayloadTooLarge => reason::PROFILE_SIZE_LIMIT,
                ErrorKind::Unavailable => reason::UNAVAILABLE,
                _ => reason::INTERNAL,
            },
        }
    }
}

/// Discard reasons, as Pyroscope's `validation` package names them.
pub mod reason {
    pub const INVALID_LABELS: &str = "invalid_labels";
    pub const MISSING_LABELS: &str = "missing_labels";
    pub const MAX_LABEL_NAMES: &str = "max_label_names_per_series";
    pub const LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
    pub const LABEL_VALUE_TOO_LONG: &str = "label_value_too_long";
    pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const NOT_IN_INGESTION_WINDOW: &str = "not_in_ingestion_window";
    pub const SAMPLES_LIMIT: &str = "samples_limit";
    pub const SAMPLE_LABELS_LIMIT: &str = "sample_labels_limit";
    pub const PROFILE_SIZE_LIMIT: &str = "profile_size_limit";
    pub const BODY_SIZE_LIMIT: &str = "body_size_limit_exceeded";
    pub const MALFORMED_PROFILE: &str = "malformed_profile";
    pub const UNSUPPORTED_CLIENT: &str = "unsupported_client";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
