//! Where query jobs run: each worker slot has its own Tokio runtime on its own OS threads.
//!
//! A job is CPU work (scans, stack merges) with few places to yield. On one shared runtime a
//! heavy job of one tenant holds a thread for its whole merge while a light job of another
//! tenant waits for that thread at each of its own yields, so the light job takes as long as
//! the heavy one. On separate threads the kernel shares the cores between jobs in time slices,
//! so each running job gets its share of CPU whatever the others do; a job alone still gets
//! every core (each runtime has one thread per core).

use std::future::Future;
use std::sync::Arc;
use std::thread;

use hearth_engine::model::TenantId;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::job::{Job, JobAnswer};
use crate::service::QueryService;

/// One runtime per worker slot; dropping this stops their threads.
#[derive(Debug)]
pub struct JobRuntimes {
    slots: Vec<Handle>,
    /// Dropped with `self`: each runtime's thread then returns and shuts its runtime down.
    _stop: Vec<oneshot::Sender<()>>,
}

impl JobRuntimes {
    /// `slots` runtimes (at least one), each with one worker thread per core.
    pub fn new(slots: usize) -> Result<Self> {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for slot in 0..slots.max(1) {
            let runtime = Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(format!("hearth-job-{slot}"))
                .enable_all()
                .build()
                .map_err(|e| Error::internal(format!("cannot start job runtime {slot}: {e}")))?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            thread::Builder::new()
                .name(format!("hearth-job-{slot}-owner"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })
                .map_err(|e| Error::internal(format!("cannot start job runtime {slot}: {e}")))?;
            stops.push(stop);
        }
        Ok(JobRuntimes {
            slots: handles,
            _stop: stops,
        })
    }

    /// `query`'s side of `job` for `tenant`, run on slot `slot`'s runtime; dropping the
    /// returned future stops it.
    pub async fn run_job(
        &self,
        slot: usize,
        query: &Arc<QueryService>,
        tenant: &TenantId,
        job: Job,
    ) -> Result<JobAnswer> {
        let (query, tenant) = (Arc::clone(query), tenant.clone());
        self.run(slot, async move { query.run_job(&tenant, job).await })
            .await
    }

    /// Runs `job` on slot `slot`'s runtime (modulo the slot count) and waits for it; dropping
    /// the returned future stops the job.
    pub async fn run<T: Send + 'static>(
        &self,
        slot: usize,
        job: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let task = self.slots[slot % self.slots.len()].spawn(job);
        let abort = AbortOnDrop(task.abort_handle());
        let answer = task
            .await
            .map_err(|e| Error::internal(format!("a query job stopped: {e}")));
        drop(abort);
        answer?
    }
}

/// Aborts a spawned job when its waiter goes away (the client left, the worker stopped).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_job_runs_on_its_slot_and_stops_when_its_waiter_leaves() {
        let runtimes = Arc::new(JobRuntimes::new(2).unwrap());
        let name = runtimes
            .run(1, async {
                Ok(thread::current().name().map(str::to_string))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("hearth-job-1"));

        let (started, on_start) = oneshot::channel();
        let (mut held, holding) = oneshot::channel::<()>();
        let job = async move {
            let _ = started.send(());
            let _ = holding.await;
            Ok(())
        };
        let slots = Arc::clone(&runtimes);
        let waiter = tokio::spawn(async move { slots.run(0, job).await });
        on_start.await.unwrap();
        waiter.abort();
        let _ = waiter.await;
        // The job's future was dropped: its receiver is gone, so the sender sees it closed.
        tokio::time::timeout(Duration::from_secs(5), held.closed())
            .await
            .expect("the aborted job's future is dropped");

        let failed: Result<()> = runtimes.run(0, async { panic!("boom") }).await;
        assert!(
            failed
                .unwrap_err()
                .to_string()
                .contains("a query job stopped")
        );
    }
}
