//! Query stages spread over the queriers with `datafusion-distributed`: a querier plans a
//! query as usual; the distributed planner cuts the plan at its repartitions and merges, and
//! sends the stages below them (block scans, filters, partial aggregates) to the queriers gossip
//! shows as tasks, over gRPC on their Flight ports. The stage above runs where the query was
//! planned and merges what the tasks stream back.
//!
//! - [`Spreading`] is the coordinating side (sql's `StageSpreading`): the planner, the
//!   queriers as workers, and three handlers. A block scan gets one task per
//!   `query.stage_bytes_per_task` of block files, up to one per querier; each block goes to the
//!   querier rendezvous hashing gives it among the live queriers, so a querier keeps reading
//!   the same blocks and its caches (footers, symbols) stay warm. Remote heads are scanned by
//!   the first task only (each ingester's rows once).
//! - [`stage_worker`] is the serving side: the gRPC service a querier runs stages in, with the
//!   tenant's session ([`QueryService::stage_state`]); a stage that reads files outside the
//!   tenant's folder of the bucket, or another tenant's heads, is refused. The service has no
//!   authentication of its own yet, like the other ports between components.
//! - [`PlanCodec`] carries Hearth's own nodes inside DataFusion's plan protobuf
//!   (`hearth.cluster.v1.PlanNode`): `ProfileScanExec` with its row filter and
//!   `RemoteScanExec`. Block scans are DataFusion's Parquet `DataSourceExec` and travel as
//!   such; `flamegraph`, `pprof`, `stack_frames` and `label` travel by name.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::memory::DataSourceExec;
use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion_distributed::grpc::DefaultChannelResolver;
use datafusion_distributed::{
    ChannelResolver, DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExt,
    DistributedLeafExec, LocalWorkerContext, RouteTasksEvent, RouteTasksEventResponse,
    ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse, SessionStateBuilderExt, Worker,
    WorkerChannel, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse, WorkerQueryContext,
    WorkerResolver, WorkerSessionBuilder,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use hearth_engine::ErrorKind;
use hearth_engine::dedupe::{KeepSets, SourceKeys};
use hearth_engine::model::{TenantId, TimeRange};
use hearth_engine::remote::{RemoteScan, RemoteScanExec};
use hearth_engine::schema::TableKind;
use hearth_engine::table::{BLOCKS_URL, ProfileScanExec, RowFilter, ScanSummary};
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_ring::{Membership, Role, rendezvous_owner};
use hearth_sql::{QueryService, StageSpreading};
use parking_lot::RwLock;
use prost::Message;
use url::Url;
use wire::plan_node::Node;

use crate::client::{IngesterDirectory, accepts_connections};

/// The gRPC service a querier runs other queriers' stages in.
pub use datafusion_distributed::Worker as StageWorker;

extensions_options! {
    /// The tenant whose query a stage belongs to: it travels with every stage sent to a querier.
    pub struct StageTenant {
        pub id: String, default = String::new()
    }
}

impl ConfigExtension for StageTenant {
    const PREFIX: &'static str = "hearth";
}

/// The queriers gossip shows as active, by their Flight address (sorted, so every handler of
/// one query sees them in the same order), without those whose Flight port refused a
/// connection in the last probe: a querier killed is left out within [`PROBE_EVERY`], before
/// gossip declares it dead.
#[derive(Debug, Clone)]
struct Queriers {
    membership: Arc<Membership>,
    unreachable: Arc<RwLock<HashSet<String>>>,
}

/// How often the Flight ports of the other queriers are probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The active queriers' ids and Flight addresses.
fn querier_addresses(membership: &Membership) -> Vec<(String, String)> {
    membership
        .active(Role::Querier)
        .into_iter()
        .filter(|n| !n.info.flight_addr.is_empty())
        .map(|n| (n.id, n.info.flight_addr))
        .collect()
}

impl Queriers {
    fn addresses(&self) -> Vec<(String, String)> {
        querier_addresses(&self.membership)
    }

    /// Probes the queriers' Flight ports until the last copy of `self` is dropped.
    fn probe(&self) {
        let membership = Arc::clone(&self.membership);
        let unreachable = Arc::downgrade(&self.unreachable);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let probes =
                    querier_addresses(&membership)
                        .into_iter()
                        .map(|(_, addr)| async move {
                            let answers = accepts_connections(&addr, PROBE_EVERY).await;
                            (addr, answers)
                        });
                let down: HashSet<String> = futures::future::join_all(probes)
                    .await
                    .into_iter()
                    .filter_map(|(addr, answers)| (!answers).then_some(addr))
                    .collect();
                let Some(unreachable) = unreachable.upgrade() else {
                    return;
                };
                *unreachable.write() = down;
            }
        });
    }
}

/// Where a querier's stage service answers: its Flight address.
fn querier_url(id: &str, addr: &str) -> Result<Url> {
    Url::parse(&format!("http://{addr}")).map_err(|e| {
        DataFusionError::Plan(format!(
            "querier {id} advertises a bad Flight address {addr:?}: {e}"
        ))
    })
}

impl WorkerResolver for Queriers {
    /// The live queriers; all of them when every one failed the last probe (a probe can time
    /// out under load), rather than none.
    fn get_urls(&self) -> Result<Vec<Url>> {
        let unreachable = self.unreachable.read().clone();
        let all = self.addresses();
        let reachable: Vec<&(String, String)> = all
            .iter()
            .filter(|(_, addr)| !unreachable.contains(addr))
            .collect();
        let chosen = match reachable.is_empty() {
            true => all.iter().collect(),
            false => reachable,
        };
        let mut urls = chosen
            .into_iter()
            .map(|(id, addr)| querier_url(id, addr))
            .collect::<Result<Vec<Url>>>()?;
        urls.sort();
        Ok(urls)
    }
}

/// Connections to the queriers, kept across queries. A querier that cannot be reached fails
/// the query as unavailable (a query-frontend tries it again, by then without that querier).
#[derive(Clone)]
struct Channels(DefaultChannelResolver);

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Channels")
    }
}

#[async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        self.0.get_worker_client_for_url(url).await.map_err(|e| {
            DataFusionError::External(Box::new(hearth_engine::Error::invalid(
                ErrorKind::Unavailable,
                format!("the querier at {url} is out of reach for a stage of this query: {e}"),
            )))
        })
    }
}

/// How a cluster querier's queries spread over the queriers (see the module documentation).
pub struct Spreading {
    queriers: Queriers,
    channels: Channels,
    /// This querier's own stage service: stages routed here run in-process, unencoded.
    local: OnceLock<Worker>,
    directory: Arc<IngesterDirectory>,
    bytes_per_task: u64,
}

impl Spreading {
    pub fn new(directory: Arc<IngesterDirectory>, bytes_per_task: u64) -> Self {
        let queriers = Queriers {
            membership: Arc::clone(directory.membership()),
            unreachable: Arc::default(),
        };
        queriers.probe();
        Spreading {
            queriers,
            channels: Channels(DefaultChannelResolver::default()),
            local: OnceLock::new(),
            directory,
            bytes_per_task: bytes_per_task.max(1),
        }
    }

    /// Stages routed to this querier (single-task ones always are) run on `worker` in-process.
    pub fn set_local_worker(&self, worker: Worker) {
        let _ = self.local.set(worker);
    }

    /// This querier's stage service, with the URL the other queriers know it by.
    fn local_worker(&self) -> Option<LocalWorkerContext> {
        let worker = self.local.get()?;
        let membership = &self.queriers.membership;
        let me = membership
            .nodes()
            .into_iter()
            .find(|n| n.id == membership.node_id())?;
        let url = querier_url(&me.id, &me.info.flight_addr).ok()?;
        Some(worker.to_local_worker_context(url))
    }
}

impl std::fmt::Debug for Spreading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spreading")
            .field("queriers", &self.queriers)
            .field("bytes_per_task", &self.bytes_per_task)
            .finish_non_exhaustive()
    }
}

impl StageSpreading for Spreading {
    fn coordinator(
        &self,
        tenant: &TenantId,
        state: SessionStateBuilder,
    ) -> Result<SessionStateBuilder> {
        let bytes_per_task = self.bytes_per_task;
        let desired_queriers = self.queriers.clone();
        let scale_queriers = self.queriers.clone();
        let route_queriers = self.queriers.clone();
        let state = match self.local_worker() {
            Some(local) => state.with_distributed_local_worker_context(local),
            None => state,
        };
        state
            .with_distributed_option_extension(StageTenant {
                id: tenant.to_string(),
            })
            .with_distributed_worker_resolver(self.queriers.clone())
            .with_distributed_channel_resolver(self.channels.clone())
            .with_distributed_user_codec(PlanCodec {
                directory: Arc::clone(&self.directory),
            })
            .with_distributed_desired_task_count_handler(move |event: DesiredTaskCountEvent<'_>| {
                desired_tasks(event, &desired_queriers, bytes_per_task)
            })
            .with_distributed_scale_up_leaf_node_handler(move |event: ScaleUpLeafNodeEvent<'_>| {
                scale_up(event, &scale_queriers)
            })
            .with_distributed_route_tasks_handler(move |event: RouteTasksEvent<'_>| {
                route(event, &route_queriers)
            })
            // Heads, blocks and remote heads of a scan share one stage's tasks.
            .with_distributed_children_isolator_unions(false)
            .map(|state| state.with_distributed_planner())
    }
}

/// A scan of block files (Parquet in the bucket), as the table providers plan it.
fn block_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    let scan = plan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    (scan.object_store_url == *BLOCKS_URL).then_some(scan)
}

/// The key a block file is placed by: its block's id (its `source` partition value), so all of
/// a block's files go to the same querier.
fn block_key(file: &PartitionedFile) -> String {
    match file.partition_values.first() {
        Some(value) => value.to_string(),
        None => file.object_meta.location.to_string(),
    }
}

/// The querier that owns `key` among `urls`.
fn owner<'a>(key: &str, urls: &'a [String]) -> Option<&'a str> {
    rendezvous_owner(key, urls.iter().map(String::as_str))
}

fn url_strings(queriers: &Queriers) -> Result<Vec<String>> {
    Ok(queriers.get_urls()?.iter().map(Url::to_string).collect())
}

/// Block scans: a task per `bytes_per_task` of files, at most one per querier and per file.
/// Remote heads: one task (the scale-up below gives the others empty partitions).
fn desired_tasks(
    event: DesiredTaskCountEvent<'_>,
    queriers: &Queriers,
    bytes_per_task: u64,
) -> Option<Result<DesiredTaskCountEventResponse>> {
    if event.plan.downcast_ref::<RemoteScanExec>().is_some() {
        return Some(Ok(DesiredTaskCountEventResponse::desired(1)));
    }
    let scan = block_scan(event.plan)?;
    let queriers = match queriers.get_urls() {
        Ok(urls) => urls.len() as u64,
        Err(e) => return Some(Err(e)),
    };
    let files = || scan.file_groups.iter().flat_map(|group| group.iter());
    let bytes: u64 = files().map(|f| f.object_meta.size).sum();
    let tasks = bytes
        .div_ceil(bytes_per_task)
        .min(queriers)
        .min(files().count() as u64)
        .max(1);
    Some(Ok(DesiredTaskCountEventResponse::desired(tasks as usize)))
}

/// Splits a scan over `event.task_count` tasks: block files by owner (a task reads the files
/// of one owner; with fewer tasks than owners, of several; with more, an owner's files are
/// halved until every task has some), remote heads all in the first task.
fn scale_up(
    event: ScaleUpLeafNodeEvent<'_>,
    queriers: &Queriers,
) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let tasks = event.task_count;
    if tasks <= 1 {
        return None;
    }
    let variants: Result<Vec<Arc<dyn ExecutionPlan>>> =
        if let Some(remote) = event.plan.downcast_ref::<RemoteScanExec>() {
            let empty = vec![None; remote.remotes().len()];
            (0..tasks)
                .map(|task| match task {
                    0 => Ok(Arc::clone(event.plan)),
                    _ => RemoteScanExec::new(empty.clone(), remote.request().clone())
                        .map(|exec| Arc::new(exec) as Arc<dyn ExecutionPlan>)
                        .map_err(DataFusionError::from),
                })
                .collect()
        } else {
            let scan = block_scan(event.plan)?;
            url_strings(queriers).map(|urls| block_variants(scan, event.plan, tasks, &urls))
        };
    Some(
        variants
            .and_then(|variants| DistributedLeafExec::try_new(Arc::clone(event.plan), variants))
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// `tasks` copies of a block scan, each with the files of its owners, in as many file groups as
/// the original has partitions (some possibly empty: the variants' partitions must agree).
fn block_variants(
    scan: &FileScanConfig,
    plan: &Arc<dyn ExecutionPlan>,
    tasks: usize,
    urls: &[String],
) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut by_owner: BTreeMap<&str, Vec<PartitionedFile>> = BTreeMap::new();
    for file in scan.file_groups.iter().flat_map(|group| group.iter()) {
        let owner = owner(&block_key(file), urls).unwrap_or_default();
        by_owner.entry(owner).or_default().push(file.clone());
    }
    let mut per_task: Vec<Vec<PartitionedFile>> = by_owner.into_values().collect();
    while per_task.len() < tasks {
        let Some(largest) = (0..per_task.len())
            .filter(|&i| per_task[i].len() > 1)
            .max_by_key(|&i| per_task[i].len())
        else {
            break;
        };
        let half = per_task[largest].len() / 2;
        let split = per_task[largest].split_off(half);
        per_task.push(split);
    }
    while per_task.len() > tasks {
        let extra = per_task.pop().unwrap_or_default();
        let index = per_task.len() % tasks;
        per_task[index].extend(extra);
    }
    per_task.resize(tasks, Vec::new());
    let partitions = plan.output_partitioning().partition_count().max(1);
    per_task
        .into_iter()
        .map(|files| {
            let mut groups = vec![Vec::new(); partitions];
            for (i, file) in files.into_iter().enumerate() {
                groups[i % partitions].push(file);
            }
            let mut variant = scan.clone();
            variant.file_groups = groups.into_iter().map(FileGroup::new).collect();
            DataSourceExec::from_data_source(variant) as Arc<dyn ExecutionPlan>
        })
        .collect()
}

/// Sends each task of a stage that scans blocks to the querier owning its blocks; tasks whose
/// owner already has a task, or with no blocks, or blocks of several owners, go to the
/// queriers left over.
fn route(
    event: RouteTasksEvent<'_>,
    queriers: &Queriers,
) -> Option<Result<RouteTasksEventResponse>> {
    let leaf = find_block_leaf(event.plan)?;
    let urls = match queriers.get_urls() {
        Ok(urls) if !urls.is_empty() => urls,
        Ok(_) => return None,
        Err(e) => return Some(Err(e)),
    };
    let names: Vec<String> = urls.iter().map(Url::to_string).collect();
    let mut taken = vec![false; urls.len()];
    let mut preferred: Vec<Option<usize>> = leaf
        .variants()
        .iter()
        .take(event.task_count)
        .map(|variant| {
            let scan = block_scan(variant)?;
            let owners: HashSet<&str> = scan
                .file_groups
                .iter()
                .flat_map(|group| group.iter())
                .filter_map(|file| owner(&block_key(file), &names))
                .collect();
            let index = match owners.len() {
                1 => names.iter().position(|n| owners.contains(n.as_str()))?,
                _ => return None,
            };
            (!std::mem::replace(&mut taken[index], true)).then_some(index)
        })
        .collect();
    preferred.resize(event.task_count, None);
    let unused: Vec<usize> = (0..urls.len()).filter(|&i| !taken[i]).collect();
    let mut spare = unused.into_iter().chain((0..urls.len()).cycle());
    let routed = preferred
        .into_iter()
        .map(|choice| urls[choice.or_else(|| spare.next()).unwrap_or(0)].clone())
        .collect();
    Some(Ok(RouteTasksEventResponse::new(routed)))
}

/// The block scan split over tasks in a stage's plan, if it has one.
fn find_block_leaf(plan: &Arc<dyn ExecutionPlan>) -> Option<&DistributedLeafExec> {
    if let Some(leaf) = plan.downcast_ref::<DistributedLeafExec>()
        && block_scan(leaf.original()).is_some()
    {
        return Some(leaf);
    }
    plan.children().into_iter().find_map(find_block_leaf)
}

/// The gRPC service a querier runs other queriers' stages in (mounted on its Flight port).
pub fn stage_worker(query: Arc<QueryService>, directory: Arc<IngesterDirectory>) -> Worker {
    Worker::from_session_builder(StageSessions { query, directory })
}

struct StageSessions {
    query: Arc<QueryService>,
    directory: Arc<IngesterDirectory>,
}

#[async_trait]
impl WorkerSessionBuilder for StageSessions {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> Result<SessionState> {
        let mut builder = ctx
            .builder
            .with_distributed_option_extension_from_headers::<StageTenant>(&ctx.headers)?
            .with_distributed_user_codec(PlanCodec {
                directory: Arc::clone(&self.directory),
            });
        let tenant = builder
            .config()
            .as_ref()
            .and_then(|config| config.options().extensions.get::<StageTenant>())
            .map(|t| t.id.clone())
            .unwrap_or_default();
        let tenant = TenantId::new(&tenant).map_err(|e| {
            DataFusionError::Plan(format!("a query stage names no valid tenant: {e}"))
        })?;
        let scope = tenant.clone();
        let builder = builder.with_distributed_worker_plan_rewrite_handler(
            move |event: WorkerPlanRewriteEvent<'_>| {
                within_tenant(&event.plan, &scope)?;
                Ok(WorkerPlanRewriteEventResponse::new(event.plan))
            },
        );
        self.query
            .stage_state(&tenant, builder)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// Refuses a stage that reads anything but `tenant`'s blocks and heads: files outside the
/// bucket or outside the tenant's folder, or remote heads of another tenant.
fn within_tenant(plan: &Arc<dyn ExecutionPlan>, tenant: &TenantId) -> Result<()> {
    let refuse = |what: String| {
        Err(DataFusionError::Plan(format!(
            "a query stage of tenant {tenant} reads {what}"
        )))
    };
    if let Some(scan) = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
    {
        if scan.object_store_url != *BLOCKS_URL {
            return refuse(format!("files of {}", scan.object_store_url.as_str()));
        }
        let folder = format!("{tenant}/");
        for file in scan.file_groups.iter().flat_map(|group| group.iter()) {
            let path = file.object_meta.location.as_ref();
            if !path.starts_with(&folder) {
                return refuse(path.to_string());
            }
        }
    }
    if let Some(remote) = plan.downcast_ref::<RemoteScanExec>()
        && remote.request().tenant != tenant.as_str()
    {
        return refuse(format!("heads of tenant {}", remote.request().tenant));
    }
    plan.children()
        .into_iter()
        .try_for_each(|child| within_tenant(child, tenant))
}

/// Hearth's execution nodes in DataFusion's plan protobuf (see the module documentation).
#[derive(Debug)]
pub struct PlanCodec {
    directory: Arc<IngesterDirectory>,
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = wire::PlanNode::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("a Hearth plan node: {e}")))?;
        match node.node {
            Some(Node::ProfileScan(scan)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(format!(
                        "ProfileScanExec has one input, got {}",
                        inputs.len()
                    )));
                };
                let (summary, filter) = profile_scan_from_wire(scan)?;
                Ok(Arc::new(ProfileScanExec::new(
                    summary,
                    Arc::clone(input),
                    filter,
                )?))
            }
            Some(Node::RemoteScan(scan)) => {
                let request = RemoteScan::try_from(scan.request.unwrap_or_default())?;
                let remotes = scan
                    .nodes
                    .iter()
                    .map(|node| match node.as_str() {
                        "" => Ok(None),
                        node => self.directory.remote(node).map(Some).ok_or_else(|| {
                            DataFusionError::Execution(format!(
                                "ingester {node} is not in this querier's view of the cluster"
                            ))
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(RemoteScanExec::new(remotes, request)?))
            }
            None => Err(DataFusionError::Internal(
                "an empty Hearth plan node".into(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let node = if let Some(scan) = node.downcast_ref::<ProfileScanExec>() {
            Node::ProfileScan(profile_scan_to_wire(scan))
        } else if let Some(scan) = node.downcast_ref::<RemoteScanExec>() {
            Node::RemoteScan(wire::RemoteScanNode {
                nodes: scan
                    .remotes()
                    .iter()
                    .map(|r| r.as_ref().map(|r| r.node().to_string()).unwrap_or_default())
                    .collect(),
                request: Some(scan.request().clone().into()),
            })
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to another querier",
                node.name()
            )));
        };
        wire::PlanNode { node: Some(node) }
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding a Hearth plan node: {e}")))
    }
}

fn profile_scan_to_wire(scan: &ProfileScanExec) -> wire::ProfileScanNode {
    let summary = scan.summary();
    wire::ProfileScanNode {
        table: summary.table.to_string(),
        heads_kept: summary.heads.0 as u64,
        heads_total: summary.heads.1 as u64,
        blocks_kept: summary.blocks.0 as u64,
        blocks_total: summary.blocks.1 as u64,
        start: summary.time.start,
        end: summary.time.end,
        matchers: summary.matchers.clone(),
        series_ids: summary.series_ids.map(|n| n as u64),
        filter: scan.filter().map(|filter| wire::RowFilter {
            start: filter.time.start,
            end: filter.time.end,
            series: filter.series.as_ref().map(|ids| {
                let mut ids: Vec<u64> = ids.iter().copied().collect();
                ids.sort_unstable();
                wire::SeriesIds { ids }
            }),
            series_column: filter.series_column as u32,
            time_column: filter.time_column as u32,
            keep: filter
                .keep
                .as_ref()
                .map(|(sets, _)| sets.all_sources().into_iter().map(Into::into).collect())
                .unwrap_or_default(),
            dedupe: filter.keep.is_some(),
            source_column: filter.keep.as_ref().map_or(0, |(_, c)| *c as u32),
            projection: filter.projection.as_ref().map(|columns| wire::Columns {
                indices: columns.iter().map(|&c| c as u32).collect(),
            }),
        }),
    }
}

fn profile_scan_from_wire(scan: wire::ProfileScanNode) -> Result<(ScanSummary, Option<RowFilter>)> {
    let table = TableKind::ALL
        .into_iter()
        .find(|k| k.name() == scan.table)
        .ok_or_else(|| DataFusionError::Plan(format!("unknown table {:?}", scan.table)))?;
    let summary = ScanSummary {
        table: table.name(),
        heads: (scan.heads_kept as usize, scan.heads_total as usize),
        blocks: (scan.blocks_kept as usize, scan.blocks_total as usize),
        time: TimeRange::new(scan.start, scan.end),
        matchers: scan.matchers,
        series_ids: scan.series_ids.map(|n| n as usize),
    };
    let filter = match scan.filter {
        None => None,
        Some(filter) => {
            let keep = match filter.dedupe {
                false => None,
                true => {
                    let keys: Vec<SourceKeys> = filter.keep.into_iter().map(Into::into).collect();
                    let sets = KeepSets::from_source_keys(keys)?;
                    Some((Arc::new(sets), filter.source_column as usize))
                }
            };
            Some(RowFilter {
                time: TimeRange::new(filter.start, filter.end),
                series: filter
                    .series
                    .map(|s| Arc::new(s.ids.into_iter().collect::<HashSet<u64>>())),
                series_column: filter.series_column as usize,
                time_column: filter.time_column as usize,
                keep,
                projection: filter
                    .projection
                    .map(|p| p.indices.into_iter().map(|c| c as usize).collect()),
            })
        }
    };
    Ok((summary, filter))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
    use datafusion::datasource::table_schema::TableSchema;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::physical_plan::empty::EmptyExec;
    use hearth_engine::schema;

    use super::*;

    fn urls() -> Vec<String> {
        [
            "http://127.0.0.1:1/",
            "http://127.0.0.1:2/",
            "http://127.0.0.1:3/",
        ]
        .map(String::from)
        .to_vec()
    }

    /// A scan of `blocks` block files in three file groups.
    fn scan(blocks: usize) -> FileScanConfig {
        let kind = TableKind::Samples;
        let table_schema = TableSchema::builder(kind.schema())
            .with_table_partition_cols(vec![Arc::new(schema::source_field())])
            .build();
        let mut builder = FileScanConfigBuilder::new(
            BLOCKS_URL.clone(),
            Arc::new(ParquetSource::new(table_schema)),
        );
        let mut groups = vec![Vec::new(); 3];
        for block in 0..blocks {
            let id = ScalarValue::Dictionary(
                Box::new(DataType::UInt16),
                Box::new(ScalarValue::Utf8(Some(format!("block-{block}")))),
            );
            let file = PartitionedFile::new(format!("t/block-{block}/samples.parquet"), 100)
                .with_partition_values(vec![id]);
            groups[block % 3].push(file);
        }
        builder = builder.with_file_groups(groups.into_iter().map(FileGroup::new).collect());
        builder.build()
    }

    fn files_of(variant: &Arc<dyn ExecutionPlan>) -> Vec<String> {
        block_scan(variant)
            .expect("a block scan")
            .file_groups
            .iter()
            .flat_map(|group| group.iter().map(block_key))
            .collect()
    }

    #[test]
    fn block_variants_keep_each_owners_blocks_together_and_lose_none() {
        let scan = scan(12);
        let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(scan.clone());
        let all: BTreeSet<String> = scan
            .file_groups
            .iter()
            .flat_map(|group| group.iter().map(block_key))
            .collect();
        let urls = urls();
        let owners: BTreeSet<&str> = all.iter().filter_map(|key| owner(key, &urls)).collect();
        assert_eq!(owners.len(), 3, "twelve blocks fall on all three queriers");
        for tasks in [1, 2, 3, 5] {
            let variants = block_variants(&scan, &plan, tasks, &urls);
            assert_eq!(variants.len(), tasks);
            let mut seen = Vec::new();
            for variant in &variants {
                assert_eq!(
                    variant.output_partitioning().partition_count(),
                    plan.output_partitioning().partition_count(),
                    "variants keep the scan's partitions"
                );
                let files = files_of(variant);
                let owners: BTreeSet<&str> =
                    files.iter().filter_map(|key| owner(key, &urls)).collect();
                if tasks >= 3 {
                    assert_eq!(
                        owners.len(),
                        1,
                        "{tasks} tasks: a task reads one owner's blocks"
                    );
                }
                seen.extend(files);
            }
            assert_eq!(
                seen.len(),
                all.len(),
                "{tasks} tasks: every block read once"
            );
            assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
        }
    }

    #[test]
    fn a_stage_reads_only_its_tenants_blocks() {
        let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(scan(3));
        within_tenant(&plan, &TenantId::new("t").unwrap()).expect("tenant t's own blocks");
        let refused = within_tenant(&plan, &TenantId::new("other").unwrap()).unwrap_err();
        assert!(
            refused.to_string().contains("tenant other reads t/block-"),
            "{refused}"
        );
        let mut local = scan(1);
        local.object_store_url = ObjectStoreUrl::local_filesystem();
        let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(local);
        let refused = within_tenant(&plan, &TenantId::new("t").unwrap()).unwrap_err();
        assert!(
            refused.to_string().contains("files of file://"),
            "{refused}"
        );
    }

    #[test]
    fn a_profile_scan_crosses_the_wire_whole() {
        let keep = KeepSets::from_source_keys(vec![SourceKeys {
            source: "block-1".into(),
            series: vec![7, 9],
            times: vec![100, 200],
        }])
        .unwrap();
        let filter = RowFilter {
            time: TimeRange::new(10, 20),
            series: Some(Arc::new([3u64, 5].into_iter().collect())),
            series_column: 2,
            time_column: 3,
            keep: Some((Arc::new(keep), 4)),
            projection: Some(vec![0, 1]),
        };
        let summary = ScanSummary {
            table: "samples",
            heads: (0, 0),
            blocks: (2, 3),
            time: TimeRange::new(10, 20),
            matchers: vec!["service_name=\"a\"".into()],
            series_ids: Some(2),
        };
        let input: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(TableKind::Samples.table_schema()));
        let exec = ProfileScanExec::new(summary.clone(), input, Some(filter)).unwrap();
        let wire =
            wire::ProfileScanNode::decode(profile_scan_to_wire(&exec).encode_to_vec().as_slice())
                .unwrap();
        let (decoded, filter) = profile_scan_from_wire(wire).unwrap();
        assert_eq!(decoded.to_string(), summary.to_string());
        let filter = filter.expect("the row filter travels");
        assert_eq!(filter.time, TimeRange::new(10, 20));
        assert_eq!(
            filter.series.as_deref(),
            Some(&[3u64, 5].into_iter().collect::<HashSet<u64>>())
        );
        assert_eq!((filter.series_column, filter.time_column), (2, 3));
        assert_eq!(filter.projection, Some(vec![0, 1]));
        let (keep, column) = filter.keep.expect("the keep sets travel");
        assert_eq!(column, 4);
        assert!(keep.keeps("block-1", 7, 100) && keep.keeps("block-1", 9, 200));
        assert!(!keep.keeps("block-1", 7, 200));
        assert!(keep.keeps("another source", 7, 200));
    }
}
