// The gateway's API, as this page uses it: JSON in and out, problems as `ApiError`s, and the
// session (tokens kept in memory only, refreshed before they expire and once more on a 401).

/** A failed call: the problem+json body the API sent, or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code ?? (status === 0 ? 'network' : `http-${status}`);
    this.problem = problem;
    /** Seconds to wait before trying again (429 and 503 say). */
    this.retryAfter = retryAfter;
  }

  /** The per-field errors of a 422, by field path. */
  get fields() {
    return Object.fromEntries((this.problem.errors ?? []).map((e) => [e.field, e.message]));
  }
}

/** The signed-in session; `change` fires when it starts, ends or the profile loads. */
export const session = new EventTarget();

let tokens = null; // { access, refresh, expiresAt }
let user = null; // the profile from GET /me
let refreshing = null; // the refresh in flight, shared by every caller
let refreshTimer = null;

/** The signed-in user's profile, or null. */
export function currentUser() {
  return user;
}

export function isAdmin() {
  return user?.role === 'admin';
}

function announce() {
  session.dispatchEvent(new Event('change'));
}

function keep(answer) {
  tokens = {
    access: answer.accessToken,
    refresh: answer.refreshToken,
    expiresAt: Date.now() + answer.expiresIn * 1000,
  };
  // A minute early (or halfway, for short lifetimes), so calls never carry an expired token.
  const lead = Math.min(60, answer.expiresIn / 2) * 1000;
  scheduleRefresh(answer.expiresIn * 1000 - lead);
}

/** The next refresh in `delay` ms (kept within what timers take, and at least a second). */
function scheduleRefresh(delay) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refresh().catch(() => {
      // An outage or a limit: the session is still good, so try again a little later.
      if (tokens) scheduleRefresh(10_000);
    });
  }, Math.min(Math.max(delay, 1000), 2 ** 31 - 1));
}

function forget() {
  tokens = null;
  user = null;
  clearTimeout(refreshTimer);
  announce();
}

function retryAfter(response) {
  const value = Number(response.headers.get('Retry-After'));
  return Number.isFinite(value) && value > 0 ? value : null;
}

async function send(method, path, { body, headers = {}, auth = true, cache = 'default' } = {}) {
  const init = { method, cache, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (auth && tokens) init.headers.Authorization = `Bearer ${tokens.access}`;
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, {
      detail: 'The shop could not be reached.',
    });
  }
}

async function read(response) {
  if (response.status === 204 || response.status === 304) return null;
  const type = response.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * Calls the API. Resolves with `{ status, body, headers }` for 2xx and 304, rejects with an
 * `ApiError` otherwise. With a session, a 401 refreshes the tokens once and tries again.
 */
export async function call(method, path, options = {}) {
  let response = await send(method, path, options);
  if (response.status === 401 && tokens && options.auth !== false) {
    // A refused refresh ends the session (refresh() says so); an outage or a limit during it
    // is that error, and the session stays for the next try.
    await refresh();
    response = await send(method, path, options);
  }
  const body = await read(response);
  if (!response.ok && response.status !== 304) {
    if (response.status === 401 && tokens && options.auth !== false) forget();
    throw new ApiError(response.status, body ?? {}, retryAfter(response));
  }
  return { status: response.status, body, headers: response.headers };
}

export const get = (path, options) => call('GET', path, options).then((r) => r.body);

/** Exchanges the refresh token for a new pair; a refused refresh ends the session. */
export function refresh() {
  if (!tokens) return Promise.reject(new ApiError(401, { code: 'unauthorized' }));
  refreshing ??= (async () => {
    try {
      const response = await send('POST', '/refresh', {
        body: { refreshToken: tokens.refresh },
        auth: false,
      });
      const body = await read(response);
      if (!response.ok) {
        const error = new ApiError(response.status, body ?? {}, retryAfter(response));
        // Only a refusal ends the session; an outage or a limit leaves it to try again.
        if (response.status === 401) forget();
        throw error;
      }
      keep(body);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** The current access token, refreshed first if it is about to expire. */
export async function accessToken() {
  if (tokens && tokens.expiresAt - Date.now() < 5000) await refresh();
  return tokens?.access ?? null;
}

export async function login(email, password) {
  const { body } = await call('POST', '/login', { body: { email, password }, auth: false });
  keep(body);
  try {
    user = await get('/me');
  } catch (error) {
    tokens = null;
    throw error;
  }
  announce();
}

export async function register(email, password, name) {
  await call('POST', '/register', { body: { email, password, ...(name ? { name } : {}) }, auth: false });
}

export async function logout() {
  try {
    if (tokens) await call('POST', '/logout');
  } catch {
    // The session ends here either way; the server forgets it when the token expires.
  } finally {
    forget();
  }
}

/** A fresh idempotency key (random, UUID-shaped; `randomUUID` needs a secure context). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
