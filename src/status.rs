//! The HTTP edge: the one place an error kind becomes a wire status, for Connect (code and HTTP
//! status, as connect-go maps them), for Pyroscope's legacy `/ingest` (its HTTP statuses and
//! the Connect code it derives from them), and for OTLP/HTTP (its statuses; gRPC codes are
//! `hearth_flight::status`'s).

use axum::http::StatusCode;
use hearth_engine::ErrorKind;

/// The Connect protocol error code of a kind.
pub(crate) fn connect_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::MalformedProfile => "invalid_argument",
        ErrorKind::PayloadTooLarge | ErrorKind::ResourceExhausted => "resource_exhausted",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Unimplemented => "unimplemented",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

/// The HTTP status of a Connect error of this kind (connect-go's code to HTTP mapping).
pub(crate) fn http_status(kind: ErrorKind) -> StatusCode {
    match connect_code(kind) {
        "invalid_argument" => StatusCode::BAD_REQUEST,
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "not_found" => StatusCode::NOT_FOUND,
        "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
        "unimplemented" => StatusCode::NOT_IMPLEMENTED,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status Pyroscope's legacy `/ingest` handler gives this kind.
pub(crate) fn legacy_http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::MalformedProfile | ErrorKind::Unimplemented => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of a refused OTLP/HTTP export (as Pyroscope's: 400 for what does not parse
/// or validate, 413 for size, 429 for limits).
pub(crate) fn otlp_http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::MalformedProfile => StatusCode::BAD_REQUEST,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        kind => http_status(kind),
    }
}

/// The `code` of a legacy `/ingest` error body: Pyroscope's `HTTPToCode` of its status (400 and
/// 413 are `invalid_argument`; 422 has no Connect code).
pub(crate) fn legacy_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "invalid_argument",
        401 => "unauthenticated",
        404 => "not_found",
        429 => "resource_exhausted",
        503 => "unavailable",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_of_kinds() {
        assert_eq!(
            http_status(ErrorKind::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(ErrorKind::MalformedProfile),
            StatusCode::BAD_REQUEST
        );
        let legacy = legacy_http_status(ErrorKind::PayloadTooLarge);
        assert_eq!(legacy, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(legacy_code(legacy), "invalid_argument");
        assert_eq!(
            legacy_code(legacy_http_status(ErrorKind::MalformedProfile)),
            "unknown"
        );
    }
}
