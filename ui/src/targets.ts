// The Targets view: every scrape target of pull mode with its health, last scrape and last
// error, as `GET /targets` reports them, grouped by job.

import type { ScrapeTarget } from "./api";
import { h } from "./dom";

/** Replaces `host`'s content with a table per job (or a note when nothing is scraped). */
export function renderTargets(host: HTMLElement, targets: ScrapeTarget[]): void {
  if (!targets.length) {
    host.replaceChildren(
      h("div", { class: "notice empty", "data-testid": "targets-empty" }, "No scrape targets: add scrape_configs to the config (see deploy/hearth.yaml)."),
    );
    return;
  }
  const jobs = new Map<string, ScrapeTarget[]>();
  for (const t of targets) jobs.set(t.job, [...(jobs.get(t.job) ?? []), t]);
  const sections = [...jobs.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([job, list]) => {
      const up = list.filter((t) => t.health === "up").length;
      const rows = list
        .sort((a, b) => a.instance.localeCompare(b.instance) || a.profile.localeCompare(b.profile))
        .map((t) =>
          h(
            "tr",
            { "data-testid": "target-row", "data-health": t.health },
            h("td", {}, h("a", { href: t.scrapeUrl }, t.scrapeUrl)),
            h("td", {}, t.profile),
            h("td", { class: `health ${t.health}` }, t.health),
            h("td", {}, Object.entries(t.labels).filter(([k]) => !k.startsWith("__")).map(([k, v]) => `${k}="${v}"`).join(", ")),
            h("td", {}, t.lastScrape ? `${t.lastScrape} (${t.lastScrapeDurationSeconds.toFixed(3)} s)` : "not yet"),
            h("td", { class: "error" }, t.lastError),
          ),
        );
      return h(
        "section",
        { "data-testid": `job-${job}` },
        h("h3", {}, `${job} (${up}/${list.length} up)`),
        h(
          "table",
          { class: "targets-table" },
          h("thead", {}, h("tr", {}, ...["Endpoint", "Profile", "Health", "Labels", "Last scrape", "Error"].map((c) => h("th", {}, c)))),
          h("tbody", {}, ...rows),
        ),
      );
    });
  host.replaceChildren(...sections);
}
