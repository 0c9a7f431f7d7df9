//! Flame graphs: the function tree stacks merge into, the `flamegraph` aggregate that builds it
//! from samples, and the renderings clients read (Pyroscope's `FlameGraph`, `tree` bytes and
//! `FlameGraphDiff`).

mod aggregate;
mod render;
mod resolve;
mod tree;

pub use aggregate::{FLAMEGRAPH_FUNCTION, FlamegraphAggregate};
pub use render::{OTHER, empty_flame_graph, flame_graph, flame_graph_diff, min_value, tree_bytes};
pub use resolve::{add_partition, unsymbolized_name};
pub use tree::{FunctionTree, NodeId, ROOT};
