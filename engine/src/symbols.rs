//! Symbols of one partition (tenant, service_name): strings, mappings, functions, locations and
//! the stack-trace tree, each deduplicated, so a stack pushed a thousand times is stored once.
//!
//! Ids are positions in append-only tables: an id handed out stays valid for the life of the
//! partition, which lets readers snapshot a table by its length.

use std::hash::Hash;
use std::sync::Arc;

use hearth_proto::pprof::{Profile, Sample};
use rustc_hash::FxHashMap;

use crate::pprof::{self, PprofIndex};

/// Pyroscope's defaults: deeper stacks keep their root-side frames; longer symbols keep their
/// tail. Neither rejects a profile.
pub const MAX_STACK_DEPTH: usize = 1000;
pub const MAX_SYMBOL_LEN: usize = 65535;

/// A stack-trace id: the index of the leaf node in the partition's stack-trace tree.
/// Id 0 is the root, the empty stack.
pub type StacktraceId = u32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: u32,
    pub build_id: u32,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Function {
    pub name: u32,
    pub system_name: u32,
    pub filename: u32,
    pub start_line: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Line {
    pub function: u32,
    pub line: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub mapping: Option<u32>,
    pub address: u64,
    /// Innermost (inlined) first, caller last, as in pprof.
    pub lines: Box<[Line]>,
}

/// An append-only table that hands out one id per distinct value.
#[derive(Debug)]
pub struct Interned<T> {
    items: Vec<T>,
    index: FxHashMap<T, u32>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            items: Vec::new(),
            index: FxHashMap::default(),
        }
    }
}

impl<T: Hash + Eq + Clone> Interned<T> {
    pub fn intern(&mut self, value: T) -> u32 {
        if let Some(&id) = self.index.get(&value) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(value.clone());
        self.index.insert(value, id);
        id
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn get(&self, id: u32) -> Option<&T> {
        self.items.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The stack-trace tree: nodes with parent pointers; a stack is the path from a leaf to the root.
#[derive(Debug)]
pub struct StacktraceTree {
    parents: Vec<u32>,
    locations: Vec<u32>,
    children: FxHashMap<(u32, u32), u32>,
}

impl Default for StacktraceTree {
    fn default() -> Self {
        StacktraceTree {
            parents: vec![0],
            locations: vec![u32::MAX],
            children: FxHashMap::default(),
        }
    }
}

impl StacktraceTree {
    /// Inserts a stack given root first; returns the leaf's id.
    pub fn insert(&mut self, root_first: impl Iterator<Item = u32>) -> StacktraceId {
        let mut node = 0u32;
        for location in root_first {
            let next_id = self.parents.len() as u32;
            node = *self.children.entry((node, location)).or_insert_with(|| {
                self.parents.push(node);
                self.locations.push(location);
                next_id
            });
        }
        node
    }

    /// Rebuilds a tree from its nodes (node 0 the root; every parent before its children).
    pub fn from_nodes(parents: Vec<u32>, locations: Vec<u32>) -> Self {
        let mut children = FxHashMap::default();
        children.reserve(parents.len());
        for node in 1..parents.len() {
            children.insert((parents[node], locations[node]), node as u32);
        }
        StacktraceTree {
            parents,
            locations,
            children,
        }
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parents.len() <= 1
    }

    pub fn parents(&self) -> &[u32] {
        &self.parents
    }

    /// The location of every node; the root's is `u32::MAX`.
    pub fn locations(&self) -> &[u32] {
        &self.locations
    }

    /// The stack of `id`, leaf first.
    pub fn resolve(&self, mut id: StacktraceId, out: &mut Vec<u32>) {
        out.clear();
        while id != 0 {
            out.push(self.locations[id as usize]);
            id = self.parents[id as usize];
        }
    }
}

/// All symbols of one partition. String 0 is the empty string.
#[derive(Debug)]
pub struct SymbolPartition {
    /// Bytes of all distinct strings, kept as they are interned.
    string_bytes: usize,
    pub strings: Interned<Arc<str>>,
    pub mappings: Interned<Mapping>,
    pub functions: Interned<Function>,
    pub locations: Interned<Location>,
    pub stacktraces: StacktraceTree,
}

impl Default for SymbolPartition {
    fn default() -> Self {
        SymbolPartition::new()
    }
}

impl SymbolPartition {
    pub fn new() -> Self {
        let mut partition = SymbolPartition {
            string_bytes: 0,
            strings: Interned::default(),
            mappings: Interned::default(),
            functions: Interned::default(),
            locations: Interned::default(),
            stacktraces: StacktraceTree::default(),
        };
        partition.strings.intern(Arc::from(""));
        partition
    }

    /// Interns a string, keeping the byte count.
    pub fn intern_string(&mut self, value: &str) -> u32 {
        let known = self.strings.len();
        let id = self.strings.intern(Arc::from(value));
        if self.strings.len() > known {
            self.string_bytes += value.len();
        }
        id
    }

    pub fn string(&self, id: u32) -> &str {
        self.strings.get(id).map_or("", |s| s)
    }

    /// A rough count of the bytes this partition holds, for flush thresholds.
    pub fn estimated_bytes(&self) -> usize {
        self.string_bytes
            + self.strings.len() * 40
            + self.mappings.len() * 96
            + self.functions.len() * 64
            + self.locations.len() * 72
            + self.stacktraces.len() * 24
    }
}

/// Imports one pprof's symbols into a partition, lazily: only what its samples reach.
pub struct PprofImport<'a> {
    profile: &'a Profile,
    index: &'a PprofIndex,
    strings: Vec<u32>,
    functions: Vec<u32>,
    mappings: Vec<u32>,
    locations: Vec<u32>,
    stack: Vec<u32>,
}

const UNMAPPED: u32 = u32::MAX;

impl<'a> PprofImport<'a> {
    pub fn new(profile: &'a Profile, index: &'a PprofIndex) -> Self {
        PprofImport {
            profile,
            index,
            strings: vec![UNMAPPED; profile.string_table.len()],
            functions: vec![UNMAPPED; profile.function.len()],
            mappings: vec![UNMAPPED; profile.mapping.len()],
            locations: vec![UNMAPPED; profile.location.len()],
            stack: Vec::new(),
        }
    }

    /// The stack-trace id of a sample of this profile in `partition`.
    pub fn stacktrace(&mut self, partition: &mut SymbolPartition, sample: &Sample) -> StacktraceId {
        let ids = &sample.location_id;
        // Keep the root-side frames of a too-deep stack (index 0 is the leaf).
        let kept = &ids[ids.len().saturating_sub(MAX_STACK_DEPTH)..];
        self.stack.clear();
        for &id in kept.iter().rev() {
            let location = self.location(partition, self.index.location(id));
            self.stack.push(location);
        }
        partition.stacktraces.insert(self.stack.iter().copied())
    }

    fn location(&mut self, partition: &mut SymbolPartition, pos: usize) -> u32 {
        if self.locations[pos] != UNMAPPED {
            return self.locations[pos];
        }
        let loc = &self.profile.location[pos];
        let mapping = self
            .index
            .mapping(loc.mapping_id)
            .map(|m| self.mapping(partition, m));
        let lines = loc
            .line
            .iter()
            .map(|line| Line {
                function: self.function(partition, self.index.function(line.function_id)),
                line: line.line,
            })
            .collect();
        let id = partition.locations.intern(Location {
            mapping,
            address: loc.address,
            lines,
        });
        self.locations[pos] = id;
        id
    }

    fn function(&mut self, partition: &mut SymbolPartition, pos: usize) -> u32 {
        if self.functions[pos] != UNMAPPED {
            return self.functions[pos];
        }
        let f = &self.profile.function[pos];
        let function = Function {
            name: self.string(partition, f.name),
            system_name: self.string(partition, f.system_name),
            filename: self.string(partition, f.filename),
            start_line: f.start_line,
        };
        let id = partition.functions.intern(function);
        self.functions[pos] = id;
        id
    }

    fn mapping(&mut self, partition: &mut SymbolPartition, pos: usize) -> u32 {
        if self.mappings[pos] != UNMAPPED {
            return self.mappings[pos];
        }
        let m = &self.profile.mapping[pos];
        let mapping = Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.string(partition, m.filename),
            build_id: self.string(partition, m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        };
        let id = partition.mappings.intern(mapping);
        self.mappings[pos] = id;
        id
    }

    fn string(&mut self, partition: &mut SymbolPartition, index: i64) -> u32 {
        let pos = index as usize;
        if self.strings[pos] != UNMAPPED {
            return self.strings[pos];
        }
        let id = partition.intern_string(truncate_symbol(pprof::string(self.profile, index)));
        self.strings[pos] = id;
        id
    }
}

/// Keeps the last [`MAX_SYMBOL_LEN`] bytes of a symbol, starting on a character boundary.
fn truncate_symbol(s: &str) -> &str {
    if s.len() <= MAX_SYMBOL_LEN {
        return s;
    }
    let mut start = s.len() - MAX_SYMBOL_LEN;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_stack_is_stored_once() {
        let mut tree = StacktraceTree::default();
        let a = tree.insert([1, 2, 3].into_iter());
        let b = tree.insert([1, 2, 3].into_iter());
        let c = tree.insert([1, 2].into_iter());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(tree.len(), 4);
        let mut stack = Vec::new();
        tree.resolve(a, &mut stack);
        assert_eq!(stack, vec![3, 2, 1]);
        tree.resolve(0, &mut stack);
        assert!(stack.is_empty());
    }

    #[test]
    fn long_symbols_keep_their_tail_on_a_char_boundary() {
        let s = format!("é{}", "x".repeat(MAX_SYMBOL_LEN));
        let t = truncate_symbol(&s);
        assert_eq!(t.len(), MAX_SYMBOL_LEN);
        assert!(t.chars().all(|c| c == 'x'));
    }
}

mod batches;
pub use batches::symbol_batch;
