//! Flight between cluster components.
//!
//! An ingester serves [`IngesterFlight`]: `DoAction("hearth.push")` stores replicated profiles
//! (WAL records, as the distributor normalised them) and `DoGet` answers a [`RemoteScan`] of
//! its heads or computes a [`RemoteAggregate`] over them (the ticket is a JSON
//! [`RemoteRequest`]). Queriers and distributors reach it through an [`IngesterClient`]; a
//! [`RemoteIngester`] is the querier's `RemoteHeads` over it, and [`IngesterDirectory`] lists
//! the live ingesters from gossip.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use hearth_engine::model::TenantId;
use hearth_engine::remote::{RemoteAggregate, RemoteHeads, RemoteRequest, RemoteScan, serve_scan};
use hearth_engine::{Engine, ErrorKind, HeadsOnly, ProfileBatch, RemoteDirectory};
use hearth_ring::Membership;
use hearth_sql::{QueryConfig, QueryService};
use parking_lot::Mutex;
use prost::Message;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

/// The action that stores replicated profiles on an ingester.
pub const PUSH_ACTION: &str = "hearth.push";

/// Messages between cluster components may carry a whole push.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The body of a [`PUSH_ACTION`]: one tenant's profiles as WAL records.
#[derive(Clone, PartialEq, Message)]
pub struct PushRecords {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub records: Vec<bytes::Bytes>,
}

/// A gRPC status for an engine error kind.
pub(crate) fn kind_status(kind: ErrorKind, message: String) -> Status {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::MalformedProfile => {
            Status::invalid_argument(message)
        }
        ErrorKind::ResourceExhausted | ErrorKind::PayloadTooLarge => {
            Status::resource_exhausted(message)
        }
        ErrorKind::Unauthenticated => Status::unauthenticated(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::Unimplemented => Status::unimplemented(message),
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

fn tenant(name: &str) -> Result<TenantId, Status> {
    TenantId::new(name).map_err(|e| Status::invalid_argument(format!("bad tenant: {e}")))
}

fn engine_status(error: hearth_engine::Error) -> Status {
    kind_status(error.kind(), error.to_string())
}

/// An ingester's Flight service.
#[derive(Debug, Clone)]
pub struct IngesterFlight {
    engine: Arc<Engine>,
    /// Pushed-down aggregates, over the engine's heads only.
    query: Arc<QueryService>,
}

impl IngesterFlight {
    pub fn new(engine: Arc<Engine>, config: QueryConfig) -> Self {
        let heads = Arc::new(HeadsOnly(engine.clone()));
        IngesterFlight {
            engine,
            query: Arc::new(QueryService::new(heads, config)),
        }
    }

    async fn push(&self, body: &[u8]) -> Result<(), Status> {
        let push = PushRecords::decode(body)
            .map_err(|e| Status::invalid_argument(format!("bad {PUSH_ACTION} body: {e}")))?;
        let tenant = tenant(&push.tenant)?;
        // Decode every record first: a push is stored whole or not at all.
        let batches = push
            .records
            .iter()
            .map(|r| ProfileBatch::from_wal_record(r))
            .collect::<hearth_engine::Result<Vec<_>>>()
            .map_err(engine_status)?;
        for batch in batches {
            self.engine
                .append(&tenant, batch)
                .await
                .map_err(engine_status)?;
        }
        Ok(())
    }
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served by an ingester's internal Flight service"
    )))
}

#[tonic::async_trait]
impl FlightService for IngesterFlight {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket: RemoteRequest = serde_json::from_slice(&request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
        let (schema, batches) = match ticket {
            RemoteRequest::Scan(scan) => {
                let tenant = tenant(&scan.tenant)?;
                let (_, _, schema) = scan.projection().map_err(engine_status)?;
                let snapshot = self.engine.snapshot(&tenant);
                let batches = serve_scan(&snapshot, &scan).await.map_err(engine_status)?;
                (schema, batches)
            }
            RemoteRequest::Aggregate(aggregate) => {
                let batches = self
                    .query
                    .serve_partial(aggregate)
                    .await
                    .map_err(crate::service::status)?;
                let schema = batches
                    .first()
                    .map(RecordBatch::schema)
                    .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
                (schema, batches)
            }
        };
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .with_max_flight_data_size(4 << 20)
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented("DoPut")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        match action.r#type.as_str() {
            PUSH_ACTION => {
                self.push(&action.body).await?;
                Ok(Response::new(Box::pin(futures::stream::empty())))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action {other:?}; an ingester knows {PUSH_ACTION:?}"
            ))),
        }
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let push = ActionType {
            r#type: PUSH_ACTION.to_string(),
            description: "store replicated profiles (WAL records)".to_string(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(push)]))))
    }
}

/// Serves an ingester's Flight service on `listener` until `shutdown` completes.
pub async fn serve_ingester(
    listener: TcpListener,
    service: IngesterFlight,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    crate::serve_flight(listener, server, shutdown).await
}

/// A connection to one ingester (made on first use, re-made by tonic after failures).
#[derive(Debug, Clone)]
pub struct IngesterClient {
    node: String,
    addr: String,
    client: FlightServiceClient<Channel>,
}

impl IngesterClient {
    pub fn new(node: &str, addr: &str) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad flight address {addr:?} of ingester {node}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(30));
        let client = FlightServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(IngesterClient {
            node: node.to_string(),
            addr: addr.to_string(),
            client,
        })
    }

    /// Stores `records` (WAL records) of `tenant` on the ingester.
    pub async fn push(&self, tenant: &TenantId, records: Vec<bytes::Bytes>) -> Result<(), Status> {
        let body = PushRecords {
            tenant: tenant.to_string(),
            records,
        }
        .encode_to_vec();
        let mut client = self.client.clone();
        let mut results = client
            .do_action(Action {
                r#type: PUSH_ACTION.to_string(),
                body: body.into(),
            })
            .await?
            .into_inner();
        while results.message().await?.is_some() {}
        Ok(())
    }

    /// The batches a `DoGet` of `request` returns.
    fn get(&self, request: &RemoteRequest) -> BoxStream<'static, Result<RecordBatch, FlightError>> {
        let mut client = self.client.clone();
        let ticket = match serde_json::to_vec(request) {
            Ok(ticket) => ticket,
            Err(e) => {
                return futures::stream::once(async move {
                    Err(FlightError::ExternalError(Box::new(e)))
                })
                .boxed();
            }
        };
        futures::stream::once(async move {
            let response = client
                .do_get(Ticket {
                    ticket: ticket.into(),
                })
                .await
                .map_err(|status| FlightError::Tonic(Box::new(status)))?;
            let data = response
                .into_inner()
                .map_err(|s| FlightError::Tonic(Box::new(s)));
            Ok::<_, FlightError>(FlightRecordBatchStream::new_from_flight_data(data))
        })
        .try_flatten()
        .boxed()
    }

    /// The rows of `scan`, cast to `schema`.
    pub fn scan(
        &self,
        scan: RemoteScan,
        schema: SchemaRef,
    ) -> BoxStream<'static, Result<RecordBatch, FlightError>> {
        let node = self.node.clone();
        self.get(&RemoteRequest::Scan(scan))
            .map(move |batch| {
                let batch = batch?;
                conform(batch, &schema).map_err(|e| {
                    FlightError::ProtocolError(format!("rows from ingester {node}: {e}"))
                })
            })
            .boxed()
    }

    /// The partial aggregate `request` of the ingester's heads.
    pub async fn aggregate(
        &self,
        request: RemoteAggregate,
    ) -> Result<Vec<RecordBatch>, FlightError> {
        self.get(&RemoteRequest::Aggregate(request))
            .try_collect()
            .await
    }
}

/// `batch` with `schema` (Flight may deliver dictionary columns unpacked).
fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// An ingester's heads, as a querier reads them.
#[derive(Debug)]
pub struct RemoteIngester {
    client: IngesterClient,
}

impl RemoteHeads for RemoteIngester {
    fn node(&self) -> &str {
        &self.client.node
    }

    fn scan(&self, request: RemoteScan, schema: SchemaRef) -> SendableRecordBatchStream {
        let node = self.client.node.clone();
        let addr = self.client.addr.clone();
        let rows = self.client.scan(request, schema.clone()).map_err(move |e| {
            DataFusionError::External(Box::new(hearth_engine::Error::invalid(
                ErrorKind::Unavailable,
                format!("reading the heads of ingester {node} ({addr}): {e}"),
            )))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }

    fn aggregate(
        &self,
        request: RemoteAggregate,
    ) -> BoxFuture<'static, hearth_engine::Result<Vec<RecordBatch>>> {
        let client = self.client.clone();
        async move {
            client.aggregate(request).await.map_err(|e| {
                hearth_engine::Error::invalid(
                    ErrorKind::Unavailable,
                    format!(
                        "aggregating the heads of ingester {} ({}): {e}",
                        client.node, client.addr
                    ),
                )
            })
        }
        .boxed()
    }
}

/// The live ingesters, from gossip, with one client each.
#[derive(Debug)]
pub struct IngesterDirectory {
    membership: Arc<Membership>,
    clients: Mutex<HashMap<(String, String), IngesterClient>>,
}

impl IngesterDirectory {
    pub fn new(membership: Arc<Membership>) -> Self {
        IngesterDirectory {
            membership,
            clients: Mutex::default(),
        }
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The client of ingester `node` at its advertised Flight address.
    pub fn client(&self, node: &str) -> Option<IngesterClient> {
        let found = self
            .membership
            .nodes()
            .into_iter()
            .find(|n| n.id == node && n.has_role(crate::INGESTER_ROLE))?;
        self.client_at(&found.id, &found.info.flight_addr)
    }

    fn client_at(&self, node: &str, addr: &str) -> Option<IngesterClient> {
        let key = (node.to_string(), addr.to_string());
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(&key) {
            return Some(client.clone());
        }
        match IngesterClient::new(node, addr) {
            Ok(client) => {
                clients.insert(key, client.clone());
                Some(client)
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping an ingester");
                None
            }
        }
    }
}

impl RemoteDirectory for IngesterDirectory {
    fn remotes(&self) -> Vec<Arc<dyn RemoteHeads>> {
        self.membership
            .nodes()
            .into_iter()
            .filter(|n| n.has_role(crate::INGESTER_ROLE))
            .filter_map(|n| self.client_at(&n.id, &n.info.flight_addr))
            .map(|client| Arc::new(RemoteIngester { client }) as Arc<dyn RemoteHeads>)
            .collect()
    }
}
