// The tokencore browser demo (served by `make dev` at /demo): everything it does goes through
// tokencore.js. Text only ever reaches the page through textContent.
import { AuthError, SignedOutError, TokencoreClient } from '/demo/tokencore.js';

const client = new TokencoreClient({ deviceId: deviceLabel() });
// For the console (and the browser tests): try demo.client.refresh().
window.demo = { client };

const $ = (id) => document.getElementById(id);
let email = null; // from the last /me answer, for the status line
let starting = true;

const SOURCES = {
  login: 'sign-in',
  refresh: 'a refresh by this tab (from the cookie)',
  tab: 'another tab (no refresh needed)',
};

function deviceLabel() {
  // userAgentData lists the browser's brands, "Chromium" for every Chromium-based one, and a
  // made-up brand ("Not:A-Brand") to keep sniffers honest: prefer the specific one.
  const brands = (navigator.userAgentData?.brands ?? [])
    .map((entry) => entry.brand)
    .filter((brand) => !/not.?a.?brand/i.test(brand));
  const browser = brands.find((brand) => brand !== 'Chromium') ?? brands[0] ?? 'browser';
  const platform = navigator.userAgentData?.platform || navigator.platform || '';
  const label = `web demo (${browser}${platform ? `, ${platform}` : ''})`;
  return label.replace(/[^\x20-\x7e]/g, '?').slice(0, 128);
}

function log(text) {
  const item = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, text);
  $('log').prepend(item);
  while ($('log').children.length > 50) $('log').lastChild.remove();
}

function failure(error) {
  if (error instanceof SignedOutError) return 'signed out';
  if (error instanceof AuthError) {
    const retry = error.retryAfter !== null ? ` (retry in ${error.retryAfter} s)` : '';
    return `${error.status || 'network'} ${error.code ?? ''} ${error.message}${retry}`.replace(/\s+/g, ' ');
  }
  return String(error);
}

// --- rendering -------------------------------------------------------------------------------

function render() {
  const state = client.state;
  const status = $('status');
  status.className = `status ${state.signedIn ? 'in' : 'out'}`;
  status.dataset.state = state.signedIn ? 'signed-in' : 'signed-out';
  status.textContent = state.signedIn ? `Signed in${email ? ` as ${email}` : ''}` : 'Signed out';
  $('signin').hidden = state.signedIn;
  $('session').hidden = !state.signedIn;
  if (!state.signedIn) {
    $('me-card').hidden = true;
    $('sessions-card').hidden = true;
  }
  $('token-source').textContent = state.signedIn ? SOURCES[state.source] : '–';
  $('session-id').textContent = state.sessionId ?? '–';
  $('cross-tab').textContent = state.crossTab
    ? 'one refresh for all tabs (Web Locks + BroadcastChannel)'
    : 'not available here: tabs rely on the server grace window';
  tick();
}

function tick() {
  const { signedIn, expiresAt, lifetimeMs } = client.state;
  const countdown = $('expires-in').parentElement;
  if (!signedIn) {
    $('expires-in').textContent = '–';
    $('meter-bar').style.width = '0';
    return;
  }
  const left = Math.max(0, expiresAt - Date.now());
  const seconds = Math.ceil(left / 1000);
  $('expires-in').textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
  $('meter-bar').style.width = `${(100 * left) / lifetimeMs}%`;
  countdown.classList.toggle('soon', left > 0 && left < Math.min(30000, lifetimeMs / 3));
  countdown.classList.toggle('expired', left === 0);
  $('expires-in').title = left === 0 ? 'expired: the next request refreshes first' : '';
}

client.addEventListener('change', (event) => {
  const state = event.detail;
  if (!state.signedIn) email = null;
  render();
  if (starting) return;
  const where = state.fromOtherTab ? ' (in another tab)' : '';
  if (state.signedIn) {
    const what = {
      login: 'Signed in: access token in memory, refresh token in an HttpOnly cookie',
      refresh: 'Refreshed: the refresh cookie was rotated, new access token in memory',
      tab: 'Got a fresh access token from another tab: no refresh needed',
    }[state.source];
    log(what);
  } else if (state.reason === 'logged-out') {
    log(`Logged out${where}: the session is revoked and the cookies are cleared`);
  } else {
    log(
      `Signed out${where}: the server refused the refresh token (expired, revoked, or ` +
        'a replayed refresh token was detected)',
    );
  }
});

// --- actions ---------------------------------------------------------------------------------

async function callMe() {
  $('me-card').hidden = false;
  const code = $('me-status');
  try {
    const response = await client.fetch('/me');
    const body = await response.json();
    code.textContent = String(response.status);
    code.className = `code ${response.ok ? 'ok' : 'bad'}`;
    $('me-output').textContent = JSON.stringify(body, null, 2);
    if (response.ok) {
      email = body.email;
      render();
    }
    log(`GET /me: ${response.status}`);
  } catch (error) {
    code.textContent = error instanceof SignedOutError ? 'signed out' : 'failed';
    code.className = 'code bad';
    $('me-output').textContent = failure(error);
    log(`GET /me: ${failure(error)}`);
  }
}

async function showSessions() {
  try {
    const sessions = await client.sessions();
    const rows = sessions.map((session) => {
      const row = document.createElement('tr');
      row.dataset.sessionId = session.session_id;
      const device = document.createElement('td');
      device.textContent = session.device_id ?? '(no device id)';
      if (session.current) {
        const tag = document.createElement('span');
        tag.className = 'tag';
        tag.textContent = 'this browser';
        device.append(tag);
      }
      const created = document.createElement('td');
      created.textContent = new Date(session.created_at).toLocaleString();
      const active = document.createElement('td');
      active.textContent = new Date(session.last_activity).toLocaleString();
      const action = document.createElement('td');
      if (!session.current) {
        const revoke = document.createElement('button');
        revoke.type = 'button';
        revoke.className = 'danger small revoke';
        revoke.textContent = 'Revoke';
        revoke.addEventListener('click', () => revokeSession(session));
        action.append(revoke);
      }
      row.append(device, created, active, action);
      return row;
    });
    $('sessions').replaceChildren(...rows);
    $('sessions-card').hidden = false;
    log(`GET /auth/sessions: ${sessions.length} active`);
  } catch (error) {
    log(`GET /auth/sessions: ${failure(error)}`);
  }
}

async function revokeSession(session) {
  try {
    await client.revokeSession(session.session_id);
    log(`Revoked the session of ${session.device_id ?? 'another device'}`);
  } catch (error) {
    log(`Revoking failed: ${failure(error)}`);
  }
  if (client.state.signedIn) await showSessions();
}

async function run(label, action) {
  try {
    await action();
  } catch (error) {
    log(`${label}: ${failure(error)}`);
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('login');
  button.disabled = true;
  try {
    await client.login($('username').value, $('password').value);
    $('password').value = '';
    await callMe();
  } catch (error) {
    log(`Sign-in refused: ${failure(error)}`);
  } finally {
    button.disabled = false;
  }
});
$('call-me').addEventListener('click', callMe);
$('refresh').addEventListener('click', () => run('Refresh', () => client.refresh()));
$('list-sessions').addEventListener('click', showSessions);
$('logout').addEventListener('click', () => run('Log out', () => client.logout()));
$('logout-all').addEventListener('click', () => run('Log out everywhere', () => client.revokeAll()));

// --- start -----------------------------------------------------------------------------------

setInterval(tick, 250);
render();
try {
  const state = await client.restore();
  starting = false;
  if (state.signedIn) {
    log(
      state.source === 'tab'
        ? 'Page loaded: access token from another open tab, no refresh'
        : 'Page loaded: silent refresh from the HttpOnly cookie, still signed in',
    );
    await callMe();
  } else {
    log('Page loaded: no session (no refresh cookie): sign in');
  }
} catch (error) {
  starting = false;
  render();
  log(`Could not restore the session: ${failure(error)}`);
}
document.body.dataset.ready = 'true';
