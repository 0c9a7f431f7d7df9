//! Where queries get their snapshots: the local [`Engine`] (a single process), an ingester's
//! [`HeadsOnly`] (what it answers pushed-down aggregates from), or a [`ClusterReader`] that
//! lists the shared bucket's blocks and asks the live ingesters for their heads, with replicas
//! counted once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;

use crate::block::{Block, read_block};
use crate::db::{Engine, TenantSnapshot};
use crate::error::Result;
use crate::model::TenantId;
use crate::remote::{Dedupe, RemoteHeads};
use crate::symbol_set::SymbolCache;

/// A source of tenant snapshots for the query layer.
#[async_trait]
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// One tenant's data at this instant.
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot>;
    /// The bucket the snapshot's blocks are in.
    fn store(&self) -> &Arc<dyn ObjectStore>;
    /// Block symbols kept between queries.
    fn symbol_cache(&self) -> &Arc<SymbolCache>;
}

#[async_trait]
impl SnapshotSource for Engine {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        Ok(Engine::snapshot(self, tenant))
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        Engine::store(self)
    }

    fn symbol_cache(&self) -> &Arc<SymbolCache> {
        self.symbols()
    }
}

/// An ingester's heads without its blocks: queriers read those from the bucket themselves.
#[derive(Debug, Clone)]
pub struct HeadsOnly(pub Arc<Engine>);

#[async_trait]
impl SnapshotSource for HeadsOnly {
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot> {
        Ok(self.0.snapshot(tenant).heads_only())
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.0.store()
    }

    fn symbol_cache(&self) -> &Arc<SymbolCache> {
        self.0.symbols()
    }
}

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
                blocks.insert(id, block.clone());
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
            dedupe: Some(Arc::new(Dedupe::default())),
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
