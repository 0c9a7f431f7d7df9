//! The query-scheduler over Flight: queriers pull work. Each querier worker opens one
//! `DoExchange` to a query-frontend and says hello; the scheduler sends it the next job of the
//! queue ([`JobQueue::next`], tenants in turn) and waits for the answer, telling the worker to
//! cancel if the query's client goes away. A worker that disconnects with a job in hand gives
//! it back to the queue, and another querier runs it. The worker side is [`crate::worker`].
//!
//! A separate query-scheduler also takes query-frontends' jobs: a `DoAction` of type
//! [`RUN_JOB`] carries one job and answers when it has run (the frontend's side is
//! [`Schedulers`]). A frontend that goes away drops the call, which cancels the job.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use async_trait::async_trait;
use futures::stream::BoxStream;
use hearth_engine::model::TenantId;
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_ring::{Membership, Role, rendezvous_owner};
use hearth_sql::job::{answer_from_wire, answer_to_wire, job_from_wire, job_to_wire};
use hearth_sql::queue::{JobQueue, Lease};
use hearth_sql::{Job, JobAnswer, JobRunner};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use wire::scheduler_message::Message as ToWorker;
use wire::worker_message::Message as FromWorker;

use crate::wire::MAX_MESSAGE_BYTES;

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
        "a query-frontend's or query-scheduler's Flight port serves queriers' DoExchange and \
         frontends' run-job action only; Flight SQL is on the queriers",
    ))
}

/// The action a query-frontend runs one job through a query-scheduler with: the body is a
/// `hearth.cluster.v1.QueryJob`, the one result a `JobAnswer`.
pub const RUN_JOB: &str = "hearth.run-job";

/// A query-frontend's jobs, queued in the query-scheduler gossip shows for the tenant
/// (rendezvous hashing of the tenant over the active schedulers, so a tenant's jobs share one
/// queue), or in the frontend's own queue when there is none or it cannot be reached.
#[derive(Debug)]
pub struct Schedulers {
    membership: Arc<Membership>,
    local: Arc<JobQueue>,
    clients: parking_lot::Mutex<HashMap<String, FlightServiceClient<Channel>>>,
}

impl Schedulers {
    pub fn new(membership: Arc<Membership>, local: Arc<JobQueue>) -> Self {
        Schedulers {
            membership,
            local,
            clients: parking_lot::Mutex::default(),
        }
    }

    /// The scheduler of `tenant`: its node id and Flight address.
    fn scheduler_of(&self, tenant: &TenantId) -> Option<(String, String)> {
        let schedulers: Vec<(String, String)> = self
            .membership
            .active(Role::QueryScheduler)
            .into_iter()
            .filter(|n| !n.info.flight_addr.is_empty())
            .map(|n| (n.id, n.info.flight_addr))
            .collect();
        let owner = rendezvous_owner(
            tenant.as_str(),
            schedulers.iter().map(|(id, _)| id.as_str()),
        )?
        .to_string();
        schedulers.into_iter().find(|(id, _)| *id == owner)
    }

    fn client(&self, addr: &str) -> Result<FlightServiceClient<Channel>, String> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let client = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// `job` run through the scheduler at `addr`; `Err` with why when the scheduler could not
    /// take it (the answer, even a failed one, is `Ok`).
    async fn run_at(
        &self,
        addr: &str,
        tenant: &TenantId,
        job: &Job,
    ) -> Result<hearth_sql::Result<JobAnswer>, String> {
        let mut client = self.client(addr)?;
        let action = Action {
            r#type: RUN_JOB.to_string(),
            body: job_to_wire(tenant, job).encode_to_vec().into(),
        };
        let mut results = client
            .do_action(action)
            .await
            .map_err(|status| status.message().to_string())?
            .into_inner();
        let result = results
            .message()
            .await
            .map_err(|status| status.message().to_string())?
            .ok_or("the scheduler answered nothing")?;
        let answer = wire::JobAnswer::decode(result.body)
            .map_err(|e| format!("the scheduler's answer does not decode: {e}"))?;
        Ok(answer_from_wire(answer))
    }
}

#[async_trait]
impl JobRunner for Schedulers {
    async fn run(&self, tenant: &TenantId, job: Job) -> hearth_sql::Result<JobAnswer> {
        if let Some((id, addr)) = self.scheduler_of(tenant) {
            match self.run_at(&addr, tenant, &job).await {
                Ok(answer) => return answer,
                Err(why) => {
                    tracing::warn!(scheduler = %id, %addr, %why, "query-scheduler out of reach: queueing the job here");
                }
            }
        }
        self.local.run(tenant, job).await
    }
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
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != RUN_JOB {
            return only_exchange();
        }
        let job = wire::QueryJob::decode(action.body)
            .map_err(|e| Status::invalid_argument(format!("a query job does not decode: {e}")))?;
        let (tenant, job) = job_from_wire(job).map_err(crate::status::from_query)?;
        // Dropped when the frontend goes away: the job is cancelled with it.
        let answer = self.queue.run(&tenant, job).await;
        let body = answer_to_wire(answer).encode_to_vec().into();
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(arrow_flight::Result { body })
        }))))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        only_exchange()
    }
}
