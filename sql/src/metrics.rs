//! How long queries take and how many fail, by the API that asked (`connect`, `render`,
//! `flight_sql`) and its method (transports time their calls and record them here, so one
//! histogram covers every surface), and how many were split into intervals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_engine::metrics::duration_histogram;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    api: &'static str,
    method: String,
    outcome: &'static str,
}

type Durations = Family<QueryLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct QueryMetrics {
    durations: Durations,
    split_queries: Counter,
    split_pieces: Counter,
    rollup_trees: Counter,
    rollup_series_rows: Counter,
    label_index_sources: Counter,
    stage_tasks: Counter,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        QueryMetrics {
            durations: Family::new_with_constructor(duration_histogram),
            split_queries: Counter::default(),
            split_pieces: Counter::default(),
            rollup_trees: Counter::default(),
            rollup_series_rows: Counter::default(),
            label_index_sources: Counter::default(),
            stage_tasks: Counter::default(),
        }
    }
}

impl QueryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hearth_query_duration_seconds",
            "Seconds to answer a query, by API, method and outcome (ok or error)",
            self.durations.clone(),
        );
        registry.register(
            "hearth_query_split_queries",
            "Partial aggregates run in intervals (query.split_interval)",
            self.split_queries.clone(),
        );
        registry.register(
            "hearth_query_split_pieces",
            "Intervals those split partial aggregates ran in",
            self.split_pieces.clone(),
        );
        registry.register(
            "hearth_query_rollup_trees",
            "Hourly rollup trees flame graphs read instead of samples",
            self.rollup_trees.clone(),
        );
        registry.register(
            "hearth_query_rollup_series_rows",
            "Hourly per-series totals SelectSeries read instead of profiles",
            self.rollup_series_rows.clone(),
        );
        registry.register(
            "hearth_query_label_index_sources",
            "Heads and blocks whose label index answered LabelNames, LabelValues or Series",
            self.label_index_sources.clone(),
        );
        registry.register(
            "hearth_query_stage_tasks",
            "Plan stage tasks this querier ran (of its own queries or other queriers' spread over it)",
            self.stage_tasks.clone(),
        );
    }

    /// Records one plan stage task run here (the session built for it).
    pub(crate) fn stage_task(&self) {
        self.stage_tasks.inc();
    }

    /// Records `sources` heads and blocks answered from their label index.
    pub(crate) fn label_index(&self, sources: usize) {
        self.label_index_sources.inc_by(sources as u64);
    }

    /// Records `trees` rollup trees read by one flame graph.
    pub(crate) fn rollup(&self, trees: usize) {
        self.rollup_trees.inc_by(trees as u64);
    }

    /// Records `rows` series rollup rows read by one `SelectSeries`.
    pub(crate) fn series_rollup(&self, rows: usize) {
        self.rollup_series_rows.inc_by(rows as u64);
    }

    /// Records one partial aggregate split into `pieces` intervals.
    pub(crate) fn split(&self, pieces: usize) {
        self.split_queries.inc();
        self.split_pieces.inc_by(pieces as u64);
    }

    /// Records one query of `api`'s `method` that took `elapsed` and succeeded or not.
    pub fn observe(&self, api: &'static str, method: &str, elapsed: Duration, ok: bool) {
        let labels = QueryLabels {
            api,
            method: method.to_string(),
            outcome: if ok { "ok" } else { "error" },
        };
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Times one query from now until the timer is dropped (a streamed answer: when its stream
    /// ends or the client goes away); mark it [`QueryTimer::failed`] on an error.
    pub fn timer(self: &Arc<Self>, api: &'static str, method: &str) -> QueryTimer {
        QueryTimer {
            metrics: Arc::clone(self),
            api,
            method: method.to_string(),
            started: Instant::now(),
            ok: true,
        }
    }
}

/// One query being timed; recorded when dropped.
#[derive(Debug)]
pub struct QueryTimer {
    metrics: Arc<QueryMetrics>,
    api: &'static str,
    method: String,
    started: Instant,
    ok: bool,
}

impl QueryTimer {
    pub fn failed(&mut self) {
        self.ok = false;
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.metrics
            .observe(self.api, &self.method, self.started.elapsed(), self.ok);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// The query-scheduler's queue: its length per tenant, how long jobs wait, the workers
/// connected, and the jobs retried or cancelled.
#[derive(Debug)]
pub struct SchedulerMetrics {
    queue_length: Family<TenantLabel, Gauge>,
    queue_wait: Histogram,
    workers: Gauge,
    retried: Counter,
    cancelled: Counter,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            queue_length: Family::default(),
            queue_wait: duration_histogram(),
            workers: Gauge::default(),
            retried: Counter::default(),
            cancelled: Counter::default(),
        }
    }
}

impl SchedulerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hearth_query_scheduler_queue_length",
            "Query jobs waiting for a querier, per tenant",
            self.queue_length.clone(),
        );
        registry.register(
            "hearth_query_scheduler_queue_duration_seconds",
            "Seconds a query job waited in its tenant's queue before a querier took it",
            self.queue_wait.clone(),
        );
        registry.register(
            "hearth_query_scheduler_connected_workers",
            "Querier workers connected to this scheduler, waiting for or running a job",
            self.workers.clone(),
        );
        registry.register(
            "hearth_query_scheduler_retried_jobs",
            "Jobs queued again because the querier running them failed",
            self.retried.clone(),
        );
        registry.register(
            "hearth_query_scheduler_cancelled_jobs",
            "Jobs dropped or stopped because their client went away",
            self.cancelled.clone(),
        );
    }

    pub(crate) fn queued(&self, tenant: &hearth_engine::model::TenantId, length: usize) {
        self.queue_length
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .set(length as i64);
    }

    pub(crate) fn waited(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    pub(crate) fn retried(&self) {
        self.retried.inc();
    }

    pub fn cancelled(&self) {
        self.cancelled.inc();
    }

    /// Workers connected now.
    pub fn connected_workers(&self) -> usize {
        self.workers.get().max(0) as usize
    }

    /// A worker connected; it counts until the returned guard is dropped.
    pub fn worker(self: &Arc<Self>) -> WorkerGuard {
        self.workers.inc();
        WorkerGuard(Arc::clone(self))
    }
}

/// One connected worker, counted in `hearth_query_scheduler_connected_workers` while alive.
#[derive(Debug)]
pub struct WorkerGuard(Arc<SchedulerMetrics>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0.workers.dec();
    }
}
