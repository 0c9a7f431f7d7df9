//! DataFusion table providers: one per logical table, each over a tenant's heads and blocks.
//!
//! `scan()` does the metadata work: it keeps the heads and blocks whose time range overlaps the
//! filters, drops blocks whose service names or profile types cannot match, and keeps only the
//! matching series of a head. Head rows come from in-memory batches; block rows from a Parquet
//! scan (`DataSourceExec`) over the engine's object store, with the filters as its pruning
//! predicate. Most filters stay `Inexact`: DataFusion re-applies them, so pruning only has to be
//! sound. Time bounds and series-id sets on `samples` and `profiles` are `Exact`: the scan
//! applies them itself, once per run of equal (series, time) (see [`RowFilter`]).

mod filters;
mod label_fn;
mod scan_exec;

pub use filters::{
    ScanPruning, is_exact_row_filter, matcher_expr, series_filter, time_filter, timestamp_lit,
};
pub use label_fn::{LABEL_FUNCTION, LabelFunction, label_udf};
pub use scan_exec::{ProfileScanExec, RowFilter, ScanSummary};

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{DictionaryArray, RecordBatch, StringArray, UInt16Array};
use arrow::datatypes::{DataType, SchemaRef, UInt16Type};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;

use crate::block::Block;
use crate::dedupe::{Dedupe, KeepSets, ProfileKeys};
use crate::model::{TimeRange, label};
use crate::remote::{RemoteScan, RemoteScanExec};
use crate::schema::{self, TableKind};
use crate::snapshot::TenantSnapshot;

/// Where blocks are found by DataFusion's object-store registry.
pub static BLOCKS_URL: LazyLock<ObjectStoreUrl> =
    LazyLock::new(|| ObjectStoreUrl::parse("hearth://blocks").expect("valid url"));

/// What a session's tables read: one tenant's snapshot, the bucket its blocks are in, and,
/// when the snapshot's sources hold replicas of the same profiles, the replica choice.
#[derive(Debug, Clone)]
pub struct TableSources {
    pub snapshot: Arc<TenantSnapshot>,
    pub store: Arc<dyn ObjectStore>,
    pub dedupe: Option<Arc<Dedupe>>,
    /// The times a query may read (the tenant's retention): rows outside are filtered out, as
    /// if a filter said so.
    pub retained: TimeRange,
}

impl TableSources {
    /// The same sources without `blocks` (compared by id).
    pub fn without_blocks(&self, blocks: &[Arc<Block>]) -> Self {
        let snapshot = TenantSnapshot {
            blocks: self
                .snapshot
                .blocks
                .iter()
                .filter(|b| !blocks.iter().any(|other| other.id() == b.id()))
                .cloned()
                .collect(),
            ..(*self.snapshot).clone()
        };
        TableSources {
            snapshot: Arc::new(snapshot),
            ..self.clone()
        }
    }

    /// The sources of `snapshot`, deduplicated when it is `replicated`.
    pub fn new(snapshot: Arc<TenantSnapshot>, store: Arc<dyn ObjectStore>) -> Self {
        let dedupe = snapshot.replicated.then(|| Arc::new(Dedupe::default()));
        TableSources {
            snapshot,
            store,
            dedupe,
            retained: TimeRange::ALL,
        }
    }

    /// The same sources with only the remote heads (no local heads or blocks).
    pub fn remote_only(&self) -> Self {
        let snapshot = TenantSnapshot {
            heads: Vec::new(),
            blocks: Vec::new(),
            ..(*self.snapshot).clone()
        };
        TableSources {
            snapshot: Arc::new(snapshot),
            ..self.clone()
        }
    }

    /// Only profiles at or after `not_before` (Unix nanoseconds) are read.
    pub fn with_retention(mut self, not_before: i64) -> Self {
        self.retained = TimeRange::new(not_before, i64::MAX);
        self
    }

    /// The keep sets for scans of `range` (and of only `series`, when set), when deduplicating:
    /// the profile keys of the scope are read once, from the local sources through DataFusion
    /// and from each remote node directly, so the sets know which node holds which source.
    pub async fn keep_sets(
        &self,
        range: TimeRange,
        series: Option<&BTreeSet<u64>>,
    ) -> crate::Result<Option<Arc<KeepSets>>> {
        let Some(dedupe) = &self.dedupe else {
            return Ok(None);
        };
        let sets = dedupe
            .keep_sets(range, series, |range, series| {
                self.profile_keys(range, series)
            })
            .await?;
        Ok(Some(sets))
    }

    async fn profile_keys(
        &self,
        range: TimeRange,
        series_ids: Option<Vec<u64>>,
    ) -> crate::Result<ProfileKeys> {
        let columns = [
            schema::SOURCE,
            schema::SERIES_ID,
            schema::TIME,
            schema::PROFILE_ID,
        ];
        let local = TableSources {
            snapshot: Arc::new(self.snapshot.local()),
            store: Arc::clone(&self.store),
            dedupe: None,
            retained: self.retained,
        };
        let ctx = SessionContext::new();
        register_tables(&ctx, local)?;
        let mut df = ctx.table(TableKind::Profiles.name()).await?;
        if range != TimeRange::ALL {
            df = df.filter(time_filter(&range))?;
        }
        if let Some(ids) = &series_ids {
            df = df.filter(series_filter(ids))?;
        }
        let batches = df
            .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())?
            .collect()
            .await?;
        let mut keys = ProfileKeys::default();
        keys.extend(&batches)?;

        let table_schema = TableKind::Profiles.table_schema();
        let indices = columns
            .iter()
            .map(|c| table_schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = Arc::new(table_schema.project(&indices)?);
        let remote_keys = self.snapshot.remotes.iter().map(|remote| {
            let request = RemoteScan {
                start: range.start,
                end: range.end,
                series_ids: series_ids.clone(),
                ..RemoteScan::new(&self.snapshot.tenant, TableKind::Profiles, &schema)
            };
            let stream = remote.scan(request, Arc::clone(&schema));
            async move {
                let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await?;
                Ok::<_, crate::Error>((remote.node().to_string(), batches))
            }
        });
        for (node, batches) in futures::future::try_join_all(remote_keys).await? {
            let sources = keys.extend(&batches)?;
            keys.nodes.insert(node, sources);
        }
        Ok(keys)
    }
}

/// One logical table of one tenant, over a snapshot of its heads and blocks.
pub struct ProfileTable {
    kind: TableKind,
    sources: TableSources,
}

impl fmt::Debug for ProfileTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileTable")
            .field("table", &self.kind.name())
            .field("snapshot", &self.sources.snapshot)
            .field("dedupe", &self.sources.dedupe.is_some())
            .finish()
    }
}

impl ProfileTable {
    pub fn new(kind: TableKind, sources: TableSources) -> Self {
        ProfileTable { kind, sources }
    }

    fn snapshot(&self) -> &TenantSnapshot {
        &self.sources.snapshot
    }

    /// Whether a block may hold rows the filters accept.
    fn block_may_match(&self, block: &Block, pruning: &ScanPruning) -> bool {
        if !block.overlaps(&pruning.time) {
            return false;
        }
        let listed = |name: &str, values: &[String]| {
            pruning
                .required_value(name)
                .is_none_or(|v| values.iter().any(|x| x == v))
        };
        listed(label::SERVICE_NAME, &block.meta.service_names)
            && listed(label::PROFILE_TYPE, &block.meta.profile_types)
    }

    /// Samples and profiles are sorted by series and time: their scan applies time and series
    /// filters itself, exactly and cheaply.
    fn filters_rows(&self) -> bool {
        matches!(self.kind, TableKind::Samples | TableKind::Profiles)
    }

    /// The projection to read and the row filter for the exact filters among `filters`: the
    /// filter needs `series_id` and `time`, which are read and then dropped when not projected.
    async fn row_filter(
        &self,
        filters: &[Expr],
        projection: Option<&Vec<usize>>,
    ) -> Result<(Option<Vec<usize>>, Option<RowFilter>)> {
        let exact: Vec<Expr> = filters
            .iter()
            .filter(|f| self.filters_rows() && is_exact_row_filter(f))
            .cloned()
            .collect();
        let dedupe = self.sources.dedupe.is_some() && self.filters_rows();
        let retention = self.sources.retained != TimeRange::ALL && self.filters_rows();
        if exact.is_empty() && !dedupe && !retention {
            return Ok((projection.cloned(), None));
        }
        let mut rows = ScanPruning::from_filters(&exact);
        rows.time = rows.time.intersect(&self.sources.retained);
        let keep = match dedupe {
            true => {
                self.sources
                    .keep_sets(rows.time, rows.series_ids.as_ref())
                    .await?
            }
            false => None,
        };
        let schema = self.kind.table_schema();
        let (series, time, source) = (
            schema.index_of(schema::SERIES_ID)?,
            schema.index_of(schema::TIME)?,
            schema.index_of(schema::SOURCE)?,
        );
        let (read, output) = match projection {
            None => (None, None),
            Some(wanted) => {
                let mut read = wanted.clone();
                let wanted_source = keep.as_ref().map(|_| source);
                for column in [Some(series), Some(time), wanted_source]
                    .into_iter()
                    .flatten()
                {
                    if !read.contains(&column) {
                        read.push(column);
                    }
                }
                let output = (read.len() > wanted.len()).then(|| (0..wanted.len()).collect());
                (Some(read), output)
            }
        };
        let position = |column: usize| {
            read.as_ref().map_or(column, |r| {
                r.iter().position(|&c| c == column).expect("read")
            })
        };
        let filter = RowFilter {
            time: rows.time,
            series: rows
                .series_ids
                .map(|ids| Arc::new(ids.into_iter().collect())),
            series_column: position(series),
            time_column: position(time),
            keep: keep.map(|k| (k, position(source))),
            projection: output,
        };
        Ok((read, Some(filter)))
    }

    /// The rows of the heads the filters may match, and how many heads that is.
    fn head_batches(&self, pruning: &ScanPruning) -> crate::Result<(Vec<RecordBatch>, usize)> {
        let mut batches = Vec::new();
        let mut kept = 0;
        for head in &self.snapshot().heads {
            let head = head.read();
            if !head.overlaps(&pruning.time) {
                continue;
            }
            kept += 1;
            let stored = if self.kind == TableKind::Series {
                vec![
                    head.series_batch_matching(&pruning.matchers, pruning.time, |id| {
                        pruning
                            .series_ids
                            .as_ref()
                            .is_none_or(|ids| ids.contains(&id))
                    })?,
                ]
            } else {
                head.table_batches(self.kind)?
            };
            for batch in stored.into_iter().filter(|b| b.num_rows() > 0) {
                batches.push(with_source(self.kind, batch, head.id())?);
            }
        }
        Ok((batches, kept))
    }

    /// One partition per remote node, each asked for the rows `pruning` may match.
    fn remote_scan(
        &self,
        pruning: &ScanPruning,
        projection: Option<&Vec<usize>>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if self.snapshot().remotes.is_empty() {
            return Ok(None);
        }
        let table_schema = self.kind.table_schema();
        let schema = match projection {
            Some(p) => Arc::new(table_schema.project(p)?),
            None => table_schema,
        };
        let request = RemoteScan {
            start: pruning.time.start,
            end: pruning.time.end,
            series_ids: pruning
                .series_ids
                .as_ref()
                .map(|ids| ids.iter().copied().collect()),
            services: pruning
                .required_value(label::SERVICE_NAME)
                .map(|s| vec![s.to_string()]),
            matchers: pruning.matchers.clone(),
            ..RemoteScan::new(&self.snapshot().tenant, self.kind, &schema)
        };
        let remotes = self.snapshot().remotes.iter().cloned().map(Some).collect();
        Ok(Some(Arc::new(RemoteScanExec::new(remotes, request)?)))
    }

    fn parquet_scan(
        &self,
        state: &dyn Session,
        blocks: &[&Arc<Block>],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        state
            .runtime_env()
            .register_object_store(BLOCKS_URL.as_ref(), Arc::clone(&self.sources.store));
        let table_schema = TableSchema::builder(self.kind.schema())
            .with_table_partition_cols(vec![Arc::new(schema::source_field())])
            .build();
        let mut source = ParquetSource::new(table_schema);
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.kind.table_schema().as_ref().clone())?;
            // A filter the Parquet reader cannot evaluate is still applied above the scan.
            if let Ok(predicate) = state.create_physical_expr(predicate, &df_schema) {
                source = source.with_predicate(predicate);
            }
        }
        let mut config = FileScanConfigBuilder::new(BLOCKS_URL.clone(), Arc::new(source));
        for block in blocks {
            let Some(file) = block.file(self.kind) else {
                continue;
            };
            let path = block.path(&self.snapshot().tenant, self.kind);
            let source = ScalarValue::Dictionary(
                Box::new(DataType::UInt16),
                Box::new(ScalarValue::Utf8(Some(block.id().to_string()))),
            );
            config = config.with_file(
                PartitionedFile::new(path.to_string(), file.size_bytes)
                    .with_partition_values(vec![source]),
            );
        }
        let config = config
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[async_trait]
impl TableProvider for ProfileTable {
    fn schema(&self) -> SchemaRef {
        self.kind.table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.filters_rows() && is_exact_row_filter(f) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut pruning = ScanPruning::from_filters(filters);
        pruning.time = pruning.time.intersect(&self.sources.retained);
        let (projection, row_filter) = self.row_filter(filters, projection).await?;
        let projection = projection.as_ref();
        // Rows the filter drops must not count towards a limit.
        let limit = if row_filter.is_some() { None } else { limit };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let (head_batches, heads_kept) = self.head_batches(&pruning)?;
        if !head_batches.is_empty() {
            let memory = MemorySourceConfig::try_new_exec(
                &[head_batches],
                self.kind.table_schema(),
                projection.cloned(),
            )?;
            inputs.push(memory);
        }

        let blocks: Vec<&Arc<Block>> = self
            .snapshot()
            .blocks
            .iter()
            .filter(|b| self.block_may_match(b, &pruning))
            .collect();
        if !blocks.is_empty() {
            inputs.push(self.parquet_scan(state, &blocks, projection, filters, limit)?);
        }

        let remotes = self.remote_scan(&pruning, projection)?;
        if let Some(remote) = remotes {
            inputs.push(remote);
        }

        let input: Arc<dyn ExecutionPlan> = match inputs.len() {
            0 => {
                let schema = match projection {
                    Some(p) => Arc::new(self.kind.table_schema().project(p)?),
                    None => self.kind.table_schema(),
                };
                Arc::new(EmptyExec::new(schema))
            }
            _ => UnionExec::try_new(inputs)?,
        };
        let summary = ScanSummary {
            table: self.kind.name(),
            heads: (heads_kept, self.snapshot().heads.len()),
            blocks: (blocks.len(), self.snapshot().blocks.len()),
            time: pruning.time,
            matchers: pruning.matchers.iter().map(|m| m.to_string()).collect(),
            series_ids: pruning.series_ids.as_ref().map(|ids| ids.len()),
        };
        Ok(Arc::new(ProfileScanExec::new(summary, input, row_filter)?))
    }
}

/// A stored batch with the `source` column appended: every row comes from `source`.
fn with_source(kind: TableKind, batch: RecordBatch, source: &str) -> crate::Result<RecordBatch> {
    let keys = UInt16Array::from(vec![0u16; batch.num_rows()]);
    let values = Arc::new(StringArray::from(vec![source]));
    let column = DictionaryArray::<UInt16Type>::try_new(keys, values)?;
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(column));
    Ok(RecordBatch::try_new(kind.table_schema(), columns)?)
}

/// Registers every logical table of one tenant's sources, and the `label` function, in `ctx`.
pub fn register_tables(ctx: &SessionContext, sources: TableSources) -> Result<()> {
    for kind in TableKind::ALL {
        ctx.register_table(
            kind.name(),
            Arc::new(ProfileTable::new(kind, sources.clone())),
        )?;
    }
    ctx.register_udf(label_udf().as_ref().clone());
    Ok(())
}
