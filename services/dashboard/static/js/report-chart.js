// A worker's time per activity state, one stacked bar per day (or week), drawn as
// plain SVG, with the same figures as a table for screen readers and for reading
// exact values.
import { duration, h } from "./dom.js";

// The workers report's fields, bottom of the bar to top; the colours are told apart in print too.
export const ACTIVITY_STATES = [
  ["walking_s", "Walking", "#1e88e5"],
  ["running_s", "Running", "#8e24aa"],
  ["still_s", "Still", "#90a4ae"],
  ["lying_s", "Lying", "#e53935"],
  ["off_foot_s", "Off foot", "#fb8c00"],
];
// The drawing is as wide as the page shows it (a phone's 330 px, a desk's 700), so that its
// 11 px labels read at 11 px; between these bounds.
const WIDTHS = { least: 300, most: 760, unknown: 640 };
const HEIGHT = 180;
const MARGIN = { top: 10, right: 8, bottom: 24, left: 40 };
const NICE_HOURS = [1, 2, 4, 6, 8, 12, 16, 24, 48, 72, 96, 120, 144, 168];
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Seconds of activity a report item counts (the states the chart stacks). */
export function activeSeconds(item) {
  return item ? ACTIVITY_STATES.reduce((sum, [field]) => sum + (item[field] ?? 0), 0) : 0;
}

/** The drawing's width for a container of that many pixels (0: not laid out, hidden). */
export function chartWidth(pixels) {
  return pixels > 0 ? Math.max(WIDTHS.least, Math.min(WIDTHS.most, Math.floor(pixels))) : WIDTHS.unknown;
}

/** The chart's top in hours: the tallest bar of any worker, rounded up, so that charts compare. */
export function scaleHours(tallestSeconds) {
  const hours = tallestSeconds / 3600;
  return NICE_HOURS.find((nice) => nice >= hours) ?? Math.ceil(hours / 24) * 24;
}

export function legend() {
  return h("ul", { class: "chart-legend", "aria-hidden": "true" }, ACTIVITY_STATES.map(([, label, colour]) =>
    h("li", {}, h("span", { class: "swatch", style: `background:${colour}` }), label)));
}

function tip(bucket, item) {
  const parts = ACTIVITY_STATES.filter(([field]) => item?.[field]).map(([field, label]) =>
    `${label.toLowerCase()} ${duration(item[field])}`);
  return `${bucket.label}: ${parts.length ? parts.join(", ") : "no activity"}`;
}

/**
 * One worker's figure. `perBucket` maps a bucket's key to the worker's report item for it
 * (missing: nothing recorded); `unit` is "day" or "week"; `topHours` the shared scale;
 * `width` from chartWidth().
 */
export function activityChart(worker, buckets, perBucket, { unit, topHours, width }) {
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const slot = plotWidth / buckets.length;
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  const y = (seconds) => (seconds / 3600 / topHours) * plotHeight;
  const labelEvery = Math.ceil(buckets.length / Math.floor(plotWidth / 52)); // dates that do not touch

  const grid = [0, topHours / 2, topHours].map((hours) => {
    const at = MARGIN.top + plotHeight - y(hours * 3600);
    return svg("g", { class: "chart-grid" },
      svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: at, y2: at }),
      svg("text", { x: MARGIN.left - 6, y: at + 4, "text-anchor": "end" }, `${hours} h`));
  });
  const bars = buckets.map((bucket, index) => {
    const item = perBucket.get(bucket.key);
    const x = MARGIN.left + slot * index + (slot - barWidth) / 2;
    let base = MARGIN.top + plotHeight;
    const segments = ACTIVITY_STATES.filter(([field]) => item?.[field] > 0).map(([field, , colour]) => {
      const height = y(item[field]);
      base -= height;
      return svg("rect", { x, y: base, width: barWidth, height, fill: colour, "data-state": field });
    });
    const date = index % labelEvery === 0
      ? svg("text", { class: "chart-date", x: x + barWidth / 2, y: HEIGHT - 6, "text-anchor": "middle" }, bucket.label)
      : null;
    return svg("g", { class: "chart-bar", "data-testid": `chart-bar-${worker.imei}-${bucket.key}`,
      "data-seconds": activeSeconds(item) }, svg("title", {}, tip(bucket, item)), segments, date);
  });
  const busiest = buckets.reduce((best, bucket) =>
    (activeSeconds(perBucket.get(bucket.key)) > activeSeconds(perBucket.get(best?.key)) ? bucket : best), null);
  const summary = `Time per activity state, one bar per ${unit}, for ${worker.name}` +
    (busiest ? `; busiest ${unit} ${busiest.label} with ${duration(activeSeconds(perBucket.get(busiest.key)))}` : "");
  const chart = svg("svg", { class: "activity-chart", viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
    "aria-label": summary, preserveAspectRatio: "xMidYMid meet" }, grid, bars);

  return h("figure", { class: "report-worker", "data-testid": `activity-chart-${worker.imei}`, "data-imei": worker.imei },
    h("figcaption", {}, h("strong", { text: worker.name }), h("span", { class: "muted", text: ` ${worker.imei}` })),
    chart, legend(), figuresTable(worker, buckets, perBucket, unit));
}

function figuresTable(worker, buckets, perBucket, unit) {
  const head = h("tr", {}, h("th", { scope: "col", text: unit === "week" ? "Week of" : "Day" }),
    ACTIVITY_STATES.map(([, label]) => h("th", { scope: "col", text: label })));
  const rows = buckets.map((bucket) => {
    const item = perBucket.get(bucket.key);
    return h("tr", {}, h("th", { scope: "row", text: bucket.label }),
      ACTIVITY_STATES.map(([field]) => h("td", { text: item?.[field] ? duration(item[field]) : "—" })));
  });
  return h("details", { class: "chart-table no-print" }, h("summary", { text: "Figures as a table" }),
    h("div", { class: "table-scroll" }, h("table", { class: "report-table" },
      h("caption", { class: "visually-hidden", text: `${worker.name}: time per activity state per ${unit}` }),
      h("thead", {}, head), h("tbody", {}, rows))));
}
