//! The head: a tenant's newest data in memory, queryable as soon as a push is acknowledged.
//!
//! Samples accumulate in columnar chunks that are sealed into Arrow batches every
//! [`SEALED_CHUNK_ROWS`] rows, so a query snapshot clones sealed batches and copies only the
//! open chunk. Symbols live in one [`SymbolPartition`] per `service_name`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::Int32Type;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::batch::ProfileBatch;
use crate::error::Result;
use crate::matcher::LabelMatcher;
use crate::model::{Labels, SeriesFingerprint, TimeRange, label};
use crate::schema::{self, TableKind};
use crate::series_index::{Postings, SeriesLookup, SeriesQuery, SeriesRef};
use crate::symbols::{PprofImport, StacktraceId, SymbolPartition, symbol_batch};

/// Rows per sealed sample chunk.
pub const SEALED_CHUNK_ROWS: usize = 64 * 1024;

#[derive(Debug)]
pub struct HeadSeries {
    pub labels: Arc<Labels>,
    pub profile_type: Arc<str>,
    pub partition: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub profile_count: u64,
}

#[derive(Debug, Clone)]
struct ProfileRow {
    series_id: u64,
    time: i64,
    id: String,
    duration_nanos: i64,
    period: i64,
    sample_count: u32,
    total_value: i64,
}

#[derive(Debug, Default)]
struct OpenChunk {
    series_id: Vec<u64>,
    time: Vec<i64>,
    partition: Vec<i32>,
    stacktrace_id: Vec<u32>,
    value: Vec<i64>,
    span_id: Vec<Option<u64>>,
}

impl OpenChunk {
    fn len(&self) -> usize {
        self.series_id.len()
    }

    fn to_batch(&self, partition_names: &StringArray) -> Result<RecordBatch> {
        let service = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(self.partition.clone()),
            Arc::new(partition_names.clone()),
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(self.series_id.clone())),
            Arc::new(TimestampNanosecondArray::from(self.time.clone()).with_timezone("UTC")),
            Arc::new(service),
            Arc::new(UInt32Array::from(self.stacktrace_id.clone())),
            Arc::new(Int64Array::from(self.value.clone())),
            Arc::new(UInt64Array::from(self.span_id.clone())),
        ];
        Ok(RecordBatch::try_new(schema::SAMPLES.clone(), columns)?)
    }
}

/// What one append stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    pub profiles: usize,
    pub samples: usize,
}

/// A tenant's in-memory data.
#[derive(Debug)]
pub struct Head {
    /// `head-<ulid>`: the `source` of its rows.
    id: String,
    series: FxHashMap<SeriesFingerprint, HeadSeries>,
    postings: Postings<SeriesFingerprint>,
    partition_names: Vec<Arc<str>>,
    partition_index: FxHashMap<Arc<str>, u32>,
    partitions: Vec<Arc<RwLock<SymbolPartition>>>,
    profiles: Vec<ProfileRow>,
    sealed: Vec<RecordBatch>,
    open: OpenChunk,
    min_time: i64,
    max_time: i64,
    sample_rows: usize,
}

impl Default for Head {
    fn default() -> Self {
        Head::new()
    }
}

impl SeriesLookup for Head {
    type Key = SeriesFingerprint;

    fn postings(&self) -> &Postings<SeriesFingerprint> {
        &self.postings
    }

    fn keys(&self) -> impl Iterator<Item = SeriesFingerprint> + '_ {
        self.series.keys().copied()
    }

    fn series(&self, key: SeriesFingerprint) -> Option<SeriesRef<'_>> {
        self.series.get(&key).map(|s| SeriesRef {
            id: key.0,
            labels: &s.labels,
            min_time: s.min_time,
            max_time: s.max_time,
        })
    }
}

impl Head {
    pub fn new() -> Self {
        Head {
            id: format!("head-{}", ulid::Ulid::new()),
            series: FxHashMap::default(),
            postings: Postings::default(),
            partition_names: Vec::new(),
            partition_index: FxHashMap::default(),
            partitions: Vec::new(),
            profiles: Vec::new(),
            sealed: Vec::new(),
            open: OpenChunk::default(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            sample_rows: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `[min, max]` of profile times, `None` when empty.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_time, self.max_time))
    }

    pub fn overlaps(&self, range: &TimeRange) -> bool {
        self.time_bounds()
            .is_some_and(|(min, max)| range.overlaps(min, max))
    }

    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    pub fn sample_count(&self) -> usize {
        self.sample_rows
    }

    pub fn has_series(&self, fingerprint: &SeriesFingerprint) -> bool {
        self.series.contains_key(fingerprint)
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn series(&self) -> impl Iterator<Item = (&SeriesFingerprint, &HeadSeries)> {
        self.series.iter()
    }

    /// A rough count of the bytes held, for flush thresholds.
    pub fn estimated_bytes(&self) -> usize {
        let symbols: usize = self
            .partitions
            .iter()
            .map(|p| p.read().estimated_bytes())
            .sum();
        // 41 bytes per sealed row; the open chunk's vectors (16-byte span ids) grow by doubling.
        let open = self.open.series_id.capacity() * 48;
        (self.sample_rows - self.open.len()) * 41
            + open
            + self.profiles.capacity() * std::mem::size_of::<ProfileRow>()
            + self.profiles.len() * 40
            + self.series.len() * 512
            + self.postings.estimated_bytes()
            + symbols
    }

    fn partition(&mut self, name: &str) -> (u32, Arc<RwLock<SymbolPartition>>) {
        if let Some(&id) = self.partition_index.get(name) {
            return (id, Arc::clone(&self.partitions[id as usize]));
        }
        let id = self.partitions.len() as u32;
        let name: Arc<str> = Arc::from(name);
        let partition = Arc::new(RwLock::new(SymbolPartition::new()));
        self.partition_names.push(Arc::clone(&name));
        self.partition_index.insert(name, id);
        self.partitions.push(Arc::clone(&partition));
        (id, partition)
    }

    /// Stores a batch. Zero values are dropped; equal (stack, span) samples of one profile are
    /// summed; a profile left without samples is not stored.
    pub fn append(&mut self, batch: &ProfileBatch) -> Result<AppendStats> {
        batch.check()?;
        let pprof = &batch.pprof;
        let (partition_id, partition) = self.partition(&batch.partition);
        let mut symbols = partition.write();
        let mut import = PprofImport::new(pprof, &batch.index);
        let mut stacks: Vec<StacktraceId> = vec![u32::MAX; pprof.sample.len()];
        let mut rows: Vec<(StacktraceId, u64, i64)> = Vec::new();
        let mut stats = AppendStats::default();

        for profile in &batch.profiles {
            rows.clear();
            for (k, sample_index) in profile.sample_indices(pprof).enumerate() {
                let sample = &pprof.sample[sample_index];
                let value = sample.value[profile.value_index];
                if value == 0 {
                    continue;
                }
                if stacks[sample_index] == u32::MAX {
                    stacks[sample_index] = import.stacktrace(&mut symbols, sample);
                }
                let span = profile.span_ids.get(k).copied().unwrap_or(0);
                rows.push((stacks[sample_index], span, value));
            }
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable_by_key(|&(stack, span, _)| (stack, span));
            rows.dedup_by(|next, kept| {
                let same = next.0 == kept.0 && next.1 == kept.1;
                if same {
                    kept.2 += next.2;
                }
                same
            });

            let fingerprint = profile.labels.fingerprint();
            let time = profile.time_nanos;
            let series = self.series.entry(fingerprint).or_insert_with(|| {
                self.postings.add(fingerprint, &profile.labels);
                HeadSeries {
                    labels: Arc::new(profile.labels.clone()),
                    profile_type: Arc::from(profile.labels.get(label::PROFILE_TYPE).unwrap_or("")),
                    partition: partition_id,
                    min_time: time,
                    max_time: time,
                    profile_count: 0,
                }
            });
            series.min_time = series.min_time.min(time);
            series.max_time = series.max_time.max(time);
            series.profile_count += 1;
            self.min_time = self.min_time.min(time);
            self.max_time = self.max_time.max(time);

            let mut total = 0i64;
            for &(stack, span, value) in &rows {
                self.open.series_id.push(fingerprint.0);
                self.open.time.push(time);
                self.open.partition.push(partition_id as i32);
                self.open.stacktrace_id.push(stack);
                self.open.value.push(value);
                self.open.span_id.push((span != 0).then_some(span));
                total = total.wrapping_add(value);
            }
            self.profiles.push(ProfileRow {
                series_id: fingerprint.0,
                time,
                id: profile.id.clone(),
                duration_nanos: profile.duration_nanos,
                period: profile.period,
                sample_count: rows.len() as u32,
                total_value: total,
            });
            self.sample_rows += rows.len();
            stats.profiles += 1;
            stats.samples += rows.len();
        }
        drop(symbols);
        if self.open.len() >= SEALED_CHUNK_ROWS {
            let sealed = self.open.to_batch(&self.partition_name_array())?;
            self.sealed.push(sealed);
            self.open = OpenChunk::default();
        }
        Ok(stats)
    }

    fn partition_name_array(&self) -> StringArray {
        StringArray::from_iter_values(self.partition_names.iter().map(|s| s.as_ref()))
    }

    /// The series, one row each, sorted by fingerprint.
    pub fn series_batch(&self) -> Result<RecordBatch> {
        let mut series: Vec<_> = self.series.iter().map(|(fp, s)| (*fp, s)).collect();
        series.sort_unstable_by_key(|(fp, _)| *fp);
        self.series_rows(&series)
    }

    /// The series overlapping `time` that every one of `matchers` matches and `keep_id`
    /// keeps, one row each, sorted by fingerprint; found through the label postings.
    pub fn series_batch_matching(
        &self,
        matchers: &[LabelMatcher],
        time: TimeRange,
        keep_id: impl Fn(u64) -> bool,
    ) -> Result<RecordBatch> {
        let selectors = [matchers.to_vec()];
        let query = SeriesQuery {
            selectors: &selectors,
            time,
        };
        let series: Vec<_> = query
            .matching(self)
            .into_iter()
            .filter(|s| keep_id(s.id))
            .filter_map(|s| {
                let fp = SeriesFingerprint(s.id);
                self.series.get(&fp).map(|found| (fp, found))
            })
            .collect();
        self.series_rows(&series)
    }

    fn series_rows(&self, series: &[(SeriesFingerprint, &HeadSeries)]) -> Result<RecordBatch> {
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for (_, s) in series {
            for l in s.labels.iter() {
                labels.keys().append_value(&l.name);
                labels.values().append_value(&l.value);
            }
            labels.append(true)?;
        }
        let times = |f: fn(&HeadSeries) -> i64| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from_iter_values(series.iter().map(|(_, s)| f(s)))
                    .with_timezone("UTC"),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                series.iter().map(|(fp, _)| fp.0),
            )),
            Arc::new(StringArray::from_iter_values(
                series.iter().map(|(_, s)| s.profile_type.as_ref()),
            )),
            Arc::new(StringArray::from_iter_values(series.iter().map(
                |(_, s)| self.partition_names[s.partition as usize].as_ref(),
            ))),
            Arc::new(labels.finish()),
            times(|s| s.min_time),
            times(|s| s.max_time),
            Arc::new(UInt64Array::from_iter_values(
                series.iter().map(|(_, s)| s.profile_count),
            )),
        ];
        Ok(RecordBatch::try_new(schema::SERIES.clone(), columns)?)
    }

    /// The profiles, in arrival order.
    pub fn profiles_batch(&self) -> Result<RecordBatch> {
        let p = &self.profiles;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(p.iter().map(|r| r.series_id))),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(p.iter().map(|r| r.time))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                p.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                p.iter().map(|r| r.duration_nanos),
            )),
            Arc::new(Int64Array::from_iter_values(p.iter().map(|r| r.period))),
            Arc::new(UInt32Array::from_iter_values(
                p.iter().map(|r| r.sample_count),
            )),
            Arc::new(Int64Array::from_iter_values(
                p.iter().map(|r| r.total_value),
            )),
        ];
        Ok(RecordBatch::try_new(schema::PROFILES.clone(), columns)?)
    }

    /// The samples, in arrival order: sealed chunks plus a copy of the open one.
    pub fn sample_batches(&self) -> Result<Vec<RecordBatch>> {
        let mut batches = self.sealed.clone();
        if self.open.len() > 0 {
            batches.push(self.open.to_batch(&self.partition_name_array())?);
        }
        Ok(batches)
    }

    /// The samples sorted for a block, in batches of about `rows_per_batch` rows: by series and
    /// time, each profile's rows in stack-trace order (as `append` left them). A profile's rows
    /// are contiguous and never span a chunk, so sorting the profiles sorts the samples, and a
    /// flush streams them without copying the whole table.
    pub fn sorted_sample_batches(
        &self,
        rows_per_batch: usize,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>> + '_> {
        let chunks = self.sample_batches()?;
        let mut chunk_starts = Vec::with_capacity(chunks.len());
        let mut at = 0usize;
        for chunk in &chunks {
            chunk_starts.push(at);
            at += chunk.num_rows();
        }
        let mut offsets = Vec::with_capacity(self.profiles.len());
        let mut at = 0usize;
        for profile in &self.profiles {
            offsets.push(at);
            at += profile.sample_count as usize;
        }
        debug_assert_eq!(at, self.sample_rows, "profile rows cover the samples");
        let mut order: Vec<u32> = (0..self.profiles.len() as u32).collect();
        order.sort_by_key(|&i| {
            let p = &self.profiles[i as usize];
            (p.series_id, p.time)
        });
        let mut next = 0usize;
        Ok(std::iter::from_fn(move || {
            let mut slices = Vec::new();
            let mut rows = 0usize;
            while next < order.len() && rows < rows_per_batch.max(1) {
                let profile = order[next] as usize;
                next += 1;
                let (offset, len) = (
                    offsets[profile],
                    self.profiles[profile].sample_count as usize,
                );
                let chunk = chunk_starts.partition_point(|&start| start <= offset) - 1;
                slices.push(chunks[chunk].slice(offset - chunk_starts[chunk], len));
                rows += len;
            }
            (!slices.is_empty()).then(|| Ok(concat_batches(&schema::SAMPLES, &slices)?))
        }))
    }

    /// One batch per partition of a symbol table.
    pub fn symbol_batches(&self, table: TableKind) -> Result<Vec<RecordBatch>> {
        self.partition_names
            .iter()
            .zip(&self.partitions)
            .map(|(name, partition)| symbol_batch(table, name, &partition.read()))
            .collect()
    }

    /// The symbol partitions, by service name.
    pub fn partitions(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<RwLock<SymbolPartition>>)> {
        self.partition_names.iter().zip(&self.partitions)
    }

    /// The batches of any table.
    pub fn table_batches(&self, table: TableKind) -> Result<Vec<RecordBatch>> {
        match table {
            TableKind::Series => Ok(vec![self.series_batch()?]),
            TableKind::Profiles => Ok(vec![self.profiles_batch()?]),
            TableKind::Samples => self.sample_batches(),
            symbols => self.symbol_batches(symbols),
        }
    }
}
