//! Which blocks to merge: per level, per aligned window, within the memory limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::CompactorConfig;
use crate::block::Block;
use crate::schema::TableKind;

/// One merge to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The output's level.
    pub level: u32,
    /// Start of the window, Unix nanoseconds.
    pub window_start: i64,
    /// The sources, oldest first.
    pub blocks: Vec<Arc<Block>>,
}

/// Bytes a merge of `blocks` is expected to need, measured as the compactor's resident memory
/// above its idle size (`benches/storage.rs` merges real blocks and reports both):
/// - per source, its symbols decoded (about five times their Parquet size) while the tables
///   they come from are read, the output's share of them (at most as much again) and the id
///   remap tables: twelve times the Parquet size in all; 600 bytes per series; and a read
///   batch plus a row group's column chunks of two tables (4 MiB);
/// - the output: the row groups being encoded and three 5 MiB upload buffers per file (40 MiB).
pub fn estimated_merge_bytes(blocks: &[Arc<Block>]) -> u64 {
    const OUTPUT_BUFFERS: u64 = 40 << 20;
    const READ_BUFFERS_PER_SOURCE: u64 = 4 << 20;
    const SYMBOLS_PER_PARQUET_BYTE: u64 = 12;
    const SERIES_ROW: u64 = 600;
    let symbols: u64 = blocks
        .iter()
        .flat_map(|b| TableKind::SYMBOLS.into_iter().filter_map(|t| b.file(t)))
        .map(|f| f.size_bytes)
        .sum();
    let series: u64 = blocks
        .iter()
        .map(|b| b.meta.stats.series * SERIES_ROW)
        .sum();
    OUTPUT_BUFFERS
        + SYMBOLS_PER_PARQUET_BYTE * symbols
        + series
        + READ_BUFFERS_PER_SOURCE * blocks.len() as u64
}

/// The merges due at `now_nanos` among `live` blocks (each block in at most one job), lowest
/// level first.
pub fn plan(live: &[Arc<Block>], now_nanos: i64, config: &CompactorConfig) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let wait = config.wait_period.as_nanos() as i64;
    for (i, range) in config.block_ranges.iter().enumerate() {
        let level = i as u32 + 1;
        let range = (range.as_nanos() as i64).max(1);
        let mut windows: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
        for block in live {
            if block.meta.level() <= level && !taken.contains(&block.meta.ulid) {
                let start = block.meta.min_time_nanos.div_euclid(range) * range;
                windows.entry(start).or_default().push(Arc::clone(block));
            }
        }
        for (start, mut blocks) in windows {
            let closed = start.saturating_add(range).saturating_add(wait) <= now_nanos;
            let below = blocks.iter().any(|b| b.meta.level() < level);
            if !closed || !below || blocks.len() < 2 {
                continue;
            }
            blocks.sort_by(|a, b| a.meta.ulid.cmp(&b.meta.ulid));
            // Within the memory limit: as many as fit, oldest first; the rest next cycle.
            let mut chosen: Vec<Arc<Block>> = Vec::new();
            for block in blocks {
                chosen.push(block);
                if chosen.len() > 2 && estimated_merge_bytes(&chosen) > config.max_memory_bytes {
                    chosen.pop();
                    break;
                }
            }
            if estimated_merge_bytes(&chosen) > config.max_memory_bytes {
                tracing::warn!(
                    window_start = start,
                    level,
                    needed = estimated_merge_bytes(&chosen),
                    limit = config.max_memory_bytes,
                    "two blocks of this window need more than compactor.max_memory_bytes: not merged"
                );
                continue;
            }
            taken.extend(chosen.iter().map(|b| b.meta.ulid.clone()));
            jobs.push(Job {
                level,
                window_start: start,
                blocks: chosen,
            });
        }
    }
    jobs
}
