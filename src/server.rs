//! Listeners and lifecycle: binds the HTTP (and Flight) ports, has `roles` build the services
//! of the process's target, serves them, and shuts down gracefully (stop accepting, finish
//! requests, flush heads, leave the ring).

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use hearth_ring::{InstanceState, Role};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::cluster::Addresses;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::roles::{self, FlightService};

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    let listener = TcpListener::bind(config.server.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http_addr))?;
    let addr = listener.local_addr()?;
    // The port answers from now on: `/ready` with 503 and the start-up's progress, `/metrics`,
    // until the services are built and the full router takes over.
    let metrics = Metrics::new(&config.target.to_string());
    let router = Arc::new(RwLock::new(http::starting_router(Arc::clone(&metrics))));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut server = {
        let mut stopped = stopped.clone();
        tokio::spawn(
            axum::serve(listener, switch(Arc::clone(&router)))
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .into_future(),
        )
    };
    tracing::info!(%addr, target = %config.target, "http port open: /ready answers 503 until start-up is done");

    let bucket = crate::storage::open(&config.storage).await?;
    let store = Arc::clone(&bucket.store);
    tracing::info!(blocks = %config.storage.describe(), "block storage opened");
    let flight_listener = match roles::serves_flight(config.target) {
        false => None,
        true => Some(
            TcpListener::bind(config.flight.addr)
                .await
                .with_context(|| format!("cannot listen on {} for Flight", config.flight.addr))?,
        ),
    };
    let addresses = Addresses {
        node_id: crate::cluster::node_id(&config, addr.port()),
        http: addr,
        flight: match &flight_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        },
    };

    let services = tokio::select! {
        services = roles::build(&config, Arc::clone(&store), &addresses, &metrics) => services?,
        () = shutdown_signal() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    let engine = services.engine.clone();
    let compactor_metrics = services.compactor.as_ref().map(|c| Arc::clone(&c.metrics));
    // Stopped by dropping it at any point: a merge cut short is finished or redone later.
    let compactor = match services.compactor {
        Some(task) => Some(
            task.spawn(bucket.separate_client(&config.storage)?)
                .context("cannot start the compactor thread")?,
        ),
        None => None,
    };
    let membership = services.membership.clone();
    let scrapes = Arc::new(crate::scrape::Scrapes::new(&config.scrape_configs)?);
    let mut tasks = services.tasks;
    tasks.extend(scrapes.spawn(
        Arc::clone(&services.ingest),
        membership.clone(),
        config.target,
    ));
    let ring_member = membership.clone().filter(|_| services.ring_member);
    metrics.add_services(
        services.ingest.metrics(),
        services.query.metrics(),
        services.scheduler.as_deref(),
        engine.clone(),
        compactor_metrics,
        Arc::clone(&bucket.stats),
    );
    let state = Arc::new(AppState {
        metrics,
        ingest: services.ingest,
        query: services.query,
        multitenancy_enabled: config.multitenancy_enabled,
        // The roles whose queries read the whole cluster (an ingester sees its heads only).
        serves_ui: !matches!(config.target, Role::Ingester | Role::Compactor),
        ready: AtomicBool::new(true),
        membership: membership.clone(),
        engine: engine.clone(),
        scrapes,
    });
    let flusher = engine.clone().map(|e| tokio::spawn(e.run_flusher()));
    *router.write() = http::router(Arc::clone(&state));
    tracing::info!(%addr, target = %config.target, node = %addresses.node_id, data_dir = %data_dir.display(), "http server listening");

    let mut flight_stopped = stopped.clone();
    let flight_shutdown = async move {
        let _ = flight_stopped.wait_for(|stop| *stop).await;
    };
    let flight = match (flight_listener, services.flight) {
        (Some(listener), Some(FlightService::Ingester(service))) => {
            tracing::info!(addr = %listener.local_addr()?, "ingester flight listening");
            Some(tokio::spawn(hearth_flight::ingester::serve_ingester(
                listener,
                service,
                flight_shutdown,
            )))
        }
        (Some(listener), Some(FlightService::Scheduler(service))) => {
            tracing::info!(addr = %listener.local_addr()?, "query scheduler flight listening");
            Some(tokio::spawn(hearth_flight::scheduler::serve_scheduler(
                listener,
                service,
                flight_shutdown,
            )))
        }
        (Some(listener), Some(FlightService::Sql(service, stages))) => {
            tracing::info!(addr = %listener.local_addr()?, stages = stages.is_some(), "flight sql listening");
            Some(tokio::spawn(hearth_flight::serve(
                listener,
                service,
                stages.map(|worker| *worker),
                flight_shutdown,
            )))
        }
        _ => None,
    };
    if let Some(member) = &ring_member {
        member.set_state(InstanceState::Active).await;
        tracing::info!(node = %addresses.node_id, "active in the ring");
    }

    // On SIGTERM/SIGINT: stop accepting, give requests in flight `shutdown_grace`, then flush.
    tokio::select! {
        result = &mut server => result.context("http server stopped")?.context("http server failed")?,
        () = shutdown_signal() => {
            state.ready.store(false, Ordering::Release);
            if let Some(member) = &ring_member {
                // Distributors stop choosing it; queriers keep reading it until it is gone.
                member.set_state(InstanceState::Leaving).await;
            }
            tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: finishing requests in flight");
            let _ = stop.send(true);
            match tokio::time::timeout(config.server.shutdown_grace, &mut server).await {
                Ok(result) => result.context("http server stopped")?.context("http server failed")?,
                Err(_) => tracing::warn!("requests still in flight after the grace period; closing them"),
            }
        }
    }

    // A querier stops taking jobs; the frontends give the ones it held to other queriers.
    for task in tasks {
        task.abort();
    }
    state.scrapes.stop();
    if let Some(flight) = flight
        && let Ok(Ok(Err(e))) = tokio::time::timeout(config.server.shutdown_grace, flight).await
    {
        tracing::error!(error = %e, "flight server failed");
    }
    if let Some(compactor) = compactor {
        compactor.stop().await;
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
        membership.leave().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A router whose routes are those `current` holds at each request: the start-up's, then the
/// full API's.
fn switch(current: Arc<RwLock<Router>>) -> Router {
    Router::new().fallback(move |request: Request| {
        let router = current.read().clone();
        async move {
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
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
