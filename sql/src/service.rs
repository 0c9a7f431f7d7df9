//! The query service: Pyroscope `querier.v1` semantics planned on DataFusion. Each request
//! gets a session over one tenant's snapshot; every answer comes from a plan over the engine's
//! table providers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions_nested::expr_fn::map_keys;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use hearth_engine::SnapshotSource;
use hearth_engine::limits::{FixedLimits, LimitsSource};
use hearth_engine::matcher::LabelMatcher;
use hearth_engine::model::{Labels, ProfileType, TenantId, TimeRange, label};
use hearth_engine::schema::{self, TableKind};
use hearth_engine::series_index::{SeriesLookup, SeriesQuery, SeriesVisitor};
use hearth_engine::table::{TableSources, label_udf, matcher_expr, register_tables};
use hearth_engine::time::now_nanos;

use crate::admission::Admission;
use crate::config::QueryConfig;
use crate::error::{Error, Result};
use crate::memory::QueryMemory;
use crate::metrics::QueryMetrics;
use crate::remote::RemoteExecutor;
use crate::selector::Selector;
use crate::stages::StageSpreading;

/// A query's time range in Unix milliseconds, as the Connect API sends it; 0 leaves a side open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MillisRange {
    pub start: i64,
    pub end: i64,
}

impl MillisRange {
    pub fn new(start: i64, end: i64) -> Result<Self> {
        if start != 0 && end != 0 && end < start {
            return Err(Error::invalid(format!(
                "end ({end} ms) is before start ({start} ms)"
            )));
        }
        Ok(MillisRange { start, end })
    }

    fn start_nanos(&self) -> Option<i64> {
        (self.start != 0).then(|| self.start.saturating_mul(1_000_000))
    }

    /// Inclusive end: the whole last millisecond.
    fn end_nanos(&self) -> Option<i64> {
        (self.end != 0).then(|| self.end.saturating_mul(1_000_000).saturating_add(999_999))
    }

    /// The range in nanoseconds, half-open, the end millisecond included.
    pub fn nanos(&self) -> TimeRange {
        TimeRange::new(
            self.start_nanos().unwrap_or(i64::MIN),
            self.end_nanos().map_or(i64::MAX, |e| e.saturating_add(1)),
        )
    }
}

pub(crate) use hearth_engine::table::timestamp_lit as timestamp;

/// The catalog and schema the SQL surface lists tables under.
pub const CATALOG: &str = "hearth";
pub const SCHEMA: &str = "public";

/// Answers querier requests for every tenant of one engine.
#[derive(Debug)]
pub struct QueryService {
    source: Arc<dyn SnapshotSource>,
    /// Where aggregates of remote heads run (a querier's ingesters).
    remote: Option<Arc<dyn RemoteExecutor>>,
    config: QueryConfig,
    /// Per-tenant limits (retention: what queries may read).
    limits: Arc<dyn LimitsSource>,
    /// Parquet footers of block files, shared by every session (blocks never change).
    metadata_cache: Arc<FileMetadataCache>,
    target_partitions: usize,
    metrics: Arc<QueryMetrics>,
    /// Outstanding and running SQL statements per tenant (see [`Admission`]).
    admission: Arc<Admission>,
    /// The budget every query's memory pool draws from.
    memory: Arc<QueryMemory>,
    /// In a cluster querier: how query stages spread over the queriers.
    spreading: Option<Arc<dyn StageSpreading>>,
}

impl QueryService {
    /// A service over `source`: the local engine, or a querier's view of the cluster.
    pub fn new(source: Arc<dyn SnapshotSource>, config: QueryConfig) -> Self {
        let metadata_cache = Arc::new(
            DefaultCache::new(config.metadata_cache_bytes).with_name("hearth block footers"),
        );
        let limits: Arc<dyn LimitsSource> = Arc::new(FixedLimits::default());
        QueryService {
            source,
            remote: None,
            admission: Arc::new(Admission::new(
                config.max_outstanding_requests_per_tenant,
                Arc::clone(&limits),
            )),
            memory: Arc::new(QueryMemory::new(config.max_total_query_memory_bytes)),
            config,
            limits,
            metadata_cache,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            metrics: Arc::default(),
            spreading: None,
        }
    }

    /// Tenants' limits come from `limits` (default: `Limits::default()` for everyone).
    pub fn with_limits(mut self, limits: Arc<dyn LimitsSource>) -> Self {
        self.admission = Arc::new(Admission::new(
            self.config.max_outstanding_requests_per_tenant,
            Arc::clone(&limits),
        ));
        self.limits = limits;
        self
    }

    /// The per-tenant admission SQL statements pass (a query-frontend in the same process
    /// shares it).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Aggregates of the snapshots' remote heads run on their nodes through `executor`.
    pub fn with_remote_executor(mut self, executor: Arc<dyn RemoteExecutor>) -> Self {
        self.remote = Some(executor);
        self
    }

    /// Sessions plan with `spreading`: their block scans and partial aggregates may run on
    /// other queriers.
    pub fn with_stage_spreading(mut self, spreading: Arc<dyn StageSpreading>) -> Self {
        self.spreading = Some(spreading);
        self
    }

    /// Query durations, recorded by the transports that call this service.
    pub fn metrics(&self) -> &Arc<QueryMetrics> {
        &self.metrics
    }

    pub fn source(&self) -> &Arc<dyn SnapshotSource> {
        &self.source
    }

    pub(crate) fn remote_executor(&self) -> Option<&Arc<dyn RemoteExecutor>> {
        self.remote.as_ref()
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// The flame-graph node limit of a request (see [`max_nodes`]).
    pub fn max_nodes(&self, requested: Option<i64>) -> Result<i64> {
        max_nodes(&self.config, requested)
    }

    /// What one tenant's tables read now: its snapshot, deduplicated when replicated.
    pub(crate) async fn sources(&self, tenant: &TenantId) -> Result<TableSources> {
        let snapshot = Arc::new(self.source.snapshot(tenant).await?);
        let sources = TableSources::new(snapshot, Arc::clone(self.source.store()));
        let retention = self.limits.limits(tenant).retention_period;
        Ok(match retention.is_zero() {
            true => sources,
            false => {
                sources.with_retention(now_nanos().saturating_sub(retention.as_nanos() as i64))
            }
        })
    }

    /// A session over `sources` with every table and `label` registered, under the per-query
    /// memory limit; in a cluster, with the planner that spreads its stages over queriers.
    pub(crate) fn session_over(&self, sources: TableSources) -> Result<SessionContext> {
        let runtime = self.runtime(&sources.snapshot.tenant)?;
        let config = SessionConfig::new()
            .with_target_partitions(self.target_partitions)
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        if let Some(spreading) = &self.spreading {
            state = spreading.coordinator(&sources.snapshot.tenant, state)?;
        }
        let ctx = SessionContext::new_with_state(state.build());
        register_tables(&ctx, sources)?;
        Ok(ctx)
    }

    /// The runtime of one query of `tenant`: its memory pool (the tenant's limit, drawing from
    /// the process's budget) and the shared cache of block footers.
    pub(crate) fn runtime(&self, tenant: &TenantId) -> Result<Arc<RuntimeEnv>> {
        let memory = match self.limits.limits(tenant).max_query_memory_bytes {
            0 => self.config.max_query_memory_bytes,
            tenant => tenant,
        };
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(self.memory.pool(memory))
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.metadata_cache))),
            )
            .build_arc()?)
    }

    /// Refuses a profile query whose range is longer than the tenant's `max_query_length`.
    pub(crate) fn check_range(&self, tenant: &TenantId, range: &MillisRange) -> Result<()> {
        check_range(self.limits.as_ref(), tenant, range)
    }

    /// A session over one tenant's snapshot at this instant, under the per-query memory limit.
    pub async fn session(&self, tenant: &TenantId) -> Result<SessionContext> {
        self.session_over(self.sources(tenant).await?)
    }

    /// The series table, kept to series overlapping `range` and matching any of `selectors`.
    async fn matching_series(
        &self,
        ctx: &SessionContext,
        selectors: &[Selector],
        range: MillisRange,
    ) -> Result<DataFrame> {
        let mut df = ctx.table(TableKind::Series.name()).await?;
        if let Some(start) = range.start_nanos() {
            df = df.filter(col(schema::MAX_TIME).gt_eq(timestamp(start)))?;
        }
        if let Some(end) = range.end_nanos() {
            df = df.filter(col(schema::MIN_TIME).lt_eq(timestamp(end)))?;
        }
        let any_selector = selectors
            .iter()
            .map(|s| {
                s.matchers
                    .iter()
                    .map(matcher_expr)
                    .reduce(Expr::and)
                    .unwrap_or(lit(true))
            })
            .reduce(Expr::or);
        if let Some(filter) = any_selector {
            df = df.filter(filter)?;
        }
        Ok(df)
    }

    /// `ProfileTypes`: the profile types with data in the range, sorted by id.
    pub async fn profile_types(
        &self,
        tenant: &TenantId,
        range: MillisRange,
    ) -> Result<Vec<ProfileType>> {
        // Every series carries its profile type as `__profile_type__`: these are that label's
        // values, from the label index.
        let mut types = Vec::new();
        for id in self
            .label_values(tenant, label::PROFILE_TYPE, &[], range)
            .await?
        {
            types.push(ProfileType::parse(&id)?);
        }
        types.sort_by_key(ProfileType::id);
        Ok(types)
    }

    /// `LabelNames`: every label name of the matching series, sorted.
    pub async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        let selectors = parse_selectors(matchers)?;
        let mut names = Names(BTreeSet::new());
        let Some(sources) = self.indexed(tenant, &selectors, range, &mut names).await? else {
            return Ok(names.0.into_iter().collect());
        };
        let ctx = self.session_over(sources)?;
        let df = self
            .matching_series(&ctx, &selectors, range)
            .await?
            .select(vec![map_keys(col(schema::LABELS)).alias("name")])?
            .unnest_columns(&["name"])?
            .distinct()?;
        names.0.extend(strings(df.collect().await?));
        Ok(names.0.into_iter().collect())
    }

    /// `LabelValues`: the values of one label over the matching series, sorted.
    pub async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        if name.is_empty() {
            return Err(Error::invalid("label name is required"));
        }
        let selectors = parse_selectors(matchers)?;
        let mut values = Values {
            name,
            out: Vec::new(),
        };
        let sources = self.indexed(tenant, &selectors, range, &mut values).await?;
        let mut values = values.out;
        if let Some(sources) = sources {
            let ctx = self.session_over(sources)?;
            let value = label_udf().call(vec![col(schema::LABELS), lit(name)]);
            let df = self
                .matching_series(&ctx, &selectors, range)
                .await?
                .select(vec![value.alias("value")])?
                .filter(col("value").not_eq(lit("")))?
                .distinct()?;
            values.extend(strings(df.collect().await?));
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    /// `Series`: the label sets of the matching series, kept to `label_names` when given,
    /// distinct and sorted.
    pub async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        label_names: &[String],
        range: MillisRange,
    ) -> Result<Vec<Labels>> {
        let selectors = parse_selectors(matchers)?;
        let mut found = SeriesSets(BTreeMap::new());
        if let Some(sources) = self.indexed(tenant, &selectors, range, &mut found).await? {
            let ctx = self.session_over(sources)?;
            let df = self
                .matching_series(&ctx, &selectors, range)
                .await?
                .select(vec![col(schema::SERIES_ID), col(schema::LABELS)])?;
            for batch in df.collect().await? {
                let ids = batch.column(0).as_primitive::<UInt64Type>();
                let maps = batch.column(1).as_map();
                for row in 0..batch.num_rows() {
                    found
                        .0
                        .entry(ids.value(row))
                        .or_insert_with(|| schema::labels_of(maps, row));
                }
            }
        }
        let mut sets: Vec<Labels> = found
            .0
            .into_values()
            .map(|labels| {
                if label_names.is_empty() {
                    return labels;
                }
                Labels::from_pairs(
                    labels
                        .iter()
                        .filter(|l| label_names.contains(&l.name))
                        .map(|l| (l.name.clone(), l.value.clone())),
                )
            })
            .filter(|labels| !labels.is_empty())
            .collect();
        // Each set formatted once (sorting by a key computed per comparison was most of a
        // Series call's time).
        sets.sort_by_cached_key(|l| l.to_string());
        sets.dedup();
        Ok(sets)
    }

    /// Answers a label query from the indexes of this process's heads and blocks
    /// (`query.label_index`), handing each to `visitor`; returns the sources left to scan
    /// through the series table: the remote heads (their owners keep their postings), or
    /// everything when the index is off. `None` when nothing is left.
    async fn indexed(
        &self,
        tenant: &TenantId,
        selectors: &[Selector],
        range: MillisRange,
        visitor: &mut impl SeriesVisitor,
    ) -> Result<Option<TableSources>> {
        let sources = self.sources(tenant).await?;
        if !self.config.label_index {
            return Ok(Some(sources));
        }
        let matchers: Vec<Vec<LabelMatcher>> =
            selectors.iter().map(|s| s.matchers.clone()).collect();
        let query = SeriesQuery {
            selectors: &matchers,
            time: range.nanos().intersect(&sources.retained),
        };
        let visited = sources
            .snapshot
            .visit_series(&query, &sources.store, self.source.block_cache(), visitor)
            .await?;
        self.metrics.label_index(visited);
        if sources.snapshot.remotes.is_empty() {
            return Ok(None);
        }
        Ok(Some(sources.remote_only()))
    }
}

/// `LabelNames` over indexes.
struct Names(BTreeSet<String>);

impl SeriesVisitor for Names {
    fn visit<S: SeriesLookup>(&mut self, query: &SeriesQuery<'_>, source: &S) {
        query.label_names(source, &mut self.0);
    }
}

/// `LabelValues` over indexes (repeats sorted out at the end).
struct Values<'a> {
    name: &'a str,
    out: Vec<String>,
}

impl SeriesVisitor for Values<'_> {
    fn visit<S: SeriesLookup>(&mut self, query: &SeriesQuery<'_>, source: &S) {
        query.label_values(source, self.name, &mut self.out);
    }
}

/// `Series` over indexes: label sets by series id.
struct SeriesSets(BTreeMap<u64, Labels>);

impl SeriesVisitor for SeriesSets {
    fn visit<S: SeriesLookup>(&mut self, query: &SeriesQuery<'_>, source: &S) {
        for series in query.matching(source) {
            self.0
                .entry(series.id)
                .or_insert_with(|| series.labels.clone());
        }
    }
}

/// The flame-graph node limit of a request: the default when unset or 0, refused above the
/// maximum or below 0 (Pyroscope's `querier.max-flamegraph-nodes-*`).
pub fn max_nodes(config: &QueryConfig, requested: Option<i64>) -> Result<i64> {
    let max = config.max_flamegraph_nodes_max;
    match requested {
        None | Some(0) => Ok(config.max_flamegraph_nodes_default),
        Some(n) if n < 0 => Err(Error::invalid(format!(
            "max_nodes must be positive, got {n}"
        ))),
        Some(n) if max > 0 && n > max => Err(Error::invalid(format!(
            "max_nodes {n} exceeds the limit of {max}"
        ))),
        Some(n) => Ok(n),
    }
}

/// Refuses a profile query whose range is longer than the tenant's `max_query_length`.
pub fn check_range(
    limits: &dyn LimitsSource,
    tenant: &TenantId,
    range: &MillisRange,
) -> Result<()> {
    let limit = limits.limits(tenant).max_query_length;
    let length = range.nanos();
    let nanos = length.end.saturating_sub(length.start);
    if !limit.is_zero() && nanos > limit.as_nanos() as i64 {
        return Err(Error::invalid(format!(
            "the query time range exceeds the limit (query length: {}, limit: {}); narrow it",
            humantime::format_duration(std::time::Duration::from_millis(
                (nanos / 1_000_000) as u64
            )),
            humantime::format_duration(limit),
        )));
    }
    Ok(())
}

/// Parses the `matchers` of a request; each is a selector, and a series matching any is kept.
pub fn parse_selectors(matchers: &[String]) -> Result<Vec<Selector>> {
    matchers
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| Selector::parse(m))
        .collect()
}

/// The first column of every row, as strings.
fn strings(batches: Vec<RecordBatch>) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .expect("string-like column");
        let column = column.as_string::<i32>();
        out.extend(column.iter().flatten().map(str::to_string));
    }
    out
}
