//! `/metrics`: the ingest counters plus the engine's, the compactor's and the bucket's, read at
//! scrape time, in Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_engine::Engine;
use hearth_engine::store::StoreStats;
use hearth_ingest::metrics::IngestMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::roles::compactor::CompactorMetrics;

pub(crate) struct Metrics {
    registry: Registry,
}

/// Reads the engine's statistics on each scrape.
#[derive(Debug)]
struct EngineCollector {
    engine: Arc<Engine>,
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.engine.stats();
        let gauges = [
            (
                "hearth_head_bytes",
                "Estimated bytes held by heads",
                stats.head_bytes,
            ),
            (
                "hearth_head_profiles",
                "Profiles held by heads",
                stats.head_profiles,
            ),
            (
                "hearth_head_samples",
                "Samples held by heads",
                stats.head_samples,
            ),
            ("hearth_blocks", "Blocks known to the engine", stats.blocks),
            ("hearth_tenants", "Tenants with data", stats.tenants),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let flushes = ConstCounter::new(self.engine.flush_count());
        flushes.encode(encoder.encode_descriptor(
            "hearth_flushes",
            "Heads flushed to blocks since start",
            None,
            flushes.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Reads the compactor's counters on each scrape.
#[derive(Debug)]
struct CompactorCollector {
    metrics: Arc<CompactorMetrics>,
}

impl Collector for CompactorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let counters = [
            (
                "hearth_compactor_cycles",
                "Compaction cycles run",
                &m.cycles,
            ),
            (
                "hearth_compactor_cycle_failures",
                "Compaction cycles that failed",
                &m.failures,
            ),
            (
                "hearth_compactor_merges",
                "Blocks written by merges",
                &m.merges,
            ),
            (
                "hearth_compactor_read_bytes",
                "Bytes of blocks merged",
                &m.bytes_read,
            ),
            (
                "hearth_compactor_written_bytes",
                "Bytes of merged blocks written",
                &m.bytes_written,
            ),
            (
                "hearth_compactor_deleted_blocks",
                "Block folders deleted",
                &m.blocks_deleted,
            ),
        ];
        encode_counters(&mut encoder, &counters)
    }
}

/// Encodes each `(name, help, value)` as a counter read now.
fn encode_counters(
    encoder: &mut DescriptorEncoder<'_>,
    counters: &[(&str, &str, &AtomicU64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in counters {
        let counter = ConstCounter::new(value.load(Ordering::Relaxed));
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

/// Reads the bucket's request counters on each scrape.
#[derive(Debug)]
struct StoreCollector {
    stats: Arc<StoreStats>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let counters = [
            (
                "hearth_object_store_gets",
                "GET requests to the bucket",
                &s.gets,
            ),
            (
                "hearth_object_store_get_bytes",
                "Bytes read from the bucket",
                &s.get_bytes,
            ),
            (
                "hearth_object_store_heads",
                "HEAD requests to the bucket",
                &s.heads,
            ),
            (
                "hearth_object_store_puts",
                "PUT requests (and multipart uploads) to the bucket",
                &s.puts,
            ),
            (
                "hearth_object_store_put_bytes",
                "Bytes written to the bucket by single PUTs",
                &s.put_bytes,
            ),
            (
                "hearth_object_store_lists",
                "LIST requests to the bucket",
                &s.lists,
            ),
            (
                "hearth_object_store_deletes",
                "Objects deleted from the bucket",
                &s.deletes,
            ),
            (
                "hearth_object_store_cache_hits",
                "Byte ranges served from the local cache",
                &s.cache_hits,
            ),
            (
                "hearth_object_store_cache_hit_bytes",
                "Bytes served from the local cache",
                &s.cache_hit_bytes,
            ),
        ];
        encode_counters(&mut encoder, &counters)
    }
}

impl Metrics {
    /// The ingest counters, and the engine's and compactor's when this process has them.
    pub(crate) fn new(
        ingest: &IngestMetrics,
        engine: Option<Arc<Engine>>,
        compactor: Option<Arc<CompactorMetrics>>,
        store: Arc<StoreStats>,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "hearth_build",
            "The running binary's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        ingest.register(&mut registry);
        registry.register_collector(Box::new(StoreCollector { stats: store }));
        if let Some(engine) = engine {
            registry.register_collector(Box::new(EngineCollector { engine }));
        }
        if let Some(metrics) = compactor {
            registry.register_collector(Box::new(CompactorCollector { metrics }));
        }
        Metrics { registry }
    }

    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
