//! What queries keep of blocks between queries: their symbols and their series indexes, read
//! from Parquet once and kept in one cache bounded by bytes (`query.symbol_cache_bytes`; blocks
//! are immutable, so a cached copy never goes stale).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};

use crate::block::{Block, read_block_symbols};
use crate::error::Result;
use crate::model::TenantId;
use crate::series_index::BlockSeriesIndex;
use crate::symbols::SymbolPartition;

/// A block's symbol partitions by service name.
pub type Partitions = HashMap<String, Arc<RwLock<SymbolPartition>>>;

/// Block symbols and series indexes, least recently used evicted first past a byte budget.
#[derive(Debug)]
pub struct BlockCache {
    budget_bytes: usize,
    inner: Mutex<CacheState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Symbols,
    Series,
}

#[derive(Debug, Clone)]
enum Entry {
    Symbols(Arc<Partitions>),
    Series(Arc<BlockSeriesIndex>),
}

type Key = (Kind, String);

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<Key, (Entry, usize)>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl BlockCache {
    pub fn new(budget_bytes: usize) -> Self {
        BlockCache {
            budget_bytes,
            inner: Mutex::new(CacheState::default()),
        }
    }

    fn get(&self, kind: Kind, block: &str) -> Option<Entry> {
        let key = (kind, block.to_string());
        let mut state = self.inner.lock();
        let found = state.entries.get(&key).map(|(entry, _)| entry.clone());
        if found.is_some() {
            state.order.retain(|k| *k != key);
            state.order.push_back(key);
        }
        found
    }

    fn put(&self, kind: Kind, block: &str, entry: Entry, bytes: usize) {
        let key = (kind, block.to_string());
        let mut state = self.inner.lock();
        if state.entries.contains_key(&key) {
            return;
        }
        state.entries.insert(key.clone(), (entry, bytes));
        state.order.push_back(key);
        state.bytes += bytes;
        while state.bytes > self.budget_bytes && state.order.len() > 1 {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some((_, size)) = state.entries.remove(&oldest) {
                state.bytes -= size;
            }
        }
    }

    /// A block's symbols, read on first use.
    pub async fn symbols(
        &self,
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
        block: &Block,
    ) -> Result<Arc<Partitions>> {
        if let Some(Entry::Symbols(found)) = self.get(Kind::Symbols, block.id()) {
            return Ok(found);
        }
        let loaded = read_block_symbols(store, tenant, block).await?;
        let partitions: Arc<Partitions> = Arc::new(
            loaded
                .into_iter()
                .map(|(service, p)| (service, Arc::new(RwLock::new(p))))
                .collect(),
        );
        let bytes = partitions
            .values()
            .map(|p| p.read().estimated_bytes())
            .sum();
        self.put(
            Kind::Symbols,
            block.id(),
            Entry::Symbols(Arc::clone(&partitions)),
            bytes,
        );
        Ok(partitions)
    }

    /// A block's series index, built from its series table on first use.
    pub async fn series_index(
        &self,
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
        block: &Block,
    ) -> Result<Arc<BlockSeriesIndex>> {
        if let Some(Entry::Series(found)) = self.get(Kind::Series, block.id()) {
            return Ok(found);
        }
        let index = Arc::new(BlockSeriesIndex::read(store, tenant, block).await?);
        let bytes = index.estimated_bytes();
        self.put(
            Kind::Series,
            block.id(),
            Entry::Series(Arc::clone(&index)),
            bytes,
        );
        Ok(index)
    }
}
