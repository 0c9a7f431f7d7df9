//! An ingester's Flight service: `DoAction("hearth.push")` stores replicated profiles (WAL
//! records, as the distributor normalised them) and `DoGet` answers a scan of its heads or
//! computes a partial aggregate over them (the ticket is a [`RemoteRequest`]). The query work is
//! `hearth-sql`'s ([`QueryService::serve_scan`], [`QueryService::serve_partial`]) over the
//! engine's heads only; this file translates.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::TryStreamExt;
use hearth_engine::model::TenantId;
use hearth_engine::{Engine, HeadsOnly, ProfileBatch};
use hearth_sql::{QueryConfig, QueryService};
use prost::Message;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

use crate::status;
use crate::wire::{PUSH_ACTION, PushRecords, RemoteRequest};

fn tenant(name: &str) -> Result<TenantId, Status> {
    TenantId::new(name).map_err(|e| Status::invalid_argument(format!("bad tenant: {e}")))
}

/// An ingester's Flight service.
#[derive(Debug, Clone)]
pub struct IngesterFlight {
    engine: Arc<Engine>,
    /// Scans and pushed-down aggregates, over the engine's heads only.
    query: Arc<QueryService>,
}

impl IngesterFlight {
    pub fn new(engine: Arc<Engine>, config: QueryConfig) -> Self {
        let heads = Arc::new(HeadsOnly(Arc::clone(&engine)));
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
            .map_err(status::from_engine)?;
        for batch in batches {
            self.engine
                .append(&tenant, batch)
                .await
                .map_err(status::from_engine)?;
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
        let ticket = RemoteRequest::decode(&request.into_inner().ticket)?;
        let (schema, batches) = match ticket {
            RemoteRequest::Scan(scan) => {
                let (_, _, schema) = scan.projection().map_err(status::from_engine)?;
                let batches = self
                    .query
                    .serve_scan(&scan)
                    .await
                    .map_err(status::from_query)?;
                (schema, batches)
            }
            RemoteRequest::Aggregate(aggregate) => {
                let batches = self
                    .query
                    .serve_partial(aggregate)
                    .await
                    .map_err(status::from_query)?;
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
    crate::serve_internal(listener, service, shutdown).await
}
