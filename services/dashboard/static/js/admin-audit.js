// The audit log (admin): who changed what, newest first, filtered by action and
// time, a page at a time.
import { clock, h } from "./dom.js";
import { explain, field, fromLocalInput, messageLine, say } from "./forms.js";

const PAGE = 50;
// CONTRACT §5's actions; the filter also takes any other the server writes.
const ACTIONS = [
  "auth.login", "auth.login_failed", "user.invite", "user.update", "user.password_change", "user.password_reset",
  "device.create", "device.update", "device.token_rotate", "device.delete", "device.command",
  "alert.ack", "alert.resolve", "contact.create", "contact.delete", "escalation.update",
  "geofence.create", "geofence.delete", "settings.update", "api_key.create", "api_key.revoke",
  "webhook.create", "webhook.update", "webhook.delete", "positions.read", "export.read",
];
const ACTION = /^[a-z][a-z_]*\.[a-z][a-z_]*$/;
const ACTOR_LABELS = { user: "user", api_key: "API key", contact: "contact", system: "system" };

export class AuditSection {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.cursor = null;
    this.action = h("input", { list: "audit-actions", autocomplete: "off", placeholder: "every action",
      "data-testid": "audit-action" });
    this.since = h("input", { type: "datetime-local", step: 1, "data-testid": "audit-since" });
    this.until = h("input", { type: "datetime-local", step: 1, "data-testid": "audit-until" });
    this.message = messageLine("audit-message");
    this.list = h("ol", { class: "rows audit", "data-testid": "audit-list" });
    this.more = h("button", { type: "button", class: "quiet", "data-testid": "audit-more", hidden: true,
      text: "Older entries", onclick: () => this._page(true) });
    const filter = h("button", { type: "submit", class: "primary", "data-testid": "audit-filter", text: "Show" });
    const clear = h("button", { type: "button", class: "quiet", "data-testid": "audit-clear", text: "Clear filters",
      onclick: () => {
        form.reset();
        this._page(false);
      } });
    const form = h("form", { class: "stack card", "data-testid": "audit-form", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this._page(false);
      } },
    h("h3", { text: "Audit log" }),
    field("Action", this.action, "Such as user.invite or alert.ack; empty for every action."),
    h("datalist", { id: "audit-actions" }, ACTIONS.map((action) => h("option", { value: action }))),
    h("div", { class: "two" }, field("From", this.since), field("To", this.until)),
    h("div", { class: "button-row" }, filter, clear));
    root.append(form, this.message, this.list, this.more);
  }

  load() {
    return this._page(false);
  }

  async _page(more) {
    const since = fromLocalInput(this.since.value);
    const until = fromLocalInput(this.until.value);
    if (since && until && since > until) {
      say(this.message, "The start of the range is after its end.");
      return;
    }
    const action = this.action.value.trim();
    if (action && !ACTION.test(action)) {
      say(this.message, "An action is written like alert.ack or user.invite: pick one from the list.");
      return;
    }
    try {
      const page = await this.api.get("api/v1/audit", {
        action, since, until, limit: PAGE, cursor: more ? this.cursor : null,
      });
      const rows = page.items.map((entry) => this._row(entry));
      if (more) this.list.append(...rows);
      else this.list.replaceChildren(...rows);
      this.cursor = page.next_cursor;
      this.more.hidden = !this.cursor;
      say(this.message, this.list.children.length ? "" : "No entry matches.", "ok");
    } catch (error) {
      say(this.message, explain(error, "load the audit log"));
    }
  }

  _row(entry) {
    const actor = entry.actor ?? {};
    const target = entry.target ?? {};
    const who = `${actor.label ?? actor.id ?? "—"} (${ACTOR_LABELS[actor.type] ?? actor.type})`;
    const what = target.type ? `${target.type} ${target.id ?? ""}`.trim() : "";
    return h("li", { class: "admin-row audit-entry", "data-testid": `audit-${entry.id}`, "data-action": entry.action },
      h("div", { class: "admin-row-head" },
        h("strong", { class: "audit-action", "data-testid": "audit-entry-action", text: entry.action }),
        h("time", { class: "muted", datetime: entry.at, text: clock(entry.at) })),
      h("div", { "data-testid": "audit-entry-actor", text: `by ${who}${what ? ` · ${what}` : ""}` }),
      describe(entry.detail));
  }
}

/** The entry's detail as "key: value" pairs (never HTML: it holds what users typed). */
function describe(detail) {
  if (!detail || typeof detail !== "object" || Object.keys(detail).length === 0) return null;
  const text = Object.entries(detail)
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`).join(" · ");
  return h("div", { class: "muted audit-detail", "data-testid": "audit-entry-detail", text });
}
