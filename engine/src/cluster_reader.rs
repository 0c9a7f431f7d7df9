//! A querier's view of the cluster: every block in the bucket plus the live ingesters' heads,
//! with replicas counted once (the snapshots it gives are `replicated`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;

use crate::block::{Block, read_block};
use crate::error::Result;
use crate::model::TenantId;
use crate::remote::RemoteHeads;
use crate::snapshot::{SnapshotSource, TenantSnapshot};
use crate::symbol_cache::SymbolCache;

/// The ingesters whose heads a querier reads now.
pub trait RemoteDirectory: Send + Sync + fmt::Debug {
    fn remotes(&self) -> Vec<Arc<dyn RemoteHeads>>;
}

/// A querier's view: every block in the bucket plus the live ingesters' heads.
#[derive(Debug)]
pub struct ClusterReader {
    store: Arc<dyn ObjectStore>,
    symbols: Arc<SymbolCache>,
    directory: Arc<dyn RemoteDirectory>,
    /// Block metadata already read, by tenant and block id (blocks never change).
    known: Mutex<HashMap<TenantId, HashMap<String, Arc<Block>>>>,
}

impl ClusterReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        symbol_cache_bytes: usize,
        directory: Arc<dyn RemoteDirectory>,
    ) -> Self {
        ClusterReader {
            store,
            symbols: Arc::new(SymbolCache::new(symbol_cache_bytes)),
            directory,
            known: Mutex::default(),
        }
    }

    /// Lists the tenant's blocks; only blocks not seen before have their `meta.json` read.
    async fn blocks(&self, tenant: &TenantId) -> Result<Vec<Arc<Block>>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&Path::from(tenant.as_str())))
            .await?;
        let known = self.known.lock().get(tenant).cloned().unwrap_or_default();
        let mut blocks = HashMap::new();
        for dir in listing.common_prefixes {
            let Some(id) = dir.filename().map(str::to_string) else {
                continue;
            };
            if let Some(block) = known.get(&id) {
                blocks.insert(id, Arc::clone(block));
                continue;
            }
            // Being written when it has no meta.json yet (that comes last): skipped this time.
            if let Some(block) = read_block(self.store.as_ref(), &dir).await? {
                blocks.insert(id, Arc::new(block));
            }
        }
        let mut list: Vec<Arc<Block>> = blocks.values().cloned().collect();
        list.sort_by(|a, b| a.meta.ulid.cmp(&b.meta.ulid));
        self.known.lock().insert(tenant.clone(), blocks);
        Ok(list)
    }
}

#[async_trait]
impl SnapshotSource for ClusterReader {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        // Remote heads are read later, while the query runs: a profile flushed in between is
        // then in a block this listing missed and gone from that ingester's head, and only the
        // other replicas supply it. One seen in both is counted once by the deduplication.
        let remotes = self.directory.remotes();
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

    fn symbol_cache(&self) -> &Arc<SymbolCache> {
        &self.symbols
    }
}
