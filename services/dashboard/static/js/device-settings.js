// One worker's detection settings (PUT /api/v1/devices/{imei}/settings): how long a
// silence lasts before the insole counts as offline, and the shift hours during
// which no-motion counts.
import { h } from "./dom.js";
import { busy, explain, field, messageLine, say } from "./forms.js";

const SPAN = /^\s*(\d{1,2}(?:[.:]\d{1,2})?)\s*[-–]\s*(\d{1,2}(?:[.:]\d{1,2})?)\s*$/;

/** "8-12, 22:30-6" as [[8, 12], [22.5, 6]]; throws an Error in words for anything else. */
export function parseShiftHours(text) {
  const spans = text.split(",").filter((part) => part.trim()).map((part) => {
    const match = SPAN.exec(part);
    if (!match) throw new Error(`"${part.trim()}" is not a span such as 8-17 or 22:30-6`);
    const [start, end] = [match[1], match[2]].map(hourOf);
    if (start > 24 || end > 24 || start === end) throw new Error(`"${part.trim()}" is not a span within 0-24`);
    return [start, end];
  });
  if (spans.length === 0) throw new Error("give at least one span of hours, such as 8-17");
  if (spans.length > 6) throw new Error("at most 6 spans of hours");
  return spans;
}

function hourOf(text) {
  const [hours, minutes = "0"] = text.split(/[.:]/);
  return Number(hours) + Number(minutes) / 60;
}

function hourText(hour) {
  const whole = Math.floor(hour);
  const minutes = Math.round((hour - whole) * 60);
  return minutes ? `${whole}:${String(minutes).padStart(2, "0")}` : String(whole);
}

export function shiftHoursText(spans) {
  return spans.map(([start, end]) => `${hourText(start)}-${hourText(end)}`).join(", ");
}

function timezones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC"];
  }
}

/** A form for one device's settings; `element` is what to insert. */
export class DeviceSettingsForm {
  constructor(api, device) {
    this.api = api;
    this.device = device;
    const id = device.imei;
    this.message = messageLine(`settings-message-${id}`);
    this.offline = h("input", { type: "number", min: 0.5, max: 10080, step: "any", inputmode: "decimal",
      "data-testid": `settings-offline-${id}` });
    this.onShift = h("input", { type: "checkbox", "data-testid": `settings-shift-on-${id}`,
      onchange: () => this._shiftShown() });
    this.hours = h("input", { placeholder: "8-17", "data-testid": `settings-hours-${id}` });
    const zones = h("datalist", { id: `zones-${id}` }, timezones().map((zone) => h("option", { value: zone })));
    this.timezone = h("input", { list: zones.id, autocomplete: "off", "data-testid": `settings-timezone-${id}` });
    this.shiftFields = h("div", { class: "stack" },
      field("Shift hours", this.hours, "24-hour clock, commas between spans; 22-6 runs past midnight."),
      field("Time zone", this.timezone), zones);
    this.submit = h("button", { type: "submit", class: "primary", "data-testid": `settings-save-${id}`, text: "Save settings" });
    // Disabled until the stored settings are read, so that nothing typed is overwritten by them.
    this.fields = h("fieldset", { class: "bare stack", disabled: true },
      field("Offline after (minutes)", this.offline,
        "Silence before the worker counts as offline; empty: the server's default."),
      h("label", { class: "check" }, this.onShift, " No-motion alerts only during shift hours"),
      this.shiftFields,
      h("div", { class: "button-row" }, this.submit));
    this.element = h("form", { class: "stack card", "data-testid": `settings-form-${id}`, novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this.save();
      } },
    h("h4", { text: `Settings of ${device.name}` }),
    this.message,
    this.fields);
    this._shiftShown();
  }

  _shiftShown() {
    this.shiftFields.hidden = !this.onShift.checked;
  }

  async load() {
    try {
      const settings = await this.api.get(`api/v1/devices/${this.device.imei}/settings`);
      this.offline.value = settings.offline_after === null ? "" : String(settings.offline_after / 60);
      this.onShift.checked = Boolean(settings.shift);
      this.hours.value = settings.shift ? shiftHoursText(settings.shift.hours) : "";
      this.timezone.value = settings.shift?.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
      this._shiftShown();
      this.fields.disabled = false;
    } catch (error) {
      say(this.message, explain(error, "load the settings"));
    }
  }

  async save() {
    let body;
    try {
      body = this._body();
    } catch (error) {
      say(this.message, error.message);
      return;
    }
    const saved = await busy(this.submit, this.message, "save the settings",
      () => this.api.put(`api/v1/devices/${this.device.imei}/settings`, body));
    if (saved) say(this.message, "Saved.", "ok");
  }

  _body() {
    const minutes = this.offline.value.trim();
    let offlineAfter = null;
    if (minutes) {
      offlineAfter = Math.round(Number(minutes) * 60);
      if (!Number.isFinite(offlineAfter) || offlineAfter < 30 || offlineAfter > 7 * 24 * 3600) {
        throw new Error("Offline after: between 0.5 minutes and 7 days (10080 minutes), or empty for the default.");
      }
    }
    let shift = null;
    if (this.onShift.checked) {
      try {
        shift = { hours: parseShiftHours(this.hours.value), timezone: this.timezone.value.trim() || "UTC" };
      } catch (error) {
        throw new Error(`Shift hours: ${error.message}.`);
      }
    }
    return { offline_after: offlineAfter, shift };
  }
}
