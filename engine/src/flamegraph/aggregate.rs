//! `flamegraph(source, service_name, stacktrace_id, value)`: a two-phase aggregate.
//!
//! The partial phase sums values per stack-trace id in dense arrays, one per symbol partition,
//! then resolves them into a [`FunctionTree`] whose compact binary encoding is the partial
//! state. The final phase merges trees by function name. The result is the encoded tree, which
//! [`super::flame_graph`] renders with `max_nodes`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::resolve::add_partition;
use super::tree::FunctionTree;
use crate::stack_columns::DenseStacks;
use crate::symbol_set::SymbolSet;

pub const FLAMEGRAPH_FUNCTION: &str = "flamegraph";

/// The aggregate, bound to the symbols of one query.
#[derive(Debug)]
pub struct FlamegraphAggregate {
    signature: Signature,
    symbols: Arc<SymbolSet>,
}

impl PartialEq for FlamegraphAggregate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.symbols, &other.symbols)
    }
}

impl Eq for FlamegraphAggregate {}

impl Hash for FlamegraphAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.symbols) as usize).hash(state);
    }
}

impl FlamegraphAggregate {
    pub fn udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
        AggregateUDF::new_from_impl(FlamegraphAggregate {
            signature: Signature::any(4, Volatility::Immutable),
            symbols,
        })
    }
}

impl AggregateUDFImpl for FlamegraphAggregate {
    fn name(&self) -> &str {
        FLAMEGRAPH_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FlamegraphAccumulator {
            symbols: self.symbols.clone(),
            stacks: DenseStacks::default(),
            tree: FunctionTree::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[tree]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

#[derive(Debug)]
struct FlamegraphAccumulator {
    symbols: Arc<SymbolSet>,
    stacks: DenseStacks,
    tree: FunctionTree,
}

impl FlamegraphAccumulator {
    /// Resolves the dense sums gathered so far into the tree.
    fn resolve(&mut self) -> Result<()> {
        for (source, service, values) in self.stacks.take() {
            let Some(partition) = self.symbols.get(&source, &service) else {
                return Err(DataFusionError::Execution(format!(
                    "no symbols loaded for service {service:?} of source {source}"
                )));
            };
            add_partition(&mut self.tree, &partition.read(), &values);
        }
        Ok(())
    }
}

impl Accumulator for FlamegraphAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.stacks.add(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.resolve()?;
        Ok(ScalarValue::Binary(Some(self.tree.encode())))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.stacks.size() + self.tree.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let trees = states[0].as_binary::<i32>();
        for bytes in trees.iter().flatten() {
            let other =
                FunctionTree::decode(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
            self.tree.merge(&other);
        }
        Ok(())
    }
}
