//! `stack_frames(source, service_name, stacktrace_id)`: a stack's frames as a list, root first.
//! Stack-trace ids are local to a (source, service) symbol partition, hence three arguments.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, UInt32Type};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use hearth_engine::flamegraph::stack_frames;
use hearth_engine::stack_columns::string_keys;
use hearth_engine::symbol_set::SymbolSet;

#[derive(Debug)]
pub struct StackFrames {
    signature: Signature,
    symbols: Arc<SymbolSet>,
}

impl PartialEq for StackFrames {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.symbols, &other.symbols)
    }
}

impl Eq for StackFrames {}

impl Hash for StackFrames {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.symbols) as usize).hash(state);
    }
}

pub fn stack_frames_udf(symbols: Arc<SymbolSet>) -> ScalarUDF {
    ScalarUDF::new_from_impl(StackFrames {
        signature: Signature::any(3, Volatility::Stable),
        symbols,
    })
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl ScalarUDFImpl for StackFrames {
    fn name(&self) -> &str {
        "stack_frames"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let [source, service, stack] = &columns[..] else {
            return exec_err!(
                "stack_frames(source, service_name, stacktrace_id) takes three arguments"
            );
        };
        let sources = string_keys(source, "source")?;
        let services = string_keys(service, "service_name")?;
        let stacks = arrow::compute::cast(stack, &DataType::UInt32)?;
        let stacks = stacks.as_primitive::<UInt32Type>();
        let mut out = ListBuilder::new(StringBuilder::new());
        let mut frames = Vec::new();
        for row in 0..rows {
            if stacks.is_null(row) {
                out.append_null();
                continue;
            }
            let (source, service) = (
                &sources.values[sources.keys[row]],
                &services.values[services.keys[row]],
            );
            let partition = self
                .symbols
                .get(source, service)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let Some(partition) = partition else {
                out.append_null();
                continue;
            };
            stack_frames(&partition.read(), stacks.value(row), &mut frames);
            for frame in &frames {
                out.values().append_value(frame);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
