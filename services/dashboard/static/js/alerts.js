// The alerts panel (open first, newest on top; acknowledge in one click,
// resolve with a note, the timeline) and the SOS cue (banner, tones, vibration).
import { ApiError, SessionEnded } from "./api.js";
import { KIND_LABELS, ago, byTestId, clock, h } from "./dom.js";
import { audioReady, beep } from "./sound.js";
import { CUE_KINDS } from "./store.js";

const SECTIONS = ["open", "acknowledged", "resolved"];
const TONE_EVERY_MS = 5000;
const ACTION_LABELS = {
  raised: "Raised", notified: "Notified", notification_failed: "Notification failed", acknowledged: "Acknowledged",
  resolved: "Resolved", escalated: "Escalated", delivery: "Delivery report",
};

// How an acknowledgement came (the `via` of an `acknowledged` line): "Acknowledged by Ana via SMS reply".
const ACK_VIA_LABELS = {
  dashboard: "dashboard", api: "API", sms: "SMS reply", voice: "phone call", push: "push notification",
};

export class AlertsPanel {
  /** actions: focusWorker(imei), error(message). */
  constructor(root, store, api, actions) {
    this.store = store;
    this.api = api;
    this.actions = actions;
    this.lists = Object.fromEntries(SECTIONS.map((s) => [s, byTestId(`alerts-${s}`, root)]));
    this.empties = Object.fromEntries(SECTIONS.map((s) => [s, byTestId(`alerts-${s}-empty`, root)]));
    this.rows = new Map();
    this.expanded = new Set();
  }

  render() {
    for (const status of SECTIONS) {
      const rows = this.store.alertsWithStatus(status).map((alert) => this._row(alert));
      const list = this.lists[status];
      const current = [...list.children];
      if (rows.length !== current.length || rows.some((row, i) => row !== current[i])) list.replaceChildren(...rows);
      this.empties[status].hidden = rows.length > 0;
    }
    for (const id of this.rows.keys()) {
      if (!this.store.alerts.has(id)) {
        this.rows.delete(id);
        this.expanded.delete(id);
      }
    }
  }

  _row(alert) {
    let row = this.rows.get(alert.id);
    if (!row) {
      row = {
        li: h("li", { class: "alert-row", "data-testid": `alert-${alert.id}` }),
        head: h("div", { class: "alert-head" }),
        actions: h("div", { class: "button-row" }),
        body: h("div", { class: "alert-body", hidden: true }),
        timeline: h("ol", { class: "timeline", "data-testid": `alert-timeline-${alert.id}` }),
        resolution: h("p", { class: "resolution", "data-testid": `alert-resolution-${alert.id}` }),
        form: null,
      };
      const note = h("textarea", { rows: 2, maxlength: 2000, placeholder: "What was done (optional)",
        "aria-label": "Resolution note", "data-testid": `alert-note-${alert.id}` });
      row.form = h("form", { class: "resolve-form needs-supervisor",
        onsubmit: (event) => {
          event.preventDefault();
          this.resolve(alert.id, note.value.trim());
        } },
      note,
      h("button", { type: "submit", class: "primary", "data-testid": `alert-resolve-${alert.id}`, text: "Resolve" }));
      row.body.append(h("h3", { text: "Timeline" }), row.timeline, row.resolution, row.form);
      row.li.append(row.head, row.actions, row.body);
      this.rows.set(alert.id, row);
    }
    const name = this.store.nameOf(alert.imei);
    row.li.dataset.status = alert.status;
    row.li.dataset.kind = alert.kind;
    row.li.dataset.ts = alert.ts;
    row.li.dataset.imei = alert.imei;
    row.li.classList.toggle("urgent", alert.status === "open" && CUE_KINDS.has(alert.kind));
    row.head.replaceChildren(
      h("span", { class: `kind kind-${alert.kind}`, "data-testid": "alert-kind", text: KIND_LABELS[alert.kind] ?? alert.kind }),
      h("span", { class: "row-main" },
        h("span", { class: "row-title", "data-testid": "alert-worker", text: name }),
        h("span", { class: "muted", title: alert.ts, text: `${clock(alert.ts)} · ${ago(alert.ts)}` })),
      h("span", { class: `status status-${alert.status}`, "data-testid": "alert-status", text: alert.status }));
    const expanded = this.expanded.has(alert.id);
    row.actions.replaceChildren(...[
      alert.status === "open" ? h("button", { type: "button", class: "primary needs-supervisor",
        "data-testid": `alert-ack-${alert.id}`, onclick: (event) => this.acknowledge(alert.id, event.currentTarget),
        text: "Acknowledge" }) : null,
      h("button", { type: "button", class: "quiet", "aria-expanded": String(expanded),
        "data-testid": `alert-details-${alert.id}`, onclick: () => this.toggle(alert.id),
        text: expanded ? "Hide details" : "Details" }),
      h("button", { type: "button", class: "quiet", "data-testid": `alert-map-${alert.id}`,
        onclick: () => this.actions.focusWorker(alert.imei), text: "Map" }),
    ].filter(Boolean));
    row.body.hidden = !expanded;
    row.form.hidden = alert.status === "resolved";
    row.resolution.hidden = alert.status !== "resolved";
    row.resolution.textContent = alert.status === "resolved"
      ? `Resolved by ${alert.resolved_by ?? "—"}${alert.resolution_note ? `: ${alert.resolution_note}` : ""}` : "";
    return row.li;
  }

  async toggle(id) {
    if (this.expanded.has(id)) this.expanded.delete(id);
    else this.expanded.add(id);
    this.render();
    if (this.expanded.has(id)) await this.loadTimeline(id);
  }

  async loadTimeline(id) {
    const row = this.rows.get(id);
    if (!row) return;
    try {
      const detail = await this.api.get(`api/v1/alerts/${id}`);
      row.timeline.replaceChildren(...detail.timeline.map((entry) => h("li", { "data-action": entry.action },
        h("time", { datetime: entry.at, text: clock(entry.at) }), " ",
        h("strong", { text: ACTION_LABELS[entry.action] ?? entry.action }),
        entry.actor ? ` by ${entry.actor}` : "",
        entry.detail?.via ? ` via ${ACK_VIA_LABELS[entry.detail.via] ?? entry.detail.via}` : "",
        describe(entry.detail))));
    } catch (error) {
      this._failed(error, "load the timeline");
    }
  }

  async acknowledge(id, button) {
    if (button) {
      button.disabled = true;
      button.textContent = "Acknowledging…";
    }
    try {
      this.store.upsertAlert(await this.api.post(`api/v1/alerts/${id}/ack`));
      if (this.expanded.has(id)) await this.loadTimeline(id);
    } catch (error) {
      if (button) {
        button.disabled = false;
        button.textContent = "Acknowledge";
      }
      this._failed(error, "acknowledge the alert");
    }
  }

  async resolve(id, note) {
    const button = byTestId(`alert-resolve-${id}`);
    if (button) button.disabled = true;
    try {
      this.store.upsertAlert(await this.api.post(`api/v1/alerts/${id}/resolve`, note ? { note } : {}));
      await this.loadTimeline(id);
    } catch (error) {
      this._failed(error, "resolve the alert");
    } finally {
      if (button) button.disabled = false;
    }
  }

  highlight(imei) {
    for (const row of this.rows.values()) row.li.classList.toggle("highlight", row.li.dataset.imei === imei);
  }

  _failed(error, what) {
    if (error instanceof SessionEnded) return;
    if (error instanceof ApiError && error.status === 403) {
      this.actions.error(`Only supervisors and admins can ${what}.`);
    } else {
      this.actions.error(`Could not ${what}: ${error.message}`);
    }
  }
}

function describe(detail) {
  if (!detail || typeof detail !== "object") return "";
  const parts = [];
  if (detail.note) parts.push(`“${detail.note}”`);
  if (detail.channel) parts.push(`via ${detail.channel}`);
  if (detail.step !== undefined) parts.push(`step ${detail.step}`);
  if (detail.status) parts.push(String(detail.status));
  if (detail.error) parts.push(String(detail.error));
  return parts.length ? ` — ${parts.join(", ")}` : "";
}

/** The cue of an open SOS or fall: a red banner naming the workers, tones every few seconds, a vibration. */
export class SosCue {
  /** actions: acknowledge(id, button), focusWorker(imei). */
  constructor(banner, store, actions) {
    this.banner = banner;
    this.store = store;
    this.actions = actions;
    this.items = byTestId("sos-items", banner);
    this.hint = byTestId("sound-hint", banner);
    this.silenced = new Set();
    this.timer = null;
    this.baseTitle = document.title;
    byTestId("sos-silence", banner).addEventListener("click", () => {
      for (const alert of this.urgent()) this.silenced.add(alert.id);
      this.render();
    });
  }

  urgent() {
    return this.store.alertsWithStatus("open").filter((a) => CUE_KINDS.has(a.kind));
  }

  /** A new alert arrived live: sound at once for an SOS or a fall. */
  notifyNew(alert) {
    if (alert.status !== "open" || !CUE_KINDS.has(alert.kind)) return;
    this.silenced.delete(alert.id);
    this._sound();
    navigator.vibrate?.([400, 150, 400]);
  }

  render() {
    const urgent = this.urgent();
    this.banner.hidden = urgent.length === 0;
    document.title = urgent.length ? `(${urgent.length}) SOS · ${this.baseTitle}` : this.baseTitle;
    this.items.replaceChildren(...urgent.slice(0, 3).map((alert) => h("div", {
      class: "sos-item", "data-testid": `sos-item-${alert.id}`, "data-imei": alert.imei },
    h("strong", { text: `${KIND_LABELS[alert.kind]} — ${this.store.nameOf(alert.imei)}` }),
    h("span", { text: ` ${clock(alert.ts)}` }),
    h("span", { class: "button-row" },
      h("button", { type: "button", class: "on-dark needs-supervisor", "data-testid": `sos-ack-${alert.id}`,
        onclick: (event) => this.actions.acknowledge(alert.id, event.currentTarget), text: "Acknowledge" }),
      h("button", { type: "button", class: "quiet on-dark", "data-testid": `sos-show-${alert.id}`,
        onclick: () => this.actions.focusWorker(alert.imei), text: "Show" })))));
    if (urgent.length > 3) this.items.append(h("div", { class: "sos-item", text: `+${urgent.length - 3} more` }));
    const ringing = urgent.some((a) => !this.silenced.has(a.id));
    this.hint.hidden = !ringing || audioReady();
    if (ringing && this.timer === null) this.timer = setInterval(() => this._sound(), TONE_EVERY_MS);
    if (!ringing) this.stop();
  }

  _sound() {
    if (this.urgent().some((a) => !this.silenced.has(a.id))) this.hint.hidden = beep();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
