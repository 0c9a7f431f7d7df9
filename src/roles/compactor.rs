//! `--target compactor` (and part of `all`): every `compactor.compaction_interval`, one
//! compaction cycle per tenant this process owns (`hearth_engine::compact`: merges, retention,
//! deletions, the bucket index).
//!
//! Ownership: in `all` the process owns every tenant. In a cluster, tenants are spread over the
//! compactors gossip shows as active by rendezvous hashing (each tenant goes to the compactor
//! with the highest hash of tenant and node id), so two compactors do not take the same blocks;
//! when membership changes, a tenant moves to one other compactor. Should two ever merge the
//! same blocks during a gossip change, both outputs replace the same sources and queriers,
//! which count replicas once, still read each profile once; a later level merges the two.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hearth_engine::limits::LimitsSource;
use hearth_engine::model::TenantId;
use hearth_engine::{Compactor, Engine};
use hearth_ring::{InstanceState, Membership, Role, rendezvous_owner};
use object_store::ObjectStore;

use super::Services;
use crate::cluster::Addresses;
use crate::config::Config;
use crate::metrics::{CompactorMetrics, Metrics};

pub(super) async fn build(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    addresses: &Addresses,
    limits: Arc<dyn LimitsSource>,
    metrics: &Metrics,
) -> anyhow::Result<Services> {
    let membership = crate::cluster::join(config, addresses, InstanceState::Active).await?;
    let cluster = crate::cluster::ClusterClients::new(config, &membership, metrics);
    let compactor = Compactor::new(
        Arc::clone(&store),
        config.compactor.clone(),
        true,
        addresses.node_id.clone(),
    );
    let task = CompactorTask::new(
        compactor,
        Arc::clone(&limits),
        Owner::Ring(Arc::clone(&membership)),
        None,
    );
    // Its HTTP API (metrics, readiness, and the rest as a querier has it) reads the cluster.
    Ok(Services {
        engine: None,
        ingest: cluster.ingest_service(Arc::clone(&limits)),
        query: cluster.query_service(store, limits),
        flight: None,
        scheduler: None,
        tasks: Vec::new(),
        membership: Some(membership),
        ring_member: false,
        compactor: Some(task),
    })
}

/// Which tenants this process compacts.
pub(crate) enum Owner {
    /// Every tenant (a single process).
    All,
    /// The tenants rendezvous hashing gives this node among the active compactors.
    Ring(Arc<Membership>),
}

impl Owner {
    fn owns(&self, tenant: &TenantId) -> bool {
        let Owner::Ring(membership) = self else {
            return true;
        };
        let nodes = membership.active(Role::Compactor);
        let compactors = nodes.iter().map(|n| n.id.as_str());
        rendezvous_owner(tenant.as_str(), compactors) == Some(membership.node_id())
    }
}

/// The compactor's loop.
pub(crate) struct CompactorTask {
    compactor: Compactor,
    limits: Arc<dyn LimitsSource>,
    owner: Owner,
    /// The engine serving these blocks in the same process (`all`): it learns each change.
    engine: Option<Arc<Engine>>,
    pub metrics: Arc<CompactorMetrics>,
}

impl CompactorTask {
    pub(crate) fn new(
        compactor: Compactor,
        limits: Arc<dyn LimitsSource>,
        owner: Owner,
        engine: Option<Arc<Engine>>,
    ) -> Self {
        CompactorTask {
            compactor,
            limits,
            owner,
            engine,
            metrics: Arc::default(),
        }
    }

    /// Runs [`run`](Self::run) on a thread of its own with a single-threaded runtime, until
    /// the handle is stopped or dropped. A merge's buffers are then allocated and freed by one
    /// thread, in one allocator arena: spread over the worker threads they were kept by several
    /// arenas at once, and the process grew well past `compactor.max_memory_bytes`. Merges also
    /// never occupy the workers that serve queries and ingest.
    /// `store` is a client of its own ([`crate::storage::Bucket::separate_client`]), opened for
    /// this runtime.
    pub(crate) fn spawn(mut self, store: Arc<dyn ObjectStore>) -> std::io::Result<CompactorThread> {
        self.compactor = self.compactor.with_store(Arc::clone(&store));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hearth-compactor".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = self.run(store) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(CompactorThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs cycles until the task is dropped. A failed cycle is logged and retried at the
    /// next interval: what it left undone, the next one finishes.
    pub(crate) async fn run(self, store: Arc<dyn ObjectStore>) {
        let mut interval = tokio::time::interval(self.compactor.config().compaction_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = self.cycle(store.as_ref()).await {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "compaction cycle failed; retrying at the next interval");
            }
            self.metrics.cycles.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn cycle(&self, store: &dyn ObjectStore) -> hearth_engine::Result<()> {
        let mut tenants: BTreeSet<TenantId> = hearth_engine::block::list_tenants(store)
            .await?
            .into_iter()
            .collect();
        if let Some(engine) = &self.engine {
            tenants.extend(engine.tenants());
        }
        for tenant in tenants.iter().filter(|t| self.owner.owns(t)) {
            let retention = self.limits.limits(tenant).retention_period;
            let retention = (!retention.is_zero()).then_some(retention);
            let now = hearth_engine::time::now_nanos();
            let outcome = self.compactor.run_tenant(tenant, retention, now).await?;
            let m = &self.metrics;
            m.merges
                .fetch_add(outcome.merges.len() as u64, Ordering::Relaxed);
            for stats in &outcome.merges {
                m.bytes_read.fetch_add(stats.input_bytes, Ordering::Relaxed);
                m.bytes_written
                    .fetch_add(stats.output_bytes, Ordering::Relaxed);
            }
            m.blocks_deleted
                .fetch_add(outcome.deleted as u64, Ordering::Relaxed);
            if let Some(engine) = &self.engine {
                engine.replace_blocks(tenant, &outcome.added, &outcome.removed);
            }
        }
        Ok(())
    }
}

/// The compactor's thread; stopping it drops a merge in progress (finished or redone by a
/// later cycle, as after a crash).
#[derive(Debug)]
pub(crate) struct CompactorThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CompactorThread {
    /// Stops the loop and waits for the thread to end.
    pub(crate) async fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
