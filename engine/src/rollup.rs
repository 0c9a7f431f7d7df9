//! Rollups: per (profile type, service, hour) the merged function tree and the total of a
//! block's samples, written beside the block as `rollup.parquet` when it is flushed or
//! compacted. A flame graph over whole hours then merges one tree per hour and service
//! instead of reading every sample: a week is 168 trees per service. Beside it,
//! `rollup_series.parquet` holds per (series, hour) the sum of the profiles' totals and their
//! number: what `SelectSeries` adds up per bucket, so a series over whole hours reads one row
//! per series and hour instead of one per profile.
//!
//! A rollup holds exactly the block's samples of its hour, so the trees of every block of a
//! tenant add up to the flame graph of those hours, provided each profile is in one block
//! (no replicas side by side: the query layer checks that before using them).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::block::{Block, ChildPath, EncodedBlock, block_dir, file_properties};
use crate::error::{Error, Result};
use crate::flamegraph::{FunctionTree, add_partition};
use crate::head::Head;
use crate::model::{TenantId, TimeRange};
use crate::schema::TableKind;
use crate::symbols::SymbolPartition;

pub use crate::block::{ROLLUP_FILE, SERIES_ROLLUP_FILE};

/// The width of a rollup bucket: one hour, aligned to the Unix epoch.
pub const BUCKET_NANOS: i64 = 3_600 * 1_000_000_000;
/// One hour in milliseconds, the unit of the series rollup's hours.
const HOUR_MILLIS: i64 = BUCKET_NANOS / NANOS_PER_MILLI;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// One row per (profile type, service, hour) with samples, sorted that way.
pub static ROLLUP_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("profile_type", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        // The hour's start, Unix nanoseconds.
        Field::new("bucket_start", DataType::Int64, false),
        Field::new("total_value", DataType::Int64, false),
        // The encoded `FunctionTree` (what the `flamegraph` aggregate's partial phase emits).
        Field::new("tree", DataType::Binary, false),
    ]))
});

/// One row per (series, hour) with profiles, sorted that way. Its hours are those of
/// `SelectSeries` buckets, closed on the right in milliseconds: `bucket_end` (Unix
/// milliseconds, on an hour boundary) holds the profiles whose time in whole milliseconds is
/// in `(bucket_end - 1 h, bucket_end]`.
pub static SERIES_ROLLUP_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("bucket_end", DataType::Int64, false),
        // The sum of the profiles' `total_value`, and how many profiles.
        Field::new("total_value", DataType::Int64, false),
        Field::new("profiles", DataType::Int64, false),
    ]))
});

/// The `bucket_end` of the series rollup hour holding `time` (Unix nanoseconds).
pub fn series_bucket_end(time: i64) -> i64 {
    let millis = time.div_euclid(NANOS_PER_MILLI);
    (millis + HOUR_MILLIS - 1).div_euclid(HOUR_MILLIS) * HOUR_MILLIS
}

/// The nanoseconds the series rollup hour ending at `bucket_end` (ms) holds.
pub fn series_hour(bucket_end: i64) -> TimeRange {
    let end = (bucket_end + 1) * NANOS_PER_MILLI;
    TimeRange::new(end - BUCKET_NANOS, end)
}

/// The whole series rollup hours inside `range`, as the nanoseconds they hold; `None` when no
/// hour fits. They are the hours of [`whole_hours`] one millisecond later.
pub fn whole_series_hours(range: TimeRange) -> Option<TimeRange> {
    let shift = |t: i64, by: i64| t.saturating_add(by);
    whole_hours(TimeRange::new(
        shift(range.start, -NANOS_PER_MILLI),
        shift(range.end, -NANOS_PER_MILLI),
    ))
    .map(|hours| {
        TimeRange::new(
            shift(hours.start, NANOS_PER_MILLI),
            shift(hours.end, NANOS_PER_MILLI),
        )
    })
}

/// The start of the hour holding `time` (Unix nanoseconds).
pub fn bucket_of(time: i64) -> i64 {
    time.div_euclid(BUCKET_NANOS) * BUCKET_NANOS
}

/// The whole hours inside `range`: `[first boundary at or after start, last boundary at or
/// before end)`; `None` when no hour fits.
pub fn whole_hours(range: TimeRange) -> Option<TimeRange> {
    let start = bucket_of(range.start.saturating_add(BUCKET_NANOS - 1));
    let end = bucket_of(range.end);
    (start < end).then(|| TimeRange::new(start, end))
}

/// The values of one (profile type, service, hour) by stack-trace id, not yet resolved.
#[derive(Debug)]
struct Slot {
    profile_type: Arc<str>,
    service: Arc<str>,
    bucket: i64,
    values: HashMap<u32, i64>,
    total: i64,
}

/// Builds a block's rollups from its profiles and samples as they stream out (sorted by series
/// and time, so consecutive rows mostly share their slot).
#[derive(Debug, Default)]
pub struct RollupBuilder {
    /// The profile type of every series.
    types: HashMap<u64, Arc<str>>,
    services: HashMap<String, Arc<str>>,
    slots: Vec<Slot>,
    index: HashMap<(Arc<str>, Arc<str>, i64), usize>,
    /// The slot of the last row: (series, bucket, service, slot).
    last: Option<(u64, i64, Arc<str>, usize)>,
    /// Per (series, series rollup hour): the sum of profile totals and the profile count.
    points: HashMap<(u64, i64), (i64, i64)>,
}

/// A block's rollups: the trees (`None` without samples) and the series totals (`None`
/// without profiles).
#[derive(Debug)]
pub struct Rollups {
    pub trees: Option<RecordBatch>,
    pub series: Option<RecordBatch>,
}

impl Rollups {
    /// The files to write beside the block: each file's name, bytes and rows.
    pub fn files(&self) -> Result<Vec<(&'static str, Bytes, u64)>> {
        let mut files = Vec::new();
        for (name, batch) in [
            (ROLLUP_FILE, &self.trees),
            (SERIES_ROLLUP_FILE, &self.series),
        ] {
            if let Some(batch) = batch {
                let rows = batch.num_rows() as u64;
                files.push((name, encode(batch)?, rows));
            }
        }
        Ok(files)
    }
}

impl RollupBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a series of the block and its profile type id.
    pub fn series(&mut self, series_id: u64, profile_type: &str) {
        self.types.insert(series_id, Arc::from(profile_type));
    }

    /// Declares the series of a `series` table batch.
    pub fn series_batch(&mut self, batch: &RecordBatch) {
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let types = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            self.series(ids.value(row), types.value(row));
        }
    }

    /// Adds a `samples` table batch (series, time, service, stack-trace id, value, span).
    pub fn add_samples(&mut self, batch: &RecordBatch) -> Result<()> {
        let series = batch.column(0).as_primitive::<UInt64Type>();
        let times = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let times = times.as_primitive::<arrow::datatypes::Int64Type>();
        let services = batch.column(2).as_dictionary::<Int32Type>();
        let names: Vec<Arc<str>> = services
            .values()
            .as_string::<i32>()
            .iter()
            .map(|name| self.service(name.unwrap_or_default()))
            .collect();
        let keys = services.keys();
        let stacks = batch.column(3).as_primitive::<UInt32Type>();
        let values = batch
            .column(4)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let service = &names[keys.value(row) as usize];
            let slot = self.slot(series.value(row), times.value(row), service)?;
            let slot = &mut self.slots[slot];
            // Wrapping, as heads and SQL sums add values.
            let value = slot.values.entry(stacks.value(row)).or_default();
            *value = value.wrapping_add(values.value(row));
            slot.total = slot.total.wrapping_add(values.value(row));
        }
        Ok(())
    }

    /// Adds a `profiles` table batch (series, time, ..., total value).
    pub fn add_profiles(&mut self, batch: &RecordBatch) -> Result<()> {
        let series = batch.column(0).as_primitive::<UInt64Type>();
        let times = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let times = times.as_primitive::<arrow::datatypes::Int64Type>();
        let Some(totals) = batch.column_by_name("total_value") else {
            return Err(Error::corrupt(
                "rollup",
                "a profiles batch without total_value",
            ));
        };
        let totals = totals.as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let key = (series.value(row), series_bucket_end(times.value(row)));
            let point = self.points.entry(key).or_default();
            point.0 = point.0.wrapping_add(totals.value(row));
            point.1 += 1;
        }
        Ok(())
    }

    fn service(&mut self, name: &str) -> Arc<str> {
        if let Some(service) = self.services.get(name) {
            return Arc::clone(service);
        }
        let service: Arc<str> = Arc::from(name);
        self.services.insert(name.to_string(), Arc::clone(&service));
        service
    }

    fn slot(&mut self, series: u64, time: i64, service: &Arc<str>) -> Result<usize> {
        let bucket = bucket_of(time);
        if let Some((s, b, svc, slot)) = &self.last
            && *s == series
            && *b == bucket
            && Arc::ptr_eq(svc, service)
        {
            return Ok(*slot);
        }
        let Some(profile_type) = self.types.get(&series) else {
            return Err(Error::corrupt(
                "rollup",
                format!("a sample of series {series:016x}, which the block does not list"),
            ));
        };
        let key = (Arc::clone(profile_type), Arc::clone(service), bucket);
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => {
                self.slots.push(Slot {
                    profile_type: Arc::clone(&key.0),
                    service: Arc::clone(&key.1),
                    bucket,
                    values: HashMap::new(),
                    total: 0,
                });
                self.index.insert(key, self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        self.last = Some((series, bucket, Arc::clone(service), slot));
        Ok(slot)
    }

    /// The rollups: the trees, each slot's stacks resolved against its service's symbols,
    /// and the series totals.
    pub fn finish(mut self, symbols: &HashMap<&str, &SymbolPartition>) -> Result<Rollups> {
        let series = self.series_points()?;
        Ok(Rollups {
            trees: self.trees(symbols)?,
            series,
        })
    }

    /// The series rollup rows, sorted by series and hour; `None` when no profile was added.
    fn series_points(&mut self) -> Result<Option<RecordBatch>> {
        if self.points.is_empty() {
            return Ok(None);
        }
        let mut points: Vec<((u64, i64), (i64, i64))> = self.points.drain().collect();
        points.sort_unstable_by_key(|(key, _)| *key);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(points.iter().map(|p| p.0.0))),
            Arc::new(Int64Array::from_iter_values(points.iter().map(|p| p.0.1))),
            Arc::new(Int64Array::from_iter_values(points.iter().map(|p| p.1.0))),
            Arc::new(Int64Array::from_iter_values(points.iter().map(|p| p.1.1))),
        ];
        Ok(Some(RecordBatch::try_new(
            SERIES_ROLLUP_SCHEMA.clone(),
            columns,
        )?))
    }

    /// The tree rows; `None` when no sample was added.
    fn trees(mut self, symbols: &HashMap<&str, &SymbolPartition>) -> Result<Option<RecordBatch>> {
        if self.slots.is_empty() {
            return Ok(None);
        }
        self.slots.sort_by(|a, b| {
            (&a.profile_type, &a.service, a.bucket).cmp(&(&b.profile_type, &b.service, b.bucket))
        });
        let rows = self.slots.len();
        let (mut types, mut services) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let (mut buckets, mut totals) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let mut trees = Vec::with_capacity(rows);
        for slot in self.slots {
            let Some(partition) = symbols.get(&*slot.service) else {
                return Err(Error::corrupt(
                    "rollup",
                    format!("no symbols for service {:?}", &*slot.service),
                ));
            };
            let len = slot.values.keys().max().map_or(0, |&max| max as usize + 1);
            let mut dense = vec![0i64; len];
            for (&stack, &value) in &slot.values {
                dense[stack as usize] += value;
            }
            let mut tree = FunctionTree::new();
            add_partition(&mut tree, partition, &dense);
            types.push(slot.profile_type.to_string());
            services.push(slot.service.to_string());
            buckets.push(slot.bucket);
            totals.push(slot.total);
            trees.push(tree.encode());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(services)),
            Arc::new(Int64Array::from(buckets)),
            Arc::new(Int64Array::from(totals)),
            Arc::new(BinaryArray::from_iter_values(trees)),
        ];
        Ok(Some(RecordBatch::try_new(ROLLUP_SCHEMA.clone(), columns)?))
    }
}

/// A frozen head encoded as a block's files, its rollup among them; `None` for an empty head.
pub fn encode_head(head: &Head) -> Result<Option<EncodedBlock>> {
    let mut rollup = RollupBuilder::new();
    for (fingerprint, series) in head.series() {
        rollup.series(fingerprint.0, &series.profile_type);
    }
    let Some(mut encoded) = EncodedBlock::encode_observing(head, |table, batch| match table {
        TableKind::Profiles => rollup.add_profiles(batch),
        TableKind::Samples => rollup.add_samples(batch),
        _ => Ok(()),
    })?
    else {
        return Ok(None);
    };
    let guards: Vec<_> = head
        .partitions()
        .map(|(name, partition)| (name, partition.read()))
        .collect();
    let symbols = guards
        .iter()
        .map(|(name, partition)| (&***name, &**partition))
        .collect();
    for (name, bytes, rows) in rollup.finish(&symbols)?.files()? {
        encoded.add_file(name, bytes, rows);
    }
    Ok(Some(encoded))
}

/// A rollup batch as the bytes of its Parquet file.
fn encode(batch: &RecordBatch) -> Result<Bytes> {
    let properties = file_properties().build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))?;
    writer.write(batch)?;
    Ok(Bytes::from(writer.into_inner()?))
}

/// What a query takes from rollups: one profile type, some services, whole hours.
#[derive(Debug, Clone)]
pub struct RollupSelection<'a> {
    pub profile_type: &'a str,
    pub services: &'a std::collections::BTreeSet<String>,
    /// Whole hours (both ends on an hour boundary).
    pub hours: TimeRange,
}

/// The batches of `block`'s rollup file `name`, or `None` when the block has none (written
/// before it existed). One range request for the whole file: the bucket's range cache keeps it.
async fn read_file(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    name: &str,
) -> Result<Option<ParquetRecordBatchReader>> {
    let Some(file) = block.meta.files.iter().find(|f| f.path == name) else {
        return Ok(None);
    };
    let path = block_dir(tenant, block.id()).child_path(name);
    let bytes = store.get_range(&path, 0..file.size_bytes).await?;
    Ok(Some(
        ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?,
    ))
}

/// The encoded trees of `block`'s rollup that `selection` takes, and the hours they cover.
/// `None` when the block has no rollup (written before rollups existed).
pub async fn read_rollup_trees(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    selection: &RollupSelection<'_>,
) -> Result<Option<Vec<Vec<u8>>>> {
    let Some(reader) = read_file(store, tenant, block, ROLLUP_FILE).await? else {
        return Ok(None);
    };
    let mut trees = Vec::new();
    for batch in reader {
        let batch = batch?;
        let types = batch.column(0).as_string::<i32>();
        let services = batch.column(1).as_string::<i32>();
        let buckets = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let blobs = batch.column(4).as_binary::<i32>();
        for row in 0..batch.num_rows() {
            let bucket = buckets.value(row);
            if types.value(row) == selection.profile_type
                && bucket >= selection.hours.start
                && bucket < selection.hours.end
                && selection.services.contains(services.value(row))
                && blobs.is_valid(row)
            {
                trees.push(blobs.value(row).to_vec());
            }
        }
    }
    Ok(Some(trees))
}

/// One row of a series rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesHour {
    pub series_id: u64,
    /// The hour's right edge, Unix milliseconds (see [`SERIES_ROLLUP_SCHEMA`]).
    pub bucket_end: i64,
    pub total: i64,
    pub profiles: i64,
}

/// The rows of `block`'s series rollup for the series `wanted` keeps, in the whole series
/// hours `hours` (as [`whole_series_hours`] gives them). `None` when the block has no series
/// rollup (written before they existed).
pub async fn read_series_rollup(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    hours: TimeRange,
    wanted: impl Fn(u64) -> bool,
) -> Result<Option<Vec<SeriesHour>>> {
    let Some(reader) = read_file(store, tenant, block, SERIES_ROLLUP_FILE).await? else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let ends = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let totals = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let counts = batch
            .column(3)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let hour = series_hour(ends.value(row));
            if hours.start <= hour.start && hour.end <= hours.end && wanted(ids.value(row)) {
                rows.push(SeriesHour {
                    series_id: ids.value(row),
                    bucket_end: ends.value(row),
                    total: totals.value(row),
                    profiles: counts.value(row),
                });
            }
        }
    }
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = BUCKET_NANOS;

    #[test]
    fn whole_hours_are_the_aligned_hours_inside() {
        let range = TimeRange::new(HOUR / 2, 3 * HOUR + 5);
        assert_eq!(whole_hours(range), Some(TimeRange::new(HOUR, 3 * HOUR)));
        let aligned = TimeRange::new(HOUR, 2 * HOUR);
        assert_eq!(whole_hours(aligned), Some(aligned));
        assert_eq!(whole_hours(TimeRange::new(HOUR + 1, 2 * HOUR + 1)), None);
        assert_eq!(bucket_of(-1), -HOUR);
    }

    #[test]
    fn series_hours_are_closed_on_the_right_in_milliseconds() {
        const MS: i64 = 1_000_000;
        let hour_ms = HOUR / MS;
        // A profile exactly on the hour belongs to the hour that ends there, as a
        // SelectSeries bucket `(t - step, t]` takes it; one millisecond later, to the next.
        assert_eq!(series_bucket_end(HOUR), hour_ms);
        assert_eq!(series_bucket_end(HOUR + MS - 1), hour_ms);
        assert_eq!(series_bucket_end(HOUR + MS), 2 * hour_ms);
        assert_eq!(series_bucket_end(-1), 0);
        assert_eq!(series_hour(hour_ms), TimeRange::new(MS, HOUR + MS));
        for t in [MS, HOUR, HOUR + MS - 1] {
            assert!(series_hour(series_bucket_end(t)).contains(t));
        }
        // Whole series hours of a SelectSeries read `(0, 3 h]` in ms, i.e. nanoseconds
        // [1 ms, 3 h + 1 ms): three hours; one nanosecond less at either end: two.
        let read = TimeRange::new(MS, 3 * HOUR + MS);
        assert_eq!(whole_series_hours(read), Some(read));
        assert_eq!(
            whole_series_hours(TimeRange::new(MS + 1, 3 * HOUR + MS)),
            Some(TimeRange::new(HOUR + MS, 3 * HOUR + MS))
        );
        assert_eq!(
            whole_series_hours(TimeRange::new(MS, 3 * HOUR + MS - 1)),
            Some(TimeRange::new(MS, 2 * HOUR + MS))
        );
        assert_eq!(whole_series_hours(TimeRange::new(0, HOUR)), None);
    }
}
