//! The seam for distributed queries: what a querier pushes down to the nodes holding heads
//! ([`RemoteAggregate`]) and the trait its transport implements ([`RemoteExecutor`], over
//! Flight in `hearth-flight`). How queries are split and served is in [`crate::distributed`].

use std::fmt;

use arrow::array::RecordBatch;
use futures::future::BoxFuture;
use hearth_engine::dedupe::SourceKeys;
use hearth_engine::model::TimeRange;
use hearth_proto::hearth::cluster::v1 as wire;
use wire::aggregate_request::Partial as WirePartial;

use crate::error::{Error, Result};

/// What a [`RemoteAggregate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// `flamegraph` states of the selected samples: one binary column `state`.
    Flamegraph,
    /// `pprof` states of the selected samples: one binary column `state`.
    Pprof,
    /// Per series and time bucket `(t - step, t]` on the grid `start_ms + k * step_ms`, the
    /// sum of profile totals and the number of profiles: columns `series_id`, `bucket` (k),
    /// `total`, `profiles`.
    Series { start_ms: i64, step_ms: i64 },
}

/// A request for a partial aggregate of one tenant's heads: the part of a query a querier
/// pushes down to an ingester (on the wire, a `hearth.cluster.v1.AggregateRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAggregate {
    pub tenant: String,
    pub partial: Partial,
    /// Half-open time range in Unix nanoseconds.
    pub start: i64,
    pub end: i64,
    /// The selected series (by fingerprint).
    pub series_ids: Vec<u64>,
    /// The services of those series (whose symbols a stack merge needs).
    pub services: Vec<String>,
    /// Only samples of these spans, when set.
    pub span_ids: Option<Vec<u64>>,
    /// With replica deduplication: what each of the node's sources contributes (a source not
    /// listed contributes everything).
    pub keep: Option<Vec<SourceKeys>>,
}

impl RemoteAggregate {
    pub fn time(&self) -> TimeRange {
        TimeRange::new(self.start, self.end)
    }
}

/// Runs pushed-down aggregates on the nodes holding remote heads (the querier's fan-out).
pub trait RemoteExecutor: Send + Sync + fmt::Debug {
    /// The partial aggregate `request`, computed by remote `node` over its heads.
    fn aggregate(
        &self,
        node: &str,
        request: RemoteAggregate,
    ) -> BoxFuture<'static, Result<Vec<RecordBatch>>>;
}

impl From<RemoteAggregate> for wire::AggregateRequest {
    fn from(request: RemoteAggregate) -> Self {
        wire::AggregateRequest {
            tenant: request.tenant,
            partial: Some(match request.partial {
                Partial::Flamegraph => WirePartial::Flamegraph(wire::Flamegraph {}),
                Partial::Pprof => WirePartial::Pprof(wire::Pprof {}),
                Partial::Series { start_ms, step_ms } => {
                    WirePartial::Series(wire::SeriesBuckets { start_ms, step_ms })
                }
            }),
            start: request.start,
            end: request.end,
            series_ids: request.series_ids,
            services: request.services,
            span_ids: request.span_ids.map(|ids| wire::SpanIds { ids }),
            keep: request.keep.map(|sources| wire::KeepSets {
                sources: sources.into_iter().map(Into::into).collect(),
            }),
        }
    }
}

impl TryFrom<wire::AggregateRequest> for RemoteAggregate {
    type Error = Error;

    fn try_from(request: wire::AggregateRequest) -> Result<Self> {
        let partial = match request.partial {
            Some(WirePartial::Flamegraph(_)) => Partial::Flamegraph,
            Some(WirePartial::Pprof(_)) => Partial::Pprof,
            Some(WirePartial::Series(s)) => Partial::Series {
                start_ms: s.start_ms,
                step_ms: s.step_ms,
            },
            None => {
                return Err(Error::invalid(
                    "aggregate request names no partial: expected flamegraph, pprof or series",
                ));
            }
        };
        Ok(RemoteAggregate {
            tenant: request.tenant,
            partial,
            start: request.start,
            end: request.end,
            series_ids: request.series_ids,
            services: request.services,
            span_ids: request.span_ids.map(|s| s.ids),
            keep: request
                .keep
                .map(|k| k.sources.into_iter().map(Into::into).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn aggregate_requests_cross_the_wire_unchanged() {
        for partial in [
            Partial::Flamegraph,
            Partial::Pprof,
            Partial::Series {
                start_ms: 1_000,
                step_ms: 15_000,
            },
        ] {
            let request = RemoteAggregate {
                tenant: "t".into(),
                partial,
                start: -5,
                end: 10,
                series_ids: vec![1, u64::MAX],
                services: vec!["api".into()],
                span_ids: Some(vec![]),
                keep: Some(vec![SourceKeys {
                    source: "head-1".into(),
                    series: vec![1],
                    times: vec![7],
                }]),
            };
            let bytes = wire::AggregateRequest::from(request.clone()).encode_to_vec();
            let back = wire::AggregateRequest::decode(bytes.as_slice()).unwrap();
            assert_eq!(RemoteAggregate::try_from(back).unwrap(), request);
        }
        let none = wire::AggregateRequest::default();
        let error = RemoteAggregate::try_from(none).unwrap_err();
        assert!(error.to_string().contains("names no partial"), "{error}");
    }
}
