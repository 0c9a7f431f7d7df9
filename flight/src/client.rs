//! The querier's and distributor's side of Flight between components: an [`IngesterClient`]
//! per ingester (pushes, scans, aggregates), [`RemoteIngester`] (an ingester's heads as the
//! engine's `RemoteHeads`), and [`IngesterDirectory`], the live ingesters from gossip, which is
//! also the query layer's `RemoteExecutor`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, Ticket};
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::{BoxFuture, join_all};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use hearth_engine::model::TenantId;
use hearth_engine::remote::{RemoteHeads, RemoteScan};
use hearth_engine::{ErrorKind, RemoteDirectory};
use hearth_ring::{Membership, Node, Role};
use hearth_sql::{RemoteAggregate, RemoteExecutor};
use parking_lot::Mutex;
use prost::Message;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::status;
use crate::wire::{MAX_MESSAGE_BYTES, PUSH_ACTION, PushRecords, RemoteRequest};

/// A connection to one ingester (made on first use, re-made by tonic after failures).
#[derive(Debug, Clone)]
pub struct IngesterClient {
    node: String,
    addr: String,
    client: FlightServiceClient<Channel>,
}

impl IngesterClient {
    pub fn new(node: &str, addr: &str) -> Result<Self> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| Error::Address {
                node: node.to_string(),
                addr: addr.to_string(),
                source,
            })?
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
    pub async fn push(&self, tenant: &TenantId, records: Vec<bytes::Bytes>) -> Result<()> {
        let body = PushRecords {
            tenant: tenant.to_string(),
            records,
        }
        .encode_to_vec();
        let mut client = self.client.clone();
        let pushed = async move {
            let mut results = client
                .do_action(Action {
                    r#type: PUSH_ACTION.to_string(),
                    body: body.into(),
                })
                .await?
                .into_inner();
            while results.message().await?.is_some() {}
            Ok::<_, Status>(())
        };
        pushed.await.map_err(|s| self.peer_error(s))
    }

    /// A status the ingester answered, as an error naming it.
    fn peer_error(&self, status: Status) -> Error {
        Error::Peer {
            node: self.node.clone(),
            addr: self.addr.clone(),
            kind: status::kind(status.code()),
            message: status.message().to_string(),
        }
    }

    /// The batches a `DoGet` of `request` returns.
    fn get(&self, request: RemoteRequest) -> BoxStream<'static, Result<RecordBatch, FlightError>> {
        let mut client = self.client.clone();
        let ticket = request.encode();
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
        self.get(RemoteRequest::Scan(scan))
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
        self.get(RemoteRequest::Aggregate(request))
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
    RecordBatch::try_new(Arc::clone(schema), columns)
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
        let rows = self
            .client
            .scan(request, Arc::clone(&schema))
            .map_err(move |e| {
                DataFusionError::External(Box::new(hearth_engine::Error::invalid(
                    ErrorKind::Unavailable,
                    format!("reading the heads of ingester {node} ({addr}): {e}"),
                )))
            });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }
}

/// The live ingesters, from gossip, with one client each.
#[derive(Debug)]
pub struct IngesterDirectory {
    membership: Arc<Membership>,
    replication_factor: usize,
    clients: Mutex<HashMap<(String, String), IngesterClient>>,
}

impl IngesterDirectory {
    /// Ingesters of `membership`, which writes to `replication_factor` of them.
    pub fn new(membership: Arc<Membership>, replication_factor: usize) -> Self {
        IngesterDirectory {
            membership,
            replication_factor,
            clients: Mutex::default(),
        }
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The client of ingester `node` at its advertised Flight address.
    /// A suspected one (declared dead by gossip) is found too: [`RemoteDirectory::remotes`]
    /// reads it when it still answers.
    pub fn client(&self, node: &str) -> Option<IngesterClient> {
        let found = self
            .membership
            .nodes()
            .into_iter()
            .chain(self.membership.unreachable())
            .find(|n| n.id == node && n.has_role(Role::Ingester))?;
        self.client_at(&found.id, &found.info.flight_addr)
    }

    /// Ingester `node`'s heads (a querier running a plan stage another querier planned).
    pub fn remote(&self, node: &str) -> Option<Arc<dyn RemoteHeads>> {
        self.client(node)
            .map(|client| Arc::new(RemoteIngester { client }) as Arc<dyn RemoteHeads>)
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

#[async_trait]
impl RemoteDirectory for IngesterDirectory {
    /// The live ingesters. A write is acknowledged by a quorum of its replicas, so a profile
    /// may be on only `quorum` of them: with more ingesters gone without leaving than
    /// `replication_factor - quorum`, some profile may be on none of the live ones, and the
    /// query fails (unavailable) rather than leave it out.
    ///
    /// Gossip only suspects: a busy ingester misses rounds and is declared dead while it still
    /// serves. A suspect is counted lost only when its Flight port refuses or ignores a
    /// connection; one that answers is read like any other.
    async fn remotes(&self) -> hearth_engine::Result<Vec<Arc<dyn RemoteHeads>>> {
        let mut ingesters: Vec<Node> = self
            .membership
            .nodes()
            .into_iter()
            .filter(|n| n.has_role(Role::Ingester))
            .collect();
        let suspects = self
            .membership
            .unreachable()
            .into_iter()
            .filter(|n| n.has_role(Role::Ingester));
        let probed = join_all(suspects.map(|node| async move {
            let answers = accepts_connections(&node.info.flight_addr, PROBE_TIMEOUT).await;
            (node, answers)
        }))
        .await;
        let mut lost = Vec::new();
        for (node, answers) in probed {
            if answers {
                ingesters.push(node);
            } else {
                lost.push(node.id);
            }
        }
        let rf = self.replication_factor.max(1);
        let tolerated = rf - hearth_ring::quorum(rf);
        if lost.len() > tolerated {
            return Err(hearth_engine::Error::invalid(
                ErrorKind::Unavailable,
                format!(
                    "ingesters out of reach (gone without leaving the ring): {}; with replication \
                     factor {rf} a query can do without {tolerated}, so it could miss profiles",
                    lost.join(", ")
                ),
            ));
        }
        Ok(ingesters
            .into_iter()
            .filter_map(|n| self.client_at(&n.id, &n.info.flight_addr))
            .map(|client| Arc::new(RemoteIngester { client }) as Arc<dyn RemoteHeads>)
            .collect())
    }
}

/// How long a suspected ingester has to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether something accepts a TCP connection at `addr` within `within`.
pub(crate) async fn accepts_connections(addr: &str, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

impl RemoteExecutor for IngesterDirectory {
    fn aggregate(
        &self,
        node: &str,
        request: RemoteAggregate,
    ) -> BoxFuture<'static, hearth_sql::Result<Vec<RecordBatch>>> {
        let Some(client) = self.client(node) else {
            let message = format!("ingester {node} left the ring during the query");
            return futures::future::ready(Err(hearth_sql::Error::unavailable(message))).boxed();
        };
        async move {
            client.aggregate(request).await.map_err(|e| {
                hearth_sql::Error::unavailable(format!(
                    "aggregating the heads of ingester {} ({}): {e}",
                    client.node, client.addr
                ))
            })
        }
        .boxed()
    }
}
