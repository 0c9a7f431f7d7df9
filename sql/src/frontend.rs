//! The query-frontend's side of a query: what the transports ask ([`Queries`], answered by a
//! [`QueryService`] over data, or by a [`Frontend`] over queriers), and how the frontend cuts
//! a query into jobs ([`crate::job`]), one per aligned interval of `query.split_interval`, has
//! them run by a [`JobRunner`] (the scheduler's queue, which queriers pull from) and merges
//! their answers as they arrive. Every surface answers the same split or not: label sets are
//! unioned, trees and profiles merged, series buckets added, and only then are flame graphs
//! truncated to `max_nodes` and series grouped, averaged and limited.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hearth_engine::flamegraph::FunctionTree;
use hearth_engine::limits::LimitsSource;
use hearth_engine::model::{Labels, ProfileType, TenantId};
use hearth_proto::pprof::Profile;

use crate::admission::Admission;
use crate::config::QueryConfig;
use crate::error::{Error, Result};
use crate::job::{Job, JobAnswer};
use crate::metrics::QueryMetrics;
use crate::select::{
    ProfileSelection, SeriesBuckets, SeriesShape, ValueSeries, finish_pprof, finish_series,
    series_read,
};
use crate::service::{MillisRange, QueryService, check_range, max_nodes};
use crate::split::{split_millis, split_millis_right_closed};

/// The `querier.v1` questions as the transports (Connect, render, the UI, the SQL table
/// functions' callers) ask them.
#[async_trait]
pub trait Queries: Send + Sync + fmt::Debug {
    /// Query durations, recorded by the transports.
    fn metrics(&self) -> &Arc<QueryMetrics>;
    /// The flame-graph node limit of a request.
    fn max_nodes(&self, requested: Option<i64>) -> Result<i64>;
    async fn profile_types(
        &self,
        tenant: &TenantId,
        range: MillisRange,
    ) -> Result<Vec<ProfileType>>;
    async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>>;
    async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>>;
    async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        label_names: &[String],
        range: MillisRange,
    ) -> Result<Vec<Labels>>;
    async fn merge_tree(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        span_ids: Option<&[u64]>,
    ) -> Result<FunctionTree>;
    async fn merge_pprof(&self, tenant: &TenantId, selection: &ProfileSelection)
    -> Result<Profile>;
    async fn select_series(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        shape: &SeriesShape,
    ) -> Result<Vec<ValueSeries>>;
    async fn profile_stats(&self, tenant: &TenantId) -> Result<Option<(i64, i64)>>;
}

#[async_trait]
impl Queries for QueryService {
    fn metrics(&self) -> &Arc<QueryMetrics> {
        QueryService::metrics(self)
    }

    fn max_nodes(&self, requested: Option<i64>) -> Result<i64> {
        QueryService::max_nodes(self, requested)
    }

    async fn profile_types(
        &self,
        tenant: &TenantId,
        range: MillisRange,
    ) -> Result<Vec<ProfileType>> {
        QueryService::profile_types(self, tenant, range).await
    }

    async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        QueryService::label_names(self, tenant, matchers, range).await
    }

    async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        QueryService::label_values(self, tenant, name, matchers, range).await
    }

    async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        label_names: &[String],
        range: MillisRange,
    ) -> Result<Vec<Labels>> {
        QueryService::series(self, tenant, matchers, label_names, range).await
    }

    async fn merge_tree(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        span_ids: Option<&[u64]>,
    ) -> Result<FunctionTree> {
        QueryService::merge_tree(self, tenant, selection, span_ids).await
    }

    async fn merge_pprof(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
    ) -> Result<Profile> {
        QueryService::merge_pprof(self, tenant, selection).await
    }

    async fn select_series(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        shape: &SeriesShape,
    ) -> Result<Vec<ValueSeries>> {
        QueryService::select_series(self, tenant, selection, shape).await
    }

    async fn profile_stats(&self, tenant: &TenantId) -> Result<Option<(i64, i64)>> {
        QueryService::profile_stats(self, tenant).await
    }
}

/// Runs one job somewhere: the scheduler's queue in a query-frontend.
#[async_trait]
pub trait JobRunner: Send + Sync + fmt::Debug {
    async fn run(&self, tenant: &TenantId, job: Job) -> Result<JobAnswer>;
}

/// A query-frontend: answers [`Queries`] by cutting each into jobs that a [`JobRunner`] runs,
/// merging the answers. It holds no data.
#[derive(Debug)]
pub struct Frontend {
    runner: Arc<dyn JobRunner>,
    config: QueryConfig,
    limits: Arc<dyn LimitsSource>,
    metrics: Arc<QueryMetrics>,
    /// Outstanding queries per tenant (`max_outstanding_requests_per_tenant`).
    admission: Arc<Admission>,
}

impl Frontend {
    pub fn new(
        runner: Arc<dyn JobRunner>,
        config: QueryConfig,
        limits: Arc<dyn LimitsSource>,
    ) -> Self {
        let admission = Arc::new(Admission::new(
            config.max_outstanding_requests_per_tenant,
            Arc::clone(&limits),
        ));
        Frontend {
            runner,
            config,
            limits,
            metrics: Arc::default(),
            admission,
        }
    }

    /// Records into `metrics` (shared with the process's query service, so one histogram
    /// covers Flight SQL and the frontend's API).
    pub fn with_metrics(mut self, metrics: Arc<QueryMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts queries in `admission` (shared with the process's Flight SQL service, so both
    /// count against one tenant's outstanding queries).
    pub fn with_admission(mut self, admission: Arc<Admission>) -> Self {
        self.admission = admission;
        self
    }

    /// One job per piece of `range` (see [`split_millis`]).
    fn jobs(&self, range: MillisRange, job: impl Fn(MillisRange) -> Job) -> Vec<Job> {
        self.jobs_over(split_millis(range, self.config.split_interval), job)
    }

    /// One job per piece.
    fn jobs_over(&self, pieces: Vec<MillisRange>, job: impl Fn(MillisRange) -> Job) -> Vec<Job> {
        if pieces.len() > 1 {
            self.metrics.split(pieces.len());
        }
        pieces.into_iter().map(job).collect()
    }

    /// One job per piece of `selection`'s range.
    fn profile_jobs(
        &self,
        selection: &ProfileSelection,
        job: impl Fn(ProfileSelection) -> Job,
    ) -> Vec<Job> {
        self.jobs(selection.range, |range| {
            job(ProfileSelection {
                range,
                ..selection.clone()
            })
        })
    }

    /// Runs `jobs` of one query (all queued at once; the scheduler decides how many run) and
    /// folds each answer into `fold` as it arrives. The first failure fails the query, and
    /// dropping the rest cancels them.
    async fn run_all(
        &self,
        tenant: &TenantId,
        jobs: Vec<Job>,
        mut fold: impl FnMut(JobAnswer) -> Result<()> + Send,
    ) -> Result<()> {
        let _outstanding = self.admission.admit(tenant)?;
        let mut running: FuturesUnordered<_> = jobs
            .into_iter()
            .map(|job| self.runner.run(tenant, job))
            .collect();
        while let Some(answer) = running.next().await {
            fold(answer?)?;
        }
        Ok(())
    }

    /// The union of string answers (label names or values), sorted.
    async fn strings(&self, tenant: &TenantId, jobs: Vec<Job>) -> Result<Vec<String>> {
        let pieces = jobs.len();
        let mut all = Vec::new();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::Strings(values) => {
                all.extend(values);
                Ok(())
            }
            other => Err(other.unexpected("label")),
        })
        .await?;
        // One piece's answer is sorted and distinct already.
        if pieces > 1 {
            all.sort_unstable();
            all.dedup();
        }
        Ok(all)
    }
}

#[async_trait]
impl Queries for Frontend {
    fn metrics(&self) -> &Arc<QueryMetrics> {
        &self.metrics
    }

    fn max_nodes(&self, requested: Option<i64>) -> Result<i64> {
        max_nodes(&self.config, requested)
    }

    async fn profile_types(
        &self,
        tenant: &TenantId,
        range: MillisRange,
    ) -> Result<Vec<ProfileType>> {
        let jobs = self.jobs(range, |range| Job::ProfileTypes { range });
        let mut all = BTreeMap::new();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::ProfileTypes(types) => {
                all.extend(types.into_iter().map(|t| (t.id(), t)));
                Ok(())
            }
            other => Err(other.unexpected("ProfileTypes")),
        })
        .await?;
        Ok(all.into_values().collect())
    }

    async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        let jobs = self.jobs(range, |range| Job::LabelNames {
            matchers: matchers.to_vec(),
            range,
        });
        self.strings(tenant, jobs).await
    }

    async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[String],
        range: MillisRange,
    ) -> Result<Vec<String>> {
        if name.is_empty() {
            return Err(Error::invalid("label name is required"));
        }
        let jobs = self.jobs(range, |range| Job::LabelValues {
            name: name.to_string(),
            matchers: matchers.to_vec(),
            range,
        });
        self.strings(tenant, jobs).await
    }

    async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[String],
        label_names: &[String],
        range: MillisRange,
    ) -> Result<Vec<Labels>> {
        let jobs = self.jobs(range, |range| Job::Series {
            matchers: matchers.to_vec(),
            label_names: label_names.to_vec(),
            range,
        });
        let pieces = jobs.len();
        let mut all: Vec<Labels> = Vec::new();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::Series(sets) => {
                all.extend(sets);
                Ok(())
            }
            other => Err(other.unexpected("Series")),
        })
        .await?;
        // One piece's answer is sorted and distinct already.
        if pieces > 1 {
            all.sort_by_cached_key(|l| l.to_string());
            all.dedup();
        }
        Ok(all)
    }

    async fn merge_tree(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        span_ids: Option<&[u64]>,
    ) -> Result<FunctionTree> {
        check_range(self.limits.as_ref(), tenant, &selection.range)?;
        let jobs = self.profile_jobs(selection, |selection| Job::Tree {
            selection,
            span_ids: span_ids.map(<[u64]>::to_vec),
        });
        let mut tree = FunctionTree::new();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::Tree(piece) => {
                tree.merge(&piece);
                Ok(())
            }
            other => Err(other.unexpected("Tree")),
        })
        .await?;
        Ok(tree)
    }

    async fn merge_pprof(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
    ) -> Result<Profile> {
        check_range(self.limits.as_ref(), tenant, &selection.range)?;
        let jobs = self.profile_jobs(selection, |selection| Job::Pprof { selection });
        let mut pieces = Vec::new();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::Pprof(piece) => {
                pieces.push(piece);
                Ok(())
            }
            other => Err(other.unexpected("Pprof")),
        })
        .await?;
        finish_pprof(pieces, selection)
    }

    async fn select_series(
        &self,
        tenant: &TenantId,
        selection: &ProfileSelection,
        shape: &SeriesShape,
    ) -> Result<Vec<ValueSeries>> {
        let (read, grid) = series_read(selection, shape)?;
        check_range(self.limits.as_ref(), tenant, &selection.range)?;
        // Cut as the buckets are closed, on the right, so the series rollups' hours stay whole.
        let pieces = split_millis_right_closed(read.range, self.config.split_interval);
        let jobs = self.jobs_over(pieces, |range| Job::SeriesBuckets {
            selection: ProfileSelection {
                range,
                ..read.clone()
            },
            grid,
        });
        let mut buckets = SeriesBuckets::default();
        self.run_all(tenant, jobs, |answer| match answer {
            JobAnswer::SeriesBuckets(piece) => {
                buckets.merge(piece);
                Ok(())
            }
            other => Err(other.unexpected("SeriesBuckets")),
        })
        .await?;
        Ok(finish_series([buckets], selection, shape))
    }

    async fn profile_stats(&self, tenant: &TenantId) -> Result<Option<(i64, i64)>> {
        let mut stats = None;
        self.run_all(tenant, vec![Job::ProfileStats], |answer| match answer {
            JobAnswer::ProfileStats(s) => {
                stats = s;
                Ok(())
            }
            other => Err(other.unexpected("ProfileStats")),
        })
        .await?;
        Ok(stats)
    }
}
