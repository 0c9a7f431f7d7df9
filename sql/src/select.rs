//! The profile queries of `querier.v1`: merged stacks (as a function tree or a pprof), series
//! of values over time, and profile statistics. Each is two DataFusion plans over one snapshot:
//! the `series` table finds the matching series, then `samples` or `profiles` is read for
//! those series only, aggregated by the stack-merge UDAFs or by time bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::logical_expr::{Expr, cast, col};
use datafusion::prelude::SessionContext;
use hearth_engine::block::Block;
use hearth_engine::flamegraph::FunctionTree;
use hearth_engine::model::{Labels, ProfileType, TenantId, TimeRange, label};
use hearth_engine::pprof_merge::{PprofBuilder, set_profile_type};
use hearth_engine::rollup::{
    BUCKET_NANOS, RollupSelection, SeriesHour, read_rollup_trees, read_series_rollup, whole_hours,
    whole_series_hours,
};
use hearth_engine::schema::{self, TableKind};
use hearth_engine::stack_merge::StackMerge;
use hearth_engine::table::{TableSources, matcher_expr, series_filter, time_filter};
use hearth_proto::pprof::Profile;

use crate::error::{Error, Result};
use crate::remote::{Partial, RemoteAggregate};
use crate::selector::Selector;
use crate::service::{MillisRange, QueryService, timestamp};

/// What a profile query selects: one profile type, a selector, a time range.
#[derive(Debug, Clone)]
pub struct ProfileSelection {
    pub profile_type: ProfileType,
    pub selector: Selector,
    pub range: MillisRange,
}

impl ProfileSelection {
    /// From the Connect fields `profile_typeID`, `label_selector`, `start`, `end`.
    pub fn parse(
        profile_type_id: &str,
        label_selector: &str,
        start: i64,
        end: i64,
    ) -> Result<Self> {
        if profile_type_id.is_empty() {
            return Err(Error::invalid("profile_typeID is required"));
        }
        let profile_type =
            ProfileType::parse(profile_type_id).map_err(|e| Error::invalid(e.to_string()))?;
        let selector = if label_selector.trim().is_empty() {
            Selector::parse("{}")?
        } else {
            Selector::parse(label_selector)?
        };
        if start <= 0 || end <= 0 {
            return Err(Error::invalid(format!(
                "start and end are required (Unix milliseconds), got start={start} end={end}"
            )));
        }
        let range = MillisRange::new(start, end)?;
        Ok(ProfileSelection {
            selector: selector.with_profile_type(profile_type.clone()),
            profile_type,
            range,
        })
    }

    /// From a selector that names its profile type, e.g. `process_cpu:cpu:...{app="x"}`.
    pub fn from_selector(selector: Selector, start: i64, end: i64) -> Result<Self> {
        let Some(profile_type) = selector.profile_type.clone() else {
            return Err(Error::invalid(format!(
                "the query {selector} must start with a profile type, e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{{}}"
            )));
        };
        Ok(ProfileSelection {
            profile_type,
            selector,
            range: MillisRange::new(start, end)?,
        })
    }

    pub fn time_range(&self) -> TimeRange {
        self.range.nanos()
    }
}

/// How `SelectSeries` shapes its answer.
#[derive(Debug, Clone)]
pub struct SeriesShape {
    /// Bucket width in milliseconds.
    pub step_ms: i64,
    pub group_by: Vec<String>,
    /// Keep every series apart (all its labels), instead of grouping by `group_by`.
    pub by_series: bool,
    pub average: bool,
    /// Keep the top-N series by total.
    pub limit: Option<usize>,
}

/// One `SelectSeries` series: its group labels and points `(timestamp ms, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The encoded results of a stack-merge aggregate, and the selected profiles' period.
struct MergedSamples {
    states: Vec<Vec<u8>>,
    period: i64,
}

/// A query's use of rollups: the whole hours they answer and the blocks whose rollups are
/// read (their samples in those hours are not).
struct RollupPlan {
    hours: TimeRange,
    blocks: Vec<Arc<Block>>,
}

impl RollupPlan {
    /// What is read from samples over `range` beside the rollups of `plan`: without a plan,
    /// all of it; with one, the ragged edges outside the whole hours and, inside, the heads
    /// and the blocks without a rollup.
    fn sample_reads(
        plan: Option<&RollupPlan>,
        sources: &TableSources,
        range: TimeRange,
    ) -> Vec<(TableSources, TimeRange)> {
        let Some(plan) = plan else {
            return vec![(sources.clone(), range)];
        };
        let hours = plan.hours;
        let mut reads = vec![
            (sources.clone(), TimeRange::new(range.start, hours.start)),
            (sources.without_blocks(&plan.blocks), hours),
            (sources.clone(), TimeRange::new(hours.end, range.end)),
        ];
        reads.retain(|(_, piece)| piece.start < piece.end);
        reads
    }

    /// `rollups for <n> whole hours (blocks: <m>), <rows> for the rest`, or `<rows> (<why>)`:
    /// what `EXPLAIN` shows of the choice, `rows` naming what is read otherwise (samples or
    /// profiles).
    fn describe(choice: std::result::Result<RollupPlan, String>, rows: &str) -> String {
        match choice {
            Ok(plan) => format!(
                "rollups for {} whole hours (blocks: {}), {rows} for the rest",
                (plan.hours.end - plan.hours.start) / BUCKET_NANOS,
                plan.blocks.len()
            ),
            Err(why) => format!("{rows} ({why})"),
        }
    }
}

/// Rollup files read at once.
const ROLLUP_READS: usize = 8;

/// What `read` gives for each block of `plan` (`None`: the block has no such rollup), a few
/// blocks at a time.
async fn per_block<'a, T, F>(plan: &'a RollupPlan, read: impl Fn(&'a Block) -> F) -> Result<Vec<T>>
where
    F: std::future::Future<Output = hearth_engine::Result<Option<Vec<T>>>>,
{
    let mut out = Vec::new();
    for blocks in plan.blocks.chunks(ROLLUP_READS) {
        let reads = blocks.iter().map(|block| read(block));
        for rows in futures::future::try_join_all(reads).await? {
            out.extend(rows.into_iter().flatten());
        }
    }
    Ok(out)
}

/// Per bucket index: (sum of profile totals, number of profiles).
pub type Buckets = BTreeMap<i64, (i64, i64)>;

/// The series a selection matched.
struct Matched {
    labels: BTreeMap<u64, Labels>,
    services: BTreeSet<String>,
}

impl Matched {
    /// The partial aggregate `partial` of these series over `range`.
    fn request(
        &self,
        tenant: &TenantId,
        partial: Partial,
        range: TimeRange,
        span_ids: Option<&[u64]>,
    ) -> RemoteAggregate {
        RemoteAggregate {
            tenant: tenant.to_string(),
            partial,
            start: range.start,
            end: range.end,
            series_ids: self.labels.keys().copied().collect(),
            services: self.services.iter().cloned().collect(),
            span_ids: span_ids.map(<[u64]>::to_vec),
            keep: None,
        }
    }

    fn series_filter(&self) -> Expr {
        series_filter(self.labels.keys())
    }
}

/// A piece of a merged pprof: the profile (one value per sample, no type) and the largest
/// period of the profiles merged into it.
#[derive(Debug, Clone, PartialEq)]
pub struct PprofPiece {
    pub profile: Profile,
    pub period: i64,
}

/// Merges pieces of one selection into the profile of its type over its whole range.
pub fn finish_pprof(
    pieces: impl IntoIterator<Item = PprofPiece>,
    selection: &ProfileSelection,
) -> Result<Profile> {
    let mut builder = PprofBuilder::new();
    let mut period = 0;
    for piece in pieces {
        builder.add_profile(&piece.profile)?;
        period = period.max(piece.period);
    }
    let mut profile = builder.build();
    let t = &selection.profile_type;
    set_profile_type(
        &mut profile,
        (&t.sample_type, &t.sample_unit),
        (&t.period_type, &t.period_unit),
        period,
    );
    let range = selection.time_range();
    profile.time_nanos = range.start;
    profile.duration_nanos = range.end - range.start;
    Ok(profile)
}

/// The time buckets of `SelectSeries`: bucket k is `(start + (k-1) * step, start + k * step]`
/// in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketGrid {
    pub start_ms: i64,
    pub step_ms: i64,
}

/// Per series (all its labels): per bucket index, the sum of profile totals and the number of
/// profiles. Pieces of one query over disjoint time ranges add up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesBuckets {
    pub series: BTreeMap<Labels, Buckets>,
}

impl SeriesBuckets {
    pub fn add(&mut self, labels: &Labels, bucket: i64, (total, profiles): (i64, i64)) {
        if !self.series.contains_key(labels) {
            self.series.insert(labels.clone(), Buckets::new());
        }
        let point = self
            .series
            .get_mut(labels)
            .expect("inserted above")
            .entry(bucket)
            .or_default();
        point.0 += total;
        point.1 += profiles;
    }

    pub fn merge(&mut self, other: SeriesBuckets) {
        for (labels, buckets) in other.series {
            for (bucket, point) in buckets {
                self.add(&labels, bucket, point);
            }
        }
    }
}

/// What `SelectSeries` reads for `selection`: profiles in `(start - step, end]`, since the
/// first bucket also takes the step before start; and the grid its buckets sit on.
pub fn series_read(
    selection: &ProfileSelection,
    shape: &SeriesShape,
) -> Result<(ProfileSelection, BucketGrid)> {
    if shape.step_ms < 1 {
        return Err(Error::invalid("step must be at least 0.001 seconds"));
    }
    let (start_ms, end_ms) = (selection.range.start, selection.range.end);
    let read = ProfileSelection {
        range: MillisRange::new(
            start_ms.saturating_sub(shape.step_ms).saturating_add(1),
            end_ms,
        )?,
        ..selection.clone()
    };
    let grid = BucketGrid {
        start_ms,
        step_ms: shape.step_ms,
    };
    Ok((read, grid))
}

/// The `SelectSeries` answer out of the buckets of its pieces: series grouped by `group_by`
/// (or kept apart), summed or averaged, the top `limit` kept, sorted by labels.
pub fn finish_series(
    pieces: impl IntoIterator<Item = SeriesBuckets>,
    selection: &ProfileSelection,
    shape: &SeriesShape,
) -> Vec<ValueSeries> {
    let (start_ms, end_ms) = (selection.range.start, selection.range.end);
    let step = shape.step_ms.max(1);
    let last_bucket = (end_ms - start_ms) / step;
    // Group key -> bucket -> (sum, profiles).
    let mut groups: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
    for piece in pieces {
        for (labels, buckets) in piece.series {
            let key: Vec<(String, String)> = if shape.by_series {
                labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect()
            } else {
                shape
                    .group_by
                    .iter()
                    .filter_map(|name| labels.get(name).map(|v| (name.clone(), v.to_string())))
                    .collect()
            };
            let group = groups.entry(key).or_default();
            for (bucket, (total, profiles)) in buckets {
                if !(0..=last_bucket).contains(&bucket) {
                    continue;
                }
                let point = group.entry(bucket).or_default();
                point.0 += total;
                point.1 += profiles;
            }
        }
    }
    let mut series: Vec<(i64, ValueSeries)> = groups
        .into_iter()
        .filter(|(_, buckets)| !buckets.is_empty())
        .map(|(key, buckets)| {
            let total: i64 = buckets.values().map(|(sum, _)| sum).sum();
            let points = buckets
                .into_iter()
                .map(|(bucket, (sum, profiles))| {
                    let value = if shape.average {
                        sum as f64 / profiles.max(1) as f64
                    } else {
                        sum as f64
                    };
                    (start_ms + bucket * step, value)
                })
                .collect();
            (
                total,
                ValueSeries {
                    labels: Labels::from_pairs(key),
                    points,
                },
            )
        })
        .collect();
    if let Some(limit) = shape.limit {
        series.sort_by_key(|s| std::cmp::Reverse(s.0));
        series.truncate(limit);
    }
    let mut series: Vec<ValueSeries> = series.into_iter().map(|(_, s)| s).collect();
    series.sort_by_key(|s| s.labels.to_string());
    series
}

impl QueryService {
    async fn matched_series(
        &self,
        ctx: &SessionContext,
        selection: &ProfileSelection,
    ) -> Result<Matched> {
        let range = selection.time_range();
        let filter = selection.selector.matchers.iter().map(matcher_expr).fold(
            col(schema::MAX_TIME)
                .gt_eq(timestamp(range.start))
                .and(col(schema::MIN_TIME).lt(timestamp(range.end))),
            Expr::and,
        );
        let batches = ctx
            .table(TableKind::Series.name())
            .await?
            .filter(filter)?
            .select(vec![
                col(schema::SERIES_ID),
                col(schema::SERVICE_NAME),
                col(schema::LABELS),
            ])?
            .collect()
            .await?;
        let mut matched = Matched {
            labels: BTreeMap::new(),
            services: BTreeSet::new(),
        };
        for batch in batches {
            let ids = batch.column(0).as_primitive::<UInt64Type>();
            let services = batch.column(1).as_string::<i32>();
            let maps = batch.column(2).as_map();
            for row in 0..batch.num_rows() {
                matched.services.insert(services.value(row).to_string());
                matched
                    .labels
                    .entry(ids.value(row))
                    .or_insert_with(|| schema::labels_of(maps, row));
            }
        }
        Ok(matched)
    }

    /// Runs a stack-merge aggregate over the selected samples; returns its encoded results and,
    /// when `want_period`, the selected profiles' period.
    async fn merge_samples(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        span_ids: Option<&[u64]>,
        partial: Partial,
        want_period: bool,
    ) -> Result<MergedSamples> {
        self.check_range(tenant, &selection.range)?;
        let sources = self.sources(tenant).await?;
        let ctx = self.session_over(sources.clone())?;
        let matched = self.matched_series(&ctx, selection).await?;
        let mut merged = MergedSamples {
            states: Vec::new(),
            period: 0,
        };
        if matched.labels.is_empty() {
            return Ok(merged);
        }
        let range = selection.time_range();
        let rollups = match (partial, span_ids) {
            (Partial::Flamegraph, None) => self.rollup_choice(&sources, selection).ok(),
            _ => None,
        };
        for (sources, piece) in RollupPlan::sample_reads(rollups.as_ref(), &sources, range) {
            let request = matched.request(tenant, partial, piece, span_ids);
            for batch in self.partial(&sources, request).await? {
                merged.states.extend(
                    batch
                        .column(0)
                        .as_binary::<i32>()
                        .iter()
                        .flatten()
                        .map(<[u8]>::to_vec),
                );
            }
        }
        if let Some(plan) = &rollups {
            let trees = self
                .rollup_trees(
                    &sources,
                    plan,
                    &selection.profile_type.id(),
                    &matched.services,
                )
                .await?;
            self.metrics().rollup(trees.len());
            merged.states.extend(trees);
        }
        if want_period {
            merged.period = self.period(&ctx, &matched, &range).await?;
        }
        Ok(merged)
    }

    /// Why rollups cannot stand for samples on `sources` at all, if so: rollups are off, or
    /// the sources may hold replicas side by side (a rollup cannot leave a replica out).
    fn rollups_barred(&self, sources: &TableSources) -> std::result::Result<(), String> {
        let snapshot = &sources.snapshot;
        if !self.config().rollups {
            return Err("query.rollups is off".into());
        }
        if snapshot.replicated || !snapshot.remotes.is_empty() {
            return Err("the sources may hold replicas side by side".into());
        }
        Ok(())
    }

    /// The blocks of `hours` that `has` a rollup, or an error when none has.
    fn rollup_blocks(
        sources: &TableSources,
        hours: TimeRange,
        has: impl Fn(&Block) -> bool,
    ) -> std::result::Result<RollupPlan, String> {
        let blocks: Vec<Arc<Block>> = sources
            .snapshot
            .blocks_overlapping(&hours)
            .filter(|b| has(b))
            .cloned()
            .collect();
        if blocks.is_empty() {
            return Err("no block of those hours has a rollup".into());
        }
        Ok(RollupPlan { hours, blocks })
    }

    /// Where a flame graph of `selection` may read rollups instead of samples: the whole
    /// hours of `selection`'s range (within retention) and the blocks there that have
    /// rollups; or why samples are read instead: [`Self::rollups_barred`], the selector names
    /// a label rollups do not keep (anything but `service_name` and the profile type), or no
    /// whole hour or no such block exists.
    fn rollup_choice(
        &self,
        sources: &TableSources,
        selection: &ProfileSelection,
    ) -> std::result::Result<RollupPlan, String> {
        self.rollups_barred(sources)?;
        let kept = [label::SERVICE_NAME, label::PROFILE_TYPE];
        if let Some(other) = selection
            .selector
            .matchers
            .iter()
            .find(|m| !kept.contains(&m.name.as_str()))
        {
            return Err(format!("the selector names {:?}", other.name));
        }
        let hours = whole_hours(selection.time_range().intersect(&sources.retained))
            .ok_or("the range holds no whole hour")?;
        Self::rollup_blocks(sources, hours, Block::has_rollup)
    }

    /// Where `SelectSeries` reading `selection` on `grid` may read the per-series hourly
    /// totals instead of profiles: any selector (the rollup keeps every series), when every
    /// bucket of the grid is made of whole hours (the step a whole number of hours, the grid
    /// on hour boundaries); otherwise, or for the reasons of [`Self::rollups_barred`], why not.
    fn series_rollup_choice(
        &self,
        sources: &TableSources,
        selection: &ProfileSelection,
        grid: BucketGrid,
    ) -> std::result::Result<RollupPlan, String> {
        self.rollups_barred(sources)?;
        let hour_ms = BUCKET_NANOS / 1_000_000;
        if grid.step_ms % hour_ms != 0 || grid.start_ms.rem_euclid(hour_ms) != 0 {
            return Err("the step is not whole hours on hour boundaries".into());
        }
        let hours = whole_series_hours(selection.time_range().intersect(&sources.retained))
            .ok_or("the range holds no whole hour")?;
        Self::rollup_blocks(sources, hours, |b| b.series_rollup().is_some())
    }

    /// Which path a flame graph of `selection` takes on the tenant's data now, for `EXPLAIN`
    /// (see [`RollupPlan::describe`]).
    pub async fn flamegraph_path(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
    ) -> Result<String> {
        let sources = self.sources(tenant).await?;
        Ok(RollupPlan::describe(
            self.rollup_choice(&sources, selection),
            "samples",
        ))
    }

    /// Which path `SelectSeries` of `selection` shaped as `shape` takes on the tenant's data
    /// now, for `EXPLAIN` (see [`RollupPlan::describe`]).
    pub async fn series_path(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        shape: &SeriesShape,
    ) -> Result<String> {
        let (read, grid) = series_read(selection, shape)?;
        let sources = self.sources(tenant).await?;
        Ok(RollupPlan::describe(
            self.series_rollup_choice(&sources, &read, grid),
            "profiles",
        ))
    }

    /// The rollup trees of `plan`'s blocks for `profile_type` and `services`, read a few
    /// blocks at a time.
    async fn rollup_trees(
        &self,
        sources: &TableSources,
        plan: &RollupPlan,
        profile_type: &str,
        services: &BTreeSet<String>,
    ) -> Result<Vec<Vec<u8>>> {
        let selection = RollupSelection {
            profile_type,
            services,
            hours: plan.hours,
        };
        let tenant = &sources.snapshot.tenant;
        per_block(plan, |block| {
            read_rollup_trees(&sources.store, tenant, block, &selection)
        })
        .await
    }

    /// The selected samples merged into one function tree; `span_ids` keeps only those spans.
    pub async fn merge_tree(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        span_ids: Option<&[u64]>,
    ) -> Result<FunctionTree> {
        let merged = self
            .merge_samples(tenant, selection, span_ids, Partial::Flamegraph, false)
            .await?;
        let mut tree = FunctionTree::new();
        for state in &merged.states {
            tree.merge(&FunctionTree::decode(state)?);
        }
        Ok(tree)
    }

    /// The selected samples merged into one pprof profile of the selection's type.
    pub async fn merge_pprof(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
    ) -> Result<Profile> {
        let piece = self.pprof_piece(tenant, selection).await?;
        finish_pprof([piece], selection)
    }

    /// The selected samples merged into one profile (one value per sample, no type yet) and
    /// their largest period: what [`finish_pprof`] merges.
    pub async fn pprof_piece(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
    ) -> Result<PprofPiece> {
        let merged = self
            .merge_samples(tenant, selection, None, Partial::Pprof, true)
            .await?;
        let mut builder = PprofBuilder::new();
        for state in &merged.states {
            builder.merge_encoded(state)?;
        }
        Ok(PprofPiece {
            profile: builder.build(),
            period: merged.period,
        })
    }

    /// The largest period among the selected profiles (they normally share one).
    async fn period(
        &self,
        ctx: &SessionContext,
        matched: &Matched,
        range: &TimeRange,
    ) -> Result<i64> {
        let batches = ctx
            .table(TableKind::Profiles.name())
            .await?
            .filter(time_filter(range).and(matched.series_filter()))?
            .aggregate(
                vec![],
                vec![datafusion::functions_aggregate::expr_fn::max(col("period"))],
            )?
            .collect()
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                let column = b.column(0).as_primitive::<Int64Type>();
                (!column.is_empty() && column.is_valid(0)).then(|| column.value(0))
            })
            .unwrap_or(0))
    }

    /// `SelectSeries`: per group of series, the sum (or average) of profile totals per bucket.
    /// A point's timestamp is the right edge of its bucket `(t - step, t]` on the grid
    /// `start, start + step, ...`; empty buckets are left out.
    pub async fn select_series(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        shape: &SeriesShape,
    ) -> Result<Vec<ValueSeries>> {
        let (read, grid) = series_read(selection, shape)?;
        self.check_range(tenant, &selection.range)?;
        let buckets = self.series_buckets(tenant, &read, grid).await?;
        Ok(finish_series([buckets], selection, shape))
    }

    /// Per series matching `selection` (its range is what is read), the sum of profile totals
    /// and the profile count per bucket of `grid`.
    pub async fn series_buckets(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        grid: BucketGrid,
    ) -> Result<SeriesBuckets> {
        if grid.step_ms < 1 {
            return Err(Error::invalid("step must be at least 0.001 seconds"));
        }
        let sources = self.sources(tenant).await?;
        let ctx = self.session_over(sources.clone())?;
        let matched = self.matched_series(&ctx, selection).await?;
        let mut out = SeriesBuckets::default();
        if matched.labels.is_empty() {
            return Ok(out);
        }
        let partial = Partial::Series {
            start_ms: grid.start_ms,
            step_ms: grid.step_ms,
        };
        let rollups = self.series_rollup_choice(&sources, selection, grid).ok();
        let range = selection.time_range();
        for (sources, piece) in RollupPlan::sample_reads(rollups.as_ref(), &sources, range) {
            let request = matched.request(tenant, partial, piece, None);
            for batch in self.partial(&sources, request).await? {
                let ids = batch.column(0).as_primitive::<UInt64Type>();
                let buckets = batch.column(1).as_primitive::<Int64Type>();
                let totals = batch.column(2).as_primitive::<Int64Type>();
                let counts = batch.column(3).as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    let labels = &matched.labels[&ids.value(row)];
                    out.add(
                        labels,
                        buckets.value(row),
                        (totals.value(row), counts.value(row)),
                    );
                }
            }
        }
        if let Some(plan) = &rollups {
            let rows = self.series_rollup_rows(&sources, plan, &matched).await?;
            self.metrics().series_rollup(rows.len());
            for row in rows {
                // The bucket `(t - step, t]` of the grid holding the hour's right edge, and
                // so the whole hour: the grid's edges are on hour boundaries.
                let bucket =
                    (row.bucket_end - grid.start_ms + grid.step_ms - 1).div_euclid(grid.step_ms);
                out.add(
                    &matched.labels[&row.series_id],
                    bucket,
                    (row.total, row.profiles),
                );
            }
        }
        Ok(out)
    }

    /// The series rollup rows of `plan`'s blocks for the `matched` series, read a few blocks
    /// at a time.
    async fn series_rollup_rows(
        &self,
        sources: &TableSources,
        plan: &RollupPlan,
        matched: &Matched,
    ) -> Result<Vec<SeriesHour>> {
        let tenant = &sources.snapshot.tenant;
        let wanted = |id: u64| matched.labels.contains_key(&id);
        per_block(plan, |block| {
            read_series_rollup(&sources.store, tenant, block, plan.hours, wanted)
        })
        .await
    }

    /// Whether the tenant has data, and its oldest and newest profile times (ms).
    pub async fn profile_stats(&self, tenant: &TenantId) -> Result<Option<(i64, i64)>> {
        let ctx = self.session(tenant).await?;
        let batches = ctx
            .table(TableKind::Series.name())
            .await?
            .aggregate(
                vec![],
                vec![
                    datafusion::functions_aggregate::expr_fn::min(cast(
                        col(schema::MIN_TIME),
                        DataType::Int64,
                    )),
                    datafusion::functions_aggregate::expr_fn::max(cast(
                        col(schema::MAX_TIME),
                        DataType::Int64,
                    )),
                ],
            )?
            .collect()
            .await?;
        let Some(batch) = batches.first().filter(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let (oldest, newest) = (
            batch.column(0).as_primitive::<Int64Type>(),
            batch.column(1).as_primitive::<Int64Type>(),
        );
        if oldest.is_null(0) {
            return Ok(None);
        }
        Ok(Some((
            oldest.value(0) / 1_000_000,
            newest.value(0) / 1_000_000,
        )))
    }
}
