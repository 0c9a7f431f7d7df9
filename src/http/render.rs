//! Pyroscope's legacy read API: `GET /pyroscope/render` (flamebearer JSON with a timeline),
//! `/pyroscope/render-diff` and `/pyroscope/label-values`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_engine::ErrorKind;
use hearth_engine::model::{ProfileType, TenantId};
use hearth_engine::time::{now_nanos, parse_attime};
use hearth_sql::render::{
    NO_FLAME_GRAPH, collapsed, flame_graph, flame_graph_diff, pprof_file, svg,
};
use hearth_sql::{MillisRange, ProfileSelection, Selector, SeriesShape, ValueSeries};
use serde_json::{Value, json};

use super::{AppState, tenant};
use crate::connect::ConnectError;

type Query = Vec<(String, String)>;

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ErrorKind::InvalidArgument, message)
}

fn params(uri: &Uri) -> Result<Query, ConnectError> {
    super::parse_query(uri.query().unwrap_or_default()).map_err(|e| invalid(e.to_string()))
}

fn get<'a>(query: &'a Query, key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `attime` in milliseconds; unset means now.
fn millis(query: &Query, key: &str) -> Result<i64, ConnectError> {
    let now = now_nanos();
    let nanos = match get(query, key) {
        None | Some("") => now,
        Some(v) => parse_attime(v, now).map_err(|e| invalid(format!("{key}: {e}")))?,
    };
    Ok(nanos / 1_000_000)
}

fn selection(query: &Query, names: [&str; 3]) -> Result<ProfileSelection, ConnectError> {
    let [query_key, from_key, until_key] = names;
    let text = get(query, query_key)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| invalid(format!("'{query_key}' is required")))?;
    let selector = Selector::parse(text)?;
    Ok(ProfileSelection::from_selector(
        selector,
        millis(query, from_key)?,
        millis(query, until_key)?,
    )?)
}

fn max_nodes(state: &AppState, query: &Query) -> Result<i64, ConnectError> {
    let requested = ["max-nodes", "maxNodes"]
        .iter()
        .filter_map(|k| get(query, k).and_then(|v| v.parse::<i64>().ok()))
        .rfind(|&n| n != 0);
    Ok(state.query.max_nodes(requested)?)
}

/// Units and name as Pyroscope's flamebearer export names them.
fn metadata(profile_type: &ProfileType, format: &str) -> Value {
    let units = match profile_type.sample_type.as_str() {
        "inuse_objects" | "alloc_objects" | "goroutine" | "samples" => "objects",
        "cpu" => "samples",
        _ => profile_type.sample_unit.as_str(),
    };
    json!({
        "format": format,
        "spyName": "",
        "sampleRate": 100,
        "units": units,
        "name": profile_type.sample_type,
    })
}

/// The timeline step in seconds: (until - from) / 1500, rounded as Grafana rounds intervals,
/// and never below 15 s.
pub(super) fn timeline_step_seconds(from_ms: i64, until_ms: i64) -> i64 {
    const MIN: i64 = 15_000;
    let raw = (until_ms - from_ms) / 1500;
    if raw < MIN {
        return MIN / 1000;
    }
    // (threshold, rounded) in milliseconds.
    const STEPS: &[(i64, i64)] = &[
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000 - 1, 2_592_000_000),
    ];
    let rounded = STEPS
        .iter()
        .find(|(threshold, _)| raw <= *threshold)
        .map_or(31_536_000_000, |(_, step)| *step);
    rounded / 1000
}

/// Pyroscope's timeline: `samples[k]` is the point at `start + k * step`, zero-filled, for
/// `(until - from) / step` steps.
fn timeline(series: Option<&ValueSeries>, start_ms: i64, until_ms: i64, step_s: i64) -> Value {
    let start_s = start_ms / 1000;
    let len = ((until_ms / 1000 - start_s) / step_s).max(0) as usize;
    let mut samples = vec![0u64; len];
    for &(t, value) in series.map(|s| s.points.as_slice()).unwrap_or_default() {
        let k = (t / 1000 - start_s) / step_s;
        if t >= start_ms && (0..len as i64).contains(&k) {
            samples[k as usize] = value.max(0.0) as u64;
        }
    }
    json!({ "startTime": start_s, "samples": samples, "durationDelta": step_s, "watermarks": null })
}

/// The tenant and query parameters of a legacy read request.
fn request(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(TenantId, Query), ConnectError> {
    let tenant =
        tenant(headers, state.multitenancy_enabled).map_err(|(k, m)| ConnectError::new(k, m))?;
    Ok((tenant, params(uri)?))
}

fn json_response(value: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The selection as a file: `pprof` (gzipped, as `go tool pprof` reads it), `collapsed` stacks
/// or an `svg` flame graph. Each holds every stack (no `max_nodes` folding).
async fn export(
    state: &AppState,
    tenant: &TenantId,
    selection: &ProfileSelection,
    format: &str,
    title: &str,
) -> Result<Response, ConnectError> {
    let file = |content_type: &'static str, body: Vec<u8>| {
        (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    if format == "pprof" {
        let profile = state.query.merge_pprof(tenant, selection).await?;
        return Ok(file("application/octet-stream", pprof_file(&profile)));
    }
    let tree = state.query.merge_tree(tenant, selection, None).await?;
    if format == "collapsed" {
        return Ok(file(
            "text/plain; charset=utf-8",
            collapsed(&tree).into_bytes(),
        ));
    }
    let t = &selection.profile_type;
    if tree.len() <= 1 {
        return Err(ConnectError::new(ErrorKind::NotFound, NO_FLAME_GRAPH));
    }
    let picture = svg(&tree, title, &t.sample_unit)
        .map_err(|e| ConnectError::new(ErrorKind::Internal, format!("drawing the SVG: {e}")))?;
    Ok(file("image/svg+xml", picture))
}

/// The `flamebearer` object: names, levels as plain numbers, ticks and largest self.
fn flamebearer(
    names: &[String],
    levels: &[hearth_proto::querier::v1::Level],
    total: i64,
    max_self: i64,
) -> Value {
    let levels: Vec<Value> = levels.iter().map(|l| json!(l.values)).collect();
    json!({ "names": names, "levels": levels, "numTicks": total, "maxSelf": max_self })
}

/// Runs one render API call, timed as a query of `method`.
async fn timed(
    state: &AppState,
    method: &'static str,
    answer: impl Future<Output = Result<Response, ConnectError>>,
) -> Response {
    let mut timer = state.query.metrics().timer("render", method);
    answer.await.unwrap_or_else(|error| {
        timer.failed();
        error.into_response()
    })
}

pub(super) async fn render(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    timed(&state, "render", render_inner(&state, &uri, &headers)).await
}

async fn render_inner(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ConnectError> {
    let (tenant, query) = request(state, uri, headers)?;
    let format = get(&query, "format").unwrap_or("json");
    if !matches!(format, "json" | "svg" | "collapsed" | "pprof") {
        return Err(invalid(format!(
            "format {format:?} is not supported: use json, svg, collapsed or pprof"
        )));
    }
    let selection = selection(&query, ["query", "from", "until"])?;
    if format != "json" {
        let title = get(&query, "query").unwrap_or_default();
        return export(state, &tenant, &selection, format, title).await;
    }
    let max_nodes = max_nodes(state, &query)?;
    let group_by: Vec<String> = query
        .iter()
        .filter(|(k, v)| k == "groupBy" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    let average = get(&query, "aggregation") == Some("avg");
    let MillisRange { start, end } = selection.range;
    let step_s = timeline_step_seconds(start, end);

    let tree = state.query.merge_tree(&tenant, &selection, None).await?;
    let shape = SeriesShape {
        step_ms: step_s * 1000,
        group_by: group_by.clone(),
        by_series: false,
        average,
        limit: None,
    };
    let series = state
        .query
        .select_series(&tenant, &selection, &shape)
        .await?;
    let graph = flame_graph(&tree, max_nodes);
    let single = (series.len() == 1).then(|| &series[0]);
    let groups = if group_by.is_empty() {
        Value::Null
    } else {
        let mut groups = serde_json::Map::new();
        for s in &series {
            let key = s.labels.get(&group_by[0]).unwrap_or("*").to_string();
            groups.insert(key, timeline(Some(s), start, end, step_s));
        }
        Value::Object(groups)
    };
    Ok(json_response(json!({
        "version": 1,
        "flamebearer": flamebearer(&graph.names, &graph.levels, graph.total, graph.max_self),
        "metadata": metadata(&selection.profile_type, "single"),
        "timeline": timeline(single, start, end, step_s),
        "groups": groups,
        "heatmap": null,
    })))
}

pub(super) async fn render_diff(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    timed(
        &state,
        "render-diff",
        render_diff_inner(&state, &uri, &headers),
    )
    .await
}

async fn render_diff_inner(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ConnectError> {
    let (tenant, query) = request(state, uri, headers)?;
    let left = selection(&query, ["leftQuery", "leftFrom", "leftUntil"])?;
    let right = selection(&query, ["rightQuery", "rightFrom", "rightUntil"])?;
    if left.profile_type != right.profile_type {
        return Err(invalid(format!(
            "profile types must match: left {}, right {}",
            left.profile_type, right.profile_type
        )));
    }
    let max_nodes = max_nodes(state, &query)?;
    let left_tree = state.query.merge_tree(&tenant, &left, None).await?;
    let right_tree = state.query.merge_tree(&tenant, &right, None).await?;
    let diff = flame_graph_diff(&left_tree, &right_tree, max_nodes);
    Ok(json_response(json!({
        "version": 1,
        "flamebearer": flamebearer(&diff.names, &diff.levels, diff.total, diff.max_self),
        "metadata": metadata(&left.profile_type, "double"),
        "leftTicks": diff.left_ticks,
        "rightTicks": diff.right_ticks,
        "timeline": null,
        "groups": null,
        "heatmap": null,
    })))
}

/// `?label=__name__` lists profile type ids; any other label lists its values (Pyroscope drops
/// the label name there and lists nothing useful; this answers the question asked).
pub(super) async fn label_values(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    timed(
        &state,
        "label-values",
        label_values_inner(&state, &uri, &headers),
    )
    .await
}

async fn label_values_inner(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ConnectError> {
    let (tenant, query) = request(state, uri, headers)?;
    let label = get(&query, "label")
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("label parameter is required"))?;
    let all = MillisRange::new(0, 0)?;
    let values: Vec<String> = if label == "__name__" {
        state
            .query
            .profile_types(&tenant, all)
            .await?
            .into_iter()
            .map(|t| t.id())
            .collect()
    } else {
        state.query.label_values(&tenant, label, &[], all).await?
    };
    Ok(json_response(json!(values)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_grafana_rounding() {
        let hour = 3_600_000;
        assert_eq!(timeline_step_seconds(0, hour), 15);
        assert_eq!(timeline_step_seconds(0, 24 * hour), 60);
        assert_eq!(timeline_step_seconds(0, 7 * 24 * hour), 300);
    }
}
