//! Label postings: for every label name and value, the series that carry it, so the label and
//! series APIs (`LabelNames`, `LabelValues`, `Series`) find their series without decoding every
//! series' labels.
//!
//! A [`Head`](crate::head::Head) keeps its [`Postings`] up to date as series arrive (labels never
//! change, so a series is added once). A block's [`BlockSeriesIndex`] is built from its
//! `series.parquet` on first use and kept in the [`BlockCache`](crate::block_cache::BlockCache),
//! since blocks never change; [`TenantSnapshot::visit_series`](crate::TenantSnapshot) hands a
//! query each of a snapshot's. [`SeriesQuery`] answers over either through [`SeriesLookup`]:
//! the postings of the most selective positive matcher (`name="value"`, or a regex that does not
//! match the empty value) give the candidates, which are then checked against every matcher
//! and the time range. With no selector, names and values are read off the postings directly,
//! one series each to check the time range.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
use object_store::ObjectStore;

use crate::block::{Block, read_whole_table};
use crate::error::Result;
use crate::matcher::{LabelMatcher, MatchOp, matches_all};
use crate::model::{Labels, TenantId, TimeRange};
use crate::schema::{self, TableKind};

/// For each label name and value, the keys of the series carrying it, in the order added.
#[derive(Debug)]
pub struct Postings<K> {
    names: BTreeMap<String, BTreeMap<String, Vec<K>>>,
    bytes: usize,
}

impl<K> Default for Postings<K> {
    fn default() -> Self {
        Postings {
            names: BTreeMap::new(),
            bytes: 0,
        }
    }
}

impl<K: Copy> Postings<K> {
    /// Records that series `key` carries `labels`; each series is added once.
    pub fn add(&mut self, key: K, labels: &Labels) {
        for label in labels.iter() {
            let values = match self.names.get_mut(&label.name) {
                Some(values) => values,
                None => {
                    self.bytes += label.name.len() + 64;
                    self.names.entry(label.name.clone()).or_default()
                }
            };
            let keys = match values.get_mut(&label.value) {
                Some(keys) => keys,
                None => {
                    self.bytes += label.value.len() + 80;
                    values.entry(label.value.clone()).or_default()
                }
            };
            keys.push(key);
            self.bytes += std::mem::size_of::<K>();
        }
    }

    /// A rough count of the bytes held.
    pub fn estimated_bytes(&self) -> usize {
        self.bytes
    }

    fn values(&self, name: &str) -> Option<&BTreeMap<String, Vec<K>>> {
        self.names.get(name)
    }
}

/// One series as a [`SeriesLookup`] shows it.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    pub id: u64,
    pub labels: &'a Labels,
    pub min_time: i64,
    pub max_time: i64,
}

/// Series and their postings, as a head or a block holds them.
pub trait SeriesLookup {
    type Key: Copy + Ord;
    fn postings(&self) -> &Postings<Self::Key>;
    /// Every series' key.
    fn keys(&self) -> impl Iterator<Item = Self::Key> + '_;
    fn series(&self, key: Self::Key) -> Option<SeriesRef<'_>>;
}

/// The series a label query reads: those overlapping `time` and matching any of `selectors`
/// (each a conjunction of matchers; no selector keeps every series).
#[derive(Debug, Clone, Copy)]
pub struct SeriesQuery<'a> {
    pub selectors: &'a [Vec<LabelMatcher>],
    pub time: TimeRange,
}

/// What a label query does with each source's series (one call per head and block).
pub trait SeriesVisitor {
    fn visit<S: SeriesLookup>(&mut self, query: &SeriesQuery<'_>, source: &S);
}

impl SeriesQuery<'_> {
    /// The matching series, each once, ordered by key.
    pub fn matching<'s, S: SeriesLookup>(&self, source: &'s S) -> Vec<SeriesRef<'s>> {
        let mut keys: Vec<S::Key> = Vec::new();
        if self.selectors.is_empty() {
            keys.extend(source.keys());
        }
        for matchers in self.selectors {
            match candidates(source.postings(), matchers) {
                Some(found) => keys.extend(found),
                None => keys.extend(source.keys()),
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter_map(|key| source.series(key))
            .filter(|s| self.keeps(s))
            .collect()
    }

    /// Adds the label names of the matching series to `out`.
    pub fn label_names<S: SeriesLookup>(&self, source: &S, out: &mut BTreeSet<String>) {
        if !self.selectors.is_empty() {
            for series in self.matching(source) {
                for label in series.labels.iter() {
                    if !out.contains(&label.name) {
                        out.insert(label.name.clone());
                    }
                }
            }
            return;
        }
        for (name, values) in &source.postings().names {
            if out.contains(name) {
                continue;
            }
            let any = values.values().any(|keys| self.any_in_time(source, keys));
            if any {
                out.insert(name.clone());
            }
        }
    }

    /// Appends the values of label `name` over the matching series to `out`, in no order and
    /// possibly repeated (several sources add to one list; sort and dedup it once at the end).
    pub fn label_values<S: SeriesLookup>(&self, source: &S, name: &str, out: &mut Vec<String>) {
        if !self.selectors.is_empty() {
            for series in self.matching(source) {
                if let Some(value) = series.labels.get(name) {
                    out.push(value.to_string());
                }
            }
            return;
        }
        let Some(values) = source.postings().values(name) else {
            return;
        };
        for (value, keys) in values {
            if self.any_in_time(source, keys) {
                out.push(value.clone());
            }
        }
    }

    fn keeps(&self, series: &SeriesRef<'_>) -> bool {
        self.time.overlaps(series.min_time, series.max_time)
            && (self.selectors.is_empty()
                || self
                    .selectors
                    .iter()
                    .any(|matchers| matches_all(matchers, series.labels)))
    }

    fn any_in_time<S: SeriesLookup>(&self, source: &S, keys: &[S::Key]) -> bool {
        keys.iter().any(|&key| {
            source
                .series(key)
                .is_some_and(|s| self.time.overlaps(s.min_time, s.max_time))
        })
    }
}

/// The keys of the postings of `matchers`' most selective positive matcher; `None` when no
/// matcher narrows the series (only negative matchers, or ones that match a missing label).
fn candidates<K: Copy>(postings: &Postings<K>, matchers: &[LabelMatcher]) -> Option<Vec<K>> {
    let mut best: Option<Vec<K>> = None;
    for matcher in matchers {
        let keys: Vec<K> = match matcher.op {
            MatchOp::Equal if !matcher.value.is_empty() => postings
                .values(&matcher.name)
                .and_then(|values| values.get(&matcher.value))
                .cloned()
                .unwrap_or_default(),
            MatchOp::Regex if !matcher.matches_value("") => postings
                .values(&matcher.name)
                .into_iter()
                .flatten()
                .filter(|(value, _)| matcher.matches_value(value))
                .flat_map(|(_, keys)| keys.iter().copied())
                .collect(),
            _ => continue,
        };
        if best.as_ref().is_none_or(|b| keys.len() < b.len()) {
            best = Some(keys);
        }
    }
    best
}

/// A block's series with their postings, built from its `series.parquet`.
#[derive(Debug, Default)]
pub struct BlockSeriesIndex {
    series: Vec<IndexedSeries>,
    postings: Postings<u32>,
}

#[derive(Debug)]
struct IndexedSeries {
    id: u64,
    labels: Labels,
    min_time: i64,
    max_time: i64,
}

impl BlockSeriesIndex {
    /// Reads a block's series table and indexes it.
    pub async fn read(
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
        block: &Block,
    ) -> Result<Self> {
        let schema = TableKind::Series.table_schema();
        let column = |name: &str| schema.index_of(name).expect("series table column");
        let (id_col, labels_col, min_col, max_col) = (
            column(schema::SERIES_ID),
            column(schema::LABELS),
            column(schema::MIN_TIME),
            column(schema::MAX_TIME),
        );
        let mut index = BlockSeriesIndex::default();
        for batch in read_whole_table(store, tenant, block, TableKind::Series).await? {
            let ids = batch.column(id_col).as_primitive::<UInt64Type>();
            let maps = batch.column(labels_col).as_map();
            let mins = batch
                .column(min_col)
                .as_primitive::<TimestampNanosecondType>();
            let maxs = batch
                .column(max_col)
                .as_primitive::<TimestampNanosecondType>();
            for row in 0..batch.num_rows() {
                index.add(IndexedSeries {
                    id: ids.value(row),
                    labels: schema::labels_of(maps, row),
                    min_time: mins.value(row),
                    max_time: maxs.value(row),
                });
            }
        }
        Ok(index)
    }

    fn add(&mut self, series: IndexedSeries) {
        let key = self.series.len() as u32;
        self.postings.add(key, &series.labels);
        self.series.push(series);
    }

    /// A rough count of the bytes held, for the cache's budget.
    pub fn estimated_bytes(&self) -> usize {
        let labels: usize = self
            .series
            .iter()
            .flat_map(|s| s.labels.iter())
            .map(|l| l.name.len() + l.value.len() + 48)
            .sum();
        self.series.len() * std::mem::size_of::<IndexedSeries>()
            + labels
            + self.postings.estimated_bytes()
    }
}

impl SeriesLookup for BlockSeriesIndex {
    type Key = u32;

    fn postings(&self) -> &Postings<u32> {
        &self.postings
    }

    fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        0..self.series.len() as u32
    }

    fn series(&self, key: u32) -> Option<SeriesRef<'_>> {
        self.series.get(key as usize).map(|s| SeriesRef {
            id: s.id,
            labels: &s.labels,
            min_time: s.min_time,
            max_time: s.max_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series' labels, min time and max time.
    type Series<'a> = (&'a [(&'a str, &'a str)], i64, i64);

    fn index(series: &[Series<'_>]) -> BlockSeriesIndex {
        let mut index = BlockSeriesIndex::default();
        for (i, (pairs, min, max)) in series.iter().enumerate() {
            index.add(IndexedSeries {
                id: i as u64,
                labels: Labels::from_pairs(pairs.iter().copied()),
                min_time: *min,
                max_time: *max,
            });
        }
        index
    }

    fn m(name: &str, op: MatchOp, value: &str) -> LabelMatcher {
        LabelMatcher::new(name, op, value).unwrap()
    }

    /// Every query answered by the postings equals a scan checking each series in turn.
    #[test]
    fn postings_answer_as_a_scan_does() {
        let idx = index(&[
            (
                &[("service_name", "api"), ("pod", "a"), ("region", "eu")],
                0,
                10,
            ),
            (&[("service_name", "api"), ("pod", "b")], 20, 30),
            (
                &[("service_name", "db"), ("pod", "c"), ("region", "us")],
                5,
                25,
            ),
            (&[("service_name", "web")], 40, 50),
        ]);
        let selector_sets: Vec<Vec<Vec<LabelMatcher>>> = vec![
            vec![],
            vec![vec![m("service_name", MatchOp::Equal, "api")]],
            vec![vec![m("service_name", MatchOp::Equal, "nope")]],
            vec![vec![m("region", MatchOp::Equal, "")]],
            vec![vec![m("region", MatchOp::NotEqual, "eu")]],
            vec![vec![m("service_name", MatchOp::Regex, "a.*|w.*")]],
            vec![vec![m("region", MatchOp::Regex, "|eu")]],
            vec![vec![m("pod", MatchOp::NotRegex, "[ab]")]],
            vec![vec![
                m("service_name", MatchOp::Equal, "api"),
                m("region", MatchOp::Regex, ".+"),
            ]],
            vec![
                vec![m("service_name", MatchOp::Equal, "db")],
                vec![m("service_name", MatchOp::Equal, "web")],
            ],
        ];
        let times = [
            TimeRange::ALL,
            TimeRange::new(0, 6),
            TimeRange::new(11, 20),
            TimeRange::new(26, 40),
            TimeRange::new(60, 70),
        ];
        for selectors in &selector_sets {
            for &time in &times {
                let query = SeriesQuery { selectors, time };
                let scanned: Vec<&IndexedSeries> = idx
                    .series
                    .iter()
                    .filter(|s| time.overlaps(s.min_time, s.max_time))
                    .filter(|s| {
                        selectors.is_empty()
                            || selectors.iter().any(|ms| matches_all(ms, &s.labels))
                    })
                    .collect();
                let what = format!("{selectors:?} over {time:?}");
                let ids: Vec<u64> = query.matching(&idx).iter().map(|s| s.id).collect();
                let want: Vec<u64> = scanned.iter().map(|s| s.id).collect();
                assert_eq!(ids, want, "series of {what}");

                let mut names = BTreeSet::new();
                query.label_names(&idx, &mut names);
                let want: BTreeSet<String> = scanned
                    .iter()
                    .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
                    .collect();
                assert_eq!(names, want, "names of {what}");

                for name in ["service_name", "pod", "region", "absent"] {
                    let mut values = Vec::new();
                    query.label_values(&idx, name, &mut values);
                    let values: BTreeSet<String> = values.into_iter().collect();
                    let want: BTreeSet<String> = scanned
                        .iter()
                        .filter_map(|s| s.labels.get(name).map(str::to_string))
                        .collect();
                    assert_eq!(values, want, "values of {name} for {what}");
                }
            }
        }
    }
}
