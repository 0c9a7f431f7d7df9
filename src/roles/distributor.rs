//! `--target distributor`: validates and normalises pushes, and writes each to its
//! replication set of ingesters, acknowledging at quorum. No local data, no Flight port.
//! `--target scraper` is the same process whose pushes come from its scrape loops
//! (`crate::scrape`), its targets shared with the other scrapers.

use std::sync::Arc;

use hearth_engine::limits::LimitsSource;

use hearth_ring::InstanceState;
use object_store::ObjectStore;

use super::Services;
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
    Ok(Services {
        engine: None,
        ingest: cluster.ingest_service(Arc::clone(&limits)),
        // Queries sent here read the cluster as a querier would.
        query: cluster.query_service(store, Arc::clone(&limits)),
        flight: None,
        scheduler: None,
        tasks: Vec::new(),
        membership: Some(membership),
        ring_member: false,
        compactor: None,
    })
}
