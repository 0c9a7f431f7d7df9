//! Writes a frozen head as a block: sorted tables, zstd Parquet, `meta.json` last.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::meta::{BLOCK_FORMAT_VERSION, BlockFile, BlockMeta, BlockStats, META_FILE};
use super::{Block, ChildPath, block_dir};
use crate::error::{Error, Result};
use crate::head::Head;
use crate::model::TenantId;
use crate::schema::{self, TableKind};
use crate::wal::SegmentId;

/// Rows per Parquet row group; smaller groups prune better by series and time.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// A frozen head's tables, sorted and ready to write: built without awaiting, so the head's
/// lock is never held across I/O.
pub struct BlockContents {
    tables: Vec<(TableKind, RecordBatch)>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
    profile_types: Vec<String>,
    service_names: Vec<String>,
}

impl BlockContents {
    /// Sorts the head's tables for a block. `None` for an empty head.
    pub fn build(head: &Head) -> Result<Option<Self>> {
        let Some((min_time, max_time)) = head.time_bounds() else {
            return Ok(None);
        };
        let mut tables = Vec::new();
        let mut stats = BlockStats::default();
        for table in TableKind::ALL {
            let schema = table.schema();
            let order: &[&str] = match table {
                TableKind::Series => &[schema::SERIES_ID],
                TableKind::Profiles => &[schema::SERIES_ID, schema::TIME],
                TableKind::Samples => &[schema::SERIES_ID, schema::TIME, "stacktrace_id"],
                _ => &[],
            };
            let batch = sorted(head.table_batches(table)?, &schema, order)?;
            let rows = batch.num_rows() as u64;
            match table {
                TableKind::Series => stats.series = rows,
                TableKind::Profiles => stats.profiles = rows,
                TableKind::Samples => stats.samples = rows,
                _ => {}
            }
            tables.push((table, batch));
        }
        let series = &tables[0].1;
        let distinct = |column: usize| -> Vec<String> {
            let values: BTreeSet<&str> = series
                .column(column)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect();
            values.into_iter().map(str::to_string).collect()
        };
        let profile_types = distinct(1);
        let service_names = distinct(2);
        Ok(Some(BlockContents {
            tables,
            stats,
            min_time,
            max_time,
            profile_types,
            service_names,
        }))
    }
}

fn writer_properties(table: TableKind) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("hearth {}", env!("CARGO_PKG_VERSION")));
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
fn sorted(batches: Vec<RecordBatch>, schema: &SchemaRef, by: &[&str]) -> Result<RecordBatch> {
    let batch = concat_batches(schema, &batches)?;
    if batch.num_rows() == 0 || by.is_empty() {
        return Ok(batch);
    }
    let columns: Vec<SortColumn> = by
        .iter()
        .map(|name| SortColumn {
            values: batch.column_by_name(name).expect("sort column").clone(),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(&batch, &indices)?)
}

async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    table: TableKind,
    batch: &RecordBatch,
) -> Result<BlockFile> {
    let writer = BufWriter::new(store.clone(), path.clone());
    let mut parquet =
        AsyncArrowWriter::try_new(writer, table.schema(), Some(writer_properties(table)))?;
    parquet.write(batch).await?;
    parquet.close().await?;
    let size_bytes = store.head(&path).await?.size;
    Ok(BlockFile {
        path: table.file_name().to_string(),
        size_bytes,
        rows: batch.num_rows() as u64,
    })
}

/// Writes a new block of `tenant` and returns it; the caller registers it.
pub async fn write_block(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    contents: BlockContents,
    wal_segments: &[SegmentId],
) -> Result<Block> {
    let ulid = ulid::Ulid::new().to_string();
    let dir = block_dir(tenant, &ulid);
    let mut files = Vec::new();
    for (table, batch) in &contents.tables {
        files.push(write_parquet(store, dir.child_path(table.file_name()), *table, batch).await?);
    }
    let meta = BlockMeta {
        version: BLOCK_FORMAT_VERSION,
        ulid,
        tenant: tenant.to_string(),
        min_time_nanos: contents.min_time,
        max_time_nanos: contents.max_time,
        stats: contents.stats,
        files,
        profile_types: contents.profile_types,
        service_names: contents.service_names,
        wal_segments: wal_segments.iter().map(|s| s.to_string()).collect(),
        source: "ingester".to_string(),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::corrupt("block meta", e))?;
    store
        .put(
            &dir.clone().join(META_FILE),
            PutPayload::from(Bytes::from(json)),
        )
        .await?;
    Ok(Block { meta })
}
