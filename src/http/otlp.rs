//! OTLP profiles on the HTTP port: OTLP/HTTP (`POST /v1development/profiles`, protobuf or JSON,
//! gzip allowed) and gRPC (`ProfilesService/Export` over HTTP/2, framed by tonic). The gRPC path
//! also takes OTLP/HTTP when the request is not gRPC, as Pyroscope's does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use hearth_engine::ErrorKind;
use hearth_ingest::error::reason;
use hearth_proto::google::rpc::Status;
use hearth_proto::otlp_collector::{ExportProfilesServiceRequest, ExportProfilesServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

use super::{AppState, read_body, tenant};
use crate::connect::decode_body;
use crate::status;

/// The gRPC method's path.
pub(super) const GRPC_EXPORT: &str =
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";

/// How an OTLP/HTTP body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Encoding> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = content_type.split(';').next()?.trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// A message in this encoding, with status `status`.
    fn respond<M: Message + serde::Serialize>(self, status: StatusCode, message: &M) -> Response {
        let body = match self {
            Encoding::Protobuf => message.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
        };
        (status, [(header::CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

/// `POST /v1development/profiles`.
pub(super) async fn export_http(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(encoding) = Encoding::of(&headers) else {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        let message = format!(
            "unsupported content type {given:?}: OTLP/HTTP profiles are application/x-protobuf, \
             application/protobuf or application/json"
        );
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
    };
    match export_http_inner(&state, &headers, encoding, body).await {
        Ok(()) => encoding.respond(StatusCode::OK, &ExportProfilesServiceResponse::default()),
        Err(error) => {
            if error.kind() == ErrorKind::Internal {
                tracing::error!(error = %error, "OTLP export failed");
            }
            let status = status::otlp_http_status(error.kind());
            let body = Status {
                code: hearth_flight::status::code(error.kind()) as i32,
                message: error.to_string(),
            };
            encoding.respond(status, &body)
        }
    }
}

/// Reads, decodes and stores one OTLP/HTTP export; every refusal is counted once.
async fn export_http_inner(
    state: &AppState,
    headers: &HeaderMap,
    encoding: Encoding,
    body: Body,
) -> Result<(), hearth_ingest::Error> {
    let fail = |kind: ErrorKind, why: &'static str, message: String| {
        let error = hearth_ingest::Error::rejected(kind, why, message);
        state.ingest.record_error(&error);
        error
    };
    let tenant = tenant(headers, state.multitenancy_enabled)
        .map_err(|(kind, message)| fail(kind, reason::UNAUTHENTICATED, message))?;
    let limits = state.ingest.limits(&tenant);
    let body = read_body(body, limits.max_body_bytes)
        .await
        .map_err(|e| fail(e.kind(), reason::BODY_SIZE_LIMIT, e.message()))?;
    let body_bytes = body.len();
    let body = decode_body(headers, body, limits.max_decompressed_body_bytes)
        .map_err(|e| fail(e.kind(), reason::BODY_SIZE_LIMIT, e.to_string()))?;
    let request = match encoding {
        Encoding::Protobuf => ExportProfilesServiceRequest::decode(body)
            .map_err(|e| format!("the body is not a protobuf ExportProfilesServiceRequest: {e}")),
        Encoding::Json => hearth_ingest::otlp::decode_json(&body),
    }
    .map_err(|message| {
        fail(
            ErrorKind::InvalidArgument,
            reason::MALFORMED_PROFILE,
            format!("the OTLP profiles request is invalid: {message}"),
        )
    })?;
    state
        .ingest
        .export_otlp(&tenant, request, body_bytes)
        .await
        .map(|_| ())
}

/// `ProfilesService/Export`: gRPC when the request says so, OTLP/HTTP otherwise.
pub(super) async fn export_any(
    state: State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    // gRPC needs HTTP/2 (its status travels in trailers); anything else is OTLP/HTTP.
    let grpc = request.version() == axum::http::Version::HTTP_2
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/grpc"));
    if !grpc {
        let (parts, body) = request.into_parts();
        return export_http(state, parts.headers, body).await;
    }
    let State(state) = state;
    let tenant = match tenant(request.headers(), state.multitenancy_enabled) {
        Ok(tenant) => tenant,
        Err((kind, message)) => {
            let error = hearth_ingest::Error::rejected(kind, reason::UNAUTHENTICATED, message);
            state.ingest.record_error(&error);
            let status = hearth_flight::status::status(kind, error.to_string());
            return status.into_http::<Body>().map(Body::new);
        }
    };
    let limits = state.ingest.limits(&tenant);
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limits.max_decompressed_body_bytes);
    grpc.unary(Export { state, tenant }, request)
        .await
        .map(Body::new)
}

/// One gRPC export call, for tonic's unary framing.
struct Export {
    state: Arc<AppState>,
    tenant: hearth_engine::model::TenantId,
}

impl tonic::server::UnaryService<ExportProfilesServiceRequest> for Export {
    type Response = ExportProfilesServiceResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<ExportProfilesServiceRequest>) -> Self::Future {
        let state = Arc::clone(&self.state);
        let tenant = self.tenant.clone();
        Box::pin(async move {
            let request = request.into_inner();
            let body_bytes = request.encoded_len();
            match state.ingest.export_otlp(&tenant, request, body_bytes).await {
                Ok(_) => Ok(tonic::Response::new(
                    ExportProfilesServiceResponse::default(),
                )),
                Err(error) => {
                    if error.kind() == ErrorKind::Internal {
                        tracing::error!(error = %error, "OTLP export failed");
                    }
                    Err(hearth_flight::status::status(
                        error.kind(),
                        error.to_string(),
                    ))
                }
            }
        })
    }
}
