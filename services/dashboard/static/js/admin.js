// The admin area (admins only): one section at a time among users, devices,
// contacts, the escalation policy, geofences, data retention and the audit log. Each section
// loads when it is opened, so a supervisor's or viewer's page never asks for
// what only admins may read.
import { AuditSection } from "./admin-audit.js";
import { ContactsSection } from "./admin-contacts.js";
import { DataSection } from "./admin-data.js";
import { DevicesSection } from "./admin-devices.js";
import { EscalationSection } from "./admin-escalation.js";
import { GeofencesSection } from "./admin-geofences.js";
import { UsersSection } from "./admin-users.js";
import { h } from "./dom.js";

const SECTIONS = [
  ["users", "Users", UsersSection],
  ["devices", "Devices", DevicesSection],
  ["contacts", "Contacts", ContactsSection],
  ["escalation", "Escalation", EscalationSection],
  ["geofences", "Geofences", GeofencesSection],
  ["data", "Data", DataSection],
  ["audit", "Audit log", AuditSection],
];

export class AdminPanel {
  /**
   * context: api, store, map (WorkerMap), reload() (the page's data), setView(view),
   * openCommands(imei), showMap() (phones: the map view while drawing).
   */
  constructor(root, context) {
    this.root = root;
    this.context = context;
    this.sections = new Map();
    this.current = null;
    const tabs = SECTIONS.map(([name, label]) => h("button", { type: "button", role: "tab", id: `admin-tab-${name}`,
      "aria-controls": `admin-section-${name}`, "aria-selected": "false", tabindex: "-1",
      "data-section": name, "data-testid": `admin-tab-${name}`, text: label,
      onclick: () => this.open(name) }));
    this.tablist = h("div", { class: "subtabs", role: "tablist", "aria-label": "Administration",
      "data-testid": "admin-tabs", onkeydown: (event) => this._arrows(event) }, tabs);
    this.bodies = h("div", { class: "admin-sections" });
    root.append(h("h2", { class: "visually-hidden", text: "Administration" }), this.tablist, this.bodies);
  }

  /** Shows a section, creating and loading it the first time (and reloading it afterwards). */
  open(name = this.current ?? "users") {
    const entry = SECTIONS.find(([key]) => key === name);
    if (!entry) return;
    for (const tab of this.tablist.children) {
      const selected = tab.dataset.section === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    let section = this.sections.get(name);
    if (!section) {
      const body = h("section", { class: "admin-section", role: "tabpanel", id: `admin-section-${name}`,
        "aria-labelledby": `admin-tab-${name}`, "data-testid": `admin-section-${name}` });
      this.bodies.append(body);
      section = new entry[2](body, this.context);
      this.sections.set(name, section);
    }
    for (const [key, other] of this.sections) {
      other.root.hidden = key !== name;
      if (key !== name) other.leave?.();
    }
    this.current = name;
    section.load();
  }

  /** The admin view was left (another tab, or signed out): stop any drawing on the map. */
  leave() {
    for (const section of this.sections.values()) section.leave?.();
  }

  /** Signed out: forget what was loaded, so that the next user starts afresh. */
  reset() {
    this.leave();
    this.sections.clear();
    this.bodies.replaceChildren();
    this.current = null;
  }

  // Tabs as the ARIA practices have them: the arrow keys move between them.
  _arrows(event) {
    const tabs = [...this.tablist.children];
    const at = tabs.indexOf(document.activeElement);
    if (at < 0 || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
    event.preventDefault();
    const next = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: tabs.length - 1 }[event.key];
    const tab = tabs[(next + tabs.length) % tabs.length];
    tab.focus();
    this.open(tab.dataset.section);
  }
}
