// The flame graph model: the server's level-encoded flame graphs (plain and diff) decoded into a
// tree of nodes, plus the derived views the UI shows (function table, sandwich, collapsed text).
// Pure data, no DOM.

/** A flame graph as the server's protojson sends it (`FlameGraph` or `FlameGraphDiff`). */
export interface FlameGraphJson {
  names?: string[];
  levels?: { values?: (string | number)[] }[];
  total?: string | number;
  maxSelf?: string | number;
  leftTicks?: string | number;
  rightTicks?: string | number;
}

/** Self and total of one side of a diff. */
export interface SideValues {
  self: number;
  total: number;
}

/** One bar of a flame graph. Positions and sizes are in value units (for a diff: left + right). */
export interface FlameNode {
  name: string;
  depth: number;
  start: number;
  width: number;
  self: number;
  /** Always equal to `width`. */
  total: number;
  /** Baseline side (diff trees only). */
  left?: SideValues;
  /** Comparison side (diff trees only). */
  right?: SideValues;
  /** Index of the parent in `Tree.nodes`, -1 for the root. */
  parent: number;
  /** Indexes of the children in `Tree.nodes`, left to right. */
  children: number[];
}

/** One row of the function table. */
export interface FunctionRow {
  name: string;
  self: number;
  total: number;
  left?: SideValues;
  right?: SideValues;
}

const ROOT_NAME = "total";

/** A JSON int64 (string) or double as a number; anything unparsable counts as 0. */
function num(value: string | number | undefined): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/**
 * A decoded flame graph. `nodes` is in level order: the root "total" first, then every node of
 * depth 1 left to right, then depth 2, and so on; each node's `children` are left to right.
 */
export class Tree {
  readonly nodes: FlameNode[];
  /** The root's value (for a diff: leftTicks + rightTicks). */
  readonly total: number;
  readonly isDiff: boolean;
  /** Baseline total of a diff (0 otherwise). */
  readonly leftTicks: number;
  /** Comparison total of a diff (0 otherwise). */
  readonly rightTicks: number;
  /** Depth of the deepest node (0 for a tree with only the root). */
  readonly maxDepth: number;

  /** A tree of laid-out `nodes` in level order (`nodes[0]` the root); prefer the factories. */
  constructor(nodes: FlameNode[], total: number, isDiff = false, leftTicks = 0, rightTicks = 0) {
    this.nodes = nodes;
    this.total = total;
    this.isDiff = isDiff;
    this.leftTicks = leftTicks;
    this.rightTicks = rightTicks;
    this.maxDepth = nodes.length > 0 ? nodes[nodes.length - 1].depth : 0;
  }

  /**
   * Decodes the server's flame graph: 4-tuples `[x, total, self, name]` or, with `diff`,
   * 7-tuples `[leftX, leftTotal, leftSelf, rightX, rightTotal, rightSelf, name]` with
   * delta-coded x offsets. Missing fields (protojson omits zeros and empty arrays) read as
   * empty; an empty graph becomes a lone zero-width root.
   */
  static fromJson(json: FlameGraphJson | undefined, diff: boolean): Tree {
    const names = json?.names ?? [];
    const levels = json?.levels ?? [];
    const stride = diff ? 7 : 4;
    const nodes: FlameNode[] = [];
    let above: number[] = [];
    for (let depth = 0; depth < levels.length; depth++) {
      const values = levels[depth]?.values ?? [];
      const level: number[] = [];
      let end = 0;
      let leftEnd = 0;
      let rightEnd = 0;
      let parent = 0; // position in `above` of the current candidate parent
      for (let i = 0; i + stride <= values.length; i += stride) {
        let start: number;
        let width: number;
        let self: number;
        let sides: { left: SideValues; right: SideValues } | undefined;
        if (diff) {
          const leftStart = leftEnd + num(values[i]);
          const left = { total: num(values[i + 1]), self: num(values[i + 2]) };
          const rightStart = rightEnd + num(values[i + 3]);
          const right = { total: num(values[i + 4]), self: num(values[i + 5]) };
          leftEnd = leftStart + left.total;
          rightEnd = rightStart + right.total;
          start = leftStart + rightStart;
          width = left.total + right.total;
          self = left.self + right.self;
          sides = { left, right };
        } else {
          start = end + num(values[i]);
          width = num(values[i + 1]);
          self = num(values[i + 2]);
          end = start + width;
        }
        const name = names[num(values[i + stride - 1])] ?? (depth === 0 ? ROOT_NAME : "");
        if (depth === 0) {
          if (nodes.length > 0) break; // level 0 holds the root only
        } else {
          // The parent is the last bar above starting at or before this one: children are
          // laid out inside their parent's span and both levels run left to right.
          while (parent + 1 < above.length && nodes[above[parent + 1]].start <= start) parent++;
        }
        const node: FlameNode = {
          name,
          depth,
          start,
          width,
          self,
          total: width,
          parent: depth === 0 ? -1 : above[parent],
          children: [],
          ...sides,
        };
        if (depth > 0) nodes[node.parent].children.push(nodes.length);
        level.push(nodes.length);
        nodes.push(node);
      }
      if (depth === 0 && level.length === 0) level.push(pushEmptyRoot(nodes, diff));
      if (level.length === 0) break; // deeper levels would have no parents
      above = level;
    }
    if (nodes.length === 0) pushEmptyRoot(nodes, diff);
    const root = nodes[0];
    const leftTicks = diff ? num(json?.leftTicks) || (root.left?.total ?? 0) : 0;
    const rightTicks = diff ? num(json?.rightTicks) || (root.right?.total ?? 0) : 0;
    return new Tree(nodes, num(json?.total) || root.total, diff, leftTicks, rightTicks);
  }

  /**
   * A plain tree of stacks (frames root first), merging equal prefixes. Siblings are ordered by
   * name and a node's self comes before its children, as the server lays graphs out. Stacks
   * without frames or with a non-positive value are ignored.
   */
  static fromStacks(stacks: { frames: string[]; value: number }[]): Tree {
    const builder = new TreeBuilder();
    for (const { frames, value } of stacks) {
      if (frames.length === 0 || !(value > 0)) continue;
      let node = 0;
      builder.add(node, 0, value);
      for (const frame of frames) {
        node = builder.child(node, frame);
        builder.add(node, 0, value);
      }
      builder.add(node, value, 0);
    }
    return builder.build();
  }
}

function pushEmptyRoot(nodes: FlameNode[], diff: boolean): number {
  const zero = () => ({ self: 0, total: 0 });
  nodes.push({
    name: ROOT_NAME,
    depth: 0,
    start: 0,
    width: 0,
    self: 0,
    total: 0,
    parent: -1,
    children: [],
    ...(diff ? { left: zero(), right: zero() } : {}),
  });
  return nodes.length - 1;
}

/** A mutable tree of names (node 0 is the root) accumulating self and total values. */
class TreeBuilder {
  private readonly names: string[] = [ROOT_NAME];
  private readonly selfs: number[] = [0];
  private readonly totals: number[] = [0];
  private readonly kids: Map<string, number>[] = [new Map()];

  /** The child of `parent` named `name`, created if missing. */
  child(parent: number, name: string): number {
    let id = this.kids[parent].get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.selfs.push(0);
      this.totals.push(0);
      this.kids.push(new Map());
      this.kids[parent].set(name, id);
    }
    return id;
  }

  add(node: number, self: number, total: number): void {
    this.selfs[node] += self;
    this.totals[node] += total;
  }

  /** Lays the tree out in level order: children sorted by name, after their parent's self. */
  build(): Tree {
    const nodes: FlameNode[] = [];
    const queue: { id: number; parent: number; depth: number; start: number }[] = [
      { id: 0, parent: -1, depth: 0, start: 0 },
    ];
    for (let head = 0; head < queue.length; head++) {
      const { id, parent, depth, start } = queue[head];
      const index = nodes.length;
      const total = this.totals[id];
      nodes.push({ name: this.names[id], depth, start, width: total, self: this.selfs[id], total, parent, children: [] });
      if (parent >= 0) nodes[parent].children.push(index);
      let x = start + this.selfs[id];
      const children = [...this.kids[id].entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (const [, child] of children) {
        queue.push({ id: child, parent: index, depth: depth + 1, start: x });
        x += this.totals[child];
      }
    }
    return new Tree(nodes, nodes[0].total);
  }
}

/**
 * Calls `enter` for every node below the root in pre-order (left to right) and `leave` after
 * its subtree; iterative, so deep trees do not overflow the stack.
 */
function walk(tree: Tree, enter: (index: number) => void, leave: (index: number) => void): void {
  const { nodes } = tree;
  const stack: number[] = [];
  const pushChildren = (children: number[]) => {
    for (let k = children.length - 1; k >= 0; k--) stack.push(children[k]);
  };
  pushChildren(nodes[0].children);
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top < 0) {
      leave(~top);
      continue;
    }
    enter(top);
    stack.push(~top);
    pushChildren(nodes[top].children);
  }
}

/** For each node, whether no ancestor (below the root) has its name; false for the root. */
function outermost(tree: Tree): boolean[] {
  const flags = new Array<boolean>(tree.nodes.length).fill(false);
  const onPath = new Map<string, number>();
  walk(
    tree,
    (i) => {
      const name = tree.nodes[i].name;
      const count = onPath.get(name) ?? 0;
      flags[i] = count === 0;
      onPath.set(name, count + 1);
    },
    (i) => {
      const name = tree.nodes[i].name;
      const count = onPath.get(name)!;
      if (count === 1) onPath.delete(name);
      else onPath.set(name, count - 1);
    },
  );
  return flags;
}

/**
 * One row per function name (the root excluded): self summed over all its nodes, total summed
 * over its outermost nodes (recursion counted once); diff trees fill `left` and `right` the
 * same way. Sorted by self, then total (both descending), then name.
 */
export function functionTable(tree: Tree): FunctionRow[] {
  const flags = outermost(tree);
  const rows = new Map<string, FunctionRow>();
  for (let i = 1; i < tree.nodes.length; i++) {
    const node = tree.nodes[i];
    let row = rows.get(node.name);
    if (!row) {
      row = { name: node.name, self: 0, total: 0 };
      if (tree.isDiff) {
        row.left = { self: 0, total: 0 };
        row.right = { self: 0, total: 0 };
      }
      rows.set(node.name, row);
    }
    row.self += node.self;
    if (row.left && node.left) row.left.self += node.left.self;
    if (row.right && node.right) row.right.self += node.right.self;
    if (flags[i]) {
      row.total += node.total;
      if (row.left && node.left) row.left.total += node.left.total;
      if (row.right && node.right) row.right.total += node.right.total;
    }
  }
  return [...rows.values()].sort(
    (a, b) => b.self - a.self || b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/**
 * The sandwich view of function `name`, as two plain trees whose root equals the function's
 * total (combined values for a diff). `callees`: every outermost subtree of `name` merged under
 * one node `name`. `callers`: each outermost node's path up to the root, reversed (`name`
 * first, then its caller, ...), weighted by the node's total.
 */
export function sandwich(tree: Tree, name: string): { callers: Tree; callees: Tree } {
  const { nodes } = tree;
  const flags = outermost(tree);
  const callers = new TreeBuilder();
  const callees = new TreeBuilder();
  const mapped = new Int32Array(nodes.length);
  for (let i = 1; i < nodes.length; i++) {
    if (!flags[i] || nodes[i].name !== name) continue;
    const weight = nodes[i].total;

    let up = 0;
    callers.add(up, 0, weight);
    for (let j = i; j > 0; j = nodes[j].parent) {
      up = callers.child(up, nodes[j].name);
      callers.add(up, 0, weight);
    }
    callers.add(up, weight, 0);

    callees.add(0, 0, weight);
    mapped[i] = callees.child(0, name);
    const stack = [i];
    while (stack.length > 0) {
      const j = stack.pop()!;
      if (j !== i) mapped[j] = callees.child(mapped[nodes[j].parent], nodes[j].name);
      callees.add(mapped[j], nodes[j].self, nodes[j].total);
      for (const child of nodes[j].children) stack.push(child);
    }
  }
  return { callers: callers.build(), callees: callees.build() };
}

/**
 * How a function's share of its side changed between a diff's sides, in percentage points:
 * right/rightTicks minus left/leftTicks, times 100 (positive = grew).
 */
export function shareChange(tree: Tree, left: number, right: number): number {
  const leftShare = tree.leftTicks > 0 ? left / tree.leftTicks : 0;
  const rightShare = tree.rightTicks > 0 ? right / tree.rightTicks : 0;
  return (rightShare - leftShare) * 100;
}
