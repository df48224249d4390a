// Devices (admin): register an insole (its token shown once) or another tracker (CONTRACT §10:
// its protocol and model, no token), rename, disable or enable, rotate an insole's token,
// detection settings, commands, retire (optionally erasing everything stored about it).
import { PROTOCOL_LABELS, ago, compareNames, deviceKind, h } from "./dom.js";
import { DeviceSettingsForm } from "./device-settings.js";
import { busy, confirmAction, explain, field, messageLine, replaceRows, say, secretBox } from "./forms.js";

// The identifier each protocol's devices send: 15 digits, or 10 to 15 for H02 and watches.
const IMEI_RULES = {
  xsole: [/^[0-9]{15}$/, "The IMEI is the insole's 15 digits."],
  gt06: [/^[0-9]{15}$/, "A GT06 device's IMEI is 15 digits."],
  teltonika: [/^[0-9]{15}$/, "A Teltonika device's IMEI is 15 digits."],
  h02: [/^[0-9]{10,15}$/, "An H02 device's identifier is 10 to 15 digits."],
  watch: [/^[0-9]{10,15}$/, "A watch's identifier is 10 to 15 digits."],
};
const MODEL_MAX_LENGTH = 80;
const TOKEN_NOTE = "Shown only now: write it into the insole before leaving this page.";

export class DevicesSection {
  /** context: api, reload() (the page's workers), openCommands(imei). */
  constructor(root, context) {
    this.root = root;
    this.api = context.api;
    this.context = context;
    this.message = messageLine("devices-message");
    this.list = h("ul", { class: "rows", "data-testid": "devices-list" });
    this.registered = h("div", { "data-testid": "device-registered" });
    root.append(this._registerForm(), this.registered, h("h3", { text: "Fleet" }), this.message, this.list);
  }

  _registerForm() {
    const message = messageLine("register-message");
    const imei = h("input", { name: "imei", inputmode: "numeric", autocomplete: "off", maxlength: 15,
      pattern: "[0-9]{10,15}", required: true, "data-testid": "register-imei" });
    const protocol = h("select", { name: "protocol", "data-testid": "register-protocol" },
      Object.entries(PROTOCOL_LABELS).map(([value, label]) => h("option", { value, text: label })));
    const model = h("input", { name: "model", maxlength: MODEL_MAX_LENGTH, autocomplete: "off",
      "data-testid": "register-model" });
    const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off",
      "data-testid": "register-name" });
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "register-submit", text: "Register" });
    const form = h("form", { class: "stack card", "data-testid": "register-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const [pattern, rule] = IMEI_RULES[protocol.value];
        if (!pattern.test(imei.value.trim())) {
          say(message, rule);
          return;
        }
        if (!name.value.trim()) {
          say(message, "Name the worker who wears it.");
          return;
        }
        const body = { imei: imei.value.trim(), name: name.value.trim(), protocol: protocol.value };
        if (model.value.trim()) body.model = model.value.trim();
        const created = await busy(submit, message, "register the device", () => this.api.post("api/v1/devices", body));
        if (!created) return;
        form.reset();
        // Only an insole has a secret; the other trackers are known by their IMEI alone.
        this.registered.replaceChildren(created.token
          ? secretBox(`Token of ${created.name} (${created.imei})`, created.token, "new-device-token", TOKEN_NOTE)
          : h("p", { class: "ok", "data-testid": "new-device-no-token",
            text: `${created.name} (${created.imei}, ${deviceKind(created)}) is registered: it needs no token.` }));
        await this.load();
        this.context.reload();
      } },
    h("h3", { text: "Register a device" }),
    message,
    field("Protocol", protocol, "What the device speaks: an XSole insole, or another tracker."),
    field("IMEI", imei, "15 digits, printed on the insole or tracker (10 to 15 for H02 and watches)."),
    field("Worker's name", name),
    field("Model (optional)", model, "What it is, e.g. Concox GT06N."),
    h("div", { class: "button-row" }, submit));
    return form;
  }

  async load() {
    try {
      const devices = await this.api.all("api/v1/devices", { limit: 500 });
      devices.sort((a, b) => compareNames(a.name, b.name));
      replaceRows(this.list, devices.map((device) => this._row(device)));
      say(this.message, devices.length ? "" : "No insole registered yet.", "ok");
    } catch (error) {
      say(this.message, explain(error, "load the devices"));
    }
  }

  _row(device) {
    const id = device.imei;
    const enabled = device.enabled !== false; // the field comes with the fleet's lifecycle
    const message = messageLine(`device-message-${id}`);
    const extra = h("div", { class: "row-extra" });
    const button = (label, testid, onclick, cls = "quiet") => h("button", { type: "button", class: cls,
      "data-testid": `${testid}-${id}`, text: label, onclick: (event) => onclick(event.currentTarget) });
    const open = (element) => {
      extra.replaceChildren(element);
      element.querySelector("input, select, button")?.focus();
    };

    const rename = () => {
      const input = h("input", { value: device.name, maxlength: 200, required: true, "data-testid": `rename-input-${id}` });
      const save = h("button", { type: "submit", class: "primary", "data-testid": `rename-save-${id}`, text: "Save name" });
      open(h("form", { class: "stack card", novalidate: true, onsubmit: async (event) => {
        event.preventDefault();
        if (!input.value.trim()) return say(message, "A device needs a name.");
        const updated = await busy(save, message, "rename the device",
          () => this.api.patch(`api/v1/devices/${id}`, { name: input.value.trim() }));
        if (updated) {
          await this.load();
          this.context.reload();
        }
        return undefined;
      } }, field("New name", input), h("div", { class: "button-row" }, save)));
    };

    const toggle = async (target) => {
      if (enabled && !(await confirmAction({
        title: `Disable ${device.name}?`,
        text: "Its connection is closed now and the insole cannot log in until you enable it again. " +
          "Its history is kept.",
        confirmLabel: "Disable", danger: true, testid: "confirm-disable-device",
      }))) return;
      const updated = await busy(target, message, enabled ? "disable the device" : "enable the device",
        () => this.api.patch(`api/v1/devices/${id}`, { enabled: !enabled }));
      if (updated) await this.load();
    };

    const rotate = async (target) => {
      if (!(await confirmAction({
        title: `New token for ${device.name}?`,
        text: "The current token stops working at once and the insole is disconnected until it has the new one.",
        confirmLabel: "Make a new token", danger: true, testid: "confirm-rotate",
      }))) return;
      const answer = await busy(target, message, "make a new token", () => this.api.post(`api/v1/devices/${id}/token`));
      if (answer) open(secretBox(`New token of ${device.name}`, answer.token, `device-token-${id}`, TOKEN_NOTE));
    };

    const settings = () => {
      const form = new DeviceSettingsForm(this.api, device);
      open(form.element);
      form.load();
    };

    const retire = async (target) => {
      const erase = h("input", { type: "checkbox", "data-testid": "confirm-retire-erase" });
      const confirmed = await confirmAction({
        title: `Retire ${device.name} (${id})?`,
        text: "The device disappears from solewatch: its connection is closed and it can no longer log in. " +
          "Its IMEI can then be registered again, as a new device with none of this history.",
        extra: [h("label", { class: "check danger-text" }, erase,
          " Also erase everything stored about it: positions, activity, alarms, alerts, commands. This cannot be undone.")],
        confirmLabel: "Retire", danger: true, testid: "confirm-retire",
      });
      if (!confirmed) return;
      const done = await busy(target, message, "retire the device", async () => {
        await this.api.delete(`api/v1/devices/${id}`, erase.checked ? { erase: "true" } : {});
        return true;
      });
      if (done) {
        await this.load();
        say(this.message, `${device.name} was retired${erase.checked ? " and its data erased" : ""}.`, "ok");
        this.context.reload();
      }
    };

    return h("li", { class: "admin-row", "data-testid": `device-${id}`, "data-enabled": String(enabled) },
      h("div", { class: "admin-row-head" },
        h("span", { class: "row-main" },
          h("span", { class: "row-title", "data-testid": "device-name", text: device.name }),
          h("span", { class: "muted", text: `${id} · ${device.online ? "online" : `last seen ${ago(device.last_seen)}`}` }),
          h("span", { class: "muted", "data-testid": "device-kind", text: deviceKind(device) })),
        h("span", { class: `pill ${enabled ? "status-active" : "status-disabled"}`, "data-testid": "device-state",
          text: enabled ? "enabled" : "disabled" })),
      h("div", { class: "button-row" },
        button("Rename", "device-rename", rename),
        button(enabled ? "Disable" : "Enable", "device-toggle", toggle),
        (device.protocol ?? "xsole") === "xsole" ? button("New token", "device-rotate", rotate) : null,
        button("Settings", "device-settings", settings),
        button("Commands", "device-commands", () => this.context.openCommands(id)),
        button("Retire", "device-retire", retire, "quiet danger-text")),
      message,
      extra);
  }
}
