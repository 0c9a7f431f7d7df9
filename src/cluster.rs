//! The cluster roles' glue: gossip membership for this process, and the distributor's
//! transport to ingesters (Flight, through the ingester directory).

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use hearth_engine::ErrorKind;
use hearth_engine::model::TenantId;
use hearth_flight::INGESTER_ROLE;
use hearth_flight::client::IngesterDirectory;
use hearth_ingest::Replicas;
use hearth_ingest::error::reason;
use hearth_ring::{InstanceState, Membership, MembershipConfig, NodeInfo, Ring, member_tokens};

use crate::config::{Config, Target};

/// This node's id: configured, or the target and HTTP port.
pub fn node_id(config: &Config, http_port: u16) -> String {
    config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{http_port}", config.target.name()))
}

/// `addr` as other nodes reach it: the advertise host when listening on every interface.
fn advertised(config: &Config, addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}:{}", config.cluster.advertise_host, addr.port())
    } else {
        addr.to_string()
    }
}

/// Joins the gossip as `node_id` running `config.target`.
pub async fn join(
    config: &Config,
    node_id: &str,
    http_addr: std::net::SocketAddr,
    flight_addr: Option<std::net::SocketAddr>,
    state: InstanceState,
) -> anyhow::Result<Arc<Membership>> {
    let cluster = &config.cluster;
    let tokens = if config.target == Target::Ingester {
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
                roles: vec![config.target.name().to_string()],
                http_addr: advertised(config, http_addr),
                flight_addr: flight_addr
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

/// The distributor's view of the ingesters.
pub struct FlightReplicas {
    pub directory: Arc<IngesterDirectory>,
    pub zone_aware: bool,
}

#[async_trait]
impl Replicas for FlightReplicas {
    fn ring(&self) -> Ring {
        self.directory
            .membership()
            .ring(INGESTER_ROLE, self.zone_aware)
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
        client
            // Handles to the shared records; encoding the request body copies them once per
            // replica and attempt.
            .push(tenant, records.to_vec())
            .await
            .map_err(|e| unavailable(e.kind(), e.to_string()))
    }
}
