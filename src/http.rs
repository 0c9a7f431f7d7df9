//! The HTTP port: routing, tenancy, bounded body reading, and each request timed and logged.
//! Handlers are thin translations between wire messages and the crates' APIs.

mod admin;
mod ingest;
mod otlp;
mod querier;
mod render;
mod ui;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hearth_engine::ErrorKind;
use hearth_engine::metrics::ReplayState;
use hearth_engine::model::TenantId;
use hearth_ingest::IngestService;
use hearth_sql::Queries;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::metrics::Metrics;

/// What every handler can reach.
pub(crate) struct AppState {
    pub ingest: Arc<IngestService>,
    pub query: Arc<dyn Queries>,
    pub metrics: Arc<Metrics>,
    pub multitenancy_enabled: bool,
    /// Whether `/` serves the web UI.
    pub serves_ui: bool,
    /// Cleared when shutdown starts.
    pub ready: AtomicBool,
    /// Gossip membership (cluster roles only).
    pub membership: Option<Arc<hearth_ring::Membership>>,
    /// The local engine (`all` and ingesters), for `/ingester/flush`.
    pub engine: Option<Arc<hearth_engine::Engine>>,
    /// The scrape targets (`scrape_configs`), for `/targets`.
    pub scrapes: Arc<crate::scrape::Scrapes>,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let pages = if state.serves_ui {
        Router::new()
            .route("/", get(ui::index))
            .route("/ui/app.js", get(ui::app_js))
            .route("/ui/app.css", get(ui::app_css))
            .route("/ui/config", get(ui::config))
    } else {
        Router::new()
    };
    pages
        .route("/ingest", post(ingest::ingest))
        .route("/pyroscope/ingest", post(ingest::ingest))
        .route("/push.v1.PusherService/Push", post(ingest::push))
        .route("/v1development/profiles", post(otlp::export_http))
        .route(otlp::GRPC_EXPORT, post(otlp::export_any))
        .route("/querier.v1.QuerierService/{method}", post(querier::call))
        .route("/pyroscope/render", get(render::render))
        .route("/pyroscope/render-diff", get(render::render_diff))
        .route("/pyroscope/label-values", get(render::label_values))
        .route("/ready", get(admin::ready))
        .route("/metrics", get(admin::metrics))
        .route("/ring", get(admin::ring))
        .route("/targets", get(admin::targets))
        .route("/ingester/flush", get(admin::flush).post(admin::flush))
        .fallback(admin::not_found)
        .with_state(Arc::clone(&state))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            observe,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
}

/// What the port answers while the process starts (opening the bucket, replaying the WAL,
/// joining the ring): `/ready` says how far it is with 503, `/metrics` already answers, and
/// everything else is refused with 503 until the services are built.
pub(crate) fn starting_router(metrics: Arc<Metrics>) -> Router {
    let status = {
        let metrics = Arc::clone(&metrics);
        move || starting_status(&metrics)
    };
    let refused = status.clone();
    Router::new()
        .route(
            "/ready",
            get(move || async move { text(StatusCode::SERVICE_UNAVAILABLE, status()) }),
        )
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                admin::render_metrics(&metrics)
            }),
        )
        .fallback(move || async move {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}; try again when /ready answers 200", refused()),
            )
        })
        .with_state(metrics)
}

/// How far start-up is, for a person reading `/ready`.
fn starting_status(metrics: &Metrics) -> String {
    match metrics.engine.replay_state() {
        ReplayState::NotStarted => "starting: opening block storage".to_string(),
        ReplayState::Running {
            done,
            total,
            records,
            elapsed,
        } => format!(
            "starting: replaying the write-ahead log: {done} of {total} segments, {records} records in {:.1} s",
            elapsed.as_secs_f64()
        ),
        ReplayState::Finished => {
            "starting: the write-ahead log is replayed; starting services".into()
        }
    }
}

/// Times each request by method, route template and status (`/metrics`).
async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    metrics.observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Probes and scrapes come every few seconds: their requests are logged at debug level only.
fn is_probe(path: &str) -> bool {
    matches!(path, "/ready" | "/metrics")
}

fn request_span(request: &axum::http::Request<Body>) -> Span {
    let (method, path) = (request.method(), request.uri().path());
    match is_probe(path) {
        true => tracing::debug_span!("request", %method, path),
        false => tracing::info_span!("request", %method, path),
    }
}

/// One log line per request, in the request's span (method and path).
fn log_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    let millis = latency.as_secs_f64() * 1e3;
    match span.metadata().map(|m| *m.level()) {
        Some(tracing::Level::INFO) => tracing::info!(status, millis, "answered"),
        _ => tracing::debug!(status, millis, "answered"),
    }
}

pub(crate) const TENANT_HEADER: &str = "x-scope-orgid";

/// The tenant of a request: `anonymous` when multi-tenancy is off, else `X-Scope-OrgID`.
pub(crate) fn tenant(
    headers: &HeaderMap,
    multitenancy_enabled: bool,
) -> Result<TenantId, (ErrorKind, String)> {
    if !multitenancy_enabled {
        return Ok(TenantId::anonymous());
    }
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Err((
            ErrorKind::Unauthenticated,
            "no org id: the X-Scope-OrgID header is required when multi-tenancy is enabled".into(),
        ));
    };
    let value = value.to_str().map_err(|_| {
        (
            ErrorKind::InvalidArgument,
            "X-Scope-OrgID is not valid text".to_string(),
        )
    })?;
    if value.contains('|') {
        return Err((
            ErrorKind::InvalidArgument,
            format!("X-Scope-OrgID {value:?} names several tenants; this request takes one"),
        ));
    }
    TenantId::new(value.trim()).map_err(|e| (e.kind(), e.to_string()))
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    TooLarge(usize),
    Read(String),
}

/// Reads a body of at most `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

impl BodyError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            BodyError::TooLarge(_) => ErrorKind::PayloadTooLarge,
            BodyError::Read(_) => ErrorKind::InvalidArgument,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            BodyError::TooLarge(limit) => {
                format!("request body too large: the limit is {limit} bytes")
            }
            BodyError::Read(e) => format!("cannot read the request body: {e}"),
        }
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// Query pairs, percent-decoded; a value that is not UTF-8 is refused, not mangled.
pub(crate) fn parse_query(query: &str) -> hearth_engine::Result<Vec<(String, String)>> {
    let decode = |part: &str| -> hearth_engine::Result<String> {
        let spaced = part.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                hearth_engine::Error::invalid(
                    ErrorKind::InvalidArgument,
                    format!("query parameter {part:?} is not valid UTF-8 once decoded"),
                )
            })
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn query_decoding() {
        let q = parse_query("name=app%7Benv%3Dtest%7D&from=1&x=a+b").unwrap();
        assert_eq!(q[0], ("name".into(), "app{env=test}".into()));
        assert_eq!(q[2].1, "a b");
        let err = parse_query("name=%ff%fe").unwrap_err().to_string();
        assert!(err.contains("not valid UTF-8"), "{err}");
    }
}
