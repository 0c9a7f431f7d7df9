//! Block symbols kept between queries: read from Parquet once and kept in a cache bounded by
//! bytes (blocks are immutable, so a cached copy never goes stale).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};

use crate::block::{Block, read_block_symbols};
use crate::error::Result;
use crate::model::TenantId;
use crate::symbols::SymbolPartition;

/// A block's symbol partitions by service name.
pub type Partitions = HashMap<String, Arc<RwLock<SymbolPartition>>>;

/// Block symbols, least recently used evicted first past a byte budget.
#[derive(Debug)]
pub struct SymbolCache {
    budget_bytes: usize,
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<String, (Arc<Partitions>, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SymbolCache {
    pub fn new(budget_bytes: usize) -> Self {
        SymbolCache {
            budget_bytes,
            inner: Mutex::new(CacheState::default()),
        }
    }

    fn get(&self, block: &str) -> Option<Arc<Partitions>> {
        let mut state = self.inner.lock();
        let found = state.entries.get(block).map(|(p, _)| Arc::clone(p));
        if found.is_some() {
            state.order.retain(|b| b != block);
            state.order.push_back(block.to_string());
        }
        found
    }

    fn put(&self, block: &str, partitions: Arc<Partitions>) {
        let bytes: usize = partitions
            .values()
            .map(|p| p.read().estimated_bytes())
            .sum();
        let mut state = self.inner.lock();
        if state.entries.contains_key(block) {
            return;
        }
        state.entries.insert(block.to_string(), (partitions, bytes));
        state.order.push_back(block.to_string());
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
    pub async fn block(
        &self,
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
        block: &Block,
    ) -> Result<Arc<Partitions>> {
        if let Some(found) = self.get(block.id()) {
            return Ok(found);
        }
        let loaded = read_block_symbols(store, tenant, block).await?;
        let partitions: Arc<Partitions> = Arc::new(
            loaded
                .into_iter()
                .map(|(service, p)| (service, Arc::new(RwLock::new(p))))
                .collect(),
        );
        self.put(block.id(), Arc::clone(&partitions));
        Ok(partitions)
    }
}
