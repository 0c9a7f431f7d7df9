//! The engine's own measurements: flush durations and failures, and the WAL replay's progress
//! at start-up. The caller creates them before [`crate::Engine::open`], so a replay that takes
//! minutes can be watched (`/ready`, `/metrics`) while it runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the duration histograms, in seconds: 5 ms to 2 minutes.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram of durations in seconds with [`DURATION_BUCKETS`].
pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Debug)]
pub struct EngineMetrics {
    /// Seconds to write one head to a block (encode and upload).
    pub flush_duration: Histogram,
    /// Flushes that failed (the head stays and is retried).
    pub flush_failures: Counter,
    replay: ReplayProgress,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            flush_duration: duration_histogram(),
            flush_failures: Counter::default(),
            replay: ReplayProgress::default(),
        }
    }
}

/// The WAL replay at start-up: segments done of total, records applied and skipped, time taken.
#[derive(Debug, Default)]
struct ReplayProgress {
    segments_total: Gauge,
    segments_done: Gauge,
    records: Counter,
    skipped_records: Counter,
    seconds: Gauge<f64, AtomicU64>,
    started: Mutex<Option<Instant>>,
    finished: AtomicBool,
}

/// Where the replay stands, for a readiness answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayState {
    NotStarted,
    Running {
        /// Segments replayed of all there are.
        done: u64,
        total: u64,
        /// Records applied so far.
        records: u64,
        elapsed: Duration,
    },
    Finished,
}

impl EngineMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hearth_flush_duration_seconds",
            "Seconds to write one head to a block",
            self.flush_duration.clone(),
        );
        registry.register(
            "hearth_flush_failures",
            "Head flushes that failed (the head stays in memory and in the WAL and is retried)",
            self.flush_failures.clone(),
        );
        let r = &self.replay;
        registry.register(
            "hearth_wal_replay_segments",
            "WAL segments to replay at start-up",
            r.segments_total.clone(),
        );
        registry.register(
            "hearth_wal_replay_segments_done",
            "WAL segments replayed so far",
            r.segments_done.clone(),
        );
        registry.register(
            "hearth_wal_replay_records",
            "WAL records applied at start-up",
            r.records.clone(),
        );
        registry.register(
            "hearth_wal_replay_skipped_records",
            "WAL records that could not be applied at start-up (logged and skipped)",
            r.skipped_records.clone(),
        );
        registry.register(
            "hearth_wal_replay_duration_seconds",
            "Seconds the WAL replay has taken (final once it is done)",
            r.seconds.clone(),
        );
    }

    pub fn replay_state(&self) -> ReplayState {
        let r = &self.replay;
        if r.finished.load(Ordering::Acquire) {
            return ReplayState::Finished;
        }
        match *r.started.lock() {
            None => ReplayState::NotStarted,
            Some(started) => ReplayState::Running {
                done: r.segments_done.get() as u64,
                total: r.segments_total.get() as u64,
                records: r.records.get(),
                elapsed: started.elapsed(),
            },
        }
    }

    pub(crate) fn replay_started(&self, segments: usize) {
        *self.replay.started.lock() = Some(Instant::now());
        self.replay.segments_total.set(segments as i64);
    }

    /// One WAL record replayed: applied, or skipped because it could not be.
    pub(crate) fn record_replayed(&self, applied: bool) {
        match applied {
            true => self.replay.records.inc(),
            false => self.replay.skipped_records.inc(),
        };
    }

    pub(crate) fn segment_replayed(&self) {
        self.replay.segments_done.inc();
        self.update_replay_seconds();
    }

    pub(crate) fn replay_finished(&self) {
        self.update_replay_seconds();
        self.replay.finished.store(true, Ordering::Release);
    }

    fn update_replay_seconds(&self) {
        if let Some(started) = *self.replay.started.lock() {
            self.replay.seconds.set(started.elapsed().as_secs_f64());
        }
    }
}
