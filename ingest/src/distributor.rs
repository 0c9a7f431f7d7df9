//! The cluster's [`ProfileSink`]: the [`Distributor`] places each profile on the ring by (tenant,
//! service), or by (tenant, service, shard of the series) when the tenant spreads services over
//! `shards_per_service` sets, writes it to the replication set concurrently, retries briefly,
//! and acknowledges once a quorum of replicas has it. The transport to ingesters is a [`Replicas`] implementation
//! (Flight, in the binary), so this crate holds no networking code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hearth_engine::limits::{FixedLimits, LimitsSource};
use hearth_engine::model::TenantId;
use hearth_engine::{ErrorKind, ProfileBatch};
use hearth_ring::{Ring, placement_key, quorum, sharded_placement_key};

use crate::error::{Error, Result, reason};
use crate::sink::{ProfileSink, PushOutcome};

/// The ingesters as the distributor reaches them.
#[async_trait]
pub trait Replicas: Send + Sync {
    /// The ring now.
    fn ring(&self) -> Ring;
    /// Stores `records` (WAL records) of `tenant` on ingester `node`.
    /// Errors carry a kind: only a [retryable](ErrorKind::retryable) one is tried again.
    async fn push(&self, node: &str, tenant: &TenantId, records: Arc<[Bytes]>) -> Result<()>;
}

/// Pauses between attempts to write to one replica.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];

/// Replicated writes to the ring's ingesters.
pub struct Distributor {
    replicas: Arc<dyn Replicas>,
    replication_factor: usize,
    /// Each tenant's `shards_per_service`.
    limits: Arc<dyn LimitsSource>,
}

impl std::fmt::Debug for Distributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributor")
            .field("replication_factor", &self.replication_factor)
            .finish_non_exhaustive()
    }
}

impl Distributor {
    pub fn new(replicas: Arc<dyn Replicas>, replication_factor: usize) -> Self {
        Distributor {
            replicas,
            replication_factor: replication_factor.max(1),
            limits: Arc::new(FixedLimits::default()),
        }
    }

    /// Tenants' `shards_per_service` come from `limits`.
    pub fn with_limits(mut self, limits: Arc<dyn LimitsSource>) -> Self {
        self.limits = limits;
        self
    }

    /// Writes one placement group (ring key `key`) to its replication set; returns at quorum.
    async fn replicate(
        &self,
        ring: &Ring,
        tenant: &TenantId,
        service: &str,
        key: u64,
        records: Vec<Bytes>,
    ) -> Result<()> {
        let unavailable =
            |message: String| Error::rejected(ErrorKind::Unavailable, reason::UNAVAILABLE, message);
        let set = ring
            .replication_set(key, self.replication_factor)
            .map_err(|e| unavailable(format!("cannot store the profiles of {service}: {e}")))?;
        let known = ring.members().len();
        let needed = quorum(self.replication_factor.min(known).max(1));
        if set.len() < needed {
            return Err(unavailable(format!(
                "cannot store the profiles of {service}: {} of {known} ingesters can take writes, {needed} are needed",
                set.len()
            )));
        }
        let records: Arc<[Bytes]> = records.into();
        let mut writes: FuturesUnordered<_> = set
            .iter()
            .map(|member| {
                let replicas = Arc::clone(&self.replicas);
                let (node, tenant, records) =
                    (member.id.clone(), tenant.clone(), Arc::clone(&records));
                // Spawned: the writes left after the quorum finish in the background.
                tokio::spawn(async move {
                    let mut result = replicas.push(&node, &tenant, Arc::clone(&records)).await;
                    for delay in RETRY_DELAYS {
                        match &result {
                            Err(e) if e.kind().retryable() => {}
                            _ => break,
                        }
                        tokio::time::sleep(delay).await;
                        result = replicas.push(&node, &tenant, Arc::clone(&records)).await;
                    }
                    result.map_err(|e| format!("{node}: {e}"))
                })
            })
            .collect();
        let (mut acknowledged, mut failures) = (0, Vec::new());
        while let Some(result) = writes.next().await {
            match result.unwrap_or_else(|e| Err(format!("write task failed: {e}"))) {
                Ok(()) => acknowledged += 1,
                Err(e) => failures.push(e),
            }
            if acknowledged >= needed {
                return Ok(());
            }
            if set.len() - failures.len() < needed {
                break;
            }
        }
        Err(unavailable(format!(
            "stored the profiles of {service} on {acknowledged} of {} ingesters, {needed} are needed: {}",
            set.len(),
            failures.join("; ")
        )))
    }
}

#[async_trait]
impl ProfileSink for Distributor {
    async fn store(&self, tenant: &TenantId, batches: Vec<ProfileBatch>) -> Result<PushOutcome> {
        let ring = self.replicas.ring();
        let shards = self.limits.limits(tenant).shards_per_service.max(1);
        let mut outcome = PushOutcome::default();
        // By ring key: one service's profiles, or one shard of them.
        let mut groups: BTreeMap<u64, (String, Vec<Bytes>)> = BTreeMap::new();
        for batch in &batches {
            outcome.profiles += batch.profiles.len();
            outcome.samples += batch.sample_count();
            for (key, part) in placements(tenant, batch, shards) {
                groups
                    .entry(key)
                    .or_insert_with(|| (batch.partition.clone(), Vec::new()))
                    .1
                    .push(part.to_wal_record().into());
            }
        }
        let writes = groups
            .into_iter()
            .map(|(key, (service, records))| {
                let ring = &ring;
                async move { self.replicate(ring, tenant, &service, key, records).await }
            })
            .collect::<FuturesUnordered<_>>();
        let results: Vec<Result<()>> = writes.collect().await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(outcome)
    }
}

/// The ring keys of a batch's profiles: the service's key, or with `shards > 1` one key per
/// shard of its series, each with the part of the batch it places (the same pprof, the
/// series profiles of that shard).
fn placements(tenant: &TenantId, batch: &ProfileBatch, shards: u32) -> Vec<(u64, ProfileBatch)> {
    if shards <= 1 {
        return vec![(
            placement_key(tenant.as_str(), &batch.partition),
            batch.clone(),
        )];
    }
    let mut parts: BTreeMap<u64, ProfileBatch> = BTreeMap::new();
    for profile in &batch.profiles {
        let series = profile.labels.fingerprint().0;
        let key = sharded_placement_key(tenant.as_str(), &batch.partition, series, shards);
        parts
            .entry(key)
            .or_insert_with(|| ProfileBatch {
                profiles: Vec::new(),
                ..batch.clone()
            })
            .profiles
            .push(profile.clone());
    }
    parts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hearth_ring::{InstanceState, Member, member_tokens};
    use parking_lot::Mutex;

    use super::*;

    /// How a fake replica answers each push, in order; the last answer repeats.
    type Script = Vec<std::result::Result<(), ErrorKind>>;

    /// Replicas answering from a script, counting pushes per node and keeping the records.
    struct FakeReplicas {
        ring: Ring,
        scripts: HashMap<String, Script>,
        pushes: Mutex<HashMap<String, usize>>,
        records: Mutex<Vec<(String, Bytes)>>,
    }

    impl FakeReplicas {
        fn new(scripts: &[(&str, Script)]) -> Arc<Self> {
            let members = scripts
                .iter()
                .map(|(id, _)| Member {
                    id: id.to_string(),
                    zone: None,
                    state: InstanceState::Active,
                    alive: true,
                    tokens: member_tokens(id, 16),
                })
                .collect();
            Arc::new(FakeReplicas {
                ring: Ring::new(members, false),
                scripts: scripts
                    .iter()
                    .map(|(id, script)| (id.to_string(), script.clone()))
                    .collect(),
                pushes: Mutex::default(),
                records: Mutex::default(),
            })
        }

        fn pushes(&self, node: &str) -> usize {
            self.pushes.lock().get(node).copied().unwrap_or(0)
        }
    }

    #[async_trait]
    impl Replicas for FakeReplicas {
        fn ring(&self) -> Ring {
            self.ring.clone()
        }

        async fn push(&self, node: &str, _: &TenantId, records: Arc<[Bytes]>) -> Result<()> {
            let mut kept = self.records.lock();
            kept.extend(records.iter().map(|r| (node.to_string(), r.clone())));
            drop(kept);
            let attempt = {
                let mut pushes = self.pushes.lock();
                let count = pushes.entry(node.to_string()).or_default();
                *count += 1;
                *count - 1
            };
            let script = &self.scripts[node];
            match script[attempt.min(script.len() - 1)] {
                Ok(()) => Ok(()),
                Err(kind) => Err(Error::rejected(kind, reason::UNAVAILABLE, "scripted")),
            }
        }
    }

    async fn replicate(replicas: &Arc<FakeReplicas>, rf: usize) -> Result<()> {
        let distributor = Distributor::new(Arc::<FakeReplicas>::clone(replicas), rf);
        let tenant = TenantId::new("t").unwrap();
        let records = vec![Bytes::from_static(b"record")];
        let key = placement_key("t", "api");
        distributor
            .replicate(&replicas.ring(), &tenant, "api", key, records)
            .await
    }

    #[tokio::test]
    async fn a_quorum_acknowledges() {
        let replicas = FakeReplicas::new(&[
            ("a", vec![Ok(())]),
            ("b", vec![Ok(())]),
            ("c", vec![Err(ErrorKind::InvalidArgument)]),
        ]);
        replicate(&replicas, 3).await.unwrap();
    }

    #[tokio::test]
    async fn below_quorum_is_unavailable_and_names_the_failures() {
        let replicas = FakeReplicas::new(&[
            ("a", vec![Ok(())]),
            ("b", vec![Err(ErrorKind::InvalidArgument)]),
            ("c", vec![Err(ErrorKind::InvalidArgument)]),
        ]);
        let error = replicate(&replicas, 3).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        let message = error.to_string();
        assert!(
            message.contains("on 1 of 3 ingesters, 2 are needed"),
            "{message}"
        );
        assert!(message.contains("b: scripted"), "{message}");
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_and_others_are_not() {
        let replicas = FakeReplicas::new(&[
            ("a", vec![Err(ErrorKind::Unavailable), Ok(())]),
            ("b", vec![Err(ErrorKind::Unavailable), Ok(())]),
            ("c", vec![Err(ErrorKind::MalformedProfile)]),
        ]);
        replicate(&replicas, 3).await.unwrap();
        assert_eq!(replicas.pushes("a"), 2);
        assert_eq!(replicas.pushes("b"), 2);
        // Give the background write time to retry, if it wrongly did.
        tokio::time::sleep(RETRY_DELAYS.iter().sum::<Duration>()).await;
        assert_eq!(
            replicas.pushes("c"),
            1,
            "a malformed record is not sent again"
        );
        // A replica that stays down is tried once and then twice more.
        let replicas = FakeReplicas::new(&[
            ("a", vec![Ok(())]),
            ("b", vec![Ok(())]),
            ("c", vec![Err(ErrorKind::Unavailable)]),
        ]);
        replicate(&replicas, 3).await.unwrap();
        tokio::time::sleep(RETRY_DELAYS.iter().sum::<Duration>() * 2).await;
        assert_eq!(replicas.pushes("c"), 1 + RETRY_DELAYS.len());
    }

    #[tokio::test]
    async fn too_few_writable_ingesters_is_refused_before_writing() {
        let replicas = FakeReplicas::new(&[("a", vec![Ok(())])]);
        let ring = Ring::new(
            vec![Member {
                state: InstanceState::Joining,
                ..replicas.ring().members()[0].clone()
            }],
            false,
        );
        let distributor = Distributor::new(Arc::<FakeReplicas>::clone(&replicas), 3);
        let tenant = TenantId::new("t").unwrap();
        let error = distributor
            .replicate(&ring, &tenant, "api", 0, vec![Bytes::new()])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(error.to_string().contains("active and alive"), "{error}");
        assert_eq!(replicas.pushes("a"), 0);
    }

    /// One small valid pprof holding `series` series of service `api`.
    fn batch(series: usize) -> ProfileBatch {
        use hearth_engine::SeriesProfile;
        use hearth_engine::model::Labels;
        use hearth_proto::pprof::{Profile, ValueType};
        let pprof = Profile {
            string_table: vec![String::new(), "cpu".into(), "nanoseconds".into()],
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            ..Profile::default()
        };
        let index = hearth_engine::pprof::PprofIndex::new(&pprof).unwrap();
        let raw = Bytes::from(prost::Message::encode_to_vec(&pprof));
        ProfileBatch {
            partition: "api".into(),
            raw,
            pprof: Arc::new(pprof),
            index: Arc::new(index),
            profiles: (0..series)
                .map(|i| SeriesProfile {
                    labels: Labels::from_pairs([
                        ("service_name", "api".to_string()),
                        ("pod", format!("pod-{i}")),
                    ]),
                    value_index: 0,
                    time_nanos: 1,
                    duration_nanos: 0,
                    period: 0,
                    id: format!("p{i}"),
                    samples: Some(Vec::new()),
                    span_ids: Vec::new(),
                })
                .collect(),
        }
    }

    /// For every series pushed: the nodes that received it.
    fn series_nodes(replicas: &FakeReplicas) -> HashMap<u64, std::collections::BTreeSet<String>> {
        let mut nodes: HashMap<u64, std::collections::BTreeSet<String>> = HashMap::new();
        for (node, record) in replicas.records.lock().iter() {
            for profile in ProfileBatch::from_wal_record(record).unwrap().profiles {
                nodes
                    .entry(profile.labels.fingerprint().0)
                    .or_default()
                    .insert(node.clone());
            }
        }
        nodes
    }

    #[tokio::test]
    async fn sharded_services_spread_by_series_over_replication_sets() {
        let nodes: Vec<(&str, Script)> = ["a", "b", "c", "d", "e", "f"]
            .into_iter()
            .map(|n| (n, vec![Ok(())]))
            .collect();
        let tenant = TenantId::new("t").unwrap();
        for (shards, spread) in [(1u32, false), (4, true)] {
            let replicas = FakeReplicas::new(&nodes);
            let limits = FixedLimits::shared(hearth_engine::limits::Limits {
                shards_per_service: shards,
                ..Default::default()
            });
            let distributor =
                Distributor::new(Arc::<FakeReplicas>::clone(&replicas), 3).with_limits(limits);
            distributor.store(&tenant, vec![batch(32)]).await.unwrap();
            // Writes past the quorum finish in the background.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let placed = series_nodes(&replicas);
            assert_eq!(placed.len(), 32, "every series was written");
            // Each series lives on exactly one replication set: deduplication and its symbols
            // (which travel with its records) stay whole on every replica.
            assert!(placed.values().all(|n| n.len() == 3), "{placed:?}");
            let used: std::collections::BTreeSet<&String> = placed.values().flatten().collect();
            assert_eq!(
                used.len() > 3,
                spread,
                "shards={shards}: nodes used {used:?}"
            );
        }
    }
}
