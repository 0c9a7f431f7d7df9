//! The gRPC edge: every error that leaves a Flight service becomes a [`Status`] here, and a
//! status received from a peer becomes an [`ErrorKind`] again, from the shared vocabulary.

use hearth_engine::ErrorKind;
use tonic::{Code, Status};

/// The gRPC code of an error kind.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::MalformedProfile => Code::InvalidArgument,
        ErrorKind::ResourceExhausted | ErrorKind::PayloadTooLarge => Code::ResourceExhausted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The error kind of a status a peer answered (or the transport made up).
pub fn kind(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            ErrorKind::InvalidArgument
        }
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthenticated,
        Code::NotFound => ErrorKind::NotFound,
        Code::Unimplemented => ErrorKind::Unimplemented,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    }
}

/// A status with `kind`'s code.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(code(kind), message)
}

/// A query error as a status.
pub fn from_query(error: hearth_sql::Error) -> Status {
    status(error.kind(), error.to_string())
}

/// An engine error as a status.
pub fn from_engine(error: hearth_engine::Error) -> Status {
    status(error.kind(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_a_round_trip() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::ResourceExhausted,
            ErrorKind::Unauthenticated,
            ErrorKind::NotFound,
            ErrorKind::Unimplemented,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            assert_eq!(super::kind(code(kind)), kind);
        }
    }
}
