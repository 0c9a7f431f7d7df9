//! Membership over chitchat gossip. Each node publishes what it is (roles, addresses, zone, ring
//! tokens) and its state; failure detection drops dead nodes from the live set. The rest of
//! Hearth sees [`Node`] snapshots and a change stream ([`Membership::changes`]); chitchat's
//! types stay in this file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
    ProtocolVersion, spawn_chitchat,
};
use tokio::sync::watch;

use crate::{InstanceState, Member, Ring, Role};

const KEY_ROLES: &str = "roles";
const KEY_HTTP: &str = "http_addr";
const KEY_FLIGHT: &str = "flight_addr";
const KEY_ZONE: &str = "zone";
const KEY_STATE: &str = "state";
const KEY_TOKENS: &str = "tokens";

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The components it runs.
    pub roles: Vec<Role>,
    /// Where its HTTP API answers.
    pub http_addr: String,
    /// Where its Arrow Flight service answers.
    pub flight_addr: String,
    pub zone: Option<String>,
    /// Ring tokens (ingesters only).
    pub tokens: Vec<u32>,
}

/// A live member of the cluster, as gossip last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Changes on every restart, so a restarted node is told apart from its former self.
    pub generation: u64,
    pub info: NodeInfo,
    pub state: InstanceState,
}

impl Node {
    pub fn has_role(&self, role: Role) -> bool {
        self.info.roles.contains(&role)
    }

    /// This node as a ring member (alive: it is in the live set).
    pub fn member(&self) -> Member {
        Member {
            id: self.id.clone(),
            zone: self.info.zone.clone(),
            state: self.state,
            alive: true,
            tokens: self.info.tokens.clone(),
        }
    }
}

/// How a node joins the gossip.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Unique in the cluster and stable across restarts (an ingester's ring tokens derive from it).
    pub node_id: String,
    /// UDP address to listen on for gossip.
    pub listen_addr: SocketAddr,
    /// The gossip address peers use; the listen address when `None`.
    pub advertise_addr: Option<SocketAddr>,
    /// `host:port` of nodes to contact first.
    pub seeds: Vec<String>,
    /// Nodes gossip only with nodes of the same cluster id.
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub info: NodeInfo,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The gossip socket could not be opened.
    #[error("cannot gossip on {addr} (udp): {detail}")]
    Gossip { addr: SocketAddr, detail: String },
}

/// A running membership: gossip in the background, snapshots on demand.
pub struct Membership {
    handle: ChitchatHandle,
    node_id: String,
    changes: watch::Receiver<Vec<Node>>,
    unreachable: watch::Receiver<Vec<Node>>,
    forwarder: tokio::task::JoinHandle<()>,
    gossip_interval: Duration,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.node_id)
            .field("nodes", &self.changes.borrow().len())
            .finish()
    }
}

impl Membership {
    /// Starts gossiping as `config.node_id` in state `state`.
    pub async fn join(
        config: MembershipConfig,
        state: InstanceState,
    ) -> Result<Self, MembershipError> {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let advertise = config.advertise_addr.unwrap_or(config.listen_addr);
        let id = ChitchatId::new(config.node_id.clone(), generation, advertise);
        // A node is declared dead after about 8 missed rounds of gossip (phi accrual).
        let failure_detector_config = FailureDetectorConfig {
            phi_threshold: 8.0,
            sampling_window_size: 1_000,
            max_interval: config.gossip_interval * 20,
            initial_interval: config.gossip_interval * 2,
            dead_node_grace_period: Duration::from_secs(3600),
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.listen_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let info = &config.info;
        let mut values = vec![
            (
                KEY_ROLES.to_string(),
                info.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (KEY_HTTP.to_string(), info.http_addr.clone()),
            (KEY_FLIGHT.to_string(), info.flight_addr.clone()),
            (KEY_STATE.to_string(), state.as_str().to_string()),
            (
                KEY_TOKENS.to_string(),
                info.tokens
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ];
        if let Some(zone) = &info.zone {
            values.push((KEY_ZONE.to_string(), zone.clone()));
        }
        let handle = spawn_chitchat(chitchat_config, values, &UdpTransport)
            .await
            .map_err(|e| MembershipError::Gossip {
                addr: config.listen_addr,
                detail: format!("{e:#}"),
            })?;
        let chitchat = handle.chitchat();
        let mut live = chitchat.lock().await.live_nodes_watcher();
        let (sender, changes) = watch::channel(nodes_of(&live.borrow_and_update()));
        let (lost_sender, unreachable) = watch::channel(Vec::new());
        let forwarder = tokio::spawn(async move {
            while live.changed().await.is_ok() {
                let nodes = nodes_of(&live.borrow_and_update());
                let lost = unreachable_of(&*chitchat.lock().await, &nodes);
                lost_sender.send_replace(lost);
                sender.send_if_modified(|current| {
                    let changed = *current != nodes;
                    *current = nodes;
                    changed
                });
            }
        });
        Ok(Membership {
            handle,
            node_id: config.node_id,
            changes,
            unreachable,
            forwarder,
            gossip_interval: config.gossip_interval,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The live nodes now, sorted by id.
    pub fn nodes(&self) -> Vec<Node> {
        self.changes.borrow().clone()
    }

    /// The live nodes running `role` that gossip `active`, sorted by id.
    pub fn active(&self, role: Role) -> Vec<Node> {
        self.changes
            .borrow()
            .iter()
            .filter(|n| n.has_role(role) && n.state == InstanceState::Active)
            .cloned()
            .collect()
    }

    /// Nodes the failure detector declared dead while active: they went away without
    /// leaving (killed, partitioned, or this node was paused), so what they hold may be out of
    /// reach. A node that left (state `leaving` before it stopped), or came back under the same
    /// id, is not listed. Kept for the dead-node grace period (an hour).
    pub fn unreachable(&self) -> Vec<Node> {
        self.unreachable.borrow().clone()
    }

    /// A receiver that sees every change of the live nodes.
    pub fn changes(&self) -> watch::Receiver<Vec<Node>> {
        self.changes.clone()
    }

    /// The ring of the live nodes running `role`.
    pub fn ring(&self, role: Role, zone_aware: bool) -> Ring {
        ring_of(&self.changes.borrow(), role, zone_aware)
    }

    /// Publishes a new state of this node.
    pub async fn set_state(&self, state: InstanceState) {
        self.handle
            .with_chitchat(|chitchat| {
                chitchat.self_node_state().set(KEY_STATE, state.as_str());
            })
            .await;
    }

    /// Leaves the cluster: hands this node's newest state (`leaving`, set just before) to every
    /// live peer directly, [`LEAVE_ROUNDS`] handshakes each a gossip interval apart, then stops
    /// gossiping. Random gossip alone may not reach a peer before the node goes, and a peer
    /// that last saw it active counts it as gone without leaving (see [`Self::unreachable`]).
    pub async fn leave(&self) {
        let peers: Vec<_> = {
            let chitchat = self.handle.chitchat();
            let chitchat = chitchat.lock().await;
            let me = chitchat.self_chitchat_id();
            chitchat
                .live_nodes()
                .filter(|id| *id != me)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        for _ in 0..LEAVE_ROUNDS {
            for addr in &peers {
                // Fails only once the gossip task has stopped, when there is nothing to tell.
                let _ = self.handle.gossip(*addr);
            }
            tokio::time::sleep(self.gossip_interval).await;
        }
        self.shutdown();
    }

    /// Stops gossiping at once; peers declare the node dead after failure detection.
    pub fn shutdown(&self) {
        self.forwarder.abort();
        if let Err(e) = self.handle.initiate_shutdown() {
            tracing::warn!(error = %e, "gossip did not shut down cleanly");
        }
    }
}

/// How many direct handshakes with each peer [`Membership::leave`] makes.
const LEAVE_ROUNDS: usize = 3;

/// The dead nodes of `chitchat` whose newest generation was active, by id, that are not in
/// `live` under a newer generation.
fn unreachable_of(chitchat: &Chitchat, live: &[Node]) -> Vec<Node> {
    let mut newest: BTreeMap<String, Node> = BTreeMap::new();
    for id in chitchat.dead_nodes() {
        let Some(node) = chitchat.node_state(id).and_then(|state| node_of(id, state)) else {
            continue;
        };
        if newest
            .get(&node.id)
            .is_none_or(|known| known.generation < node.generation)
        {
            newest.insert(node.id.clone(), node);
        }
    }
    newest
        .into_values()
        .filter(|node| node.state == InstanceState::Active)
        .filter(|node| {
            !live
                .iter()
                .any(|n| n.id == node.id && n.generation >= node.generation)
        })
        .collect()
}

/// The ring of `nodes` running `role`.
fn ring_of(nodes: &[Node], role: Role, zone_aware: bool) -> Ring {
    Ring::new(
        nodes
            .iter()
            .filter(|n| n.has_role(role))
            .map(Node::member)
            .collect(),
        zone_aware,
    )
}

/// Live nodes by id: a restarted node's newest generation wins over an older one still listed.
fn nodes_of(live: &BTreeMap<ChitchatId, NodeState>) -> Vec<Node> {
    let mut by_id: BTreeMap<String, Node> = BTreeMap::new();
    for (id, state) in live {
        let Some(node) = node_of(id, state) else {
            continue;
        };
        match by_id.get(&node.id) {
            Some(known) if known.generation >= node.generation => {}
            _ => {
                by_id.insert(node.id.clone(), node);
            }
        }
    }
    by_id.into_values().collect()
}

fn node_of(id: &ChitchatId, state: &NodeState) -> Option<Node> {
    let text = |key: &str| state.get(key).unwrap_or_default().to_string();
    let node_state = InstanceState::parse(state.get(KEY_STATE)?)?;
    Some(Node {
        id: id.node_id.to_string(),
        generation: id.generation_id,
        info: NodeInfo {
            // A role this version does not know (a newer peer's) is passed over.
            roles: text(KEY_ROLES)
                .split(',')
                .filter_map(|r| r.parse().ok())
                .collect(),
            http_addr: text(KEY_HTTP),
            flight_addr: text(KEY_FLIGHT),
            zone: state.get(KEY_ZONE).map(str::to_string),
            tokens: text(KEY_TOKENS)
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect(),
        },
        state: node_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, port: u16, seeds: Vec<String>) -> MembershipConfig {
        MembershipConfig {
            node_id: id.into(),
            listen_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            advertise_addr: None,
            seeds,
            cluster_id: "test".into(),
            gossip_interval: Duration::from_millis(50),
            info: NodeInfo {
                roles: vec![Role::Ingester],
                http_addr: format!("127.0.0.1:{}", port + 1),
                flight_addr: format!("127.0.0.1:{}", port + 2),
                zone: None,
                tokens: crate::member_tokens(id, 8),
            },
        }
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn wait_for(
        membership: &Membership,
        what: &str,
        ok: impl Fn(&[Node]) -> bool,
    ) -> Vec<Node> {
        let mut changes = membership.changes();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = changes.borrow_and_update().clone();
            if ok(&nodes) {
                return nodes;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!("timed out waiting for {what}; nodes: {nodes:?}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_see_each_other_states_and_departures() {
        let (pa, pb) = (free_udp_port(), free_udp_port());
        let a = Membership::join(config("a", pa, vec![]), InstanceState::Active)
            .await
            .unwrap();
        let b = Membership::join(
            config("b", pb, vec![format!("127.0.0.1:{pa}")]),
            InstanceState::Joining,
        )
        .await
        .unwrap();
        let nodes = wait_for(&a, "b to join", |n| n.len() == 2).await;
        let seen_b = nodes.iter().find(|n| n.id == "b").unwrap();
        assert_eq!(seen_b.state, InstanceState::Joining);
        assert_eq!(seen_b.info.tokens, crate::member_tokens("b", 8));
        assert!(seen_b.has_role(Role::Ingester));
        assert_eq!(a.ring(Role::Ingester, false).members().len(), 2);

        b.set_state(InstanceState::Active).await;
        wait_for(&a, "b to become active", |n| {
            n.iter()
                .any(|n| n.id == "b" && n.state == InstanceState::Active)
        })
        .await;

        b.shutdown();
        wait_for(&a, "b to be declared dead", |n| n.len() == 1).await;
        let ids = |nodes: Vec<Node>| nodes.into_iter().map(|n| n.id).collect::<Vec<_>>();
        // b stopped while active: what it holds is out of reach.
        assert_eq!(ids(a.unreachable()), ["b"]);

        // c says it is leaving before it stops: gone, not out of reach.
        let c = Membership::join(
            config("c", free_udp_port(), vec![format!("127.0.0.1:{pa}")]),
            InstanceState::Active,
        )
        .await
        .unwrap();
        wait_for(&a, "c to join", |n| n.len() == 2).await;
        // It does not wait for `a` to see it leaving: `leave` hands the state over.
        c.set_state(InstanceState::Leaving).await;
        c.leave().await;
        wait_for(&a, "c to be declared dead", |n| n.len() == 1).await;
        assert_eq!(ids(a.unreachable()), ["b"]);
        a.shutdown();
    }
}
