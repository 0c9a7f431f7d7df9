//! `--target querier`: answers queries over every block in the bucket and the live ingesters'
//! heads (profile aggregation pushed down to the ingesters, replicas counted once), and serves
//! Flight SQL. Its workers pull jobs from every query-frontend gossip shows
//! (`query.max_concurrent` per frontend). No local data.

use std::sync::Arc;

use hearth_engine::limits::LimitsSource;
use hearth_flight::{Authenticator, HearthFlightSql};
use hearth_ring::InstanceState;
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
    let membership = crate::cluster::join(config, addresses, InstanceState::Active).await?;
    let cluster = crate::cluster::ClusterClients::new(config, &membership, metrics);
    let (query, stages) = cluster.querier_service(store, Arc::clone(&limits));
    let workers = hearth_flight::worker::start(
        Arc::clone(&membership),
        Arc::clone(&query),
        config.query.max_concurrent,
    )?;
    let auth = Authenticator::new(&config.flight, config.multitenancy_enabled)?;
    Ok(Services {
        engine: None,
        // Pushes sent here are replicated as a distributor would.
        ingest: cluster.ingest_service(Arc::clone(&limits)),
        flight: Some(FlightService::Sql(
            HearthFlightSql::new(Arc::clone(&query), auth),
            Some(Box::new(stages)),
        )),
        query,
        scheduler: None,
        tasks: vec![workers],
        membership: Some(membership),
        ring_member: false,
        compactor: None,
    })
}
