//! The cluster roles' glue: gossip membership for this process, and the clients of the
//! ingesters that distributors and queriers share (Flight, through the ingester directory):
//! the distributor's replicated writes and the querier's view of the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use hearth_engine::limits::LimitsSource;
use hearth_engine::model::TenantId;
use hearth_engine::{ClusterReader, ErrorKind};
use hearth_flight::client::IngesterDirectory;
use hearth_flight::stages::{Spreading, StageWorker, stage_worker};
use hearth_ingest::error::reason;
use hearth_ingest::rate::RateShare;
use hearth_ingest::{Distributor, IngestService, Replicas};
use hearth_ring::{
    InstanceState, Membership, MembershipConfig, NodeInfo, Ring, Role, member_tokens,
};
use hearth_sql::QueryService;
use object_store::ObjectStore;

use crate::config::Config;
use crate::metrics::{Metrics, ReplicationMetrics};

/// Where this process listens, once its listeners are bound.
#[derive(Debug, Clone)]
pub(crate) struct Addresses {
    pub node_id: String,
    pub http: SocketAddr,
    pub flight: Option<SocketAddr>,
}

/// This node's id: configured, or the target and HTTP port.
pub(crate) fn node_id(config: &Config, http_port: u16) -> String {
    config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{http_port}", config.target))
}

/// `addr` as other nodes reach it: the advertise host when listening on every interface.
fn advertised(config: &Config, addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}:{}", config.cluster.advertise_host, addr.port())
    } else {
        addr.to_string()
    }
}

/// Joins the gossip as `addresses.node_id` running `config.target`, in `state`.
pub(crate) async fn join(
    config: &Config,
    addresses: &Addresses,
    state: InstanceState,
) -> anyhow::Result<Arc<Membership>> {
    let cluster = &config.cluster;
    let node_id = addresses.node_id.as_str();
    let tokens = if config.target == Role::Ingester {
        member_tokens(node_id, cluster.tokens)
    } else {
        Vec::new()
    };
    let membership = Membership::join(
        MembershipConfig {
            node_id: node_id.to_string(),
            listen_addr: cluster.gossip_addr,
            advertise_addr: match cluster.gossip_addr.ip().is_unspecified() {
                true => Some(advertised(config, cluster.gossip_addr).parse().with_context(
                    || {
                        format!(
                            "--advertise-host {:?} must be an IP address (gossip publishes an address)",
                            cluster.advertise_host
                        )
                    },
                )?),
                false => None,
            },
            seeds: cluster.gossip_seeds.clone(),
            cluster_id: cluster.cluster_id.clone(),
            gossip_interval: cluster.gossip_interval,
            info: NodeInfo {
                roles: vec![config.target],
                http_addr: advertised(config, addresses.http),
                flight_addr: addresses
                    .flight
                    .map(|a| advertised(config, a))
                    .unwrap_or_default(),
                zone: cluster.zone.clone(),
                tokens,
            },
        },
        state,
    )
    .await
    .context("cannot join the cluster")?;
    tracing::info!(node = node_id, gossip = %cluster.gossip_addr, seeds = ?cluster.gossip_seeds, "gossip listening");
    Ok(Arc::new(membership))
}

/// The ingesters as a distributor or querier reaches them.
pub(crate) struct ClusterClients {
    membership: Arc<Membership>,
    directory: Arc<IngesterDirectory>,
    zone_aware: bool,
    replication_factor: usize,
    query: hearth_sql::QueryConfig,
    replication: Arc<ReplicationMetrics>,
}

impl ClusterClients {
    pub(crate) fn new(config: &Config, membership: &Arc<Membership>, metrics: &Metrics) -> Self {
        ClusterClients {
            membership: Arc::clone(membership),
            directory: Arc::new(IngesterDirectory::new(
                Arc::clone(membership),
                config.cluster.replication_factor,
            )),
            zone_aware: config.cluster.zone_awareness,
            replication_factor: config.cluster.replication_factor,
            query: config.query.clone(),
            replication: Arc::clone(&metrics.replication),
        }
    }

    /// Pushes checked under each tenant's `limits` (its ingestion rate shared by the active
    /// distributors) and replicated to the ring's ingesters.
    pub(crate) fn ingest_service(&self, limits: Arc<dyn LimitsSource>) -> Arc<IngestService> {
        let replicas = Arc::new(FlightReplicas {
            directory: Arc::<IngesterDirectory>::clone(&self.directory),
            zone_aware: self.zone_aware,
            metrics: Arc::clone(&self.replication),
        });
        let distributor = Arc::new(
            Distributor::new(replicas, self.replication_factor).with_limits(Arc::clone(&limits)),
        );
        let share = Arc::new(DistributorShare(Arc::clone(&self.membership)));
        Arc::new(IngestService::new(distributor, limits).with_rate_share(share))
    }

    /// Queries over the bucket's blocks in `store` and the live ingesters' heads, with
    /// profile aggregation pushed down to the ingesters.
    pub(crate) fn query_service(
        &self,
        store: Arc<dyn ObjectStore>,
        limits: Arc<dyn LimitsSource>,
    ) -> Arc<QueryService> {
        Arc::new(self.new_query_service(store, limits))
    }

    /// A querier's query service and the service it runs query stages in (its own and other
    /// queriers'): with `query.distributed_stages`, its queries spread their block scans and
    /// partial aggregates over the queriers.
    pub(crate) fn querier_service(
        &self,
        store: Arc<dyn ObjectStore>,
        limits: Arc<dyn LimitsSource>,
    ) -> (Arc<QueryService>, StageWorker) {
        let service = self.new_query_service(store, limits);
        let spreading = Arc::new(Spreading::new(
            Arc::clone(&self.directory),
            self.query.stage_bytes_per_task,
        ));
        let query = Arc::new(match self.query.distributed_stages {
            true => service.with_stage_spreading(Arc::clone(&spreading) as _),
            false => service,
        });
        let worker = stage_worker(Arc::clone(&query), Arc::clone(&self.directory));
        spreading.set_local_worker(worker.clone());
        (query, worker)
    }

    fn new_query_service(
        &self,
        store: Arc<dyn ObjectStore>,
        limits: Arc<dyn LimitsSource>,
    ) -> QueryService {
        let reader = Arc::new(ClusterReader::new(
            store,
            self.query.symbol_cache_bytes,
            Arc::<IngesterDirectory>::clone(&self.directory),
        ));
        QueryService::new(reader, self.query.clone())
            .with_limits(limits)
            .with_remote_executor(Arc::<IngesterDirectory>::clone(&self.directory))
    }
}

/// Each tenant's ingestion rate is shared by the active distributors gossip shows.
#[derive(Debug)]
struct DistributorShare(Arc<Membership>);

impl RateShare for DistributorShare {
    fn sharers(&self) -> usize {
        self.0.active(Role::Distributor).len()
    }
}

/// The distributor's view of the ingesters.
struct FlightReplicas {
    directory: Arc<IngesterDirectory>,
    zone_aware: bool,
    metrics: Arc<ReplicationMetrics>,
}

#[async_trait]
impl Replicas for FlightReplicas {
    fn ring(&self) -> Ring {
        self.directory
            .membership()
            .ring(Role::Ingester, self.zone_aware)
    }

    async fn push(
        &self,
        node: &str,
        tenant: &TenantId,
        records: Arc<[bytes::Bytes]>,
    ) -> hearth_ingest::Result<()> {
        let unavailable = |kind, message: String| {
            hearth_ingest::Error::rejected(kind, reason::UNAVAILABLE, message)
        };
        let client = self.directory.client(node).ok_or_else(|| {
            unavailable(
                ErrorKind::Unavailable,
                format!("ingester {node} left the ring"),
            )
        })?;
        let started = Instant::now();
        // Handles to the shared records; encoding the request body copies them once per
        // replica and attempt.
        let pushed = client.push(tenant, records.to_vec()).await;
        self.metrics.observe(started.elapsed(), pushed.is_ok());
        pushed.map_err(|e| unavailable(e.kind(), e.to_string()))
    }
}
