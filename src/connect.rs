//! Connect unary over HTTP: request decoding (`application/proto` or `application/json`,
//! gzip bodies), response encoding (content type set, gzip per `Accept-Encoding`) and Connect
//! error JSON. What Pyroscope's connect-go handlers accept, without requiring
//! `Connect-Protocol-Version` (real agents omit it).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hearth_engine::ErrorKind;
use hearth_engine::compression::{gunzip_bounded, gzip, is_gzip};
use serde::Serialize;

use crate::status;
use serde::de::DeserializeOwned;

/// Responses smaller than this are not compressed.
const GZIP_MIN_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec of a request, from its `Content-Type`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ConnectError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Ok(Codec::Proto)
            }
            "application/json" => Ok(Codec::Json),
            _ => Err(ConnectError::unsupported_media_type(content_type)),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Codec::Proto => "application/proto",
            Codec::Json => "application/json",
        }
    }

    pub(crate) fn decode<M>(self, body: &[u8]) -> Result<M, ConnectError>
    where
        M: prost::Message + Default + DeserializeOwned,
    {
        match self {
            Codec::Proto => M::decode(body).map_err(|e| {
                ConnectError::new(
                    ErrorKind::InvalidArgument,
                    format!("invalid protobuf request: {e}"),
                )
            }),
            Codec::Json => {
                let body = if body.is_empty() { &b"{}"[..] } else { body };
                serde_json::from_slice(body).map_err(|e| {
                    ConnectError::new(
                        ErrorKind::InvalidArgument,
                        format!("invalid JSON request: {e}"),
                    )
                })
            }
        }
    }

    /// A 200 response with `message` in this codec, gzipped when the client accepts it.
    pub(crate) fn respond<M>(self, message: &M, request_headers: &HeaderMap) -> Response
    where
        M: prost::Message + Serialize,
    {
        let body = match self {
            Codec::Proto => message.encode_to_vec(),
            Codec::Json => match serde_json::to_vec(message) {
                Ok(body) => body,
                Err(e) => {
                    return ConnectError::new(
                        ErrorKind::Internal,
                        format!("cannot encode response: {e}"),
                    )
                    .into_response();
                }
            },
        };
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, self.content_type())],
        )
            .into_response();
        if body.len() >= GZIP_MIN_BYTES && accepts_gzip(request_headers) {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            *response.body_mut() = gzip(&body).into();
        } else {
            *response.body_mut() = body.into();
        }
        response
    }
}

pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.split(';').next().unwrap_or_default().trim() == "gzip")
}

/// Whether the request body carries `Content-Encoding: gzip`.
pub(crate) fn is_gzip_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// Undoes `Content-Encoding: gzip` within `limit` bytes. A body that is not gzip despite the
/// header is taken as it is (Pyroscope's handlers sniff, they do not trust the header).
pub(crate) fn decode_body(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, hearth_engine::Error> {
    if is_gzip_encoded(headers) && is_gzip(&body) {
        let inflated = gunzip_bounded(&body, limit, "request body")?;
        return Ok(Bytes::from(inflated));
    }
    Ok(body)
}

/// A Connect error: `{"code": ..., "message": ...}` with the code's HTTP status.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub kind: ErrorKind,
    pub message: String,
    status_override: Option<StatusCode>,
}

impl ConnectError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectError {
            kind,
            message: message.into(),
            status_override: None,
        }
    }

    /// A procedure the service does not have: HTTP 404 (connect-go's router) with code
    /// `unimplemented`, which is what Connect clients read from a 404.
    /// Whether this answers a method the service does not have (made by `unknown_method`).
    pub(crate) fn is_unknown_method(&self) -> bool {
        self.status_override == Some(StatusCode::NOT_FOUND)
    }

    pub(crate) fn unknown_method(message: impl Into<String>) -> Self {
        ConnectError {
            kind: ErrorKind::Unimplemented,
            message: message.into(),
            status_override: Some(StatusCode::NOT_FOUND),
        }
    }

    /// The Connect protocol answers an unsupported content type with HTTP 415.
    fn unsupported_media_type(content_type: &str) -> Self {
        ConnectError {
            kind: ErrorKind::InvalidArgument,
            message: format!(
                "unsupported content type {content_type:?}: expected application/proto or application/json"
            ),
            status_override: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        }
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
        }
        let status = self
            .status_override
            .unwrap_or_else(|| status::http_status(self.kind));
        let body = serde_json::to_vec(&Body {
            code: status::connect_code(self.kind),
            message: &self.message,
        })
        .unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

impl From<hearth_engine::Error> for ConnectError {
    fn from(e: hearth_engine::Error) -> Self {
        ConnectError::new(e.kind(), e.to_string())
    }
}

impl From<hearth_ingest::Error> for ConnectError {
    fn from(e: hearth_ingest::Error) -> Self {
        ConnectError::new(e.kind(), e.to_string())
    }
}

impl From<hearth_sql::Error> for ConnectError {
    fn from(e: hearth_sql::Error) -> Self {
        ConnectError::new(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(Codec::from_headers(&headers).unwrap(), Codec::Json);
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let response = Codec::from_headers(&headers).unwrap_err().into_response();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let response = ConnectError::new(ErrorKind::ResourceExhausted, "x").into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn gzip_only_when_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            "deflate, gzip;q=1.0".parse().unwrap(),
        );
        assert!(accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, "identity".parse().unwrap());
        assert!(!accepts_gzip(&headers));
    }
}
