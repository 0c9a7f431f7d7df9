//! Ingest limits. Defaults follow Pyroscope's where they fit a single binary; the differences
//! are named on each field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestLimits {
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
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
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
        }
    }
}
