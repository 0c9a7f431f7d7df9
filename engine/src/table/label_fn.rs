//! `label(labels, 'name')`: a label's value, or `''` when the series lacks it (the Prometheus
//! reading of a missing label). Label selectors translate to comparisons on this function, and
//! the providers recognise those comparisons to prune series in `scan()`.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub const LABEL_FUNCTION: &str = "label";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LabelFunction {
    signature: Signature,
}

impl LabelFunction {
    fn new() -> Self {
        LabelFunction {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

static LABEL_UDF: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(LabelFunction::new())));

/// The shared `label` function.
pub fn label_udf() -> Arc<ScalarUDF> {
    LABEL_UDF.clone()
}

impl ScalarUDFImpl for LabelFunction {
    fn name(&self) -> &str {
        LABEL_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [
                DataType::Map(..),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8,
            ] => Ok(DataType::Utf8),
            [DataType::Map(..), other] => {
                exec_err!("label(labels, name): name must be a string, not {other}")
            }
            [other, _] => {
                exec_err!("label(labels, name): labels must be the labels map, not {other}")
            }
            _ => exec_err!("label(labels, name) takes two arguments"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [labels, name] = &args.args[..] else {
            return exec_err!("label(labels, name) takes two arguments");
        };
        let name = match name {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(n))
                | ScalarValue::Utf8View(Some(n))
                | ScalarValue::LargeUtf8(Some(n)),
            ) => n.clone(),
            _ => return exec_err!("label(labels, name): name must be a constant string"),
        };
        let labels = labels.to_array(args.number_rows)?;
        let map = labels.as_map();
        let keys = map.keys().as_string::<i32>();
        let values = map.values().as_string::<i32>();
        let offsets = map.value_offsets();
        let mut out = StringBuilder::with_capacity(map.len(), map.len() * 8);
        for row in 0..map.len() {
            if map.is_null(row) {
                out.append_value("");
                continue;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let found = (start..end).find(|&i| keys.value(i) == name);
            match found {
                Some(i) if values.is_valid(i) => out.append_value(values.value(i)),
                _ => out.append_value(""),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
