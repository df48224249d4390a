// What the page knows: the tenant's devices, the alerts it shows, geofences.
// Views subscribe to "devices" and "alerts" changes (coalesced per frame).

// Alerts that mean a person may be in danger (the marker turns red); offline
// and low battery have their own colours.
const DANGER_KINDS = new Set(["sos", "fall", "no_motion", "off_foot", "tamper", "geofence_exit", "geofence_enter"]);
export const CUE_KINDS = new Set(["sos", "fall"]);
const RESOLVED_KEPT = 20;

export class Store extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.devices = new Map();
    this.alerts = new Map();
    this.geofences = [];
    this._pending = new Set();
  }

  reset() {
    this.devices.clear();
    this.alerts.clear();
    this.geofences = [];
    this._changed("devices");
    this._changed("alerts");
  }

  _changed(what) {
    if (this._pending.size === 0) {
      requestAnimationFrame(() => {
        const kinds = [...this._pending];
        this._pending.clear();
        for (const kind of kinds) this.dispatchEvent(new Event(kind));
      });
    }
    this._pending.add(what);
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
    this._changed("devices");
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
    this._changed("devices");
    return true;
  }

  setAlerts(alerts) {
    this.alerts = new Map(alerts.map((a) => [a.id, a]));
    this._changed("alerts");
    this._changed("devices"); // marker colours follow alerts
  }

  /** An `alert` event or an API answer; returns true when the alert was not known before. */
  upsertAlert(alert) {
    const isNew = !this.alerts.has(alert.id);
    this.alerts.set(alert.id, { ...this.alerts.get(alert.id), ...alert });
    this._trimResolved();
    this._changed("alerts");
    this._changed("devices");
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
    for (const alert of this.alerts.values()) {
      if (alert.imei !== device.imei || alert.status === "resolved") continue;
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

  nameOf(imei) {
    return this.devices.get(imei)?.name ?? imei;
  }
}

export function newestFirst(a, b) {
  return Date.parse(b.ts) - Date.parse(a.ts) || b.id - a.id;
}
