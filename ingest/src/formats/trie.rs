//! Pyroscope's binary stack trees: `trie` (`binary/octet-stream+trie`, what older agents
//! upload) and `tree` (`binary/octet-stream+tree`). Both list nodes in pre-order, each as an
//! unsigned LEB128 name length, the name's bytes, an unsigned LEB128 value and an unsigned
//! LEB128 child count. In a trie a node's name is a fragment: its key is its ancestors'
//! fragments and its own, concatenated, and several top-level tries may follow one another. In
//! a tree a node's name is one frame: its stack is the frames from below the root down to it,
//! and the body holds one tree. Nodes with a value are stacks.
//!
//! Both are read with an explicit stack of open nodes, so a deep tree cannot exhaust the
//! thread's stack, and nothing is allocated from a length before the bytes are there.

use super::Stacks;

/// Reads LEB128 numbers and length-prefixed names from a body.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.at == self.body.len()
    }

    fn uvarint(&mut self, what: &str) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.body.get(self.at) else {
                return Err(format!("the body ends inside {what} at byte {}", self.at));
            };
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!(
            "{what} ending at byte {} overflows 64 bits",
            self.at
        ))
    }

    fn name(&mut self) -> Result<&'a [u8], String> {
        let start = self.at;
        let len = self.uvarint("a node's name length")?;
        let left = (self.body.len() - self.at) as u64;
        if len > left {
            return Err(format!(
                "the node at byte {start} names {len} bytes but only {left} follow"
            ));
        }
        let name = &self.body[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(name)
    }

    /// One node: its name, value and child count.
    fn node(&mut self) -> Result<(&'a [u8], u64, u64), String> {
        let name = self.name()?;
        let value = self.uvarint("a node's value")?;
        let children = self.uvarint("a node's child count")?;
        Ok((name, value, children))
    }
}

/// A node whose children are being read: the key length to go back to when it is done, and
/// how many children are left.
struct Open {
    restore: usize,
    children: u64,
}

/// After a node without children (its key already cut back): counts it against its parent,
/// closing every ancestor it completes; returns whether no node is left open.
fn close(open: &mut Vec<Open>, key: &mut Vec<u8>) -> bool {
    while let Some(parent) = open.last_mut() {
        parent.children -= 1;
        if parent.children > 0 {
            return false;
        }
        key.truncate(parent.restore);
        open.pop();
    }
    true
}

/// Adds the node at `at` (its key and value); a key past the budget refuses the body.
fn add(stacks: &mut Stacks, key: &[u8], value: u64, at: usize) -> Result<(), String> {
    if value == 0 {
        return Ok(());
    }
    if key.len() > stacks.room() {
        return Err(format!("the node at byte {at}: {}", stacks.over_budget()));
    }
    stacks.add(&String::from_utf8_lossy(key), value)
}

/// Reads nodes until the subtree `open` holds is done (a whole top-level node when `open` is
/// empty), adding each node with a value under its key. Tree keys join frames with `;` below
/// the root (`open` then starts with the root); trie keys concatenate fragments.
fn walk(
    reader: &mut Reader<'_>,
    stacks: &mut Stacks,
    mut open: Vec<Open>,
    tree: bool,
) -> Result<(), String> {
    let mut key = Vec::new();
    loop {
        let (restore, at) = (key.len(), reader.at);
        let (name, value, children) = reader.node()?;
        if tree && open.len() > 1 {
            key.push(b';');
        }
        key.extend_from_slice(name);
        add(stacks, &key, value, at)?;
        if children > 0 {
            open.push(Open { restore, children });
            continue;
        }
        key.truncate(restore);
        if close(&mut open, &mut key) {
            return Ok(());
        }
    }
}

/// A `trie` body's stacks, added to `stacks`.
pub(super) fn trie(body: &[u8], mut stacks: Stacks) -> Result<Stacks, String> {
    let mut reader = Reader { body, at: 0 };
    while !reader.at_end() {
        walk(&mut reader, &mut stacks, Vec::new(), false)?;
    }
    Ok(stacks)
}

/// A `tree` body's stacks, added to `stacks`: one tree whose root (an empty name) holds no
/// stack of its own; bytes after it refuse the body.
pub(super) fn tree(body: &[u8], mut stacks: Stacks) -> Result<Stacks, String> {
    let mut reader = Reader { body, at: 0 };
    if reader.at_end() {
        return Err("the body is empty: a tree has at least its root".into());
    }
    let (_, _, children) = reader.node()?;
    if children > 0 {
        let root = Open {
            restore: 0,
            children,
        };
        walk(&mut reader, &mut stacks, vec![root], true)?;
    }
    if !reader.at_end() {
        return Err(format!(
            "{} bytes follow the tree, which ends at byte {}",
            body.len() - reader.at,
            reader.at
        ));
    }
    Ok(stacks)
}

/// Nodes `(name, value, child count)` in pre-order as a trie or tree body: what [`trie`] and
/// [`tree`] read, for tests and benchmarks that send such bodies.
pub fn encode_nodes(nodes: &[(&str, u64, u64)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for (name, value, children) in nodes {
        varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        varint(&mut out, *value);
        varint(&mut out, *children);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(nodes: &[(&str, u64, u64)]) -> Vec<u8> {
        encode_nodes(nodes)
    }

    #[test]
    fn trie_keys_concatenate_fragments() {
        // root -> "a;" -> {"b" = 1, "c" = 2}; then a second top-level trie.
        let mut body = encode(&[("", 0, 1), ("a;", 0, 2), ("b", 1, 0), ("c", 2, 0)]);
        body.extend(encode(&[("x;y", 300, 0)]));
        assert_eq!(
            trie(&body, Stacks::new()).unwrap().sorted(),
            vec![("a;b".into(), 1), ("a;c".into(), 2), ("x;y".into(), 300)]
        );
        assert!(
            trie(&[], Stacks::new()).unwrap().is_empty(),
            "an empty body is no stack"
        );
        let error = trie(&body[..body.len() - 1], Stacks::new()).unwrap_err();
        assert!(error.contains("ends inside"), "{error}");
        let error = trie(&[0x05, b'a'], Stacks::new()).unwrap_err();
        assert!(error.contains("names 5 bytes but only 1"), "{error}");
        let error = trie(&[0xff; 11], Stacks::new()).unwrap_err();
        assert!(error.contains("overflows"), "{error}");
    }

    #[test]
    fn tree_stacks_join_frames_below_the_root() {
        let body = encode(&[
            ("", 0, 2),
            ("main", 1, 2),
            ("work", 5, 0),
            ("idle", 2, 1),
            ("sleep", 3, 0),
            ("gc", 4, 0),
        ]);
        assert_eq!(
            tree(&body, Stacks::new()).unwrap().sorted(),
            vec![
                ("gc".into(), 4),
                ("main".into(), 1),
                ("main;idle".into(), 2),
                ("main;idle;sleep".into(), 3),
                ("main;work".into(), 5)
            ]
        );
        assert!(tree(&[], Stacks::new()).unwrap_err().contains("empty"));
        assert!(tree(&body[..body.len() - 2], Stacks::new()).is_err());
        // A deep chain is read without recursion.
        let deep: Vec<(&str, u64, u64)> = std::iter::once(("", 0, 1))
            .chain((0..100_000).map(|_| ("f", 0, 1)))
            .chain(std::iter::once(("leaf", 1, 0)))
            .collect();
        let stacks = tree(&encode(&deep), Stacks::new()).unwrap();
        assert_eq!(stacks.len(), 1);
        let mut trailing = body.clone();
        trailing.push(0);
        let error = tree(&trailing, Stacks::new()).unwrap_err();
        assert!(error.contains("1 bytes follow the tree"), "{error}");
        // A chain whose every node extends the key is stopped by the budget.
        let chain: Vec<(&str, u64, u64)> = std::iter::once(("", 0, 1))
            .chain((0..1000).map(|_| ("frame", 1, 1)))
            .chain(std::iter::once(("leaf", 1, 0)))
            .collect();
        let error = tree(&encode(&chain), Stacks::with_budget(100_000)).unwrap_err();
        assert!(error.contains("more than 100000 bytes"), "{error}");
    }
}
