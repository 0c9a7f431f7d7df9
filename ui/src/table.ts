// The top table beside the flame graph: one row per function, sortable by any column,
// filtered by the search text; clicking a row selects the function (the sandwich view).
// For a diff it shows each side's share and the change.

import { formatValue, matcher } from "./flamegraph";
import { type FunctionRow, type Tree, shareChange } from "./tree";

interface Column {
  title: string;
  /** The value rows sort by. */
  key: (row: FunctionRow) => number | string;
  /** The cell's text. */
  text: (row: FunctionRow) => string;
}

const percent = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(2)} %` : "-");

/** A row's change of share between the diff's sides, in percentage points. */
const rowChange = (row: FunctionRow, tree: Tree, field: "self" | "total") =>
  shareChange(tree, row.left?.[field] ?? 0, row.right?.[field] ?? 0);

function columns(tree: Tree, unit: string): Column[] {
  const name: Column = { title: "Function", key: (r) => r.name, text: (r) => r.name };
  if (!tree.isDiff) {
    return [
      name,
      { title: "Self", key: (r) => r.self, text: (r) => `${formatValue(r.self, unit)} (${percent(r.self, tree.total)})` },
      { title: "Total", key: (r) => r.total, text: (r) => `${formatValue(r.total, unit)} (${percent(r.total, tree.total)})` },
    ];
  }
  const signed = (v: number) => `${v > 0 ? "+" : ""}${v.toFixed(2)} pp`;
  return [
    name,
    { title: "Baseline self", key: (r) => r.left?.self ?? 0, text: (r) => percent(r.left?.self ?? 0, tree.leftTicks) },
    { title: "Comparison self", key: (r) => r.right?.self ?? 0, text: (r) => percent(r.right?.self ?? 0, tree.rightTicks) },
    { title: "Self change", key: (r) => rowChange(r, tree, "self"), text: (r) => signed(rowChange(r, tree, "self")) },
    { title: "Total change", key: (r) => rowChange(r, tree, "total"), text: (r) => signed(rowChange(r, tree, "total")) },
  ];
}

export class TopTable {
  private readonly table: HTMLTableElement;
  private rows: FunctionRow[] = [];
  private tree: Tree | undefined;
  private unit = "";
  private sortColumn = 1;
  private descending = true;
  private filter = "";
  private selected = "";
  /** Rows shown at most: the rest are counted in the footer. */
  private readonly limit = 500;

  constructor(
    container: HTMLElement,
    private readonly onSelect: (name: string) => void,
  ) {
    container.classList.add("top-table");
    this.table = document.createElement("table");
    this.table.dataset.testid = "top-table";
    container.append(this.table);
  }

  setRows(rows: FunctionRow[], tree: Tree, unit: string): void {
    this.rows = rows;
    this.tree = tree;
    this.unit = unit;
    if (tree.isDiff && this.sortColumn === 1) this.sortColumn = 3;
    if (!tree.isDiff && this.sortColumn > 2) this.sortColumn = 1;
    this.render();
  }

  setFilter(text: string): void {
    this.filter = text;
    this.render();
  }

  setSelected(name: string): void {
    this.selected = name;
    this.render();
  }

  private render(): void {
    const tree = this.tree;
    if (!tree) return;
    const cols = columns(tree, this.unit);
    const head = document.createElement("tr");
    cols.forEach((col, i) => {
      const th = document.createElement("th");
      th.textContent = col.title + (i === this.sortColumn ? (this.descending ? " ▼" : " ▲") : "");
      th.addEventListener("click", () => {
        this.descending = i === this.sortColumn ? !this.descending : i !== 0;
        this.sortColumn = i;
        this.render();
      });
      head.append(th);
    });
    const matches = matcher(this.filter) ?? (() => true);
    const key = cols[this.sortColumn].key;
    const sign = this.descending ? -1 : 1;
    const shown = this.rows
      .filter((r) => matches(r.name))
      .sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return sign * order || a.name.localeCompare(b.name);
      });
    const body = shown.slice(0, this.limit).map((row) => {
      const tr = document.createElement("tr");
      tr.classList.toggle("selected", row.name === this.selected);
      for (const col of cols) {
        const td = document.createElement("td");
        td.textContent = col.text(row);
        tr.append(td);
      }
      if (tree.isDiff) {
        const change = rowChange(row, tree, "total");
        tr.classList.toggle("grew", change > 0.01);
        tr.classList.toggle("shrank", change < -0.01);
      }
      tr.addEventListener("click", () => this.onSelect(row.name));
      return tr;
    });
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    tbody.append(...body);
    this.table.replaceChildren(thead, tbody);
    if (shown.length > this.limit) {
      const more = document.createElement("caption");
      more.textContent = `${shown.length - this.limit} more functions: refine the search`;
      more.style.captionSide = "bottom";
      this.table.append(more);
    }
  }
}
