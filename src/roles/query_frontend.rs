//! `--target query-frontend` and `--target query-scheduler`: the query API (Connect
//! `querier.v1`, render, the web UI) with no data of its own. Each query is cut into jobs (one
//! per aligned interval of `query.split_interval`) and queued per tenant; queriers' workers pull
//! the jobs over Flight (finding queues through gossip), and the answers are merged here.
//!
//! A query-frontend queues its jobs in the query-scheduler gossip shows for the tenant (the one
//! rendezvous hashing of the tenant picks, over a Flight `DoAction`), so several frontends share
//! one fair queue per tenant; with no scheduler in the cluster, or none reachable, it queues
//! them in its own. A query-scheduler is that queue on its own: frontends' jobs in, queriers'
//! workers pulling; its HTTP API answers queries through it too. Pushes sent to either are
//! replicated to the ingesters, as a querier does.

use std::sync::Arc;

use hearth_engine::limits::LimitsSource;
use hearth_flight::scheduler::{SchedulerFlight, Schedulers};
use hearth_ring::{InstanceState, Role};
use hearth_sql::{Frontend, JobQueue, JobRunner};

use super::{FlightService, Services};
use crate::cluster::Addresses;
use crate::config::Config;
use crate::metrics::Metrics;

pub(super) async fn build(
    config: &Config,
    addresses: &Addresses,
    limits: Arc<dyn LimitsSource>,
    metrics: &Metrics,
) -> anyhow::Result<Services> {
    anyhow::ensure!(
        addresses.flight.is_some(),
        "a {} needs its Flight port: queriers pull jobs from it",
        config.target
    );
    let membership = crate::cluster::join(config, addresses, InstanceState::Active).await?;
    let cluster = crate::cluster::ClusterClients::new(config, &membership, metrics);
    let queue = JobQueue::new(Arc::clone(&limits));
    let scheduler = Arc::clone(queue.metrics());
    let runner: Arc<dyn JobRunner> = match config.target {
        Role::QueryScheduler => Arc::new(Arc::clone(&queue)),
        _ => Arc::new(Schedulers::new(Arc::clone(&membership), Arc::clone(&queue))),
    };
    let frontend = Frontend::new(runner, config.query.clone(), Arc::clone(&limits));
    Ok(Services {
        engine: None,
        ingest: cluster.ingest_service(limits),
        query: Arc::new(frontend),
        scheduler: Some(scheduler),
        tasks: Vec::new(),
        flight: Some(FlightService::Scheduler(SchedulerFlight::new(queue))),
        membership: Some(membership),
        ring_member: false,
        compactor: None,
    })
}
