//! The cluster's [`ProfileSink`]: the [`Distributor`] places each profile on the ring by (tenant, service),
//! writes it to the replication set concurrently, retries briefly, and acknowledges once a
//! quorum of replicas has it. The transport to ingesters is a [`Replicas`] implementation
//! (Flight, in the binary), so this crate holds no networking code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hearth_engine::model::TenantId;
use hearth_engine::{ErrorKind, ProfileBatch};
use hearth_ring::{Ring, placement_key, quorum};

use crate::error::{Error, Result, reason};
use crate::sink::{ProfileSink, PushOutcome};

/// The ingesters as the distributor reaches them.
#[async_trait]
pub trait Replicas: Send + Sync {
    /// The ring now.
    fn ring(&self) -> Ring;
    /// Stores `records` (WAL records) of `tenant` on ingester `node`.
    async fn push(
        &self,
        node: &str,
        tenant: &TenantId,
        records: Arc<[Bytes]>,
    ) -> std::result::Result<(), String>;
}

/// Pauses between attempts to write to one replica.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];

/// Replicated writes to the ring's ingesters.
pub struct Distributor {
    replicas: Arc<dyn Replicas>,
    replication_factor: usize,
}

impl Distributor {
    pub fn new(replicas: Arc<dyn Replicas>, replication_factor: usize) -> Self {
        Distributor {
            replicas,
            replication_factor: replication_factor.max(1),
        }
    }

    /// Writes one placement group to its replication set; returns at quorum.
    async fn replicate(
        &self,
        ring: &Ring,
        tenant: &TenantId,
        service: &str,
        records: Vec<Bytes>,
    ) -> Result<()> {
        let unavailable =
            |message: String| Error::rejected(ErrorKind::Unavailable, reason::UNAVAILABLE, message);
        let key = placement_key(tenant.as_str(), service);
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
                let replicas = self.replicas.clone();
                let (node, tenant, records) = (member.id.clone(), tenant.clone(), records.clone());
                // Spawned: the writes left after the quorum finish in the background.
                tokio::spawn(async move {
                    let mut result = replicas.push(&node, &tenant, records.clone()).await;
                    for delay in RETRY_DELAYS {
                        if result.is_ok() {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        result = replicas.push(&node, &tenant, records.clone()).await;
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
        let mut outcome = PushOutcome::default();
        let mut groups: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
        for batch in &batches {
            outcome.profiles += batch.profiles.len();
            outcome.samples += batch.sample_count();
            groups
                .entry(batch.partition.clone())
                .or_default()
                .push(batch.to_wal_record().into());
        }
        let writes = groups
            .into_iter()
            .map(|(service, records)| {
                let ring = &ring;
                async move { self.replicate(ring, tenant, &service, records).await }
            })
            .collect::<FuturesUnordered<_>>();
        let results: Vec<Result<()>> = writes.collect().await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(outcome)
    }
}
