//! `querier.v1.QuerierService` over Connect: decoding, dispatch and the tenant; each method is
//! a thin translation to [`hearth_sql::Queries`] (a query service, or a query-frontend; metadata in `metadata.rs`, profile
//! queries in `profiles.rs`).

mod metadata;
mod profiles;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hearth_engine::ErrorKind;
use hearth_engine::model::TenantId;

use super::{AppState, read_body, tenant};
use crate::connect::{Codec, ConnectError, decode_body};

/// The largest query request body.
const MAX_QUERY_BODY: usize = 16 << 20;

pub(super) async fn call(
    State(state): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let answer = dispatch(&state, &method, &headers, body).await;
    // Unknown method names are not labels: anyone could make up millions of them.
    let label = match &answer {
        Err(error) if error.is_unknown_method() => "unknown",
        _ => method.as_str(),
    };
    let metrics = state.query.metrics();
    metrics.observe("connect", label, started.elapsed(), answer.is_ok());
    match answer {
        Ok(response) => response,
        Err(error) => {
            if error.kind == ErrorKind::Internal {
                tracing::error!(method, error = %error.message, "query failed");
            }
            error.into_response()
        }
    }
}

async fn dispatch(
    state: &AppState,
    method: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ConnectError> {
    let tenant = tenant(headers, state.multitenancy_enabled)
        .map_err(|(kind, m)| ConnectError::new(kind, m))?;
    let codec = Codec::from_headers(headers)?;
    let body = read_body(body, MAX_QUERY_BODY)
        .await
        .map_err(|e| ConnectError::new(ErrorKind::ResourceExhausted, e.message()))?;
    let body = decode_body(headers, body, MAX_QUERY_BODY)?;
    let request = Request {
        state,
        tenant,
        codec,
        headers,
        body: &body,
    };
    match method {
        "ProfileTypes" => request.profile_types().await,
        "LabelNames" => request.label_names().await,
        "LabelValues" => request.label_values().await,
        "Series" => request.series().await,
        "SelectMergeStacktraces" => request.select_merge_stacktraces().await,
        "SelectMergeSpanProfile" => request.select_merge_span_profile().await,
        "SelectMergeProfile" => request.select_merge_profile().await,
        "SelectSeries" => request.select_series().await,
        "Diff" => request.diff().await,
        "GetProfileStats" => request.get_profile_stats().await,
        // Pyroscope's v1 querier answers SelectHeatmap with unimplemented too.
        "SelectHeatmap" | "AnalyzeQuery" => Err(ConnectError::new(
            ErrorKind::Unimplemented,
            format!("querier.v1.QuerierService/{method} is not implemented"),
        )),
        other => Err(ConnectError::unknown_method(format!(
            "querier.v1.QuerierService has no method {other:?}"
        ))),
    }
}

pub(super) struct Request<'a> {
    state: &'a AppState,
    tenant: TenantId,
    codec: Codec,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Request<'_> {
    pub(super) fn decode<M>(&self) -> Result<M, ConnectError>
    where
        M: prost::Message + Default + serde::de::DeserializeOwned,
    {
        self.codec.decode(self.body)
    }

    pub(super) fn respond<M: prost::Message + serde::Serialize>(
        &self,
        message: &M,
    ) -> Result<Response, ConnectError> {
        Ok(self.codec.respond(message, self.headers))
    }
}
