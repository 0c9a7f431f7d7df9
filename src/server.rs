//! Composition: opens the engine, builds the services, serves HTTP, and shuts down gracefully
//! (stop accepting, finish requests, flush heads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use hearth_engine::{Engine, EngineArgs};
use hearth_flight::{Authenticator, HearthFlightSql};
use hearth_ingest::IngestService;
use hearth_sql::QueryService;
use object_store::local::LocalFileSystem;
use std::future::IntoFuture;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    let blocks_dir = data_dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir)
        .with_context(|| format!("cannot create the data directory {}", blocks_dir.display()))?;
    let store = LocalFileSystem::new_with_prefix(&blocks_dir)
        .with_context(|| format!("cannot open block storage at {}", blocks_dir.display()))?;

    let engine = Engine::open(EngineArgs {
        wal_dir: data_dir.join("wal"),
        store: Arc::new(store),
        head: config.head.clone(),
        symbol_cache_bytes: config.query.symbol_cache_bytes,
    })
    .await
    .context("cannot open the storage engine")?;
    let ingest = Arc::new(IngestService::new(engine.clone(), config.limits.clone()));
    let query = Arc::new(QueryService::new(engine.clone(), config.query.clone()));
    let state = Arc::new(AppState {
        metrics: Metrics::new(ingest.metrics(), engine.clone()),
        ingest,
        query: query.clone(),
        multitenancy_enabled: config.multitenancy_enabled,
        ready: AtomicBool::new(true),
    });
    let flusher = tokio::spawn(engine.clone().run_flusher());

    let listener = TcpListener::bind(config.server.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "http server listening");

    // On SIGTERM/SIGINT: stop accepting, give requests in flight `shutdown_grace`, then flush.
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let flight_listener = TcpListener::bind(config.flight.addr)
        .await
        .with_context(|| format!("cannot listen on {} for Flight SQL", config.flight.addr))?;
    let flight_addr = flight_listener.local_addr()?;
    let auth = Authenticator::new(&config.flight, config.multitenancy_enabled)
        .map_err(anyhow::Error::msg)?;
    let flight_service = HearthFlightSql::new(query.clone(), auth);
    let mut flight_stopped = stopped.clone();
    let flight = tokio::spawn(hearth_flight::serve(
        flight_listener,
        flight_service,
        async move {
            let _ = flight_stopped.wait_for(|stop| *stop).await;
        },
    ));
    tracing::info!(addr = %flight_addr, "flight sql listening");

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
            tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: finishing requests in flight");
            let _ = stop.send(true);
            match tokio::time::timeout(config.server.shutdown_grace, &mut server).await {
                Ok(result) => result.context("http server failed")?,
                Err(_) => tracing::warn!("requests still in flight after the grace period; closing them"),
            }
        }
    }

    if let Ok(Err(e)) = tokio::time::timeout(config.server.shutdown_grace, flight).await {
        tracing::error!(error = %e, "flight sql server failed");
    }
    tracing::info!("flushing heads");
    engine
        .shutdown()
        .await
        .context("flush at shutdown failed")?;
    flusher.abort();
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
