//! `querier.v1.QuerierService` over Connect. The metadata methods are answered here through
//! [`hearth_sql::QueryService`]; the profile methods come with the query issue and answer
//! `unimplemented` until then.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hearth_engine::ErrorKind;
use hearth_engine::model::TenantId;
use hearth_proto::querier::v1 as q;
use hearth_proto::types::v1 as t;
use hearth_sql::MillisRange;

use super::{AppState, read_body, tenant};
use crate::connect::{Codec, ConnectError, decode_body};

/// The largest query request body.
const MAX_QUERY_BODY: usize = 16 << 20;

pub async fn call(
    State(state): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match dispatch(&state, &method, &headers, body).await {
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
        "SelectMergeStacktraces"
        | "SelectMergeSpanProfile"
        | "SelectMergeProfile"
        | "SelectSeries"
        | "SelectHeatmap"
        | "Diff"
        | "GetProfileStats"
        | "AnalyzeQuery" => Err(ConnectError::new(
            ErrorKind::Unimplemented,
            format!("querier.v1.QuerierService/{method} is not implemented yet"),
        )),
        other => Err(ConnectError::new(
            ErrorKind::NotFound,
            format!("querier.v1.QuerierService has no method {other:?}"),
        )),
    }
}

struct Request<'a> {
    state: &'a AppState,
    tenant: TenantId,
    codec: Codec,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Request<'_> {
    fn decode<M>(&self) -> Result<M, ConnectError>
    where
        M: prost::Message + Default + serde::de::DeserializeOwned,
    {
        self.codec.decode(self.body)
    }

    fn respond<M: prost::Message + serde::Serialize>(
        &self,
        message: &M,
    ) -> Result<Response, ConnectError> {
        Ok(self.codec.respond(message, self.headers))
    }

    async fn profile_types(&self) -> Result<Response, ConnectError> {
        let req: q::ProfileTypesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let types = self.state.query.profile_types(&self.tenant, range).await?;
        self.respond(&q::ProfileTypesResponse {
            profile_types: types
                .into_iter()
                .map(|p| t::ProfileType {
                    id: p.id(),
                    name: p.name,
                    sample_type: p.sample_type,
                    sample_unit: p.sample_unit,
                    period_type: p.period_type,
                    period_unit: p.period_unit,
                })
                .collect(),
        })
    }

    async fn label_names(&self) -> Result<Response, ConnectError> {
        let req: t::LabelNamesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let names = self
            .state
            .query
            .label_names(&self.tenant, &req.matchers, range)
            .await?;
        self.respond(&t::LabelNamesResponse { names })
    }

    async fn label_values(&self) -> Result<Response, ConnectError> {
        let req: t::LabelValuesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let names = self
            .state
            .query
            .label_values(&self.tenant, &req.name, &req.matchers, range)
            .await?;
        self.respond(&t::LabelValuesResponse { names })
    }

    async fn series(&self) -> Result<Response, ConnectError> {
        let req: q::SeriesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let sets = self
            .state
            .query
            .series(&self.tenant, &req.matchers, &req.label_names, range)
            .await?;
        self.respond(&q::SeriesResponse {
            labels_set: sets
                .into_iter()
                .map(|labels| t::Labels {
                    labels: labels
                        .iter()
                        .map(|l| t::LabelPair {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}
