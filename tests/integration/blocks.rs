//! Reads a tenant's blocks straight from their Parquet files (FORMAT.md), with the `parquet`
//! crate only: an independent check of what is on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn string(array: &dyn Array, row: usize) -> String {
    let array =
        arrow::compute::cast(&array.slice(row, 1), &arrow::datatypes::DataType::Utf8).unwrap();
    array.as_string::<i32>().value(0).to_string()
}

/// The block folders of a tenant (complete ones: with meta.json).
pub(crate) fn block_dirs(data_dir: &Path, tenant: &str) -> Vec<std::path::PathBuf> {
    let dir = data_dir.join("blocks").join(tenant);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// (service, profile type) -> total value, and the number of sample rows, over all blocks.
pub(crate) fn totals(data_dir: &Path, tenant: &str) -> (BTreeMap<(String, String), i64>, usize) {
    let mut totals = BTreeMap::new();
    let mut rows = 0;
    for block in block_dirs(data_dir, tenant) {
        let mut series: HashMap<u64, (String, String)> = HashMap::new();
        for batch in read(&block.join("series.parquet")) {
            let ids = batch
                .column_by_name("series_id")
                .unwrap()
                .as_primitive::<UInt64Type>();
            let types = batch.column_by_name("profile_type").unwrap();
            let services = batch.column_by_name("service_name").unwrap();
            for row in 0..batch.num_rows() {
                series.insert(
                    ids.value(row),
                    (string(services.as_ref(), row), string(types.as_ref(), row)),
                );
            }
        }
        for batch in read(&block.join("samples.parquet")) {
            let ids = batch
                .column_by_name("series_id")
                .unwrap()
                .as_primitive::<UInt64Type>();
            let values = batch
                .column_by_name("value")
                .unwrap()
                .as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let key = series
                    .get(&ids.value(row))
                    .expect("every sample's series is in the block")
                    .clone();
                *totals.entry(key).or_insert(0) += values.value(row);
                rows += 1;
            }
        }
    }
    (totals, rows)
}
