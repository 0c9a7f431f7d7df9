//! `/metrics`: the process's own measurements (requests by route and status, build, process
//! resources, WAL replay) from the first moment the port is open, then the services' (ingest,
//! queries, engine, compactor, bucket, replication) once they are built; in Prometheus text
//! format.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_engine::Engine;
use hearth_engine::metrics::{EngineMetrics, duration_histogram};
use hearth_engine::store::StoreStats;
use hearth_ingest::metrics::IngestMetrics;
use hearth_sql::metrics::{QueryMetrics, SchedulerMetrics};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub(crate) struct Metrics {
    registry: RwLock<Registry>,
    /// Flushes and the WAL replay: handed to the engine when it opens.
    pub engine: Arc<EngineMetrics>,
    /// Pushes from a distributor to its ingesters.
    pub replication: Arc<ReplicationMetrics>,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's template (`/querier.v1.QuerierService/{method}`), or `unmatched`.
    route: String,
    status_code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What the compactor did since start, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct CompactorMetrics {
    pub cycles: AtomicU64,
    pub failures: AtomicU64,
    pub merges: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub blocks_deleted: AtomicU64,
}

/// A distributor's pushes to each ingester replica.
#[derive(Debug)]
pub(crate) struct ReplicationMetrics {
    pushes: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
}

impl ReplicationMetrics {
    fn new() -> Self {
        let pushes: Family<OutcomeLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        // Both outcomes exist from the start, so a rate over them starts at zero.
        for outcome in ["ok", "error"] {
            let _ = pushes.get_or_create(&OutcomeLabel { outcome });
        }
        ReplicationMetrics { pushes }
    }

    /// Records one push to one replica.
    pub(crate) fn observe(&self, elapsed: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.pushes
            .get_or_create(&OutcomeLabel { outcome })
            .observe(elapsed.as_secs_f64());
    }
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
    /// What a process measures from the start; `target` is its role.
    pub(crate) fn new(target: &str) -> Arc<Self> {
        let mut registry = Registry::default();
        registry.register(
            "hearth_build",
            "The running binary's version and the process's target",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("target", target.to_string()),
            ]),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        let engine = Arc::new(EngineMetrics::default());
        engine.register(&mut registry);
        let replication = Arc::new(ReplicationMetrics::new());
        registry.register(
            "hearth_replication_push_duration_seconds",
            "Seconds a distributor's push to one ingester replica took, by outcome (ok or error)",
            replication.pushes.clone(),
        );
        let requests: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "hearth_request_duration_seconds",
            "Seconds to answer an HTTP request, by method, route and status code",
            requests.clone(),
        );
        Arc::new(Metrics {
            registry: RwLock::new(registry),
            engine,
            replication,
            requests,
        })
    }

    /// Adds the services' measurements once they are built: ingest, queries and the bucket,
    /// and the engine's and compactor's when this process has them.
    pub(crate) fn add_services(
        &self,
        ingest: &IngestMetrics,
        query: &QueryMetrics,
        scheduler: Option<&SchedulerMetrics>,
        engine: Option<Arc<Engine>>,
        compactor: Option<Arc<CompactorMetrics>>,
        store: Arc<StoreStats>,
    ) {
        let mut registry = self.registry.write();
        ingest.register(&mut registry);
        query.register(&mut registry);
        if let Some(scheduler) = scheduler {
            scheduler.register(&mut registry);
        }
        registry.register_collector(Box::new(StoreCollector { stats: store }));
        if let Some(engine) = engine {
            registry.register_collector(Box::new(EngineCollector { engine }));
        }
        if let Some(metrics) = compactor {
            registry.register_collector(Box::new(CompactorCollector { metrics }));
        }
    }

    /// Records one HTTP request.
    pub(crate) fn observe_request(
        &self,
        method: &str,
        route: &str,
        status_code: u16,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status_code,
        };
        self.requests
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry.read())?;
        Ok(out)
    }
}

/// The process's resources as Prometheus' client libraries name them, read from `/proc` on
/// each scrape (Linux; elsewhere only the start time).
#[derive(Debug)]
struct ProcessCollector {
    start_time: f64,
}

impl ProcessCollector {
    fn new() -> Self {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ProcessCollector { start_time }
    }
}

/// Clock ticks per second of `/proc/self/stat`'s CPU times: Linux's `USER_HZ`, fixed at 100
/// for user space on every architecture it supports.
const USER_HZ: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut gauges: Vec<(&str, &str, f64)> = vec![(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            self.start_time,
        )];
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        };
        if let Some(kib) = field("VmRSS:") {
            gauges.push((
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                kib * 1024.0,
            ));
        }
        if let Some(kib) = field("VmSize:") {
            gauges.push((
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                kib * 1024.0,
            ));
        }
        if let Some(threads) = field("Threads:") {
            gauges.push(("process_threads", "OS threads of the process", threads));
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauges.push((
                "process_open_fds",
                "Open file descriptors",
                fds.count() as f64,
            ));
        }
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        // utime and stime are fields 14 and 15, counted after the parenthesised command name.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let cpu_ticks = stat.rsplit_once(") ").and_then(|(_, rest)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        });
        if let Some(ticks) = cpu_ticks {
            let counter = ConstCounter::new(ticks / USER_HZ);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
