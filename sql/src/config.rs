//! Query settings: limits Pyroscope users know, and memory bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Flame-graph nodes when a request sets none (Pyroscope's
    /// `querier.max-flamegraph-nodes-default`).
    pub max_flamegraph_nodes_default: i64,
    /// The most nodes a request may ask for (`querier.max-flamegraph-nodes-max`).
    pub max_flamegraph_nodes_max: i64,
    /// Memory one query may use; past it the query fails with `resource_exhausted`.
    pub max_query_memory_bytes: usize,
    /// Memory all queries of the process may use together (split pieces, concurrent jobs and
    /// SQL statements); a query that would go past it fails with `resource_exhausted`. 0: no
    /// limit beyond each query's.
    pub max_total_query_memory_bytes: usize,
    /// Bytes of block symbols and block series indexes kept in memory between queries.
    pub symbol_cache_bytes: usize,
    /// Bytes of Parquet footers (block file metadata) kept in memory between queries, so a
    /// query reads only the column chunks it needs.
    pub metadata_cache_bytes: usize,
    /// Profile queries over a longer range run as one partial aggregate per interval (aligned
    /// to the Unix epoch) and merge them; `0s` runs each as one (Pyroscope's
    /// `query-frontend.split-queries-by-interval`).
    #[serde(with = "humantime_serde")]
    pub split_interval: Duration,
    /// Flame graphs read the hourly rollups blocks carry for the whole hours of their range
    /// when the selector names only `service_name`, and `SelectSeries` whose step is whole
    /// hours on hour boundaries their per-series hourly totals (`false`: always read samples
    /// and profiles).
    pub rollups: bool,
    /// LabelNames, LabelValues and Series read the label postings heads keep and blocks'
    /// series indexes (`false`: scan the series table, decoding every label set).
    pub label_index: bool,
    /// A query-frontend refuses a tenant's query with 429 while this many of its queries are
    /// queued or running (Pyroscope's `query-scheduler.max-outstanding-requests-per-tenant`).
    pub max_outstanding_requests_per_tenant: usize,
    /// Jobs a querier takes from each query-frontend at once (Pyroscope's
    /// `querier.max-concurrent`).
    pub max_concurrent: usize,
    /// A cluster querier spreads the block scans and partial aggregates of a query over the
    /// queriers gossip shows (datafusion-distributed); `false`: it runs every stage itself.
    pub distributed_stages: bool,
    /// A block-scan stage gets one task per this many bytes of block files, up to one per
    /// querier; smaller scans run where the query runs.
    pub stage_bytes_per_task: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_flamegraph_nodes_default: 8192,
            max_flamegraph_nodes_max: 1_048_576,
            max_query_memory_bytes: 1 << 30,
            max_total_query_memory_bytes: 4 << 30,
            symbol_cache_bytes: 512 << 20,
            metadata_cache_bytes: 64 << 20,
            split_interval: Duration::ZERO,
            rollups: true,
            label_index: true,
            max_outstanding_requests_per_tenant: 100,
            max_concurrent: 4,
            distributed_stages: true,
            stage_bytes_per_task: 64 << 20,
        }
    }
}
