// Contacts (admin): who is told about which kinds of alert, by email, SMS or call.
import { KIND_LABELS, compareNames, h } from "./dom.js";
import { busy, confirmAction, explain, field, messageLine, replaceRows, say } from "./forms.js";

const E164 = /^\+[1-9]\d{1,14}$/;

export class ContactsSection {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.message = messageLine("contacts-message");
    this.list = h("ul", { class: "rows", "data-testid": "contacts-list" });
    root.append(this._addForm(), h("h3", { text: "Contacts" }), this.message, this.list);
  }

  _addForm() {
    const message = messageLine("contact-add-message");
    const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off", "data-testid": "contact-name" });
    const email = h("input", { name: "email", type: "email", autocomplete: "off", "data-testid": "contact-email" });
    const phone = h("input", { name: "phone", type: "tel", autocomplete: "off", placeholder: "+33612345678",
      "data-testid": "contact-phone" });
    const kinds = Object.entries(KIND_LABELS).map(([kind, label]) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "kinds", value: kind, checked: true, "data-testid": `contact-kind-${kind}` }),
      ` ${label}`));
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "contact-submit", text: "Add contact" });
    const form = h("form", { class: "stack card", "data-testid": "contact-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = [...form.querySelectorAll('input[name="kinds"]:checked')].map((box) => box.value);
        const body = { name: name.value.trim(), kinds: chosen };
        if (email.value.trim()) body.email = email.value.trim();
        if (phone.value.trim()) body.phone = phone.value.replaceAll(/[\s.-]/g, "");
        if (!body.name) return say(message, "Give the contact a name.");
        if (!body.email && !body.phone) return say(message, "Give an email address, a phone number, or both.");
        if (body.phone && !E164.test(body.phone)) {
          return say(message, "Write the phone number in international form: + then the country code, e.g. +33612345678.");
        }
        if (chosen.length === 0) return say(message, "Tick at least one kind of alert.");
        const created = await busy(submit, message, "add the contact", () => this.api.post("api/v1/contacts", body));
        if (created) {
          form.reset();
          say(message, `${created.name} added.`, "ok");
          await this.load();
        }
        return undefined;
      } },
    h("h3", { text: "Add a contact" }),
    message,
    field("Name", name),
    field("Email", email),
    field("Phone (SMS, calls)", phone, "International form: + then the country code."),
    h("fieldset", { class: "checks" }, h("legend", { text: "Told about" }), kinds),
    h("div", { class: "button-row" }, submit));
    return form;
  }

  async load() {
    try {
      const page = await this.api.get("api/v1/contacts");
      const contacts = page.items.sort((a, b) => compareNames(a.name, b.name));
      replaceRows(this.list, contacts.map((contact) => this._row(contact)));
      say(this.message, contacts.length ? "" : "Nobody is told about alerts yet: add a contact.", "ok");
    } catch (error) {
      say(this.message, explain(error, "load the contacts"));
    }
  }

  _row(contact) {
    const message = messageLine(`contact-message-${contact.id}`);
    const remove = h("button", { type: "button", class: "quiet danger-text", "data-testid": `contact-delete-${contact.id}`,
      text: "Remove", onclick: async () => {
        if (!(await confirmAction({
          title: `Remove ${contact.name}?`,
          text: "They are no longer told about alerts, and escalation steps naming them skip them.",
          confirmLabel: "Remove", danger: true, testid: "confirm-delete-contact",
        }))) return;
        const done = await busy(remove, message, "remove the contact", async () => {
          await this.api.delete(`api/v1/contacts/${contact.id}`);
          return true;
        });
        if (done) await this.load();
      } });
    const kinds = contact.kinds.length === Object.keys(KIND_LABELS).length
      ? "every alert" : contact.kinds.map((kind) => KIND_LABELS[kind] ?? kind).join(", ");
    return h("li", { class: "admin-row", "data-testid": `contact-${contact.id}` },
      h("div", { class: "admin-row-head" },
        h("span", { class: "row-main" },
          h("span", { class: "row-title", text: contact.name }),
          h("span", { class: "muted", text: [contact.email, contact.phone].filter(Boolean).join(" · ") })),
        remove),
      h("div", { class: "muted", text: `Told about ${kinds}` }),
      message);
  }
}
