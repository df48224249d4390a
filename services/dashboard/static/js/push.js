// "Notify me on this device": the dashboard as an installable app (its service
// worker, ../../sw.js) and this browser subscribed to Web Push for the signed-in
// supervisor, so new alerts show as notifications with an Acknowledge button,
// also with the dashboard closed and the phone locked (docs/alerting.md).
import { appUrl } from "./api.js";

const SUBSCRIPTION_KEY = "solewatch.push-subscription"; // {id, endpoint} of this browser's, as the server knows it

/** Register the service worker (offline shell, notifications); null where the browser has none. */
export async function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return null;
  try {
    return await navigator.serviceWorker.register(appUrl("sw.js"), { scope: appUrl("./").pathname });
  } catch (error) {
    console.warn("service worker not registered", error);
    return null;
  }
}

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function stored() {
  try {
    return JSON.parse(localStorage.getItem(SUBSCRIPTION_KEY));
  } catch {
    return null;
  }
}

export class PushToggle {
  /** `onShowAlert(id)`: the service worker asks the open dashboard to show an alert (notification clicked). */
  constructor(api, button, onShowAlert) {
    this.api = api;
    this.button = button;
    this.busy = false;
    this.supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window
      && window.isSecureContext;
    button.addEventListener("click", () => this.toggle());
    navigator.serviceWorker?.addEventListener("message", (event) => {
      if (event.data?.type === "show-alert") onShowAlert(event.data.alertId);
    });
  }

  /** Show the button to those who may acknowledge, saying whether this device is subscribed. */
  async show(role) {
    this.button.hidden = !this.supported || !["admin", "supervisor"].includes(role);
    if (this.button.hidden) return;
    const registration = await navigator.serviceWorker.ready;
    const subscription = await registration.pushManager.getSubscription();
    this._render(Boolean(subscription && stored()?.endpoint === subscription.endpoint));
  }

  async toggle() {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.button.getAttribute("aria-pressed") === "true") await this.unsubscribe();
      else await this.subscribe();
    } catch (error) {
      this.button.title = `Notifications unavailable: ${error.message}`;
    } finally {
      this.busy = false;
    }
  }

  async subscribe() {
    if ((await Notification.requestPermission()) !== "granted") {
      this.button.title = "Notifications are blocked for this site in the browser's settings.";
      return;
    }
    const { public_key: key } = await this.api.get("api/v1/push-subscriptions/vapid-public-key");
    const registration = await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription, key)) { // the server's key changed: a new subscription
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
    const { endpoint, keys } = subscription.toJSON();
    const { id } = await this.api.post("api/v1/push-subscriptions", { endpoint, keys });
    localStorage.setItem(SUBSCRIPTION_KEY, JSON.stringify({ id, endpoint }));
    this._render(true);
  }

  /** Stop notifications on this device (also at sign-out: the next user of this browser is someone else). */
  async unsubscribe() {
    const known = stored();
    localStorage.removeItem(SUBSCRIPTION_KEY);
    if (known) await this.api.request("DELETE", `api/v1/push-subscriptions/${known.id}`).catch(() => {});
    const registration = this.supported ? await navigator.serviceWorker.getRegistration() : null;
    await (await registration?.pushManager.getSubscription())?.unsubscribe();
    this._render(false);
  }

  _render(on) {
    this.button.setAttribute("aria-pressed", String(on));
    this.button.textContent = on ? "Notifications on" : "Notify me on this device";
    this.button.title = on ? "New alerts show on this device, even with the dashboard closed. Click to stop."
      : "Show new alerts as notifications on this device, with an Acknowledge button.";
  }
}

function sameKey(subscription, key) {
  const current = subscription.options?.applicationServerKey;
  if (!current) return true;
  const bytes = new Uint8Array(current);
  const wanted = keyBytes(key);
  return bytes.length === wanted.length && bytes.every((b, i) => b === wanted[i]);
}
