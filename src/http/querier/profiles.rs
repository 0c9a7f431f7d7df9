//! The profile queries: `SelectMergeStacktraces`, `SelectMergeSpanProfile`,
//! `SelectMergeProfile`, `SelectSeries`, `Diff`, `GetProfileStats`.

use axum::response::Response;
use hearth_engine::ErrorKind;
use hearth_proto::querier::v1 as q;
use hearth_proto::types::v1 as t;
use hearth_sql::render::{flame_graph, flame_graph_diff, tree_bytes};
use hearth_sql::{ProfileSelection, SeriesShape};

use super::Request;
use crate::connect::ConnectError;

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ErrorKind::InvalidArgument, message)
}

fn unimplemented(what: &str) -> ConnectError {
    ConnectError::new(ErrorKind::Unimplemented, format!("{what} is not supported"))
}

/// Span ids are 16 hex characters.
fn parse_span_ids(spans: &[String]) -> Result<Vec<u64>, ConnectError> {
    spans
        .iter()
        .map(|s| {
            u64::from_str_radix(s, 16)
                .ok()
                .filter(|_| s.len() == 16)
                .ok_or_else(|| invalid(format!("span id {s:?} is not 16 hex characters")))
        })
        .collect()
}

fn selection(
    profile_type: &str,
    label_selector: &str,
    start: i64,
    end: i64,
) -> Result<ProfileSelection, ConnectError> {
    Ok(ProfileSelection::parse(
        profile_type,
        label_selector,
        start,
        end,
    )?)
}

/// Refuses the request fields this server does not honour, instead of ignoring them.
fn check_stacktraces_request(req: &q::SelectMergeStacktracesRequest) -> Result<(), ConnectError> {
    if req.stack_trace_selector.is_some() {
        return Err(unimplemented("stack_trace_selector"));
    }
    if !req.profile_id_selector.is_empty() {
        return Err(unimplemented("profile_id_selector"));
    }
    if !req.trace_id_selector.is_empty() {
        return Err(unimplemented("trace_id_selector"));
    }
    if req
        .r#async
        .as_ref()
        .is_some_and(|a| a.r#type == q::AsyncQueryType::Force as i32)
    {
        return Err(unimplemented("asynchronous queries"));
    }
    Ok(())
}

impl Request<'_> {
    /// A flame graph, or `tree` bytes when asked for that format.
    async fn merged_stacks(
        &self,
        selection: &ProfileSelection,
        spans: Option<&[u64]>,
        max_nodes: i64,
        as_tree: bool,
    ) -> Result<(Option<q::FlameGraph>, bytes::Bytes), ConnectError> {
        let tree = self
            .state
            .query
            .merge_tree(&self.tenant, selection, spans)
            .await?;
        Ok(if as_tree {
            (None, tree_bytes(&tree, max_nodes).into())
        } else {
            (Some(flame_graph(&tree, max_nodes)), bytes::Bytes::new())
        })
    }

    pub(super) async fn select_merge_stacktraces(&self) -> Result<Response, ConnectError> {
        let req: q::SelectMergeStacktracesRequest = self.decode()?;
        check_stacktraces_request(&req)?;
        let query = &self.state.query;
        let max_nodes = query.max_nodes(req.max_nodes)?;
        let selection = selection(
            &req.profile_type_id,
            &req.label_selector,
            req.start,
            req.end,
        )?;
        let spans = parse_span_ids(&req.span_selector)?;
        let spans = (!spans.is_empty()).then_some(spans.as_slice());
        let format =
            q::ProfileFormat::try_from(req.format).unwrap_or(q::ProfileFormat::Unspecified);
        let mut response = q::SelectMergeStacktracesResponse::default();
        match format {
            q::ProfileFormat::Unspecified
            | q::ProfileFormat::Flamegraph
            | q::ProfileFormat::Tree => {
                let as_tree = format == q::ProfileFormat::Tree;
                (response.flamegraph, response.tree) = self
                    .merged_stacks(&selection, spans, max_nodes, as_tree)
                    .await?;
            }
            q::ProfileFormat::Pprof => {
                if spans.is_some() {
                    return Err(unimplemented(
                        "span_selector with format PROFILE_FORMAT_PPROF",
                    ));
                }
                let profile = query.merge_pprof(&self.tenant, &selection).await?;
                response.pprof = Some(q::PprofProfile {
                    profile: Some(profile),
                });
            }
            q::ProfileFormat::Dot => return Err(unimplemented("format PROFILE_FORMAT_DOT")),
        }
        self.respond(&response)
    }

    pub(super) async fn select_merge_span_profile(&self) -> Result<Response, ConnectError> {
        let req: q::SelectMergeSpanProfileRequest = self.decode()?;
        let query = &self.state.query;
        let max_nodes = query.max_nodes(req.max_nodes)?;
        let selection = selection(
            &req.profile_type_id,
            &req.label_selector,
            req.start,
            req.end,
        )?;
        let spans = parse_span_ids(&req.span_selector)?;
        let tree = query
            .merge_tree(&self.tenant, &selection, Some(&spans))
            .await?;
        let mut response = q::SelectMergeSpanProfileResponse::default();
        if req.format == q::ProfileFormat::Tree as i32 {
            response.tree = tree_bytes(&tree, max_nodes).into();
        } else {
            response.flamegraph = Some(flame_graph(&tree, max_nodes));
        }
        self.respond(&response)
    }

    pub(super) async fn select_merge_profile(&self) -> Result<Response, ConnectError> {
        let req: q::SelectMergeProfileRequest = self.decode()?;
        if req.stack_trace_selector.is_some() {
            return Err(unimplemented("stack_trace_selector"));
        }
        if !req.profile_id_selector.is_empty() || !req.trace_id_selector.is_empty() {
            return Err(unimplemented("profile_id_selector and trace_id_selector"));
        }
        let selection = selection(
            &req.profile_type_id,
            &req.label_selector,
            req.start,
            req.end,
        )?;
        let profile = self
            .state
            .query
            .merge_pprof(&self.tenant, &selection)
            .await?;
        self.respond(&profile)
    }

    pub(super) async fn select_series(&self) -> Result<Response, ConnectError> {
        let req: q::SelectSeriesRequest = self.decode()?;
        if req.stack_trace_selector.is_some() {
            return Err(unimplemented("stack_trace_selector"));
        }
        let exemplars = t::ExemplarType::try_from(req.exemplar_type).unwrap_or_default();
        if matches!(
            exemplars,
            t::ExemplarType::Individual | t::ExemplarType::Span
        ) {
            return Err(unimplemented("exemplars"));
        }
        if !req.step.is_finite() || req.step < 0.001 {
            return Err(invalid(format!(
                "step must be at least 0.001 seconds, got {}",
                req.step
            )));
        }
        let selection = selection(
            &req.profile_type_id,
            &req.label_selector,
            req.start,
            req.end,
        )?;
        let limit = match req.limit {
            Some(n) if n < 0 => {
                return Err(invalid(format!("limit must not be negative, got {n}")));
            }
            Some(0) | None => None,
            Some(n) => Some(n as usize),
        };
        let shape = SeriesShape {
            step_ms: (req.step * 1000.0).round() as i64,
            group_by: req.group_by.clone(),
            by_series: false,
            average: req.aggregation == Some(t::TimeSeriesAggregationType::Average as i32),
            limit,
        };
        let series = self
            .state
            .query
            .select_series(&self.tenant, &selection, &shape)
            .await?;
        self.respond(&q::SelectSeriesResponse {
            series: series.into_iter().map(to_proto_series).collect(),
        })
    }

    pub(super) async fn diff(&self) -> Result<Response, ConnectError> {
        let req: q::DiffRequest = self.decode()?;
        let (Some(left), Some(right)) = (req.left, req.right) else {
            return Err(invalid("diff needs both left and right"));
        };
        check_stacktraces_request(&left)?;
        check_stacktraces_request(&right)?;
        if left.profile_type_id != right.profile_type_id {
            return Err(invalid(format!(
                "profile types must match: left {:?}, right {:?}",
                left.profile_type_id, right.profile_type_id
            )));
        }
        let query = &self.state.query;
        let max_nodes = query.max_nodes(left.max_nodes.or(right.max_nodes))?;
        let left_selection = selection(
            &left.profile_type_id,
            &left.label_selector,
            left.start,
            left.end,
        )?;
        let right_selection = selection(
            &right.profile_type_id,
            &right.label_selector,
            right.start,
            right.end,
        )?;
        let left_tree = query
            .merge_tree(&self.tenant, &left_selection, None)
            .await?;
        let right_tree = query
            .merge_tree(&self.tenant, &right_selection, None)
            .await?;
        self.respond(&q::DiffResponse {
            flamegraph: Some(flame_graph_diff(&left_tree, &right_tree, max_nodes)),
        })
    }

    pub(super) async fn get_profile_stats(&self) -> Result<Response, ConnectError> {
        let _req: t::GetProfileStatsRequest = self.decode()?;
        let stats = self.state.query.profile_stats(&self.tenant).await?;
        let (oldest, newest) = stats.unwrap_or((0, 0));
        self.respond(&t::GetProfileStatsResponse {
            data_ingested: stats.is_some(),
            oldest_profile_time: oldest,
            newest_profile_time: newest,
        })
    }
}

pub(crate) fn to_proto_series(series: hearth_sql::ValueSeries) -> t::Series {
    t::Series {
        labels: series
            .labels
            .iter()
            .map(|l| t::LabelPair {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect(),
        points: series
            .points
            .into_iter()
            .map(|(timestamp, value)| t::Point {
                value,
                timestamp,
                ..Default::default()
            })
            .collect(),
    }
}
