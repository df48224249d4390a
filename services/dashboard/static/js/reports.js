// The Reports view (every role; fetched the first time it is opened): a range, then
// the team's response times, each worker's figures and activity per day, and one
// worker's trips and stops on the map; each as CSV, and the whole page printable.
import { byTestId, h } from "./dom.js";
import { download } from "./export.js";
import { explain, say } from "./forms.js";
import { ResponseTimesReport } from "./report-alerts.js";
import { RangePicker, dayKey, describeRange, isoRange, lastDay } from "./report-range.js";
import { TripsReport } from "./report-trips.js";
import { WorkersReport } from "./report-workers.js";

const IN_FLIGHT = 4; // requests at once: a month's chart asks for 30 days

/** Runs at most `width` tasks at once, the others waiting their turn in order. */
class Limiter {
  constructor(width) {
    this.width = width;
    this.running = 0;
    this.waiting = [];
  }

  run(task) {
    return new Promise((resolve, reject) => {
      this.waiting.push(() => task().then(resolve, reject));
      this._next();
    });
  }

  _next() {
    while (this.running < this.width && this.waiting.length) {
      this.running += 1;
      this.waiting.shift()().finally(() => {
        this.running -= 1;
        this._next();
      });
    }
  }
}

export class ReportsPanel {
  /** context: api, store, map (WorkerMap), viewMap() (phones: show the map). */
  constructor(root, { api, store, map, viewMap }) {
    this.root = root;
    this.api = api;
    this.range = null;
    this.loaded = false;
    const context = this.context = {
      api, store, map, viewMap,
      limit: new Limiter(IN_FLIGHT),
      explain,
      positionsShown: null, // whether the tenant shows every position (the workers report says)
      saveCsv: (button, line, path, stem, query) => this._saveCsv(button, line, path, stem, query),
    };
    this.picker = new RangePicker((range) => this.load(range));
    this.heading = h("p", { class: "report-range-label", "data-testid": "reports-range-label" });
    const print = h("button", { type: "button", class: "quiet no-print", "data-testid": "reports-print", text: "Print",
      onclick: () => window.print() });
    const section = (testid) => h("section", { class: "report-section", "data-testid": testid });
    const [alerts, table, charts, trips] = ["report-alerts", "report-workers", "report-activity", "report-trips"]
      .map(section);
    root.append(
      h("div", { class: "report-head" }, h("h2", { class: "report-title", text: "Reports" }), print),
      this.heading, this.picker.element, alerts, table, trips, charts); // the long part last
    this.trips = new TripsReport(trips, context);
    this.sections = [new ResponseTimesReport(alerts, context), new WorkersReport(table, charts, context), this.trips];
  }

  /** The view was opened: the first time, the last 7 days. */
  open() {
    if (!this.loaded) this.picker.choose("7d");
    else this.trips.refreshWorkers();
  }

  load(range) {
    this.loaded = true;
    this.range = range;
    const tenant = byTestId("tenant-name")?.textContent;
    this.heading.textContent = `${tenant ? `${tenant} · ` : ""}${describeRange(range)}`;
    for (const section of this.sections) section.load(range);
  }

  /** Signed out: nothing of this tenant's stays on the page. */
  reset() {
    this.loaded = false;
    this.range = null;
    this.heading.textContent = "";
    this.context.positionsShown = null;
    for (const section of this.sections) section.reset();
  }

  /**
   * A report's `format=csv` saved as a file. The API wants the bearer token, which a plain
   * link cannot send: fetched here, then handed to the browser as the track export is.
   */
  async _saveCsv(button, line, path, stem, query = {}) {
    if (!this.range) return;
    button.disabled = true;
    say(line, "");
    try {
      const text = await this.api.text(path, { ...isoRange(this.range), ...query, format: "csv" });
      download(`${stem}-${dayKey(this.range.since)}-${dayKey(lastDay(this.range))}.csv`, "text/csv", text);
    } catch (error) {
      const text = explain(error, "download the CSV");
      if (text) say(line, text);
    } finally {
      button.disabled = false;
    }
  }
}
