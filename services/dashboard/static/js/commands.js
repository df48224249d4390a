// Commands per device: supervisors send one (locate now, vibrate...), everyone
// sees the list, newest first, from queued to done or expired.
import { clock, compareNames, h } from "./dom.js";
import { busy, explain, field, messageLine, say } from "./forms.js";

const REFRESH_EVERY_MS = 5000; // a command's status changes as the insole answers
const COMMANDS = [
  ["locate-now", "Locate now"],
  ["vibrate", "Vibrate"],
  ["set-interval", "Set reporting interval"],
  ["alarm-acknowledged", "Alarm acknowledged"],
  ["reboot", "Reboot"],
];
const COMMAND_LABELS = Object.fromEntries(COMMANDS);
// The commands that take an argument: a number of seconds, sent as big-endian bytes in hex
// (the API's `args`; layouts in shared/protocols/xsole/command_args.py).
const SECONDS = {
  "set-interval": { label: "Interval (seconds)", max: 65535, bytes: 2, required: true },
  vibrate: { label: "For how long (seconds, optional)", max: 255, bytes: 1, required: false },
};

/** A command's arguments in words: "every 60 s", "for 5 s". */
function argsText(command, args) {
  if (!args) return "";
  const seconds = parseInt(args, 16);
  if (command === "set-interval") return `every ${seconds} s`;
  if (command === "vibrate") return `for ${seconds} s`;
  return `arguments ${args}`;
}

export class CommandsPanel {
  constructor(root, store, api) {
    this.store = store;
    this.api = api;
    this.timer = null;
    this.cursor = null;
    this.worker = h("select", { "data-testid": "commands-worker", onchange: () => this.load() });
    this.message = messageLine("commands-message");
    this.list = h("ul", { class: "rows", "data-testid": "commands-list" });
    this.more = h("button", { type: "button", class: "quiet", "data-testid": "commands-more", hidden: true,
      text: "Older commands", onclick: () => this.load({ append: true }) });
    root.append(h("h2", { text: "Commands" }), field("Worker", this.worker), this._sendForm(), this.message,
      this.list, this.more);
  }

  _sendForm() {
    const message = messageLine("command-send-message");
    const command = h("select", { name: "command", "data-testid": "command-kind" },
      COMMANDS.map(([value, label]) => h("option", { value, text: label })));
    const seconds = h("input", { name: "seconds", type: "number", min: 1, step: 1, inputmode: "numeric",
      "data-testid": "command-seconds" });
    const secondsField = field("Seconds", seconds);
    const shown = () => {
      const spec = SECONDS[command.value];
      secondsField.hidden = !spec;
      if (spec) {
        secondsField.firstChild.textContent = spec.label;
        seconds.max = spec.max;
      }
    };
    command.addEventListener("change", shown);
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "command-send", text: "Send" });
    const form = h("form", { class: "stack card needs-supervisor", "data-testid": "command-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const imei = this.worker.value;
        if (!imei) return say(message, "Choose a worker first.");
        const body = { command: command.value };
        const spec = SECONDS[command.value];
        if (spec && (seconds.value.trim() || spec.required)) {
          const value = Number(seconds.value);
          if (!Number.isInteger(value) || value < 1 || value > spec.max) {
            return say(message, `${spec.label.replace(/ \(.*/, "")}: a whole number of seconds, 1 to ${spec.max}.`);
          }
          body.args = value.toString(16).padStart(spec.bytes * 2, "0");
        }
        const queued = await busy(submit, message, "send the command",
          () => this.api.post(`api/v1/devices/${imei}/commands`, body));
        if (queued) {
          seconds.value = "";
          say(message, `${COMMAND_LABELS[queued.command] ?? queued.command} is ${queued.status}.`, "ok");
          await this.load();
        }
        return undefined;
      } },
    h("h3", { text: "Send a command" }),
    message,
    field("Command", command),
    secondsField,
    h("div", { class: "button-row" }, submit));
    shown();
    return form;
  }

  refreshWorkers() {
    const selected = this.worker.value;
    const devices = [...this.store.devices.values()].sort((a, b) => compareNames(a.name, b.name));
    const current = [...this.worker.options].map((o) => o.value).join();
    if (current === devices.map((d) => d.imei).join()) return;
    this.worker.replaceChildren(...devices.map((d) => h("option", { value: d.imei, text: `${d.name} (${d.imei})` })));
    if (selected && this.store.devices.has(selected)) this.worker.value = selected;
  }

  /** The panel is shown for that worker (or the one chosen before); refreshes while it stays shown. */
  show(imei = null) {
    this.refreshWorkers();
    if (imei) this.worker.value = imei;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load({ quiet: true }), REFRESH_EVERY_MS);
    return this.load();
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async load({ append = false, quiet = false } = {}) {
    const imei = this.worker.value;
    if (!imei) {
      this.list.replaceChildren();
      say(this.message, "No worker yet.", "ok");
      return;
    }
    try {
      const page = await this.api.get(`api/v1/devices/${imei}/commands`,
        { limit: 50, cursor: append ? this.cursor : null });
      if (imei !== this.worker.value) return; // another worker was chosen meanwhile
      const rows = page.items.map((item) => this._row(item));
      const olderShown = quiet && this.list.children.length > rows.length;
      if (append) this.list.append(...rows);
      else if (olderShown) this._refreshFirst(rows); // keep the older pages the user opened
      else this.list.replaceChildren(...rows);
      if (!olderShown) this.cursor = page.next_cursor;
      this.more.hidden = !this.cursor;
      if (!append && rows.length === 0) say(this.message, "No command sent to this worker yet.", "ok");
      else say(this.message, "");
    } catch (error) {
      if (!quiet) say(this.message, explain(error, "load the commands"));
    }
  }

  // A quiet refresh while older pages are shown: only the newest page is replaced.
  _refreshFirst(rows) {
    const ids = new Set(rows.map((row) => row.dataset.id));
    for (const old of [...this.list.children]) if (ids.has(old.dataset.id)) old.remove();
    this.list.prepend(...rows);
  }

  _row(item) {
    const times = [
      `queued ${clock(item.created_at)}`,
      item.sent_at ? `sent ${clock(item.sent_at)}` : null,
      item.completed_at ? `${item.status} ${clock(item.completed_at)}` : null,
    ].filter(Boolean).join(" · ");
    return h("li", { class: "admin-row", "data-testid": `command-${item.id}`, "data-id": String(item.id),
      "data-status": item.status },
    h("div", { class: "admin-row-head" },
      h("span", { class: "row-main" },
        h("span", { class: "row-title", text: COMMAND_LABELS[item.command] ?? item.command }),
        h("span", { class: "muted", text: argsText(item.command, item.args) })),
      h("span", { class: `pill command-${item.status}`, "data-testid": "command-status", text: item.status })),
    h("div", { class: "muted", text: times }));
  }
}
