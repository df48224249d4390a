// The tenant's data lifecycle (admin): how long telemetry and resolved alerts are
// kept, and when positions are shown (CONTRACT §8). The form shows what is stored and
// sends only what the admin changed; the API merges it, so a field left alone is kept.
import { h } from "./dom.js";
import { busy, explain, field, messageLine, say } from "./forms.js";

const VISIBILITY = [
  ["always", "Always"],
  ["on_shift", "During shift hours and alerts"],
  ["alerts_only", "Only around alerts"],
];
const LIMITS = {
  telemetry_retention_days: [1, 3650, "Keep positions, activity and heartbeats (days)"],
  alert_retention_days: [30, 3650, "Keep resolved alerts (days after resolution)"],
};

export class DataSection {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.stored = null;
    this.message = messageLine("data-settings-message");
    this.inputs = {};
    const fields = Object.entries(LIMITS).map(([name, [min, max, label]]) => {
      this.inputs[name] = h("input", { type: "number", name, min, max, step: 1, required: true,
        "data-testid": `data-${name}` });
      return field(label, this.inputs[name], `${min} to ${max}. Older data is deleted within the hour.`);
    });
    this.visibility = h("select", { name: "location_visibility", "data-testid": "data-location_visibility" },
      VISIBILITY.map(([value, label]) => h("option", { value, text: label })));
    this.save = h("button", { type: "submit", class: "primary", "data-testid": "data-settings-save", text: "Save" });
    // Disabled while the stored settings are read: they replace what is shown.
    this.fields = h("fieldset", { class: "bare stack", disabled: true }, ...fields,
      field("Show workers' positions", this.visibility), h("div", { class: "button-row" }, this.save));
    const form = h("form", { class: "stack", "data-testid": "data-settings-form", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this._save();
      } },
    h("h3", { text: "Data retention and visibility" }),
    h("p", { class: "muted", text: "Telemetry older than its period is deleted, by the insole's own time. " +
      "Resolved alerts are deleted with their timelines that long after they were resolved; " +
      "open and acknowledged alerts are always kept." }),
    this.message, this.fields);
    root.append(form);
  }

  async load() {
    this.fields.disabled = true;
    try {
      this._show(await this.api.get("api/v1/tenant/settings"));
      say(this.message, "");
      this.fields.disabled = false;
    } catch (error) {
      say(this.message, explain(error, "load the data settings"));
    }
  }

  _show(settings) {
    this.stored = settings;
    for (const [name, input] of Object.entries(this.inputs)) input.value = String(settings[name]);
    this.visibility.value = settings.location_visibility;
  }

  /** What differs from the stored settings; an error in words for a number out of range. */
  _changes() {
    const changes = {};
    for (const [name, input] of Object.entries(this.inputs)) {
      const [min, max, label] = LIMITS[name];
      const days = Number(input.value);
      if (!(Number.isInteger(days) && days >= min && days <= max) || input.value.trim() === "") {
        throw new Error(`${label}: a whole number from ${min} to ${max}.`);
      }
      if (days !== this.stored[name]) changes[name] = days;
    }
    if (this.visibility.value !== this.stored.location_visibility) {
      changes.location_visibility = this.visibility.value;
    }
    return changes;
  }

  async _save() {
    let changes;
    try {
      changes = this._changes();
    } catch (error) {
      say(this.message, error.message);
      return;
    }
    if (Object.keys(changes).length === 0) {
      say(this.message, "Nothing changed.", "ok");
      return;
    }
    const saved = await busy(this.save, this.message, "save the data settings",
      () => this.api.put("api/v1/tenant/settings", changes));
    if (saved) {
      this._show(saved);
      say(this.message, "Saved.", "ok");
    }
  }
}
