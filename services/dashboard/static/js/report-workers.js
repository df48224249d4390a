// The workers report (GET /api/v1/reports/workers, CONTRACT §9): a table over the
// whole range with its CSV, and a chart per worker of the time in each activity
// state per day, from GET /api/v1/reports/activity: every worker's figures per day
// of this browser's time zone in one read (summed per week over 31 days).
import { compareNames, duration, h } from "./dom.js";
import { messageLine, say } from "./forms.js";
import { activeSeconds, activityChart, chartWidth, scaleHours } from "./report-chart.js";
import { bucketsOf, dayKey, isoRange } from "./report-range.js";

const PAGE = 1000; // the API's largest page
const CHARTS_AT_ONCE = 50; // a big tenant's charts come 50 at a time ("Show more")
const TIME_COLUMNS = [
  ["online_s", "Online"], ["walking_s", "Walking"], ["running_s", "Running"], ["still_s", "Still"],
  ["lying_s", "Lying"], ["off_foot_s", "Off foot"],
];

function distance(item, visible) {
  if (item.distance_m === null || item.distance_m === undefined) return visible ? "—" : "hidden";
  return item.distance_m >= 1000 ? `${(item.distance_m / 1000).toFixed(1)} km` : `${Math.round(item.distance_m)} m`;
}

const SUMMED = ["distance_m", "online_s", "walking_s", "running_s", "still_s", "lying_s", "off_foot_s", "steps"];

/** Each worker's figures over one bucket (a day, or a week of days), as the chart reads an item. */
function bucketFigures(workers, bucket) {
  const first = dayKey(bucket.start);
  const after = dayKey(bucket.end); // the bucket's end is the next bucket's first day
  return workers.map((worker) => {
    const item = { imei: worker.imei, name: worker.name };
    for (const field of SUMMED) item[field] = 0;
    for (const day of worker.days) {
      if (day.date < first || day.date >= after) continue;
      for (const field of SUMMED) item[field] += day[field] ?? 0;
    }
    return item;
  });
}

export class WorkersReport {
  /** context: api, limit, saveCsv(button, line, path, name), explain(error, what); sets positionsShown. */
  constructor(tableRoot, chartsRoot, context) {
    this.context = context;
    this.generation = 0;
    this.message = messageLine("report-workers-message");
    this.table = h("div", { class: "stack", "data-testid": "report-workers-body" });
    this.csv = h("button", { type: "button", class: "quiet no-print", "data-testid": "report-workers-csv",
      text: "Download CSV", disabled: true,
      onclick: () => this.context.saveCsv(this.csv, this.message, "api/v1/reports/workers", "workers-report") });
    tableRoot.append(h("div", { class: "report-section-head" }, h("h3", { text: "Workers" }), this.csv),
      this.message, this.table);
    this.chartsMessage = messageLine("report-activity-message");
    this.chartsNote = h("p", { class: "muted", "data-testid": "report-activity-note" });
    this.charts = h("div", { class: "report-charts", "data-testid": "report-charts" });
    chartsRoot.append(h("h3", { text: "Activity" }), this.chartsNote, this.chartsMessage, this.charts);
  }

  async load(range) {
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.csv.disabled = true;
    say(this.message, "");
    say(this.chartsMessage, "");
    this.table.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    this.charts.replaceChildren();
    const { unit, buckets } = bucketsOf(range);
    this.chartsNote.textContent = unit === "week"
      ? "More than 31 days: one bar per week, from the first day of the range."
      : "One bar per day, in this browser's time zone.";
    this.chartsNote.dataset.unit = unit;

    const whole = this._whole(range).then((report) => {
      if (!current()) return null;
      this.context.positionsShown = report.visible; // the trips say so when positions are hidden
      this.table.replaceChildren(this._table(report));
      this.csv.disabled = false;
      return report;
    }, (error) => {
      if (current()) {
        this.table.replaceChildren();
        say(this.message, this.context.explain(error, "load the workers report"));
      }
      return null;
    });
    this.charts.replaceChildren(h("p", { class: "muted", text: "Loading the activity per day…" }));
    try {
      const workers = await this._days(range);
      const perBucket = buckets.map((bucket) => bucketFigures(workers, bucket));
      const report = await whole;
      if (current()) this._charts(report?.items ?? [], buckets, perBucket, unit);
    } catch (error) {
      if (!current()) return;
      this.charts.replaceChildren();
      say(this.chartsMessage, this.context.explain(error, "load the activity per day"));
    }
  }

  /** Every worker's figures per day of this browser's time zone, following the pages. */
  async _days(range) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const workers = [];
    let cursor = null;
    do {
      const page = await this.context.limit.run(() => this.context.api.get("api/v1/reports/activity",
        { ...isoRange(range), tz: zone, limit: PAGE, cursor }));
      workers.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return workers;
  }

  reset() {
    this.generation += 1;
    this.table.replaceChildren();
    this.charts.replaceChildren();
    this.chartsNote.textContent = "";
    say(this.message, "");
    say(this.chartsMessage, "");
    this.csv.disabled = true;
  }

  /** Every worker's figures over the whole range, following the pages; and whether distances are shown. */
  async _whole(range) {
    const items = [];
    let cursor = null;
    let visible = true;
    do {
      const page = await this.context.limit.run(() => this.context.api.get("api/v1/reports/workers",
        { ...isoRange(range), limit: PAGE, cursor }));
      visible = page.location_visible ?? visible;
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return { items: items.sort((a, b) => compareNames(a.name, b.name)), visible };
  }

  _table({ items, visible }) {
    if (items.length === 0) return h("p", { class: "empty", text: "No worker in this tenant." });
    const head = ["Worker", "Distance", ...TIME_COLUMNS.map(([, label]) => label), "Steps", "Alerts",
      "Time to acknowledge (median / p90 / max)"];
    const rows = items.map((item) => {
      const alerts = Object.entries(item.alerts ?? {}).filter(([, count]) => count > 0);
      const total = alerts.reduce((sum, [, count]) => sum + count, 0);
      const ack = item.time_to_ack_s ?? {};
      return h("tr", { "data-testid": `report-worker-${item.imei}`, "data-imei": item.imei },
        h("th", { scope: "row" }, item.name, h("span", { class: "muted block", text: item.imei })),
        h("td", { "data-field": "distance", text: distance(item, visible) }),
        TIME_COLUMNS.map(([field]) => h("td", { "data-field": field, text: duration(item[field] ?? 0) })),
        h("td", { "data-field": "steps", text: (item.steps ?? 0).toLocaleString() }),
        h("td", { "data-field": "alerts", title: alerts.map(([kind, count]) => `${kind} ${count}`).join(", ") || null,
          text: String(total) }),
        h("td", { "data-field": "time_to_ack", text: ack.median === null || ack.median === undefined
          ? "—" : `${duration(ack.median)} / ${duration(ack.p90)} / ${duration(ack.max)}` }));
    });
    const note = visible ? null : h("p", { class: "muted", "data-testid": "report-distance-hidden",
      text: "Distances are hidden: this tenant shows positions only during shifts or alerts." });
    return h("div", { class: "stack" }, note, h("div", { class: "table-scroll" },
      h("table", { class: "report-table", "data-testid": "report-workers-table" },
        h("caption", { class: "visually-hidden", text: "Each worker's figures over the range" }),
        h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col", text: label })))),
        h("tbody", {}, rows))));
  }

  _charts(workers, buckets, perBucket, unit) {
    // imei → (bucket key → that worker's item)
    const byWorker = new Map(workers.map((worker) => [worker.imei, { worker, figures: new Map() }]));
    perBucket.forEach((items, index) => {
      for (const item of items) {
        if (!byWorker.has(item.imei)) byWorker.set(item.imei, { worker: item, figures: new Map() });
        byWorker.get(item.imei).figures.set(buckets[index].key, item);
      }
    });
    const all = [...byWorker.values()].sort((a, b) => compareNames(a.worker.name, b.worker.name));
    const active = all.filter(({ figures }) => [...figures.values()].some((item) => activeSeconds(item) > 0));
    const idle = all.filter((entry) => !active.includes(entry));
    const tallest = Math.max(0, ...active.flatMap(({ figures }) => [...figures.values()].map(activeSeconds)));
    // The figure's border and padding take 22 px of the list's width.
    const options = { unit, topHours: scaleHours(tallest), width: chartWidth(this.charts.clientWidth - 22) };
    const idleNote = idle.length ? h("p", { class: "muted", "data-testid": "report-idle-workers",
      text: `No activity recorded for ${idle.map(({ worker }) => worker.name).join(", ")}.` }) : null;
    if (active.length === 0) {
      this.charts.replaceChildren(h("p", { class: "empty", text: "No activity recorded in this range." }));
      return;
    }
    let shown = 0;
    const more = h("button", { type: "button", class: "quiet no-print", "data-testid": "report-charts-more" });
    const showMore = () => {
      const next = active.slice(shown, shown + CHARTS_AT_ONCE);
      more.before(...next.map(({ worker, figures }) => activityChart(worker, buckets, figures, options)));
      shown += next.length;
      more.hidden = shown >= active.length;
      more.textContent = `Show ${Math.min(CHARTS_AT_ONCE, active.length - shown)} more of ${active.length - shown}`;
    };
    more.addEventListener("click", showMore);
    this.charts.replaceChildren(...[more, idleNote].filter(Boolean));
    showMore();
  }
}
