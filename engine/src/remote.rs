//! Heads held by other processes, and replicated profiles counted once.
//!
//! In a cluster a querier's snapshot holds blocks (read from the shared bucket) and
//! [`RemoteHeads`]: ingesters it asks for rows of one table at a time with a [`RemoteScan`]
//! (time range, series ids and services pushed down), or for a partial aggregate of their
//! heads with a [`RemoteAggregate`] (flame graph, pprof or series states, merged by the
//! querier). The transport lives elsewhere (Flight, in `hearth-flight`); [`serve_scan`] is what
//! the ingester runs for a scan, and the query layer runs the aggregates.
//!
//! With replication every profile is held by up to RF sources (heads of different ingesters,
//! blocks of different origins). [`Dedupe`] reads the `profiles` table's keys (source, series,
//! time, profile id) for a scan's time range and assigns each (series, time) to one source, the
//! one holding the most of its profile ids (so a replica that missed a write is not chosen); the
//! scans of `samples` and `profiles` then keep a row only from the source its profile was
//! assigned to ([`KeepSets`]). A pushed-down aggregate carries the keep sets of the node's own
//! sources ([`KeepSets::for_node`]), so the ingester applies the same choice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType, UInt16Type, UInt64Type};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{col, lit};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::db::TenantSnapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{TenantId, TimeRange};
use crate::schema::{self, TableKind};
use crate::table::{ProfileTable, register_tables, time_filter};

/// A request for rows of one table of one tenant's heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteScan {
    pub tenant: String,
    pub table: String,
    /// The columns to return, in this order (the table's `source` column included).
    pub columns: Vec<String>,
    /// Half-open time range in Unix nanoseconds; for `series`, series overlapping it.
    pub start: i64,
    pub end: i64,
    /// Only these series (by fingerprint), when set.
    pub series_ids: Option<Vec<u64>>,
    /// Only these services' rows of the symbol tables, when set.
    pub services: Option<Vec<String>>,
}

impl RemoteScan {
    /// A scan of `kind` returning the columns of `schema` (the table schema or a projection
    /// of it), over all time, every series and service.
    pub fn new(tenant: &TenantId, kind: TableKind, schema: &SchemaRef) -> Self {
        RemoteScan {
            tenant: tenant.to_string(),
            table: kind.name().to_string(),
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            start: TimeRange::ALL.start,
            end: TimeRange::ALL.end,
            series_ids: None,
            services: None,
        }
    }

    /// The table, the indices of the requested columns in its schema, and the schema they
    /// make; an unknown table or column is an error naming it.
    pub fn projection(&self) -> Result<(TableKind, Vec<usize>, SchemaRef)> {
        let kind = self.kind()?;
        let table_schema = kind.table_schema();
        let projection = self
            .columns
            .iter()
            .map(|c| {
                table_schema.index_of(c).map_err(|_| {
                    Error::invalid(
                        ErrorKind::InvalidArgument,
                        format!("table {} has no column {c:?}", kind.name()),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let schema = Arc::new(table_schema.project(&projection)?);
        Ok((kind, projection, schema))
    }

    pub fn kind(&self) -> Result<TableKind> {
        TableKind::ALL
            .into_iter()
            .find(|k| k.name() == self.table)
            .ok_or_else(|| {
                Error::invalid(
                    ErrorKind::InvalidArgument,
                    format!("unknown table {:?}", self.table),
                )
            })
    }

    pub fn time(&self) -> TimeRange {
        TimeRange::new(self.start, self.end)
    }
}

/// What a [`RemoteAggregate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partial {
    /// `flamegraph` states of the selected samples: one binary column `state`.
    Flamegraph,
    /// `pprof` states of the selected samples: one binary column `state`.
    Pprof,
    /// Per series and time bucket `(t - step, t]` on the grid `start_ms + k * step_ms`, the
    /// sum of profile totals and the number of profiles: columns `series_id`, `bucket` (k),
    /// `total`, `profiles`.
    Series { start_ms: i64, step_ms: i64 },
}

/// The (series, time) keys one source contributes, as a pushed-down aggregate carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceKeys {
    pub source: String,
    pub series: Vec<u64>,
    pub times: Vec<i64>,
}

/// A request for a partial aggregate of one tenant's heads: the part of a query a querier
/// pushes down to an ingester.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteAggregate {
    pub tenant: String,
    pub partial: Partial,
    /// Half-open time range in Unix nanoseconds.
    pub start: i64,
    pub end: i64,
    /// The selected series (by fingerprint).
    pub series_ids: Vec<u64>,
    /// The services of those series (whose symbols a stack merge needs).
    pub services: Vec<String>,
    /// Only samples of these spans, when set.
    pub span_ids: Option<Vec<u64>>,
    /// With replica deduplication: what each of the node's sources contributes (a source not
    /// listed contributes everything).
    pub keep: Option<Vec<SourceKeys>>,
}

impl RemoteAggregate {
    pub fn time(&self) -> TimeRange {
        TimeRange::new(self.start, self.end)
    }
}

/// A ticket of an ingester's `DoGet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteRequest {
    Scan(RemoteScan),
    Aggregate(RemoteAggregate),
}

/// Heads in another process (an ingester), scanned table by table or aggregated in place.
pub trait RemoteHeads: Send + Sync + fmt::Debug {
    /// The node holding the heads.
    fn node(&self) -> &str;
    /// The rows `request` asks for, with `schema` (the table's schema projected to
    /// `request.columns`). Errors surface in the stream.
    fn scan(&self, request: RemoteScan, schema: SchemaRef) -> SendableRecordBatchStream;
    /// The partial aggregate `request` asks for, computed by the node.
    fn aggregate(&self, request: RemoteAggregate) -> BoxFuture<'static, Result<Vec<RecordBatch>>>;
}

/// One remote node's rows as a DataFusion partition.
#[derive(Debug)]
pub(crate) struct RemotePartition {
    pub remote: Arc<dyn RemoteHeads>,
    pub request: RemoteScan,
    pub schema: SchemaRef,
}

impl PartitionStream for RemotePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.remote.scan(self.request.clone(), self.schema.clone())
    }
}

/// Runs `request` over `snapshot`'s heads (an ingester's side of a [`RemoteScan`]).
pub async fn serve_scan(
    snapshot: &TenantSnapshot,
    request: &RemoteScan,
) -> Result<Vec<RecordBatch>> {
    use datafusion::catalog::TableProvider;
    let (kind, projection, _) = request.projection()?;
    let range = request.time();
    let mut filters = Vec::new();
    match kind {
        TableKind::Samples | TableKind::Profiles if range != TimeRange::ALL => {
            filters.push(time_filter(&range));
        }
        TableKind::Series if range != TimeRange::ALL => {
            filters.push(col(schema::MAX_TIME).gt_eq(crate::table::timestamp_lit(range.start)));
            filters.push(col(schema::MIN_TIME).lt(crate::table::timestamp_lit(range.end)));
        }
        _ => {}
    }
    if let (Some(ids), true) = (
        &request.series_ids,
        matches!(
            kind,
            TableKind::Samples | TableKind::Profiles | TableKind::Series
        ),
    ) {
        filters
            .push(col(schema::SERIES_ID).in_list(ids.iter().map(|&id| lit(id)).collect(), false));
    }
    let snapshot = Arc::new(snapshot.heads_only());
    let table = ProfileTable::new(
        kind,
        snapshot,
        Arc::new(object_store::memory::InMemory::new()),
    );
    let ctx = SessionContext::new();
    let state = ctx.state();
    let plan = table
        .scan(&state, Some(&projection), &filters, None)
        .await?;
    let task = ctx.task_ctx();
    let mut batches = Vec::new();
    let service_column = request
        .columns
        .iter()
        .position(|c| c == schema::SERVICE_NAME);
    for partition in 0..plan.properties().output_partitioning().partition_count() {
        let mut stream = plan.execute(partition, task.clone())?;
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            let batch = batch?;
            let batch = match (&request.services, service_column, kind.is_symbols()) {
                (Some(services), Some(column), true) => keep_services(batch, column, services)?,
                _ => batch,
            };
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
    }
    Ok(batches)
}

/// The rows of a symbol batch whose service is one of `services`.
fn keep_services(batch: RecordBatch, column: usize, services: &[String]) -> Result<RecordBatch> {
    let names = arrow::compute::cast(batch.column(column), &arrow::datatypes::DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let keep: arrow::array::BooleanArray = names
        .iter()
        .map(|n| Some(n.is_some_and(|n| services.iter().any(|s| s == n))))
        .collect();
    Ok(arrow::compute::filter_record_batch(&batch, &keep)?)
}

/// For each source, the (series, time) keys whose rows it contributes; a source not listed
/// contributes everything.
#[derive(Debug, Default)]
pub struct KeepSets {
    sources: HashMap<String, HashSet<(u64, i64)>>,
    /// The sources each remote node holds.
    nodes: HashMap<String, BTreeSet<String>>,
}

impl KeepSets {
    pub fn keeps(&self, source: &str, series: u64, time: i64) -> bool {
        self.sources
            .get(source)
            .is_none_or(|keys| keys.contains(&(series, time)))
    }

    /// The keep sets of the sources remote `node` holds, to send with a pushed-down aggregate.
    pub fn for_node(&self, node: &str) -> Vec<SourceKeys> {
        let Some(sources) = self.nodes.get(node) else {
            return Vec::new();
        };
        sources
            .iter()
            .map(|source| {
                let mut keys: Vec<(u64, i64)> = self
                    .sources
                    .get(source)
                    .map(|k| k.iter().copied().collect())
                    .unwrap_or_default();
                keys.sort_unstable();
                SourceKeys {
                    source: source.clone(),
                    series: keys.iter().map(|k| k.0).collect(),
                    times: keys.iter().map(|k| k.1).collect(),
                }
            })
            .collect()
    }

    /// Keep sets received with a pushed-down aggregate.
    pub fn from_source_keys(keys: Vec<SourceKeys>) -> Result<Self> {
        let mut sources = HashMap::new();
        for SourceKeys {
            source,
            series,
            times,
        } in keys
        {
            if series.len() != times.len() {
                return Err(Error::invalid(
                    ErrorKind::InvalidArgument,
                    format!(
                        "keep set of {source}: {} series for {} times",
                        series.len(),
                        times.len()
                    ),
                ));
            }
            sources.insert(source, series.into_iter().zip(times).collect());
        }
        Ok(KeepSets {
            sources,
            nodes: HashMap::new(),
        })
    }

    /// Assigns every (series, time) to one of the sources holding it: the one with the most of
    /// its profile ids; among equals, one picked by the key, so the work spreads over replicas.
    pub fn assign(keys: impl IntoIterator<Item = (String, u64, i64, String)>) -> Self {
        type Holders = BTreeMap<String, BTreeSet<String>>;
        let mut by_key: HashMap<(u64, i64), Holders> = HashMap::new();
        let mut sources: HashMap<String, HashSet<(u64, i64)>> = HashMap::new();
        for (source, series, time, profile_id) in keys {
            sources.entry(source.clone()).or_default();
            by_key
                .entry((series, time))
                .or_default()
                .entry(source)
                .or_default()
                .insert(profile_id);
        }
        for ((series, time), holders) in by_key {
            let most = holders.values().map(BTreeSet::len).max().unwrap_or(0);
            let best: Vec<&String> = holders
                .iter()
                .filter(|(_, ids)| ids.len() == most)
                .map(|(source, _)| source)
                .collect();
            let pick = (series ^ time as u64) as usize % best.len();
            if let Some(keys) = sources.get_mut(best[pick]) {
                keys.insert((series, time));
            }
        }
        KeepSets {
            sources,
            nodes: HashMap::new(),
        }
    }
}

/// What a keep set was computed for: a time range and, when set, only these series (sorted).
type KeepScope = (TimeRange, Option<Vec<u64>>);

/// Replica deduplication of one snapshot: keep sets per time range and series, computed once
/// each.
#[derive(Debug, Default)]
pub struct Dedupe {
    computed: Mutex<Vec<(KeepScope, Arc<KeepSets>)>>,
    /// Keep sets decided elsewhere (by the querier of a pushed-down aggregate), for any range.
    fixed: Option<Arc<KeepSets>>,
}

impl Dedupe {
    /// Deduplication by keep sets already computed.
    pub fn fixed(keep: Arc<KeepSets>) -> Self {
        Dedupe {
            computed: Mutex::default(),
            fixed: Some(keep),
        }
    }

    /// The keep sets for scans of `range` and, when set, of only the series `series` (the
    /// sets then say nothing of other series: scans must filter them out).
    pub async fn keep_sets(
        &self,
        snapshot: &TenantSnapshot,
        store: &Arc<dyn ObjectStore>,
        range: TimeRange,
        series: Option<&BTreeSet<u64>>,
    ) -> Result<Arc<KeepSets>> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let scope: KeepScope = (range, series.map(|s| s.iter().copied().collect()));
        if let Some((_, found)) = self.computed.lock().iter().find(|(s, _)| *s == scope) {
            return Ok(found.clone());
        }
        let series_ids = scope.1.clone();
        let columns = [
            schema::SOURCE,
            schema::SERIES_ID,
            schema::TIME,
            "profile_id",
        ];
        // The snapshot's own sources through DataFusion, each remote node's asked directly, so
        // the keys tell which node holds which source.
        let local = TenantSnapshot {
            dedupe: None,
            remotes: Vec::new(),
            ..snapshot.clone()
        };
        let ctx = SessionContext::new();
        register_tables(&ctx, Arc::new(local), store.clone())?;
        let mut df = ctx.table(TableKind::Profiles.name()).await?;
        if range != TimeRange::ALL {
            df = df.filter(time_filter(&range))?;
        }
        if let Some(ids) = &series_ids {
            df = df.filter(
                col(schema::SERIES_ID).in_list(ids.iter().map(|&id| lit(id)).collect(), false),
            )?;
        }
        let batches = df
            .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())?
            .collect()
            .await?;
        let mut keys = Vec::new();
        profile_keys(&batches, &mut keys)?;

        let table_schema = TableKind::Profiles.table_schema();
        let indices = columns
            .iter()
            .map(|c| table_schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = Arc::new(table_schema.project(&indices)?);
        let remote_keys = snapshot.remotes.iter().map(|remote| {
            let request = RemoteScan {
                start: range.start,
                end: range.end,
                series_ids: series_ids.clone(),
                ..RemoteScan::new(&snapshot.tenant, TableKind::Profiles, &schema)
            };
            let stream = remote.scan(request, schema.clone());
            async move {
                let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await?;
                Ok::<_, Error>((remote.node().to_string(), batches))
            }
        });
        let mut nodes = HashMap::new();
        for (node, batches) in futures::future::try_join_all(remote_keys).await? {
            let first = keys.len();
            profile_keys(&batches, &mut keys)?;
            let sources: BTreeSet<String> = keys[first..].iter().map(|k| k.0.clone()).collect();
            nodes.insert(node, sources);
        }
        let mut sets = KeepSets::assign(keys);
        sets.nodes = nodes;
        let sets = Arc::new(sets);
        self.computed.lock().push((scope, sets.clone()));
        Ok(sets)
    }
}

/// Appends the (source, series, time, profile id) rows of `batches` to `keys`.
fn profile_keys(batches: &[RecordBatch], keys: &mut Vec<(String, u64, i64, String)>) -> Result<()> {
    for batch in batches {
        let sources = batch.column(0).as_dictionary::<UInt16Type>();
        let source_names = sources.values().as_string::<i32>();
        let series = batch.column(1).as_primitive::<UInt64Type>();
        let times = batch.column(2).as_primitive::<TimestampNanosecondType>();
        let ids = arrow::compute::cast(batch.column(3), &arrow::datatypes::DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let source = source_names.value(sources.keys().value(row) as usize);
            keys.push((
                source.to_string(),
                series.value(row),
                times.value(row),
                if ids.is_null(row) {
                    String::new()
                } else {
                    ids.value(row).to_string()
                },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: &str, series: u64, time: i64, id: &str) -> (String, u64, i64, String) {
        (source.into(), series, time, id.into())
    }

    #[test]
    fn each_profile_is_kept_from_one_replica() {
        let sets = KeepSets::assign([
            key("a", 1, 10, "p1"),
            key("b", 1, 10, "p1"),
            key("c", 1, 10, "p1"),
            key("a", 2, 10, "p2"),
            key("b", 2, 10, "p2"),
        ]);
        for (series, time, holders) in [(1, 10, ["a", "b", "c"].as_slice()), (2, 10, &["a", "b"])] {
            let kept = holders
                .iter()
                .filter(|s| sets.keeps(s, series, time))
                .count();
            assert_eq!(kept, 1, "series {series}");
        }
        // A source that was not asked about keeps everything.
        assert!(sets.keeps("other", 1, 10));
        // A key no replica reported is not kept from a listed source.
        assert!(!sets.keeps("a", 3, 10));
    }

    #[test]
    fn the_replica_missing_a_profile_is_not_chosen() {
        // Two profiles share series and time; replica b missed the second.
        let sets = KeepSets::assign([
            key("a", 1, 10, "p1"),
            key("a", 1, 10, "p2"),
            key("b", 1, 10, "p1"),
        ]);
        assert!(sets.keeps("a", 1, 10));
        assert!(!sets.keeps("b", 1, 10));
    }

    #[test]
    fn a_node_gets_the_keep_sets_of_its_own_sources() {
        let mut sets = KeepSets::assign([
            key("head-a", 1, 10, "p1"),
            key("head-b", 1, 10, "p1"),
            key("head-a", 2, 20, "p2"),
            key("block-c", 2, 20, "p2"),
        ]);
        sets.nodes = HashMap::from([
            ("node-a".to_string(), BTreeSet::from(["head-a".to_string()])),
            ("node-b".to_string(), BTreeSet::from(["head-b".to_string()])),
        ]);
        let mut received = Vec::new();
        for node in ["node-a", "node-b"] {
            let sent = sets.for_node(node);
            assert_eq!(sent.len(), 1, "{node}");
            // Through the ticket's encoding and back.
            let sent: Vec<SourceKeys> =
                serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
            received.push(KeepSets::from_source_keys(sent).unwrap());
        }
        for (series, time, source, node) in [
            (1, 10, "head-a", 0),
            (1, 10, "head-b", 1),
            (2, 20, "head-a", 0),
        ] {
            assert_eq!(
                received[node].keeps(source, series, time),
                sets.keeps(source, series, time),
                "{source} {series} {time}"
            );
        }
        // head-a and head-b tie on (1, 10): one of them holds nothing assigned, and still
        // travels (len 1 above) so that it keeps nothing. Lists must pair up.
        assert!(
            KeepSets::from_source_keys(vec![SourceKeys {
                source: "x".into(),
                series: vec![1],
                times: vec![],
            }])
            .is_err()
        );
        assert_eq!(sets.for_node("node-z"), Vec::new());
    }
}
