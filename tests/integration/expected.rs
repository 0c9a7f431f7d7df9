//! What a pprof should become, computed here from the decoded protobuf without Hearth's code:
//! profile types, per-type totals, and the groups of string sample labels that split series.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::pprof::Profile;
use prost::Message;

use super::support::gunzip_if_gzip;

pub(crate) struct PprofFacts {
    /// (sample type, unit) per value index.
    pub sample_types: Vec<(String, String)>,
    pub period_type: (String, String),
    /// Sum of each value index over all samples.
    pub totals: Vec<i64>,
    /// The string sample labels of each sample (span and trace ids excluded).
    pub sample_labels: Vec<BTreeMap<String, String>>,
}

pub(crate) fn decode(bytes: &[u8]) -> Profile {
    Profile::decode(gunzip_if_gzip(bytes).as_slice()).expect("fixture decodes")
}

pub(crate) fn facts(bytes: &[u8]) -> PprofFacts {
    let p = decode(bytes);
    let s = |i: i64| p.string_table[i as usize].clone();
    let sample_types = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    let period_type = p
        .period_type
        .map(|t| (s(t.r#type), s(t.unit)))
        .unwrap_or_default();
    let totals = (0..p.sample_type.len())
        .map(|i| p.sample.iter().map(|x| x.value[i]).sum())
        .collect();
    let sample_labels = p
        .sample
        .iter()
        .map(|x| {
            let mut labels = BTreeMap::new();
            for l in &x.label {
                let key = s(l.key).replace('.', "_");
                if l.str == 0 || ["span_id", "profile_id", "trace_id"].contains(&key.as_str()) {
                    continue;
                }
                labels.entry(key).or_insert_with(|| s(l.str));
            }
            labels
        })
        .collect();
    PprofFacts {
        sample_types,
        period_type,
        totals,
        sample_labels,
    }
}

impl PprofFacts {
    /// The profile type id of value index `i` for a profile named `name` (a `wall` profile's
    /// `cpu` type is named `process_cpu`, Pyroscope's default relabelling).
    pub(crate) fn profile_type(&self, name: &str, i: usize) -> String {
        let (sample_type, unit) = &self.sample_types[i];
        let name = if name == "wall" && sample_type == "cpu" {
            "process_cpu"
        } else {
            name
        };
        format!(
            "{name}:{sample_type}:{unit}:{}:{}",
            self.period_type.0, self.period_type.1
        )
    }

    /// Distinct series label groups, given the names the series labels already set (those win).
    pub(crate) fn groups(
        &self,
        series_label_names: &BTreeSet<String>,
    ) -> BTreeSet<Vec<(String, String)>> {
        self.sample_labels
            .iter()
            .map(|labels| {
                labels
                    .iter()
                    .filter(|(k, _)| !series_label_names.contains(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect()
    }
}

/// A series as the test predicts it: its sample-label group and its profile type.
pub(crate) type PredictedSeries = (Vec<(String, String)>, String);

/// What a set of pushes should leave stored, by service.
#[derive(Default)]
pub(crate) struct Expectations {
    /// (service, profile type id) -> total value.
    pub totals: BTreeMap<(String, String), i64>,
    /// service -> its distinct (sample-label group, profile type) pairs: one series each.
    pub series: BTreeMap<String, BTreeSet<PredictedSeries>>,
}

impl Expectations {
    pub(crate) fn add(
        &mut self,
        service: &str,
        name: &str,
        series_label_names: &BTreeSet<String>,
        facts: &PprofFacts,
    ) {
        for (i, total) in facts.totals.iter().enumerate() {
            *self
                .totals
                .entry((service.to_string(), facts.profile_type(name, i)))
                .or_default() += total;
        }
        let series = self.series.entry(service.to_string()).or_default();
        for group in facts.groups(series_label_names) {
            for i in 0..facts.sample_types.len() {
                series.insert((group.clone(), facts.profile_type(name, i)));
            }
        }
    }

    pub(crate) fn profile_types(&self, service: &str) -> BTreeSet<String> {
        self.totals
            .keys()
            .filter(|(s, _)| s == service)
            .map(|(_, t)| t.clone())
            .collect()
    }
}
