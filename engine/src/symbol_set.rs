//! The symbols one query resolves stack-trace ids against, by (source, service): heads lend
//! their live partitions, blocks' symbols come from the [`BlockCache`], remote heads' are
//! fetched from their ingesters.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use parking_lot::RwLock;

use crate::block::symbols_from_tables;
use crate::block_cache::BlockCache;
use crate::error::{Error, ErrorKind, Result};
use crate::model::TimeRange;
use crate::remote::RemoteScan;
use crate::schema::TableKind;
use crate::snapshot::TenantSnapshot;
use crate::symbols::SymbolPartition;

/// Partitions by (source, service name).
type PartitionIndex = HashMap<(String, String), Arc<RwLock<SymbolPartition>>>;

/// Symbol partitions by source (head id or block id) and service name. Preloaded for the
/// query API, which knows its services up front; loaded on first use for SQL, which does not.
#[derive(Debug, Default)]
pub struct SymbolSet {
    partitions: RwLock<PartitionIndex>,
    lazy: Option<LazyLoader>,
}

/// What a lazily loading set reads from.
#[derive(Debug)]
struct LazyLoader {
    cache: Arc<BlockCache>,
    store: Arc<dyn ObjectStore>,
    snapshot: Arc<TenantSnapshot>,
}

impl SymbolSet {
    /// A set that finds partitions in `snapshot` when they are first asked for.
    pub fn lazy(
        cache: Arc<BlockCache>,
        store: Arc<dyn ObjectStore>,
        snapshot: Arc<TenantSnapshot>,
    ) -> Self {
        SymbolSet {
            partitions: RwLock::default(),
            lazy: Some(LazyLoader {
                cache,
                store,
                snapshot,
            }),
        }
    }

    /// The partition of `service` in `source`; a lazy set loads it (blocking) on first use.
    pub fn get(&self, source: &str, service: &str) -> Result<Option<Arc<RwLock<SymbolPartition>>>> {
        let key = (source.to_string(), service.to_string());
        if let Some(found) = self.partitions.read().get(&key) {
            return Ok(Some(Arc::clone(found)));
        }
        let Some(lazy) = &self.lazy else {
            return Ok(None);
        };
        let head = lazy.snapshot.heads.iter().find(|h| h.read().id() == source);
        let found = if let Some(head) = head {
            head.read()
                .partitions()
                .find(|(name, _)| name.as_ref() == service)
                .map(|(_, p)| Arc::clone(p))
        } else if let Some(block) = lazy.snapshot.blocks.iter().find(|b| b.id() == source) {
            let partitions = block_on_io(lazy.cache.symbols(
                &lazy.store,
                &lazy.snapshot.tenant,
                block,
            ))?;
            partitions.get(service).cloned()
        } else if !lazy.snapshot.remotes.is_empty() {
            // A remote head: fetch this service's symbols from every remote once.
            let services = BTreeSet::from([service.to_string()]);
            let fetched = block_on_io(remote_symbols(&lazy.snapshot, &services))?;
            let mut partitions = self.partitions.write();
            for (key, partition) in fetched {
                partitions.entry(key).or_insert(partition);
            }
            partitions.get(&key).cloned()
        } else {
            None
        };
        if let Some(partition) = &found {
            self.partitions.write().insert(key, Arc::clone(partition));
        }
        Ok(found)
    }

    pub fn len(&self) -> usize {
        self.partitions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.read().is_empty()
    }
}

/// Runs object-store I/O from synchronous code inside query execution: on a multi-threaded
/// runtime the worker hands its other tasks off while it waits; elsewhere a scoped thread with
/// its own small runtime does the I/O.
fn block_on_io<T: Send>(future: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    use tokio::runtime::{Builder, Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::io("symbol loader runtime", e))?;
                    runtime.block_on(future)
                })
                .join()
                .unwrap_or_else(|_| Err(Error::corrupt("symbol loader", "panicked")))
        }),
    }
}

/// The symbols of `services` in every head and every block overlapping `range`.
pub async fn load_symbol_set(
    cache: &BlockCache,
    store: &Arc<dyn ObjectStore>,
    snapshot: &TenantSnapshot,
    range: &TimeRange,
    services: &BTreeSet<String>,
) -> Result<SymbolSet> {
    let mut partitions = HashMap::new();
    for head in &snapshot.heads {
        let head = head.read();
        for (service, partition) in head.partitions() {
            if services.contains(service.as_ref()) {
                partitions.insert(
                    (head.id().to_string(), service.to_string()),
                    Arc::clone(partition),
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
        let loaded = cache.symbols(store, &snapshot.tenant, block).await?;
        for (service, partition) in loaded.iter() {
            if services.contains(service) {
                partitions.insert(
                    (block.id().to_string(), service.clone()),
                    Arc::clone(partition),
                );
            }
        }
    }
    partitions.extend(remote_symbols(snapshot, services).await?);
    Ok(SymbolSet {
        partitions: RwLock::new(partitions),
        lazy: None,
    })
}

/// The symbols of `services` in the snapshot's remote heads, by (source, service).
async fn remote_symbols(
    snapshot: &TenantSnapshot,
    services: &BTreeSet<String>,
) -> Result<PartitionIndex> {
    use futures::TryStreamExt;
    let mut index = PartitionIndex::new();
    for remote in &snapshot.remotes {
        // Rows by source (a remote may hold several heads) and table.
        let mut by_source: HashMap<String, HashMap<TableKind, Vec<RecordBatch>>> = HashMap::new();
        for kind in TableKind::SYMBOLS {
            let schema = kind.table_schema();
            let request = RemoteScan {
                services: Some(services.iter().cloned().collect()),
                ..RemoteScan::new(&snapshot.tenant, kind, &schema)
            };
            let batches: Vec<RecordBatch> = remote
                .scan(request, Arc::clone(&schema))
                .try_collect()
                .await
                .map_err(|e| {
                    Error::invalid(
                        ErrorKind::Unavailable,
                        format!("symbols from ingester {}: {e}", remote.node()),
                    )
                })?;
            for batch in batches {
                for (source, rows) in split_by_source(&batch)? {
                    by_source
                        .entry(source)
                        .or_default()
                        .entry(kind)
                        .or_default()
                        .push(rows);
                }
            }
        }
        for (source, tables) in by_source {
            let what = format!("symbols of {source} on {}", remote.node());
            for (service, partition) in symbols_from_tables(&what, &tables)? {
                index.insert((source.clone(), service), Arc::new(RwLock::new(partition)));
            }
        }
    }
    Ok(index)
}

/// The rows of a batch grouped by their `source` (the last column), in order.
fn split_by_source(batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
    use arrow::array::AsArray;
    let column = batch.num_columns() - 1;
    let sources = arrow::compute::cast(batch.column(column), &arrow::datatypes::DataType::Utf8)?;
    let sources = sources.as_string::<i32>();
    let mut parts: Vec<(String, RecordBatch)> = Vec::new();
    let mut start = 0;
    while start < batch.num_rows() {
        let source = sources.value(start);
        let mut end = start + 1;
        while end < batch.num_rows() && sources.value(end) == source {
            end += 1;
        }
        parts.push((source.to_string(), batch.slice(start, end - start)));
        start = end;
    }
    Ok(parts)
}
