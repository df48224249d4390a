// The workers list: status, battery, last seen, what each device is (protocol, model); search by name or IMEI, filter by state.
import { STATE_LABELS, ago, byTestId, compareNames, deviceKind, h } from "./dom.js";

const STATE_ORDER = { alert: 0, low_battery: 1, offline: 2, ok: 3 };
const LONG_LIST = 500; // rows: above, the order is kept up to date at most every REORDER_EVERY_MS
const REORDER_EVERY_MS = 1000;

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
    this.byName = null; // the devices sorted by name, until one comes, goes or is renamed
    this.named = new Set(); // their IMEIs
    this.reorderedAt = 0; // performance.now() of the last full render
    this.reorderTimer = null;
    // The same workers, shown otherwise: their name order still holds.
    this.search.addEventListener("input", () => this.render(null, { sameWorkers: true }));
    this.filter.addEventListener("change", () => this.render(null, { sameWorkers: true }));
  }

  /**
   * changed: the IMEIs of the devices that changed since the last call, or null (any may have).
   * When none of them changed state (the list's order and counts), only their rows are redrawn:
   * a tenant of 10,000 moves thousands of workers a second. Otherwise the list is put in order
   * again (a long one at most once a second). sameWorkers: only the search or filter changed.
   */
  render(changed = null, { sameWorkers = false } = {}) {
    if (changed && this._inPlace(changed)) return;
    if (changed && this._reorderLater(changed)) return;
    clearTimeout(this.reorderTimer);
    this.reorderTimer = null;
    this.reorderedAt = performance.now();
    const cameOrWent = (imei) => !this.byName || !this.named.has(imei) || !this.store.devices.has(imei);
    if (!sameWorkers && (!changed || [...changed].some(cameOrWent))) this.byName = null;
    const term = this.search.value.trim().toLowerCase();
    const wanted = this.filter.value;
    const counts = { ok: 0, alert: 0, offline: 0, low_battery: 0 };
    // By state, then by name: the name order is kept between renders (sorting 10,000 names with a
    // collator takes a frame or more), and each state takes its workers from it in that order.
    const byState = { alert: [], low_battery: [], offline: [], ok: [] };
    for (const device of this._byName()) {
      const state = this.store.stateOf(device);
      counts[state] += 1;
      if (wanted !== "all" && state !== wanted) continue;
      if (term && !device.name.toLowerCase().includes(term) && !device.imei.includes(term)) continue;
      byState[state].push([device, state]);
    }
    const shown = Object.keys(STATE_ORDER).flatMap((state) => byState[state]);

    this._arrange(shown.map(([device, state]) => this._row(device, state)));
    for (const imei of this.rows.keys()) {
      if (!this.store.devices.has(imei)) this.rows.delete(imei);
    }
    this.empty.hidden = shown.length > 0 || this.store.devices.size === 0;
    const total = this.store.devices.size;
    this.summary.textContent = `${total} worker${total === 1 ? "" : "s"} · ${counts.alert} in alert · ` +
      `${counts.low_battery} low battery · ${counts.offline} offline`;
  }

  // A long list is put in order at most every REORDER_EVERY_MS: when thousands of workers change
  // state at once (a site's network back), their rows change colour at once and move soon after.
  _reorderLater(changed) {
    if (this.rows.size <= LONG_LIST) return false;
    const wait = this.reorderedAt + REORDER_EVERY_MS - performance.now();
    if (wait <= 0) return false;
    for (const imei of changed) {
      const device = this.store.devices.get(imei);
      if (device && this.rows.has(imei)) this._row(device, this.store.stateOf(device));
    }
    this.reorderTimer ??= setTimeout(() => this.render(), wait);
    return true;
  }

  // The list's children become `rows`, moving only the rows out of place (replacing 10,000 rows
  // costs the browser far more than moving the few whose state changed).
  _arrange(rows) {
    let next = this.list.firstChild;
    for (const row of rows) {
      if (row === next) next = next.nextSibling;
      else this.list.insertBefore(row, next);
    }
    while (next) { // rows no longer shown (filtered out, or their worker is gone)
      const after = next.nextSibling;
      next.remove();
      next = after;
    }
  }

  _byName() {
    if (!this.byName) {
      this.byName = [...this.store.devices.values()]
        .sort((a, b) => compareNames(a.name, b.name) || a.imei.localeCompare(b.imei));
      this.named = new Set(this.byName.map((device) => device.imei));
    }
    // The same workers, maybe as new objects (a reload): take each one's latest.
    return this.byName.map((device) => this.store.devices.get(device.imei) ?? device);
  }

  // Every changed device already has its row and keeps its state: redraw those rows where they are.
  _inPlace(changed) {
    const rows = [];
    for (const imei of changed) {
      const device = this.store.devices.get(imei);
      const row = this.rows.get(imei);
      if (!device || !row) return false; // came or went: the list changes
      const state = this.store.stateOf(device);
      if (row.firstChild.dataset.state !== state) return false; // moves in the order, counts change
      rows.push([device, state]);
    }
    for (const [device, state] of rows) this._row(device, state);
    return true;
  }

  _row(device, state) {
    let row = this.rows.get(device.imei);
    if (!row) {
      row = this._newRow(device.imei);
      this.rows.set(device.imei, row);
    }
    // Only what differs is written: a moving worker's row changes its "last seen" and little else.
    const battery = device.battery === null || device.battery === undefined ? "—" : `${device.battery} %`;
    const { parts } = row;
    set(parts.button.dataset, "state", state);
    set(parts.dot, "className", `dot state-${state}`);
    set(parts.name, "textContent", device.name);
    set(parts.imei, "textContent", `${device.imei} · `);
    set(parts.kind, "textContent", deviceKind(device));
    set(parts.state, "className", `state-label state-${state}`);
    set(parts.state, "textContent", STATE_LABELS[state]);
    set(parts.battery, "textContent", battery);
    set(parts.lastSeen, "textContent", ago(device.last_seen));
    set(parts.lastSeen, "title", device.last_seen ?? "never seen");
    return row;
  }

  _newRow(imei) {
    const parts = {
      dot: h("span", { class: "dot", "aria-hidden": "true" }),
      name: h("span", { class: "row-title", "data-testid": "worker-name" }),
      imei: document.createTextNode(""),
      kind: h("span", { "data-testid": "worker-kind" }),
      state: h("span", { "data-testid": "worker-state" }),
      battery: h("span", { "data-testid": "worker-battery", title: "battery" }),
      lastSeen: h("span", { class: "muted", "data-testid": "worker-last-seen" }),
    };
    parts.button = h("button", { type: "button", class: "worker-row", "data-testid": `worker-row-${imei}`,
      onclick: () => this.actions.select(imei) },
    parts.dot,
    h("span", { class: "row-main" }, parts.name, h("span", { class: "muted" }, parts.imei, parts.kind)),
    h("span", { class: "row-side" }, parts.state, parts.battery, parts.lastSeen));
    const row = h("li", {}, parts.button);
    row.parts = parts;
    return row;
  }
}

/** target[key] = value, unless it already is (writing the same text still costs a layout). */
function set(target, key, value) {
  if (target[key] !== value) target[key] = value;
}
