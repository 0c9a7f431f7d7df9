//! `--target query-frontend`: the query API (Connect `querier.v1`, render, the web UI) with no
//! data of its own. Each query is cut into jobs (one per aligned interval of
//! `query.split_interval`) and queued per tenant in the query-scheduler that runs inside it;
//! queriers' workers pull the jobs over its Flight port (found through gossip), and the answers
//! are merged here. Pushes sent to it are replicated to the ingesters, as a querier does.

use std::sync::Arc;

use hearth_engine::limits::LimitsSource;
use hearth_flight::scheduler::SchedulerFlight;
use hearth_ring::InstanceState;
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
        "a query-frontend needs its Flight port: queriers pull jobs from it"
    );
    let membership = crate::cluster::join(config, addresses, InstanceState::Active).await?;
    let cluster = crate::cluster::ClusterClients::new(config, &membership, metrics);
    let queue = JobQueue::new(Arc::clone(&limits));
    let scheduler = Arc::clone(queue.metrics());
    let runner: Arc<dyn JobRunner> = Arc::new(Arc::clone(&queue));
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
