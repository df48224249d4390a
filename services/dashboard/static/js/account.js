// The pages the emailed links open (#/accept-invite?token=..., #/reset-password?token=...),
// "forgot password" from the sign-in form, and the signed-in user's password change.
import { ApiError, postPublic } from "./api.js";
import { byTestId, h } from "./dom.js";
import { MIN_PASSWORD, busy, explain, field, messageLine, say } from "./forms.js";

const ROUTES = /^#\/(accept-invite|reset-password|forgot-password)(?:\?(.*))?$/;

function passwordInput(name, testid, autocomplete = "new-password") {
  return h("input", { name, type: "password", autocomplete, required: true, minlength: MIN_PASSWORD,
    "data-testid": testid });
}

/** The new password and its repetition: a sentence saying what is wrong, or null. */
function newPasswordProblem(password, repeated) {
  if (password.length < MIN_PASSWORD) return `Choose a password of at least ${MIN_PASSWORD} characters.`;
  if (password !== repeated) return "The two passwords differ: type the same one twice.";
  return null;
}

function tokenError(error, what) {
  if (error instanceof ApiError && error.status === 400) {
    return `This link cannot be used any more (${error.message}): it was already used, or it expired. ` +
      (what === "invite" ? "Ask your administrator for a new invitation." : "Ask for a new link below.");
  }
  return explain(error, what === "invite" ? "accept the invitation" : "change the password");
}

/**
 * The screens beside the sign-in form. hooks: signedIn(pair) once an invitation is accepted,
 * showLogin(message) when the user should sign in, onWait(seconds, status, line) while the server is away.
 */
export class AccountScreens {
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.login = byTestId("login-form", root);
    this.screens = {
      "accept-invite": this._acceptForm(),
      "reset-password": this._resetForm(),
      "forgot-password": this._forgotForm(),
    };
    for (const form of Object.values(this.screens)) root.append(form);
    this.token = "";
  }

  /** Shows the screen a link names; false when the address names none (the sign-in form or the app). */
  route(hash) {
    const match = ROUTES.exec(hash);
    if (!match) return false;
    const [, screen, query] = match;
    this.token = new URLSearchParams(query ?? "").get("token") ?? "";
    this.show(screen);
    return true;
  }

  show(screen) {
    this.login.hidden = true;
    for (const [name, form] of Object.entries(this.screens)) {
      form.hidden = name !== screen;
      if (name === screen) {
        form.reset();
        say(byTestId(`${name}-message`, form), "");
      }
    }
    const form = this.screens[screen];
    const tokenMissing = screen !== "forgot-password" && !this.token;
    if (tokenMissing) say(byTestId(`${screen}-message`, form), "This link has no token: open the whole link from the email.");
    form.querySelector("input")?.focus();
  }

  /** Back to the sign-in form (hides the link screens). */
  hide() {
    for (const form of Object.values(this.screens)) form.hidden = true;
    this.login.hidden = false;
  }

  _frame(name, title, lead, fields, submitLabel, onSubmit) {
    const message = messageLine(`${name}-message`);
    const submit = h("button", { type: "submit", class: "primary", "data-testid": `${name}-submit`, text: submitLabel });
    const form = h("form", { class: "login-form", "data-testid": `${name}-form`, novalidate: true, hidden: true,
      onsubmit: (event) => {
        event.preventDefault();
        onSubmit(form, message, submit);
      } },
    h("h1", { class: "brand-title", text: "solewatch" }),
    h("h2", { class: "screen-title", text: title }),
    h("p", { class: "login-lead", text: lead }),
    message,
    ...fields,
    submit,
    h("a", { href: "#/", class: "link", "data-testid": `${name}-back`, text: "Back to sign in" }));
    return form;
  }

  _acceptForm() {
    return this._frame("accept-invite", "Join your team",
      `You were invited to solewatch. Choose a password (at least ${MIN_PASSWORD} characters) to sign in.`,
      [field("New password", passwordInput("password", "accept-invite-password")),
        field("Repeat the password", passwordInput("repeat", "accept-invite-repeat"))],
      "Set password and sign in",
      async (form, message, submit) => {
        const problem = newPasswordProblem(form.elements.password.value, form.elements.repeat.value);
        if (problem) return say(message, problem);
        if (!this.token) return say(message, "This link has no token: open the whole link from the email.");
        submit.disabled = true;
        say(message, "");
        try {
          const pair = await postPublic("api/v1/auth/accept-invite",
            { token: this.token, password: form.elements.password.value }, this._waiting(message));
          form.reset();
          await this.hooks.signedIn(pair);
        } catch (error) {
          say(message, tokenError(error, "invite"));
        } finally {
          submit.disabled = false;
        }
        return undefined;
      });
  }

  _resetForm() {
    return this._frame("reset-password", "Choose a new password",
      `At least ${MIN_PASSWORD} characters. Every session of your account is signed out afterwards.`,
      [field("New password", passwordInput("password", "reset-password-password")),
        field("Repeat the password", passwordInput("repeat", "reset-password-repeat"))],
      "Change password",
      async (form, message, submit) => {
        const problem = newPasswordProblem(form.elements.password.value, form.elements.repeat.value);
        if (problem) return say(message, problem);
        if (!this.token) return say(message, "This link has no token: open the whole link from the email.");
        submit.disabled = true;
        say(message, "");
        try {
          await postPublic("api/v1/auth/password-reset/confirm",
            { token: this.token, password: form.elements.password.value }, this._waiting(message));
          form.reset();
          this.hooks.showLogin("Your password has been changed. Sign in with the new one.");
        } catch (error) {
          say(message, tokenError(error, "reset"));
        } finally {
          submit.disabled = false;
        }
        return undefined;
      });
  }

  _forgotForm() {
    const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true,
      "data-testid": "forgot-password-email" });
    return this._frame("forgot-password", "Forgot your password?",
      "Enter your account's email address: we send it a link to choose a new password.",
      [field("Email", email)],
      "Send the link",
      async (form, message, submit) => {
        const address = email.value.trim();
        if (!address.includes("@")) return say(message, "Enter the email address of your account.");
        submit.disabled = true;
        say(message, "");
        try {
          await postPublic("api/v1/auth/password-reset", { email: address }, this._waiting(message));
          // The same words whether or not the address has an account: the server does not say either.
          say(message, `If ${address} has an account, an email with a link is on its way. ` +
            "The link works for one hour.", "ok");
        } catch (error) {
          say(message, explain(error, "send the link"));
        } finally {
          submit.disabled = false;
        }
        return undefined;
      });
  }

  _waiting(message) {
    return (seconds, status) => say(message, `${status ? `The server is unavailable (${status})` :
      "The server cannot be reached"}. Retrying in ${Math.ceil(seconds)} s…`, "wait");
  }
}

/** The signed-in user's own password: current one, new one twice. */
export class PasswordPanel {
  constructor(root, api) {
    this.api = api;
    const current = passwordInput("current", "password-current", "current-password");
    current.removeAttribute("minlength"); // an older password may be shorter than today's rule
    const message = messageLine("password-message");
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "password-submit",
      text: "Change password" });
    this.form = h("form", { class: "stack", "data-testid": "password-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const fields = this.form.elements;
        if (!fields.current.value) return say(message, "Enter your current password.");
        const problem = newPasswordProblem(fields.password.value, fields.repeat.value);
        if (problem) return say(message, problem);
        const done = await busy(submit, message, "change your password", async () => {
          await this.api.request("POST", "api/v1/auth/password", {
            body: { current_password: fields.current.value, new_password: fields.password.value },
            checksCredentials: true,
          });
          return true;
        });
        if (done) {
          this.form.reset();
          say(message, "Your password has been changed. Your other sessions were signed out.", "ok");
        }
        return undefined;
      } },
    h("h2", { text: "Your password" }),
    message,
    field("Current password", current),
    field("New password", passwordInput("password", "password-new"), `At least ${MIN_PASSWORD} characters.`),
    field("Repeat the new password", passwordInput("repeat", "password-repeat")),
    h("div", { class: "button-row" }, submit));
    root.append(this.form);
  }
}

/**
 * The signed-in user's weekly digest email (GET/PUT /api/v1/auth/me/digest; docs/reports.md).
 * `load()` reads the choice each time the account view opens: whoever is signed in now.
 */
export class DigestPanel {
  constructor(root, api) {
    this.api = api;
    const message = messageLine("digest-message");
    this.message = message;
    this.box = h("input", { type: "checkbox", name: "weekly_digest", "data-testid": "digest-weekly", disabled: true,
      onchange: async () => {
        const wanted = this.box.checked;
        this.box.disabled = true;
        say(message, "");
        try {
          const saved = await this.api.request("PUT", "api/v1/auth/me/digest", { body: { weekly_digest: wanted } });
          this.box.checked = saved.weekly_digest;
          say(message, saved.weekly_digest ? "You will get the digest every week." : "No more weekly digest.", "ok");
        } catch (error) {
          this.box.checked = !wanted;
          say(message, explain(error, "change the weekly digest"));
        } finally {
          this.box.disabled = false;
        }
      } });
    root.append(h("section", { class: "stack", "data-testid": "digest-panel" },
      h("h2", { text: "Weekly digest" }),
      h("label", { class: "check" }, this.box, " Email me the week's alerts, response times and silent devices"),
      h("p", { class: "muted", text: "Sent on Monday mornings to admins who ask for it." }),
      message));
  }

  async load() {
    this.box.disabled = true;
    say(this.message, "");
    try {
      this.box.checked = (await this.api.get("api/v1/auth/me/digest")).weekly_digest;
      this.box.disabled = false;
    } catch (error) {
      say(this.message, explain(error, "read your weekly digest choice"));
    }
  }
}
