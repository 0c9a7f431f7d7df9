// Exports of a selection: the merged profile as pprof, the flame graph as SVG or collapsed
// stacks (drawn by the server), and the Flight SQL statements that give the same answer.

import type { Api, Selection } from "./api";
import { h } from "./dom";

const sqlString = (text: string) => `'${text.replaceAll("'", "''")}'`;
const isoTime = (ms: number) => sqlString(new Date(ms).toISOString());

/** The Flight SQL statements equal to the flame graph and the top table of `s`. */
export function sqlFor(s: Selection, maxNodes: number): string {
  const args = `${sqlString(s.profileType + s.selector)}, ${isoTime(s.start)}, ${isoTime(s.end)}`;
  return [
    "-- The flame graph's nodes (pre-order; small ones folded into 'other')",
    `SELECT * FROM flamegraph_table(${args}, ${maxNodes});`,
    "",
    "-- The top table: self and total per function",
    `SELECT * FROM top_functions(${args}, 100);`,
  ].join("\n");
}

function fileStem(s: Selection): string {
  const service = /service_name="([^"]*)"/.exec(s.selector)?.[1] ?? "all";
  const type = s.profileType.split(":").slice(0, 2).join("-");
  return `${service}-${type}-${new Date(s.start).toISOString().slice(0, 16).replace(":", "")}`.replace(/[^\w.-]+/g, "_");
}

/** The export menu: downloads through the API (so the tenant header goes along) and the SQL. */
export function exportMenu(api: Api, current: () => Selection, maxNodes: () => number, onError: (e: unknown) => void): HTMLElement {
  const download = (format: string, extension: string) => async () => {
    try {
      const s = current();
      await api.download(api.renderUrl(s, format, maxNodes()), `${fileStem(s)}.${extension}`);
    } catch (e) {
      onError(e);
    }
  };
  const sqlBox = h("textarea", { readonly: true, "data-testid": "sql-text", rows: "6" });
  const sqlPanel = h("div", { class: "sql-panel" }, sqlBox);
  sqlPanel.hidden = true;
  const button = (label: string, testId: string, action: () => void) => {
    const b = h("button", { type: "button", "data-testid": testId }, label);
    b.addEventListener("click", action);
    return b;
  };
  const copySql = async () => {
    sqlBox.value = sqlFor(current(), maxNodes());
    sqlPanel.hidden = false;
    sqlBox.select();
    try {
      await navigator.clipboard.writeText(sqlBox.value);
    } catch {
      // No clipboard (an insecure origin): the text stays selected in the box.
    }
  };
  return h(
    "div",
    { class: "export-menu" },
    h("span", { class: "label" }, "Export"),
    button("pprof", "export-pprof", download("pprof", "pb.gz")),
    button("SVG", "export-svg", download("svg", "svg")),
    button("collapsed", "export-collapsed", download("collapsed", "txt")),
    button("Copy as SQL", "export-sql", () => void copySql()),
    sqlPanel,
  );
}
