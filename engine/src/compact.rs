//! Compaction: a tenant's blocks merged into fewer, larger ones, replicas written once, symbols
//! rewritten, and blocks past retention removed. One [`Compactor::run_tenant`] is one cycle
//! for one tenant; the binary's compactor role decides which tenants and when.
//!
//! Levels: a flushed head is level 0. Level `n` (1-based) merges, per aligned window of
//! `block_ranges[n-1]`, every block of level at most `n` whose earliest profile falls in the
//! window, once the window closed `wait_period` ago and it holds at least two blocks, one of
//! them below level `n`. Default ranges are 1 h and 24 h: level 1 merges the replicas of an
//! hour (flushes of three ingesters), level 2 a day, which also removes replicas that fell
//! into neighbouring hours because the ingesters flushed at different moments.
//!
//! Commit order, so that a crash at any point loses nothing and counts nothing twice:
//! 1. the merged block's files, then its `meta.json` listing its sources (from here readers
//!    ignore the sources: the data is seen once, in the new block);
//! 2. deletion marks on the sources, then the bucket index;
//! 3. a deletion delay later, the sources' objects.
//!
//! Every cycle starts by listing the bucket, so what a crash left undone (sources replaced but
//! not marked, folders without `meta.json`) is finished then.

mod merge;
mod plan;

pub use merge::{MergeOptions, MergeStats, merge_blocks};
pub use plan::{Job, estimated_merge_bytes, plan};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::block::index::{self, BucketIndex, DeletionMark};
use crate::error::Result;
use crate::model::TenantId;

/// The compactor's settings (`compactor:` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// How often every owned tenant gets a cycle.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// The window of each level, smallest first.
    #[serde(with = "durations")]
    pub block_ranges: Vec<Duration>,
    /// How long after a window ends its blocks are merged (late flushes still arriving are
    /// merged again by a later cycle).
    #[serde(with = "humantime_serde")]
    pub wait_period: Duration,
    /// Memory one merge may use: a window whose blocks would need more is merged in parts.
    pub max_memory_bytes: u64,
    /// How long a replaced or expired block stays after its deletion mark, so queries that
    /// hold it finish; folders left without `meta.json` this long are removed too.
    #[serde(with = "humantime_serde")]
    pub deletion_delay: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            compaction_interval: Duration::from_secs(60),
            block_ranges: vec![Duration::from_secs(3600), Duration::from_secs(24 * 3600)],
            wait_period: Duration::from_secs(15 * 60),
            max_memory_bytes: 512 << 20,
            deletion_delay: Duration::from_secs(30 * 60),
        }
    }
}

/// What one cycle changed, for a process that also serves the tenant's blocks.
#[derive(Debug, Default)]
pub struct CycleOutcome {
    /// Blocks written by merges.
    pub added: Vec<Arc<Block>>,
    /// Blocks no query should read any more (replaced or past retention).
    pub removed: HashSet<String>,
    /// Block folders deleted.
    pub deleted: usize,
    pub merges: Vec<MergeStats>,
}

/// Compacts tenants of one bucket.
#[derive(Debug)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    config: CompactorConfig,
    /// Whether blocks may hold replicas of one profile (a cluster).
    replicated: bool,
    /// This node's id, written into merged blocks.
    origin: String,
}

impl Compactor {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: CompactorConfig,
        replicated: bool,
        origin: String,
    ) -> Self {
        Compactor {
            store,
            config,
            replicated,
            origin,
        }
    }

    /// The same compactor over another client of its bucket (one whose connections live on
    /// the runtime that will drive it).
    pub fn with_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = store;
        self
    }

    pub fn config(&self) -> &CompactorConfig {
        &self.config
    }

    /// One cycle for `tenant`: finish what a previous cycle left undone, apply `retention`,
    /// delete what is due, run the planned merges, and write the bucket index.
    pub async fn run_tenant(
        &self,
        tenant: &TenantId,
        retention: Option<Duration>,
        now_nanos: i64,
    ) -> Result<CycleOutcome> {
        let store = self.store.as_ref();
        let previous = BucketIndex::read(store, tenant).await?;
        let (mut index, listing) =
            BucketIndex::build(store, tenant, previous.as_ref(), now_nanos).await?;
        let mut outcome = CycleOutcome::default();

        // Sources replaced by a committed merge get their marks (a crash may have come first).
        let live: HashSet<String> = index
            .live_blocks()
            .iter()
            .map(|b| b.meta.ulid.clone())
            .collect();
        let marked: HashSet<String> = index
            .deletion_marks
            .iter()
            .map(|m| m.block.clone())
            .collect();
        let replaced: Vec<String> = index
            .blocks
            .iter()
            .map(|b| b.ulid.clone())
            .filter(|id| !live.contains(id) && !marked.contains(id))
            .collect();
        for block in replaced {
            self.mark(
                &mut index,
                tenant,
                &block,
                "compacted",
                now_nanos,
                &mut outcome,
            )
            .await?;
        }

        // Retention: blocks wholly older than the period leave.
        if let Some(period) = retention {
            let cutoff = now_nanos.saturating_sub(period.as_nanos() as i64);
            let expired: Vec<String> = index
                .live_blocks()
                .iter()
                .filter(|b| b.meta.max_time_nanos < cutoff)
                .map(|b| b.meta.ulid.clone())
                .collect();
            for block in expired {
                self.mark(
                    &mut index,
                    tenant,
                    &block,
                    "retention",
                    now_nanos,
                    &mut outcome,
                )
                .await?;
            }
        }

        // Deletion, a delay after the mark; and folders a crash left without meta.json.
        let delay = self.config.deletion_delay.as_nanos() as i64;
        let due: Vec<DeletionMark> = index
            .deletion_marks
            .iter()
            .filter(|m| m.marked_at_nanos.saturating_add(delay) <= now_nanos)
            .cloned()
            .collect();
        for mark in &due {
            index::delete_block(store, tenant, &mark.block).await?;
            outcome.deleted += 1;
        }
        let gone: HashSet<&str> = due.iter().map(|m| m.block.as_str()).collect();
        index.blocks.retain(|b| !gone.contains(b.ulid.as_str()));
        index
            .deletion_marks
            .retain(|m| !gone.contains(m.block.as_str()));
        for (block, modified) in &listing.partial {
            if modified.saturating_add(delay) <= now_nanos {
                tracing::info!(tenant = %tenant, block, "removing a block folder without meta.json");
                index::delete_block(store, tenant, block).await?;
                outcome.deleted += 1;
            }
        }
        index.write(store, tenant).await?;

        // Merges.
        for job in plan(&index.live_blocks(), now_nanos, &self.config) {
            let options = MergeOptions {
                replicated: self.replicated,
                origin: self.origin.clone(),
                level: job.level,
            };
            let merged = merge_blocks(&self.store, tenant, &job.blocks, &options).await?;
            if let Some((block, stats)) = merged {
                tracing::info!(
                    tenant = %tenant,
                    block = %block.meta.ulid,
                    level = job.level,
                    sources = job.blocks.len(),
                    input_bytes = stats.input_bytes,
                    output_bytes = stats.output_bytes,
                    profiles_in = stats.profiles_in,
                    profiles_out = stats.profiles_out,
                    "merged blocks"
                );
                index.blocks.push(block.meta.clone());
                outcome.added.push(Arc::new(block));
                outcome.merges.push(stats);
            }
            for source in &job.blocks {
                self.mark(
                    &mut index,
                    tenant,
                    &source.meta.ulid,
                    "compacted",
                    now_nanos,
                    &mut outcome,
                )
                .await?;
            }
            index.write(store, tenant).await?;
        }
        Ok(outcome)
    }

    async fn mark(
        &self,
        index: &mut BucketIndex,
        tenant: &TenantId,
        block: &str,
        reason: &str,
        now_nanos: i64,
        outcome: &mut CycleOutcome,
    ) -> Result<()> {
        let mark =
            index::mark_for_deletion(self.store.as_ref(), tenant, block, reason, now_nanos).await?;
        index.deletion_marks.push(mark);
        outcome.removed.insert(block.to_string());
        Ok(())
    }
}

/// A list of durations written as humantime strings (`[1h, 24h]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = value
            .iter()
            .map(|d| humantime_serde::re::humantime::format_duration(*d).to_string())
            .collect();
        text.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let values: Vec<humantime_serde::Serde<Duration>> = Vec::deserialize(d)?;
        Ok(values.into_iter().map(|v| *v).collect())
    }
}
