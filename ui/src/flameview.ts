// The flame graph panel shared by Explore and Diff: search box, flame/icicle toggle, max-nodes
// control, the top table beside the graph, and the sandwich view of a selected function.

import { h, show } from "./dom";
import { FlameGraphView } from "./flamegraph";
import { TopTable } from "./table";
import { Tree, functionTable, sandwich } from "./tree";
import type { ViewState } from "./state";

/** The zoomed node as the `;`-joined names below the root, for the URL. */
export function zoomPath(tree: Tree, index: number | null): string {
  const names: string[] = [];
  for (let i = index ?? -1; i > 0; i = tree.nodes[i].parent) names.unshift(tree.nodes[i].name);
  return names.join(";");
}

/** The node at a `zoomPath` (null when it is not in this tree). */
export function nodeAt(tree: Tree, path: string): number | null {
  if (!path) return null;
  let node = 0;
  for (const name of path.split(";")) {
    const child = tree.nodes[node].children.find((c) => tree.nodes[c].name === name);
    if (child === undefined) return null;
    node = child;
  }
  return node;
}

export class FlamePanel {
  readonly element: HTMLElement;
  readonly flame: FlameGraphView;
  readonly table: TopTable;
  private readonly search: HTMLInputElement;
  private readonly searchInfo: HTMLSpanElement;
  private readonly orientation: HTMLButtonElement;
  private readonly maxNodes: HTMLInputElement;
  private readonly sandwichPanel: HTMLElement;
  private readonly callers: FlameGraphView;
  private readonly callees: FlameGraphView;
  private readonly sandwichTitle: HTMLElement;
  private tree: Tree | undefined;

  constructor(
    private readonly state: ViewState,
    /** Called when the panel changed the state (search, zoom, ...); `reload` when data must be fetched again. */
    private readonly changed: (reload: boolean) => void,
  ) {
    this.search = h("input", { type: "search", placeholder: "Search functions (text or /regex/)", "data-testid": "search" });
    this.search.value = state.search;
    this.searchInfo = h("span", { class: "search-info", "data-testid": "search-info" });
    this.orientation = h("button", { type: "button", "data-testid": "orientation" });
    this.maxNodes = h("input", { type: "number", min: "16", step: "1024", "data-testid": "max-nodes", title: "Nodes drawn at most; smaller ones fold into 'other'" });
    this.maxNodes.value = String(state.maxNodes);
    const graph = h("div", { class: "flame-host", "data-testid": "flamegraph" });
    const tableHost = h("div", { class: "table-host" });
    this.sandwichTitle = h("h3", {});
    const callersHost = h("div", { class: "flame-host" });
    const calleesHost = h("div", { class: "flame-host" });
    const close = h("button", { type: "button", "data-testid": "sandwich-close" }, "Close");
    close.addEventListener("click", () => this.selectFunction(""));
    this.sandwichPanel = h(
      "section",
      { class: "sandwich", "data-testid": "sandwich" },
      h("div", { class: "sandwich-head" }, this.sandwichTitle, close),
      h("h4", {}, "Callers"),
      callersHost,
      h("h4", {}, "Callees"),
      calleesHost,
    );
    this.sandwichPanel.hidden = true;
    this.element = h(
      "section",
      { class: "flame-panel" },
      h("div", { class: "flame-toolbar" }, this.search, this.searchInfo, this.orientation, h("label", {}, "Max nodes ", this.maxNodes)),
      h("div", { class: "flame-body" }, tableHost, h("div", { class: "flame-column" }, graph, this.sandwichPanel)),
    );

    this.flame = new FlameGraphView(graph, {
      onSelectFunction: (name) => {
        this.state.zoom = this.tree ? zoomPath(this.tree, this.flame.zoomed) : "";
        this.selectFunction(name);
      },
    });
    this.callers = new FlameGraphView(callersHost);
    this.callees = new FlameGraphView(calleesHost);
    this.callers.setOrientation("flame");
    this.table = new TopTable(tableHost, (name) => this.selectFunction(name));

    this.search.addEventListener("input", () => {
      this.state.search = this.search.value;
      this.applySearch();
      this.changed(false);
    });
    this.orientation.addEventListener("click", () => {
      this.state.orientation = this.state.orientation === "icicle" ? "flame" : "icicle";
      this.applyOrientation();
      this.changed(false);
    });
    this.maxNodes.addEventListener("change", () => {
      const n = Number(this.maxNodes.value);
      if (Number.isInteger(n) && n > 0) {
        this.state.maxNodes = n;
        this.changed(true);
      }
    });
    // The view resets its zoom itself (a click on the root, double-click, Escape): the URL follows.
    for (const event of ["click", "dblclick", "keydown"]) {
      graph.addEventListener(event, () => {
        const zoom = this.tree ? zoomPath(this.tree, this.flame.zoomed) : "";
        if (zoom !== this.state.zoom) {
          this.state.zoom = zoom;
          this.changed(false);
        }
      });
    }
    this.applyOrientation();
  }

  /** Draws a new answer, restoring zoom, search and the selected function from the state. */
  setTree(tree: Tree, unit: string): void {
    this.tree = tree;
    for (const view of [this.flame, this.callers, this.callees]) view.setUnit(unit);
    this.flame.setTree(tree);
    this.table.setRows(functionTable(tree), tree, unit);
    this.flame.zoomTo(nodeAt(tree, this.state.zoom));
    this.applySearch();
    this.showSandwich();
  }

  private applySearch(): void {
    const { matches, share } = this.flame.setSearch(this.state.search);
    this.table.setFilter(this.state.search);
    show(this.searchInfo, this.state.search ? `${matches} matches, ${(100 * share).toFixed(2)} % of the total` : undefined);
  }

  private applyOrientation(): void {
    this.flame.setOrientation(this.state.orientation);
    this.orientation.textContent = this.state.orientation === "icicle" ? "Icicle ▾" : "Flame ▴";
  }

  private selectFunction(name: string): void {
    this.state.fn = name;
    this.showSandwich();
    this.changed(false);
  }

  private showSandwich(): void {
    const name = this.state.fn;
    this.table.setSelected(name);
    const present = Boolean(name && this.tree && this.tree.nodes.some((n) => n.name === name));
    this.sandwichPanel.hidden = !present;
    if (!present || !this.tree) return;
    const { callers, callees } = sandwich(this.tree, name);
    this.sandwichTitle.textContent = name;
    this.callers.setTree(callers);
    this.callees.setTree(callees);
  }
}
