//! Flame graphs: the function tree stacks merge into, and the `flamegraph` aggregate that builds
//! it from samples (a [`StackMerge`] state). The renderings clients read (Pyroscope's
//! `FlameGraph`, `tree` bytes and `FlameGraphDiff`) are the query layer's (`hearth_sql::render`).

mod resolve;
mod tree;

use std::sync::Arc;

use datafusion::logical_expr::AggregateUDF;

use crate::stack_merge::{StackMerge, StackMergeAggregate};
use crate::symbol_set::SymbolSet;
use crate::symbols::SymbolPartition;

/// `flamegraph(source, service_name, stacktrace_id, value)`: the encoded function tree of the
/// samples.
pub fn flamegraph_udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
    StackMergeAggregate::<FunctionTree>::udaf(symbols)
}

impl StackMerge for FunctionTree {
    const NAME: &'static str = "flamegraph";

    fn new() -> Self {
        FunctionTree::new()
    }

    fn add_partition(&mut self, symbols: &SymbolPartition, values: &[i64]) {
        add_partition(self, symbols, values);
    }

    fn encode(&self) -> Vec<u8> {
        FunctionTree::encode(self)
    }

    fn merge_encoded(&mut self, bytes: &[u8]) -> crate::Result<()> {
        self.merge(&FunctionTree::decode(bytes)?);
        Ok(())
    }

    fn size(&self) -> usize {
        FunctionTree::size(self)
    }
}
pub use resolve::{add_partition, stack_frames, unsymbolized_name};
pub use tree::{FunctionTree, NodeId, ROOT, put_varint};
