//! Arrow batches of a partition's symbol tables (schemas in [`crate::schema`]).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::Int32Type;

use super::SymbolPartition;
use crate::error::Result;
use crate::schema::{self, TableKind};

/// A `service_name` column of `rows` rows, all `service`.
pub(crate) fn constant_service_column(service: &str, rows: usize) -> ArrayRef {
    let keys = Int32Array::from(vec![0; rows]);
    let values = Arc::new(StringArray::from(vec![service]));
    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).expect("valid dictionary"))
}

/// The rows of `table` for one partition. `table` must be a symbol table.
pub fn symbol_batch(
    table: TableKind,
    service: &str,
    symbols: &SymbolPartition,
) -> Result<RecordBatch> {
    let strings = |id: u32| symbols.string(id);
    let columns: Vec<ArrayRef> = match table {
        TableKind::Stacktraces => {
            // Node 0 is the root (the empty stack); it is implied, not stored.
            let tree = &symbols.stacktraces;
            let n = tree.len().saturating_sub(1);
            vec![
                constant_service_column(service, n),
                Arc::new(UInt32Array::from_iter_values(1..=n as u32)),
                Arc::new(UInt32Array::from(tree.parents()[1..].to_vec())),
                Arc::new(UInt32Array::from(tree.locations()[1..].to_vec())),
            ]
        }
        TableKind::Locations => {
            let locations = symbols.locations.items();
            let mut offsets = Vec::with_capacity(locations.len() + 1);
            offsets.push(0i32);
            let mut functions = Vec::new();
            let mut lines = Vec::new();
            for location in locations {
                for line in location.lines.iter() {
                    functions.push(line.function);
                    lines.push(line.line);
                }
                offsets.push(functions.len() as i32);
            }
            let line_struct = StructArray::try_new(
                schema::line_fields(),
                vec![
                    Arc::new(UInt32Array::from(functions)),
                    Arc::new(Int64Array::from(lines)),
                ],
                None,
            )?;
            let list_field = match schema::LOCATIONS.field(4).data_type() {
                arrow::datatypes::DataType::List(f) => Arc::clone(f),
                other => unreachable!("locations.lines is a list, not {other}"),
            };
            vec![
                constant_service_column(service, locations.len()),
                Arc::new(UInt32Array::from_iter_values(0..locations.len() as u32)),
                Arc::new(locations.iter().map(|l| l.mapping).collect::<UInt32Array>()),
                Arc::new(UInt64Array::from_iter_values(
                    locations.iter().map(|l| l.address),
                )),
                Arc::new(ListArray::try_new(
                    list_field,
                    OffsetBuffer::new(offsets.into()),
                    Arc::new(line_struct),
                    None,
                )?),
            ]
        }
        TableKind::Functions => {
            let functions = symbols.functions.items();
            vec![
                constant_service_column(service, functions.len()),
                Arc::new(UInt32Array::from_iter_values(0..functions.len() as u32)),
                Arc::new(StringArray::from_iter_values(
                    functions.iter().map(|f| strings(f.name)),
                )),
                Arc::new(StringArray::from_iter_values(
                    functions.iter().map(|f| strings(f.system_name)),
                )),
                Arc::new(StringArray::from_iter_values(
                    functions.iter().map(|f| strings(f.filename)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    functions.iter().map(|f| f.start_line),
                )),
            ]
        }
        TableKind::Mappings => {
            let mappings = symbols.mappings.items();
            let flag = |get: fn(&super::Mapping) -> bool| -> ArrayRef {
                Arc::new(
                    mappings
                        .iter()
                        .map(|m| Some(get(m)))
                        .collect::<BooleanArray>(),
                )
            };
            vec![
                constant_service_column(service, mappings.len()),
                Arc::new(UInt32Array::from_iter_values(0..mappings.len() as u32)),
                Arc::new(UInt64Array::from_iter_values(
                    mappings.iter().map(|m| m.memory_start),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    mappings.iter().map(|m| m.memory_limit),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    mappings.iter().map(|m| m.file_offset),
                )),
                Arc::new(StringArray::from_iter_values(
                    mappings.iter().map(|m| strings(m.filename)),
                )),
                Arc::new(StringArray::from_iter_values(
                    mappings.iter().map(|m| strings(m.build_id)),
                )),
                flag(|m| m.has_functions),
                flag(|m| m.has_filenames),
                flag(|m| m.has_line_numbers),
                flag(|m| m.has_inline_frames),
            ]
        }
        other => unreachable!("{} is not a symbol table", other.name()),
    };
    Ok(RecordBatch::try_new(table.schema(), columns)?)
}
