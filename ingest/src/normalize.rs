//! From one decoded pprof and its series labels to the engine's [`ProfileBatch`], as Pyroscope
//! does it:
//!
//! - samples are grouped by their string sample labels, which become series labels (a label the
//!   series already has wins); `span_id` (and `profile_id`, its old name) and `trace_id` are split
//!   out instead; numeric labels are dropped;
//! - each group yields one series per sample type, labelled with `__profile_type__`, `__type__`,
//!   `__unit__`, `__period_type__`, `__period_unit__` and `__service_name__`;
//! - Pyroscope's default relabel rules apply: `godeltaprof_X` is named `X`, and a `wall`
//!   profile's `cpu` sample type is named `process_cpu`;
//! - a time of 0 or in 1970 is replaced by the request's time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hearth_engine::time::now_nanos;

use bytes::Bytes;
use hearth_engine::model::{Labels, ProfileType, label};
use hearth_engine::pprof::{self, PprofIndex};
use hearth_engine::{ErrorKind, ProfileBatch, SeriesProfile};
use hearth_proto::pprof::Profile;
use prost::Message;

use crate::error::{Error, Result, reason};
use crate::labels::validate_labels;
use hearth_engine::limits::Limits;

/// Sample-label keys that are stored beside samples instead of becoming series labels.
const SPAN_ID: &str = "span_id";
const LEGACY_SPAN_ID: &str = "profile_id";
const TRACE_ID: &str = "trace_id";

/// Nanoseconds in 1970: a profile time below this was never set.
const YEAR_1971_NANOS: i64 = 365 * 24 * 3600 * 1_000_000_000;

/// One decoded pprof with the labels and metadata of its series.
#[derive(Debug)]
pub struct NormalizeArgs<'a> {
    /// The series labels, validated.
    pub labels: Labels,
    pub raw: Bytes,
    pub pprof: Profile,
    pub index: PprofIndex,
    /// The profile's id; a fresh UUID when empty.
    pub profile_id: String,
    /// Used when the pprof's own time is unset.
    pub default_time_nanos: i64,
    pub limits: &'a Limits,
}

/// The profile name Pyroscope derives from sample types on `/ingest` (`metricName`).
pub fn metric_name(sample_types: &[String], display_names: &HashMap<String, String>) -> String {
    if sample_types.iter().any(|t| t == "wall") {
        return "wall".into();
    }
    for sample_type in sample_types {
        let t = display_names.get(sample_type).unwrap_or(sample_type);
        let name = if t.contains("cpu") {
            "process_cpu"
        } else if t.contains("alloc_") || t.contains("inuse_") || t == "space" || t == "objects" {
            "memory"
        } else if t.contains("mutex_") {
            "mutex"
        } else if t.contains("block_") {
            "block"
        } else if t.contains("goroutines") {
            "goroutines"
        } else {
            continue;
        };
        return name.into();
    }
    sample_types.last().cloned().unwrap_or_default()
}

/// Samples that share their string labels.
struct SampleGroup {
    labels: Labels,
    samples: Vec<u32>,
    span_ids: Vec<u64>,
    has_spans: bool,
}

fn parse_span_id(value: &str) -> u64 {
    u64::from_str_radix(value, 16).unwrap_or(0)
}

fn check_profile(p: &Profile, labels: &Labels, limits: &Limits) -> Result<()> {
    if limits.max_profile_samples > 0 && p.sample.len() > limits.max_profile_samples {
        return Err(Error::invalid(
            reason::SAMPLES_LIMIT,
            format!(
                "the profile with labels '{labels}' exceeds the samples count limit (max_profile_samples, actual: {}, limit: {})",
                p.sample.len(),
                limits.max_profile_samples
            ),
        ));
    }
    if limits.max_sample_labels > 0
        && let Some(s) = p
            .sample
            .iter()
            .find(|s| s.label.len() > limits.max_sample_labels)
    {
        return Err(Error::invalid(
            reason::SAMPLE_LABELS_LIMIT,
            format!(
                "the profile with labels '{labels}' exceeds the sample labels limit (max_sample_labels, actual: {}, limit: {})",
                s.label.len(),
                limits.max_sample_labels
            ),
        ));
    }
    Ok(())
}

fn check_ingestion_window(time: i64, labels: &Labels, limits: &Limits) -> Result<()> {
    let now = now_nanos();
    let nanos = |d: Duration| d.as_nanos().min(i64::MAX as u128) as i64;
    let too_old = !limits.reject_older_than.is_zero()
        && time <= now.saturating_sub(nanos(limits.reject_older_than));
    let too_new = !limits.reject_newer_than.is_zero()
        && time >= now.saturating_add(nanos(limits.reject_newer_than));
    if too_old || too_new {
        return Err(Error::invalid(
            reason::NOT_IN_INGESTION_WINDOW,
            format!(
                "profile with labels '{labels}' is outside of the ingestion window (profile timestamp: {time} ns; accepted: from {:?} ago to {:?} ahead)",
                limits.reject_older_than, limits.reject_newer_than
            ),
        ));
    }
    Ok(())
}

/// Groups samples by their string labels, in first-seen order.
fn group_samples(p: &Profile, base: &Labels, limits: &Limits) -> Result<Vec<SampleGroup>> {
    let s = |i: i64| pprof::string(p, i);
    let mut groups: Vec<SampleGroup> = Vec::new();
    let mut by_key: HashMap<Vec<(i64, i64)>, usize> = HashMap::new();
    let mut key = Vec::new();
    for (i, sample) in p.sample.iter().enumerate() {
        key.clear();
        let mut span = 0u64;
        for l in &sample.label {
            if l.str == 0 {
                continue;
            }
            match s(l.key) {
                SPAN_ID | LEGACY_SPAN_ID => span = parse_span_id(s(l.str)),
                TRACE_ID => {}
                _ => key.push((l.key, l.str)),
            }
        }
        key.sort_unstable_by(|a, b| (s(a.0), s(a.1)).cmp(&(s(b.0), s(b.1))));
        key.dedup_by(|a, b| s(a.0) == s(b.0));
        let group = match by_key.get(&key) {
            Some(&g) => g,
            None => {
                let mut pairs: Vec<(String, String)> = base
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                for &(k, v) in &key {
                    let name = if limits.sanitize_label_names {
                        s(k).replace('.', "_")
                    } else {
                        s(k).to_string()
                    };
                    if base.get(&name).is_none() {
                        pairs.push((name, s(v).to_string()));
                    }
                }
                let labels = validate_labels(pairs, limits)?;
                groups.push(SampleGroup {
                    labels,
                    samples: Vec::new(),
                    span_ids: Vec::new(),
                    has_spans: false,
                });
                by_key.insert(key.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };
        let g = &mut groups[group];
        g.samples.push(i as u32);
        g.span_ids.push(span);
        g.has_spans |= span != 0;
    }
    // Groups whose labels end up equal (a series label won over a sample label) are one series.
    let mut merged: Vec<SampleGroup> = Vec::new();
    for group in groups {
        match merged.iter_mut().find(|m| m.labels == group.labels) {
            Some(m) => {
                m.samples.extend(group.samples);
                m.span_ids.extend(group.span_ids);
                m.has_spans |= group.has_spans;
            }
            None => merged.push(group),
        }
    }
    Ok(merged)
}

/// The labels of one sample type's series.
fn series_labels(group: &Labels, p: &Profile, value_index: usize) -> Labels {
    let s = |i: i64| pprof::string(p, i).to_string();
    let mut labels = group.clone();
    // Private labels are request controls, not series identity.
    let private: Vec<String> = labels
        .iter()
        .filter(|l| l.name.starts_with("__") && l.name != label::NAME)
        .map(|l| l.name.clone())
        .collect();
    for name in private {
        labels.remove(&name);
    }
    let sample_type = &p.sample_type[value_index];
    let (period_type, period_unit) = p
        .period_type
        .map(|pt| (s(pt.r#type), s(pt.unit)))
        .unwrap_or_default();
    let mut name = labels.get(label::NAME).unwrap_or_default().to_string();
    if let Some(stripped) = name.strip_prefix("godeltaprof_") {
        name = stripped.to_string();
    }
    let sample_type_name = s(sample_type.r#type);
    if name == "wall" && sample_type_name == "cpu" {
        name = "process_cpu".into();
    }
    let profile_type = ProfileType {
        name,
        sample_type: sample_type_name,
        sample_unit: s(sample_type.unit),
        period_type,
        period_unit,
    };
    let service = labels
        .get(label::SERVICE_NAME)
        .unwrap_or_default()
        .to_string();
    labels.set(label::NAME, profile_type.name.clone());
    labels.set(label::PRIVATE_SERVICE_NAME, service);
    labels.set(label::PERIOD_TYPE, profile_type.period_type.clone());
    labels.set(label::PERIOD_UNIT, profile_type.period_unit.clone());
    labels.set(label::TYPE, profile_type.sample_type.clone());
    labels.set(label::UNIT, profile_type.sample_unit.clone());
    labels.set(label::PROFILE_TYPE, profile_type.id());
    labels
}

/// Builds the engine batch for one pprof.
pub fn normalize(args: NormalizeArgs<'_>) -> Result<ProfileBatch> {
    let NormalizeArgs {
        labels,
        raw,
        pprof: p,
        index,
        profile_id,
        default_time_nanos,
        limits,
    } = args;
    check_profile(&p, &labels, limits)?;
    let time_nanos = if p.time_nanos < YEAR_1971_NANOS {
        default_time_nanos
    } else {
        p.time_nanos
    };
    check_ingestion_window(time_nanos, &labels, limits)?;
    let profile_id = if profile_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        profile_id
    };
    let partition = labels
        .get(label::SERVICE_NAME)
        .unwrap_or(label::UNKNOWN_SERVICE)
        .to_string();
    let groups = group_samples(&p, &labels, limits)?;
    let whole = groups.len() == 1;
    let mut profiles = Vec::new();
    for group in &groups {
        for value_index in 0..p.sample_type.len() {
            profiles.push(SeriesProfile {
                labels: series_labels(&group.labels, &p, value_index),
                value_index,
                time_nanos,
                duration_nanos: p.duration_nanos,
                period: p.period,
                id: profile_id.clone(),
                samples: (!whole).then(|| group.samples.clone()),
                span_ids: if group.has_spans {
                    group.span_ids.clone()
                } else {
                    Vec::new()
                },
            });
        }
    }
    Ok(ProfileBatch {
        partition,
        raw,
        pprof: Arc::new(p),
        index: Arc::new(index),
        profiles,
    })
}

/// Validates and normalises a pprof built here from another format (stack formats, JFR, OTLP),
/// with its series labels.
pub(crate) fn built(
    pprof: Profile,
    pairs: Vec<(String, String)>,
    default_time_nanos: i64,
    limits: &Limits,
) -> Result<ProfileBatch> {
    let labels = validate_labels(pairs, limits)?;
    let raw = Bytes::from(pprof.encode_to_vec());
    let (pprof, index) = ProfileBatch::index_pprof(pprof, raw.len(), limits.max_profile_bytes)
        .map_err(|e| profile_error(e, &labels, ErrorKind::PayloadTooLarge))?;
    normalize(NormalizeArgs {
        labels,
        raw,
        pprof,
        index,
        profile_id: String::new(),
        default_time_nanos,
        limits,
    })
}

/// A decode failure with the series it was for; an over-size profile gets `too_large`.
pub(crate) fn profile_error(
    error: hearth_engine::Error,
    labels: &Labels,
    too_large: ErrorKind,
) -> Error {
    let series = if labels.is_empty() {
        String::new()
    } else {
        format!(" with labels '{labels}'")
    };
    match error.kind() {
        ErrorKind::PayloadTooLarge => Error::rejected(
            too_large,
            reason::PROFILE_SIZE_LIMIT,
            format!("the profile{series} exceeds the size limit: {error}"),
        ),
        kind => Error::rejected(
            kind,
            reason::MALFORMED_PROFILE,
            format!("the profile{series} is invalid: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::pprof::{Label as PLabel, Location, Sample, ValueType};

    fn profile() -> Profile {
        let strings = [
            "",
            "cpu",
            "nanoseconds",
            "thread",
            "main",
            "worker",
            "span_id",
            "00000000000000ab",
            "samples",
            "count",
        ];
        let sample = |thread: i64, span: bool| Sample {
            location_id: vec![1],
            value: vec![10, 1],
            label: [
                Some(PLabel {
                    key: 3,
                    str: thread,
                    ..Default::default()
                }),
                span.then_some(PLabel {
                    key: 6,
                    str: 7,
                    ..Default::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        Profile {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            sample_type: vec![
                ValueType { r#type: 1, unit: 2 },
                ValueType { r#type: 8, unit: 9 },
            ],
            period_type: Some(ValueType { r#type: 1, unit: 2 }),
            location: vec![Location {
                id: 1,
                ..Default::default()
            }],
            sample: vec![sample(4, false), sample(5, true), sample(4, true)],
            ..Default::default()
        }
    }

    fn run(p: Profile, base: &[(&str, &str)]) -> ProfileBatch {
        let limits = Limits::default();
        let labels = validate_labels(
            base.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            &limits,
        )
        .unwrap();
        let index = PprofIndex::new(&p).unwrap();
        normalize(NormalizeArgs {
            labels,
            raw: Bytes::new(),
            pprof: p,
            index,
            profile_id: "id".into(),
            default_time_nanos: 42,
            limits: &limits,
        })
        .unwrap()
    }

    #[test]
    fn sample_labels_split_series_and_spans_split_out() {
        let batch = run(
            profile(),
            &[("__name__", "process_cpu"), ("service_name", "svc")],
        );
        // 2 threads x 2 sample types.
        assert_eq!(batch.profiles.len(), 4);
        let main_cpu = &batch.profiles[0];
        assert_eq!(main_cpu.labels.get("thread"), Some("main"));
        assert_eq!(main_cpu.samples, Some(vec![0, 2]));
        assert_eq!(main_cpu.span_ids, vec![0, 0xab]);
        assert_eq!(main_cpu.time_nanos, 42, "time 0 takes the request's time");
        assert_eq!(
            main_cpu.labels.get("__profile_type__"),
            Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
        );
        assert_eq!(main_cpu.labels.get("__service_name__"), Some("svc"));
        assert!(
            batch
                .profiles
                .iter()
                .all(|p| p.labels.get("span_id").is_none())
        );
    }

    #[test]
    fn series_labels_win_over_sample_labels() {
        let batch = run(
            profile(),
            &[
                ("__name__", "process_cpu"),
                ("service_name", "svc"),
                ("thread", "fixed"),
            ],
        );
        assert_eq!(batch.profiles.len(), 2);
        assert_eq!(batch.profiles[0].samples, None, "one group: all samples");
    }

    #[test]
    fn metric_names_follow_pyroscope() {
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = HashMap::new();
        assert_eq!(
            metric_name(&types(&["samples", "wall", "cpu"]), &none),
            "wall"
        );
        assert_eq!(
            metric_name(&types(&["samples", "cpu"]), &none),
            "process_cpu"
        );
        assert_eq!(
            metric_name(&types(&["inuse_objects", "inuse_space"]), &none),
            "memory"
        );
        assert_eq!(
            metric_name(&types(&["contentions", "delay"]), &none),
            "delay"
        );
        // Without a sample_type_config, Pyroscope's default display names: py-spy's
        // `samples` is CPU, Go's mutex and block profiles are `mutex`, goroutines keep
        // their plural.
        let defaults = crate::legacy::display_names(None).unwrap();
        for (sample_types, name) in [
            (&["samples"][..], "process_cpu"),
            (&["contentions", "delay"], "mutex"),
            (&["goroutine"], "goroutines"),
            (&["alloc_objects", "alloc_space"], "memory"),
            (&["cpu", "alloc_samples", "alloc_size"], "process_cpu"),
        ] {
            assert_eq!(metric_name(&types(sample_types), &defaults), name);
        }
        // A config replaces the defaults: `samples` keeps its own name.
        let config = crate::legacy::display_names(Some(br#"{"x": {"display-name": "y"}}"#));
        assert_eq!(
            metric_name(&types(&["samples"]), &config.unwrap()),
            "samples"
        );
    }

    #[test]
    fn wall_cpu_is_process_cpu() {
        let mut p = profile();
        p.string_table[8] = "wall".into();
        let batch = run(
            p,
            &[
                ("__name__", "wall"),
                ("service_name", "svc"),
                ("thread", "x"),
            ],
        );
        let names: Vec<_> = batch
            .profiles
            .iter()
            .map(|p| p.labels.get("__name__").unwrap())
            .collect();
        assert_eq!(names, vec!["process_cpu", "wall"]);
    }
}
