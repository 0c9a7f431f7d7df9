// The server's query API as the UI calls it: Connect JSON on querier.v1 (the same calls
// Grafana's Pyroscope datasource makes) and the legacy render endpoint for exports.

import type { FlameGraphJson } from "./tree";

/** An error the server answered, with its Connect code and message. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ProfileType {
  ID: string;
  name?: string;
  sampleType?: string;
  sampleUnit?: string;
  periodType?: string;
  periodUnit?: string;
}

export interface LabelPair {
  name: string;
  value: string;
}

export interface Series {
  labels?: LabelPair[];
  points?: { value?: number; timestamp?: string }[];
}

/** A selection: a profile type, a label selector and a time range in Unix milliseconds. */
export interface Selection {
  profileType: string;
  selector: string;
  start: number;
  end: number;
}

/** One target of pull mode, as `GET /targets` lists it. */
export interface ScrapeTarget {
  job: string;
  instance: string;
  profile: string;
  scrapeUrl: string;
  labels: Record<string, string>;
  health: "up" | "down" | "unknown";
  lastScrape: string | null;
  lastScrapeDurationSeconds: number;
  lastError: string;
  scrapes: number;
}

/** Talks to one Hearth server as one tenant (`X-Scope-OrgID` when set). */
export class Api {
  constructor(
    private readonly base: string,
    public tenant: string,
  ) {}

  private headers(json: boolean): Record<string, string> {
    const headers: Record<string, string> = {};
    if (json) headers["Content-Type"] = "application/json";
    if (this.tenant) headers["X-Scope-OrgID"] = this.tenant;
    return headers;
  }

  /** One Connect unary call with a JSON body. */
  async call<T>(method: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const response = await fetch(`${this.base}querier.v1.QuerierService/${method}`, {
      method: "POST",
      headers: this.headers(true),
      body: JSON.stringify(body),
      signal,
    });
    const text = await response.text();
    if (!response.ok) {
      let code = String(response.status);
      let message = text || response.statusText;
      try {
        const error = JSON.parse(text) as { code?: string; message?: string };
        code = error.code ?? code;
        message = error.message ?? message;
      } catch {
        // Not Connect's error JSON (a proxy's page, say): keep the text.
      }
      throw new ApiError(code, message);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }

  async profileTypes(start: number, end: number): Promise<ProfileType[]> {
    const answer = await this.call<{ profileTypes?: ProfileType[] }>("ProfileTypes", { start, end });
    return answer.profileTypes ?? [];
  }

  async labelNames(matchers: string[], start: number, end: number): Promise<string[]> {
    const answer = await this.call<{ names?: string[] }>("LabelNames", { matchers, start, end });
    return answer.names ?? [];
  }

  async labelValues(name: string, matchers: string[], start: number, end: number): Promise<string[]> {
    const answer = await this.call<{ names?: string[] }>("LabelValues", { name, matchers, start, end });
    return answer.names ?? [];
  }

  async flameGraph(s: Selection, maxNodes: number, signal?: AbortSignal): Promise<FlameGraphJson | undefined> {
    const answer = await this.call<{ flamegraph?: FlameGraphJson }>(
      "SelectMergeStacktraces",
      { profile_typeID: s.profileType, label_selector: s.selector, start: s.start, end: s.end, max_nodes: maxNodes },
      signal,
    );
    return answer.flamegraph;
  }

  async diff(left: Selection, right: Selection, maxNodes: number, signal?: AbortSignal): Promise<FlameGraphJson | undefined> {
    const side = (s: Selection) => ({
      profile_typeID: s.profileType,
      label_selector: s.selector,
      start: s.start,
      end: s.end,
      max_nodes: maxNodes,
    });
    const answer = await this.call<{ flamegraph?: FlameGraphJson }>("Diff", { left: side(left), right: side(right) }, signal);
    return answer.flamegraph;
  }

  async series(s: Selection, step: number, groupBy: string[], signal?: AbortSignal): Promise<Series[]> {
    const answer = await this.call<{ series?: Series[] }>(
      "SelectSeries",
      { profile_typeID: s.profileType, label_selector: s.selector, start: s.start, end: s.end, step, group_by: groupBy },
      signal,
    );
    return answer.series ?? [];
  }

  /** The legacy render URL of a selection in `format` (json, svg, collapsed, pprof). */
  renderUrl(s: Selection, format: string, maxNodes: number): string {
    const params = new URLSearchParams({
      query: `${s.profileType}${s.selector}`,
      from: String(Math.floor(s.start / 1000)),
      until: String(Math.ceil(s.end / 1000)),
      format,
      "max-nodes": String(maxNodes),
    });
    return `${this.base}pyroscope/render?${params}`;
  }

  /** The scrape targets (`GET /targets`). */
  async targets(signal?: AbortSignal): Promise<ScrapeTarget[]> {
    const response = await fetch(`${this.base}targets`, { signal });
    if (!response.ok) throw new ApiError(String(response.status), await response.text());
    const body = (await response.json()) as { activeTargets?: ScrapeTarget[] };
    return body.activeTargets ?? [];
  }

  /** Fetches `url` with the tenant header and hands it to the browser as a download. */
  async download(url: string, filename: string): Promise<void> {
    const response = await fetch(url, { headers: this.headers(false) });
    if (!response.ok) throw new ApiError(String(response.status), await response.text());
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }
}
