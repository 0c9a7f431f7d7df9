// The whole view state, kept in the URL's query string so that a link reproduces the view.
// Times stay as the user wrote them (`now-1h`, or Unix milliseconds) and are resolved when a
// query runs, so a link to "the last hour" stays the last hour.

export type View = "explore" | "diff" | "targets";

export interface ViewState {
  view: View;
  tenant: string;
  profileType: string;
  /** The label selector of the explore view and of the diff's right side. */
  selector: string;
  from: string;
  until: string;
  groupBy: string;
  orientation: "icicle" | "flame";
  search: string;
  /** The function shown in the sandwich panel. */
  fn: string;
  /** The zoomed bar as its stack of names from the root's child down, `;`-joined. */
  zoom: string;
  maxNodes: number;
  /** The diff's left side (the baseline). */
  leftSelector: string;
  leftFrom: string;
  leftUntil: string;
}

export const DEFAULT_STATE: ViewState = {
  view: "explore",
  tenant: "",
  profileType: "",
  selector: "{}",
  from: "now-1h",
  until: "now",
  groupBy: "",
  orientation: "icicle",
  search: "",
  fn: "",
  zoom: "",
  maxNodes: 8192,
  leftSelector: "{}",
  leftFrom: "now-2h",
  leftUntil: "now-1h",
};

/** Reads the state from a query string; missing or malformed keys take their defaults. */
export function parseState(search: string): ViewState {
  const params = new URLSearchParams(search);
  const state: ViewState = { ...DEFAULT_STATE };
  const text = (key: keyof ViewState) => params.get(key) ?? undefined;
  const view = text("view");
  state.view = view === "diff" || view === "targets" ? view : "explore";
  state.orientation = text("orientation") === "flame" ? "flame" : "icicle";
  for (const key of ["tenant", "profileType", "selector", "from", "until", "groupBy", "search", "fn", "zoom", "leftSelector", "leftFrom", "leftUntil"] as const) {
    const value = text(key);
    if (value !== undefined) state[key] = value;
  }
  const maxNodes = Number(params.get("maxNodes"));
  if (Number.isInteger(maxNodes) && maxNodes > 0) state.maxNodes = maxNodes;
  return state;
}

/** The query string of a state, without keys at their defaults. */
export function formatState(state: ViewState): string {
  const params = new URLSearchParams();
  for (const key of Object.keys(DEFAULT_STATE) as (keyof ViewState)[]) {
    if (state[key] !== DEFAULT_STATE[key]) params.set(key, String(state[key]));
  }
  const query = params.toString();
  return query ? `?${query}` : "";
}

const UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/**
 * Unix milliseconds of a time as the UI writes it: `now`, `now-<n><s|m|h|d|w>`, Unix
 * milliseconds or seconds, or an ISO 8601 date-time (read in the browser's time zone when it
 * names none). Throws with a message naming the text when it is none of these.
 */
export function resolveTime(text: string, now: number): number {
  const t = text.trim();
  if (t === "now") return now;
  const relative = /^now-(\d+)([smhdw])$/.exec(t);
  if (relative) return now - Number(relative[1]) * UNITS[relative[2]];
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n < 1e11 ? n * 1000 : n;
  }
  const parsed = Date.parse(t);
  if (!Number.isNaN(parsed)) return parsed;
  throw new Error(`"${text}" is not a time: use now, now-1h, Unix milliseconds or 2024-01-31T12:00`);
}

/** Both ends of a range, checked: the start must come before the end. */
export function resolveRange(from: string, until: string, now: number): { start: number; end: number } {
  const start = resolveTime(from, now);
  const end = resolveTime(until, now);
  if (start >= end) throw new Error(`the range starts (${from}) at or after it ends (${until})`);
  return { start, end };
}
