//! `--target all`: one process with everything, on local storage: the engine takes the pushes
//! and answers the queries, Flight SQL on the Flight port.

use std::sync::Arc;

use hearth_engine::Engine;
use hearth_flight::{Authenticator, HearthFlightSql};
use hearth_ingest::IngestService;
use hearth_sql::QueryService;
use object_store::ObjectStore;

use super::{FlightService, Services};
use crate::config::Config;

pub(super) async fn build(
    config: &Config,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<Services> {
    let engine = super::ingester::open_engine(config, store, String::new()).await?;
    let ingest = Arc::new(IngestService::new(
        Arc::<Engine>::clone(&engine),
        config.limits.clone(),
    ));
    let query = Arc::new(QueryService::new(
        Arc::<Engine>::clone(&engine),
        config.query.clone(),
    ));
    let auth = Authenticator::new(&config.flight, config.multitenancy_enabled)?;
    Ok(Services {
        engine: Some(engine),
        ingest,
        flight: Some(FlightService::Sql(HearthFlightSql::new(
            Arc::clone(&query),
            auth,
        ))),
        query,
        membership: None,
        ring_member: false,
    })
}
