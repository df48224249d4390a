// The REST API as the dashboard uses it: the session's tokens (kept across
// reloads, refreshed when they expire) and requests that wait and retry while
// the server is unavailable. Only the public endpoints of docs/api.md.
import { sleep } from "./dom.js";

const SESSION_KEY = "solewatch.session";
const UNAVAILABLE = new Set([502, 503, 504]);
const RETRYABLE = new Set([429, ...UNAVAILABLE]);
const JSON_HEADERS = { "Content-Type": "application/json" };

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** The session is over: expired, revoked, or signed out (here or in another tab). */
export class SessionEnded extends Error {
  constructor(reason = "expired") {
    super(`session ended: ${reason}`);
    this.reason = reason;
  }
}

/** An address under the page's own base, so the dashboard also works behind a path prefix. */
export function appUrl(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI);
}

// A 422's list of errors in words: "steps contacts: no contact 9 in this tenant; email: ...".
function problemsOf(detail) {
  return detail.map((problem) => {
    const where = (problem.loc ?? []).filter((part) => typeof part === "string" && part !== "body").join(" ");
    return where ? `${where}: ${problem.msg}` : problem.msg;
  }).join("; ");
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return problemsOf(body.detail);
  } catch {
    // not JSON: fall through
  }
  return `HTTP ${response.status}`;
}

/**
 * fetch, retried while the server cannot answer (no connection, 429, 502-504):
 * after its Retry-After, or 1, 2, 4... up to 30 s. `onWait(seconds, status)`
 * lets the page say so; `alive()` turning false (signed out) stops the retries.
 */
export async function fetchRetrying(url, init, { onWait = () => {}, alive = () => true, retryOn = RETRYABLE } = {}) {
  for (let attempt = 0; ; attempt++) {
    let response = null;
    try {
      response = await fetch(url, init);
    } catch {
      response = null; // the server is unreachable: as good as a 503
    }
    if (response && !retryOn.has(response.status)) return response;
    if (!alive()) throw new SessionEnded("signed-out");
    const retryAfter = Number(response?.headers.get("Retry-After"));
    const wait = retryAfter > 0 ? Math.min(retryAfter, 60) : Math.min(2 ** attempt, 30);
    onWait(wait, response ? response.status : 0);
    await sleep(wait * 1000);
    if (!alive()) throw new SessionEnded("signed-out");
  }
}

function loadTokens() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

/**
 * The signed-in user's tokens, in localStorage so that a reload keeps the session.
 * Refresh tokens work once: tabs take a lock and re-read the stored pair, so that
 * two tabs never spend the same one (which would end the session).
 */
export class Session extends EventTarget {
  constructor(hooks = {}) {
    super();
    this.hooks = hooks;
    this.tokens = loadTokens();
    this._refreshing = null;
    window.addEventListener("storage", (event) => {
      if (event.key !== SESSION_KEY) return;
      const had = this.tokens;
      this.tokens = loadTokens();
      if (had && !this.tokens) this.dispatchEvent(new CustomEvent("ended", { detail: "signed-out-elsewhere" }));
    });
  }

  get signedIn() {
    return Boolean(this.tokens?.access_token);
  }

  get accessToken() {
    return this.tokens?.access_token ?? null;
  }

  expiresSoon() {
    return this.signedIn && this.tokens.expires_at - Date.now() < 20_000;
  }

  /** A token pair from elsewhere than the sign-in form (an accepted invitation). */
  adopt(pair) {
    this._save(pair);
  }

  _save(pair) {
    this.tokens = {
      access_token: pair.access_token,
      refresh_token: pair.refresh_token,
      expires_at: Date.now() + pair.expires_in * 1000,
    };
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.tokens));
  }

  clear() {
    this.tokens = null;
    localStorage.removeItem(SESSION_KEY);
  }

  /** onWait(seconds, status) while the server is unavailable; a 429 (too many failures) is not retried. */
  async signIn(email, password, onWait) {
    const response = await fetchRetrying(appUrl("api/v1/auth/token"), {
      method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ email, password }),
    }, { onWait, retryOn: UNAVAILABLE });
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    this._save(await response.json());
  }

  /** A new token pair; throws SessionEnded when the refresh token is no longer accepted. */
  refresh() {
    this._refreshing ??= this._refresh().finally(() => {
      this._refreshing = null;
    });
    return this._refreshing;
  }

  async _refresh() {
    const spent = this.tokens?.refresh_token;
    if (!spent) throw new SessionEnded("expired");
    const exchange = async () => {
      const stored = loadTokens();
      if (!stored) {
        this.tokens = null;
        throw new SessionEnded("signed-out-elsewhere");
      }
      if (stored.refresh_token !== spent) {
        this.tokens = stored; // another tab refreshed meanwhile
        return;
      }
      const response = await fetchRetrying(appUrl("api/v1/auth/refresh"), {
        method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ refresh_token: spent }),
      }, { ...this.hooks, alive: () => this.signedIn });
      if ([400, 401, 403, 422].includes(response.status)) {
        this.clear();
        throw new SessionEnded("expired");
      }
      if (!response.ok) throw new ApiError(response.status, await detailOf(response));
      this._save(await response.json());
    };
    return navigator.locks ? navigator.locks.request("solewatch-refresh", exchange) : exchange();
  }

  async signOut() {
    const token = this.accessToken;
    this.clear();
    if (!token) return;
    try {
      await fetch(appUrl("api/v1/auth/logout"), {
        method: "POST", headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3000),
      });
    } catch {
      // the tokens are gone from this browser either way
    }
  }
}

/**
 * A request that needs no session (invitations, password resets): retried while the server
 * is unavailable; the answer's JSON, null for a 202 or 204, or an ApiError with its detail.
 */
export async function postPublic(path, body, onWait = () => {}) {
  const response = await fetchRetrying(appUrl(path), {
    method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body),
  }, { onWait, retryOn: UNAVAILABLE });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return response.status === 202 || response.status === 204 ? null : response.json();
}

export class Api {
  /** hooks: onWait(seconds, status), onOk(), onSessionEnded(reason). */
  constructor(session, hooks) {
    this.session = session;
    this.hooks = hooks;
  }

  /**
   * `checksCredentials`: the request itself checks a password (the password change), so a 401
   * that survives a token refresh is the answer about that password, not the end of the session.
   * `asText`: the answer is a file (CSV), returned as text rather than parsed as JSON.
   */
  async request(method, path, { query = {}, body, checksCredentials = false, asText = false } = {}) {
    const url = appUrl(path);
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    let refreshed = false;
    for (;;) {
      if (!this.session.signedIn) throw new SessionEnded("signed-out");
      if (this.session.expiresSoon() && !refreshed) {
        refreshed = true;
        await this._refresh();
      }
      const response = await fetchRetrying(url, {
        method,
        // X-Solewatch-Client: the timeline then says "via dashboard" for what is done here.
        headers: { Authorization: `Bearer ${this.session.accessToken}`, "X-Solewatch-Client": "dashboard",
          ...(body ? JSON_HEADERS : {}) },
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
      }, { onWait: this.hooks.onWait, alive: () => this.session.signedIn });
      if (response.status === 401 && !refreshed) {
        refreshed = true;
        await this._refresh();
        continue;
      }
      if (response.status === 401 && checksCredentials) throw new ApiError(401, await detailOf(response));
      if (response.status === 401) {
        this.session.clear();
        this.hooks.onSessionEnded("expired");
        throw new SessionEnded("expired");
      }
      this.hooks.onOk();
      if (!response.ok) throw new ApiError(response.status, await detailOf(response));
      if (response.status === 204) return null;
      return asText ? response.text() : response.json();
    }
  }

  async _refresh() {
    try {
      await this.session.refresh();
    } catch (error) {
      if (error instanceof SessionEnded) this.hooks.onSessionEnded(error.reason);
      throw error;
    }
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }

  /** A GET whose answer is a file (a report's CSV): its text. */
  text(path, query) {
    return this.request("GET", path, { query, asText: true });
  }

  post(path, body) {
    return this.request("POST", path, { body });
  }

  put(path, body) {
    return this.request("PUT", path, { body });
  }

  patch(path, body) {
    return this.request("PATCH", path, { body });
  }

  delete(path, query) {
    return this.request("DELETE", path, { query });
  }

  /** Every item of a paginated list, following next_cursor; `stop(item)` true ends early. */
  async all(path, query = {}, { stop = () => false, onPage = () => {} } = {}) {
    const items = [];
    let cursor = null;
    do {
      const page = await this.get(path, { ...query, cursor });
      for (const item of page.items) {
        if (stop(item)) return items;
        items.push(item);
      }
      onPage(items.length);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }
}
