//! The seam for distributed queries: what a querier pushes down to the nodes holding heads
//! ([`RemoteAggregate`]) and the trait its transport implements ([`RemoteExecutor`], over
//! Flight in `hearth-flight`). How queries are split and served is in [`crate::distributed`].

use std::fmt;

use arrow::array::RecordBatch;
use futures::future::BoxFuture;
use hearth_engine::dedupe::SourceKeys;
use hearth_engine::model::TimeRange;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What a [`RemoteAggregate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
/// pushes down to an ingester.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
