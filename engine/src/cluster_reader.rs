//! A querier's view of the cluster: the live blocks of the bucket plus the live ingesters' heads,
//! with replicas counted once (the snapshots it gives are `replicated`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::ObjectStore;
use parking_lot::Mutex;

use crate::block::index::{BucketIndex, list_tail, live};
use crate::block::{Block, block_dir, read_block};
use crate::block_cache::BlockCache;
use crate::error::Result;
use crate::model::TenantId;
use crate::remote::RemoteHeads;
use crate::snapshot::{SnapshotSource, TenantSnapshot};

/// The ingesters whose heads a querier reads now.
#[async_trait]
pub trait RemoteDirectory: Send + Sync + fmt::Debug {
    /// The ingesters to read heads from; an error when too many are out of reach for the
    /// heads to be whole.
    async fn remotes(&self) -> Result<Vec<Arc<dyn RemoteHeads>>>;
}

/// How long a querier uses a tenant's bucket index before reading it again.
const INDEX_REFRESH: Duration = Duration::from_secs(30);

/// A querier's view: the tenant's live blocks (bucket index plus the blocks uploaded since)
/// and the live ingesters' heads.
#[derive(Debug)]
pub struct ClusterReader {
    store: Arc<dyn ObjectStore>,
    symbols: Arc<BlockCache>,
    directory: Arc<dyn RemoteDirectory>,
    tenants: Mutex<HashMap<TenantId, TenantBlocks>>,
}

/// What a querier knows of one tenant's blocks.
#[derive(Debug, Default, Clone)]
struct TenantBlocks {
    /// The bucket index and when it was read.
    index: Option<(Arc<BucketIndex>, Instant)>,
    /// Block metadata read from the bucket for blocks not in the index (blocks never change).
    uploaded: HashMap<String, Arc<Block>>,
}

impl ClusterReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        symbol_cache_bytes: usize,
        directory: Arc<dyn RemoteDirectory>,
    ) -> Self {
        ClusterReader {
            store,
            symbols: Arc::new(BlockCache::new(symbol_cache_bytes)),
            directory,
            tenants: Mutex::default(),
        }
    }

    /// The tenant's live blocks: those of its bucket index (read again every
    /// [`INDEX_REFRESH`]), plus those a listing of only the keys after the index's listing
    /// finds (uploaded since). Without an index (no compactor ran yet) that listing is the whole
    /// tenant.
    async fn blocks(&self, tenant: &TenantId) -> Result<Vec<Arc<Block>>> {
        let store = self.store.as_ref();
        let mut state = self.tenants.lock().get(tenant).cloned().unwrap_or_default();
        if state
            .index
            .as_ref()
            .is_none_or(|(_, read)| read.elapsed() >= INDEX_REFRESH)
        {
            let index = BucketIndex::read(store, tenant).await?.unwrap_or_default();
            state.index = Some((Arc::new(index), Instant::now()));
        }
        let index = Arc::clone(&state.index.as_ref().expect("read above").0);
        let tail = list_tail(store, tenant, index.listed_at_nanos).await?;
        let indexed: HashSet<&str> = index.blocks.iter().map(|b| b.ulid.as_str()).collect();
        let mut uploaded = HashMap::new();
        for id in tail
            .complete
            .iter()
            .filter(|id| !indexed.contains(id.as_str()))
        {
            if let Some(block) = state.uploaded.get(id) {
                uploaded.insert(id.clone(), Arc::clone(block));
            } else if let Some(block) = read_block(store, &block_dir(tenant, id)).await? {
                uploaded.insert(id.clone(), Arc::new(block));
            }
        }
        let blocks = index
            .live_blocks()
            .into_iter()
            .chain(uploaded.values().cloned())
            .filter(|b| !tail.marked.contains(&b.meta.ulid))
            .collect();
        state.uploaded = uploaded;
        self.tenants.lock().insert(tenant.clone(), state);
        Ok(live(blocks))
    }
}

#[async_trait]
impl SnapshotSource for ClusterReader {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        // Remote heads are read later, while the query runs: a profile flushed in between is
        // then in a block this listing missed and gone from that ingester's head, and only the
        // other replicas supply it. One seen in both is counted once by the deduplication.
        let remotes = self.directory.remotes().await?;
        let blocks = self.blocks(tenant).await?;
        Ok(TenantSnapshot {
            blocks,
            remotes,
            replicated: true,
            ..TenantSnapshot::empty(tenant.clone())
        })
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn block_cache(&self) -> &Arc<BlockCache> {
        &self.symbols
    }
}
