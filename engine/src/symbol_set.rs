//! The symbols one query resolves stack-trace ids against, by (source, service): heads lend
//! their live partitions, blocks' symbols are read from Parquet once and kept in a cache
//! bounded by bytes (blocks are immutable, so a cached copy never goes stale).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};

use crate::block::{Block, read_block_symbols};
use crate::db::TenantSnapshot;
use crate::error::Result;
use crate::model::TimeRange;
use crate::symbols::SymbolPartition;

type Partitions = HashMap<String, Arc<RwLock<SymbolPartition>>>;

/// Symbol partitions by source (head id or block id) and service name.
#[derive(Debug, Default)]
pub struct SymbolSet {
    partitions: HashMap<(String, String), Arc<RwLock<SymbolPartition>>>,
}

impl SymbolSet {
    pub fn get(&self, source: &str, service: &str) -> Option<&Arc<RwLock<SymbolPartition>>> {
        self.partitions
            .get(&(source.to_string(), service.to_string()))
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}

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
        let found = state.entries.get(block).map(|(p, _)| p.clone());
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
        snapshot: &TenantSnapshot,
        block: &Block,
    ) -> Result<Arc<Partitions>> {
        if let Some(found) = self.get(block.id()) {
            return Ok(found);
        }
        let loaded = read_block_symbols(store, &snapshot.tenant, block).await?;
        let partitions: Arc<Partitions> = Arc::new(
            loaded
                .into_iter()
                .map(|(service, p)| (service, Arc::new(RwLock::new(p))))
                .collect(),
        );
        self.put(block.id(), partitions.clone());
        Ok(partitions)
    }
}

/// The symbols of `services` in every head and every block overlapping `range`.
pub async fn load_symbol_set(
    cache: &SymbolCache,
    store: &Arc<dyn ObjectStore>,
    snapshot: &TenantSnapshot,
    range: &TimeRange,
    services: &BTreeSet<String>,
) -> Result<SymbolSet> {
    let mut set = SymbolSet::default();
    for head in &snapshot.heads {
        let head = head.read();
        for (service, partition) in head.partitions() {
            if services.contains(service.as_ref()) {
                set.partitions.insert(
                    (head.id().to_string(), service.to_string()),
                    partition.clone(),
                );
            }
        }
    }
    for block in snapshot.blocks_overlapping(range) {
        if !block
            .meta
            .service_names
            .iter()
            .any(|s| services.contains(s))
        {
            continue;
        }
        let partitions = cache.block(store, snapshot, block).await?;
        for (service, partition) in partitions.iter() {
            if services.contains(service) {
                set.partitions
                    .insert((block.id().to_string(), service.clone()), partition.clone());
            }
        }
    }
    Ok(set)
}
