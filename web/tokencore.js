/**
 * tokencore.js: a browser client for the tokencore API that gets refresh right.
 * One dependency-free ES module, no build step: copy it into your app or import it as is.
 *
 *   import { TokencoreClient, SignedOutError } from './tokencore.js';
 *   const auth = new TokencoreClient();                       // the API on this page's origin
 *   auth.addEventListener('change', () => render(auth.state));
 *   await auth.restore();                                     // on page load: silent sign-in
 *   await auth.login('demo', 'demo-password');
 *   const me = await (await auth.fetch('/me')).json();        // bearer added, refreshed as needed
 *   await auth.sessions(); await auth.revokeSession(id); await auth.logout();
 *
 * Where the tokens live
 *   The access token lives only in memory: a private field of the client, in this tab. It is
 *   never written to localStorage, sessionStorage, IndexedDB or a script-readable cookie. The
 *   refresh token lives only in the `__Secure-rt` cookie (HttpOnly, SameSite=Strict,
 *   Path=/auth), which this script cannot read; the browser sends it to /auth/refresh and
 *   /auth/logout. The `__Host-fgp` cookie (HttpOnly) binds access tokens to this browser.
 *   A page load therefore starts without an access token: `restore()` gets one from another
 *   open tab or, failing that, with one refresh from the cookie.
 *
 * Refresh: one at a time, across every tab
 *   Refresh tokens are single-use. Presenting a rotated-out one after the server's grace window
 *   (REFRESH_REUSE_GRACE_SECONDS) is treated as theft and revokes the session, which is how
 *   clients that refresh from several tabs or parallel requests log their users out. So:
 *   - In a tab, refreshes are single-flight: every caller that needs a new token while a
 *     refresh is running waits for that refresh. A request whose token is refused refreshes
 *     only if that token is still the current one: M parallel refusals, one refresh, M retries.
 *   - Across tabs, every request that changes the refresh cookie (login, refresh, logout) runs
 *     under one Web Lock (`navigator.locks`, name `tokencore-refresh <API origin>`), so two
 *     tabs never present the same refresh token, and the one that refreshes sends its new
 *     access token to the other tabs over a BroadcastChannel. A tab that finds the lock taken
 *     waits for that message instead of refreshing; if the message does not come (the other
 *     tab failed or was closed), it refreshes itself, with the cookie the other tab left in
 *     the shared jar: a normal rotation, never a reuse. N tabs and M requests: one refresh.
 *   - Why share the access token between tabs: otherwise each tab refreshes for itself; that is
 *     safe under the lock, but N rotations count N times against REFRESH_RATE_LIMIT (default
 *     5 a minute per user), so a sixth tab would be refused. The token travels tab to tab in
 *     memory (a BroadcastChannel reaches only this origin's documents) and is never stored.
 *     Any script of this origin could already call /auth/refresh, so nothing new is exposed.
 *   - What the server's grace window still covers: a refresh whose response was lost (the
 *     rotation happened, the new cookie never arrived), and browsers without Web Locks (before
 *     Chrome 69, Firefox 96, Safari 15.4; or an insecure origin), where only the in-tab single
 *     flight applies and tabs refreshing at once present the same token within the window.
 *
 * When a token is refreshed
 *   Before a request, when less than `refreshLeewaySeconds` (default 15, at most half the
 *   lifetime) of its life is left, counted from `expires_in` on this machine's clock (so the
 *   client's clock offset does not matter); and once when the API refuses the token (the
 *   server's clock, a revoked session, a retired key): a 401, or the 403 `{"message":
 *   "Forbidden"}` that API Gateway answers when an HTTP API Lambda authorizer with simple
 *   responses denies (tokencore's template; such authorizers cannot answer 401). The request is
 *   then retried once. A token refused right after a refresh is not refreshed again: that is a
 *   route the user may not call, or an outage, not an expiry. A refresh answered 400 or
 *   401 means the session is over (logged out, expired, revoked, or a replayed refresh token
 *   was detected): the client forgets its token, tells the other tabs, emits `change` with
 *   `signedIn: false`, and `fetch` throws `SignedOutError`. A 429 or 503 keeps the session:
 *   `AuthError` with `retryAfter` (seconds), nothing is forgotten.
 *
 * Requirements: same-origin API (the default), or a same-site one with `credentials:
 * 'include'` and the page's origin in ALLOWED_ORIGINS (SameSite=Strict cookies never go
 * cross-site). Bodies given to `fetch` must be replayable (string, Blob, FormData,
 * URLSearchParams, ArrayBuffer), since a request whose token is refused is sent again. `fetch` adds the
 * bearer token only to URLs on the API's origin and refuses any other.
 */

const MESSAGE_TOKEN = 'token'; // { token, epoch }: a newer access token, from login or refresh
const MESSAGE_SIGNED_OUT = 'signed-out'; // { reason, epoch }: the session is over
const MESSAGE_HELLO = 'hello'; // a tab that just loaded asks for the current token
// Login, refresh and logout hold the cross-tab lock: a hung request must not hold every tab.
const AUTH_REQUEST_TIMEOUT_MS = 30_000;

/** The session is over (or never began): sign in again. */
export class SignedOutError extends Error {
  constructor(message = 'signed out', options) {
    super(message, options);
    this.name = 'SignedOutError';
  }
}

/** The API refused or failed a request that leaves the session as it was (bad password, 429,
 * 503, network). `status` is 0 for a network failure; `retryAfter` is in seconds or null. */
export class AuthError extends Error {
  constructor(message, { status = 0, code = null, retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AuthError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  static async from(response) {
    let code = null;
    let description = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      code = typeof body.error === 'string' ? body.error : null;
      description = body.error_description || body.message || description;
    } catch {
      // not JSON: the status says enough
    }
    const retry = Number.parseInt(response.headers.get('Retry-After') ?? '', 10);
    return new AuthError(description, {
      status: response.status,
      code,
      retryAfter: Number.isFinite(retry) ? retry : null,
    });
  }
}

export class TokencoreClient extends EventTarget {
  #api; // URL of the API's root
  #credentials;
  #deviceId;
  #leewayMs;
  #peerWaitMs;
  #handoffMs;
  #lockName;
  #locks;
  #channel;
  #token = null; // { accessToken, expiresAt, sessionId, lifetimeMs } or null: memory only
  #epoch = 0; // when the state we hold was made (ms, shared clock): newer state wins
  #version = 0; // bumped at every change of #token, to tell "refreshed meanwhile"
  #refreshing = null; // the in-flight refresh of this tab
  #source = null; // where the current token came from: 'login' | 'refresh' | 'tab'
  #reason = null; // why we are signed out
  #refusedFresh = null; // a token refused even though it was fresh from a refresh

  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] the API's root URL (default: this page's origin)
   * @param {RequestCredentials} [options.credentials] 'same-origin' (default) or 'include'
   * @param {string} [options.deviceId] this browser's X-Device-Id (1-128 printable ASCII),
   *   sent at login and with every API request: the session is bound to it
   * @param {number} [options.refreshLeewaySeconds] refresh when less than this is left (15)
   * @param {number} [options.peerWaitMs] how long restore() waits for another tab's token (150)
   * @param {number} [options.handoffMs] how long to wait for the token of a tab that just
   *   refreshed before refreshing ourselves (1000)
   */
  constructor({
    baseUrl = globalThis.location?.origin,
    credentials = 'same-origin',
    deviceId = null,
    refreshLeewaySeconds = 15,
    peerWaitMs = 150,
    handoffMs = 1000,
  } = {}) {
    super();
    this.#api = new URL(baseUrl);
    this.#credentials = credentials;
    this.#deviceId = deviceId;
    this.#leewayMs = refreshLeewaySeconds * 1000;
    this.#peerWaitMs = peerWaitMs;
    this.#handoffMs = handoffMs;
    this.#lockName = `tokencore-refresh ${this.#api.origin}`;
    this.#locks = globalThis.navigator?.locks ?? null;
    if (typeof BroadcastChannel === 'function') {
      this.#channel = new BroadcastChannel(`tokencore ${this.#api.origin}`);
      this.#channel.onmessage = (event) => this.#onMessage(event.data);
    }
  }

  /** What the page may show: never the token itself. */
  get state() {
    const token = this.#token;
    return {
      signedIn: token !== null,
      sessionId: token?.sessionId ?? null,
      expiresAt: token?.expiresAt ?? null, // ms since the epoch, this machine's clock
      lifetimeMs: token?.lifetimeMs ?? null, // the token's whole lifetime (expires_in)
      source: token ? this.#source : null, // 'login' | 'refresh' | 'tab'
      reason: token ? null : this.#reason, // 'logged-out' | 'session-ended' | null
      crossTab: this.#locks !== null && this.#channel !== undefined,
    };
  }

  // --- sign in and out ---------------------------------------------------------------------

  /** On page load: the token of another open tab, else one refresh from the cookie. Resolves
   * to `state` (signed out when there is no session); rejects only on 429/503/network. */
  async restore() {
    if (this.#usable()) return this.state;
    if (this.#channel && this.#peerWaitMs > 0) {
      const seen = this.#version;
      this.#post({ type: MESSAGE_HELLO });
      await this.#changeSince(seen, this.#peerWaitMs);
      if (this.#usable()) return this.state;
    }
    try {
      await this.refresh();
    } catch (error) {
      if (!(error instanceof SignedOutError)) throw error;
    }
    return this.state;
  }

  /** Password login. Rejects with AuthError (401 invalid_grant, 429 with retryAfter...). */
  async login(username, password) {
    await this.#exclusive(async () => {
      const headers = { 'Content-Type': 'application/json' };
      if (this.#deviceId) headers['X-Device-Id'] = this.#deviceId;
      const response = await this.#reach('/auth/login', {
        method: 'POST',
        headers,
        body: JSON.stringify({ username, password }),
      });
      if (!response.ok) throw await AuthError.from(response);
      this.#accept(await response.json(), 'login');
    });
    return this.state;
  }

  /** Ends this session on the server (the cookies are cleared) and in every tab. */
  async logout() {
    await this.#exclusive(async () => {
      const headers = { 'X-Requested-With': 'tokencore' }; // a form cannot send it (CSRF)
      if (this.#token) headers.Authorization = `Bearer ${this.#token.accessToken}`;
      const response = await this.#reach('/auth/logout', { method: 'POST', headers });
      // 204, also for a session that was already over; a 503 keeps the cookies for a retry.
      if (!response.ok) throw await AuthError.from(response);
      this.#signOut('logged-out'); // before the lock is released: no tab refreshes meanwhile
    });
  }

  // --- requests ----------------------------------------------------------------------------

  /** `fetch` for the API: adds the bearer token (refreshing first when it is about to expire);
   * when the token is refused, refreshes once and retries once. Throws SignedOutError when
   * there is no session. Any other answer, including a second refusal, is returned as is. */
  async fetch(input, init = {}) {
    const url = this.#resolve(input instanceof Request ? input.url : input);
    const token = await this.getAccessToken();
    const response = await this.#authorized(url, input, init, token);
    if (!(await isRefusedToken(response))) return response;
    if (this.#token?.accessToken === token) {
      // A token refused right after a refresh stays refused (a route the user may not call,
      // an outage): refreshing again cannot help, so do not spend refreshes on it.
      if (this.#refusedFresh === token) return response;
      await this.refresh(); // parallel refusals share one refresh
    }
    if (this.#token === null) throw new SignedOutError(this.#reason ?? 'signed out');
    const fresh = this.#token.accessToken;
    const retried = await this.#authorized(url, input, init, fresh);
    if (await isRefusedToken(retried)) this.#refusedFresh = fresh;
    return retried;
  }

  /** A valid access token, refreshed first when less than the leeway is left. For the rare
   * caller that cannot use `fetch` (a WebSocket URL...); do not store it. */
  async getAccessToken() {
    if (!this.#usable()) await this.refresh();
    if (this.#token === null) throw new SignedOutError(this.#reason ?? 'signed out');
    return this.#token.accessToken;
  }

  /** A newer access token than the one held now: single-flight in this tab, one refresh for
   * all tabs. Resolves to `state`; rejects with SignedOutError when the session is over. */
  refresh() {
    if (this.#refreshing === null) {
      const seen = this.#version;
      this.#refreshing = this.#coordinatedRefresh(seen).finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  // --- sessions ----------------------------------------------------------------------------

  /** The caller's sessions: [{ session_id, created_at, last_activity, device_id, current }]. */
  async sessions() {
    const response = await this.fetch('/auth/sessions');
    if (!response.ok) throw await AuthError.from(response);
    return (await response.json()).sessions;
  }

  /** Revokes one of the caller's sessions (another device, or this one: then signed out). */
  async revokeSession(sessionId) {
    const response = await this.fetch(`/auth/sessions/${encodeURIComponent(sessionId)}`, {
      method: 'DELETE',
    });
    if (response.status !== 204) throw await AuthError.from(response);
    if (sessionId === this.#token?.sessionId) this.#signOut('logged-out');
  }

  /** Revokes every session of the caller, this one included. */
  async revokeAll() {
    const response = await this.fetch('/auth/sessions/revoke-all', { method: 'POST' });
    if (response.status !== 204) throw await AuthError.from(response);
    this.#signOut('logged-out');
  }

  // --- inside ------------------------------------------------------------------------------

  async #coordinatedRefresh(seen) {
    if (this.#locks === null) return this.#refreshNow(seen); // the grace window covers tabs
    const busy = Symbol('busy');
    const outcome = await this.#locks.request(this.#lockName, { ifAvailable: true }, (lock) =>
      lock === null ? busy : this.#refreshNow(seen),
    );
    if (outcome !== busy) return outcome;
    // Another tab is refreshing: its token comes over the channel. Queue for the lock anyway,
    // in case it never does.
    return this.#locks.request(this.#lockName, async () => {
      if (this.#version === seen) await this.#changeSince(seen, this.#handoffMs);
      return this.#refreshNow(seen);
    });
  }

  /** Under the lock (or without Web Locks): refresh unless a newer state arrived meanwhile. */
  async #refreshNow(seen) {
    if (this.#version !== seen) {
      if (this.#token === null) throw new SignedOutError(this.#reason ?? 'signed out');
      return this.state;
    }
    const response = await this.#reach('/auth/refresh', {
      method: 'POST',
      headers: { 'X-Requested-With': 'tokencore' }, // a form cannot send it (CSRF)
    });
    if (response.ok) {
      this.#accept(await response.json(), 'refresh');
      return this.state;
    }
    if (response.status === 400 || response.status === 401) {
      // No refresh cookie, or a token the server refused (it cleared the cookies).
      this.#signOut('session-ended');
      throw new SignedOutError('the session is over');
    }
    throw await AuthError.from(response); // 429, 503: the session is intact, retry later
  }

  #accept(grant, source) {
    const lifetimeMs = grant.expires_in * 1000;
    this.#set(
      {
        accessToken: grant.access_token,
        expiresAt: Date.now() + lifetimeMs,
        sessionId: grant.session_id,
        lifetimeMs,
      },
      source,
      this.#nextEpoch(),
    );
    this.#post({ type: MESSAGE_TOKEN, token: this.#token, epoch: this.#epoch });
  }

  #signOut(reason) {
    this.#clear(reason, this.#nextEpoch());
    this.#post({ type: MESSAGE_SIGNED_OUT, reason, epoch: this.#epoch });
  }

  #set(token, source, epoch, remote = false) {
    this.#token = token;
    this.#source = source;
    this.#reason = null;
    this.#epoch = epoch;
    this.#version += 1;
    this.#emit(remote);
  }

  #clear(reason, epoch, remote = false) {
    this.#token = null;
    this.#source = null;
    this.#reason = reason;
    this.#epoch = epoch;
    this.#version += 1;
    this.#emit(remote);
  }

  #onMessage(message) {
    if (message === null || typeof message !== 'object') return;
    switch (message.type) {
      case MESSAGE_TOKEN:
        if (message.epoch > this.#epoch && isToken(message.token)) {
          this.#set(message.token, 'tab', message.epoch, true);
        }
        break;
      case MESSAGE_SIGNED_OUT:
        if (message.epoch > this.#epoch) this.#clear(message.reason, message.epoch, true);
        break;
      case MESSAGE_HELLO:
        if (this.#usable()) {
          this.#post({ type: MESSAGE_TOKEN, token: this.#token, epoch: this.#epoch });
        }
        break;
      default:
        break;
    }
  }

  /** A token with more than the leeway (at most half its lifetime) left. */
  #usable() {
    const token = this.#token;
    if (token === null) return false;
    const leeway = Math.min(this.#leewayMs, token.lifetimeMs / 2);
    return token.expiresAt - Date.now() > leeway;
  }

  /** Resolves when #version moves past `seen`, or after `ms`. */
  #changeSince(seen, ms) {
    if (this.#version !== seen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.removeEventListener('change', check);
        resolve();
      };
      const check = () => {
        if (this.#version !== seen) done();
      };
      const timer = setTimeout(done, ms);
      this.addEventListener('change', check);
    });
  }

  #exclusive(task) {
    return this.#locks === null ? task() : this.#locks.request(this.#lockName, task);
  }

  #nextEpoch() {
    return Math.max(Date.now(), this.#epoch + 1);
  }

  #post(message) {
    this.#channel?.postMessage(message);
  }

  /** `change`: detail is `state` plus `fromOtherTab` (the change came over the channel). */
  #emit(fromOtherTab) {
    this.dispatchEvent(new CustomEvent('change', { detail: { ...this.state, fromOtherTab } }));
  }

  #resolve(target) {
    const url = new URL(target, this.#api);
    if (url.origin !== this.#api.origin) {
      throw new TypeError(`refusing to send the access token to ${url.origin}`);
    }
    return url;
  }

  #call(path, init) {
    return fetch(this.#resolve(path), {
      ...init,
      credentials: this.#credentials,
      cache: 'no-store',
      signal: AbortSignal.timeout?.(AUTH_REQUEST_TIMEOUT_MS),
    });
  }

  /** #call, with a network failure or timeout as AuthError (status 0): nothing is lost. */
  async #reach(path, init) {
    try {
      return await this.#call(path, init);
    } catch (error) {
      throw new AuthError('the API cannot be reached', { cause: error });
    }
  }

  #authorized(url, input, init, token) {
    const request = input instanceof Request ? input.clone() : url;
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : {}));
    headers.set('Authorization', `Bearer ${token}`);
    // A session created with a device id is bound to it: sensitive routes (revoking sessions)
    // refuse a request that does not carry the same one.
    if (this.#deviceId && !headers.has('X-Device-Id')) headers.set('X-Device-Id', this.#deviceId);
    return fetch(request, { ...init, headers, credentials: this.#credentials, cache: 'no-store' });
  }
}

/** Whether the API refused the access token: a 401, or the 403 that API Gateway itself
 * answers (`{"message":"Forbidden"}`) when a Lambda authorizer with simple responses (HTTP API,
 * tokencore's template) denies an expired, revoked or otherwise bad token. A 403 from the route
 * (`{"error":"insufficient_scope"}`) is an answer, not a refusal of the token. */
async function isRefusedToken(response) {
  if (response.status === 401) return true;
  if (response.status !== 403) return false;
  try {
    const body = await response.clone().json();
    return body !== null && body.message === 'Forbidden' && !('error' in body);
  } catch {
    return false;
  }
}

function isToken(token) {
  return (
    token !== null &&
    typeof token === 'object' &&
    typeof token.accessToken === 'string' &&
    typeof token.expiresAt === 'number' &&
    typeof token.lifetimeMs === 'number' &&
    typeof token.sessionId === 'string'
  );
}
