//! Jobs: the pieces a query-frontend cuts a query into ([`crate::frontend`]) and queriers run
//! ([`QueryService::run_job`]). A job is one question of `querier.v1` semantics over one tenant
//! and one time range whose answer merges exactly with the answers of the other pieces: label
//! sets are unioned, function trees and pprof profiles merged, series buckets added. On the
//! wire a job is a `hearth.cluster.v1.QueryJob` and its answer a `JobAnswer`.

use hearth_engine::ErrorKind;
use hearth_engine::flamegraph::FunctionTree;
use hearth_engine::matcher::{LabelMatcher, MatchOp};
use hearth_engine::model::{Labels, ProfileType, TenantId};
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_proto::pprof::Profile;
use prost::Message;
use wire::job_answer::Answer as WireAnswer;
use wire::query_job::Query as WireQuery;

use crate::error::{Error, Result};
use crate::select::{BucketGrid, PprofPiece, ProfileSelection, SeriesBuckets};
use crate::selector::Selector;
use crate::service::{MillisRange, QueryService};

/// One piece of a query.
#[derive(Debug, Clone)]
pub enum Job {
    ProfileTypes {
        range: MillisRange,
    },
    LabelNames {
        matchers: Vec<String>,
        range: MillisRange,
    },
    LabelValues {
        name: String,
        matchers: Vec<String>,
        range: MillisRange,
    },
    Series {
        matchers: Vec<String>,
        label_names: Vec<String>,
        range: MillisRange,
    },
    /// The selected samples merged into a function tree.
    Tree {
        selection: ProfileSelection,
        span_ids: Option<Vec<u64>>,
    },
    /// The selected samples merged into a pprof profile.
    Pprof {
        selection: ProfileSelection,
    },
    /// Per series, profile totals and counts per bucket of `grid` (the selection's range is
    /// what is read).
    SeriesBuckets {
        selection: ProfileSelection,
        grid: BucketGrid,
    },
    ProfileStats,
}

impl Job {
    /// The method name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Job::ProfileTypes { .. } => "ProfileTypes",
            Job::LabelNames { .. } => "LabelNames",
            Job::LabelValues { .. } => "LabelValues",
            Job::Series { .. } => "Series",
            Job::Tree { .. } => "Tree",
            Job::Pprof { .. } => "Pprof",
            Job::SeriesBuckets { .. } => "SeriesBuckets",
            Job::ProfileStats => "ProfileStats",
        }
    }
}

/// A job's answer.
#[derive(Debug)]
pub enum JobAnswer {
    ProfileTypes(Vec<ProfileType>),
    /// Label names or values.
    Strings(Vec<String>),
    Series(Vec<Labels>),
    Tree(FunctionTree),
    Pprof(PprofPiece),
    SeriesBuckets(SeriesBuckets),
    /// The oldest and newest profile times (ms), if any.
    ProfileStats(Option<(i64, i64)>),
}

impl JobAnswer {
    /// An answer of another kind than the job asked for: a bug (or two binaries of different
    /// versions), reported as such.
    pub(crate) fn unexpected(self, job: &'static str) -> Error {
        Error::internal(format!(
            "a {job} job was answered with {}",
            match self {
                JobAnswer::ProfileTypes(_) => "profile types",
                JobAnswer::Strings(_) => "strings",
                JobAnswer::Series(_) => "label sets",
                JobAnswer::Tree(_) => "a tree",
                JobAnswer::Pprof(_) => "a profile",
                JobAnswer::SeriesBuckets(_) => "series buckets",
                JobAnswer::ProfileStats(_) => "profile stats",
            }
        ))
    }
}

impl QueryService {
    /// A querier's side of a job: the piece of the query over this service's data.
    pub async fn run_job(&self, tenant: &TenantId, job: Job) -> Result<JobAnswer> {
        Ok(match job {
            Job::ProfileTypes { range } => {
                JobAnswer::ProfileTypes(self.profile_types(tenant, range).await?)
            }
            Job::LabelNames { matchers, range } => {
                JobAnswer::Strings(self.label_names(tenant, &matchers, range).await?)
            }
            Job::LabelValues {
                name,
                matchers,
                range,
            } => JobAnswer::Strings(self.label_values(tenant, &name, &matchers, range).await?),
            Job::Series {
                matchers,
                label_names,
                range,
            } => JobAnswer::Series(self.series(tenant, &matchers, &label_names, range).await?),
            Job::Tree {
                selection,
                span_ids,
            } => JobAnswer::Tree(
                self.merge_tree(tenant, &selection, span_ids.as_deref())
                    .await?,
            ),
            Job::Pprof { selection } => {
                JobAnswer::Pprof(self.pprof_piece(tenant, &selection).await?)
            }
            Job::SeriesBuckets { selection, grid } => {
                JobAnswer::SeriesBuckets(self.series_buckets(tenant, &selection, grid).await?)
            }
            Job::ProfileStats => JobAnswer::ProfileStats(self.profile_stats(tenant).await?),
        })
    }
}

fn matchers_to_wire(selection: &ProfileSelection) -> Vec<wire::Matcher> {
    selection
        .selector
        .matchers
        .iter()
        .map(|m| wire::Matcher {
            name: m.name.clone(),
            op: m.op.as_str().to_string(),
            value: m.value.clone(),
        })
        .collect()
}

fn profile_job(selection: &ProfileSelection, span_ids: Option<&[u64]>) -> wire::ProfileJob {
    wire::ProfileJob {
        profile_type: selection.profile_type.id(),
        matchers: matchers_to_wire(selection),
        span_ids: span_ids.map(|ids| wire::SpanIds { ids: ids.to_vec() }),
    }
}

fn selection_from_wire(
    profile_type: &str,
    matchers: Vec<wire::Matcher>,
    range: MillisRange,
) -> Result<ProfileSelection> {
    let profile_type =
        ProfileType::parse(profile_type).map_err(|e| Error::invalid(e.to_string()))?;
    let matchers = matchers
        .into_iter()
        .map(|m| {
            let op = match m.op.as_str() {
                "=" => MatchOp::Equal,
                "!=" => MatchOp::NotEqual,
                "=~" => MatchOp::Regex,
                "!~" => MatchOp::NotRegex,
                other => return Err(Error::invalid(format!("unknown matcher op {other:?}"))),
            };
            LabelMatcher::new(m.name, op, m.value).map_err(|e| Error::invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ProfileSelection {
        selector: Selector {
            profile_type: Some(profile_type.clone()),
            matchers,
        },
        profile_type,
        range,
    })
}

fn labels_to_wire(labels: &Labels) -> wire::LabelSet {
    let (names, values) = labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .unzip();
    wire::LabelSet { names, values }
}

fn labels_from_wire(set: wire::LabelSet) -> Labels {
    Labels::from_pairs(set.names.into_iter().zip(set.values))
}

/// `job` of `tenant` as it crosses the wire.
pub fn job_to_wire(tenant: &TenantId, job: &Job) -> wire::QueryJob {
    let (range, query) = match job {
        Job::ProfileTypes { range } => (*range, WireQuery::ProfileTypes(wire::ProfileTypesJob {})),
        Job::LabelNames { matchers, range } => (
            *range,
            WireQuery::LabelNames(wire::LabelNamesJob {
                matchers: matchers.clone(),
            }),
        ),
        Job::LabelValues {
            name,
            matchers,
            range,
        } => (
            *range,
            WireQuery::LabelValues(wire::LabelValuesJob {
                name: name.clone(),
                matchers: matchers.clone(),
            }),
        ),
        Job::Series {
            matchers,
            label_names,
            range,
        } => (
            *range,
            WireQuery::Series(wire::SeriesJob {
                matchers: matchers.clone(),
                label_names: label_names.clone(),
            }),
        ),
        Job::Tree {
            selection,
            span_ids,
        } => (
            selection.range,
            WireQuery::Tree(profile_job(selection, span_ids.as_deref())),
        ),
        Job::Pprof { selection } => (
            selection.range,
            WireQuery::Pprof(profile_job(selection, None)),
        ),
        Job::SeriesBuckets { selection, grid } => (
            selection.range,
            WireQuery::SeriesBuckets(wire::SeriesBucketsJob {
                profile_type: selection.profile_type.id(),
                matchers: matchers_to_wire(selection),
                grid_start_ms: grid.start_ms,
                step_ms: grid.step_ms,
            }),
        ),
        Job::ProfileStats => (
            MillisRange { start: 0, end: 0 },
            WireQuery::ProfileStats(wire::ProfileStatsJob {}),
        ),
    };
    wire::QueryJob {
        tenant: tenant.to_string(),
        start_ms: range.start,
        end_ms: range.end,
        query: Some(query),
    }
}

/// A job as a querier receives it; a bad one is `invalid_argument` naming the problem.
pub fn job_from_wire(job: wire::QueryJob) -> Result<(TenantId, Job)> {
    let tenant = TenantId::new(&job.tenant).map_err(|e| Error::invalid(e.to_string()))?;
    let range = MillisRange::new(job.start_ms, job.end_ms)?;
    let job = match job.query {
        Some(WireQuery::ProfileTypes(_)) => Job::ProfileTypes { range },
        Some(WireQuery::LabelNames(j)) => Job::LabelNames {
            matchers: j.matchers,
            range,
        },
        Some(WireQuery::LabelValues(j)) => Job::LabelValues {
            name: j.name,
            matchers: j.matchers,
            range,
        },
        Some(WireQuery::Series(j)) => Job::Series {
            matchers: j.matchers,
            label_names: j.label_names,
            range,
        },
        Some(WireQuery::Tree(j)) => Job::Tree {
            selection: selection_from_wire(&j.profile_type, j.matchers, range)?,
            span_ids: j.span_ids.map(|s| s.ids),
        },
        Some(WireQuery::Pprof(j)) => Job::Pprof {
            selection: selection_from_wire(&j.profile_type, j.matchers, range)?,
        },
        Some(WireQuery::SeriesBuckets(j)) => Job::SeriesBuckets {
            selection: selection_from_wire(&j.profile_type, j.matchers, range)?,
            grid: BucketGrid {
                start_ms: j.grid_start_ms,
                step_ms: j.step_ms,
            },
        },
        Some(WireQuery::ProfileStats(_)) => Job::ProfileStats,
        None => return Err(Error::invalid("the query job names no query")),
    };
    Ok((tenant, job))
}

/// A job's outcome as it crosses the wire; errors keep their kind.
pub fn answer_to_wire(answer: Result<JobAnswer>) -> wire::JobAnswer {
    let answer = match answer {
        Err(error) => WireAnswer::Error(wire::JobError {
            kind: error.kind().as_str().to_string(),
            message: error.to_string(),
        }),
        Ok(JobAnswer::ProfileTypes(types)) => WireAnswer::ProfileTypes(wire::Strings {
            values: types.iter().map(ProfileType::id).collect(),
        }),
        Ok(JobAnswer::Strings(values)) => WireAnswer::Strings(wire::Strings { values }),
        Ok(JobAnswer::Series(sets)) => WireAnswer::Series(wire::LabelSets {
            sets: sets.iter().map(labels_to_wire).collect(),
        }),
        Ok(JobAnswer::Tree(tree)) => WireAnswer::Tree(tree.encode().into()),
        Ok(JobAnswer::Pprof(piece)) => WireAnswer::Pprof(wire::PprofAnswer {
            profile: piece.profile.encode_to_vec().into(),
            period: piece.period,
        }),
        Ok(JobAnswer::SeriesBuckets(buckets)) => {
            WireAnswer::SeriesBuckets(wire::SeriesBucketsAnswer {
                series: buckets
                    .series
                    .iter()
                    .map(|(labels, points)| {
                        let mut series = wire::BucketSeries {
                            labels: Some(labels_to_wire(labels)),
                            ..Default::default()
                        };
                        for (&bucket, &(total, profiles)) in points {
                            series.buckets.push(bucket);
                            series.totals.push(total);
                            series.profiles.push(profiles);
                        }
                        series
                    })
                    .collect(),
            })
        }
        Ok(JobAnswer::ProfileStats(stats)) => WireAnswer::ProfileStats(wire::ProfileStats {
            has_data: stats.is_some(),
            oldest_ms: stats.map_or(0, |s| s.0),
            newest_ms: stats.map_or(0, |s| s.1),
        }),
    };
    wire::JobAnswer {
        answer: Some(answer),
    }
}

/// A job's outcome as the frontend receives it.
pub fn answer_from_wire(answer: wire::JobAnswer) -> Result<JobAnswer> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::internal(format!("a querier's {what} does not decode: {e}"))
    };
    Ok(match answer.answer {
        None => return Err(Error::internal("a querier sent an empty job answer")),
        Some(WireAnswer::Error(error)) => {
            return Err(Error::Invalid {
                kind: ErrorKind::parse(&error.kind).unwrap_or(ErrorKind::Internal),
                message: error.message,
            });
        }
        Some(WireAnswer::ProfileTypes(types)) => JobAnswer::ProfileTypes(
            types
                .values
                .iter()
                .map(|id| ProfileType::parse(id).map_err(|e| corrupt("profile type", &e)))
                .collect::<Result<_>>()?,
        ),
        Some(WireAnswer::Strings(s)) => JobAnswer::Strings(s.values),
        Some(WireAnswer::Series(sets)) => {
            JobAnswer::Series(sets.sets.into_iter().map(labels_from_wire).collect())
        }
        Some(WireAnswer::Tree(bytes)) => {
            JobAnswer::Tree(FunctionTree::decode(&bytes).map_err(|e| corrupt("function tree", &e))?)
        }
        Some(WireAnswer::Pprof(p)) => JobAnswer::Pprof(PprofPiece {
            profile: Profile::decode(p.profile).map_err(|e| corrupt("profile", &e))?,
            period: p.period,
        }),
        Some(WireAnswer::SeriesBuckets(answer)) => {
            let mut buckets = SeriesBuckets::default();
            for series in answer.series {
                let labels = labels_from_wire(series.labels.unwrap_or_default());
                for ((bucket, total), profiles) in series
                    .buckets
                    .iter()
                    .zip(&series.totals)
                    .zip(&series.profiles)
                {
                    buckets.add(&labels, *bucket, (*total, *profiles));
                }
            }
            JobAnswer::SeriesBuckets(buckets)
        }
        Some(WireAnswer::ProfileStats(s)) => {
            JobAnswer::ProfileStats(s.has_data.then_some((s.oldest_ms, s.newest_ms)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_cross_the_wire_unchanged() {
        let tenant = TenantId::new("team-a").unwrap();
        let selection = ProfileSelection::parse(
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            r#"{service_name="api", pod=~"web-\"1\".*", zone!="\u001b"}"#,
            1_000,
            2_000,
        )
        .unwrap();
        let jobs = [
            Job::Tree {
                selection: selection.clone(),
                span_ids: Some(vec![1, 2]),
            },
            Job::SeriesBuckets {
                selection: selection.clone(),
                grid: BucketGrid {
                    start_ms: 1_000,
                    step_ms: 15,
                },
            },
            Job::LabelValues {
                name: "pod".into(),
                matchers: vec!["{a=\"b\"}".into()],
                range: MillisRange { start: 0, end: 9 },
            },
        ];
        for job in jobs {
            let bytes = job_to_wire(&tenant, &job).encode_to_vec();
            let (back_tenant, back) =
                job_from_wire(wire::QueryJob::decode(bytes.as_slice()).unwrap()).unwrap();
            assert_eq!(back_tenant, tenant);
            assert_eq!(format!("{back:?}"), format!("{job:?}"));
        }
        let error = job_from_wire(wire::QueryJob {
            tenant: "t".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("names no query"), "{error}");
    }

    #[test]
    fn answers_and_errors_keep_what_they_say() {
        let mut buckets = SeriesBuckets::default();
        let labels = Labels::from_pairs([("service_name", "api")]);
        buckets.add(&labels, 3, (10, 2));
        buckets.add(&labels, 3, (5, 1));
        let back = answer_from_wire(answer_to_wire(Ok(JobAnswer::SeriesBuckets(
            buckets.clone(),
        ))))
        .unwrap();
        match back {
            JobAnswer::SeriesBuckets(back) => assert_eq!(back, buckets),
            other => panic!("{other:?}"),
        }
        let error =
            answer_from_wire(answer_to_wire(Err(Error::invalid("bad selector")))).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(error.to_string(), "bad selector");
    }
}
