//! Writes a frozen head as a block: sorted tables, zstd Parquet, `meta.json` last.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use tokio::io::AsyncWriteExt;

use super::meta::{BLOCK_FORMAT_VERSION, BlockFile, BlockMeta, BlockStats, META_FILE};
use super::{Block, ChildPath, block_dir};
use crate::error::{Error, Result};
use crate::head::Head;
use crate::model::TenantId;
use crate::schema::{self, TableKind};
use crate::wal::SegmentId;

/// Rows per Parquet row group; smaller groups prune better by series and time.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// A frozen head encoded as a block's Parquet files, ready to upload. Encoding is CPU work
/// without awaiting: callers run it off the async workers, and the head's lock is never held
/// across I/O. The samples table streams from the head in row groups, so a flush needs the
/// compressed files and one row group beside the head, not a sorted copy of it.
#[derive(Debug)]
pub struct EncodedBlock {
    /// Each file's name in the block's folder, bytes and rows.
    files: Vec<(&'static str, Bytes, u64)>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
    profile_types: Vec<String>,
    service_names: Vec<String>,
}

impl EncodedBlock {
    /// Sorts and encodes the head's tables. `None` for an empty head.
    pub fn encode(head: &Head) -> Result<Option<Self>> {
        Self::encode_observing(head, |_, _| Ok(()))
    }

    /// [`EncodedBlock::encode`], showing `observe` every batch of the `profiles` and `samples`
    /// tables as it is written (in block order), so a caller can derive more from them
    /// without a second pass.
    pub fn encode_observing(
        head: &Head,
        mut observe: impl FnMut(TableKind, &RecordBatch) -> Result<()>,
    ) -> Result<Option<Self>> {
        let Some((min_time, max_time)) = head.time_bounds() else {
            return Ok(None);
        };
        let series = head.series_batch()?; // sorted by series_id
        let distinct = |column: usize| -> Vec<String> {
            let values: BTreeSet<&str> = series
                .column(column)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect();
            values.into_iter().map(str::to_string).collect()
        };
        let (profile_types, service_names) = (distinct(1), distinct(2));
        let mut stats = BlockStats::default();
        let mut files = Vec::new();
        for table in TableKind::ALL {
            let mut writer =
                ArrowWriter::try_new(Vec::new(), table.schema(), Some(writer_properties(table)))?;
            let mut rows = 0u64;
            let mut write = |batch: &RecordBatch| -> Result<()> {
                rows += batch.num_rows() as u64;
                Ok(writer.write(batch)?)
            };
            match table {
                TableKind::Series => write(&series)?,
                TableKind::Profiles => {
                    let batch =
                        sorted(&head.profiles_batch()?, &[schema::SERIES_ID, schema::TIME])?;
                    observe(table, &batch)?;
                    write(&batch)?;
                }
                TableKind::Samples => {
                    for batch in head.sorted_sample_batches(ROW_GROUP_ROWS)? {
                        let batch = batch?;
                        observe(table, &batch)?;
                        write(&batch)?;
                    }
                }
                symbols => {
                    for batch in head.symbol_batches(symbols)? {
                        write(&batch)?;
                    }
                }
            }
            match table {
                TableKind::Series => stats.series = rows,
                TableKind::Profiles => stats.profiles = rows,
                TableKind::Samples => stats.samples = rows,
                _ => {}
            }
            files.push((table.file_name(), Bytes::from(writer.into_inner()?), rows));
        }
        Ok(Some(EncodedBlock {
            files,
            stats,
            min_time,
            max_time,
            profile_types,
            service_names,
        }))
    }

    /// Adds a file beside the tables (written before `meta.json`, listed in it).
    pub fn add_file(&mut self, name: &'static str, bytes: Bytes, rows: u64) {
        self.files.push((name, bytes, rows));
    }
}

/// What every file of a block shares: zstd level 3, and Hearth as its writer.
pub(crate) fn file_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_created_by(format!("hearth {}", env!("CARGO_PKG_VERSION")))
}

/// How every block table is written (compression, row groups, encodings).
pub fn writer_properties(table: TableKind) -> WriterProperties {
    let mut builder = file_properties().set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    if table == TableKind::Samples {
        // Within a (series, time) run stack-trace ids ascend: small deltas.
        let stacktrace = ColumnPath::from("stacktrace_id");
        builder = builder
            .set_column_dictionary_enabled(stacktrace.clone(), false)
            .set_column_encoding(stacktrace, Encoding::DELTA_BINARY_PACKED);
    }
    builder.build()
}

/// Sorts a table's rows by the given columns.
fn sorted(batch: &RecordBatch, by: &[&str]) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let columns: Vec<SortColumn> = by
        .iter()
        .map(|name| SortColumn {
            values: Arc::clone(batch.column_by_name(name).expect("sort column")),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Uploads one file (multipart when large) and describes it for `meta.json`.
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    name: &str,
    bytes: Bytes,
    rows: u64,
) -> Result<BlockFile> {
    let size_bytes = bytes.len() as u64;
    let mut writer = BufWriter::new(Arc::clone(store), path.clone());
    writer.put(bytes).await?;
    writer.shutdown().await.map_err(|e| Error::io(&path, e))?;
    Ok(BlockFile {
        path: name.to_string(),
        size_bytes,
        rows,
    })
}

/// Writes a new block of `tenant` and returns it; the caller registers it.
pub async fn write_block(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    encoded: EncodedBlock,
    wal_segments: &[SegmentId],
    origin: &str,
) -> Result<Block> {
    let ulid = ulid::Ulid::new().to_string();
    let dir = block_dir(tenant, &ulid);
    let mut files = Vec::new();
    for (name, bytes, rows) in encoded.files {
        files.push(upload(store, dir.child_path(name), name, bytes, rows).await?);
    }
    let meta = BlockMeta {
        version: BLOCK_FORMAT_VERSION,
        ulid,
        tenant: tenant.to_string(),
        min_time_nanos: encoded.min_time,
        max_time_nanos: encoded.max_time,
        stats: encoded.stats,
        files,
        profile_types: encoded.profile_types,
        service_names: encoded.service_names,
        wal_segments: wal_segments.iter().map(|s| s.to_string()).collect(),
        source: "ingester".to_string(),
        origin: origin.to_string(),
        compaction: None,
    };
    upload_meta(store.as_ref(), tenant, &meta).await?;
    Ok(Block { meta })
}

/// Writes a block's `meta.json`, which makes it complete: call it after every file is up.
pub async fn upload_meta(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    meta: &BlockMeta,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(|e| Error::corrupt("block meta", e))?;
    store
        .put(
            &block_dir(tenant, &meta.ulid).join(META_FILE),
            PutPayload::from(Bytes::from(json)),
        )
        .await?;
    Ok(())
}
