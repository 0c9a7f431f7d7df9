//! Reference flame graphs built here from decoded pprof, sharing no code with Hearth: a plain
//! recursive tree, Pyroscope's `max_nodes` folding done the simple way (sort every total), and a
//! decoder of the API's `levels` that checks the layout rules while it rebuilds the tree.

use std::collections::BTreeMap;

use hearth_proto::pprof::{Profile, Sample};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub self_value: i64,
    pub total: i64,
    pub children: BTreeMap<String, Node>,
}

impl Node {
    pub(crate) fn insert(&mut self, path: &[String], value: i64) {
        self.total += value;
        match path.split_first() {
            None => self.self_value += value,
            Some((first, rest)) => self
                .children
                .entry(first.clone())
                .or_default()
                .insert(rest, value),
        }
    }

    fn totals(&self, out: &mut Vec<i64>) {
        for child in self.children.values() {
            out.push(child.total);
            child.totals(out);
        }
    }

    /// Folds children whose total is below `min` (and any named `other`) into one `other`.
    fn fold(&self, min: i64) -> Node {
        let mut out = Node {
            self_value: self.self_value,
            total: self.total,
            children: BTreeMap::new(),
        };
        let mut other = 0;
        for (name, child) in &self.children {
            if child.total >= min && name != "other" {
                out.children.insert(name.clone(), child.fold(min));
            } else {
                other += child.total;
            }
        }
        if other != 0 {
            out.children.insert(
                "other".into(),
                Node {
                    self_value: other,
                    total: other,
                    children: BTreeMap::new(),
                },
            );
        }
        out
    }

    /// The tree a flame graph with `max_nodes` shows (the root's own self is not shown).
    pub(crate) fn truncated(&self, max_nodes: i64) -> Node {
        let mut totals = Vec::new();
        self.totals(&mut totals);
        let min = if max_nodes < 1 || totals.len() as i64 <= max_nodes {
            0
        } else {
            totals.sort_unstable_by(|a, b| b.cmp(a));
            totals[max_nodes as usize - 1]
        };
        let mut root = self.fold(min);
        root.total -= root.self_value;
        root.self_value = 0;
        root
    }
}

/// A sample's frames root first: locations reversed, and inside a location its lines reversed
/// (the caller of inlined frames first). A location without lines is named after its mapping
/// file and address, as Hearth documents.
pub(crate) fn frames(p: &Profile, sample: &Sample) -> Vec<String> {
    let s = |i: i64| p.string_table[i as usize].clone();
    let mut out = Vec::new();
    for id in sample.location_id.iter().rev() {
        let location = p.location.iter().find(|l| l.id == *id).expect("location");
        if location.line.is_empty() {
            let file = p
                .mapping
                .iter()
                .find(|m| m.id == location.mapping_id && location.mapping_id != 0)
                .map(|m| s(m.filename))
                .filter(|f| !f.is_empty())
                .map(|f| f.rsplit('/').next().unwrap().to_string());
            out.push(match file {
                Some(file) => format!("{file} 0x{:x}", location.address),
                None => format!("0x{:x}", location.address),
            });
            continue;
        }
        for line in location.line.iter().rev() {
            let function = p
                .function
                .iter()
                .find(|f| f.id == line.function_id)
                .expect("function");
            out.push(s(function.name));
        }
    }
    out
}

/// Adds the samples of one sample type that `keep` accepts.
pub(crate) fn add_profile(
    root: &mut Node,
    p: &Profile,
    value_index: usize,
    keep: impl Fn(&Sample) -> bool,
) {
    for sample in p.sample.iter().filter(|s| keep(s)) {
        let value = sample.value[value_index];
        if value != 0 {
            root.insert(&frames(p, sample), value);
        }
    }
}

/// A string sample label of a sample.
pub(crate) fn sample_label(p: &Profile, sample: &Sample, key: &str) -> Option<String> {
    sample
        .label
        .iter()
        .find(|l| p.string_table[l.key as usize] == key && l.str != 0)
        .map(|l| p.string_table[l.str as usize].clone())
}

/// Rebuilds the tree of a `FlameGraph` (names + 4-tuple levels with delta x offsets), checking
/// Pyroscope's layout: a node's self sits left, its children follow in name order, `other` last.
pub(crate) fn decode(names: &[String], levels: &[Vec<i64>]) -> Node {
    struct Placed {
        x: i64,
        total: i64,
        self_value: i64,
        name: String,
        children: Vec<usize>,
    }
    let mut placed: Vec<Vec<Placed>> = Vec::new();
    for level in levels {
        assert_eq!(level.len() % 4, 0);
        let mut row = Vec::new();
        let mut prev_end = 0;
        for node in level.chunks(4) {
            let x = prev_end + node[0];
            prev_end = x + node[1];
            row.push(Placed {
                x,
                total: node[1],
                self_value: node[2],
                name: names[node[3] as usize].clone(),
                children: Vec::new(),
            });
        }
        placed.push(row);
    }
    assert_eq!(placed[0].len(), 1, "one root");
    assert_eq!(placed[0][0].name, "total");
    for depth in 1..placed.len() {
        let (parents, children) = placed.split_at_mut(depth);
        let parents = &mut parents[depth - 1];
        for (i, child) in children[0].iter().enumerate() {
            let parent = parents
                .iter_mut()
                .find(|p| p.x <= child.x && child.x + child.total <= p.x + p.total)
                .unwrap_or_else(|| panic!("node {} at x={} has no parent", child.name, child.x));
            parent.children.push(i);
        }
    }
    fn build(placed: &[Vec<Placed>], depth: usize, index: usize) -> Node {
        let node = &placed[depth][index];
        let mut x = node.x + node.self_value;
        let mut names = Vec::new();
        let mut children = BTreeMap::new();
        for &c in &node.children {
            let child = &placed[depth + 1][c];
            assert_eq!(
                child.x, x,
                "children are packed after the self of {}",
                node.name
            );
            x += child.total;
            names.push(child.name.clone());
            children.insert(child.name.clone(), build(placed, depth + 1, c));
        }
        let mut expected = names.clone();
        expected.sort_by_key(|n| (n == "other", n.clone()));
        assert_eq!(
            names, expected,
            "children of {} in name order, other last",
            node.name
        );
        let sum: i64 = children.values().map(|c: &Node| c.total).sum();
        assert_eq!(node.total, node.self_value + sum, "total of {}", node.name);
        Node {
            self_value: node.self_value,
            total: node.total,
            children,
        }
    }
    build(&placed, 0, 0)
}
