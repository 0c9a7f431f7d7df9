//! Rollups: per (profile type, service, hour) the merged function tree and the total of a
//! block's samples, written beside the block as `rollup.parquet` when it is flushed or
//! compacted. A flame graph over whole hours then merges one tree per hour and service
//! instead of reading every sample: a week is 168 trees per service.
//!
//! A rollup holds exactly the block's samples of its hour, so the trees of every block of a
//! tenant add up to the flame graph of those hours, provided each profile is in one block
//! (no replicas side by side: the query layer checks that before using them).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::block::{Block, ChildPath, EncodedBlock, block_dir, file_properties};
use crate::error::{Error, Result};
use crate::flamegraph::{FunctionTree, add_partition};
use crate::head::Head;
use crate::model::{TenantId, TimeRange};
use crate::symbols::SymbolPartition;

pub use crate::block::ROLLUP_FILE;

/// The width of a rollup bucket: one hour, aligned to the Unix epoch.
pub const BUCKET_NANOS: i64 = 3_600 * 1_000_000_000;

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

/// Builds a block's rollup from its samples as they stream out (sorted by series and time, so
/// consecutive rows mostly share their slot).
#[derive(Debug, Default)]
pub struct RollupBuilder {
    /// The profile type of every series.
    types: HashMap<u64, Arc<str>>,
    services: HashMap<String, Arc<str>>,
    slots: Vec<Slot>,
    index: HashMap<(Arc<str>, Arc<str>, i64), usize>,
    /// The slot of the last row: (series, bucket, service, slot).
    last: Option<(u64, i64, Arc<str>, usize)>,
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
            *slot.values.entry(stacks.value(row)).or_default() += values.value(row);
            slot.total += values.value(row);
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

    /// The rollup rows, each slot's stacks resolved against its service's symbols; `None`
    /// when no sample was added.
    pub fn finish(
        mut self,
        symbols: &HashMap<&str, &SymbolPartition>,
    ) -> Result<Option<RecordBatch>> {
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
    let Some(mut encoded) =
        EncodedBlock::encode_observing(head, |batch| rollup.add_samples(batch))?
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
    if let Some(batch) = rollup.finish(&symbols)? {
        let rows = batch.num_rows() as u64;
        encoded.add_file(ROLLUP_FILE, encode_rollup(&batch)?, rows);
    }
    Ok(Some(encoded))
}

/// A rollup batch as the bytes of `rollup.parquet`.
pub fn encode_rollup(batch: &RecordBatch) -> Result<Bytes> {
    let properties = file_properties().build();
    let mut writer = ArrowWriter::try_new(Vec::new(), ROLLUP_SCHEMA.clone(), Some(properties))?;
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

/// The encoded trees of `block`'s rollup that `selection` takes, and the hours they cover.
/// `None` when the block has no rollup (written before rollups existed).
pub async fn read_rollup_trees(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    selection: &RollupSelection<'_>,
) -> Result<Option<Vec<Vec<u8>>>> {
    let Some(file) = block.rollup() else {
        return Ok(None);
    };
    // One range request for the whole file: the bucket's range cache keeps it.
    let path = block_dir(tenant, block.id()).child_path(ROLLUP_FILE);
    let bytes = store.get_range(&path, 0..file.size_bytes).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
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
}
