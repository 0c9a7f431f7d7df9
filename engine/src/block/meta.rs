//! `meta.json`: what a block holds and where it came from.

use serde::{Deserialize, Serialize};

pub(super) const META_FILE: &str = "meta.json";
pub const BLOCK_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockMeta {
    pub version: u32,
    pub ulid: String,
    pub tenant: String,
    /// Earliest and latest profile time, Unix nanoseconds, inclusive.
    pub min_time_nanos: i64,
    pub max_time_nanos: i64,
    pub stats: BlockStats,
    pub files: Vec<BlockFile>,
    /// Distinct profile type ids and service names, for pruning without opening files.
    pub profile_types: Vec<String>,
    pub service_names: Vec<String>,
    /// The WAL segments whose records this block holds; replay skips them.
    pub wal_segments: Vec<String>,
    /// `ingester` for a flushed head.
    pub source: String,
    /// The node that wrote the block (its ingester id in a cluster; empty for a single
    /// process). Replicas of one profile live in blocks of different origins.
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockStats {
    pub series: u64,
    pub profiles: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockFile {
    /// Relative to the block's folder.
    pub path: String,
    pub size_bytes: u64,
    pub rows: u64,
}
