//! hearth-flight: Arrow Flight, for people and for the cluster.
//!
//! It owns the public Arrow Flight SQL server: statements, prepared statements with parameters,
//! `GetSqlInfo`, `GetCatalogs`, `GetDbSchemas`, `GetTables` (with schemas) and `GetTableTypes`,
//! so pandas/polars through ADBC, JDBC tools and Grafana's Flight SQL datasource can query
//! profiles. Every call names one tenant (a bearer token's, else `x-scope-orgid`, else
//! `anonymous`), and every statement is planned and run by `hearth-sql`: this crate translates
//! and authenticates, nothing more. Between cluster components, an ingester ([`ingester`])
//! takes replicated pushes and serves scans and partial aggregates of its heads; queriers and
//! distributors reach it through [`client`] (the engine's `RemoteHeads` and the query layer's
//! `RemoteExecutor` over Flight) and find it through gossip. [`wire`] holds what crosses the
//! network, [`status`] the one mapping between error kinds and gRPC codes. A query-frontend's
//! (or a separate query-scheduler's) [`scheduler`] hands jobs to the queriers' [`worker`]s over
//! `DoExchange`, and queriers spread
//! the stages of large queries over each other ([`stages`], with `datafusion-distributed`).

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod ingester;
pub mod scheduler;
pub mod service;
pub mod stages;
pub mod status;
pub mod wire;
pub mod worker;

use std::future::Future;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

pub use auth::Authenticator;
pub use config::FlightConfig;
pub use error::{Error, Result};
pub use service::HearthFlightSql;

/// Serves Flight SQL on `listener` until `shutdown` completes; with `stages` (a cluster
/// querier), also the service other queriers send query stages to ([`stages`]).
pub async fn serve(
    listener: TcpListener,
    service: HearthFlightSql,
    stages: Option<datafusion_distributed::Worker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_service(FlightServiceServer::new(service))
        .add_optional_service(stages.map(datafusion_distributed::Worker::into_worker_server))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// The messages sent into `receiver`, as a stream that ends when every sender is dropped.
pub(crate) fn receiver_stream<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// Serves a Flight service between cluster components (messages may carry a whole push or a
/// merged profile) on `listener` until `shutdown` completes.
pub(crate) async fn serve_internal<S: FlightService>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(wire::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(wire::MAX_MESSAGE_BYTES);
    serve_flight(listener, server, shutdown).await
}

/// Serves a Flight service on `listener` until `shutdown` completes. `TCP_NODELAY` is set:
/// without it each small request/response waits on the peer's delayed ACK (about 40 ms).
pub(crate) async fn serve_flight<S: FlightService>(
    listener: TcpListener,
    server: FlightServiceServer<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
