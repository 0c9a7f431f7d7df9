//! `/ready`, `/metrics`, `/ring`, `/ingester/flush` and the fallback.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, text};
use crate::metrics::Metrics;

pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        text(StatusCode::OK, "ready")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    }
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    render_metrics(&state.metrics)
}

pub(super) fn render_metrics(metrics: &Metrics) -> Response {
    match metrics.render() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render metrics: {e}"),
        ),
    }
}

/// Flushes every tenant's head to a block now (Pyroscope's `/ingester/flush`): before a
/// planned restart, or to hand recent data to the bucket and the compactor.
pub(super) async fn flush(State(state): State<Arc<AppState>>) -> Response {
    let Some(engine) = &state.engine else {
        return text(
            StatusCode::NOT_FOUND,
            "this process holds no heads: flush an ingester (or `--target all`)",
        );
    };
    let mut blocks = 0;
    for tenant in engine.tenants() {
        match engine.flush_tenant(&tenant).await {
            Ok(written) => blocks += written.len(),
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("flush of tenant {tenant} failed (the head stays and is retried): {e}"),
                );
            }
        }
    }
    text(StatusCode::OK, format!("flushed {blocks} blocks"))
}

/// The cluster as this node's gossip sees it: every live node, its roles, state and addresses.
pub(super) async fn ring(State(state): State<Arc<AppState>>) -> Response {
    let Some(membership) = &state.membership else {
        return text(
            StatusCode::NOT_FOUND,
            "this process runs `--target all`: there is no ring",
        );
    };
    let nodes: Vec<serde_json::Value> = membership
        .nodes()
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "state": n.state.as_str(),
                "roles": n.info.roles,
                "http_addr": n.info.http_addr,
                "flight_addr": n.info.flight_addr,
                "zone": n.info.zone,
                "tokens": n.info.tokens.len(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "self": membership.node_id(), "nodes": nodes })).into_response()
}

pub(super) async fn not_found(uri: Uri) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

/// `GET /targets`: each scrape target's health, last scrape and last error (JSON).
pub(super) async fn targets(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.scrapes.report()).into_response()
}
