// The escalation policy (admin): whom to tell at each step while nobody acknowledges
// an alert, how long to wait before the next step, and by which channels.
import { compareNames, h } from "./dom.js";
import { busy, explain, field, messageLine, say } from "./forms.js";

const CHANNELS = [["sms", "SMS"], ["email", "Email"], ["voice", "Phone call"]];
const MAX_STEPS = 10;

export class EscalationSection {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.contacts = [];
    this.message = messageLine("escalation-message");
    this.steps = h("ol", { class: "steps", "data-testid": "escalation-steps" });
    this.add = h("button", { type: "button", class: "quiet", "data-testid": "escalation-add", text: "Add a step",
      onclick: () => this._addStep({ contacts: [], wait_s: 300, channels: ["sms", "email"] }, true) });
    this.save = h("button", { type: "submit", class: "primary", "data-testid": "escalation-save", text: "Save policy" });
    this.updated = h("p", { class: "muted", "data-testid": "escalation-updated" });
    // Disabled while the stored policy is read: it replaces the steps shown.
    this.fields = h("fieldset", { class: "bare stack", disabled: true }, this.steps,
      h("div", { class: "button-row" }, this.add, this.save));
    this.form = h("form", { class: "stack", "data-testid": "escalation-form", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this._save();
      } },
    h("h3", { text: "Escalation policy" }),
    h("p", { class: "muted", text: "Without steps, every contact who wants an alert's kind is told at once. " +
      "With steps, the first step's contacts are told, and each next step follows when nobody has acknowledged " +
      "within the wait." }),
    this.message, this.fields,
    this.updated);
    root.append(this.form);
  }

  async load() {
    this.fields.disabled = true;
    try {
      const [contacts, policy] = await Promise.all([
        this.api.get("api/v1/contacts"), this.api.get("api/v1/escalation-policy")]);
      this.contacts = contacts.items.sort((a, b) => compareNames(a.name, b.name));
      this.steps.replaceChildren();
      for (const step of policy.steps) this._addStep(step);
      this._updatedAt(policy.updated_at);
      say(this.message, this.contacts.length ? "" : "Add contacts first: steps name them.", "ok");
      this.fields.disabled = false;
    } catch (error) {
      say(this.message, explain(error, "load the escalation policy"));
    }
  }

  _updatedAt(at) {
    this.updated.textContent = at ? `Last changed ${new Date(at).toLocaleString()}.` : "No policy yet.";
  }

  _addStep(step, focus = false) {
    if (this.steps.children.length >= MAX_STEPS) {
      say(this.message, `At most ${MAX_STEPS} steps.`);
      return;
    }
    const contacts = h("fieldset", { class: "checks" }, h("legend", { text: "Tell" }),
      this.contacts.map((contact) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "contact", value: contact.id, checked: step.contacts.includes(contact.id) }),
        ` ${contact.name}`)));
    // A step naming a contact that no longer exists keeps it, so that saving says so rather than dropping it.
    for (const id of step.contacts.filter((cid) => !this.contacts.some((c) => c.id === cid))) {
      contacts.append(h("label", { class: "check danger-text" },
        h("input", { type: "checkbox", name: "contact", value: id, checked: true }), ` contact ${id} (removed)`));
    }
    const channels = h("fieldset", { class: "checks" }, h("legend", { text: "By" }),
      CHANNELS.map(([value, label]) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "channel", value, checked: step.channels.includes(value) }), ` ${label}`)));
    const wait = h("input", { type: "number", name: "wait", min: 10 / 60, max: 1440, step: "any",
      value: String(Math.round((step.wait_s / 60) * 100) / 100) });
    const remove = h("button", { type: "button", class: "quiet danger-text", text: "Remove step",
      onclick: () => {
        item.remove();
        this._renumber();
      } });
    const item = h("li", { class: "card stack step", "data-testid": "escalation-step" },
      h("h4", { class: "step-title" }), contacts, channels,
      field("Then wait (minutes) before the next step", wait), h("div", { class: "button-row" }, remove));
    this.steps.append(item);
    this._renumber();
    if (focus) item.querySelector("input")?.focus();
  }

  _renumber() {
    [...this.steps.children].forEach((item, index) => {
      item.querySelector(".step-title").textContent = `Step ${index + 1}`;
    });
  }

  _body() {
    return {
      steps: [...this.steps.children].map((item, index) => {
        const ticked = (name) => [...item.querySelectorAll(`input[name="${name}"]:checked`)].map((box) => box.value);
        const contacts = ticked("contact").map(Number);
        const channels = ticked("channel");
        const minutes = Number(item.querySelector('input[name="wait"]').value);
        if (contacts.length === 0) throw new Error(`Step ${index + 1}: tick at least one contact.`);
        if (channels.length === 0) throw new Error(`Step ${index + 1}: tick at least one channel.`);
        if (!(minutes * 60 >= 10 && minutes <= 1440)) {
          throw new Error(`Step ${index + 1}: wait between 10 seconds and 24 hours (1440 minutes).`);
        }
        return { contacts, wait_s: Math.round(minutes * 60), channels };
      }),
    };
  }

  async _save() {
    let body;
    try {
      body = this._body();
    } catch (error) {
      say(this.message, error.message);
      return;
    }
    const saved = await busy(this.save, this.message, "save the escalation policy",
      () => this.api.put("api/v1/escalation-policy", body));
    if (saved) {
      this._updatedAt(saved.updated_at);
      say(this.message, saved.steps.length ? `Saved: ${saved.steps.length} step(s).` : "Saved: no steps.", "ok");
    }
  }
}
