//! Per-tenant limits, one flat set of keys as Pyroscope's `limits:` and runtime `overrides:`
//! have them: what ingest enforces, how long blocks are kept, what one query may read. They
//! live here, below every crate that enforces one. Defaults follow Pyroscope's where they fit a
//! single binary; the differences are named on each field.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::TenantId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, before any decompression (Pyroscope: 256 MiB).
    pub max_body_bytes: usize,
    /// Largest request body after `Content-Encoding: gzip` is undone.
    pub max_decompressed_body_bytes: usize,
    /// Largest profile, decompressed (Pyroscope: 4 MiB).
    pub max_profile_bytes: usize,
    /// Most samples in one profile; 0 for no limit. Pyroscope's 16000 would refuse real C++
    /// profiles such as google/pprof's `large.cpu` (20,430 samples), so the default is higher.
    pub max_profile_samples: usize,
    /// Most labels on one sample (Pyroscope: 100).
    pub max_sample_labels: usize,
    /// Most label names on one series (Pyroscope: 30).
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Rewrite `.` in label names to `_` (`otel.scope.name` → `otel_scope_name`).
    pub sanitize_label_names: bool,
    /// Per-tenant ingest rate in MiB/s of request bodies; 0 for no limit (Pyroscope: 4).
    pub ingestion_rate_mb: f64,
    /// Burst allowance of the rate limit, MiB (Pyroscope: 2).
    pub ingestion_burst_size_mb: f64,
    /// Refuse profiles older than this; 0 for no limit (Pyroscope v2: 1h). Off by default so
    /// old profiles can be imported.
    #[serde(with = "humantime_serde")]
    pub reject_older_than: Duration,
    /// Refuse profiles further in the future than this; 0 for no limit (Pyroscope v2: 10m).
    #[serde(with = "humantime_serde")]
    pub reject_newer_than: Duration,
    /// Blocks whose every profile is older than this are deleted by the compactor, and queries
    /// do not read older profiles; 0 keeps everything (Pyroscope:
    /// `compactor_blocks_retention_period`, 0).
    #[serde(with = "humantime_serde")]
    pub retention_period: Duration,
    /// Most series of the tenant one ingester (or the single process) holds in its head; a
    /// push adding series past it is refused with 429. 0 for no limit (Pyroscope:
    /// `max_global_series_per_tenant`, which it divides over the ingesters).
    pub max_series_per_tenant: usize,
    /// Longest time range of a profile query; 0 for no limit (Pyroscope: `max_query_length`).
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,
    /// Memory of one query of the tenant; 0 takes `query.max_query_memory_bytes`.
    pub max_query_memory_bytes: usize,
    /// Jobs of the tenant's queries (a query split into intervals makes one per interval)
    /// that queriers run at once; the rest wait in the tenant's queue. 0 for no limit
    /// (Pyroscope: `max_query_parallelism`, 32).
    pub max_query_parallelism: usize,
    /// Replication sets one service's series are spread over in a cluster (by series, so a
    /// series always lands on the same set): more than 1 spreads a busy service over more
    /// ingesters. 1 keeps each service on one set.
    pub shards_per_service: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 256 << 20,
            max_decompressed_body_bytes: 256 << 20,
            max_profile_bytes: 4 << 20,
            max_profile_samples: 100_000,
            max_sample_labels: 100,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            sanitize_label_names: true,
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 2.0,
            reject_older_than: Duration::ZERO,
            reject_newer_than: Duration::ZERO,
            retention_period: Duration::ZERO,
            max_series_per_tenant: 0,
            max_query_length: Duration::ZERO,
            max_query_memory_bytes: 0,
            max_query_parallelism: 32,
            shards_per_service: 1,
        }
    }
}

/// Where each tenant's limits come from: the config's `limits:` for everyone, or a runtime
/// overrides file on top of them.
pub trait LimitsSource: Send + Sync + std::fmt::Debug {
    fn limits(&self, tenant: &TenantId) -> Arc<Limits>;
}

/// The same limits for every tenant.
#[derive(Debug, Clone, Default)]
pub struct FixedLimits(pub Arc<Limits>);

impl FixedLimits {
    /// `limits` for every tenant, as a source.
    pub fn shared(limits: Limits) -> Arc<dyn LimitsSource> {
        Arc::new(FixedLimits(Arc::new(limits)))
    }
}

impl LimitsSource for FixedLimits {
    fn limits(&self, _tenant: &TenantId) -> Arc<Limits> {
        Arc::clone(&self.0)
    }
}
