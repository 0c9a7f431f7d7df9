// Hearth's web UI: Explore (series chart, flame graph, top table, sandwich), Diff (two
// selections, a diff flame graph, a table of deltas) and Targets (pull mode's scrape targets
// and their health). Every view's state lives in the URL.

import { Api, ApiError, type ProfileType, type Selection } from "./api";
import { h, notice, select, setOptions, show } from "./dom";
import { exportMenu } from "./export";
import { FlamePanel } from "./flameview";
import { SelectorEditor } from "./selector";
import { SeriesChart } from "./series";
import { formatState, parseState, resolveRange, type ViewState } from "./state";
import { renderTargets } from "./targets";
import { Tree } from "./tree";

const PRESETS: [string, string][] = [
  ["now-5m", "Last 5 minutes"],
  ["now-15m", "Last 15 minutes"],
  ["now-1h", "Last hour"],
  ["now-6h", "Last 6 hours"],
  ["now-24h", "Last 24 hours"],
  ["now-7d", "Last 7 days"],
  ["now-30d", "Last 30 days"],
];

/** The unit the server reports values in for a profile type ID (`name:type:unit:...`). */
function unitOf(profileType: string): string {
  return profileType.split(":")[2] ?? "";
}

/** `selector` with its `service_name` matcher set to `service` (removed when empty). */
export function withService(selector: string, service: string): string {
  const inner = selector.trim().replace(/^\{|\}$/g, "");
  const matchers = inner
    .split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    .map((m) => m.trim())
    .filter((m) => m && !/^service_name\s*(=|!=|=~|!~)/.test(m));
  if (service) matchers.unshift(`service_name="${service.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`);
  return `{${matchers.join(", ")}}`;
}

/** The service a selector names with `=`, if any. */
function serviceOf(selector: string): string {
  return /service_name\s*=\s*"((?:[^"\\]|\\.)*)"/.exec(selector)?.[1] ?? "";
}

/** A time-range control: presets plus free `from`/`until` fields, and the resolved range. */
class RangeControl {
  readonly element: HTMLElement;
  private readonly preset: HTMLSelectElement;
  private readonly from: HTMLInputElement;
  private readonly until: HTMLInputElement;
  private readonly resolved: HTMLSpanElement;

  constructor(
    prefix: string,
    private readonly get: () => [string, string],
    private readonly set: (from: string, until: string) => void,
  ) {
    const [from, until] = get();
    this.preset = select(`${prefix}range-preset`, [...PRESETS, ["", "Custom"]], until === "now" ? from : "");
    this.from = h("input", { type: "text", "data-testid": `${prefix}from`, title: "now, now-1h, Unix ms or 2024-01-31T12:00 (your time zone)" });
    this.until = h("input", { type: "text", "data-testid": `${prefix}until` });
    this.resolved = h("span", { class: "resolved-range" });
    this.element = h("div", { class: "range-control" }, this.preset, this.from, h("span", {}, "to"), this.until, this.resolved);
    this.preset.addEventListener("change", () => {
      if (this.preset.value) this.set(this.preset.value, "now");
    });
    const typed = () => this.set(this.from.value.trim(), this.until.value.trim());
    this.from.addEventListener("change", typed);
    this.until.addEventListener("change", typed);
    this.refresh();
  }

  /** Shows the state's range and its resolution in the browser's time zone. */
  refresh(): void {
    const [from, until] = this.get();
    this.from.value = from;
    this.until.value = until;
    this.preset.value = until === "now" && PRESETS.some(([v]) => v === from) ? from : "";
    try {
      const { start, end } = resolveRange(from, until, Date.now());
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      this.resolved.textContent = `${new Date(start).toLocaleString()} – ${new Date(end).toLocaleString()} (${zone})`;
    } catch (e) {
      this.resolved.textContent = (e as Error).message;
    }
  }
}

class App {
  private state: ViewState;
  private readonly api: Api;
  private profileTypes: ProfileType[] = [];
  private readonly root: HTMLElement;
  private readonly banner = notice("error", "error");
  private readonly empty = notice("empty", "empty");
  private readonly loading = notice("loading", "loading");
  private readonly typeSelect = select("profile-type", [], "");
  private readonly serviceSelect = select("service", [], "");
  private readonly groupBy = select("group-by", [], "");
  private readonly tenant = h("input", { type: "text", placeholder: "tenant (X-Scope-OrgID)", "data-testid": "tenant" });
  private readonly selector: SelectorEditor;
  private readonly leftSelector: SelectorEditor;
  private readonly range: RangeControl;
  private readonly leftRange: RangeControl;
  private readonly chart: SeriesChart;
  private readonly panel: FlamePanel;
  private readonly explore: HTMLElement;
  private readonly diffControls: HTMLElement;
  private readonly toolbar: HTMLElement;
  private readonly targetsView = h("div", { class: "targets", "data-testid": "targets" });
  private controller: AbortController | undefined;
  /** The service and label names last loaded, and for what (tenant, type, range). */
  private pickers: { key: string; services: string[]; names: string[] } = { key: "", services: [], names: [] };

  constructor(root: HTMLElement, multitenancy: boolean) {
    this.root = root;
    this.state = parseState(location.search);
    this.api = new Api(new URL(".", location.href).pathname, this.state.tenant);
    const completions = (selector: () => string) => ({
      names: () => this.withRange((s, e) => this.api.labelNames([selector()], s, e)),
      values: (name: string) => this.withRange((s, e) => this.api.labelValues(name, [selector()], s, e)),
    });
    const selectorHost = h("div", { class: "selector-host" });
    this.selector = new SelectorEditor(selectorHost, completions(() => this.typeMatcher()), (text) => this.update({ selector: text, zoom: "" }), "selector");
    const leftHost = h("div", { class: "selector-host" });
    this.leftSelector = new SelectorEditor(leftHost, completions(() => this.typeMatcher()), (text) => this.update({ leftSelector: text, zoom: "" }), "left-selector");
    this.range = new RangeControl("", () => [this.state.from, this.state.until], (from, until) => this.update({ from, until, zoom: "" }));
    this.leftRange = new RangeControl("left-", () => [this.state.leftFrom, this.state.leftUntil], (leftFrom, leftUntil) => this.update({ leftFrom, leftUntil, zoom: "" }));
    const chartHost = h("div", { "data-testid": "series-chart" });
    this.chart = new SeriesChart(chartHost, (start, end) => {
      if (this.state.view === "diff") return;
      this.update({ from: String(start), until: String(end), zoom: "" });
    });
    this.panel = new FlamePanel(this.state, (reload) => (reload ? this.update({}) : this.writeUrl()));

    const tab = (view: ViewState["view"], label: string) => {
      const a = h("a", { href: "#", class: "tab", "data-testid": `tab-${view}` }, label);
      a.addEventListener("click", (e) => {
        e.preventDefault();
        this.update({ view, zoom: "", fn: "" });
      });
      return a;
    };
    const apply = h("button", { type: "button", class: "primary", "data-testid": "apply" }, "Apply");
    apply.addEventListener("click", () => this.update({ selector: this.selector.value, leftSelector: this.leftSelector.value, zoom: "" }));
    this.tenant.value = this.state.tenant;
    this.tenant.hidden = !multitenancy;
    this.tenant.addEventListener("change", () => {
      this.api.tenant = this.tenant.value.trim();
      this.update({ tenant: this.api.tenant, profileType: "" });
      void this.loadProfileTypes();
    });
    this.typeSelect.addEventListener("change", () => this.update({ profileType: this.typeSelect.value, zoom: "", fn: "" }));
    this.serviceSelect.addEventListener("change", () => {
      const selector = withService(this.selector.value, this.serviceSelect.value);
      this.update({ selector, leftSelector: withService(this.leftSelector.value, this.serviceSelect.value), zoom: "", fn: "" });
    });
    this.groupBy.addEventListener("change", () => this.update({ groupBy: this.groupBy.value }));

    this.diffControls = h(
      "div",
      { class: "diff-controls" },
      h("div", { class: "side" }, h("h3", {}, "Baseline"), leftHost, this.leftRange.element),
      h("div", { class: "side" }, h("h3", {}, "Comparison"), h("p", { class: "hint" }, "the selection and range above")),
    );
    this.explore = h("div", { class: "explore-only" }, h("div", { class: "chart-toolbar" }, h("label", {}, "Group by ", this.groupBy)), chartHost);
    root.append(
      h(
        "header",
        {},
        h("span", { class: "brand" }, "Hearth"),
        h("nav", {}, tab("explore", "Explore"), tab("diff", "Diff"), tab("targets", "Targets")),
        this.tenant,
        exportMenu(this.api, () => this.selection(this.state.selector, this.state.from, this.state.until), () => this.state.maxNodes, (e) => this.fail(e)),
      ),
      (this.toolbar = h(
        "div",
        { class: "toolbar" },
        h("label", {}, "Profile type ", this.typeSelect),
        h("label", {}, "Service ", this.serviceSelect),
        selectorHost,
        this.range.element,
        apply,
      )),
      this.diffControls,
      this.banner,
      this.explore,
      this.loading,
      this.empty,
      this.panel.element,
      this.targetsView,
    );
    window.addEventListener("popstate", () => {
      this.state = Object.assign(this.state, parseState(location.search));
      void this.render();
    });
    void this.loadProfileTypes();
  }

  /** The type's matcher, so completions only offer labels of this profile type. */
  private typeMatcher(): string {
    return this.state.profileType ? `{__profile_type__="${this.state.profileType}"}` : "{}";
  }

  private async withRange<T>(call: (start: number, end: number) => Promise<T>): Promise<T> {
    const { start, end } = resolveRange(this.state.from, this.state.until, Date.now());
    return call(start, end);
  }

  private selection(selector: string, from: string, until: string): Selection {
    const { start, end } = resolveRange(from, until, Date.now());
    return { profileType: this.state.profileType, selector, start, end };
  }

  private update(changes: Partial<ViewState>): void {
    Object.assign(this.state, changes);
    history.pushState(null, "", formatState(this.state) || location.pathname);
    void this.render();
  }

  /** The URL follows the state without a new history entry (search typing, zoom). */
  private writeUrl(): void {
    history.replaceState(null, "", formatState(this.state) || location.pathname);
  }

  private fail(e: unknown): void {
    show(this.banner, e instanceof Error ? e.message : String(e));
  }

  private async loadProfileTypes(): Promise<void> {
    try {
      const { start, end } = resolveRange("now-30d", "now", Date.now());
      this.profileTypes = await this.api.profileTypes(start, end);
    } catch (e) {
      this.profileTypes = [];
      this.fail(e);
    }
    if (!this.state.profileType && this.profileTypes.length) {
      const cpu = this.profileTypes.find((t) => t.ID.startsWith("process_cpu:cpu:"));
      this.state.profileType = (cpu ?? this.profileTypes[0]).ID;
      this.writeUrl();
    }
    const options: [string, string][] = this.profileTypes.map((t) => [t.ID, t.ID]);
    if (this.state.profileType && !options.some(([v]) => v === this.state.profileType)) {
      options.unshift([this.state.profileType, this.state.profileType]);
    }
    setOptions(this.typeSelect, options, this.state.profileType);
    await this.render();
  }

  private async loadPickers(signal: AbortSignal): Promise<void> {
    // The options depend on the tenant, the type and the range only: fetched again only when
    // one of them changes, not for a new selector, view or group-by.
    const key = JSON.stringify([this.api.tenant, this.state.profileType, this.state.from, this.state.until]);
    if (key !== this.pickers.key) {
      const { start, end } = resolveRange(this.state.from, this.state.until, Date.now());
      const [services, names] = await Promise.all([
        this.api.labelValues("service_name", [this.typeMatcher()], start, end),
        this.api.labelNames([this.typeMatcher()], start, end),
      ]);
      if (signal.aborted) return;
      this.pickers = { key, services, names };
    }
    const { services, names } = this.pickers;
    const service = serviceOf(this.state.selector);
    const serviceOptions: [string, string][] = [["", "All services"], ...services.map((s): [string, string] => [s, s])];
    if (service && !services.includes(service)) serviceOptions.push([service, service]);
    setOptions(this.serviceSelect, serviceOptions, service);
    const groupOptions: [string, string][] = [["", "none"], ...names.filter((n) => !n.startsWith("__")).map((n): [string, string] => [n, n])];
    setOptions(this.groupBy, groupOptions, this.state.groupBy);
  }

  /** Draws the current state: fetches what the view needs, shows errors and empty states. */
  private async render(): Promise<void> {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const signal = controller.signal;
    const diff = this.state.view === "diff";
    const targets = this.state.view === "targets";
    this.root.dataset.view = this.state.view;
    this.diffControls.hidden = !diff;
    this.explore.hidden = diff || targets;
    this.toolbar.hidden = targets;
    this.targetsView.hidden = !targets;
    for (const a of this.root.querySelectorAll<HTMLElement>("nav .tab")) a.classList.toggle("active", a.dataset.testid === `tab-${this.state.view}`);
    this.selector.value = this.state.selector;
    this.leftSelector.value = this.state.leftSelector;
    this.range.refresh();
    this.leftRange.refresh();
    this.selector.setError(undefined);
    this.leftSelector.setError(undefined);
    show(this.banner, undefined);
    show(this.empty, undefined);
    if (targets) {
      this.panel.element.hidden = true;
      show(this.loading, undefined);
      try {
        renderTargets(this.targetsView, await this.api.targets(signal));
      } catch (e) {
        if (!signal.aborted) this.fail(e);
      }
      return;
    }
    if (!this.state.profileType) {
      show(this.empty, "No profiles yet: push one (see the README) and reload.");
      this.panel.element.hidden = true;
      return;
    }
    show(this.loading, "Loading…");
    const unit = unitOf(this.state.profileType);
    try {
      const right = this.selection(this.state.selector, this.state.from, this.state.until);
      void this.loadPickers(signal).catch(() => undefined);
      let tree: Tree;
      if (diff) {
        const left = this.selection(this.state.leftSelector, this.state.leftFrom, this.state.leftUntil);
        tree = Tree.fromJson(await this.api.diff(left, right, this.state.maxNodes, signal), true);
      } else {
        const step = Math.max(10, Math.round((right.end - right.start) / 1000 / 120));
        const groupBy = this.state.groupBy ? [this.state.groupBy] : [];
        const [flame, series] = await Promise.all([
          this.api.flameGraph(right, this.state.maxNodes, signal),
          this.api.series(right, step, groupBy, signal),
        ]);
        if (signal.aborted) return;
        this.chart.setSeries(series, unit, right.start, right.end);
        tree = Tree.fromJson(flame, false);
      }
      if (signal.aborted) return;
      show(this.loading, undefined);
      const isEmpty = tree.total === 0;
      this.panel.element.hidden = isEmpty;
      if (isEmpty) {
        show(this.empty, "No profiles match this selection in this time range. Widen the range or change the selector.");
      } else {
        this.panel.setTree(tree, unit);
      }
    } catch (e) {
      if (signal.aborted) return;
      show(this.loading, undefined);
      this.panel.element.hidden = true;
      if (e instanceof ApiError && e.code === "invalid_argument" && /selector|matcher|parse|label/i.test(e.message)) {
        // The message quotes the selector it could not read: the diff's baseline or the main one.
        const baseline = diff && this.state.leftSelector !== this.state.selector && e.message.includes(JSON.stringify(this.state.leftSelector));
        (baseline ? this.leftSelector : this.selector).setError(e.message);
      } else {
        this.fail(e);
      }
    }
  }
}

async function start(): Promise<void> {
  let multitenancy = false;
  try {
    const response = await fetch(new URL("ui/config", location.href));
    multitenancy = Boolean(((await response.json()) as { multitenancy_enabled?: boolean }).multitenancy_enabled);
  } catch {
    // An older server: no tenant field.
  }
  const root = document.getElementById("app")!;
  const app = new App(root, multitenancy);
  (window as unknown as { hearth: App }).hearth = app;
}

void start();
