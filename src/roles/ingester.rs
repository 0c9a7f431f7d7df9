//! `--target ingester`: the engine (heads, WAL, flushes to the bucket) as a ring member. It
//! gossips `joining` while its WAL replays, so distributors do not write to it yet; its Flight
//! port takes replicated pushes and serves scans and partial aggregates of its heads. Its own
//! HTTP API reads its heads (queriers read the blocks).

use std::sync::Arc;

use anyhow::Context;
use hearth_engine::limits::LimitsSource;
use hearth_engine::{Engine, EngineArgs};
use hearth_flight::ingester::IngesterFlight;
use hearth_ingest::IngestService;
use hearth_ring::InstanceState;
use hearth_sql::QueryService;
use object_store::ObjectStore;

use super::{FlightService, Services};
use crate::cluster::Addresses;
use crate::config::Config;
use crate::metrics::Metrics;

pub(super) async fn build(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    addresses: &Addresses,
    limits: Arc<dyn LimitsSource>,
    metrics: &Metrics,
) -> anyhow::Result<Services> {
    let membership = crate::cluster::join(config, addresses, InstanceState::Joining).await?;
    // Blocks carry the node id, so a restart replays its WAL against its own blocks only.
    let engine = open_engine(
        config,
        store,
        addresses.node_id.clone(),
        false,
        Arc::clone(&limits),
        metrics,
    )
    .await?;
    let ingest = Arc::new(IngestService::new(
        Arc::<Engine>::clone(&engine),
        Arc::clone(&limits),
    ));
    let query = Arc::new(QueryService::new(
        Arc::<Engine>::clone(&engine),
        config.query.clone(),
    ));
    let flight = IngesterFlight::new(Arc::<Engine>::clone(&engine), config.query.clone());
    Ok(Services {
        engine: Some(engine),
        ingest,
        query,
        flight: Some(FlightService::Ingester(flight)),
        scheduler: None,
        tasks: Vec::new(),
        membership: Some(membership),
        ring_member: true,
        compactor: None,
    })
}

/// Opens the engine over the configured WAL folder and `store`; `origin` names this node in
/// its blocks (empty for a single process), and `serve_blocks` says whether its queries read
/// them (a single process) or only its heads (an ingester).
pub(super) async fn open_engine(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    origin: String,
    serve_blocks: bool,
    limits: Arc<dyn LimitsSource>,
    metrics: &Metrics,
) -> anyhow::Result<Arc<Engine>> {
    Engine::open(EngineArgs {
        wal_dir: config.storage.data_dir.join("wal"),
        store,
        head: config.head.clone(),
        symbol_cache_bytes: config.query.symbol_cache_bytes,
        origin,
        serve_blocks,
        limits,
        metrics: Arc::clone(&metrics.engine),
    })
    .await
    .context("cannot open the storage engine")
}
