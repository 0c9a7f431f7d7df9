//! The query-scheduler over Flight: queriers pull work. Each querier worker opens one
//! `DoExchange` to a query-frontend and says hello; the scheduler sends it the next job of the
//! queue ([`JobQueue::next`], tenants in turn) and waits for the answer, telling the worker to
//! cancel if the query's client goes away. A worker that disconnects with a job in hand gives
//! it back to the queue, and another querier runs it. The worker side is [`crate::worker`].

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_sql::job::{answer_from_wire, job_to_wire};
use hearth_sql::queue::{JobQueue, Lease};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use wire::scheduler_message::Message as ToWorker;
use wire::worker_message::Message as FromWorker;

/// A query-frontend's Flight service: the scheduler's end of the queriers' exchanges.
#[derive(Debug, Clone)]
pub struct SchedulerFlight {
    queue: Arc<JobQueue>,
}

impl SchedulerFlight {
    pub fn new(queue: Arc<JobQueue>) -> Self {
        SchedulerFlight { queue }
    }
}

/// Serves a scheduler's Flight service on `listener` until `shutdown` completes.
pub async fn serve_scheduler(
    listener: TcpListener,
    service: SchedulerFlight,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    crate::serve_internal(listener, service, shutdown).await
}

fn to_worker(message: ToWorker) -> FlightData {
    FlightData {
        app_metadata: wire::SchedulerMessage {
            message: Some(message),
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    }
}

/// What a worker sent, decoded; `None` when it went away.
async fn from_worker(inbound: &mut Streaming<FlightData>) -> Result<Option<FromWorker>, String> {
    match inbound.message().await {
        Ok(Some(data)) => wire::WorkerMessage::decode(data.app_metadata)
            .map(|m| m.message)
            .map_err(|e| format!("a worker message does not decode: {e}")),
        Ok(None) => Ok(None),
        Err(status) => Err(status.message().to_string()),
    }
}

/// What happened while a job was out.
enum Outcome {
    Answered(wire::JobAnswer),
    Cancelled,
    Gone(String),
}

/// One worker's exchange: jobs out, answers back, until either side stops.
async fn serve_worker(
    queue: Arc<JobQueue>,
    mut inbound: Streaming<FlightData>,
    outbound: mpsc::Sender<Result<FlightData, Status>>,
) {
    let querier = match from_worker(&mut inbound).await {
        Ok(Some(FromWorker::Hello(hello))) => hello.querier,
        other => {
            let _ = outbound
                .send(Err(Status::invalid_argument(format!(
                    "a worker's exchange starts with a hello, got {:?}",
                    other.map(|m| m.is_some())
                ))))
                .await;
            return;
        }
    };
    let _connected = queue.metrics().worker();
    tracing::debug!(querier, "query worker connected");
    loop {
        let mut lease: Lease = tokio::select! {
            lease = queue.next() => lease,
            // Between jobs a worker sends nothing: anything here is its end.
            _ = from_worker(&mut inbound) => break,
        };
        let job = job_to_wire(lease.tenant(), lease.job());
        if outbound
            .send(Ok(to_worker(ToWorker::Job(job))))
            .await
            .is_err()
        {
            lease.retry(&format!("querier {querier} went away"));
            break;
        }
        let mut cancelled = false;
        let answer = loop {
            let outcome = tokio::select! {
                message = from_worker(&mut inbound) => match message {
                    Ok(Some(FromWorker::Answer(answer))) => Outcome::Answered(answer),
                    Ok(Some(FromWorker::Hello(_))) => Outcome::Gone("a second hello".into()),
                    Ok(None) => Outcome::Gone(format!("querier {querier} went away")),
                    Err(error) => Outcome::Gone(format!("querier {querier}: {error}")),
                },
                () = lease.cancelled(), if !cancelled => Outcome::Cancelled,
            };
            match outcome {
                Outcome::Cancelled => {
                    cancelled = true;
                    queue.metrics().cancelled();
                    let cancel = to_worker(ToWorker::Cancel(wire::CancelJob {}));
                    let _ = outbound.send(Ok(cancel)).await;
                }
                Outcome::Answered(answer) => break Ok(answer),
                Outcome::Gone(why) => break Err(why),
            }
        };
        match answer {
            Ok(answer) => lease.finish(answer_from_wire(answer)),
            Err(why) => {
                lease.retry(&why);
                break;
            }
        }
    }
    tracing::debug!(querier, "query worker disconnected");
}

fn only_exchange<T>() -> Result<T, Status> {
    Err(Status::unimplemented(
        "a query-frontend's Flight port serves queriers' DoExchange only; Flight SQL is on the queriers",
    ))
}

#[tonic::async_trait]
impl FlightService for SchedulerFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let (outbound, answers) = mpsc::channel(2);
        tokio::spawn(serve_worker(
            Arc::clone(&self.queue),
            request.into_inner(),
            outbound,
        ));
        Ok(Response::new(Box::pin(crate::receiver_stream(answers))))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        only_exchange()
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        only_exchange()
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        only_exchange()
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        only_exchange()
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        only_exchange()
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        only_exchange()
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        only_exchange()
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        only_exchange()
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        only_exchange()
    }
}
