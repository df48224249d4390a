// What the admin pages share: labelled fields, messages that say an API error's
// detail in words, a confirmation dialog, and a secret shown once with a copy button.
import { ApiError, SessionEnded } from "./api.js";
import { h } from "./dom.js";

export const MIN_PASSWORD = 12; // CONTRACT §5: shorter passwords get a 422

let fieldIds = 0;

/** A label above its input (the input gets an id, so the label names it for screen readers). */
export function field(label, input, hint = null) {
  input.id ||= `field-${++fieldIds}`;
  const hintElement = hint ? h("span", { class: "hint", id: `${input.id}-hint`, text: hint }) : null;
  if (hintElement) input.setAttribute("aria-describedby", hintElement.id);
  return h("label", { class: "field", for: input.id }, h("span", { text: label }), input, hintElement);
}

/** A message line for a form: role=alert, so screen readers say it when it changes. */
export function messageLine(testid) {
  return h("p", { class: "form-message", role: "alert", "data-testid": testid, hidden: true });
}

/** Shows `text` in a message line ("error" or "ok"); an empty text hides it. */
export function say(line, text, kind = "error") {
  line.textContent = text ?? "";
  line.dataset.kind = kind;
  line.hidden = !text;
}

/** An error in words for `what` ("invite the user"): the API's detail, or null when the session ended. */
export function explain(error, what) {
  if (error instanceof SessionEnded) return null;
  if (error instanceof ApiError) {
    if (error.status === 403) return `You are not allowed to ${what}: ${error.message}`;
    return `Could not ${what}: ${error.message}`;
  }
  return `Could not ${what}: ${error.message}`;
}

/** Runs `work` with `button` disabled; an error goes to `line` in words. Returns work's result or undefined. */
export async function busy(button, line, what, work) {
  button.disabled = true;
  say(line, "");
  try {
    return await work();
  } catch (error) {
    const text = explain(error, what);
    if (text) say(line, text);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/**
 * A modal confirmation: resolves true when `confirmLabel` is chosen. `extra` (nodes) go
 * between the text and the buttons, such as a checkbox that changes what is done.
 */
export function confirmAction({ title, text, confirmLabel, danger = false, extra = [], testid = "confirm" }) {
  return new Promise((resolve) => {
    const confirmButton = h("button", { type: "submit", class: danger ? "danger" : "primary", value: "yes",
      "data-testid": `${testid}-yes`, text: confirmLabel });
    const dialog = h("dialog", { class: "dialog", "data-testid": testid, "aria-labelledby": `${testid}-title` },
      h("form", { method: "dialog" },
        h("h2", { id: `${testid}-title`, text: title }),
        h("p", { text }),
        ...extra,
        h("div", { class: "button-row" },
          h("button", { type: "submit", class: "quiet", value: "no", "data-testid": `${testid}-no`, text: "Cancel" }),
          confirmButton)));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector('[value="no"]').focus(); // the safe choice has the focus
  });
}

/**
 * A secret shown once (a device token, an invitation link): selectable text, a copy button,
 * and `note`, what to do with it. Returns the element to insert.
 */
export function secretBox(label, secret, testid, note) {
  const value = h("code", { class: "secret-value", "data-testid": `${testid}-value`, text: secret });
  const status = h("span", { class: "muted", role: "status", "data-testid": `${testid}-copied` });
  const copy = h("button", { type: "button", class: "quiet", "data-testid": `${testid}-copy`, text: "Copy",
    onclick: async () => {
      status.textContent = (await copyText(secret, value)) ? "Copied." : "Select the text and copy it by hand.";
    } });
  return h("div", { class: "secret-box", "data-testid": testid, role: "group", "aria-label": label },
    h("strong", { text: label }),
    value,
    h("div", { class: "button-row" }, copy, status),
    h("p", { class: "muted", text: note }));
}

async function copyText(text, element) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no clipboard API (plain http on another host): select it, so that the user can copy it
    const range = document.createRange();
    range.selectNodeContents(element);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    return false;
  }
}

/**
 * A list's new rows in place of its old ones, the keyboard focus kept: a reload never
 * drops the focus of someone tabbing through the list (rows' controls have stable test ids).
 */
export function replaceRows(list, rows) {
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
  list.replaceChildren(...rows);
  if (focused) list.querySelector(`[data-testid="${focused}"]`)?.focus();
}

/** A datetime-local value as ISO-8601 UTC, or null when empty or invalid. */
export function fromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}
