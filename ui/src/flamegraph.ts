// The flame graph component: a Tree drawn on a canvas (plain DOM + canvas 2D), with zoom,
// search highlighting, a hover tooltip and diff colouring.

import { type FlameNode, Tree, shareChange } from "./tree";

/** "flame": the root at the bottom, growing up; "icicle": the root at the top (the default). */
export type Orientation = "flame" | "icicle";

/** Options of a `FlameGraphView`. */
export interface FlameGraphOptions {
  /** Unit of the values ("nanoseconds", "bytes", "count", "samples", ...) for the tooltip. */
  unit?: string;
  /** Called when a bar (not the root) is clicked, with its function name, after zooming. */
  onSelectFunction?: (name: string) => void;
}

/** One bar of the last render, in CSS pixels relative to the canvas. */
export interface DrawnBar {
  name: string;
  x: number;
  y: number;
  w: number;
  h: number;
  /** The bar matches the search. */
  highlighted: boolean;
  /** A search is active and the bar does not match it. */
  dimmed: boolean;
  nodeIndex: number;
}

const BAR_HEIGHT = 18;
/** Bars narrower than this (CSS px) are neither drawn nor listed. */
const MIN_BAR_WIDTH = 0.5;
const FONT = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
const TEXT_PADDING = 4;
/** Changes of share within this many percentage points are drawn as unchanged. */
const UNCHANGED_PP = 1;
/** Changes of share from which diff colours are fully saturated (percentage points). */
const FULL_CHANGE_PP = 20;

const COLOURS = {
  root: "hsl(30, 12%, 72%)",
  other: "hsl(30, 8%, 80%)",
  match: "hsl(262, 75%, 55%)",
  dimmed: "hsl(0, 0%, 88%)",
  unchanged: "hsl(0, 0%, 78%)",
  text: "#1f2328",
  textDimmed: "#8a8f98",
  textMatch: "#ffffff",
};

/** The change of a diff node's share of its side, in percentage points; 0 for plain nodes. */
export function diffChange(node: FlameNode, tree: Tree): number {
  return node.left && node.right ? shareChange(tree, node.left.total, node.right.total) : 0;
}

/** `value` with at most three significant digits, trailing zeros dropped. */
function short(value: number): string {
  return value >= 1000 ? Math.round(value).toLocaleString("en-US") : String(Number(value.toPrecision(3)));
}

/** `value` scaled down by `steps` (each [factor, unit] in increasing order) and suffixed. */
function scaled(value: number, steps: [number, string][]): string {
  let [factor, unit] = steps[0];
  for (const step of steps) if (value >= step[0]) [factor, unit] = step;
  return `${short(value / factor)}${unit}`;
}

const TIME_STEPS: [number, string][] = [
  [1, " ns"],
  [1e3, " µs"],
  [1e6, " ms"],
  [1e9, " s"],
  [60e9, " min"],
  [3600e9, " h"],
];
const BYTE_STEPS: [number, string][] = [
  [1, " B"],
  [1024, " KiB"],
  [1024 ** 2, " MiB"],
  [1024 ** 3, " GiB"],
  [1024 ** 4, " TiB"],
  [1024 ** 5, " PiB"],
];
const COUNT_STEPS: [number, string][] = [
  [1, ""],
  [1e3, " K"],
  [1e6, " M"],
  [1e9, " G"],
  [1e12, " T"],
  [1e15, " P"],
];

/**
 * A value for display: times ("nanoseconds", also "microseconds", "milliseconds", "seconds")
 * as "45.6 ms" or "1.23 s", "bytes" as "12.3 MiB", anything else as a compact number ("1.2 M").
 */
export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return String(value);
  if (value < 0) return `-${formatValue(-value, unit)}`;
  const u = unit.toLowerCase();
  if (u.includes("nanosecond")) return scaled(value, TIME_STEPS);
  if (u.includes("microsecond")) return scaled(value * 1e3, TIME_STEPS);
  if (u.includes("millisecond")) return scaled(value * 1e6, TIME_STEPS);
  if (u.includes("second")) return scaled(value * 1e9, TIME_STEPS);
  if (u.includes("byte")) return scaled(value, BYTE_STEPS);
  return scaled(value, COUNT_STEPS);
}

/** `part` as a percentage of `whole` ("12.34%"). */
function percent(part: number, whole: number): string {
  return `${whole > 0 ? ((100 * part) / whole).toFixed(2) : "0.00"}%`;
}

/** FNV-1a hash of a string. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The package (or class, or directory) part of a function name: before the last `.`, `::` or `/`. */
function packageOf(name: string): string {
  const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("::"), name.lastIndexOf("/"));
  return cut > 0 ? name.slice(0, cut) : name;
}

/** A warm colour (red to yellow-orange) stable per package. */
function warmColour(name: string): string {
  const h = hash(packageOf(name));
  const hue = 6 + (h % 42);
  const saturation = 68 + ((h >>> 8) % 22);
  const lightness = 58 + ((h >>> 16) % 12);
  return `hsl(${hue}, ${saturation}%, ${lightness}%)`;
}

/** Red for growth, green for reduction, grey for (nearly) unchanged; stronger with the change. */
function diffColour(node: FlameNode, tree: Tree): string {
  const left = node.left?.total ?? 0;
  const right = node.right?.total ?? 0;
  if (left === 0 && right > 0) return "hsl(0, 85%, 52%)";
  if (right === 0 && left > 0) return "hsl(125, 60%, 38%)";
  const change = diffChange(node, tree);
  const size = Math.abs(change);
  if (size <= UNCHANGED_PP) return COLOURS.unchanged;
  const t = Math.min(1, (size - UNCHANGED_PP) / (FULL_CHANGE_PP - UNCHANGED_PP));
  return change > 0
    ? `hsl(0, ${Math.round(45 + 40 * t)}%, ${Math.round(80 - 28 * t)}%)`
    : `hsl(125, ${Math.round(35 + 25 * t)}%, ${Math.round(76 - 38 * t)}%)`;
}

/**
 * A search text as a name predicate (null when empty): `/re/` is a case-insensitive regex, else
 * a case-insensitive substring. The table filters with the same rule.
 */
export function matcher(text: string): ((name: string) => boolean) | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const regex = /^\/(.+)\/$/.exec(trimmed);
  if (regex) {
    try {
      const re = new RegExp(regex[1], "i");
      return (name) => re.test(name);
    } catch {
      // Not a valid regex: search for the text itself.
    }
  }
  const needle = trimmed.toLowerCase();
  return (name) => name.toLowerCase().includes(needle);
}

/**
 * A flame graph on a canvas filling its container's width. Renders at most once per animation
 * frame; `drawnBars` flushes a pending render first.
 */
export class FlameGraphView {
  private readonly container: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly context: CanvasRenderingContext2D | null;
  private readonly tooltip: HTMLDivElement;
  private readonly onSelectFunction?: (name: string) => void;
  private readonly resizeObserver?: ResizeObserver;
  private unit: string;
  private tree: Tree = Tree.fromJson(undefined, false);
  private orientation: Orientation = "icicle";
  private zoom: number | null = null;
  private searchText = "";
  /** Per node, whether it matches the search; null without a search. */
  private matched: Uint8Array | null = null;
  private bars: DrawnBar[] = [];
  /** Per canvas row (top to bottom), indexes into `bars` in increasing x. */
  private rows: number[][] = [];
  /** The pending animation frame, 0 when none. */
  private frame = 0;
  private destroyed = false;
  private lastWidth = -1;
  private charWidth = 0;
  private hovered = -1;
  private readonly colours = new Map<string, string>();

  constructor(container: HTMLElement, options: FlameGraphOptions = {}) {
    this.container = container;
    this.unit = options.unit ?? "";
    this.onSelectFunction = options.onSelectFunction;
    container.classList.add("flamegraph");
    const position = getComputedStyle(container).position;
    if (position === "static" || position === "") container.style.position = "relative";

    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = "flamegraph-canvas";
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Flame graph");
    this.canvas.style.display = "block";
    this.canvas.style.width = "100%";
    this.context = this.canvas.getContext("2d");

    this.tooltip = document.createElement("div");
    this.tooltip.className = "flame-tooltip";
    this.tooltip.dataset.testid = "flame-tooltip";
    this.tooltip.style.position = "absolute";
    this.tooltip.style.pointerEvents = "none";
    this.tooltip.style.display = "none";

    container.append(this.canvas, this.tooltip);
    this.canvas.addEventListener("mousemove", this.onMouseMove);
    this.canvas.addEventListener("mouseleave", this.onMouseLeave);
    this.canvas.addEventListener("click", this.onClick);
    this.canvas.addEventListener("dblclick", this.onDoubleClick);
    this.canvas.addEventListener("keydown", this.onKeyDown);
    if (typeof ResizeObserver !== "undefined") {
      this.resizeObserver = new ResizeObserver(() => {
        if (this.canvas.clientWidth !== this.lastWidth) this.scheduleRender();
      });
      this.resizeObserver.observe(container);
    }
    this.scheduleRender();
  }

  /** The zoomed node's index, null when not zoomed. */
  get zoomed(): number | null {
    return this.zoom;
  }

  /** Shows `tree`: resets the zoom, keeps the search and the orientation. */
  setTree(tree: Tree): void {
    this.tree = tree;
    this.zoom = null;
    this.applySearch();
    this.hideTooltip();
    this.scheduleRender();
  }

  /** Sets the unit values are shown in (see `formatValue`). */
  setUnit(unit: string): void {
    this.unit = unit;
    this.hideTooltip();
  }

  /** Draws the root at the top ("icicle", the default) or at the bottom ("flame"). */
  setOrientation(orientation: Orientation): void {
    this.orientation = orientation;
    this.hideTooltip();
    this.scheduleRender();
  }

  /**
   * Highlights the bars whose name matches `text` (case-insensitive substring, or a regex in
   * slashes) and dims the others; an empty text clears. Returns the number of matching nodes
   * and the share of the total under them (nested matches counted once). The root never
   * counts as a match.
   */
  setSearch(text: string): { matches: number; share: number } {
    this.searchText = text;
    const result = this.applySearch();
    this.scheduleRender();
    return result;
  }

  /** Zooms on a node: it fills the width, its ancestors span it. Null (or the root) resets. */
  zoomTo(nodeIndex: number | null): void {
    const valid = nodeIndex !== null && Number.isInteger(nodeIndex) && nodeIndex > 0 && nodeIndex < this.tree.nodes.length;
    this.zoom = valid ? nodeIndex : null;
    this.hideTooltip();
    this.scheduleRender();
  }

  /** The bars of the last render (rendering first if one is pending). */
  drawnBars(): DrawnBar[] {
    if (this.frame !== 0) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.render();
    }
    return this.bars.slice();
  }

  /** Removes the canvas, the tooltip and every listener. */
  destroy(): void {
    if (this.frame !== 0) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.destroyed = true;
    this.resizeObserver?.disconnect();
    this.canvas.removeEventListener("mousemove", this.onMouseMove);
    this.canvas.removeEventListener("mouseleave", this.onMouseLeave);
    this.canvas.removeEventListener("click", this.onClick);
    this.canvas.removeEventListener("dblclick", this.onDoubleClick);
    this.canvas.removeEventListener("keydown", this.onKeyDown);
    this.canvas.remove();
    this.tooltip.remove();
    this.container.classList.remove("flamegraph");
  }

  /** Recomputes `matched` for the current tree and search. */
  private applySearch(): { matches: number; share: number } {
    const test = matcher(this.searchText);
    const { nodes } = this.tree;
    if (!test) {
      this.matched = null;
      return { matches: 0, share: 0 };
    }
    const byName = new Map<string, boolean>();
    const matched = new Uint8Array(nodes.length);
    // Per node, whether it or an ancestor (below the root) matches; level order puts parents first.
    const covered = new Uint8Array(nodes.length);
    let matches = 0;
    let value = 0;
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i];
      let hit = byName.get(node.name);
      if (hit === undefined) {
        hit = test(node.name);
        byName.set(node.name, hit);
      }
      matched[i] = hit ? 1 : 0;
      if (i === 0) continue;
      const parentCovered = node.parent > 0 && covered[node.parent] === 1;
      covered[i] = hit || parentCovered ? 1 : 0;
      if (hit) {
        matches++;
        if (!parentCovered) value += node.total;
      }
    }
    this.matched = matched;
    const total = this.tree.total;
    return { matches, share: total > 0 ? Math.min(1, value / total) : 0 };
  }

  private scheduleRender(): void {
    if (this.frame !== 0 || this.destroyed) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Lays out the visible bars and draws them. */
  private render(): void {
    const { nodes, maxDepth } = this.tree;
    const width = this.canvas.clientWidth;
    const height = (maxDepth + 1) * BAR_HEIGHT;
    const ratio = window.devicePixelRatio || 1;
    this.lastWidth = width;
    const pixelWidth = Math.max(1, Math.round(width * ratio));
    const pixelHeight = Math.round(height * ratio);
    if (this.canvas.width !== pixelWidth) this.canvas.width = pixelWidth;
    if (this.canvas.height !== pixelHeight) this.canvas.height = pixelHeight;
    this.canvas.style.height = `${height}px`;

    this.bars = [];
    this.rows = Array.from({ length: maxDepth + 1 }, () => []);
    const focusIndex = this.zoom ?? 0;
    const focus = nodes[focusIndex];
    if (width > 0) {
      for (let a = focus.parent; a >= 0; a = nodes[a].parent) this.addBar(a, 0, width);
      const scale = width / (focus.width > 0 ? focus.width : 1);
      const stack = [focusIndex];
      while (stack.length > 0) {
        const index = stack.pop()!;
        const node = nodes[index];
        const w = node.width * scale;
        if (w < MIN_BAR_WIDTH) continue; // children are no wider than their parent
        this.addBar(index, (node.start - focus.start) * scale, w);
        for (let k = node.children.length - 1; k >= 0; k--) stack.push(node.children[k]);
      }
    }
    this.draw(ratio, width, height, focus.depth);
  }

  private addBar(nodeIndex: number, x: number, w: number): void {
    const node = this.tree.nodes[nodeIndex];
    const row = this.orientation === "icicle" ? node.depth : this.tree.maxDepth - node.depth;
    const matched = this.matched;
    this.rows[row].push(this.bars.length);
    this.bars.push({
      name: node.name,
      x,
      y: row * BAR_HEIGHT,
      w,
      h: BAR_HEIGHT,
      highlighted: matched !== null && matched[nodeIndex] === 1,
      dimmed: matched !== null && matched[nodeIndex] === 0,
      nodeIndex,
    });
  }

  /** Paints `bars`: fills first, then labels where they fit. Zoom ancestors are faded. */
  private draw(ratio: number, width: number, height: number, focusDepth: number): void {
    const ctx = this.context;
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const { nodes } = this.tree;
    for (const bar of this.bars) {
      ctx.globalAlpha = nodes[bar.nodeIndex].depth < focusDepth ? 0.6 : 1;
      ctx.fillStyle = this.barColour(bar);
      const gap = bar.w > 3 ? 1 : 0;
      ctx.fillRect(bar.x, bar.y, bar.w - gap, bar.h - 1);
    }
    ctx.globalAlpha = 1;
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    if (this.charWidth === 0) {
      const sample = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.(*)/_";
      this.charWidth = ctx.measureText(sample).width / sample.length || 7;
    }
    for (const bar of this.bars) {
      const room = bar.w - 2 * TEXT_PADDING;
      const fit = Math.floor(room / this.charWidth);
      if (fit < 3) continue;
      const label = bar.name.length <= fit ? bar.name : `${bar.name.slice(0, fit - 1)}…`;
      ctx.fillStyle = bar.highlighted ? COLOURS.textMatch : bar.dimmed ? COLOURS.textDimmed : COLOURS.text;
      ctx.fillText(label, bar.x + TEXT_PADDING, bar.y + (bar.h - 1) / 2, room);
    }
  }

  private barColour(bar: DrawnBar): string {
    if (bar.highlighted) return COLOURS.match;
    if (bar.dimmed) return COLOURS.dimmed;
    const node = this.tree.nodes[bar.nodeIndex];
    if (this.tree.isDiff) return diffColour(node, this.tree);
    if (bar.nodeIndex === 0) return COLOURS.root;
    if (node.name === "other") return COLOURS.other;
    let colour = this.colours.get(node.name);
    if (colour === undefined) {
      colour = warmColour(node.name);
      this.colours.set(node.name, colour);
    }
    return colour;
  }

  /** The drawn bar under a point (CSS px relative to the canvas). */
  private barAt(x: number, y: number): DrawnBar | undefined {
    const row = this.rows[Math.floor(y / BAR_HEIGHT)];
    if (!row || row.length === 0) return undefined;
    let lo = 0;
    let hi = row.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.bars[row[mid]].x <= x) lo = mid;
      else hi = mid - 1;
    }
    const bar = this.bars[row[lo]];
    return bar.x <= x && x < bar.x + bar.w ? bar : undefined;
  }

  private readonly onMouseMove = (event: MouseEvent): void => {
    const bar = this.barAt(event.offsetX, event.offsetY);
    this.canvas.style.cursor = bar ? "pointer" : "";
    if (!bar) {
      this.hideTooltip();
      return;
    }
    if (bar.nodeIndex !== this.hovered) {
      this.hovered = bar.nodeIndex;
      this.fillTooltip(this.tree.nodes[bar.nodeIndex]);
    }
    this.placeTooltip(this.canvas.offsetLeft + event.offsetX, this.canvas.offsetTop + event.offsetY);
  };

  private readonly onMouseLeave = (): void => {
    this.canvas.style.cursor = "";
    this.hideTooltip();
  };

  private readonly onClick = (event: MouseEvent): void => {
    const bar = this.barAt(event.offsetX, event.offsetY);
    if (!bar) return;
    if (bar.nodeIndex === 0) {
      this.zoomTo(null);
      return;
    }
    this.zoomTo(bar.nodeIndex);
    this.onSelectFunction?.(bar.name);
  };

  private readonly onDoubleClick = (): void => {
    this.zoomTo(null);
  };

  private readonly onKeyDown = (event: KeyboardEvent): void => {
    if (event.key === "Escape") this.zoomTo(null);
  };

  private hideTooltip(): void {
    this.hovered = -1;
    this.tooltip.style.display = "none";
  }

  /** Fills the tooltip with a node's name and values. */
  private fillTooltip(node: FlameNode): void {
    const tree = this.tree;
    const value = (v: number, whole: number) => `${formatValue(v, this.unit)} (${percent(v, whole)})`;
    const title = document.createElement("div");
    title.className = "flame-tooltip-name";
    title.textContent = node.name;
    const table = document.createElement("table");
    const row = (...cells: string[]) => {
      const tr = table.insertRow();
      cells.forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        cell.textContent = text;
        tr.append(cell);
      });
    };
    if (tree.isDiff && node.left && node.right) {
      row("", "Baseline", "Comparison");
      row("Self", value(node.left.self, tree.leftTicks), value(node.right.self, tree.rightTicks));
      row("Total", value(node.left.total, tree.leftTicks), value(node.right.total, tree.rightTicks));
      const change = diffChange(node, tree);
      const label =
        node.left.total === 0 && node.right.total > 0
          ? " (new)"
          : node.right.total === 0 && node.left.total > 0
            ? " (removed)"
            : "";
      row("Change", `${change > 0 ? "+" : ""}${change.toFixed(2)} pp${label}`);
    } else {
      row("Self", value(node.self, tree.total));
      row("Total", value(node.total, tree.total));
    }
    this.tooltip.replaceChildren(title, table);
  }

  /** Shows the tooltip near a point of the container, flipped to stay inside it. */
  private placeTooltip(x: number, y: number): void {
    const tip = this.tooltip;
    tip.style.display = "block";
    const offset = 14;
    let left = x + offset;
    if (left + tip.offsetWidth > this.container.clientWidth) left = Math.max(0, x - offset - tip.offsetWidth);
    let top = y + offset;
    if (top + tip.offsetHeight > this.container.scrollHeight) top = Math.max(0, y - offset - tip.offsetHeight);
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }
}
