// Live updates over Socket.IO (docs/api.md): position, alert, device_status.
// Events are best effort, so every (re)connection reloads the page's data from
// the REST API. A refused or server-closed socket means the access token
// expired or the session ended: refresh the token, then connect again.
import { io } from "../vendor/socket.io/socket.io.esm.min.js";
import { appUrl, SessionEnded } from "./api.js";

const UNAVAILABLE_RETRY_MS = 3000;

/**
 * handlers: onEvent(name, data), onStatus("connecting" | "live" | "reconnecting"),
 * onConnected() (load or reload the data), onSessionEnded(reason).
 */
export function connectLive(session, handlers) {
  const socket = io({
    path: appUrl("socket.io").pathname,
    auth: (send) => send({ token: session.accessToken }),
    reconnectionDelayMax: 10_000,
  });
  let closed = false;

  const reconnectWithFreshToken = async () => {
    handlers.onStatus("reconnecting");
    try {
      await session.refresh();
    } catch (error) {
      if (error instanceof SessionEnded) {
        handlers.onSessionEnded(error.reason);
        return;
      }
    }
    if (!closed) socket.connect();
  };

  socket.on("connect", () => {
    handlers.onStatus("live");
    handlers.onConnected();
  });
  socket.on("connect_error", (error) => {
    if (closed) return;
    if (error.message === "unauthorized") {
      reconnectWithFreshToken();
    } else if (!socket.active) {
      // refused for another reason (the server could not check the token): try again shortly
      handlers.onStatus("reconnecting");
      setTimeout(() => closed || socket.connect(), UNAVAILABLE_RETRY_MS);
    } else {
      handlers.onStatus("reconnecting"); // the manager retries by itself
    }
  });
  socket.on("disconnect", (reason, details) => {
    if (closed) return;
    console.info("live updates: disconnected", reason, details?.description ?? ""); // for whoever reads the console
    if (reason === "io server disconnect") reconnectWithFreshToken();
    else handlers.onStatus("reconnecting");
  });
  for (const name of ["position", "alert", "device_status"]) {
    socket.on(name, (data) => handlers.onEvent(name, data));
  }
  handlers.onStatus("connecting");

  return {
    close() {
      closed = true;
      socket.disconnect();
    },
  };
}
