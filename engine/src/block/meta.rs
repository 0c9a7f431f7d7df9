//! `meta.json`: what a block holds and where it came from.

use std::collections::BTreeMap;

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
    /// Set on blocks the compactor wrote: they replace their sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<CompactionMeta>,
}

/// What a compacted block replaces. Writing its `meta.json` is the commit: from then on readers
/// ignore every block in `sources`, so the merged data is seen once whatever happens next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionMeta {
    /// 1 for a merge of flushed blocks, one more than its highest source otherwise.
    pub level: u32,
    /// Every block this one replaces: its direct sources and, transitively, theirs.
    pub sources: Vec<String>,
    /// The WAL segments its sources held, by origin: an ingester restarting after its block
    /// was compacted away still skips those segments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wal_segments: BTreeMap<String, Vec<String>>,
}

impl BlockMeta {
    /// 0 for a flushed head, the compaction level otherwise.
    pub fn level(&self) -> u32 {
        self.compaction.as_ref().map_or(0, |c| c.level)
    }

    /// The WAL segments of `origin` whose records this block holds.
    pub fn wal_segments_of<'a>(&'a self, origin: &str) -> Vec<&'a str> {
        let own = (self.origin == origin && self.compaction.is_none())
            .then_some(&self.wal_segments)
            .into_iter()
            .flatten();
        let compacted = self
            .compaction
            .iter()
            .filter_map(|c| c.wal_segments.get(origin))
            .flatten();
        own.chain(compacted).map(String::as_str).collect()
    }

    /// Total bytes of the block's files.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }
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
