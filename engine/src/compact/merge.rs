//! Merging blocks into one: a streaming k-way merge of the sources' `profiles` and `samples`
//! (both sorted by series and time), replicas removed, symbols rewritten per service.
//!
//! Memory: every source's symbols and series, the output's symbols and series, one record
//! batch per source and table, and one output row group per table, encoded. Samples and
//! profiles are never held whole; the output files are uploaded part by part as they are
//! written, a few parts at a time. `super::plan::estimated_merge_bytes` sums it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, Int64Array, MapBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use rustc_hash::FxHashMap;

use crate::block::ChildPath;
use crate::block::{
    BLOCK_FORMAT_VERSION, Block, BlockFile, BlockFileReader, BlockMeta, BlockStats, CompactionMeta,
    read_block_symbols, upload, upload_meta, writer_properties,
};
use crate::error::{Error, Result};
use crate::model::TenantId;
use crate::rollup::RollupBuilder;
use crate::schema::{self, TableKind};
use crate::symbols::{Function, Line, Location, Mapping, SymbolPartition, symbol_batch};

/// Rows per output batch and per read batch. The writer encodes each batch into the row group
/// it is building (`writer_properties` sets row groups of 256K rows, as flushes write them), so
/// the merge holds a row group encoded, not as columns of plain values.
const OUTPUT_ROWS: usize = 32 * 1024;
const READ_BATCH_ROWS: usize = 8 * 1024;

/// Upload buffer of an output file (S3's smallest multipart part) and parts in flight: at
/// most three buffers per file.
const UPLOAD_PART_BYTES: usize = 5 << 20;
const UPLOAD_CONCURRENCY: usize = 2;

/// How a merge treats its sources.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Whether the sources may hold replicas of the same profiles (a cluster): each (series,
    /// time) is then taken from one source, the one holding most of its profile ids, as
    /// queries choose (`crate::dedupe`). Otherwise (one process) every source's rows are kept.
    pub replicated: bool,
    /// The node writing the block (its `meta.json` `origin`).
    pub origin: String,
    /// The output's compaction level.
    pub level: u32,
}

/// What a merge read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub profiles_in: u64,
    pub profiles_out: u64,
    pub samples_in: u64,
    pub samples_out: u64,
}

/// One series as the output describes it.
#[derive(Debug)]
struct SeriesRow {
    profile_type: String,
    service: String,
    labels: Vec<(String, String)>,
    min_time: i64,
    max_time: i64,
    profile_count: u64,
}

/// Merges `sources` (blocks of `tenant`) into one new block, uploaded with its `meta.json`
/// last. `None` when the sources hold no profile. The caller commits nothing else: the new
/// block's `meta.json` lists its sources, which readers then ignore.
pub async fn merge_blocks(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    sources: &[Arc<Block>],
    options: &MergeOptions,
) -> Result<Option<(Block, MergeStats)>> {
    let mut stats = MergeStats {
        input_bytes: sources.iter().map(|b| b.meta.size_bytes()).sum(),
        ..MergeStats::default()
    };
    let mut series = BTreeMap::new();
    let mut symbols = Vec::with_capacity(sources.len());
    for block in sources {
        read_series(store, tenant, block, &mut series).await?;
        symbols.push(read_block_symbols(store, tenant, block).await?);
    }
    let ulid = ulid::Ulid::new().to_string();
    let dir = crate::block::block_dir(tenant, &ulid);
    let mut merge = Merger {
        replicated: options.replicated,
        sources: sources.iter().map(|b| b.meta.ulid.clone()).collect(),
        symbols,
        out_symbols: Vec::new(),
        out_partition: HashMap::new(),
        remaps: HashMap::new(),
        series,
        profiles: ProfileRows::default(),
        samples: SampleRows::default(),
        min_time: i64::MAX,
        max_time: i64::MIN,
    };
    let mut profile_cursors = Vec::new();
    let mut sample_cursors = Vec::new();
    for block in sources {
        profile_cursors.push(Cursor::open(store, tenant, block, TableKind::Profiles).await?);
        sample_cursors.push(Cursor::open(store, tenant, block, TableKind::Samples).await?);
    }
    let mut rollup = RollupBuilder::new();
    for (&id, row) in &merge.series {
        rollup.series(id, &row.profile_type);
    }
    let mut profiles_out = TableWriter::new(store, &dir, TableKind::Profiles)?;
    let mut samples_out = TableWriter::new(store, &dir, TableKind::Samples)?;

    let mut held: Vec<Vec<ProfileRow>> = vec![Vec::new(); sources.len()];
    let mut key_samples: Vec<(u32, u32, i64, Option<u64>)> = Vec::new();
    loop {
        let key = profile_cursors
            .iter()
            .chain(&sample_cursors)
            .filter_map(Cursor::key)
            .min();
        let Some((series_id, time)) = key else { break };
        for (source, cursor) in profile_cursors.iter_mut().enumerate() {
            held[source].clear();
            while cursor.key() == Some((series_id, time)) {
                held[source].push(cursor.profile_row());
                stats.profiles_in += 1;
                cursor.advance().await?;
            }
        }
        let kept = merge.choose(series_id, time, &held, &sample_cursors);
        key_samples.clear();
        for (source, cursor) in sample_cursors.iter_mut().enumerate() {
            while cursor.key() == Some((series_id, time)) {
                stats.samples_in += 1;
                if kept.contains(&source) {
                    let (stack, value, span) = cursor.sample_row();
                    let (partition, stack) = merge.remap(source, series_id, stack)?;
                    key_samples.push((partition, stack, value, span));
                }
                cursor.advance().await?;
            }
        }
        for &source in &kept {
            for row in &held[source] {
                merge.add_profile(series_id, time, row);
            }
        }
        // A run keeps its rows in stack-trace order, as flushed blocks do.
        key_samples.sort_by_key(|&(_, stack, _, span)| (stack, span));
        for &(partition, stack, value, span) in &key_samples {
            merge
                .samples
                .push(series_id, time, partition, stack, value, span);
        }
        if merge.profiles.len() >= OUTPUT_ROWS {
            let batch = merge.profiles.take()?;
            rollup.add_profiles(&batch)?;
            profiles_out.write(&batch).await?;
        }
        if merge.samples.len() >= OUTPUT_ROWS {
            let batch = merge.samples.take(&merge.partition_names())?;
            rollup.add_samples(&batch)?;
            samples_out.write(&batch).await?;
        }
    }
    if merge.min_time > merge.max_time {
        profiles_out.abort().await;
        samples_out.abort().await;
        return Ok(None);
    }
    stats.profiles_out = profiles_out.rows + merge.profiles.len() as u64;
    stats.samples_out = samples_out.rows + merge.samples.len() as u64;
    if !merge.profiles.is_empty() {
        let batch = merge.profiles.take()?;
        rollup.add_profiles(&batch)?;
        profiles_out.write(&batch).await?;
    }
    if !merge.samples.is_empty() {
        let batch = merge.samples.take(&merge.partition_names())?;
        rollup.add_samples(&batch)?;
        samples_out.write(&batch).await?;
    }
    let mut files = vec![profiles_out.finish().await?, samples_out.finish().await?];
    let (series_batch, profile_types, service_names) = merge.series_batch()?;
    let mut series_out = TableWriter::new(store, &dir, TableKind::Series)?;
    series_out.write(&series_batch).await?;
    files.insert(0, series_out.finish().await?);
    for table in TableKind::SYMBOLS {
        let mut writer = TableWriter::new(store, &dir, table)?;
        for (name, partition) in &merge.out_symbols {
            writer.write(&symbol_batch(table, name, partition)?).await?;
        }
        files.push(writer.finish().await?);
    }
    let symbols = merge
        .out_symbols
        .iter()
        .map(|(name, partition)| (&**name, partition))
        .collect();
    for (name, bytes, rows) in rollup.finish(&symbols)?.files()? {
        files.push(upload(store, dir.child_path(name), name, bytes, rows).await?);
    }
    stats.output_bytes = files.iter().map(|f| f.size_bytes).sum();
    let meta = BlockMeta {
        version: BLOCK_FORMAT_VERSION,
        ulid,
        tenant: tenant.to_string(),
        min_time_nanos: merge.min_time,
        max_time_nanos: merge.max_time,
        stats: BlockStats {
            series: series_batch.num_rows() as u64,
            profiles: stats.profiles_out,
            samples: stats.samples_out,
        },
        files,
        profile_types,
        service_names,
        wal_segments: Vec::new(),
        source: "compactor".to_string(),
        origin: options.origin.clone(),
        compaction: Some(compaction_of(sources, options.level)),
    };
    upload_meta(store.as_ref(), tenant, &meta).await?;
    Ok(Some((Block { meta }, stats)))
}

/// What a block merged from `sources` replaces and holds.
fn compaction_of(sources: &[Arc<Block>], level: u32) -> CompactionMeta {
    let mut replaced = BTreeSet::new();
    let mut wal_segments: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in sources {
        replaced.insert(block.meta.ulid.clone());
        match &block.meta.compaction {
            Some(compaction) => {
                replaced.extend(compaction.sources.iter().cloned());
                for (origin, segments) in &compaction.wal_segments {
                    wal_segments
                        .entry(origin.clone())
                        .or_default()
                        .extend(segments.iter().cloned());
                }
            }
            None if !block.meta.wal_segments.is_empty() => {
                wal_segments
                    .entry(block.meta.origin.clone())
                    .or_default()
                    .extend(block.meta.wal_segments.iter().cloned());
            }
            None => {}
        }
    }
    CompactionMeta {
        level,
        sources: replaced.into_iter().collect(),
        wal_segments: wal_segments
            .into_iter()
            .map(|(origin, segments)| (origin, segments.into_iter().collect()))
            .collect(),
    }
}

async fn read_series(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    into: &mut BTreeMap<u64, SeriesRow>,
) -> Result<()> {
    for batch in crate::block::read_whole_table(store, tenant, block, TableKind::Series).await? {
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let profile_types = batch.column(1).as_string::<i32>();
        let services = batch.column(2).as_string::<i32>();
        let labels = batch.column(3).as_map();
        for row in 0..batch.num_rows() {
            into.entry(ids.value(row)).or_insert_with(|| {
                let entries = labels.value(row);
                let names = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                SeriesRow {
                    profile_type: profile_types.value(row).to_string(),
                    service: services.value(row).to_string(),
                    labels: (0..entries.len())
                        .map(|i| (names.value(i).to_string(), values.value(i).to_string()))
                        .collect(),
                    min_time: i64::MAX,
                    max_time: i64::MIN,
                    profile_count: 0,
                }
            });
        }
    }
    Ok(())
}

/// A `profiles` row without its key.
#[derive(Debug, Clone)]
struct ProfileRow {
    id: Option<String>,
    duration_nanos: i64,
    period: i64,
    sample_count: u32,
    total_value: i64,
}

/// The merge's state: symbols in and out, and the output rows not yet written.
struct Merger {
    replicated: bool,
    /// Source block ids, by source index.
    sources: Vec<String>,
    symbols: Vec<HashMap<String, SymbolPartition>>,
    out_symbols: Vec<(Arc<str>, SymbolPartition)>,
    out_partition: HashMap<String, u32>,
    /// Per (source, output partition): ids already rewritten.
    remaps: HashMap<(usize, u32), Remap>,
    series: BTreeMap<u64, SeriesRow>,
    profiles: ProfileRows,
    samples: SampleRows,
    min_time: i64,
    max_time: i64,
}

impl Merger {
    /// The sources whose rows of (series, time) are kept.
    fn choose(
        &self,
        series: u64,
        time: i64,
        held: &[Vec<ProfileRow>],
        samples: &[Cursor],
    ) -> Vec<usize> {
        let holders: Vec<usize> = (0..held.len())
            .filter(|&s| !held[s].is_empty() || samples[s].key() == Some((series, time)))
            .collect();
        if !self.replicated || holders.len() <= 1 {
            return holders;
        }
        // As `KeepSets::assign`: most distinct profile ids; among equals, by source id.
        let ids = |s: usize| {
            held[s]
                .iter()
                .map(|p| p.id.as_deref().unwrap_or_default())
                .collect::<BTreeSet<_>>()
                .len()
        };
        let most = holders.iter().map(|&s| ids(s)).max().unwrap_or(0);
        let mut best: Vec<usize> = holders.into_iter().filter(|&s| ids(s) == most).collect();
        best.sort_by(|&a, &b| self.sources[a].cmp(&self.sources[b]));
        vec![best[(series ^ time as u64) as usize % best.len()]]
    }

    fn add_profile(&mut self, series_id: u64, time: i64, row: &ProfileRow) {
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        if let Some(series) = self.series.get_mut(&series_id) {
            series.min_time = series.min_time.min(time);
            series.max_time = series.max_time.max(time);
            series.profile_count += 1;
        }
        self.profiles.push(series_id, time, row);
    }

    /// The output partition and stack-trace id of a source's stack-trace id.
    fn remap(&mut self, source: usize, series_id: u64, stack: u32) -> Result<(u32, u32)> {
        let service = self
            .series
            .get(&series_id)
            .map(|s| s.service.clone())
            .ok_or_else(|| {
                Error::corrupt(
                    format!("block {}", self.sources[source]),
                    format!("samples of series {series_id:016x}, which is not in series.parquet"),
                )
            })?;
        let partition = match self.out_partition.get(&service) {
            Some(&id) => id,
            None => {
                let id = self.out_symbols.len() as u32;
                self.out_symbols
                    .push((Arc::from(service.as_str()), SymbolPartition::new()));
                self.out_partition.insert(service.clone(), id);
                id
            }
        };
        let from = self.symbols[source].get(&service).ok_or_else(|| {
            Error::corrupt(
                format!("block {}", self.sources[source]),
                format!("no symbols for service {service}"),
            )
        })?;
        let to = &mut self.out_symbols[partition as usize].1;
        let remap = self.remaps.entry((source, partition)).or_default();
        let stack = remap.stack(from, to, stack).ok_or_else(|| {
            Error::corrupt(
                format!("block {}", self.sources[source]),
                format!("stack-trace {stack} of service {service} refers to missing symbols"),
            )
        })?;
        Ok((partition, stack))
    }

    fn partition_names(&self) -> StringArray {
        StringArray::from_iter_values(self.out_symbols.iter().map(|(name, _)| name.as_ref()))
    }

    /// The series that kept profiles, sorted by id, and their distinct profile types and
    /// services.
    fn series_batch(&self) -> Result<(RecordBatch, Vec<String>, Vec<String>)> {
        let rows: Vec<(&u64, &SeriesRow)> = self
            .series
            .iter()
            .filter(|(_, s)| s.profile_count > 0)
            .collect();
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for (_, s) in &rows {
            for (name, value) in &s.labels {
                labels.keys().append_value(name);
                labels.values().append_value(value);
            }
            labels.append(true)?;
        }
        let times = |f: fn(&SeriesRow) -> i64| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|(_, s)| f(s)))
                    .with_timezone("UTC"),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(id, _)| **id),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, s)| s.profile_type.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, s)| s.service.as_str()),
            )),
            Arc::new(labels.finish()),
            times(|s| s.min_time),
            times(|s| s.max_time),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(_, s)| s.profile_count),
            )),
        ];
        let batch = RecordBatch::try_new(schema::SERIES.clone(), columns)?;
        let distinct = |f: fn(&SeriesRow) -> &str| -> Vec<String> {
            let set: BTreeSet<&str> = rows.iter().map(|(_, s)| f(s)).collect();
            set.into_iter().map(str::to_string).collect()
        };
        Ok((
            batch,
            distinct(|s| s.profile_type.as_str()),
            distinct(|s| s.service.as_str()),
        ))
    }
}

/// Ids of one source partition already written to the output partition. Only what kept
/// samples reference is ever copied, so the output holds no unused symbol.
#[derive(Debug, Default)]
struct Remap {
    stacks: FxHashMap<u32, u32>,
    locations: FxHashMap<u32, u32>,
    functions: FxHashMap<u32, u32>,
    mappings: FxHashMap<u32, u32>,
    strings: FxHashMap<u32, u32>,
    path: Vec<u32>,
}

impl Remap {
    /// `None` when the source refers to a symbol it does not hold.
    fn stack(&mut self, from: &SymbolPartition, to: &mut SymbolPartition, id: u32) -> Option<u32> {
        if id == 0 {
            return Some(0);
        }
        if let Some(&known) = self.stacks.get(&id) {
            return Some(known);
        }
        if id as usize >= from.stacktraces.len() {
            return None;
        }
        let mut path = std::mem::take(&mut self.path);
        from.stacktraces.resolve(id, &mut path);
        let mut root_first = Vec::with_capacity(path.len());
        for &location in path.iter().rev() {
            root_first.push(self.location(from, to, location)?);
        }
        self.path = path;
        let new = to.stacktraces.insert(&root_first);
        self.stacks.insert(id, new);
        Some(new)
    }

    fn location(
        &mut self,
        from: &SymbolPartition,
        to: &mut SymbolPartition,
        id: u32,
    ) -> Option<u32> {
        if let Some(&known) = self.locations.get(&id) {
            return Some(known);
        }
        let location = from.locations.get(id)?;
        let mapping = match location.mapping {
            Some(m) => Some(self.mapping(from, to, m)?),
            None => None,
        };
        let mut lines = Vec::with_capacity(location.lines.len());
        for line in location.lines.iter() {
            lines.push(Line {
                function: self.function(from, to, line.function)?,
                line: line.line,
            });
        }
        let new = to.locations.intern(Location {
            mapping,
            address: location.address,
            lines: lines.into_boxed_slice(),
        });
        self.locations.insert(id, new);
        Some(new)
    }

    fn function(
        &mut self,
        from: &SymbolPartition,
        to: &mut SymbolPartition,
        id: u32,
    ) -> Option<u32> {
        if let Some(&known) = self.functions.get(&id) {
            return Some(known);
        }
        let f = from.functions.get(id)?;
        let function = Function {
            name: self.string(from, to, f.name),
            system_name: self.string(from, to, f.system_name),
            filename: self.string(from, to, f.filename),
            start_line: f.start_line,
        };
        let new = to.functions.intern(function);
        self.functions.insert(id, new);
        Some(new)
    }

    fn mapping(
        &mut self,
        from: &SymbolPartition,
        to: &mut SymbolPartition,
        id: u32,
    ) -> Option<u32> {
        if let Some(&known) = self.mappings.get(&id) {
            return Some(known);
        }
        let m = from.mappings.get(id)?;
        let mapping = Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.string(from, to, m.filename),
            build_id: self.string(from, to, m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        };
        let new = to.mappings.intern(mapping);
        self.mappings.insert(id, new);
        Some(new)
    }

    fn string(&mut self, from: &SymbolPartition, to: &mut SymbolPartition, id: u32) -> u32 {
        *self
            .strings
            .entry(id)
            .or_insert_with(|| to.intern_string(from.string(id)))
    }
}

/// Output `profiles` rows not yet written.
#[derive(Debug, Default)]
struct ProfileRows {
    series: Vec<u64>,
    time: Vec<i64>,
    id: Vec<Option<String>>,
    duration: Vec<i64>,
    period: Vec<i64>,
    sample_count: Vec<u32>,
    total: Vec<i64>,
}

impl ProfileRows {
    fn len(&self) -> usize {
        self.series.len()
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn push(&mut self, series: u64, time: i64, row: &ProfileRow) {
        self.series.push(series);
        self.time.push(time);
        self.id.push(row.id.clone());
        self.duration.push(row.duration_nanos);
        self.period.push(row.period);
        self.sample_count.push(row.sample_count);
        self.total.push(row.total_value);
    }

    fn take(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(self);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(rows.series)),
            Arc::new(TimestampNanosecondArray::from(rows.time).with_timezone("UTC")),
            Arc::new(StringArray::from(rows.id)),
            Arc::new(Int64Array::from(rows.duration)),
            Arc::new(Int64Array::from(rows.period)),
            Arc::new(UInt32Array::from(rows.sample_count)),
            Arc::new(Int64Array::from(rows.total)),
        ];
        Ok(RecordBatch::try_new(schema::PROFILES.clone(), columns)?)
    }
}

/// Output `samples` rows not yet written.
#[derive(Debug, Default)]
struct SampleRows {
    series: Vec<u64>,
    time: Vec<i64>,
    partition: Vec<i32>,
    stack: Vec<u32>,
    value: Vec<i64>,
    span: Vec<Option<u64>>,
}

impl SampleRows {
    fn len(&self) -> usize {
        self.series.len()
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn push(
        &mut self,
        series: u64,
        time: i64,
        partition: u32,
        stack: u32,
        value: i64,
        span: Option<u64>,
    ) {
        self.series.push(series);
        self.time.push(time);
        self.partition.push(partition as i32);
        self.stack.push(stack);
        self.value.push(value);
        self.span.push(span);
    }

    fn take(&mut self, partition_names: &StringArray) -> Result<RecordBatch> {
        let rows = std::mem::take(self);
        let service = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(rows.partition),
            Arc::new(partition_names.clone()),
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(rows.series)),
            Arc::new(TimestampNanosecondArray::from(rows.time).with_timezone("UTC")),
            Arc::new(service),
            Arc::new(UInt32Array::from(rows.stack)),
            Arc::new(Int64Array::from(rows.value)),
            Arc::new(UInt64Array::from(rows.span)),
        ];
        Ok(RecordBatch::try_new(schema::SAMPLES.clone(), columns)?)
    }
}

/// Reads one sorted table of a source batch by batch.
struct Cursor {
    stream: Option<ParquetRecordBatchStream<BlockFileReader>>,
    batch: Option<RecordBatch>,
    row: usize,
}

impl Cursor {
    async fn open(
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
        block: &Block,
        table: TableKind,
    ) -> Result<Self> {
        let Some(file) = block.file(table) else {
            return Ok(Cursor {
                stream: None,
                batch: None,
                row: 0,
            });
        };
        let reader = BlockFileReader::new(
            Arc::clone(store),
            block.path(tenant, table),
            file.size_bytes,
        );
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(READ_BATCH_ROWS)
            .build()?;
        let mut cursor = Cursor {
            stream: Some(stream),
            batch: None,
            row: 0,
        };
        cursor.fill().await?;
        Ok(cursor)
    }

    /// Loads the next non-empty batch when the current one is used up.
    async fn fill(&mut self) -> Result<()> {
        while self.batch.as_ref().is_none_or(|b| self.row >= b.num_rows()) {
            self.row = 0;
            self.batch = match self.stream.as_mut() {
                Some(stream) => stream.next().await.transpose()?,
                None => None,
            };
            if self.batch.is_none() {
                self.stream = None;
                return Ok(());
            }
        }
        Ok(())
    }

    async fn advance(&mut self) -> Result<()> {
        self.row += 1;
        self.fill().await
    }

    /// The (series, time) of the current row; `None` at the end.
    fn key(&self) -> Option<(u64, i64)> {
        let batch = self.batch.as_ref()?;
        Some((
            batch.column(0).as_primitive::<UInt64Type>().value(self.row),
            batch
                .column(1)
                .as_primitive::<TimestampNanosecondType>()
                .value(self.row),
        ))
    }

    fn profile_row(&self) -> ProfileRow {
        let batch = self.batch.as_ref().expect("a current row");
        let ids = batch.column(2).as_string::<i32>();
        let i64s = |c: usize| batch.column(c).as_primitive::<Int64Type>().value(self.row);
        ProfileRow {
            id: ids
                .is_valid(self.row)
                .then(|| ids.value(self.row).to_string()),
            duration_nanos: i64s(3),
            period: i64s(4),
            sample_count: batch.column(5).as_primitive::<UInt32Type>().value(self.row),
            total_value: i64s(6),
        }
    }

    /// (stack-trace id, value, span id) of the current `samples` row.
    fn sample_row(&self) -> (u32, i64, Option<u64>) {
        let batch = self.batch.as_ref().expect("a current row");
        let spans = batch.column(5).as_primitive::<UInt64Type>();
        (
            batch.column(3).as_primitive::<UInt32Type>().value(self.row),
            batch.column(4).as_primitive::<Int64Type>().value(self.row),
            spans.is_valid(self.row).then(|| spans.value(self.row)),
        )
    }
}

/// One output file, uploaded in parts as row groups complete.
struct TableWriter {
    store: Arc<dyn ObjectStore>,
    table: TableKind,
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
}

impl TableWriter {
    fn new(store: &Arc<dyn ObjectStore>, dir: &Path, table: TableKind) -> Result<Self> {
        let path = dir.child_path(table.file_name());
        let writer = AsyncArrowWriter::try_new(
            BufWriter::with_capacity(Arc::clone(store), path.clone(), UPLOAD_PART_BYTES)
                .with_max_concurrency(UPLOAD_CONCURRENCY),
            table.schema(),
            Some(writer_properties(table)),
        )?;
        Ok(TableWriter {
            store: Arc::clone(store),
            table,
            path,
            writer,
            rows: 0,
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        Ok(self.writer.write(batch).await?)
    }

    async fn finish(self) -> Result<BlockFile> {
        self.writer.close().await?;
        let size_bytes = self.store.head(&self.path).await?.size;
        Ok(BlockFile {
            path: self.table.file_name().to_string(),
            size_bytes,
            rows: self.rows,
        })
    }

    /// Drops an output that will not be used (its multipart upload is abandoned).
    async fn abort(self) {
        drop(self.writer);
    }
}
