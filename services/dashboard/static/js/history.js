// History: a worker's track over a chosen time range, drawn on the map with the
// alerts raised meanwhile, and exported as GeoJSON or CSV.
import { ApiError, SessionEnded } from "./api.js";
import { KIND_LABELS, byTestId, clock, compareNames, h, toLocalInput } from "./dom.js";
import { download, trackLength, trackToCsv, trackToGeoJson } from "./export.js";

const PAGE = 1000;
const LATE_ALERT_MARGIN_MS = 10 * 60 * 1000; // an alarm's device time may precede its receipt

export class HistoryPanel {
  /** actions: error(message), trackShown(). */
  constructor(root, store, api, map, actions) {
    this.store = store;
    this.api = api;
    this.map = map;
    this.actions = actions;
    this.form = byTestId("history-form", root);
    this.worker = byTestId("history-worker", root);
    this.since = byTestId("history-since", root);
    this.until = byTestId("history-until", root);
    this.submit = byTestId("history-show", root);
    this.result = byTestId("history-result", root);
    this.summary = byTestId("history-summary", root);
    this.alertList = byTestId("history-alerts", root);
    this.track = null;
    this.setRange(1);
    for (const preset of root.querySelectorAll("[data-hours]")) {
      preset.addEventListener("click", () => this.setRange(Number(preset.dataset.hours)));
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    byTestId("history-export-geojson", root).addEventListener("click", () => this.export("geojson"));
    byTestId("history-export-csv", root).addEventListener("click", () => this.export("csv"));
    byTestId("history-clear", root).addEventListener("click", () => this.clear());
  }

  setRange(hours) {
    const until = new Date();
    until.setMilliseconds(0);
    until.setSeconds(until.getSeconds() + 60); // include what arrives while the supervisor looks
    this.since.value = toLocalInput(new Date(until.getTime() - hours * 3600_000));
    this.until.value = toLocalInput(until);
  }

  refreshWorkers() {
    const selected = this.worker.value;
    const devices = [...this.store.devices.values()].sort((a, b) => compareNames(a.name, b.name));
    const current = [...this.worker.options].map((o) => o.value).join();
    if (current === devices.map((d) => d.imei).join()) return;
    this.worker.replaceChildren(...devices.map((d) => h("option", { value: d.imei, text: `${d.name} (${d.imei})` })));
    if (selected && this.store.devices.has(selected)) this.worker.value = selected;
  }

  /** The last hour of one worker, as from its details on the map. */
  show(imei) {
    this.refreshWorkers();
    this.worker.value = imei;
    this.setRange(1);
    return this.load();
  }

  async load() {
    const imei = this.worker.value;
    const since = new Date(this.since.value);
    const until = new Date(this.until.value);
    if (!imei || Number.isNaN(since.getTime()) || Number.isNaN(until.getTime()) || since >= until) {
      this.actions.error("Choose a worker and a time range whose start is before its end.");
      return;
    }
    const device = this.store.devices.get(imei) ?? { imei, name: imei };
    this.submit.disabled = true;
    this.result.hidden = false;
    this.summary.textContent = "Loading…";
    this.alertList.replaceChildren();
    try {
      const positions = await this.api.all(`api/v1/devices/${imei}/positions`,
        { since: since.toISOString(), until: until.toISOString(), limit: PAGE },
        { onPage: (count) => { this.summary.textContent = `Loading… ${count} positions`; } });
      const alerts = (await this.api.all("api/v1/alerts", { imei, limit: 200 },
        { stop: (a) => Date.parse(a.created_at) < since.getTime() - LATE_ALERT_MARGIN_MS }))
        .filter((a) => Date.parse(a.ts) >= since.getTime() && Date.parse(a.ts) <= until.getTime());
      this.track = { device, positions, alerts, since: since.toISOString(), until: until.toISOString() };
      this.map.showTrack(positions, alerts);
      this._summarise();
      this.actions.trackShown();
    } catch (error) {
      this.summary.textContent = "";
      this.result.hidden = true;
      if (error instanceof SessionEnded) return;
      const reason = error instanceof ApiError && error.status === 404 ? "this worker no longer exists" : error.message;
      this.actions.error(`Could not load the track: ${reason}`);
    } finally {
      this.submit.disabled = false;
    }
  }

  _summarise() {
    const { device, positions, alerts, since, until } = this.track;
    const km = (trackLength(positions) / 1000).toFixed(2);
    this.summary.textContent = `${device.name}: ${positions.length} positions, ${km} km, ` +
      `${alerts.length} alert${alerts.length === 1 ? "" : "s"} · ${clock(since)} – ${clock(until)}`;
    this.summary.dataset.points = String(positions.length);
    this.summary.dataset.alerts = String(alerts.length);
    this.alertList.replaceChildren(...alerts.map((alert) => h("li", { "data-testid": `history-alert-${alert.id}` },
      h("span", { class: `kind kind-${alert.kind}`, text: KIND_LABELS[alert.kind] ?? alert.kind }),
      h("span", { class: "row-main", text: ` ${clock(alert.ts)} · ${alert.status}` }))));
    this.alertList.prepend(h("li", { class: "phone-only" }, h("button", { type: "button", class: "primary",
      "data-testid": "history-view-map", onclick: () => this.actions.viewMap(), text: "View on map" })));
  }

  async export(format) {
    if (!this.track) return;
    const { device, alerts, since, until } = this.track;
    let positions;
    try {
      // Read again, saying it is for a file: the server's audit log records an export
      // (`export.read`) apart from a look at the track (`positions.read`).
      positions = await this.api.all(`api/v1/devices/${device.imei}/positions`,
        { since, until, limit: PAGE, export: format });
    } catch (error) {
      if (error instanceof SessionEnded) return;
      this.actions.error(`Could not export the track: ${error.message}`);
      return;
    }
    const stem = `track-${device.imei}-${since.slice(0, 19).replaceAll(":", "")}`;
    if (format === "csv") download(`${stem}.csv`, "text/csv", trackToCsv(device, positions));
    else download(`${stem}.geojson`, "application/geo+json", trackToGeoJson(device, positions, alerts, { since, until }));
  }

  clear() {
    this.track = null;
    this.result.hidden = true;
    this.map.clearTrack();
  }
}
