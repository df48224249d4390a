// The solewatch dashboard: sign-in, then the live map, workers, alerts and
// history of the signed-in user's tenant, from the public REST API and
// Socket.IO events only (docs/dashboard.md).
import { AccountScreens, DigestPanel, PasswordPanel } from "./account.js";
import { AlertsPanel, SosCue } from "./alerts.js";
import { Api, ApiError, Session, SessionEnded, appUrl } from "./api.js";
import { CommandsPanel } from "./commands.js";
import { byTestId } from "./dom.js";
import { HistoryPanel } from "./history.js";
import { PushToggle, registerServiceWorker } from "./push.js";
import { connectLive } from "./live.js";
import { WorkerMap } from "./map.js";
import { unlockAudio } from "./sound.js";
import { Store } from "./store.js";
import { WorkersPanel } from "./workers.js";

const RELOAD_EVERY_MS = 60_000; // live events are best effort: resynchronise now and then
const TICK_EVERY_MS = 5_000; // "12 s ago" labels
const phone = window.matchMedia("(max-width: 899px)");
// Views only some roles have: a viewer never sees the admin area, nor is it loaded for them.
const VIEW_ROLES = { admin: new Set(["admin"]) };

const SESSION_MESSAGES = {
  expired: "Your session has expired. Please sign in again.",
  "signed-out": "You have signed out.",
  "signed-out-elsewhere": "You were signed out in another tab.",
};

class Notice {
  constructor(element) {
    this.element = element;
    this.timer = null;
  }

  unavailable(seconds, status) {
    const what = status ? `The server is unavailable (${status})` : "The server cannot be reached";
    let left = Math.ceil(seconds);
    this._show("unavailable", `${what}. Retrying in ${left} s…`);
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(this.timer);
        this.element.textContent = `${what}. Retrying now…`;
      } else {
        this.element.textContent = `${what}. Retrying in ${left} s…`;
      }
    }, 1000);
  }

  error(message) {
    this._show("error", message);
    clearInterval(this.timer);
    this.timer = setTimeout(() => this.hide(), 8000);
  }

  recovered() {
    if (this.element.dataset.kind === "unavailable" && !this.element.hidden) this.hide();
  }

  hide() {
    clearInterval(this.timer);
    this.element.hidden = true;
    this.element.dataset.kind = "";
  }

  _show(kind, text) {
    this.element.dataset.kind = kind;
    this.element.textContent = text;
    this.element.hidden = false;
  }
}

async function loadConfig() {
  try {
    const response = await fetch(appUrl("dashboard-config.json"), { cache: "no-cache" });
    if (response.ok) return await response.json();
  } catch {
    // defaults below: no tiles
  }
  return { tile_url: null, tile_attribution: "", low_battery_threshold: 15 };
}

class Dashboard {
  constructor(config) {
    this.config = config;
    this.store = new Store(config);
    this.notice = new Notice(byTestId("notice"));
    this.session = new Session({ onWait: (s, status) => this.notice.unavailable(s, status) });
    this.api = new Api(this.session, {
      onWait: (s, status) => this.notice.unavailable(s, status),
      onOk: () => this.notice.recovered(),
      onSessionEnded: (reason) => this.end(reason),
    });
    this.session.addEventListener("ended", (event) => this.end(event.detail));
    this.live = null;
    this.timers = [];
    this.views = null;
    this.active = false;
    this.reloading = null;
    this.reloadAgain = false;
    this.buffered = null;
    this.fetching = new Set(); // IMEIs of devices being loaded one by one
    this.role = null;
    this.accounts = new AccountScreens(byTestId("login-screen"), {
      signedIn: async (pair) => {
        this.session.adopt(pair);
        this._forgetLink();
        await this.enter();
      },
      showLogin: (message) => {
        this._forgetLink();
        this.showLogin(message);
      },
    });
    window.addEventListener("hashchange", () => this._route());
    this._wireLogin();
    this._wireNavigation();
    this.push = new PushToggle(this.api, byTestId("push-toggle"), (id) => this.showAlert(id));
    registerServiceWorker();
  }

  async start() {
    byTestId("booting").hidden = true;
    if (this.accounts.route(location.hash)) this._showLinkScreen();
    else if (this.session.signedIn) await this.enter();
    else this.showLogin("");
  }

  // -- the pages emailed links open (#/accept-invite, #/reset-password) and "forgot password" -----

  async _route() {
    if (this.accounts.route(location.hash)) {
      this._showLinkScreen();
    } else if (!this.active) {
      if (this.session.signedIn) await this.enter();
      else this.showLogin("");
    }
  }

  _showLinkScreen() {
    if (this.active) this.stop(); // someone else's link opened in this tab: theirs is the page now
    byTestId("app").hidden = true;
    byTestId("login-screen").hidden = false;
  }

  /** The link's token has been used: take it out of the address bar and history. */
  _forgetLink() {
    history.replaceState(null, "", location.pathname + location.search);
  }

  // -- signing in and out ------------------------------------------------------------

  _wireLogin() {
    const form = byTestId("login-form");
    const message = byTestId("login-message");
    const submit = byTestId("login-submit");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      unlockAudio(); // a user gesture: the SOS tones may play from now on
      const email = form.elements.email.value.trim();
      const password = form.elements.password.value;
      if (!email || !password) {
        this._say(message, "Enter your email and password.");
        return;
      }
      submit.disabled = true;
      this._say(message, "");
      try {
        await this.session.signIn(email, password, (seconds, status) => this._say(message,
          `${status ? `The server is unavailable (${status})` : "The server cannot be reached"}. ` +
          `Retrying in ${Math.ceil(seconds)} s…`));
        form.elements.password.value = "";
        await this.enter();
      } catch (error) {
        this._say(message, signInError(error));
      } finally {
        submit.disabled = false;
      }
    });
    byTestId("sign-out").addEventListener("click", async () => {
      await this.push.unsubscribe().catch(() => {}); // this device stops getting that user's alerts
      this.stop();
      await this.session.signOut();
      this.showLogin(SESSION_MESSAGES["signed-out"]);
    });
    document.addEventListener("pointerdown", unlockAudio);
    document.addEventListener("keydown", unlockAudio);
  }

  _say(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  showLogin(text) {
    this.accounts.hide();
    byTestId("app").hidden = true;
    byTestId("login-screen").hidden = false;
    this._say(byTestId("login-message"), text);
    byTestId("login-email").focus();
  }

  async enter() {
    byTestId("login-screen").hidden = true;
    byTestId("app").hidden = false;
    this.active = true;
    this._createViews();
    this.setView("map");
    try {
      const me = await this.api.get("api/v1/auth/me");
      byTestId("tenant-name").textContent = me.tenant.name;
      byTestId("user-email").textContent = me.email ?? "";
      byTestId("account-email").textContent = me.email ?? "";
      byTestId("account-role").textContent = me.role;
      this.role = me.role;
      document.body.dataset.role = me.role;
      if (me.role === "admin") await this._loadAdmin();
      if (!this._allowed(document.body.dataset.view)) this.setView("map");
      this.push.show(me.role).catch(() => {});
    } catch (error) {
      if (error instanceof SessionEnded) return;
      this.notice.error(`Could not load your account: ${error.message}`);
    }
    if (!this.active) return;
    this.live = connectLive(this.session, {
      onEvent: (name, data) => this._event(name, data),
      onStatus: (state) => this._liveStatus(state),
      onConnected: () => this.reload(),
      onSessionEnded: (reason) => this.end(reason),
    });
    this.timers.push(setInterval(() => this._tick(), TICK_EVERY_MS));
    this.timers.push(setInterval(() => this.reload(), RELOAD_EVERY_MS));
    const pushed = /^#alert-(\d+)$/.exec(location.hash); // a notification opened the dashboard
    if (pushed) this.showAlert(Number(pushed[1]));
  }

  /** The admin area's code, fetched only for admins: other roles' pages never load it. */
  async _loadAdmin() {
    if (this.views.admin) return;
    const { AdminPanel } = await import("./admin.js");
    this.views.admin ??= new AdminPanel(byTestId("panel-admin"), {
      api: this.api, store: this.store, map: this.views.map,
      reload: () => this.reload(),
      setView: (view) => this.setView(view),
      openCommands: (imei) => this.showCommands(imei),
      showMap: () => {
        if (phone.matches) this.setView("map"); // a desk shows the map beside the admin area
      },
    });
  }

  /** The Reports view's code is fetched the first time it is opened: most visits never need it. */
  async _openReports() {
    if (!this.views.reports) {
      const { ReportsPanel } = await import("./reports.js");
      this.views.reports ??= new ReportsPanel(byTestId("panel-reports"), {
        api: this.api, store: this.store, map: this.views.map,
        viewMap: () => {
          if (phone.matches) this.setView("map"); // a desk shows the map beside the report
        },
      });
    }
    if (this.active && document.body.dataset.view === "reports") this.views.reports.open();
  }

  /** The alerts view with that alert's details open (a notification was clicked). */
  showAlert(id) {
    if (!this.views) return;
    this.setView("alerts");
    if (!this.views.alerts.expanded.has(id)) this.views.alerts.toggle(id).catch(() => {});
  }

  /** The session is over (expired, revoked, signed out elsewhere): back to the sign-in form, saying why. */
  end(reason) {
    if (!this.active) return;
    this.stop();
    this.session.clear();
    this.showLogin(SESSION_MESSAGES[reason] ?? SESSION_MESSAGES.expired);
  }

  stop() {
    this.active = false;
    this.live?.close();
    this.live = null;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.buffered = null;
    this.notice.hide();
    this.role = null;
    delete document.body.dataset.role;
    if (this.views) {
      this.views.sos.stop();
      this.views.history.clear();
      this.views.commands.hide();
      this.views.admin?.reset();
      this.views.reports?.reset();
      this.views.map.setGeofences([]); // the next user, maybe of another tenant, starts with none
      this.views.map.fitted = false;
    }
    this.store.reset();
  }

  // -- data ------------------------------------------------------------------------------

  _createViews() {
    if (this.views) return;
    const focusWorker = (imei) => this.focusWorker(imei);
    const error = (message) => this.notice.error(message);
    const map = new WorkerMap(byTestId("map"), this.store, this.config, {
      showTrack: (imei) => {
        this.setView("history");
        this.views.history.show(imei);
      },
      showAlerts: (imei) => {
        this.setView("alerts");
        this.views.alerts.highlight(imei);
      },
      showCommands: (imei) => this.showCommands(imei),
    });
    const alerts = new AlertsPanel(byTestId("panel-alerts"), this.store, this.api, { focusWorker, error });
    const sos = new SosCue(byTestId("sos-banner"), this.store, {
      acknowledge: (id, button) => alerts.acknowledge(id, button), focusWorker,
    });
    const workers = new WorkersPanel(byTestId("panel-workers"), this.store, { select: focusWorker });
    const history = new HistoryPanel(byTestId("panel-history"), this.store, this.api, map, {
      error, trackShown: () => {}, viewMap: () => this.setView("map"),
    });
    const commands = new CommandsPanel(byTestId("panel-commands"), this.store, this.api);
    new PasswordPanel(byTestId("panel-account"), this.api);
    this.digest = new DigestPanel(byTestId("panel-account"), this.api);
    // admin: see _loadAdmin; reports: see _openReports
    this.views = { map, alerts, sos, workers, history, commands, admin: null, reports: null };
    this.store.onUnknownDevice = (imei) => this._fetchDevice(imei);
    this.store.addEventListener("devices", (event) => {
      const changed = event.detail.imeis; // null: any device may have changed
      map.render(changed);
      workers.render(changed);
      if (changed) return; // positions and statuses: no worker came, went or was renamed
      history.refreshWorkers();
      commands.refreshWorkers();
      alerts.render(); // worker names
    });
    this.store.addEventListener("alerts", () => {
      alerts.render();
      sos.render();
      const open = this.store.alertsWithStatus("open").length;
      const badge = byTestId("open-alert-count");
      badge.textContent = String(open);
      badge.hidden = open === 0;
    });
  }

  /** Load everything shown from the REST API; live events arriving meanwhile are applied after. */
  reload() {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this._reload().finally(() => {
      this.reloading = null;
      if (this.reloadAgain && this.active) {
        this.reloadAgain = false;
        this.reload();
      }
    });
    return this.reloading;
  }

  async _reload() {
    this.buffered ??= [];
    try {
      const [devices, open, acknowledged, resolved, geofences] = await Promise.all([
        this.api.all("api/v1/devices", { limit: 1000 }),
        this.api.all("api/v1/alerts", { status: "open", limit: 500 }),
        this.api.all("api/v1/alerts", { status: "acknowledged", limit: 500 }),
        this.api.get("api/v1/alerts", { status: "resolved", limit: 20 }).then((page) => page.items),
        this.api.get("api/v1/geofences").then((page) => page.items, (error) => {
          if (error instanceof SessionEnded) throw error;
          return []; // geofences are a bonus: never keep the rest from showing
        }),
      ]);
      if (!this.active) return;
      this.store.setDevices(devices);
      this.store.setAlerts([...open, ...acknowledged, ...resolved]);
      this.views.map.setGeofences(geofences);
      const queued = this.buffered ?? [];
      this.buffered = null;
      for (const [name, data] of queued) this._apply(name, data);
    } catch (error) {
      this.buffered = null;
      if (!(error instanceof SessionEnded)) this.notice.error(`Could not load the data: ${error.message}`);
    }
  }

  _event(name, data) {
    if (!this.active) return;
    if (this.buffered) this.buffered.push([name, data]);
    else this._apply(name, data);
  }

  _apply(name, data) {
    if (name === "position") {
      this.store.queuePosition(data); // applied with the rest of the burst at the next frame
    } else if (name === "device_status") {
      if (!this.store.applyStatus(data)) this._fetchDevice(data.imei);
    } else if (name === "alert") {
      if (this.store.upsertAlert(data)) this.views.sos.notifyNew(data);
      if (!this.store.devices.has(data.imei)) this._fetchDevice(data.imei); // registered since the last load
    }
  }

  async _fetchDevice(imei) {
    if (this.fetching.has(imei)) return; // its positions keep coming while it loads
    this.fetching.add(imei);
    try {
      this.store.upsertDevice(await this.api.get(`api/v1/devices/${imei}`));
    } catch (error) {
      if (!(error instanceof SessionEnded)) console.warn("device not loaded", imei, error);
    } finally {
      this.fetching.delete(imei);
    }
  }

  _tick() {
    this.views.workers.render(new Set(this.store.devices.keys())); // "12 s ago": rows in place
    this.views.alerts.render();
    this.views.map.render();
  }

  _liveStatus(state) {
    const element = byTestId("live-status");
    element.dataset.state = state;
    element.textContent = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" }[state];
  }

  // -- views -----------------------------------------------------------------------------

  _wireNavigation() {
    for (const button of byTestId("nav").querySelectorAll("button[data-view]")) {
      button.addEventListener("click", () => this.setView(button.dataset.view));
    }
    byTestId("account-button").addEventListener("click", () => {
      this.setView("account");
      this.digest?.load();
    });
    phone.addEventListener("change", () => this.views?.map.resized());
    this.setView("map");
  }

  _allowed(view) {
    return !VIEW_ROLES[view] || VIEW_ROLES[view].has(this.role);
  }

  setView(view) {
    if (!this._allowed(view)) view = "map";
    const previous = document.body.dataset.view;
    document.body.dataset.view = view;
    if (this.views && previous !== view) {
      if (previous === "commands") this.views.commands.hide();
      // The map stays beside (or, on a phone, is shown for drawing): only other views end an edit.
      if (previous === "admin" && view !== "map") this.views.admin?.leave();
      if (view === "admin") this.views.admin?.open();
      if (view === "reports") {
        this._openReports().catch((error) => this.notice.error(`Could not open the reports: ${error.message}`));
      }
    }
    for (const button of byTestId("nav").querySelectorAll("button[data-view]")) {
      const current = button.dataset.view === view || (!phone.matches && view === "map" && button.dataset.view === "workers");
      button.setAttribute("aria-current", current ? "page" : "false");
    }
    if (view === "map") this.views?.map.resized();
  }

  showCommands(imei) {
    this.setView("commands");
    this.views.commands.show(imei);
  }

  focusWorker(imei) {
    if (phone.matches) this.setView("map");
    this.views.map.resized();
    this.views.map.focus(imei);
  }
}

function signInError(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return "Wrong email or password.";
    if (error.status === 422) return "Enter a valid email address and your password.";
    if (error.status === 429) return "Too many failed sign-ins: wait a few minutes, then try again.";
    return `Could not sign in: ${error.message}`;
  }
  return `Could not sign in: ${error.message}`;
}

const dashboard = new Dashboard(await loadConfig());
window.solewatchDashboard = dashboard; // for debugging from the console
await dashboard.start();
