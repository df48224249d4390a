// Small DOM and formatting helpers. Text always goes in through textContent
// or attributes, never as HTML: names and notes come from users.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

export const KIND_LABELS = {
  sos: "SOS", fall: "Fall", no_motion: "No motion", low_battery: "Low battery", off_foot: "Off foot",
  tamper: "Tamper", offline: "Offline", geofence_exit: "Left geofence", geofence_enter: "Entered geofence",
};

// Names compare as people read them: numbers by value ("worker 2" before "worker 10"),
// case and accents aside.
const NAME_ORDER = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
export const compareNames = (a, b) => NAME_ORDER.compare(a, b);

// The protocols a device may speak (CONTRACT §10), as an operator names them.
export const PROTOCOL_LABELS = { xsole: "XSole insole", gt06: "GT06", h02: "H02", watch: "3G watch", teltonika: "Teltonika" };

/** What a device is, in a few words: its protocol, and its model when one was registered. */
export function deviceKind(device) {
  const protocol = PROTOCOL_LABELS[device.protocol] ?? device.protocol ?? PROTOCOL_LABELS.xsole;
  return device.model ? `${protocol} · ${device.model}` : protocol;
}

export const STATE_LABELS = { ok: "OK", alert: "Alert", offline: "Offline", low_battery: "Low battery" };

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function clock(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

export function coords(lat, lon) {
  return `${lat.toFixed(5)}, ${lon.toFixed(5)}`;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// datetime-local values are local wall time, without seconds when they are zero.
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A span of time as people say it: "41 s", "12 min", "3 h 05 min"; "—" for none. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s < 600 && s % 60 ? ` ${s % 60} s` : ""}`;
  const minutes = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h ${String(minutes).padStart(2, "0")} min`;
}
