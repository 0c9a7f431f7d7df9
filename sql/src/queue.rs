//! The query-scheduler's queue: one queue of jobs per tenant, served round-robin to the
//! queriers' workers that ask for work ([`JobQueue::next`]), with at most
//! `max_query_parallelism` jobs of a tenant running at once, and never on every worker: one
//! stays free for the other tenants. A tenant flooding the frontend with heavy queries waits
//! behind its own jobs; another tenant's next job finds a free worker. A job whose client went away is dropped from the queue (or cancelled on
//! its worker); a job whose worker failed (the querier died) is queued again at the front,
//! and one that found its data out of reach (unavailable) after a pause, up to
//! [`MAX_ATTEMPTS`] times in all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_engine::ErrorKind;
use hearth_engine::limits::LimitsSource;
use hearth_engine::model::TenantId;
use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};
use crate::frontend::JobRunner;
use crate::job::{Job, JobAnswer};
use crate::job_runtime::JobRuntimes;
use crate::metrics::SchedulerMetrics;

/// Times a job is handed to a worker before its failures fail the query.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long a job that failed as unavailable waits before it is queued again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A job waiting for a worker, with where its answer goes.
#[derive(Debug)]
struct Queued {
    tenant: TenantId,
    job: Job,
    reply: oneshot::Sender<Result<JobAnswer>>,
    enqueued: Instant,
    attempts: u32,
}

#[derive(Debug, Default)]
struct TenantQueue {
    pending: VecDeque<Queued>,
    running: usize,
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<TenantId, TenantQueue>,
    /// Tenants with pending jobs, in the order they are served next.
    rotation: VecDeque<TenantId>,
}

/// Per-tenant queues of jobs, served fairly to whoever asks for work.
#[derive(Debug)]
pub struct JobQueue {
    state: Mutex<State>,
    changed: Notify,
    limits: Arc<dyn LimitsSource>,
    metrics: Arc<SchedulerMetrics>,
}

impl JobQueue {
    pub fn new(limits: Arc<dyn LimitsSource>) -> Arc<Self> {
        Arc::new(JobQueue {
            state: Mutex::default(),
            changed: Notify::new(),
            limits,
            metrics: Arc::default(),
        })
    }

    pub fn metrics(&self) -> &Arc<SchedulerMetrics> {
        &self.metrics
    }

    fn push(&self, item: Queued, front: bool) {
        let mut state = self.state.lock().expect("queue state");
        let tenant = item.tenant.clone();
        let queue = state.tenants.entry(tenant.clone()).or_default();
        match front {
            true => queue.pending.push_front(item),
            false => queue.pending.push_back(item),
        }
        self.metrics.queued(&tenant, queue.pending.len());
        if !state.rotation.contains(&tenant) {
            state.rotation.push_back(tenant);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// The next job to run, waiting until there is one a worker may take: tenants are served
    /// in turn, skipping those at their `max_query_parallelism`.
    pub async fn next(self: &Arc<Self>) -> Lease {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(lease) = self.take() {
                return lease;
            }
            changed.await;
        }
    }

    fn take(self: &Arc<Self>) -> Option<Lease> {
        let mut state = self.state.lock().expect("queue state");
        let State { tenants, rotation } = &mut *state;
        for _ in 0..rotation.len() {
            let tenant = rotation.pop_front()?;
            let Some(queue) = tenants.get_mut(&tenant) else {
                continue;
            };
            // Jobs whose client went away are dropped where they wait.
            while queue.pending.front().is_some_and(|q| q.reply.is_closed()) {
                queue.pending.pop_front();
                self.metrics.cancelled();
            }
            let item = match queue.running < self.tenant_cap(&tenant) {
                true => queue.pending.pop_front(),
                false => None,
            };
            self.metrics.queued(&tenant, queue.pending.len());
            if !queue.pending.is_empty() {
                rotation.push_back(tenant.clone());
            } else if queue.running == 0 && item.is_none() {
                tenants.remove(&tenant);
            }
            if let Some(item) = item {
                if let Some(queue) = tenants.get_mut(&tenant) {
                    queue.running += 1;
                }
                self.metrics.waited(item.enqueued.elapsed());
                return Some(Lease {
                    queue: Arc::clone(self),
                    item: Some(item),
                });
            }
        }
        None
    }

    /// How many jobs of `tenant` may run at once: its `max_query_parallelism` (0: no limit),
    /// and never every connected worker, so another tenant's job finds one free at once.
    fn tenant_cap(&self, tenant: &TenantId) -> usize {
        let parallelism = match self.limits.limits(tenant).max_query_parallelism {
            0 => usize::MAX,
            n => n,
        };
        match self.metrics.connected_workers() {
            0 | 1 => parallelism,
            workers => parallelism.min(workers - 1),
        }
    }

    fn release(&self, tenant: &TenantId) {
        let mut state = self.state.lock().expect("queue state");
        if let Some(queue) = state.tenants.get_mut(tenant) {
            queue.running = queue.running.saturating_sub(1);
            if queue.running == 0 && queue.pending.is_empty() {
                state.tenants.remove(tenant);
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

#[async_trait]
impl JobRunner for Arc<JobQueue> {
    async fn run(&self, tenant: &TenantId, job: Job) -> Result<JobAnswer> {
        let (reply, answer) = oneshot::channel();
        self.push(
            Queued {
                tenant: tenant.clone(),
                job,
                reply,
                enqueued: Instant::now(),
                attempts: 0,
            },
            false,
        );
        // Dropping this future (the client went away) closes the channel: the job is skipped
        // if still queued, or its worker told to cancel.
        answer
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the query scheduler stopped")))
    }
}

/// A job handed to a worker: answer it with [`Lease::finish`], or give it back with
/// [`Lease::retry`] when the worker failed. Dropped otherwise, it is given back too.
#[derive(Debug)]
pub struct Lease {
    queue: Arc<JobQueue>,
    item: Option<Queued>,
}

impl Lease {
    pub fn tenant(&self) -> &TenantId {
        &self.item.as_ref().expect("lease holds its job").tenant
    }

    pub fn job(&self) -> &Job {
        &self.item.as_ref().expect("lease holds its job").job
    }

    /// Resolves when the query's client went away.
    pub async fn cancelled(&mut self) {
        match self.item.as_mut() {
            Some(item) => item.reply.closed().await,
            None => std::future::pending().await,
        }
    }

    /// Sends the job's answer to its query. A job that failed as unavailable (the querier
    /// could not reach enough ingesters, e.g. while its gossip catches up) is queued again
    /// after [`RETRY_PAUSE`], up to [`MAX_ATTEMPTS`] times in all.
    pub fn finish(mut self, answer: Result<JobAnswer>) {
        let Some(mut item) = self.item.take() else {
            return;
        };
        self.queue.release(&item.tenant);
        match answer {
            Err(error)
                if error.kind() == ErrorKind::Unavailable
                    && item.attempts + 1 < MAX_ATTEMPTS
                    && !item.reply.is_closed() =>
            {
                item.attempts += 1;
                tracing::warn!(tenant = %item.tenant, job = item.job.name(), attempt = item.attempts, %error, "retrying a query job that found its data out of reach");
                self.queue.metrics.retried();
                let queue = Arc::clone(&self.queue);
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    queue.push(item, true);
                });
            }
            answer => {
                let _ = item.reply.send(answer);
            }
        }
    }

    /// The worker failed (`why`): the job goes back to the front of its tenant's queue, or
    /// fails its query after [`MAX_ATTEMPTS`].
    pub fn retry(mut self, why: &str) {
        self.give_back(why);
    }

    fn give_back(&mut self, why: &str) {
        let Some(mut item) = self.item.take() else {
            return;
        };
        self.queue.release(&item.tenant);
        item.attempts += 1;
        if item.attempts >= MAX_ATTEMPTS {
            let _ = item.reply.send(Err(Error::unavailable(format!(
                "the {} job failed on {} queriers; the last said: {why}",
                item.job.name(),
                item.attempts
            ))));
            return;
        }
        if item.reply.is_closed() {
            self.queue.metrics.cancelled();
            return;
        }
        tracing::warn!(tenant = %item.tenant, job = item.job.name(), attempt = item.attempts, why, "retrying a query job on another querier");
        self.queue.metrics.retried();
        self.queue.push(item, true);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.give_back("the worker stopped before answering");
    }
}

/// `workers` tasks running `queue`'s jobs on `query` in this process (`--target all`: the
/// scheduler's queue and fairness without a network hop), each job on its worker's own
/// runtime ([`JobRuntimes`]). A job whose client went away is stopped.
pub fn run_locally(
    queue: &Arc<JobQueue>,
    query: Arc<crate::QueryService>,
    workers: usize,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let runtimes = Arc::new(JobRuntimes::new(workers)?);
    Ok((0..workers.max(1))
        .map(|slot| {
            let (queue, query, runtimes) =
                (Arc::clone(queue), Arc::clone(&query), Arc::clone(&runtimes));
            tokio::spawn(async move {
                let _connected = queue.metrics.worker();
                loop {
                    let mut lease = queue.next().await;
                    let (tenant, job) = (lease.tenant().clone(), lease.job().clone());
                    let run = runtimes.run_job(slot, &query, &tenant, job);
                    let answer = tokio::select! {
                        answer = run => Some(answer),
                        () = lease.cancelled() => None,
                    };
                    match answer {
                        Some(answer) => lease.finish(answer),
                        None => {
                            queue.metrics.cancelled();
                            lease
                                .finish(Err(Error::unavailable("cancelled: the client went away")));
                        }
                    }
                }
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearth_engine::limits::{FixedLimits, Limits};

    use super::*;
    use crate::service::MillisRange;

    fn job(n: i64) -> Job {
        Job::ProfileTypes {
            range: MillisRange { start: n, end: n },
        }
    }

    fn start(job: &Job) -> i64 {
        match job {
            Job::ProfileTypes { range } => range.start,
            other => panic!("{other:?}"),
        }
    }

    fn queue(parallelism: usize) -> Arc<JobQueue> {
        JobQueue::new(FixedLimits::shared(Limits {
            max_query_parallelism: parallelism,
            ..Limits::default()
        }))
    }

    #[tokio::test]
    async fn tenants_are_served_in_turn_within_their_parallelism() {
        let queue = queue(2);
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        let mut waiting = Vec::new();
        for n in 0..5 {
            let (queue, a) = (Arc::clone(&queue), a.clone());
            waiting.push(tokio::spawn(async move { queue.run(&a, job(n)).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (queue_b, b2) = (Arc::clone(&queue), b.clone());
        let light = tokio::spawn(async move { queue_b.run(&b2, job(100)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;

        // A's first job, then B's (its turn comes next although A queued first), then A's.
        let first = queue.next().await;
        assert_eq!(first.tenant(), &a);
        let second = queue.next().await;
        assert_eq!((second.tenant(), start(second.job())), (&b, 100));
        second.finish(Ok(JobAnswer::Strings(vec![])));
        assert!(light.await.unwrap().is_ok());
        let third = queue.next().await;
        assert_eq!(third.tenant(), &a);
        // A has two running: its next job waits for one of them.
        let blocked = tokio::time::timeout(Duration::from_millis(100), queue.next()).await;
        assert!(
            blocked.is_err(),
            "a third job of A ran past its parallelism"
        );
        drop(first); // a failed worker: the job goes back to the front
        let again = queue.next().await;
        assert_eq!(start(again.job()), start(third.job()) - 1);
    }

    #[tokio::test]
    async fn a_job_whose_client_left_is_not_run_and_failures_are_bounded() {
        let queue = queue(0);
        let tenant = TenantId::new("t").unwrap();
        let (q, t) = (Arc::clone(&queue), tenant.clone());
        let gone = tokio::spawn(async move { q.run(&t, job(1)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone.abort();
        let _ = gone.await;
        let (q, t) = (Arc::clone(&queue), tenant.clone());
        let kept = tokio::spawn(async move { q.run(&t, job(2)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..MAX_ATTEMPTS {
            let lease = queue.next().await;
            assert_eq!(start(lease.job()), 2, "the abandoned job was handed out");
            lease.retry("connection reset");
        }
        let error = kept.await.unwrap().unwrap_err();
        assert!(
            error.to_string().contains("failed on 3 queriers")
                && error.to_string().contains("connection reset"),
            "{error}"
        );
    }
}
