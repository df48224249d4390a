// One worker's trips and stops over the report's range (GET /api/v1/devices/{imei}/trips,
// CONTRACT §9): a list, and on the map a marker per stop with its duration and a line
// per trip from its start to its end. Choosing a trip in the list draws the route the
// worker took, from the positions API (one request, for that trip's time only).
import { clock, compareNames, duration, h } from "./dom.js";
import { field, messageLine, say } from "./forms.js";
import { isoRange } from "./report-range.js";

const L = window.L;
const PAGE = 1000;
const TRIP_STYLE = { color: "#1565c0", weight: 4, opacity: 0.85, dashArray: "8 8" };
const ROUTE_STYLE = { color: "#1565c0", weight: 4, opacity: 0.9 };

function distanceText(metres) {
  return metres >= 1000 ? `${(metres / 1000).toFixed(2)} km` : `${Math.round(metres)} m`;
}

const at = (position) => (position ? [position.lat, position.lon] : null);

export class TripsReport {
  /** context: api, store, map (WorkerMap), limit, saveCsv, explain, viewMap(), positionsShown. */
  constructor(root, context) {
    this.context = context;
    this.range = null;
    this.shown = null; // { imei, items, thresholds }: on the map and in the list
    this.generation = 0;
    this.worker = h("select", { name: "imei", required: true, "data-testid": "report-trips-worker" });
    this.minStop = h("input", { type: "number", name: "min_stop", min: 1, max: 1440, step: 1, value: 5,
      required: true, "data-testid": "report-trips-min-stop" });
    this.minTrip = h("input", { type: "number", name: "min_trip", min: 0, max: 100000, step: 10, value: 100,
      required: true, "data-testid": "report-trips-min-trip" });
    this.submit = h("button", { type: "submit", class: "primary", "data-testid": "report-trips-show",
      text: "Show trips and stops" });
    this.message = messageLine("report-trips-message");
    this.summary = h("p", { class: "summary", "data-testid": "report-trips-summary" });
    this.list = h("ol", { class: "rows trip-list", "data-testid": "report-trips-list" });
    this.csv = h("button", { type: "button", class: "quiet", "data-testid": "report-trips-csv", text: "Download CSV",
      onclick: () => this._csv() });
    this.result = h("div", { class: "stack", hidden: true },
      this.summary, h("div", { class: "button-row no-print" }, this.csv,
        h("button", { type: "button", class: "primary phone-only", "data-testid": "report-trips-view-map",
          text: "View on map", onclick: () => this.context.viewMap() })),
      this.list);
    const form = h("form", { class: "stack no-print", "data-testid": "report-trips-form", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this.show();
      } },
    field("Worker", this.worker),
    h("div", { class: "two" }, field("Shortest stop (minutes)", this.minStop), field("Shortest trip (metres)", this.minTrip)),
    h("div", { class: "button-row" }, this.submit));
    root.append(h("h3", { text: "Trips and stops" }), form, this.message, this.result);
    // Workers come, go and are renamed (detail.imeis null); moves alone change nothing here.
    context.store.addEventListener("devices", (event) => {
      if (!event.detail.imeis) this.refreshWorkers();
    });
  }

  /** The worker choice, from the devices the page knows. */
  refreshWorkers() {
    const selected = this.worker.value;
    const devices = [...this.context.store.devices.values()].sort((a, b) => compareNames(a.name, b.name));
    const labels = devices.map((d) => `${d.name} (${d.imei})`);
    if ([...this.worker.options].map((o) => o.text).join("\n") === labels.join("\n")) return;
    this.worker.replaceChildren(...devices.map((d, index) => h("option", { value: d.imei, text: labels[index] })));
    if (selected && this.context.store.devices.has(selected)) this.worker.value = selected;
  }

  /** A new range: the worker shown, if any, is shown again for it. */
  load(range) {
    this.range = range;
    this.refreshWorkers();
    if (this.shown) this.show();
  }

  reset() {
    this.generation += 1;
    this.shown = null;
    this.result.hidden = true;
    this.list.replaceChildren();
    say(this.message, "");
  }

  _thresholds() {
    const minutes = Number(this.minStop.value);
    const metres = Number(this.minTrip.value);
    if (!(Number.isInteger(minutes) && minutes >= 1 && minutes <= 1440)) throw new Error("Shortest stop: 1 to 1440 minutes.");
    if (!(Number.isFinite(metres) && metres >= 0 && metres <= 100000)) throw new Error("Shortest trip: 0 to 100000 metres.");
    return { min_stop_s: minutes * 60, min_trip_m: metres };
  }

  async show() {
    const imei = this.worker.value;
    if (!this.range) return;
    if (!imei) {
      say(this.message, "Choose a worker.");
      return;
    }
    let thresholds;
    try {
      thresholds = this._thresholds();
    } catch (error) {
      say(this.message, error.message);
      return;
    }
    const generation = ++this.generation;
    this.submit.disabled = true;
    say(this.message, "");
    try {
      const items = await this.context.limit.run(() => this.context.api.all(`api/v1/devices/${imei}/trips`,
        { ...isoRange(this.range), ...thresholds, limit: PAGE }));
      if (generation !== this.generation) return;
      this.shown = { imei, items, thresholds };
      this._list(items);
      this._draw(items);
    } catch (error) {
      if (generation === this.generation) say(this.message, this.context.explain(error, "load the trips and stops"));
    } finally {
      if (generation === this.generation) this.submit.disabled = false;
    }
  }

  _list(items) {
    const stops = items.filter((item) => item.type === "stop");
    const trips = items.filter((item) => item.type === "trip");
    const metres = trips.reduce((sum, trip) => sum + (trip.distance_m ?? 0), 0);
    const name = this.context.store.devices.get(this.shown.imei)?.name ?? this.shown.imei;
    this.summary.textContent = items.length === 0
      ? `${name}: no trip or stop in this range.`
      : `${name}: ${stops.length} stop${stops.length === 1 ? "" : "s"}, ${trips.length} trip${trips.length === 1 ? "" : "s"}` +
        ` (${distanceText(metres)}).`;
    if (this.context.positionsShown === false) {
      this.summary.textContent += " This tenant shows positions only during shifts or around alerts:" +
        " trips and stops are made of those alone.";
    }
    this.list.replaceChildren(...items.map((item, index) => {
      const what = item.type === "stop"
        ? `Stop, ${duration(item.duration_s)}`
        : `Trip, ${distanceText(item.distance_m ?? 0)} in ${duration(item.duration_s)}`;
      return h("li", { class: `trip-row trip-${item.type}`, "data-testid": `report-trip-${index}`, "data-type": item.type },
        h("button", { type: "button", class: "trip-button", onclick: () => this._focus(item) },
          h("span", { class: "row-title", text: what }),
          h("span", { class: "muted", text: `${clock(item.start)} – ${clock(item.end)}` })));
    }));
    this.result.hidden = false;
  }

  _draw(items) {
    const layers = [];
    items.forEach((item, index) => {
      if (item.type === "stop" && item.start_position) {
        const label = h("span", { text: duration(item.duration_s) });
        const marker = L.marker(at(item.start_position), {
          icon: L.divIcon({ className: "stop-marker", html: label, iconSize: null }),
          title: `Stop ${clock(item.start)} – ${clock(item.end)}, ${duration(item.duration_s)}`,
        });
        marker.on("add", () => marker.getElement()?.setAttribute("data-testid", `report-stop-marker-${index}`));
        layers.push(marker);
      } else if (item.type === "trip" && item.start_position && item.end_position) {
        const line = L.polyline([at(item.start_position), at(item.end_position)], { ...TRIP_STYLE, className: "trip-line" })
          .bindTooltip(`Trip ${clock(item.start)}: ${distanceText(item.distance_m ?? 0)}, ${duration(item.duration_s)}`);
        line.on("add", () => line.getElement()?.setAttribute("data-testid", `report-trip-line-${index}`));
        item.line = line;
        layers.push(line);
      }
    });
    this.context.map.showOverlay(layers);
  }

  /** Frames the item on the map; a trip's straight line becomes the route, once its positions are read. */
  async _focus(item) {
    const points = [at(item.start_position), at(item.end_position)].filter(Boolean);
    if (points.length) this.context.map.frame(points);
    this.context.viewMap(); // a phone shows the map instead of the list
    if (item.type !== "trip" || !item.line || item.routed || !this.shown) return;
    try {
      const page = await this.context.api.get(`api/v1/devices/${this.shown.imei}/positions`,
        { since: item.start, until: item.end, limit: PAGE });
      const route = page.items.map((p) => [p.lat, p.lon]);
      if (route.length < 2 || page.next_cursor) return; // hidden, or too long a trip to be cheap
      item.line.setLatLngs(route).setStyle(ROUTE_STYLE);
      item.routed = true;
      this.context.map.frame(route);
    } catch {
      // the straight line stays: the route is a bonus
    }
  }

  async _csv() {
    if (!this.shown) return;
    const { imei, thresholds } = this.shown;
    await this.context.saveCsv(this.csv, this.message, `api/v1/devices/${imei}/trips`, `trips-${imei}`, thresholds);
  }
}
