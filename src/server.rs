//! Composition: builds the services of the process's target, serves HTTP (and Flight), and
//! shuts down gracefully (stop accepting, finish requests, flush heads).
//!
//! - `all`: the engine takes pushes and answers queries (replication 1, no gossip).
//! - `ingester`: the engine, gossiping as `joining` while it replays its WAL, then `active`;
//!   its Flight port takes replicated pushes and serves scans of its heads; on SIGTERM it goes
//!   `leaving`, finishes requests, flushes, and leaves.
//! - `distributor` and `querier`: no local data; pushes are replicated to the ring's ingesters,
//!   queries read the bucket's blocks and the live ingesters' heads. The querier also serves
//!   Flight SQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use hearth_engine::{ClusterReader, Engine, EngineArgs, SnapshotSource};
use hearth_flight::client::IngesterDirectory;
use hearth_flight::ingester::IngesterFlight;
use hearth_flight::{Authenticator, HearthFlightSql};
use hearth_ingest::{Distributor, IngestService, ProfileSink};
use hearth_ring::InstanceState;
use hearth_sql::{QueryService, RemoteExecutor};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use std::future::IntoFuture;

use tokio::net::TcpListener;

use crate::config::{Config, Target};
use crate::http::{self, AppState};
use crate::metrics::Metrics;

/// The local engine when the process has one, where pushes go, and what queries read.
type Backends = (
    Option<Arc<Engine>>,
    Arc<dyn ProfileSink>,
    Arc<dyn SnapshotSource>,
    Option<Arc<dyn RemoteExecutor>>,
);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    let blocks_dir = config.storage.blocks_dir();
    std::fs::create_dir_all(&blocks_dir)
        .with_context(|| format!("cannot create the data directory {}", blocks_dir.display()))?;
    let store: Arc<dyn ObjectStore> = Arc::new(
        LocalFileSystem::new_with_prefix(&blocks_dir)
            .with_context(|| format!("cannot open block storage at {}", blocks_dir.display()))?,
    );
    let target = config.target;

    let listener = TcpListener::bind(config.server.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http_addr))?;
    let addr = listener.local_addr()?;
    let flight_listener = match target {
        Target::Distributor => None,
        _ => Some(
            TcpListener::bind(config.flight.addr)
                .await
                .with_context(|| format!("cannot listen on {} for Flight", config.flight.addr))?,
        ),
    };
    let flight_addr = match &flight_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let node_id = crate::cluster::node_id(&config, addr.port());

    // The engine (all, ingester) or the cluster (distributor, querier) behind the services.
    let mut membership = None;
    let (engine, sink, source, executor): Backends = match target {
        Target::All | Target::Ingester => {
            if target == Target::Ingester {
                // Joining while the WAL replays: distributors do not write to it yet.
                membership = Some(
                    crate::cluster::join(
                        &config,
                        &node_id,
                        addr,
                        flight_addr,
                        InstanceState::Joining,
                    )
                    .await?,
                );
            }
            let engine = Engine::open(EngineArgs {
                wal_dir: data_dir.join("wal"),
                store: store.clone(),
                head: config.head.clone(),
                symbol_cache_bytes: config.query.symbol_cache_bytes,
                origin: match target {
                    Target::Ingester => node_id.clone(),
                    _ => String::new(),
                },
            })
            .await
            .context("cannot open the storage engine")?;
            (Some(engine.clone()), engine.clone(), engine, None)
        }
        _ => {
            let joined =
                crate::cluster::join(&config, &node_id, addr, flight_addr, InstanceState::Active)
                    .await?;
            let directory = Arc::new(IngesterDirectory::new(joined.clone()));
            membership = Some(joined);
            let replicas = Arc::new(crate::cluster::FlightReplicas {
                directory: directory.clone(),
                zone_aware: config.cluster.zone_awareness,
            });
            let sink = Arc::new(Distributor::new(
                replicas,
                config.cluster.replication_factor,
            ));
            let source = Arc::new(ClusterReader::new(
                store.clone(),
                config.query.symbol_cache_bytes,
                directory.clone(),
            ));
            (
                None,
                sink,
                source,
                Some(directory as Arc<dyn RemoteExecutor>),
            )
        }
    };
    let ingest = Arc::new(IngestService::new(sink, config.limits.clone()));
    let mut query = QueryService::new(source, config.query.clone());
    if let Some(executor) = executor {
        query = query.with_remote_executor(executor);
    }
    let query = Arc::new(query);
    let state = Arc::new(AppState {
        metrics: Metrics::new(ingest.metrics(), engine.clone()),
        ingest,
        query: query.clone(),
        multitenancy_enabled: config.multitenancy_enabled,
        ready: AtomicBool::new(true),
        membership: membership.clone(),
    });
    let flusher = engine.clone().map(|e| tokio::spawn(e.run_flusher()));
    tracing::info!(%addr, target = target.name(), node = %node_id, data_dir = %data_dir.display(), "http server listening");

    // On SIGTERM/SIGINT: stop accepting, give requests in flight `shutdown_grace`, then flush.
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let mut flight_stopped = stopped.clone();
    let flight_shutdown = async move {
        let _ = flight_stopped.wait_for(|stop| *stop).await;
    };
    let flight = match (flight_listener, target, &engine) {
        (Some(listener), Target::Ingester, Some(engine)) => {
            let service = IngesterFlight::new(engine.clone(), config.query.clone());
            tracing::info!(addr = %listener.local_addr()?, "ingester flight listening");
            Some(tokio::spawn(hearth_flight::ingester::serve_ingester(
                listener,
                service,
                flight_shutdown,
            )))
        }
        (Some(listener), _, _) => {
            let auth = Authenticator::new(&config.flight, config.multitenancy_enabled)?;
            let service = HearthFlightSql::new(query.clone(), auth);
            tracing::info!(addr = %listener.local_addr()?, "flight sql listening");
            Some(tokio::spawn(hearth_flight::serve(
                listener,
                service,
                flight_shutdown,
            )))
        }
        (None, _, _) => None,
    };
    if let (Some(membership), Target::Ingester) = (&membership, target) {
        membership.set_state(InstanceState::Active).await;
        tracing::info!(node = %node_id, "ingester active in the ring");
    }

    let server =
        axum::serve(listener, http::router(state.clone())).with_graceful_shutdown(async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("http server failed")?,
        () = shutdown_signal() => {
            state.ready.store(false, Ordering::Release);
            if let (Some(membership), Target::Ingester) = (&membership, target) {
                // Distributors stop choosing it; queriers keep reading it until it is gone.
                membership.set_state(InstanceState::Leaving).await;
            }
            tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: finishing requests in flight");
            let _ = stop.send(true);
            match tokio::time::timeout(config.server.shutdown_grace, &mut server).await {
                Ok(result) => result.context("http server failed")?,
                Err(_) => tracing::warn!("requests still in flight after the grace period; closing them"),
            }
        }
    }

    if let Some(flight) = flight
        && let Ok(Ok(Err(e))) = tokio::time::timeout(config.server.shutdown_grace, flight).await
    {
        tracing::error!(error = %e, "flight server failed");
    }
    if let Some(engine) = &engine {
        tracing::info!("flushing heads");
        engine
            .shutdown()
            .await
            .context("flush at shutdown failed")?;
    }
    if let Some(flusher) = flusher {
        flusher.abort();
    }
    if let Some(membership) = membership {
        // Gone from the ring only once its data is in the bucket.
        membership.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
