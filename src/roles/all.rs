//! `--target all`: one process with everything: the engine takes the pushes and answers the
//! queries (through the query-frontend's per-tenant queues, run by workers in this process),
//! Flight SQL on the Flight port, and a compactor over the engine's blocks.

use std::sync::Arc;

use hearth_engine::limits::LimitsSource;
use hearth_engine::{Compactor, Engine};
use hearth_flight::{Authenticator, HearthFlightSql};
use hearth_ingest::IngestService;
use hearth_sql::queue::run_locally;
use hearth_sql::{Frontend, JobQueue, JobRunner, QueryService};
use object_store::ObjectStore;

use super::compactor::{CompactorTask, Owner};
use super::{FlightService, Services};
use crate::config::Config;
use crate::metrics::Metrics;

pub(super) async fn build(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    limits: Arc<dyn LimitsSource>,
    metrics: &Metrics,
) -> anyhow::Result<Services> {
    let engine = super::ingester::open_engine(
        config,
        Arc::clone(&store),
        String::new(),
        true,
        Arc::clone(&limits),
        metrics,
    )
    .await?;
    let ingest = Arc::new(IngestService::new(
        Arc::<Engine>::clone(&engine),
        Arc::clone(&limits),
    ));
    let query = Arc::new(
        QueryService::new(Arc::<Engine>::clone(&engine), config.query.clone())
            .with_limits(Arc::clone(&limits)),
    );
    let queue = JobQueue::new(Arc::clone(&limits));
    let scheduler = Arc::clone(queue.metrics());
    let workers = run_locally(&queue, Arc::clone(&query), config.query.max_concurrent)?;
    let runner: Arc<dyn JobRunner> = Arc::new(queue);
    let frontend = Frontend::new(runner, config.query.clone(), Arc::clone(&limits))
        .with_metrics(Arc::clone(query.metrics()))
        .with_admission(Arc::clone(query.admission()));
    // One process: no replicas to remove, and the engine learns of every merge.
    let compactor = CompactorTask::new(
        Compactor::new(store, config.compactor.clone(), false, String::new()),
        limits,
        Owner::All,
        Some(Arc::clone(&engine)),
    );
    let auth = Authenticator::new(&config.flight, config.multitenancy_enabled)?;
    Ok(Services {
        engine: Some(engine),
        ingest,
        flight: Some(FlightService::Sql(
            HearthFlightSql::new(Arc::clone(&query), auth),
            None,
        )),
        query: Arc::new(frontend),
        scheduler: Some(scheduler),
        tasks: workers,
        membership: None,
        ring_member: false,
        compactor: Some(compactor),
    })
}
