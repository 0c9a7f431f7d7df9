//! The stack-merge aggregates share one shape: `f(source, service_name, stacktrace_id, value)`
//! sums values per stack-trace id in dense arrays (one per symbol partition), resolves them into
//! a mergeable state against the query's symbols, and merges encoded states in the final phase.
//! [`StackMergeAggregate`] is that shape; a [`StackMerge`] state says what is built:
//! a function tree for `flamegraph`, a pprof profile for `pprof`.

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use crate::stack_columns::DenseStacks;
use crate::symbol_set::SymbolSet;
use crate::symbols::SymbolPartition;

/// What a stack-merge aggregate builds.
pub trait StackMerge: Debug + Send + Sync + 'static {
    /// The SQL name of the aggregate.
    const NAME: &'static str;

    fn new() -> Self;
    /// Adds `values[stacktrace_id]` of one symbol partition.
    fn add_partition(&mut self, symbols: &SymbolPartition, values: &[i64]);
    /// The compact binary state (also the aggregate's result).
    fn encode(&self) -> Vec<u8>;
    /// Adds an encoded state from another partial aggregate.
    fn merge_encoded(&mut self, bytes: &[u8]) -> crate::Result<()>;
    /// Approximate heap bytes.
    fn size(&self) -> usize;
}

/// A stack-merge aggregate bound to the symbols of one query.
#[derive(Debug)]
pub struct StackMergeAggregate<M> {
    signature: Signature,
    symbols: Arc<SymbolSet>,
    state: PhantomData<fn() -> M>,
}

impl<M> PartialEq for StackMergeAggregate<M> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.symbols, &other.symbols)
    }
}

impl<M> Eq for StackMergeAggregate<M> {}

impl<M> Hash for StackMergeAggregate<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.symbols) as usize).hash(state);
    }
}

impl<M: StackMerge> StackMergeAggregate<M> {
    pub fn udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
        AggregateUDF::new_from_impl(StackMergeAggregate::<M> {
            signature: Signature::any(4, Volatility::Immutable),
            symbols,
            state: PhantomData,
        })
    }
}

impl<M: StackMerge> AggregateUDFImpl for StackMergeAggregate<M> {
    fn name(&self) -> &str {
        M::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(StackMergeAccumulator {
            symbols: Arc::clone(&self.symbols),
            stacks: DenseStacks::default(),
            merged: M::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[state]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

#[derive(Debug)]
struct StackMergeAccumulator<M> {
    symbols: Arc<SymbolSet>,
    stacks: DenseStacks,
    merged: M,
}

impl<M: StackMerge> StackMergeAccumulator<M> {
    /// Resolves the dense sums gathered so far into the merged state.
    fn resolve(&mut self) -> Result<()> {
        for (source, service, values) in self.stacks.take() {
            let found = self
                .symbols
                .get(&source, &service)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let Some(partition) = found else {
                return Err(DataFusionError::Execution(format!(
                    "no symbols loaded for service {service:?} of source {source}"
                )));
            };
            self.merged.add_partition(&partition.read(), &values);
        }
        Ok(())
    }
}

impl<M: StackMerge> Accumulator for StackMergeAccumulator<M> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.stacks.add(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.resolve()?;
        Ok(ScalarValue::Binary(Some(self.merged.encode())))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.stacks.size() + self.merged.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            self.merged
                .merge_encoded(bytes)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
        Ok(())
    }
}
