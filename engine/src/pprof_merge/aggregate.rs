//! `pprof(source, service_name, stacktrace_id, value)`: samples merged into one pprof.
//!
//! Partial phase: dense sums per stack-trace id per symbol partition, turned into a profile
//! fragment (an encoded `Profile`). Final phase: fragments merged by content.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use hearth_proto::pprof::Profile;
use prost::Message;

use super::PprofBuilder;
use crate::stack_columns::DenseStacks;
use crate::symbol_set::SymbolSet;

pub const PPROF_FUNCTION: &str = "pprof";

#[derive(Debug)]
pub struct PprofAggregate {
    signature: Signature,
    symbols: Arc<SymbolSet>,
}

impl PartialEq for PprofAggregate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.symbols, &other.symbols)
    }
}

impl Eq for PprofAggregate {}

impl Hash for PprofAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.symbols) as usize).hash(state);
    }
}

impl PprofAggregate {
    pub fn udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
        AggregateUDF::new_from_impl(PprofAggregate {
            signature: Signature::any(4, Volatility::Immutable),
            symbols,
        })
    }
}

impl AggregateUDFImpl for PprofAggregate {
    fn name(&self) -> &str {
        PPROF_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PprofAccumulator {
            symbols: self.symbols.clone(),
            stacks: DenseStacks::default(),
            builder: PprofBuilder::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[profile]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

#[derive(Debug)]
struct PprofAccumulator {
    symbols: Arc<SymbolSet>,
    stacks: DenseStacks,
    builder: PprofBuilder,
}

impl PprofAccumulator {
    fn resolve(&mut self) -> Result<()> {
        for (source, service, values) in self.stacks.take() {
            let Some(partition) = self.symbols.get(&source, &service) else {
                return Err(DataFusionError::Execution(format!(
                    "no symbols loaded for service {service:?} of source {source}"
                )));
            };
            self.builder.add_partition(&partition.read(), &values);
        }
        Ok(())
    }
}

impl Accumulator for PprofAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.stacks.add(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.resolve()?;
        Ok(ScalarValue::Binary(Some(
            self.builder.build().encode_to_vec(),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.stacks.size() + self.builder.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            let fragment =
                Profile::decode(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
            self.builder
                .add_profile(&fragment)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
        Ok(())
    }
}
