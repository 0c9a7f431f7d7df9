//! A querier's workers: they pull jobs from every query-frontend gossip shows (Pyroscope's
//! queriers pull the same way), so adding a querier adds capacity with no reconfiguration.
//! Each frontend gets `max_concurrent` workers; each holds one Flight `DoExchange` open, runs
//! the jobs it receives on the querier's [`QueryService`] one at a time, answers, and stops a
//! job when told its client went away. A lost connection is re-made after a pause; a frontend
//! that leaves the cluster loses its workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::FlightData;
use arrow_flight::flight_service_client::FlightServiceClient;
use hearth_engine::ErrorKind;
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_ring::{InstanceState, Membership, Role};
use hearth_sql::job::{answer_to_wire, job_from_wire};
use hearth_sql::{JobRuntimes, QueryService};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;
use wire::scheduler_message::Message as FromScheduler;
use wire::worker_message::Message as ToScheduler;

use crate::wire::MAX_MESSAGE_BYTES;

/// Where one worker runs its jobs: worker `index` of every frontend shares runtime `index`.
struct Slot {
    query: Arc<QueryService>,
    runtimes: Arc<JobRuntimes>,
    index: usize,
}

/// How long a worker waits before connecting again after its exchange failed.
const RECONNECT: Duration = Duration::from_millis(500);

/// Keeps `concurrency` workers connected to each active query-frontend of `membership`,
/// running jobs on `query` (worker `i` of each frontend on job runtime `i`), until the
/// returned task is aborted.
pub fn start(
    membership: Arc<Membership>,
    query: Arc<QueryService>,
    concurrency: usize,
) -> hearth_sql::Result<JoinHandle<()>> {
    let runtimes = Arc::new(JobRuntimes::new(concurrency)?);
    Ok(tokio::spawn(async move {
        let querier = membership.node_id().to_string();
        let mut changes = membership.changes();
        // Frontend (id, generation, address) -> its workers.
        let mut running: HashMap<(String, u64, String), Vec<JoinHandle<()>>> = HashMap::new();
        loop {
            let frontends: Vec<(String, u64, String)> = changes
                .borrow_and_update()
                .iter()
                .filter(|n| n.has_role(Role::QueryFrontend) || n.has_role(Role::QueryScheduler))
                .filter(|n| n.state == InstanceState::Active)
                .filter(|n| !n.info.flight_addr.is_empty())
                .map(|n| (n.id.clone(), n.generation, n.info.flight_addr.clone()))
                .collect();
            running.retain(|frontend, workers| {
                let keep = frontends.contains(frontend);
                if !keep {
                    tracing::info!(frontend = %frontend.0, "query-frontend left: stopping its workers");
                    workers.iter().for_each(JoinHandle::abort);
                }
                keep
            });
            for frontend in frontends {
                if running.contains_key(&frontend) {
                    continue;
                }
                tracing::info!(frontend = %frontend.0, addr = %frontend.2, concurrency, "pulling query jobs");
                let workers = (0..concurrency.max(1))
                    .map(|index| {
                        let slot = Slot {
                            query: Arc::clone(&query),
                            runtimes: Arc::clone(&runtimes),
                            index,
                        };
                        tokio::spawn(work_for(frontend.2.clone(), querier.clone(), slot))
                    })
                    .collect();
                running.insert(frontend, workers);
            }
            if changes.changed().await.is_err() {
                break;
            }
        }
        running.values().flatten().for_each(JoinHandle::abort);
    }))
}

/// One worker of the frontend at `addr`: connected again after every failure.
async fn work_for(addr: String, querier: String, slot: Slot) {
    loop {
        if let Err(error) = exchange(&addr, &querier, &slot).await {
            tracing::debug!(addr, %error, "query worker exchange ended");
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

fn to_scheduler(message: ToScheduler) -> FlightData {
    FlightData {
        app_metadata: wire::WorkerMessage {
            message: Some(message),
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    }
}

/// One exchange: hello, then jobs in and answers out until the frontend ends it.
async fn exchange(addr: &str, querier: &str, slot: &Slot) -> Result<(), String> {
    let query = &slot.query;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad frontend address {addr}: {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (outbound, messages) = mpsc::channel(2);
    let hello = to_scheduler(ToScheduler::Hello(wire::WorkerHello {
        querier: querier.to_string(),
    }));
    outbound.send(hello).await.map_err(|e| e.to_string())?;
    let mut inbound = client
        .do_exchange(crate::receiver_stream(messages))
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    while let Some(data) = inbound.message().await.map_err(|e| e.to_string())? {
        let message = wire::SchedulerMessage::decode(data.app_metadata)
            .map_err(|e| format!("a scheduler message does not decode: {e}"))?;
        let job = match message.message {
            Some(FromScheduler::Job(job)) => job,
            // A cancel that crossed the answer: nothing runs.
            Some(FromScheduler::Cancel(_)) | None => continue,
        };
        let answer = match job_from_wire(job) {
            Err(error) => Err(error),
            Ok((tenant, job)) => {
                let mut timer = query.metrics().timer("job", job.name());
                let answer = tokio::select! {
                    answer = slot.runtimes.run_job(slot.index, query, &tenant, job) => answer,
                    // The job's client went away (or the frontend did): stop it.
                    message = inbound.message() => match message {
                        Ok(Some(_)) => Err(hearth_sql::Error::Invalid {
                            kind: ErrorKind::Unavailable,
                            message: "cancelled: the client went away".to_string(),
                        }),
                        Ok(None) => return Ok(()),
                        Err(status) => return Err(status.to_string()),
                    },
                };
                if answer.is_err() {
                    timer.failed();
                }
                answer
            }
        };
        outbound
            .send(to_scheduler(ToScheduler::Answer(answer_to_wire(answer))))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
