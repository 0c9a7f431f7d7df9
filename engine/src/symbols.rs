//! Symbols of one partition (tenant, service_name): strings, mappings, functions, locations and
//! the stack-trace tree, each deduplicated, so a stack pushed a thousand times is stored once.
//!
//! Ids are positions in append-only tables: an id handed out stays valid for the life of the
//! partition, which lets readers snapshot a table by its length.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;
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

/// An append-only table that hands out one id per distinct value. Each value is stored once;
/// the index holds ids only, and lookups can use a borrowed form of the value, so finding an
/// existing value allocates nothing.
#[derive(Debug)]
pub struct Interned<T> {
    items: Vec<T>,
    index: HashTable<u32>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            items: Vec::new(),
            index: HashTable::new(),
        }
    }
}

/// The hash every table here uses.
pub fn hash_of<Q: Hash + ?Sized>(value: &Q) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(value)
}

impl<T: Hash + Eq> Interned<T> {
    pub fn intern(&mut self, value: T) -> u32 {
        let hash = hash_of(&value);
        let Interned { items, index } = self;
        if let Some(&id) = index.find(hash, |&id| items[id as usize] == value) {
            return id;
        }
        Self::insert_new(items, index, hash, value)
    }

    fn insert_new(items: &mut Vec<T>, index: &mut HashTable<u32>, hash: u64, value: T) -> u32 {
        let id = items.len() as u32;
        items.push(value);
        debug_assert_eq!(
            hash_of(&items[id as usize]),
            hash,
            "a borrowed form hashes like its value"
        );
        index.insert_unique(hash, id, |&i| hash_of(&items[i as usize]));
        id
    }

    /// The id of the value `eq` accepts, whose hash is `hash`; `make` builds it when new.
    /// `hash` must equal the owned value's [`hash_of`].
    pub fn intern_with(
        &mut self,
        hash: u64,
        eq: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
    ) -> u32 {
        let Interned { items, index } = self;
        if let Some(&id) = index.find(hash, |&id| eq(&items[id as usize])) {
            return id;
        }
        Self::insert_new(items, index, hash, make())
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
/// Besides the (parent, location) → child index used to grow it, whole stacks are indexed by
/// the hash of their locations, so a stack seen before costs one lookup and a walk up its
/// parent pointers to confirm it, instead of one lookup per frame.
#[derive(Debug)]
pub struct StacktraceTree {
    parents: Vec<u32>,
    locations: Vec<u32>,
    children: FxHashMap<(u32, u32), u32>,
    stacks: HashTable<u32>,
}

impl Default for StacktraceTree {
    fn default() -> Self {
        StacktraceTree {
            parents: vec![0],
            locations: vec![u32::MAX],
            children: FxHashMap::default(),
            stacks: HashTable::new(),
        }
    }
}

impl StacktraceTree {
    /// Whether `leaf`'s path from the root is `root_first`.
    fn is_path(&self, leaf: u32, root_first: &[u32]) -> bool {
        let mut node = leaf;
        for &location in root_first.iter().rev() {
            if node == 0 || self.locations[node as usize] != location {
                return false;
            }
            node = self.parents[node as usize];
        }
        node == 0
    }

    /// Inserts a stack given root first; returns the leaf's id.
    pub fn insert(&mut self, root_first: &[u32]) -> StacktraceId {
        let hash = hash_of(root_first);
        if let Some(&leaf) = self
            .stacks
            .find(hash, |&leaf| self.is_path(leaf, root_first))
        {
            return leaf;
        }
        let mut node = 0u32;
        for &location in root_first {
            let next_id = self.parents.len() as u32;
            node = *self.children.entry((node, location)).or_insert_with(|| {
                self.parents.push(node);
                self.locations.push(location);
                next_id
            });
        }
        let (parents, locations) = (&self.parents, &self.locations);
        self.stacks.insert_unique(hash, node, |&leaf| {
            hash_of(&path_of(parents, locations, leaf))
        });
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
            stacks: HashTable::new(),
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

/// The locations of a leaf's path, root first (for rehashing the stack index).
fn path_of(parents: &[u32], locations: &[u32], leaf: u32) -> Vec<u32> {
    let mut path = Vec::new();
    let mut node = leaf;
    while node != 0 {
        path.push(locations[node as usize]);
        node = parents[node as usize];
    }
    path.reverse();
    path
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

    /// Interns a string, keeping the byte count; a known string allocates nothing.
    pub fn intern_string(&mut self, value: &str) -> u32 {
        let known = self.strings.len();
        let id = self
            .strings
            .intern_with(hash_of(value), |s| **s == *value, || Arc::from(value));
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
        // Per entry: the value, its index slot and the allocator's overhead; a tree node is
        // two u32s plus its (parent, location) index entry.
        self.string_bytes
            + self.strings.len() * 48
            + self.mappings.len() * 64
            + self.functions.len() * 40
            + self.locations.len() * 64
            + self.stacktraces.len() * 40
    }
}

/// Imports one pprof's symbols into a partition, lazily: only what its samples reach.
#[derive(Debug)]
pub struct PprofImport<'a> {
    profile: &'a Profile,
    index: &'a PprofIndex,
    strings: Vec<u32>,
    functions: Vec<u32>,
    mappings: Vec<u32>,
    locations: Vec<u32>,
    stack: Vec<u32>,
    /// Scratch space for a location's lines.
    lines: Vec<Line>,
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
            lines: Vec::new(),
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
        partition.stacktraces.insert(&self.stack)
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
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        for line in &loc.line {
            lines.push(Line {
                function: self.function(partition, self.index.function(line.function_id)),
                line: line.line,
            });
        }
        let address = loc.address;
        // Hashes like `Location`'s derived Hash: its fields in order.
        let hash = hash_of(&(mapping, address, &lines[..]));
        let id = partition.locations.intern_with(
            hash,
            |l| l.mapping == mapping && l.address == address && *l.lines == lines[..],
            || Location {
                mapping,
                address,
                lines: lines.as_slice().into(),
            },
        );
        self.lines = lines;
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
        let a = tree.insert(&[1, 2, 3]);
        let b = tree.insert(&[1, 2, 3]);
        let c = tree.insert(&[1, 2]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(tree.len(), 4);
        let mut stack = Vec::new();
        tree.resolve(a, &mut stack);
        assert_eq!(stack, vec![3, 2, 1]);
        tree.resolve(0, &mut stack);
        assert!(stack.is_empty());
        // A prefix of a known stack, and a stack that differs only at the root.
        assert_eq!(tree.insert(&[1, 2]), c);
        let d = tree.insert(&[9, 2, 3]);
        assert_ne!(d, a);
        tree.resolve(d, &mut stack);
        assert_eq!(stack, vec![3, 2, 9]);
    }

    #[test]
    fn interned_values_are_stored_once() {
        let mut table: Interned<String> = Interned::default();
        let a = table.intern("a".to_string());
        let b = table.intern("b".to_string());
        assert_eq!(table.intern("a".to_string()), a);
        let found = table.intern_with(hash_of("b"), |s| s == "b", || unreachable!("known"));
        assert_eq!(found, b);
        assert_eq!(table.len(), 2);
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
