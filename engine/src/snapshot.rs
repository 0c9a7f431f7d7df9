//! What a query reads: a [`TenantSnapshot`] (one tenant's heads, blocks and remote heads at one
//! instant), from a [`SnapshotSource`] (the local engine, an ingester's heads only, or a
//! querier's view of the cluster).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStore;
use parking_lot::RwLock;

use crate::block::Block;
use crate::block_cache::BlockCache;
use crate::error::Result;
use crate::head::Head;
use crate::model::{TenantId, TimeRange};
use crate::remote::RemoteHeads;
use crate::series_index::{SeriesQuery, SeriesVisitor};

/// A consistent view of one tenant's data at one instant.
#[derive(Clone)]
pub struct TenantSnapshot {
    pub tenant: TenantId,
    /// The heads (taking writes, or being flushed).
    pub heads: Vec<Arc<RwLock<Head>>>,
    pub blocks: Vec<Arc<Block>>,
    /// Heads held by other processes (ingesters), read through a [`RemoteHeads`].
    pub remotes: Vec<Arc<dyn RemoteHeads>>,
    /// Whether the sources may hold replicas of the same profiles: queries then read each
    /// profile from one source only (see [`crate::dedupe`]).
    pub replicated: bool,
}

impl fmt::Debug for TenantSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSnapshot")
            .field("tenant", &self.tenant.as_str())
            .field("heads", &self.heads.len())
            .field("blocks", &self.blocks.len())
            .field("remotes", &self.remotes.len())
            .field("replicated", &self.replicated)
            .finish()
    }
}

impl TenantSnapshot {
    pub fn empty(tenant: TenantId) -> Self {
        TenantSnapshot {
            tenant,
            heads: Vec::new(),
            blocks: Vec::new(),
            remotes: Vec::new(),
            replicated: false,
        }
    }

    /// The same heads without blocks or remotes: what an ingester serves to queriers.
    pub fn heads_only(&self) -> Self {
        TenantSnapshot {
            blocks: Vec::new(),
            remotes: Vec::new(),
            replicated: false,
            ..self.clone()
        }
    }

    /// The heads and blocks of this process, without the remote heads.
    pub fn local(&self) -> Self {
        TenantSnapshot {
            remotes: Vec::new(),
            ..self.clone()
        }
    }

    pub fn blocks_overlapping(&self, range: &TimeRange) -> impl Iterator<Item = &Arc<Block>> {
        self.blocks.iter().filter(move |b| b.overlaps(range))
    }

    /// Hands `visitor` the label index of every head and block overlapping `query`'s time
    /// range (block indexes from `cache`), and says how many it visited. Remote heads are not
    /// visited: their owners answer for them.
    pub async fn visit_series(
        &self,
        query: &SeriesQuery<'_>,
        store: &Arc<dyn ObjectStore>,
        cache: &BlockCache,
        visitor: &mut impl SeriesVisitor,
    ) -> Result<usize> {
        let mut visited = 0;
        for head in &self.heads {
            let head = head.read();
            if head.overlaps(&query.time) {
                visitor.visit(query, &*head);
                visited += 1;
            }
        }
        for block in self.blocks_overlapping(&query.time) {
            let index = cache.series_index(store, &self.tenant, block).await?;
            visitor.visit(query, &*index);
            visited += 1;
        }
        Ok(visited)
    }
}

/// A source of tenant snapshots for the query layer.
#[async_trait]
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// One tenant's data at this instant.
    async fn snapshot(&self, tenant: &TenantId) -> Result<TenantSnapshot>;
    /// The bucket the snapshot's blocks are in.
    fn store(&self) -> &Arc<dyn ObjectStore>;
    /// Block symbols kept between queries.
    fn block_cache(&self) -> &Arc<BlockCache>;
}
