//! The function tree: stacks merged by function name, the state a flame graph is built from.
//!
//! Node 0 is the root. Nodes are appended after their parent, so iterating in id order visits
//! parents first. The binary encoding is the partial state of the `flamegraph` aggregate: it
//! is what crosses partitions (and, in a cluster, the network).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// A node id in a [`FunctionTree`].
pub type NodeId = u32;

pub const ROOT: NodeId = 0;

#[derive(Debug, Clone, Default)]
pub struct FunctionTree {
    names: Vec<Arc<str>>,
    name_index: FxHashMap<Arc<str>, u32>,
    /// Per node: parent, name index, self value. The root's name is unused.
    parents: Vec<NodeId>,
    name_ids: Vec<u32>,
    selfs: Vec<i64>,
    children: FxHashMap<(NodeId, u32), NodeId>,
}

impl FunctionTree {
    pub fn new() -> Self {
        FunctionTree {
            parents: vec![ROOT],
            name_ids: vec![u32::MAX],
            selfs: vec![0],
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether the tree holds no value at all.
    pub fn is_empty(&self) -> bool {
        self.selfs.iter().all(|&v| v == 0)
    }

    pub fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.name_index.insert(name, id);
        id
    }

    /// The child of `parent` named by `name_id`, created if missing.
    pub fn child(&mut self, parent: NodeId, name_id: u32) -> NodeId {
        let next = self.parents.len() as NodeId;
        *self.children.entry((parent, name_id)).or_insert_with(|| {
            self.parents.push(parent);
            self.name_ids.push(name_id);
            self.selfs.push(0);
            next
        })
    }

    pub fn add_self(&mut self, node: NodeId, value: i64) {
        self.selfs[node as usize] += value;
    }

    /// Adds `value` at the end of a root-first path of names.
    pub fn insert_stack<'a>(&mut self, root_first: impl IntoIterator<Item = &'a str>, value: i64) {
        let mut node = ROOT;
        for name in root_first {
            let id = self.name_id(name);
            node = self.child(node, id);
        }
        self.add_self(node, value);
    }

    pub fn parent(&self, node: NodeId) -> NodeId {
        self.parents[node as usize]
    }

    pub fn name(&self, node: NodeId) -> &str {
        match self.name_ids[node as usize] {
            u32::MAX => "",
            id => &self.names[id as usize],
        }
    }

    pub fn self_value(&self, node: NodeId) -> i64 {
        self.selfs[node as usize]
    }

    /// Totals (self plus descendants) of every node.
    pub fn totals(&self) -> Vec<i64> {
        let mut totals = self.selfs.clone();
        for node in (1..self.len()).rev() {
            let parent = self.parents[node] as usize;
            totals[parent] += totals[node];
        }
        totals
    }

    /// Children of every node, sorted by name.
    pub fn sorted_children(&self) -> Vec<Vec<NodeId>> {
        let mut children = vec![Vec::new(); self.len()];
        for node in 1..self.len() {
            children[self.parents[node] as usize].push(node as NodeId);
        }
        for list in &mut children {
            list.sort_by(|a, b| self.name(*a).cmp(self.name(*b)));
        }
        children
    }

    /// Adds every stack of `other` into this tree.
    pub fn merge(&mut self, other: &FunctionTree) {
        let names: Vec<u32> = other.names.iter().map(|n| self.name_id(n)).collect();
        let mut mapped = vec![ROOT; other.len()];
        for node in 1..other.len() {
            let parent = mapped[other.parents[node] as usize];
            let child = self.child(parent, names[other.name_ids[node] as usize]);
            mapped[node] = child;
            self.selfs[child as usize] += other.selfs[node];
        }
        self.selfs[0] += other.selfs[0];
    }

    /// The compact binary form: varints throughout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.len() * 6);
        put_varint(&mut out, self.names.len() as u64);
        for name in &self.names {
            put_varint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
        }
        put_varint(&mut out, self.len() as u64);
        put_varint(&mut out, zigzag(self.selfs[0]));
        for node in 1..self.len() {
            put_varint(&mut out, self.parents[node] as u64);
            put_varint(&mut out, self.name_ids[node] as u64);
            put_varint(&mut out, zigzag(self.selfs[node]));
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |what: &str| Error::corrupt("function tree", what);
        let mut input = bytes;
        let mut tree = FunctionTree::new();
        let names = get_varint(&mut input).ok_or_else(|| corrupt("name count"))?;
        for _ in 0..names {
            let len = get_varint(&mut input).ok_or_else(|| corrupt("name length"))? as usize;
            if input.len() < len {
                return Err(corrupt("name bytes"));
            }
            let name = std::str::from_utf8(&input[..len]).map_err(|_| corrupt("name utf-8"))?;
            tree.name_id(name);
            input = &input[len..];
        }
        let nodes = get_varint(&mut input).ok_or_else(|| corrupt("node count"))? as usize;
        tree.selfs[0] = unzigzag(get_varint(&mut input).ok_or_else(|| corrupt("root value"))?);
        for node in 1..nodes {
            let parent = get_varint(&mut input).ok_or_else(|| corrupt("parent"))? as usize;
            let name = get_varint(&mut input).ok_or_else(|| corrupt("name"))? as u32;
            let value = unzigzag(get_varint(&mut input).ok_or_else(|| corrupt("value"))?);
            if parent >= node || name as usize >= tree.names.len() {
                return Err(corrupt("node reference"));
            }
            let id = tree.child(parent as NodeId, name);
            if id as usize != node {
                return Err(corrupt("repeated node"));
            }
            tree.selfs[node] = value;
        }
        if !input.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(tree)
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn size(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len() + 48).sum();
        names + self.len() * (4 + 4 + 8 + 24)
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_round_trip() {
        let mut a = FunctionTree::new();
        a.insert_stack(["main", "work", "hash"], 5);
        a.insert_stack(["main", "work"], 2);
        let mut b = FunctionTree::new();
        b.insert_stack(["main", "idle"], 3);
        b.insert_stack(["main", "work", "hash"], -1);
        a.merge(&b);
        let mut decoded = FunctionTree::decode(&a.encode()).unwrap();
        let totals = decoded.totals();
        assert_eq!(totals[0], 9);
        let main_name = decoded.name_index["main"];
        let main = decoded.child(ROOT, main_name);
        assert_eq!(totals[main as usize], 9);
        assert!(FunctionTree::decode(&a.encode()[..5]).is_err());
    }
}
