//! Reading a block's symbol tables back into one [`SymbolPartition`] per service.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt32Type, UInt64Type};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Block;
use crate::error::{Error, Result};
use crate::model::TenantId;
use crate::schema::TableKind;
use crate::symbols::{Function, Line, Location, Mapping, StacktraceTree, SymbolPartition};

/// A whole table file in one request (symbol and series files are read in full).
pub(crate) async fn read_whole_table(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
    table: TableKind,
) -> Result<Vec<RecordBatch>> {
    if block.file(table).is_none() {
        return Ok(Vec::new());
    }
    let bytes = store.get(&block.path(tenant, table)).await?.bytes().await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The `service_name` of every row of a symbol batch.
fn services(batch: &RecordBatch) -> Vec<String> {
    let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
        .expect("service names are strings");
    column
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

/// Every service's symbols of a block.
pub async fn read_block_symbols(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
) -> Result<HashMap<String, SymbolPartition>> {
    let mut tables = HashMap::new();
    for kind in TableKind::SYMBOLS {
        tables.insert(kind, read_whole_table(store, tenant, block, kind).await?);
    }
    symbols_from_tables(&format!("block {} symbols", block.id()), &tables)
}

/// Every service's symbols from the rows of the four symbol tables (as stored, or as queried
/// with `source` last), each table's rows in id order per service. `what` names the origin in
/// errors.
pub fn symbols_from_tables(
    what: &str,
    tables: &HashMap<TableKind, Vec<RecordBatch>>,
) -> Result<HashMap<String, SymbolPartition>> {
    let mut partitions: HashMap<String, SymbolPartition> = HashMap::new();
    let corrupt = |message: &str| Error::corrupt(what.to_string(), message.to_string());
    let check_id = |expected: usize, got: u32| {
        if got as usize != expected {
            return Err(corrupt("symbol ids are not dense"));
        }
        Ok(())
    };
    let table = |kind: TableKind| tables.get(&kind).map(Vec::as_slice).unwrap_or_default();

    for batch in table(TableKind::Mappings) {
        let ids = batch.column(1).as_primitive::<UInt32Type>();
        let u64s = |i: usize| batch.column(i).as_primitive::<UInt64Type>().clone();
        let (start, limit, offset) = (u64s(2), u64s(3), u64s(4));
        let (filename, build_id) = (
            batch.column(5).as_string::<i32>(),
            batch.column(6).as_string::<i32>(),
        );
        let flag = |i: usize, row: usize| batch.column(i).as_boolean().value(row);
        for (row, service) in services(batch).into_iter().enumerate() {
            let p = partitions.entry(service).or_default();
            let mapping = Mapping {
                memory_start: start.value(row),
                memory_limit: limit.value(row),
                file_offset: offset.value(row),
                filename: p.intern_string(filename.value(row)),
                build_id: p.intern_string(build_id.value(row)),
                has_functions: flag(7, row),
                has_filenames: flag(8, row),
                has_line_numbers: flag(9, row),
                has_inline_frames: flag(10, row),
            };
            p.mappings.intern(mapping);
            check_id(p.mappings.len() - 1, ids.value(row))?;
        }
    }
    for batch in table(TableKind::Functions) {
        let ids = batch.column(1).as_primitive::<UInt32Type>();
        let (name, system_name, filename) = (
            batch.column(2).as_string::<i32>(),
            batch.column(3).as_string::<i32>(),
            batch.column(4).as_string::<i32>(),
        );
        let start_line = batch.column(5).as_primitive::<Int64Type>();
        for (row, service) in services(batch).into_iter().enumerate() {
            let p = partitions.entry(service).or_default();
            let function = Function {
                name: p.intern_string(name.value(row)),
                system_name: p.intern_string(system_name.value(row)),
                filename: p.intern_string(filename.value(row)),
                start_line: start_line.value(row),
            };
            p.functions.intern(function);
            check_id(p.functions.len() - 1, ids.value(row))?;
        }
    }
    for batch in table(TableKind::Locations) {
        let ids = batch.column(1).as_primitive::<UInt32Type>();
        let mapping = batch.column(2).as_primitive::<UInt32Type>();
        let address = batch.column(3).as_primitive::<UInt64Type>();
        let lines = batch.column(4).as_list::<i32>();
        let line_values = lines.values().as_struct();
        let functions = line_values.column(0).as_primitive::<UInt32Type>();
        let numbers = line_values.column(1).as_primitive::<Int64Type>();
        let offsets = lines.value_offsets();
        for (row, service) in services(batch).into_iter().enumerate() {
            let p = partitions.entry(service).or_default();
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            let location = Location {
                mapping: mapping.is_valid(row).then(|| mapping.value(row)),
                address: address.value(row),
                lines: (from..to)
                    .map(|i| Line {
                        function: functions.value(i),
                        line: numbers.value(i),
                    })
                    .collect(),
            };
            p.locations.intern(location);
            check_id(p.locations.len() - 1, ids.value(row))?;
        }
    }
    let mut trees: HashMap<String, (Vec<u32>, Vec<u32>)> = HashMap::new();
    for batch in table(TableKind::Stacktraces) {
        let ids = batch.column(1).as_primitive::<UInt32Type>();
        let parents = batch.column(2).as_primitive::<UInt32Type>();
        let locations = batch.column(3).as_primitive::<UInt32Type>();
        for (row, service) in services(batch).into_iter().enumerate() {
            let (p, l) = trees
                .entry(service)
                .or_insert_with(|| (vec![0], vec![u32::MAX]));
            if ids.value(row) as usize != p.len() || parents.value(row) >= ids.value(row) {
                return Err(corrupt("stack-trace nodes out of order"));
            }
            p.push(parents.value(row));
            l.push(locations.value(row));
        }
    }
    for (service, (parents, locations)) in trees {
        partitions.entry(service).or_default().stacktraces =
            StacktraceTree::from_nodes(parents, locations);
    }
    Ok(partitions)
}
