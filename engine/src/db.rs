//! The engine: per-tenant heads with their WAL segments, flushing to blocks, and snapshots for
//! queries.
//!
//! Each tenant has one *generation* taking writes: a head and the WAL segments whose records it
//! holds. An append holds the generation's read lock from the WAL write to the head apply, so a
//! flush, which takes the write lock to swap in a fresh generation, never separates a record from
//! the head it was applied to. The swapped-out head stays queryable (as *flushing*) until its
//! block is registered, in the same critical section that removes it: a query never sees both or
//! neither.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock as AsyncRwLock};

use crate::batch::ProfileBatch;
use crate::block::index::BucketIndex;
use crate::block::{self, Block};
use crate::block_cache::BlockCache;
use crate::error::{Error, ErrorKind, Result};
use crate::head::{AppendStats, Head};
use crate::limits::LimitsSource;
use crate::metrics::{EngineMetrics, ReplayState};
use crate::model::TenantId;
use crate::rollup;
use crate::snapshot::{SnapshotSource, TenantSnapshot};
use crate::wal::{Segment, SegmentId, Wal};

/// When heads become blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadConfig {
    /// Memory for one tenant's heads. A head is flushed once it holds about half of it, so the
    /// head being written to a block and the next one filling up fit in it together.
    pub max_head_bytes: usize,
    /// Flush a head this long after its first write (Pyroscope's max block duration).
    #[serde(with = "humantime_serde")]
    pub max_head_age: Duration,
    /// How often the flusher checks the thresholds.
    #[serde(with = "humantime_serde")]
    pub flush_check_interval: Duration,
}

impl HeadConfig {
    /// The head size that starts a flush.
    pub fn flush_at(&self) -> usize {
        self.max_head_bytes / 2
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            max_head_bytes: 512 << 20,
            max_head_age: Duration::from_secs(3600),
            flush_check_interval: Duration::from_secs(15),
        }
    }
}

/// Everything the engine is opened with.
#[derive(Debug)]
pub struct EngineArgs {
    /// Folder of the write-ahead log (local disk).
    pub wal_dir: PathBuf,
    /// Where blocks live.
    pub store: Arc<dyn ObjectStore>,
    pub head: HeadConfig,
    /// Bytes of block symbols kept in memory between queries.
    pub symbol_cache_bytes: usize,
    /// This node's id, written into its blocks' `meta.json`: several ingesters share one
    /// bucket, and each replays its WAL against its own blocks only. Empty for a single process.
    pub origin: String,
    /// Whether this engine's queries read its blocks (a single process). An ingester serves
    /// its heads only: queriers read the bucket, where the compactor replaces its blocks.
    pub serve_blocks: bool,
    /// Per-tenant limits the engine enforces (`max_series_per_tenant`).
    pub limits: Arc<dyn LimitsSource>,
    /// Flush and WAL-replay measurements, readable while `open` replays.
    pub metrics: Arc<EngineMetrics>,
}

/// A head that is taking writes, with the WAL segments it owns.
struct Generation {
    head: Arc<RwLock<Head>>,
    segments: Vec<SegmentId>,
    active: Arc<Segment>,
    created: Instant,
}

/// What queries see of a tenant.
#[derive(Default, Clone)]
struct TenantView {
    head: Option<Arc<RwLock<Head>>>,
    flushing: Vec<Arc<RwLock<Head>>>,
    blocks: Vec<Arc<Block>>,
}

struct TenantDb {
    tenant: TenantId,
    generation: AsyncRwLock<Generation>,
    view: RwLock<TenantView>,
    /// Swapped-out generations whose block is not written yet (a failed flush is retried).
    unflushed: Mutex<Vec<Generation>>,
    /// One flush at a time per tenant.
    flush_lock: tokio::sync::Mutex<()>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub tenants: usize,
    pub head_bytes: usize,
    pub head_profiles: usize,
    pub head_samples: usize,
    pub blocks: usize,
}

pub struct Engine {
    wal: Wal,
    store: Arc<dyn ObjectStore>,
    symbols: Arc<BlockCache>,
    config: HeadConfig,
    tenants: RwLock<FxHashMap<TenantId, Arc<TenantDb>>>,
    /// Tenant creation is serialised so two first pushes do not open two generations.
    create_lock: Mutex<()>,
    flush_wanted: Notify,
    flushes: std::sync::atomic::AtomicU64,
    closed: AtomicBool,
    origin: String,
    serve_blocks: bool,
    limits: Arc<dyn LimitsSource>,
    metrics: Arc<EngineMetrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tenants", &self.tenants.read().len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Engine {
    /// Opens the engine: loads block metadata and replays the WAL segments no block holds.
    pub async fn open(args: EngineArgs) -> Result<Arc<Self>> {
        let wal = Wal::open(&args.wal_dir)?;
        let engine = Engine {
            wal,
            store: args.store,
            symbols: Arc::new(BlockCache::new(args.symbol_cache_bytes)),
            config: args.head,
            tenants: RwLock::new(FxHashMap::default()),
            create_lock: Mutex::new(()),
            flush_wanted: Notify::new(),
            flushes: Default::default(),
            closed: AtomicBool::new(false),
            origin: args.origin,
            serve_blocks: args.serve_blocks,
            limits: args.limits,
            metrics: args.metrics,
        };
        let mut tenants = block::list_tenants(engine.store.as_ref()).await?;
        tenants.extend(engine.wal.tenants()?);
        tenants.sort();
        tenants.dedup();
        let started = Instant::now();
        // Each tenant's segments, listed once: their count is the replay's progress total.
        let mut listed = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let segments = engine.wal.segments(&tenant)?;
            listed.push((tenant, segments));
        }
        let segments: usize = listed.iter().map(|(_, s)| s.len()).sum();
        engine.metrics.replay_started(segments);
        tracing::info!(
            tenants = listed.len(),
            segments,
            "replaying the write-ahead log"
        );
        for (tenant, segments) in listed {
            engine.open_tenant(tenant, segments).await?;
        }
        engine.metrics.replay_finished();
        tracing::info!(segments, elapsed = ?started.elapsed(), "write-ahead log replayed");
        Ok(Arc::new(engine))
    }

    /// Opens one tenant: its blocks, and its WAL `segments` (oldest first) replayed into a head.
    async fn open_tenant(&self, tenant: TenantId, segments: Vec<SegmentId>) -> Result<()> {
        let (index, _) =
            BucketIndex::build(self.store.as_ref(), &tenant, None, crate::time::now_nanos())
                .await?;
        // Segments of this node held by any block (its own flushes, or a compacted block that
        // replaced them) are not replayed.
        let flushed: std::collections::HashSet<String> = index
            .blocks
            .iter()
            .flat_map(|b| b.wal_segments_of(&self.origin))
            .map(str::to_string)
            .collect();
        let blocks = match self.serve_blocks {
            true => index.live_blocks(),
            false => Vec::new(),
        };
        let mut head = Head::new();
        let mut replayed = Vec::new();
        for segment in segments {
            if flushed.contains(&segment.to_string()) {
                self.wal.delete_segment(&tenant, segment)?;
                self.metrics.segment_replayed();
                continue;
            }
            let mut replay = || {
                self.wal.replay(&tenant, segment, |bytes| {
                    // A record that cannot be applied is logged and skipped: one bad record
                    // must not keep the tenant's other data from starting.
                    let applied =
                        ProfileBatch::from_wal_record(bytes).and_then(|b| head.append(&b));
                    self.metrics.record_replayed(applied.is_ok());
                    if let Err(e) = applied {
                        tracing::error!(tenant = %tenant, %segment, error = %e, "skipping a wal record that cannot be applied");
                    }
                    Ok(())
                })
            };
            // Replaying is disk and CPU work: on a multi-threaded runtime the other workers
            // keep answering (`/ready` reports the progress) while this one replays.
            let records = match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(replay),
                _ => replay(),
            }?;
            self.metrics.segment_replayed();
            if let ReplayState::Running {
                done,
                total,
                elapsed,
                ..
            } = self.metrics.replay_state()
            {
                tracing::info!(tenant = %tenant, %segment, records, done, total, elapsed = ?elapsed, "replayed wal segment");
            }
            replayed.push(segment);
        }
        let active = self.wal.create_segment(&tenant)?;
        replayed.push(active.id);
        let head = Arc::new(RwLock::new(head));
        let db = TenantDb {
            tenant: tenant.clone(),
            generation: AsyncRwLock::new(Generation {
                head: Arc::clone(&head),
                segments: replayed,
                active,
                created: Instant::now(),
            }),
            view: RwLock::new(TenantView {
                head: Some(head),
                flushing: Vec::new(),
                blocks,
            }),
            unflushed: Mutex::new(Vec::new()),
            flush_lock: tokio::sync::Mutex::new(()),
        };
        self.tenants.write().insert(tenant, Arc::new(db));
        Ok(())
    }

    fn tenant_db(&self, tenant: &TenantId) -> Option<Arc<TenantDb>> {
        self.tenants.read().get(tenant).cloned()
    }

    async fn tenant_db_or_create(&self, tenant: &TenantId) -> Result<Arc<TenantDb>> {
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        let _guard = self.create_lock.lock();
        if let Some(db) = self.tenant_db(tenant) {
            return Ok(db);
        }
        let active = self.wal.create_segment(tenant)?;
        let head = Arc::new(RwLock::new(Head::new()));
        let db = Arc::new(TenantDb {
            tenant: tenant.clone(),
            generation: AsyncRwLock::new(Generation {
                head: Arc::clone(&head),
                segments: vec![active.id],
                active,
                created: Instant::now(),
            }),
            view: RwLock::new(TenantView {
                head: Some(head),
                ..Default::default()
            }),
            unflushed: Mutex::new(Vec::new()),
            flush_lock: tokio::sync::Mutex::new(()),
        });
        self.tenants.write().insert(tenant.clone(), Arc::clone(&db));
        Ok(db)
    }

    /// Stores a batch durably: WAL fsync, then the head. Returns once both are done.
    pub async fn append(&self, tenant: &TenantId, batch: ProfileBatch) -> Result<AppendStats> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        batch.check()?;
        let db = self.tenant_db_or_create(tenant).await?;
        let record = batch.to_wal_record();
        let generation = db.generation.read().await;
        self.check_series_limit(tenant, &generation.head, &batch)?;
        self.wal.append(&generation.active, record).await?;
        // Applying a large profile is CPU work: keep it off the I/O threads.
        let head = Arc::clone(&generation.head);
        let (stats, bytes) = tokio::task::spawn_blocking(move || {
            let mut head = head.write();
            let stats = head.append(&batch)?;
            Ok::<_, Error>((stats, head.estimated_bytes()))
        })
        .await
        .map_err(|e| Error::corrupt("head append task", e))??;
        let full = bytes >= self.config.flush_at();
        drop(generation);
        if full {
            self.flush_wanted.notify_one();
        }
        Ok(stats)
    }

    /// Refuses a batch that would take the head past the tenant's `max_series_per_tenant`.
    fn check_series_limit(
        &self,
        tenant: &TenantId,
        head: &RwLock<Head>,
        batch: &ProfileBatch,
    ) -> Result<()> {
        let limit = self.limits.limits(tenant).max_series_per_tenant;
        if limit == 0 {
            return Ok(());
        }
        let head = head.read();
        let mut new: Vec<u64> = batch
            .profiles
            .iter()
            .map(|p| p.labels.fingerprint())
            .filter(|fp| !head.has_series(fp))
            .map(|fp| fp.0)
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() && head.series_count() + new.len() > limit {
            return Err(Error::invalid(
                ErrorKind::ResourceExhausted,
                format!(
                    "tenant '{tenant}' has reached its limit of {limit} series (max_series_per_tenant): {} more refused",
                    new.len()
                ),
            ));
        }
        Ok(())
    }

    /// The tenant's heads and blocks at this instant.
    pub fn snapshot(&self, tenant: &TenantId) -> TenantSnapshot {
        let Some(db) = self.tenant_db(tenant) else {
            return TenantSnapshot::empty(tenant.clone());
        };
        let view = db.view.read();
        TenantSnapshot {
            tenant: tenant.clone(),
            heads: view.head.iter().chain(&view.flushing).cloned().collect(),
            blocks: view.blocks.clone(),
            remotes: Vec::new(),
            replicated: false,
        }
    }

    /// Applies what the compactor committed to the bucket: `added` (compacted blocks) in,
    /// `removed` (their sources, or blocks past retention) out, in one step, so a query sees
    /// the data once.
    pub fn replace_blocks(
        &self,
        tenant: &TenantId,
        added: &[Arc<Block>],
        removed: &std::collections::HashSet<String>,
    ) {
        let Some(db) = self.tenant_db(tenant) else {
            return;
        };
        let mut view = db.view.write();
        view.blocks.retain(|b| !removed.contains(&b.meta.ulid));
        for block in added {
            if !view.blocks.iter().any(|b| b.meta.ulid == block.meta.ulid) {
                view.blocks.push(Arc::clone(block));
            }
        }
        view.blocks.sort_by(|a, b| a.meta.ulid.cmp(&b.meta.ulid));
    }

    /// The node id written into this engine's blocks (empty for a single process).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn tenants(&self) -> Vec<TenantId> {
        let mut tenants: Vec<_> = self.tenants.read().keys().cloned().collect();
        tenants.sort();
        tenants
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn symbols(&self) -> &Arc<BlockCache> {
        &self.symbols
    }

    pub fn stats(&self) -> EngineStats {
        let tenants: Vec<_> = self.tenants.read().values().cloned().collect();
        let mut stats = EngineStats {
            tenants: tenants.len(),
            ..Default::default()
        };
        for db in tenants {
            let view = db.view.read().clone();
            for head in view.head.iter().chain(&view.flushing) {
                let head = head.read();
                stats.head_bytes += head.estimated_bytes();
                stats.head_profiles += head.profile_count();
                stats.head_samples += head.sample_count();
            }
            stats.blocks += view.blocks.len();
        }
        stats
    }

    /// Flush and replay measurements.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    /// How many blocks have been written since the engine opened.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Flushes one tenant's head into a block, if it holds anything. Returns the new blocks' ids.
    pub async fn flush_tenant(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let Some(db) = self.tenant_db(tenant) else {
            return Ok(Vec::new());
        };
        let _flushing = db.flush_lock.lock().await;
        // Swap in a fresh generation; in-flight appends finish first.
        {
            let mut generation = db.generation.write().await;
            let idle = generation.head.read().is_empty() && generation.segments.len() == 1;
            if !idle {
                let active = self.wal.create_segment(tenant)?;
                let head = Arc::new(RwLock::new(Head::new()));
                let old = std::mem::replace(
                    &mut *generation,
                    Generation {
                        head: Arc::clone(&head),
                        segments: vec![active.id],
                        active,
                        created: Instant::now(),
                    },
                );
                let mut view = db.view.write();
                view.flushing.push(Arc::clone(&old.head));
                view.head = Some(head);
                db.unflushed.lock().push(old);
            }
        }

        let pending = std::mem::take(&mut *db.unflushed.lock());
        let mut written = Vec::new();
        let mut first_error = None;
        for old in pending {
            let started = Instant::now();
            match self.write_generation(tenant, &old).await {
                Ok(block) => {
                    self.metrics
                        .flush_duration
                        .observe(started.elapsed().as_secs_f64());
                    {
                        let mut view = db.view.write();
                        view.flushing.retain(|h| !Arc::ptr_eq(h, &old.head));
                        if let Some(block) = &block
                            && self.serve_blocks
                        {
                            view.blocks.push(Arc::clone(block));
                        }
                    }
                    for segment in &old.segments {
                        self.wal.delete_segment(tenant, *segment)?;
                    }
                    if let Some(block) = block {
                        self.flushes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(tenant = %tenant, block = %block.id(), "flushed head to block");
                        written.push(block.id().to_string());
                    }
                }
                Err(e) => {
                    // The head keeps serving reads and its segments stay on disk: nothing is
                    // lost, and the next flush tries again.
                    self.metrics.flush_failures.inc();
                    tracing::error!(tenant = %tenant, error = %e, "flush failed; the head stays in memory and in the wal");
                    db.unflushed.lock().push(old);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(written), Err)
    }

    async fn write_generation(
        &self,
        tenant: &TenantId,
        old: &Generation,
    ) -> Result<Option<Arc<Block>>> {
        // Sorting and compressing is CPU work: keep it off the async workers that answer pushes.
        let head = Arc::clone(&old.head);
        let encoded = tokio::task::spawn_blocking(move || rollup::encode_head(&head.read()))
            .await
            .map_err(|e| Error::corrupt("block encode task", e))??;
        let Some(encoded) = encoded else {
            return Ok(None);
        };
        let block =
            block::write_block(&self.store, tenant, encoded, &old.segments, &self.origin).await?;
        Ok(Some(Arc::new(block)))
    }

    /// Flushes every tenant whose head is over a threshold.
    pub async fn flush_due(&self) -> Result<()> {
        let dbs: Vec<_> = self.tenants.read().values().cloned().collect();
        for db in dbs {
            let due = {
                let generation = db.generation.read().await;
                let head = generation.head.read();
                !head.is_empty()
                    && (head.estimated_bytes() >= self.config.flush_at()
                        || generation.created.elapsed() >= self.config.max_head_age)
            };
            if due {
                self.flush_tenant(&db.tenant).await?;
            }
        }
        Ok(())
    }

    /// Flushes heads when they pass a threshold, until the engine closes.
    pub async fn run_flusher(self: Arc<Self>) {
        while !self.closed.load(Ordering::Acquire) {
            tokio::select! {
                _ = self.flush_wanted.notified() => {}
                _ = tokio::time::sleep(self.config.flush_check_interval) => {}
            }
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = self.flush_due().await {
                tracing::error!(error = %e, "periodic flush failed");
            }
        }
    }

    /// Refuses new writes, flushes every head, and stops the WAL writer.
    pub async fn shutdown(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush_wanted.notify_one();
        let mut first_error = None;
        for tenant in self.tenants() {
            if let Err(e) = self.flush_tenant(&tenant).await {
                tracing::error!(tenant = %tenant, error = %e, "flush at shutdown failed; the wal keeps the data");
                first_error.get_or_insert(e);
            }
        }
        self.wal.close();
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl SnapshotSource for Engine {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        Ok(Engine::snapshot(self, tenant))
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        Engine::store(self)
    }

    fn block_cache(&self) -> &Arc<BlockCache> {
        self.symbols()
    }
}

/// An ingester's heads without its blocks: queriers read those from the bucket themselves.
#[derive(Debug, Clone)]
pub struct HeadsOnly(pub Arc<Engine>);

#[async_trait]
impl SnapshotSource for HeadsOnly {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        Ok(self.0.snapshot(tenant).heads_only())
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.0.store()
    }

    fn block_cache(&self) -> &Arc<BlockCache> {
        self.0.symbols()
    }
}
