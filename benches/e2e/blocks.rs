//! What the blocks on disk hold: bytes, and sample rows by service and profile type.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub(crate) fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_bytes(&path, suffix);
        } else if path.to_string_lossy().ends_with(suffix) {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fn read(path: &Path, columns: &[usize]) -> Vec<arrow::array::RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
    builder
        .with_projection(mask)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Sample rows per (service, profile type) over all blocks of a tenant.
pub(crate) fn sample_counts(tenant_dir: &Path) -> HashMap<(String, String), u64> {
    let mut counts = HashMap::new();
    for block in std::fs::read_dir(tenant_dir).unwrap().flatten() {
        let dir = block.path();
        if !dir.join("meta.json").exists() {
            continue;
        }
        let mut series: HashMap<u64, (String, String)> = HashMap::new();
        // series: series_id, profile_type, service_name
        for batch in read(&dir.join("series.parquet"), &[0, 1, 2]) {
            let ids = batch.column(0).as_primitive::<UInt64Type>();
            let types = batch.column(1).as_string::<i32>();
            let services = batch.column(2).as_string::<i32>();
            for row in 0..batch.num_rows() {
                series.insert(
                    ids.value(row),
                    (
                        services.value(row).to_string(),
                        types.value(row).to_string(),
                    ),
                );
            }
        }
        // samples: series_id only
        for batch in read(&dir.join("samples.parquet"), &[0]) {
            let ids = arrow::compute::cast(batch.column(0), &DataType::UInt64).unwrap();
            let ids = ids.as_primitive::<UInt64Type>();
            for row in 0..ids.len() {
                if let Some(key) = series.get(&ids.value(row)) {
                    *counts.entry(key.clone()).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}
