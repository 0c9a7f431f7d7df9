//! One file per role (`--target`): each builds, from the config, the services its process
//! serves. `server.rs` binds the listeners, serves and shuts down; what runs behind them is
//! decided here.
//!
//! - [`all`]: the engine takes pushes and answers queries (replication 1, no gossip).
//! - [`ingester`]: the engine, gossiping `joining` while its WAL replays; its Flight port takes
//!   replicated pushes and serves scans and partial aggregates of its heads.
//! - [`distributor`]: pushes replicated to the ring's ingesters at quorum; a scraper
//!   (`--target scraper`) is built the same way and writes what it scrapes through it.
//! - [`querier`]: queries over the bucket's blocks and the live ingesters' heads, and Flight SQL.
//! - [`compactor`]: merges blocks, applies retention and writes the bucket index, for the
//!   tenants it owns (`all` runs one over its own engine's blocks).
//! - [`query_frontend`]: answers the query API by cutting each query into jobs queued per
//!   tenant, which queriers pull over Flight; the queue is the query-frontend's own, or that of
//!   a separate query-scheduler (`--target query-scheduler`, built by the same file) when gossip
//!   shows one.
//!
//! The distributor and the querier share the cluster clients of `crate::cluster`, and today
//! each also mounts the other's half of the HTTP API (pushes to a querier are replicated,
//! queries to a distributor read the cluster).

mod all;
pub(crate) mod compactor;
mod distributor;
mod ingester;
mod querier;
mod query_frontend;

use std::sync::Arc;

use hearth_engine::Engine;
use hearth_engine::limits::LimitsSource;
use hearth_flight::HearthFlightSql;
use hearth_flight::ingester::IngesterFlight;
use hearth_flight::scheduler::SchedulerFlight;
use hearth_ingest::IngestService;
use hearth_ring::{Membership, Role};
use hearth_sql::Queries;
use hearth_sql::metrics::SchedulerMetrics;
use object_store::ObjectStore;

use crate::cluster::Addresses;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::overrides::RuntimeLimits;

/// What the Flight port serves.
pub(crate) enum FlightService {
    /// Arrow Flight SQL for people and tools; on a cluster querier, also the service other
    /// queriers send query stages to.
    Sql(
        HearthFlightSql,
        Option<Box<hearth_flight::stages::StageWorker>>,
    ),
    /// An ingester's internal service (replicated pushes, head scans, aggregates).
    Ingester(IngesterFlight),
    /// A query-frontend's or query-scheduler's queue: queriers' workers pull jobs from it.
    Scheduler(SchedulerFlight),
}

/// The services of one process.
pub(crate) struct Services {
    /// The local engine: flushed at shutdown.
    pub engine: Option<Arc<Engine>>,
    pub ingest: Arc<IngestService>,
    /// What the query API asks: a query service over data, or a query-frontend.
    pub query: Arc<dyn Queries>,
    /// The query-scheduler's queue measurements (query-frontend).
    pub scheduler: Option<Arc<SchedulerMetrics>>,
    /// Background tasks stopped when shutdown starts (a querier's workers).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub flight: Option<FlightService>,
    /// Gossip membership (cluster roles).
    pub membership: Option<Arc<Membership>>,
    /// Whether the node is a ring member whose state follows the process: `active` once it
    /// serves, `leaving` when shutdown starts.
    pub ring_member: bool,
    /// The compaction loop, when this process compacts.
    pub compactor: Option<compactor::CompactorTask>,
}

/// Whether a role serves Flight (and so needs its listener).
pub(crate) fn serves_flight(role: Role) -> bool {
    !matches!(role, Role::Distributor | Role::Compactor | Role::Scraper)
}

/// The services of `config.target`.
pub(crate) async fn build(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    addresses: &Addresses,
    metrics: &Metrics,
) -> anyhow::Result<Services> {
    let limits: Arc<dyn LimitsSource> =
        RuntimeLimits::start(config.limits.clone(), &config.runtime_config)?;
    match config.target {
        Role::All => all::build(config, store, limits, metrics).await,
        Role::Ingester => ingester::build(config, store, addresses, limits, metrics).await,
        Role::Distributor | Role::Scraper => {
            distributor::build(config, store, addresses, limits, metrics).await
        }
        Role::Querier => querier::build(config, store, addresses, limits, metrics).await,
        Role::Compactor => compactor::build(config, store, addresses, limits, metrics).await,
        Role::QueryFrontend | Role::QueryScheduler => {
            query_frontend::build(config, addresses, limits, metrics).await
        }
    }
}
