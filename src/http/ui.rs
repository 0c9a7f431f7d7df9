//! The web UI: the page (`ui/index.html`) and its two assets, built from `ui/src` into
//! `ui/dist`, embedded in the binary (so running Hearth needs no Node.js), and `/ui/config`,
//! what the page needs to know of this server. Served by the roles that answer queries.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/dist/app.js");
const APP_CSS: &str = include_str!("../../ui/dist/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change with the binary: revalidate instead of caching for a time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(super) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// What the page adapts to: the tenant field appears when multi-tenancy is on.
pub(super) async fn config(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "multitenancy_enabled": state.multitenancy_enabled,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}
