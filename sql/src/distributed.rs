//! Distributed queries: how a querier splits a profile query, and what the nodes holding heads
//! run for it (the messages and the transport trait are in [`crate::remote`]).
//!
//! A profile query over a snapshot with remote heads is split ([`QueryService::partial`]): the
//! querier decides which replica counts for each profile (keep sets), aggregates its blocks
//! itself, and sends each remote node a [`RemoteAggregate`] through the [`RemoteExecutor`]
//! (Flight, in `hearth-flight`); the node runs the same plan over its heads with its own symbols
//! ([`QueryService::serve_partial`]) and returns encoded flame-graph or pprof states, or series
//! buckets, which the querier merges. Remote scans of head rows ([`QueryService::serve_scan`])
//! serve SQL statements and the label and series methods.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{AggregateUDF, cast, col, lit};
use futures::StreamExt;
use hearth_engine::dedupe::{Dedupe, KeepSets};
use hearth_engine::flamegraph::flamegraph_udaf;
use hearth_engine::model::{TenantId, TimeRange};
use hearth_engine::pprof_merge::pprof_udaf;
use hearth_engine::remote::RemoteScan;
use hearth_engine::schema::{self, TableKind};
use hearth_engine::symbol_set::{SymbolSet, load_symbol_set};
use hearth_engine::table::{ProfileTable, TableSources, matcher_expr, series_filter, time_filter};

use crate::error::{Error, Result};
use crate::remote::{Partial, RemoteAggregate};
use crate::service::QueryService;
use crate::split::split_range;

impl QueryService {
    /// `request` over `sources`, one interval of `query.split_interval` at a time when its range
    /// is longer (see [`crate::split`]); the batches of all intervals together, which merge as
    /// the partials of several sources do.
    pub(crate) async fn partial(
        &self,
        sources: &TableSources,
        request: RemoteAggregate,
    ) -> Result<Vec<RecordBatch>> {
        let interval = i64::try_from(self.config().split_interval.as_nanos()).unwrap_or(i64::MAX);
        // Series buckets close on the right in milliseconds: cut one millisecond after each
        // boundary, as the query-frontend does, so no piece holds a sliver of the next hour.
        let after = match request.partial {
            Partial::Series { .. } => 1_000_000,
            _ => 0,
        };
        let shift = |t: i64, by: i64| match t {
            i64::MIN | i64::MAX => t,
            t => t.saturating_add(by),
        };
        let range = request.time();
        let pieces: Vec<TimeRange> = split_range(
            TimeRange::new(shift(range.start, -after), shift(range.end, -after)),
            interval,
        )
        .into_iter()
        .map(|p| TimeRange::new(shift(p.start, after), shift(p.end, after)))
        .collect();
        if pieces.len() == 1 {
            return self.partial_whole(sources, request).await;
        }
        self.metrics().split(pieces.len());
        let mut batches = Vec::new();
        for piece in pieces {
            let piece = RemoteAggregate {
                start: piece.start,
                end: piece.end,
                ..request.clone()
            };
            batches.extend(self.partial_whole(sources, piece).await?);
        }
        Ok(batches)
    }

    /// `request` over `sources`: its blocks and heads here, each remote node's heads
    /// aggregated by that node (with the replica choices made here), all concurrently.
    async fn partial_whole(
        &self,
        sources: &TableSources,
        request: RemoteAggregate,
    ) -> Result<Vec<RecordBatch>> {
        let remotes = &sources.snapshot.remotes;
        if remotes.is_empty() {
            return self.partial_here(sources.clone(), &request).await;
        }
        let Some(executor) = self.remote_executor() else {
            return Err(Error::internal(
                "the snapshot has remote heads but this query service has no remote executor",
            ));
        };
        let series: BTreeSet<u64> = request.series_ids.iter().copied().collect();
        let keep = sources.keep_sets(request.time(), Some(&series)).await?;
        let local = TableSources {
            snapshot: Arc::new(sources.snapshot.local()),
            store: Arc::clone(&sources.store),
            dedupe: keep.clone().map(|k| Arc::new(Dedupe::fixed(k))),
            retained: sources.retained,
        };
        let remote = remotes.iter().map(|remote| {
            executor.aggregate(
                remote.node(),
                RemoteAggregate {
                    keep: keep.as_ref().map(|k| k.for_node(remote.node())),
                    ..request.clone()
                },
            )
        });
        let (mut batches, remote) = futures::future::try_join(
            self.partial_here(local, &request),
            futures::future::try_join_all(remote),
        )
        .await?;
        batches.extend(remote.into_iter().flatten());
        Ok(batches)
    }

    /// A remote node's side of a pushed-down aggregate: `request` over this service's heads,
    /// keeping from each source what the querier assigned to it.
    pub async fn serve_partial(&self, request: RemoteAggregate) -> Result<Vec<RecordBatch>> {
        let tenant = TenantId::new(&request.tenant).map_err(|e| Error::invalid(e.to_string()))?;
        let snapshot = self.source().snapshot(&tenant).await?.heads_only();
        let dedupe = match request.keep.clone() {
            Some(keep) => Some(Arc::new(Dedupe::fixed(Arc::new(
                KeepSets::from_source_keys(keep)?,
            )))),
            None => None,
        };
        let sources = TableSources {
            snapshot: Arc::new(snapshot),
            store: Arc::clone(self.source().store()),
            dedupe,
            // Heads hold recent profiles; the querier applied retention to the range.
            retained: TimeRange::ALL,
        };
        self.partial_here(sources, &request).await
    }

    /// `request` over the heads and blocks of `sources` (which has no remotes).
    async fn partial_here(
        &self,
        sources: TableSources,
        request: &RemoteAggregate,
    ) -> Result<Vec<RecordBatch>> {
        let snapshot = Arc::clone(&sources.snapshot);
        let ctx = self.session_over(sources)?;
        let range = request.time();
        let selected = time_filter(&range).and(series_filter(&request.series_ids));
        let aggregate: fn(Arc<SymbolSet>) -> AggregateUDF = match request.partial {
            Partial::Series { start_ms, step_ms } => {
                let millis = cast(col(schema::TIME), DataType::Int64) / lit(1_000_000i64);
                let bucket = (millis - lit(start_ms) + lit(step_ms - 1)) / lit(step_ms);
                return Ok(ctx
                    .table(TableKind::Profiles.name())
                    .await?
                    .filter(selected)?
                    .aggregate(
                        vec![col(schema::SERIES_ID), bucket.alias("bucket")],
                        vec![
                            sum(col("total_value")).alias("total"),
                            count(lit(1)).alias("profiles"),
                        ],
                    )?
                    .collect()
                    .await?);
            }
            Partial::Flamegraph => flamegraph_udaf,
            Partial::Pprof => pprof_udaf,
        };
        let services: BTreeSet<String> = request.services.iter().cloned().collect();
        let symbols = load_symbol_set(
            self.source().block_cache(),
            self.source().store(),
            &snapshot,
            &range,
            &services,
        )
        .await?;
        let udaf = aggregate(Arc::new(symbols));
        let mut df = ctx
            .table(TableKind::Samples.name())
            .await?
            .filter(selected)?;
        if let Some(spans) = &request.span_ids {
            df =
                df.filter(col("span_id").in_list(spans.iter().map(|&s| lit(s)).collect(), false))?;
        }
        Ok(df
            .aggregate(
                vec![],
                vec![
                    udaf.call(vec![
                        col(schema::SOURCE),
                        col(schema::SERVICE_NAME),
                        col("stacktrace_id"),
                        col("value"),
                    ])
                    .alias("state"),
                ],
            )?
            .collect()
            .await?)
    }

    /// A remote node's side of a [`RemoteScan`]: the rows it asks for from this service's heads,
    /// through the same provider as every other scan.
    pub async fn serve_scan(&self, request: &RemoteScan) -> Result<Vec<RecordBatch>> {
        let tenant = TenantId::new(&request.tenant).map_err(|e| Error::invalid(e.to_string()))?;
        let (kind, projection, _) = request.projection()?;
        let range = request.time();
        let mut filters = Vec::new();
        match kind {
            TableKind::Samples | TableKind::Profiles if range != TimeRange::ALL => {
                filters.push(time_filter(&range));
            }
            TableKind::Series if range != TimeRange::ALL => {
                filters.push(col(schema::MAX_TIME).gt_eq(crate::service::timestamp(range.start)));
                filters.push(col(schema::MIN_TIME).lt(crate::service::timestamp(range.end)));
            }
            _ => {}
        }
        // The heads' postings find the series the matchers keep.
        if kind == TableKind::Series {
            filters.extend(request.matchers.iter().map(matcher_expr));
        }
        if let (Some(ids), true) = (
            &request.series_ids,
            matches!(
                kind,
                TableKind::Samples | TableKind::Profiles | TableKind::Series
            ),
        ) {
            filters.push(series_filter(ids));
        }
        let snapshot = self.source().snapshot(&tenant).await?.heads_only();
        let sources = TableSources::new(Arc::new(snapshot), Arc::clone(self.source().store()));
        let ctx = self.session_over(sources.clone())?;
        let table = ProfileTable::new(kind, sources);
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
            let mut stream = plan.execute(partition, Arc::clone(&task))?;
            while let Some(batch) = stream.next().await {
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
}

/// The rows of a symbol batch whose service is one of `services`.
fn keep_services(
    batch: RecordBatch,
    column: usize,
    services: &[String],
) -> hearth_engine::Result<RecordBatch> {
    let names = arrow::compute::cast(batch.column(column), &DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let keep: arrow::array::BooleanArray = names
        .iter()
        .map(|n| Some(n.is_some_and(|n| services.iter().any(|s| s == n))))
        .collect();
    Ok(arrow::compute::filter_record_batch(&batch, &keep)?)
}
