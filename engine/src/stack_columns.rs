//! Reading the (source, service, stack-trace id, value) columns the stack-merge aggregates take,
//! with values summed per partition in dense arrays indexed by stack-trace id: no hashing of
//! strings per row.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt32Type};
use datafusion::common::{DataFusionError, Result, exec_err};

/// A string column as per-row indices into its distinct values.
#[derive(Debug)]
pub struct StringKeys {
    pub keys: Vec<usize>,
    pub values: Vec<Arc<str>>,
}

pub fn string_keys(array: &ArrayRef, what: &str) -> Result<StringKeys> {
    if let Some(dict) = array.as_any_dictionary_opt()
        && !dict.values().is_empty()
    {
        let values = arrow::compute::cast(dict.values(), &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        return Ok(StringKeys {
            keys: dict.normalized_keys(),
            values: values
                .iter()
                .map(|v| Arc::from(v.unwrap_or_default()))
                .collect(),
        });
    }
    let strings = arrow::compute::cast(array, &DataType::Utf8)
        .map_err(|e| DataFusionError::Execution(format!("{what} must be a string column: {e}")))?;
    let strings = strings.as_string::<i32>();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut values = Vec::new();
    let keys = strings
        .iter()
        .map(|s| {
            let s = s.unwrap_or_default();
            *index.entry(s).or_insert_with(|| {
                values.push(Arc::from(s));
                values.len() - 1
            })
        })
        .collect();
    Ok(StringKeys { keys, values })
}

/// Values summed by stack-trace id, per (source, service) partition.
#[derive(Debug, Default)]
pub struct DenseStacks {
    pub partitions: Vec<(Arc<str>, Arc<str>, Vec<i64>)>,
    slot_of: HashMap<(Arc<str>, Arc<str>), usize>,
    pub rows: u64,
}

impl DenseStacks {
    /// Adds one batch of `[source, service, stacktrace_id, value]`.
    pub fn add(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let [source, service, stacktrace, value] = columns else {
            return exec_err!("expected (source, service_name, stacktrace_id, value) arguments");
        };
        let sources = string_keys(source, "source")?;
        let services = string_keys(service, "service_name")?;
        let stacks = arrow::compute::cast(stacktrace, &DataType::UInt32)?;
        let stacks = stacks.as_primitive::<UInt32Type>();
        let values = arrow::compute::cast(value, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        // The slot of each (source, service) pair of this batch, found once per pair: a dense
        // table over the two dictionaries' keys, so rows cost two array lookups, no hashing.
        let width = services.values.len();
        let mut batch_slots: Vec<usize> = vec![usize::MAX; sources.values.len() * width];
        let (stack_ids, row_values) = (stacks.values(), values.values());
        let nulls = stacks.null_count() + values.null_count() > 0;
        for row in 0..stack_ids.len() {
            if nulls && (stacks.is_null(row) || values.is_null(row)) {
                continue;
            }
            let key = sources.keys[row] * width + services.keys[row];
            let mut slot = batch_slots[key];
            if slot == usize::MAX {
                let pair = (
                    Arc::clone(&sources.values[sources.keys[row]]),
                    Arc::clone(&services.values[services.keys[row]]),
                );
                slot = *self.slot_of.entry(pair.clone()).or_insert_with(|| {
                    self.partitions.push((pair.0, pair.1, Vec::new()));
                    self.partitions.len() - 1
                });
                batch_slots[key] = slot;
            }
            let dense = &mut self.partitions[slot].2;
            let id = stack_ids[row] as usize;
            if id >= dense.len() {
                dense.resize(id + 1, 0);
            }
            dense[id] += row_values[row];
        }
        self.rows += stack_ids.len() as u64;
        Ok(())
    }

    pub fn take(&mut self) -> Vec<(Arc<str>, Arc<str>, Vec<i64>)> {
        self.slot_of.clear();
        std::mem::take(&mut self.partitions)
    }

    pub fn size(&self) -> usize {
        self.partitions
            .iter()
            .map(|(_, _, d)| d.capacity() * 8 + 64)
            .sum()
    }
}
