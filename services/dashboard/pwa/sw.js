// The dashboard's service worker (served at ./sw.js, scope ./): the app shell
// offline, and alerts pushed by solewatch (services/notifications/push.py)
// shown as notifications whose Acknowledge works from a locked phone.
// The server fills in VERSION and SHELL: this file changes with every release,
// so the browser installs the new worker and drops the old shell.
const VERSION = "{{VERSION}}";
const SHELL = {{SHELL}};
const CACHE = `solewatch-shell-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("solewatch-shell-") && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// Assets are immutable (versioned URLs): cache first. The page itself: the
// network first, the cached shell when offline. The API and live updates are
// never cached: stale alerts would be worse than none.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(fetch(request).catch(async () => (await caches.match("./")) ?? Response.error()));
  } else if (url.pathname.includes("/assets/")) {
    event.respondWith(caches.match(request).then((cached) => cached ?? fetch(request)));
  }
});

const KIND_TITLES = {
  sos: "SOS", fall: "Fall detected", no_motion: "No motion", low_battery: "Low battery", off_foot: "Insole off foot",
  tamper: "Tamper", offline: "Insole offline", geofence_exit: "Left a geofence", geofence_enter: "Entered a geofence",
};

self.addEventListener("push", (event) => {
  let message = null;
  try {
    message = event.data?.json();
  } catch {
    message = null;
  }
  if (message?.type !== "alert") return;
  const alert = message.alert;
  const who = message.worker || alert.imei;
  const at = new Date(alert.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  event.waitUntil(self.registration.showNotification(`${KIND_TITLES[alert.kind] ?? alert.kind}: ${who}`, {
    body: `Raised at ${at}. Tap to open the dashboard.`,
    tag: `alert-${alert.id}`, // a redelivered push replaces, never doubles, the notification
    renotify: true,
    requireInteraction: true,
    icon: "{{ASSETS}}/icons/icon-192.png",
    badge: "{{ASSETS}}/icons/icon-192.png",
    data: { alertId: alert.id, ack: message.ack ?? null },
    actions: message.ack ? [{ action: "ack", title: "Acknowledge" }] : [],
  }));
});

async function acknowledge(notification) {
  const { alertId, ack } = notification.data;
  // The token the push carried acknowledges this one alert and nothing else; no session needed.
  const response = await fetch(new URL(ack.url, self.registration.scope), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: ack.token }),
  }).catch(() => null);
  const done = response?.ok || response?.status === 409;
  const answer = !response ? "The server could not be reached: open the dashboard to acknowledge."
    : response.ok ? "Acknowledged: the worker's insole is told help is coming."
      : response.status === 409 ? "This alert is already resolved."
        : "Could not acknowledge: open the dashboard.";
  await self.registration.showNotification(notification.title, {
    body: answer, tag: `alert-${alertId}`, data: { alertId, ack: done ? null : ack },
    actions: done ? [] : [{ action: "ack", title: "Acknowledge" }],
  });
}

async function openDashboard(alertId) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (open) {
    open.postMessage({ type: "show-alert", alertId });
    return open.focus();
  }
  return self.clients.openWindow(new URL(`./#alert-${alertId}`, self.registration.scope).href);
}

self.addEventListener("notificationclick", (event) => {
  const notification = event.notification;
  notification.close();
  if (event.action === "ack" && notification.data?.ack) event.waitUntil(acknowledge(notification));
  else event.waitUntil(openDashboard(notification.data?.alertId));
});
