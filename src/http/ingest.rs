//! `POST /ingest` (Pyroscope's legacy push) and `POST /push.v1.PusherService/Push` (Connect).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_engine::ErrorKind;
use hearth_ingest::error::reason;
use hearth_proto::push::v1::{PushRequest, PushResponse};

use super::{AppState, parse_query, read_body, tenant};
use crate::connect::{Codec, ConnectError, decode_body};
use crate::status;

/// A refusal on `/ingest`: Pyroscope's status for the kind, and `{"code", "message"}`.
fn legacy_error(state: &AppState, error: hearth_ingest::Error) -> Response {
    state.ingest.record_error(&error);
    let status = status::legacy_http_status(error.kind());
    let code = status::legacy_code(status);
    if status.is_server_error() {
        tracing::error!(error = %error, "ingest failed");
    }
    let body = serde_json::json!({ "code": code, "message": error.to_string() });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn rejected(
    kind: ErrorKind,
    why: &'static str,
    message: impl Into<String>,
) -> hearth_ingest::Error {
    hearth_ingest::Error::rejected(kind, why, message)
}

pub(super) async fn ingest(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = match tenant(&headers, state.multitenancy_enabled) {
        Ok(t) => t,
        Err((kind, message)) => {
            return legacy_error(&state, rejected(kind, reason::UNAUTHENTICATED, message));
        }
    };
    let query = match parse_query(uri.query().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => {
            return legacy_error(
                &state,
                rejected(e.kind(), reason::INVALID_LABELS, e.to_string()),
            );
        }
    };
    let limits = state.ingest.limits(&tenant);
    let body = match read_body(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return legacy_error(
                &state,
                rejected(e.kind(), reason::BODY_SIZE_LIMIT, e.message()),
            );
        }
    };
    let body = match decode_body(&headers, body, limits.max_decompressed_body_bytes) {
        Ok(b) => b,
        Err(e) => {
            return legacy_error(
                &state,
                rejected(e.kind(), reason::BODY_SIZE_LIMIT, e.to_string()),
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match state
        .ingest
        .ingest(&tenant, &query, content_type, body)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => legacy_error(&state, e),
    }
}

pub(super) async fn push(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match push_inner(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => {
            if error.kind == ErrorKind::Internal {
                tracing::error!(error = %error.message, "push failed");
            }
            error.into_response()
        }
    }
}

async fn push_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ConnectError> {
    let fail = |kind: ErrorKind, why: &'static str, message: String| {
        let error = rejected(kind, why, message);
        state.ingest.record_error(&error);
        ConnectError::from(error)
    };
    let tenant = tenant(headers, state.multitenancy_enabled)
        .map_err(|(kind, message)| fail(kind, reason::UNAUTHENTICATED, message))?;
    let codec = Codec::from_headers(headers)?;
    let limits = state.ingest.limits(&tenant);
    let body = read_body(body, limits.max_body_bytes)
        .await
        .map_err(|e| fail(e.kind(), reason::BODY_SIZE_LIMIT, e.message()))?;
    let body_bytes = body.len();
    let body = decode_body(headers, body, limits.max_decompressed_body_bytes)
        .map_err(|e| fail(e.kind(), reason::BODY_SIZE_LIMIT, e.to_string()))?;
    let request: PushRequest = codec.decode(&body).inspect_err(|e| {
        state.ingest.record_error(&rejected(
            e.kind,
            reason::MALFORMED_PROFILE,
            e.message.clone(),
        ));
    })?;
    state.ingest.push(&tenant, request, body_bytes).await?;
    Ok(codec.respond(&PushResponse {}, headers))
}
