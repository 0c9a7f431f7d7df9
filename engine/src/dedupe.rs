//! Replicated profiles counted once.
//!
//! With replication every profile is held by up to RF sources (heads of different ingesters,
//! blocks of different origins). [`Dedupe`] takes the `profiles` table's keys (source, series,
//! time, profile id) of a scan's time range and assigns each (series, time) to one source, the
//! one holding the most of its profile ids (so a replica that missed a write is not chosen);
//! the scans of `samples` and `profiles` then keep a row only from the source its profile was
//! assigned to ([`KeepSets`]). A pushed-down aggregate carries the keep sets of the node's own
//! sources ([`KeepSets::for_node`]), so the ingester applies the same choice.
//!
//! This module decides; it reads nothing. The table providers read the keys
//! (`TableSources::keep_sets` in [`crate::table`]) and hand them to [`Dedupe::keep_sets`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{TimestampNanosecondType, UInt16Type, UInt64Type};
use hearth_proto::hearth::cluster::v1 as wire;
use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::model::TimeRange;

/// The (series, time) keys one source contributes, as a pushed-down aggregate carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKeys {
    pub source: String,
    pub series: Vec<u64>,
    pub times: Vec<i64>,
}

impl From<SourceKeys> for wire::SourceKeys {
    fn from(keys: SourceKeys) -> Self {
        wire::SourceKeys {
            source: keys.source,
            series: keys.series,
            times: keys.times,
        }
    }
}

impl From<wire::SourceKeys> for SourceKeys {
    /// Lists that do not pair up are refused by [`KeepSets::from_source_keys`].
    fn from(keys: wire::SourceKeys) -> Self {
        SourceKeys {
            source: keys.source,
            series: keys.series,
            times: keys.times,
        }
    }
}

/// The profile keys of a scope: (source, series, time, profile id) rows, and which sources each
/// remote node holds.
#[derive(Debug, Default)]
pub struct ProfileKeys {
    pub keys: Vec<(String, u64, i64, String)>,
    pub nodes: HashMap<String, BTreeSet<String>>,
}

impl ProfileKeys {
    /// Appends the (source, series, time, profile id) rows of `batches` (those four columns,
    /// in that order) and returns the sources they came from.
    pub fn extend(&mut self, batches: &[RecordBatch]) -> Result<BTreeSet<String>> {
        let mut sources_seen = BTreeSet::new();
        for batch in batches {
            let sources = batch.column(0).as_dictionary::<UInt16Type>();
            let source_names = sources.values().as_string::<i32>();
            let series = batch.column(1).as_primitive::<UInt64Type>();
            let times = batch.column(2).as_primitive::<TimestampNanosecondType>();
            let ids = arrow::compute::cast(batch.column(3), &arrow::datatypes::DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            for row in 0..batch.num_rows() {
                let source = source_names.value(sources.keys().value(row) as usize);
                if !sources_seen.contains(source) {
                    sources_seen.insert(source.to_string());
                }
                self.keys.push((
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
        Ok(sources_seen)
    }
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
        sources.iter().map(|source| self.keys_of(source)).collect()
    }

    /// The keep sets of every source, to send with a plan stage that filters by them.
    pub fn all_sources(&self) -> Vec<SourceKeys> {
        let mut sources: Vec<&String> = self.sources.keys().collect();
        sources.sort_unstable();
        sources
            .into_iter()
            .map(|source| self.keys_of(source))
            .collect()
    }

    fn keys_of(&self, source: &str) -> SourceKeys {
        let mut keys: Vec<(u64, i64)> = self
            .sources
            .get(source)
            .map(|k| k.iter().copied().collect())
            .unwrap_or_default();
        keys.sort_unstable();
        SourceKeys {
            source: source.to_string(),
            series: keys.iter().map(|k| k.0).collect(),
            times: keys.iter().map(|k| k.1).collect(),
        }
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
    pub fn assign(keys: ProfileKeys) -> Self {
        type Holders = BTreeMap<String, BTreeSet<String>>;
        let mut by_key: HashMap<(u64, i64), Holders> = HashMap::new();
        let mut sources: HashMap<String, HashSet<(u64, i64)>> = HashMap::new();
        for (source, series, time, profile_id) in keys.keys {
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
            nodes: keys.nodes,
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
    /// sets then say nothing of other series: scans must filter them out). `read_keys` reads
    /// the profile keys of that scope, the first time it is asked for.
    pub async fn keep_sets<F, Fut>(
        &self,
        range: TimeRange,
        series: Option<&BTreeSet<u64>>,
        read_keys: F,
    ) -> Result<Arc<KeepSets>>
    where
        F: FnOnce(TimeRange, Option<Vec<u64>>) -> Fut,
        Fut: Future<Output = Result<ProfileKeys>>,
    {
        if let Some(fixed) = &self.fixed {
            return Ok(Arc::clone(fixed));
        }
        let scope: KeepScope = (range, series.map(|s| s.iter().copied().collect()));
        if let Some((_, found)) = self.computed.lock().iter().find(|(s, _)| *s == scope) {
            return Ok(Arc::clone(found));
        }
        let keys = read_keys(range, scope.1.clone()).await?;
        let sets = Arc::new(KeepSets::assign(keys));
        self.computed.lock().push((scope, Arc::clone(&sets)));
        Ok(sets)
    }
}

#[cfg(test)]
mod tests;
