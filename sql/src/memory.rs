//! Query memory: each query's DataFusion pool holds it to its own limit
//! (`query.max_query_memory_bytes`, or the tenant's), and every query of the process draws from
//! one shared budget (`query.max_total_query_memory_bytes`), so a query-frontend's split pieces
//! and concurrent statements together stay within what the querier may use. A query that cannot
//! fit fails with `resource_exhausted` naming the limit; the others go on.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};

/// The bytes every query of the process has reserved, against one limit (0: none).
#[derive(Debug, Default)]
pub struct QueryMemory {
    limit: usize,
    used: AtomicUsize,
}

impl QueryMemory {
    pub fn new(limit: usize) -> Self {
        QueryMemory {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes reserved by running queries now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A pool for one query: at most `query_limit` bytes, drawn from this budget.
    pub fn pool(self: &Arc<Self>, query_limit: usize) -> Arc<dyn MemoryPool> {
        Arc::new(TrackConsumersPool::new(
            QueryPool {
                query: GreedyMemoryPool::new(query_limit),
                process: Arc::clone(self),
            },
            NonZeroUsize::new(5).expect("non-zero"),
        ))
    }
}

/// One query's pool inside the process's budget.
#[derive(Debug)]
struct QueryPool {
    query: GreedyMemoryPool,
    process: Arc<QueryMemory>,
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool (used: {}, of the process's {} of {})",
            self.query.reserved(),
            self.process.used(),
            self.process.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "hearth query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.query.grow(reservation, additional);
        self.process.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.query.shrink(reservation, shrink);
        self.process.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.query.try_grow(reservation, additional)?;
        let limit = self.process.limit;
        let taken = self
            .process
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used + additional;
                (limit == 0 || next <= limit).then_some(next)
            });
        if let Err(used) = taken {
            self.query.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "Failed to allocate additional {additional} bytes for {}: the queries running in this process hold {used} of query.max_total_query_memory_bytes ({limit}); retry when fewer run, or raise it",
                reservation.consumer().name()
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.query.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.query.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn a_query_is_held_to_its_own_limit_and_all_to_the_process_budget() {
        let memory = Arc::new(QueryMemory::new(1000));
        let (a, b) = (memory.pool(800), memory.pool(800));
        let first = MemoryConsumer::new("a").register(&a);
        first.try_grow(700).unwrap();
        let too_big = first.try_grow(200).unwrap_err().to_string();
        assert!(too_big.contains("Resources exhausted"), "{too_big}");
        assert!(!too_big.contains("max_total"), "its own limit: {too_big}");

        let second = MemoryConsumer::new("b").register(&b);
        let over = second.try_grow(400).unwrap_err().to_string();
        assert!(
            over.contains("query.max_total_query_memory_bytes"),
            "{over}"
        );
        assert_eq!(b.reserved(), 0, "a refused grow leaves nothing reserved");
        second.try_grow(300).unwrap();
        assert_eq!(memory.used(), 1000);

        drop(first);
        assert_eq!(memory.used(), 300, "a finished query gives its bytes back");
        second.try_grow(500).unwrap();
    }
}
