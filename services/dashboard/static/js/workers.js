// The workers list: status, battery, last seen, what each device is (protocol, model); search by name or IMEI, filter by state.
import { STATE_LABELS, ago, byTestId, compareNames, deviceKind, h } from "./dom.js";

const STATE_ORDER = { alert: 0, low_battery: 1, offline: 2, ok: 3 };

export class WorkersPanel {
  /** actions: select(imei). */
  constructor(root, store, actions) {
    this.store = store;
    this.actions = actions;
    this.list = byTestId("worker-list", root);
    this.search = byTestId("worker-search", root);
    this.filter = byTestId("worker-filter", root);
    this.summary = byTestId("worker-summary", root);
    this.empty = byTestId("worker-empty", root);
    this.rows = new Map();
    this.search.addEventListener("input", () => this.render());
    this.filter.addEventListener("change", () => this.render());
  }

  render() {
    const term = this.search.value.trim().toLowerCase();
    const wanted = this.filter.value;
    const counts = { ok: 0, alert: 0, offline: 0, low_battery: 0 };
    const shown = [];
    for (const device of this.store.devices.values()) {
      const state = this.store.stateOf(device);
      counts[state] += 1;
      if (wanted !== "all" && state !== wanted) continue;
      if (term && !device.name.toLowerCase().includes(term) && !device.imei.includes(term)) continue;
      shown.push({ device, state });
    }
    shown.sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || compareNames(a.device.name, b.device.name) ||
      a.device.imei.localeCompare(b.device.imei));

    const rows = shown.map(({ device, state }) => this._row(device, state));
    const current = [...this.list.children];
    if (rows.length !== current.length || rows.some((row, i) => row !== current[i])) this.list.replaceChildren(...rows);
    for (const imei of this.rows.keys()) {
      if (!this.store.devices.has(imei)) this.rows.delete(imei);
    }
    this.empty.hidden = rows.length > 0 || this.store.devices.size === 0;
    const total = this.store.devices.size;
    this.summary.textContent = `${total} worker${total === 1 ? "" : "s"} · ${counts.alert} in alert · ` +
      `${counts.low_battery} low battery · ${counts.offline} offline`;
  }

  _row(device, state) {
    let row = this.rows.get(device.imei);
    if (!row) {
      row = h("li", {},
        h("button", { type: "button", class: "worker-row", "data-testid": `worker-row-${device.imei}`,
          onclick: () => this.actions.select(device.imei) }));
      this.rows.set(device.imei, row);
    }
    const button = row.firstChild;
    button.dataset.state = state;
    const battery = device.battery === null || device.battery === undefined ? "—" : `${device.battery} %`;
    button.replaceChildren(
      h("span", { class: `dot state-${state}`, "aria-hidden": "true" }),
      h("span", { class: "row-main" },
        h("span", { class: "row-title", "data-testid": "worker-name", text: device.name }),
        h("span", { class: "muted" }, `${device.imei} · `,
          h("span", { "data-testid": "worker-kind", text: deviceKind(device) }))),
      h("span", { class: "row-side" },
        h("span", { class: `state-label state-${state}`, "data-testid": "worker-state", text: STATE_LABELS[state] }),
        h("span", { "data-testid": "worker-battery", text: battery, title: "battery" }),
        h("span", { class: "muted", "data-testid": "worker-last-seen", text: ago(device.last_seen),
          title: device.last_seen ?? "never seen" })));
    return row;
  }
}
