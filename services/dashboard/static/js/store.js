// What the page knows: the tenant's devices, the alerts it shows, geofences.
// Views subscribe to "devices" and "alerts" changes (coalesced per frame). A "devices" event's
// detail.imeis names the devices changed since the last one, or is null when any may have (a
// reload, an alert, the clock): a big tenant's views then touch only the rows and markers that moved.

// Alerts that mean a person may be in danger (the marker turns red); offline
// and low battery have their own colours.
const DANGER_KINDS = new Set(["sos", "fall", "no_motion", "off_foot", "tamper", "geofence_exit", "geofence_enter"]);
export const CUE_KINDS = new Set(["sos", "fall"]);
const RESOLVED_KEPT = 20;
const POSITIONS_PER_FRAME = 1000;

export class Store extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.devices = new Map();
    this.alerts = new Map();
    this.geofences = [];
    this._pending = new Set();
    this._scheduled = false; // a frame will flush what is pending
    this._changedImeis = new Set(); // null: every device
    this._positions = new Map(); // imei -> the newest `position` event not applied yet
    this._openAlerts = null; // imei -> its unresolved alerts, rebuilt after the alerts change
    this.onUnknownDevice = null; // (imei) => void: a position came for a device not loaded here
  }

  reset() {
    this.devices.clear();
    this.alerts.clear();
    this.geofences = [];
    this._positions.clear();
    this._openAlerts = null;
    this._changed("devices");
    this._changed("alerts");
  }

  /** Something changed; `imei`: only that device did (for "devices"). Views hear of it once per frame. */
  _changed(what, imei = null) {
    this._schedule();
    this._pending.add(what);
    if (what === "devices" && this._changedImeis) {
      if (imei === null) this._changedImeis = null;
      else this._changedImeis.add(imei);
    }
  }

  _schedule() {
    if (this._scheduled) return;
    this._scheduled = true;
    requestAnimationFrame(() => this._flush());
  }

  _flush() {
    // The oldest queued first, at most POSITIONS_PER_FRAME: a burst of 10,000 (every insole back
    // after a network cut) is drawn over a few frames instead of freezing the page for one.
    let room = POSITIONS_PER_FRAME;
    for (const [imei, p] of this._positions) {
      if (room-- === 0) break;
      this._positions.delete(imei);
      if (!this.applyPosition(p)) this.onUnknownDevice?.(imei);
    }
    const kinds = [...this._pending];
    const imeis = this._changedImeis;
    this._pending.clear();
    this._changedImeis = new Set();
    this._scheduled = false;
    if (this._positions.size > 0) this._schedule(); // the rest of the burst
    for (const kind of kinds) {
      this.dispatchEvent(kind === "devices" ? new CustomEvent(kind, { detail: { imeis } }) : new Event(kind));
    }
  }

  /**
   * A `position` event, applied at the next frame with the others of the burst: only the newest
   * per device is kept (a big tenant sends thousands a second; the screen shows one frame at a time).
   */
  queuePosition(p) {
    const queued = this._positions.get(p.imei);
    if (queued && Date.parse(queued.ts) > Date.parse(p.ts)) return;
    this._schedule();
    this._positions.set(p.imei, p);
  }

  setDevices(devices) {
    this.devices = new Map(devices.map((d) => [d.imei, { ...d }]));
    this._changed("devices");
  }

  upsertDevice(device) {
    this.devices.set(device.imei, { ...this.devices.get(device.imei), ...device });
    this._changed("devices");
  }

  /** A `position` event; false when the device is unknown here (fetch it first). */
  applyPosition(p) {
    const device = this.devices.get(p.imei);
    if (!device) return false;
    const last = device.last_position;
    if (last && Date.parse(last.ts) > Date.parse(p.ts)) return true; // a late, buffered fix: history only
    device.last_position = { ts: p.ts, lat: p.lat, lon: p.lon };
    device.speed = p.speed;
    device.course = p.course;
    if (p.battery !== null && p.battery !== undefined) device.battery = p.battery;
    if (!device.last_seen || Date.parse(device.last_seen) < Date.parse(p.ts)) device.last_seen = p.ts;
    this._changed("devices", p.imei);
    return true;
  }

  applyStatus(status) {
    const device = this.devices.get(status.imei);
    if (!device) return false;
    Object.assign(device, {
      online: status.online,
      battery: status.battery ?? device.battery,
      last_seen: status.last_seen ?? device.last_seen,
    });
    this._changed("devices", status.imei);
    return true;
  }

  setAlerts(alerts) {
    this.alerts = new Map(alerts.map((a) => [a.id, a]));
    this._openAlerts = null;
    this._changed("alerts");
    this._changed("devices"); // marker colours follow alerts
  }

  /** An `alert` event or an API answer; returns true when the alert was not known before. */
  upsertAlert(alert) {
    const isNew = !this.alerts.has(alert.id);
    this.alerts.set(alert.id, { ...this.alerts.get(alert.id), ...alert });
    this._trimResolved();
    this._openAlerts = null;
    this._changed("alerts");
    this._changed("devices", alert.imei);
    return isNew;
  }

  _trimResolved() {
    const resolved = [...this.alerts.values()].filter((a) => a.status === "resolved").sort(newestFirst);
    for (const alert of resolved.slice(RESOLVED_KEPT)) this.alerts.delete(alert.id);
  }

  alertsWithStatus(status) {
    return [...this.alerts.values()].filter((a) => a.status === status).sort(newestFirst);
  }

  /** ok, alert, offline or low_battery: the colour of the worker's marker. */
  stateOf(device) {
    let lowBatteryAlert = false;
    for (const alert of this._unresolvedOf(device.imei)) {
      if (DANGER_KINDS.has(alert.kind)) return "alert";
      if (alert.kind === "low_battery") lowBatteryAlert = true;
    }
    if (!device.online) return "offline";
    const threshold = this.config.low_battery_threshold ?? 15;
    if (lowBatteryAlert || (device.battery !== null && device.battery !== undefined && device.battery < threshold)) {
      return "low_battery";
    }
    return "ok";
  }

  // Indexed by worker: every marker and row asks, and a tenant may have 10,000 of them.
  _unresolvedOf(imei) {
    if (!this._openAlerts) {
      this._openAlerts = new Map();
      for (const alert of this.alerts.values()) {
        if (alert.status === "resolved") continue;
        const mine = this._openAlerts.get(alert.imei);
        if (mine) mine.push(alert);
        else this._openAlerts.set(alert.imei, [alert]);
      }
    }
    return this._openAlerts.get(imei) ?? [];
  }

  nameOf(imei) {
    return this.devices.get(imei)?.name ?? imei;
  }
}

export function newestFirst(a, b) {
  return Date.parse(b.ts) - Date.parse(a.ts) || b.id - a.id;
}
