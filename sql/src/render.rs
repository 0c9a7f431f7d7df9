//! From a function tree to what clients read: Pyroscope's `FlameGraph` (4-tuples per node,
//! delta-encoded x offsets), the `tree` bytes format, the two-sided `FlameGraphDiff`, and the
//! pictures and text people export: collapsed stacks and an SVG flame graph (drawn by `inferno`).
//!
//! Truncation follows Pyroscope: with more than `max_nodes` nodes, the threshold is the total of
//! the `max_nodes`-th largest node; children below it (and any node already named `other`) are
//! folded into one `other` child placed after the kept ones. `max_nodes <= 0` keeps everything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hearth_proto::querier::v1::{FlameGraph, FlameGraphDiff, Level};
use rustc_hash::FxHashMap;

use hearth_engine::flamegraph::{FunctionTree, NodeId, ROOT, put_varint};

pub const OTHER: &str = "other";
pub const TOTAL: &str = "total";

/// The total a node needs to be shown: the `max_nodes`-th largest total, or 0.
pub fn min_value(totals: &[i64], max_nodes: i64) -> i64 {
    let shown = totals.len().saturating_sub(1) as i64; // the root is not a node
    if max_nodes < 1 || shown <= max_nodes {
        return 0;
    }
    let mut heap: BinaryHeap<Reverse<i64>> = BinaryHeap::with_capacity(max_nodes as usize + 1);
    for &total in &totals[1..] {
        if heap.len() < max_nodes as usize {
            heap.push(Reverse(total));
        } else if heap.peek().is_some_and(|Reverse(min)| total > *min) {
            heap.pop();
            heap.push(Reverse(total));
        }
    }
    heap.peek().map_or(0, |Reverse(min)| *min)
}

/// One node to lay out: a tree node, or an `other` made of folded children.
#[derive(Clone, Copy)]
enum Item {
    Node(NodeId),
    Other { total: i64 },
}

/// Lays a tree out for a flame graph: for every visible node, in left-to-right pre-order, its
/// level, absolute x, total, self and name.
struct Layout {
    nodes: Vec<(usize, i64, i64, i64, String)>,
}

fn layout(tree: &FunctionTree, totals: &[i64], max_nodes: i64) -> Layout {
    let min = min_value(totals, max_nodes);
    let children = tree.sorted_children();
    let root_total = totals[0] - tree.self_value(ROOT);
    let mut out = Vec::new();
    let mut stack: Vec<(Item, usize, i64)> = vec![(Item::Node(ROOT), 0, 0)];
    while let Some((item, level, x)) = stack.pop() {
        let node = match item {
            Item::Other { total } => {
                out.push((level, x, total, total, OTHER.to_string()));
                continue;
            }
            Item::Node(node) => node,
        };
        let (total, self_value, name) = if node == ROOT {
            (root_total, 0, TOTAL.to_string())
        } else {
            (
                totals[node as usize],
                tree.self_value(node),
                tree.name(node).to_string(),
            )
        };
        out.push((level, x, total, self_value, name));
        let mut next_x = x + self_value;
        let mut pending = Vec::new();
        let mut other = 0i64;
        for &child in &children[node as usize] {
            let child_total = totals[child as usize];
            if child_total >= min && tree.name(child) != OTHER {
                pending.push((Item::Node(child), level + 1, next_x));
                next_x += child_total;
            } else {
                other += child_total;
            }
        }
        if other != 0 {
            pending.push((Item::Other { total: other }, level + 1, next_x));
        }
        stack.extend(pending.into_iter().rev());
    }
    Layout { nodes: out }
}

/// Collects nodes level by level, each `values ++ [name index]`, naming each name once.
#[derive(Default)]
struct Levels {
    names: Vec<String>,
    name_index: FxHashMap<String, i64>,
    levels: Vec<Vec<i64>>,
}

impl Levels {
    fn push(&mut self, level: usize, name: String, values: &[i64]) {
        let next = self.names.len() as i64;
        let index = *self.name_index.entry(name.clone()).or_insert_with(|| {
            self.names.push(name);
            next
        });
        if self.levels.len() <= level {
            self.levels.resize(level + 1, Vec::new());
        }
        self.levels[level].extend_from_slice(values);
        self.levels[level].push(index);
    }

    /// Names and levels with x offsets (the fields `x_fields` of each node) delta-encoded.
    fn finish(mut self, stride: usize, x_fields: &[usize]) -> (Vec<String>, Vec<Level>) {
        delta_encode(&mut self.levels, stride, x_fields);
        let levels = self
            .levels
            .into_iter()
            .map(|values| Level { values })
            .collect();
        (self.names, levels)
    }
}

fn delta_encode(levels: &mut [Vec<i64>], stride: usize, x_fields: &[usize]) {
    for level in levels {
        for &field in x_fields {
            let mut prev_end = 0i64;
            for i in (0..level.len()).step_by(stride) {
                let x = level[i + field];
                let total = level[i + field + 1];
                level[i + field] = x - prev_end;
                prev_end = x + total;
            }
        }
    }
}

/// Pyroscope's `FlameGraph` of a tree.
pub fn flame_graph(tree: &FunctionTree, max_nodes: i64) -> FlameGraph {
    let totals = tree.totals();
    let layout = layout(tree, &totals, max_nodes);
    let mut levels = Levels::default();
    let mut max_self = 0;
    let mut total = 0;
    for (level, x, node_total, self_value, name) in layout.nodes {
        if level == 0 {
            total = node_total;
        }
        max_self = max_self.max(self_value);
        levels.push(level, name, &[x, node_total, self_value]);
    }
    let (names, levels) = levels.finish(4, &[0]);
    FlameGraph {
        names,
        levels,
        total,
        max_self,
    }
}

/// One visible node of a flame graph, in pre-order.
#[derive(Debug, Clone, PartialEq)]
pub struct FlameNode {
    /// Position in pre-order; the root (`total`) is 0.
    pub id: u32,
    pub parent: Option<u32>,
    pub depth: u32,
    pub name: String,
    pub self_value: i64,
    pub total: i64,
    pub children: u32,
}

/// The nodes a flame graph with `max_nodes` shows, in pre-order, with parents.
pub fn flame_nodes(tree: &FunctionTree, max_nodes: i64) -> Vec<FlameNode> {
    let totals = tree.totals();
    let layout = layout(tree, &totals, max_nodes);
    let mut nodes: Vec<FlameNode> = Vec::with_capacity(layout.nodes.len());
    let mut open: Vec<u32> = Vec::new();
    for (i, (level, _, total, self_value, name)) in layout.nodes.into_iter().enumerate() {
        open.truncate(level);
        let parent = open.last().copied();
        if let Some(p) = parent {
            nodes[p as usize].children += 1;
        }
        open.push(i as u32);
        nodes.push(FlameNode {
            id: i as u32,
            parent,
            depth: level as u32,
            name,
            self_value,
            total,
            children: 0,
        });
    }
    nodes
}

/// The `tree` bytes format: pre-order from a virtual root with an empty name, each node as
/// `uvarint(len(name)) name uvarint(self) uvarint(children)`.
pub fn tree_bytes(tree: &FunctionTree, max_nodes: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for node in flame_nodes(tree, max_nodes) {
        let name = if node.depth == 0 {
            ""
        } else {
            node.name.as_str()
        };
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(&mut out, node.self_value.max(0) as u64);
        put_varint(&mut out, node.children as u64);
    }
    out
}

/// Self and total per function name, largest self first. A function's total counts each stack
/// once, however often the function recurses in it.
pub fn function_totals(tree: &FunctionTree) -> Vec<(String, i64, i64)> {
    let totals = tree.totals();
    let mut by_name: FxHashMap<&str, (i64, i64)> = FxHashMap::default();
    // Whether a node's name already appears among its ancestors.
    let mut nested = vec![false; tree.len()];
    for node in 1..tree.len() {
        let id = node as NodeId;
        let name = tree.name(id);
        let mut ancestor = tree.parent(id);
        while ancestor != ROOT {
            if tree.name(ancestor) == name {
                nested[node] = true;
                break;
            }
            ancestor = tree.parent(ancestor);
        }
        let entry = by_name.entry(name).or_default();
        entry.0 += tree.self_value(id);
        if !nested[node] {
            entry.1 += totals[node];
        }
    }
    let mut out: Vec<(String, i64, i64)> = by_name
        .into_iter()
        .map(|(name, (self_value, total))| (name.to_string(), self_value, total))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    out
}

/// Two trees side by side: `FlameGraphDiff` with 7-tuples
/// `[left x, left total, left self, right x, right total, right self, name]`.
pub fn flame_graph_diff(
    left: &FunctionTree,
    right: &FunctionTree,
    max_nodes: i64,
) -> FlameGraphDiff {
    // One tree of names holding both sides: left selfs in `combined`, right selfs beside it.
    let mut combined = FunctionTree::new();
    combined.merge(left);
    let mut map_right = vec![ROOT; right.len()];
    let mut right_self: FxHashMap<NodeId, i64> = FxHashMap::default();
    for node in 1..right.len() {
        let parent = map_right[right.parent(node as NodeId) as usize];
        let name = combined.name_id(right.name(node as NodeId));
        let mapped = combined.child(parent, name);
        map_right[node] = mapped;
        *right_self.entry(mapped).or_default() += right.self_value(node as NodeId);
    }
    let n = combined.len();
    let mut right_selfs = vec![0i64; n];
    for (node, value) in right_self {
        right_selfs[node as usize] = value;
    }
    let left_selfs: Vec<i64> = (0..n).map(|i| combined.self_value(i as NodeId)).collect();
    let parents: Vec<NodeId> = (0..n).map(|i| combined.parent(i as NodeId)).collect();
    let sum_up = |selfs: &[i64]| {
        let mut totals = selfs.to_vec();
        for node in (1..n).rev() {
            totals[parents[node] as usize] += totals[node];
        }
        totals
    };
    let mut left_totals = sum_up(&left_selfs);
    let mut right_totals = sum_up(&right_selfs);
    left_totals[0] -= left_selfs[0];
    right_totals[0] -= right_selfs[0];
    let both: Vec<i64> = left_totals
        .iter()
        .zip(&right_totals)
        .map(|(l, r)| l + r)
        .collect();
    let min = min_value(&both, max_nodes);
    let children = combined.sorted_children();

    let mut levels = Levels::default();
    let mut max_self = 0i64;
    // (node or folded other, level, left x, right x); an `other` carries its four values.
    enum DiffItem {
        Node(NodeId),
        Other { left: i64, right: i64 },
    }
    let mut stack = vec![(DiffItem::Node(ROOT), 0usize, 0i64, 0i64)];
    while let Some((item, level, lx, rx)) = stack.pop() {
        let (lt, ls, rt, rs, name, node) = match item {
            DiffItem::Other { left, right } => (left, left, right, right, OTHER.to_string(), None),
            DiffItem::Node(ROOT) => (
                left_totals[0],
                0,
                right_totals[0],
                0,
                TOTAL.to_string(),
                Some(ROOT),
            ),
            DiffItem::Node(node) => {
                let i = node as usize;
                (
                    left_totals[i],
                    left_selfs[i],
                    right_totals[i],
                    right_selfs[i],
                    combined.name(node).to_string(),
                    Some(node),
                )
            }
        };
        max_self = max_self.max(ls).max(rs);
        levels.push(level, name, &[lx, lt, ls, rx, rt, rs]);
        let Some(node) = node else { continue };
        let (mut nlx, mut nrx) = (lx + ls, rx + rs);
        let mut pending = Vec::new();
        let (mut other_left, mut other_right) = (0i64, 0i64);
        for &child in &children[node as usize] {
            let i = child as usize;
            if both[i] >= min && combined.name(child) != OTHER {
                pending.push((DiffItem::Node(child), level + 1, nlx, nrx));
                nlx += left_totals[i];
                nrx += right_totals[i];
            } else {
                other_left += left_totals[i];
                other_right += right_totals[i];
            }
        }
        if other_left != 0 || other_right != 0 {
            pending.push((
                DiffItem::Other {
                    left: other_left,
                    right: other_right,
                },
                level + 1,
                nlx,
                nrx,
            ));
        }
        stack.extend(pending.into_iter().rev());
    }
    let (names, levels) = levels.finish(7, &[0, 3]);
    FlameGraphDiff {
        names,
        levels,
        total: left_totals[0] + right_totals[0],
        max_self,
        left_ticks: left_totals[0],
        right_ticks: right_totals[0],
    }
}

/// An empty flame graph as Pyroscope answers it: `names=["total"]`, one `[0,0,0,0]` level.
pub fn empty_flame_graph() -> FlameGraph {
    flame_graph(&FunctionTree::new(), 0)
}

/// The tree as collapsed stacks (Brendan Gregg's folded format): one `a;b;c value` line per
/// node with a self value, root-first frames, in the tree's order.
pub fn collapsed(tree: &FunctionTree) -> String {
    let mut out = String::new();
    let mut frames: Vec<&str> = Vec::new();
    for node in 1..tree.len() {
        let id = node as NodeId;
        let self_value = tree.self_value(id);
        if self_value == 0 {
            continue;
        }
        frames.clear();
        let mut at = id;
        while at != ROOT {
            frames.push(tree.name(at));
            at = tree.parent(at);
        }
        for (i, frame) in frames.iter().rev().enumerate() {
            if i > 0 {
                out.push(';');
            }
            // A line is one stack: line breaks inside a name would split it.
            out.extend(
                frame
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
            );
        }
        out.push(' ');
        out.push_str(&self_value.to_string());
        out.push('\n');
    }
    out
}

/// Why a selection has no flame graph to draw (an empty tree).
pub const NO_FLAME_GRAPH: &str =
    "no profiles match this selection in this range: there is no flame graph to draw";

/// A merged profile as a file: gzipped pprof, as `go tool pprof` reads it.
pub fn pprof_file(profile: &hearth_proto::pprof::Profile) -> Vec<u8> {
    hearth_engine::compression::gzip(&prost::Message::encode_to_vec(profile))
}

/// The tree as an SVG flame graph (drawn by `inferno`, as `flamegraph.pl` would), titled
/// `title`, its values counted in `unit`. An empty tree is an error (there is nothing to draw).
pub fn svg(tree: &FunctionTree, title: &str, unit: &str) -> std::io::Result<Vec<u8>> {
    let folded = collapsed(tree);
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = unit.to_string();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(stacks: &[(&[&str], i64)]) -> FunctionTree {
        let mut t = FunctionTree::new();
        for (stack, value) in stacks {
            t.insert_stack(stack.iter().copied(), *value);
        }
        t
    }

    #[test]
    fn empty_is_total_with_one_zero_node() {
        let graph = empty_flame_graph();
        assert_eq!(graph.names, vec!["total"]);
        assert_eq!(graph.levels.len(), 1);
        assert_eq!(graph.levels[0].values, vec![0, 0, 0, 0]);
        assert_eq!(graph.total, 0);
    }

    #[test]
    fn layout_and_folding() {
        let t = tree(&[
            (&["main", "b"], 3),
            (&["main", "a"], 5),
            (&["main"], 1),
            (&["gc"], 1),
        ]);
        let graph = flame_graph(&t, 0);
        assert_eq!(graph.total, 10);
        // Level 1: gc at 0 (total 1), main right after (total 9).
        let gc = graph.names.iter().position(|n| n == "gc").unwrap() as i64;
        let main = graph.names.iter().position(|n| n == "main").unwrap() as i64;
        assert_eq!(graph.levels[1].values, vec![0, 1, 1, gc, 0, 9, 1, main]);
        // Level 2: a after main's self (x = 2), then b.
        let a = graph.names.iter().position(|n| n == "a").unwrap() as i64;
        let b = graph.names.iter().position(|n| n == "b").unwrap() as i64;
        assert_eq!(graph.levels[2].values, vec![2, 5, 5, a, 0, 3, 3, b]);
        assert_eq!(graph.max_self, 5);

        // Three nodes shown: totals 9, 5, 3 kept, gc (1) folded into other.
        let folded = flame_graph(&t, 3);
        assert!(folded.names.contains(&OTHER.to_string()));
        assert!(!folded.names.contains(&"gc".to_string()));
        assert_eq!(min_value(&t.totals(), 3), 3);
        assert_eq!(min_value(&t.totals(), 4), 0, "4 nodes fit without folding");
    }

    #[test]
    fn collapsed_and_svg_hold_every_stack() {
        let t = tree(&[(&["main", "a"], 4), (&["main", "b"], 6), (&["main"], 1)]);
        let text = collapsed(&t);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["main 1", "main;a 4", "main;b 6"]);
        let picture = String::from_utf8(svg(&t, "cpu", "nanoseconds").unwrap()).unwrap();
        assert!(picture.starts_with("<?xml") && picture.contains("<svg"));
        for name in ["main", "a", "b"] {
            assert!(
                picture.contains(&format!("<title>{name} (")),
                "{name} is drawn"
            );
        }
        assert!(svg(&FunctionTree::new(), "cpu", "ns").is_err());
    }

    #[test]
    fn diff_keeps_both_sides() {
        let left = tree(&[(&["main", "a"], 4)]);
        let right = tree(&[(&["main", "b"], 6)]);
        let diff = flame_graph_diff(&left, &right, 0);
        assert_eq!((diff.left_ticks, diff.right_ticks, diff.total), (4, 6, 10));
        // Root: [0, 4, 0, 0, 6, 0, total].
        assert_eq!(diff.levels[0].values, vec![0, 4, 0, 0, 6, 0, 0]);
        let a = diff.names.iter().position(|n| n == "a").unwrap() as i64;
        let b = diff.names.iter().position(|n| n == "b").unwrap() as i64;
        // Level 2: a (left 4, right 0) then b (left 0, right 6), right x offsets delta-coded.
        assert_eq!(
            diff.levels[2].values,
            vec![0, 4, 4, 0, 0, 0, a, 0, 0, 0, 0, 6, 6, b]
        );
    }

    #[test]
    fn function_totals_count_recursion_once() {
        let t = tree(&[(&["main", "f", "f"], 3), (&["main", "g"], 1)]);
        let totals = function_totals(&t);
        assert_eq!(totals[0], ("f".to_string(), 3, 3));
        assert!(totals.contains(&("main".to_string(), 0, 4)));
        assert!(totals.contains(&("g".to_string(), 1, 1)));
    }

    #[test]
    fn tree_bytes_are_preorder_with_child_counts() {
        let t = tree(&[(&["a"], 2)]);
        let bytes = tree_bytes(&t, 0);
        // root: "" self 0, 1 child; a: "a" self 2, 0 children.
        assert_eq!(bytes, vec![0, 0, 1, 1, b'a', 2, 0]);
    }
}
