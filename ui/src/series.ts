// The time-series chart of a selection (SelectSeries), one line per group, drawn by uPlot;
// dragging across it selects a range to zoom into.

import uPlot from "uplot";

import type { Series } from "./api";
import { formatValue } from "./flamegraph";

const COLORS = ["#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d"];

/** A series' legend name: its labels, or `total` for the ungrouped sum. */
export function seriesName(series: Series): string {
  const labels = series.labels ?? [];
  return labels.length ? labels.map((l) => `${l.name}=${l.value}`).join(", ") : "total";
}

/** The points of all series aligned on their union of timestamps (seconds), gaps as null. */
export function alignSeries(series: Series[]): uPlot.AlignedData {
  const times = new Set<number>();
  for (const s of series) for (const p of s.points ?? []) times.add(Number(p.timestamp ?? 0) / 1000);
  const xs = [...times].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    for (const p of s.points ?? []) ys[index.get(Number(p.timestamp ?? 0) / 1000)!] = p.value ?? 0;
    return ys;
  });
  return [xs, ...columns];
}

export class SeriesChart {
  private plot: uPlot | undefined;
  private readonly observer: ResizeObserver;
  /** Points drawn by the last `setSeries`, per series (for tests and the empty state). */
  pointCounts: number[] = [];

  constructor(
    private readonly container: HTMLElement,
    private readonly onZoom: (startMs: number, endMs: number) => void,
  ) {
    container.classList.add("series-chart");
    this.observer = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.observer.observe(container);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(200, this.container.clientWidth), height: 180 };
  }

  /** Draws `series` over the selected range (`startMs` to `endMs`), not only where points are. */
  setSeries(series: Series[], unit: string, startMs: number, endMs: number): void {
    this.plot?.destroy();
    this.pointCounts = series.map((s) => s.points?.length ?? 0);
    const options: uPlot.Options = {
      ...this.size(),
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { show: series.length > 0 },
      // The selected range, so one point (or a few) sits where it is in time, not stretched.
      scales: { x: { time: true, range: (): uPlot.Range.MinMax => [startMs / 1000, endMs / 1000] } },
      axes: [{}, { values: (_u, values) => values.map((v) => formatValue(v, unit)), size: 70 }],
      series: [
        {},
        ...series.map((s, i) => ({
          label: seriesName(s),
          stroke: COLORS[i % COLORS.length],
          fill: series.length === 1 ? `${COLORS[0]}22` : undefined,
          width: 1.5,
          points: { show: (s.points?.length ?? 0) < 60 },
          value: (_u: uPlot, v: number | null) => (v == null ? "-" : formatValue(v, unit)),
        })),
      ],
      hooks: {
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 2) return;
            const start = u.posToVal(u.select.left, "x") * 1000;
            const end = u.posToVal(u.select.left + u.select.width, "x") * 1000;
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.onZoom(Math.floor(start), Math.ceil(end));
          },
        ],
      },
    };
    this.plot = new uPlot(options, alignSeries(series), this.container);
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
  }
}
