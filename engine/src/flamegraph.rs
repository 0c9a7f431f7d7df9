//! Flame graphs: the function tree stacks merge into, and the `flamegraph` aggregate that builds
//! it from samples (a [`StackMerge`] state). The renderings clients read (Pyroscope's
//! `FlameGraph`, `tree` bytes and `FlameGraphDiff`) are the query layer's (`hearth_sql::render`).

mod resolve;
mod tree;

use std::sync::Arc;

use datafusion::logical_expr::AggregateUDF;

use hearth_proto::pprof::Profile;

use crate::pprof::PprofIndex;
use crate::stack_merge::{StackMerge, StackMergeAggregate};
use crate::symbol_set::SymbolSet;
use crate::symbols::{PprofImport, SymbolPartition};

/// `flamegraph(source, service_name, stacktrace_id, value)`: the encoded function tree of the
/// samples.
pub fn flamegraph_udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
    StackMergeAggregate::<FunctionTree>::udaf(symbols)
}

/// The function tree of a pprof profile's first value (a merged profile, as
/// `SelectMergeProfile` answers it), its frames named as queries name them.
pub fn tree_from_pprof(profile: &Profile) -> crate::Result<FunctionTree> {
    let index = PprofIndex::new(profile)?;
    let mut import = PprofImport::new(profile, &index);
    let mut partition = SymbolPartition::new();
    let mut values: Vec<i64> = Vec::new();
    for sample in &profile.sample {
        let stack = import.stacktrace(&mut partition, sample) as usize;
        if values.len() <= stack {
            values.resize(stack + 1, 0);
        }
        values[stack] += sample.value.first().copied().unwrap_or(0);
    }
    let mut tree = FunctionTree::new();
    add_partition(&mut tree, &partition, &values);
    Ok(tree)
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
