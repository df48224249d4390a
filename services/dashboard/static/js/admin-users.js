// Users (admin): the team's accounts, invitations by email, roles, disabling.
import { ago, compareNames, h } from "./dom.js";
import { busy, confirmAction, explain, field, messageLine, replaceRows, say, secretBox } from "./forms.js";

const ROLES = [["viewer", "Viewer"], ["supervisor", "Supervisor"], ["admin", "Admin"]];
const ROLES_HINT = "Viewers read; supervisors also acknowledge and resolve alerts and send commands; " +
  "admins also manage the team, the fleet and the settings.";
const STATUS_LABELS = { active: "active", invited: "invited", disabled: "disabled" };

export class UsersSection {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.message = messageLine("users-message");
    this.list = h("ul", { class: "rows", "data-testid": "users-list" });
    this.handover = h("div", { "data-testid": "invite-handover" });
    this.inviteForm = this._inviteForm();
    root.append(this.inviteForm, this.handover, h("h3", { text: "Team" }), this.message, this.list);
  }

  _inviteForm() {
    const message = messageLine("invite-message");
    const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off",
      "data-testid": "invite-name" });
    const email = h("input", { name: "email", type: "email", required: true, autocomplete: "off",
      "data-testid": "invite-email" });
    const role = h("select", { name: "role", "data-testid": "invite-role" },
      ROLES.map(([value, label]) => h("option", { value, text: label })));
    role.value = "supervisor";
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "invite-submit",
      text: "Send invitation" });
    const form = h("form", { class: "stack card", "data-testid": "invite-form", novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        if (!name.value.trim() || !email.value.includes("@")) {
          say(message, "Enter the person's name and email address.");
          return;
        }
        const body = { name: name.value.trim(), email: email.value.trim(), role: role.value };
        const created = await busy(submit, message, "invite them", () => this.api.post("api/v1/users", body));
        if (!created) return;
        form.reset();
        role.value = "supervisor";
        this._invited(created.email, created.invitation, message);
        await this.load();
      } },
    h("h3", { text: "Invite someone" }),
    message,
    field("Name", name),
    field("Email", email),
    field("Role", role, ROLES_HINT),
    h("div", { class: "button-row" }, submit));
    return form;
  }

  /**
   * What became of an invitation's email: sent, or (no SMTP server, or it refused) the link
   * itself, for the admin to hand over another way.
   */
  _invited(email, invitation, message) {
    this.handover.replaceChildren();
    if (invitation?.email_sent === false && invitation.link) {
      say(message, `The email to ${email} could not be sent: give them the link below another way.`);
      this.handover.append(secretBox(`Invitation link for ${email}`, invitation.link, "invite-link",
        "It works once, for 72 hours. Whoever opens it joins your team: send it only to them."));
    } else {
      say(message, `Invitation sent to ${email}: the link in it works for 72 hours.`, "ok");
    }
  }

  async load() {
    try {
      const users = await this.api.all("api/v1/users", { limit: 100 });
      users.sort((a, b) => compareNames(a.name ?? a.email, b.name ?? b.email));
      replaceRows(this.list, users.map((user) => this._row(user)));
      say(this.message, users.length ? "" : "No user yet.", "ok");
    } catch (error) {
      say(this.message, explain(error, "load the users"));
    }
  }

  _row(user) {
    const message = messageLine(`user-message-${user.id}`);
    const role = h("select", { "aria-label": `Role of ${user.name || user.email}`, "data-testid": `user-role-${user.id}`,
      disabled: user.status === "disabled" },
    ROLES.map(([value]) => h("option", { value, text: value })));
    role.value = user.role;
    role.addEventListener("change", async () => {
      const updated = await busy(role, message, "change the role",
        () => this.api.patch(`api/v1/users/${user.id}`, { role: role.value }));
      if (updated) {
        Object.assign(user, updated);
        say(message, `Now ${updated.role}.`, "ok");
      } else {
        role.value = user.role; // refused (the last admin...): show what is really stored
      }
    });
    const disabled = user.status === "disabled";
    const toggle = h("button", { type: "button", class: disabled ? "quiet" : "quiet danger-text",
      "data-testid": `user-toggle-${user.id}`, text: disabled ? "Enable" : "Disable",
      onclick: async () => {
        if (!disabled && !(await confirmAction({
          title: `Disable ${user.name || user.email}?`,
          text: "They are signed out everywhere at once and can no longer sign in. You can enable them again.",
          confirmLabel: "Disable", danger: true, testid: "confirm-disable-user",
        }))) return;
        const updated = await busy(toggle, message, disabled ? "enable the user" : "disable the user",
          () => this.api.patch(`api/v1/users/${user.id}`, { disabled: !disabled }));
        if (updated) await this.load();
      } });
    const resend = user.status === "invited" ? h("button", { type: "button", class: "quiet",
      "data-testid": `user-reinvite-${user.id}`, text: "Send a new link",
      onclick: async () => {
        const invitation = await busy(resend, message, "send a new invitation",
          () => this.api.post(`api/v1/users/${user.id}/invitation`));
        if (invitation) this._invited(user.email, invitation, message);
      } }) : null;
    return h("li", { class: "admin-row", "data-testid": `user-${user.id}`, "data-email": user.email,
      "data-status": user.status },
    h("div", { class: "admin-row-head" },
      h("span", { class: "row-main" },
        h("span", { class: "row-title", text: user.name || user.email }),
        h("span", { class: "muted", text: user.email })),
      h("span", { class: `pill status-${user.status}`, "data-testid": "user-status", text: STATUS_LABELS[user.status] ?? user.status })),
    h("div", { class: "muted", text: user.last_login_at ? `Last signed in ${ago(user.last_login_at)}` : "Never signed in" }),
    h("div", { class: "button-row" }, role, toggle, resend),
    message);
  }
}
