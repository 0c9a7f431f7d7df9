//! Resolving stack-trace ids of one symbol partition into a function tree.
//!
//! The stack-trace tree stores parents before children, so one pass in id order maps every
//! needed node to its function-tree node: a location expands to one frame per line (the caller
//! of inlined frames first), and a location without lines becomes one frame named after its
//! mapping and address.

use super::tree::{FunctionTree, NodeId, ROOT};
use crate::symbols::SymbolPartition;

const UNSET: NodeId = NodeId::MAX;

/// The frame name of a location without line information: `<mapping file> 0x<address>`.
pub fn unsymbolized_name(symbols: &SymbolPartition, location: u32) -> String {
    let Some(loc) = symbols.locations.get(location) else {
        return "unknown".to_string();
    };
    let file = loc
        .mapping
        .and_then(|m| symbols.mappings.get(m))
        .map(|m| symbols.string(m.filename))
        .filter(|f| !f.is_empty())
        .map(|f| f.rsplit('/').next().unwrap_or(f));
    match file {
        Some(file) => format!("{file} 0x{:x}", loc.address),
        None => format!("0x{:x}", loc.address),
    }
}

/// The frame names of a stack, root first: each location's lines caller first.
pub fn stack_frames(symbols: &SymbolPartition, stacktrace: u32, out: &mut Vec<String>) {
    let mut locations = Vec::new();
    symbols.stacktraces.resolve(stacktrace, &mut locations);
    out.clear();
    for &location in locations.iter().rev() {
        match symbols.locations.get(location) {
            Some(loc) if !loc.lines.is_empty() => {
                for line in loc.lines.iter().rev() {
                    out.push(function_name(symbols, line.function).to_string());
                }
            }
            _ => out.push(unsymbolized_name(symbols, location)),
        }
    }
}

fn function_name(symbols: &SymbolPartition, function: u32) -> &str {
    symbols
        .functions
        .get(function)
        .map_or("unknown", |f| symbols.string(f.name))
}

/// Adds `values[stacktrace_id]` of one partition into `tree`.
pub fn add_partition(tree: &mut FunctionTree, symbols: &SymbolPartition, values: &[i64]) {
    let stacks = &symbols.stacktraces;
    let n = values.len().min(stacks.len());
    if n == 0 {
        return;
    }
    // Mark every ancestor of a node with a value.
    let parents = stacks.parents();
    let mut mapped = vec![UNSET; n];
    mapped[0] = ROOT;
    let mut needed = vec![false; n];
    needed[0] = true;
    for (leaf, &value) in values.iter().enumerate().take(n).skip(1) {
        if value == 0 {
            continue;
        }
        let mut node = leaf;
        while !needed[node] {
            needed[node] = true;
            node = parents[node] as usize;
        }
    }
    // Map needed nodes parent-first; cache each function's name id.
    let mut function_names: Vec<u32> = vec![u32::MAX; symbols.functions.len()];
    let locations = stacks.locations();
    for node in 1..n {
        if !needed[node] {
            continue;
        }
        let mut current = mapped[parents[node] as usize];
        debug_assert_ne!(current, UNSET, "parents come before children");
        let location = locations[node];
        match symbols.locations.get(location) {
            Some(loc) if !loc.lines.is_empty() => {
                for line in loc.lines.iter().rev() {
                    let cached = &mut function_names[line.function as usize];
                    if *cached == u32::MAX {
                        *cached = tree.name_id(function_name(symbols, line.function));
                    }
                    current = tree.child(current, *cached);
                }
            }
            _ => {
                let name = tree.name_id(&unsymbolized_name(symbols, location));
                current = tree.child(current, name);
            }
        }
        mapped[node] = current;
    }
    for (node, &value) in values.iter().enumerate().take(n) {
        if value != 0 {
            tree.add_self(mapped[node], value);
        }
    }
}
