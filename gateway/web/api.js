// The gateway's API, as this page uses it: JSON in and out, problems as `ApiError`s, and the
// session (tokens kept in memory only, refreshed before they expire and once more on a 401).
// A visitor's cart lives on the server as a guest cart whose token this page keeps in
// localStorage; signing in or registering merges it into the account's cart.

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

const GUEST_CART = 'shop.cartToken';

/** The visitor's guest cart token, if this browser holds one. */
export function guestCartToken() {
  try {
    return localStorage.getItem(GUEST_CART);
  } catch {
    return null;
  }
}

function keepGuestCart(token) {
  try {
    if (token) localStorage.setItem(GUEST_CART, token);
    else localStorage.removeItem(GUEST_CART);
  } catch {
    // Storage refused (private mode): the cart lives as long as this page.
  }
}

/** A guest cart for this visitor: the one it holds, or a new one. */
export async function ensureGuestCart() {
  const held = guestCartToken();
  if (held) return held;
  const { body } = await call('POST', '/guest-carts', { auth: false });
  keepGuestCart(body.cartToken);
  return body.cartToken;
}

/** Forgets a guest cart the server no longer knows (merged elsewhere, or expired). */
export function dropGuestCart() {
  keepGuestCart(null);
}

async function send(method, path, { body, headers = {}, auth = true, cache = 'default', guest = false } = {}) {
  const init = { method, cache, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (auth && tokens) init.headers.Authorization = `Bearer ${tokens.access}`;
  else if (guest && guestCartToken()) init.headers['Cart-Token'] = guestCartToken();
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

/**
 * Signs in (with the authenticator's `otp` when the account has a second factor: without it
 * the API answers `mfa-required`). A guest cart this browser holds joins the account's cart;
 * resolves with what the merge could not keep as it was (`notes`, possibly empty).
 */
export async function login(email, password, otp) {
  const { body } = await call('POST', '/login', { body: { email, password, ...(otp ? { otp } : {}) }, auth: false });
  keep(body);
  try {
    user = await get('/me');
  } catch (error) {
    tokens = null;
    throw error;
  }
  const notes = await mergeGuestCart();
  announce();
  return notes;
}

/** Moves the guest cart's lines into the signed-in account's cart. */
async function mergeGuestCart() {
  const cartToken = guestCartToken();
  if (!cartToken) return [];
  try {
    const { body } = await call('POST', '/cart/merge', { body: { cartToken } });
    dropGuestCart();
    return body.notes ?? [];
  } catch (error) {
    // A dead token has nothing left to merge; an outage leaves it for the next sign-in.
    if (error instanceof ApiError && error.code === 'invalid-token') dropGuestCart();
    return [];
  }
}

/** Reads the profile again (after verifying the email, enrolling a second factor). */
export async function reloadProfile() {
  user = await get('/me');
  announce();
}

export const requestPasswordReset = (email) =>
  call('POST', '/password-reset', { body: { email }, auth: false });
export const confirmPasswordReset = (token, newPassword) =>
  call('POST', '/password-reset/confirm', { body: { token, newPassword }, auth: false });
export const confirmEmail = (token) =>
  call('POST', '/email-verification/confirm', { body: { token }, auth: false });
export const resendVerification = () => call('POST', '/me/email-verification');
export const enrolMfa = () => call('POST', '/me/mfa').then((r) => r.body);
export const confirmMfa = (code) => call('POST', '/me/mfa/confirm', { body: { code } });
export const removeMfa = (code) => call('DELETE', '/me/mfa', { body: { code } });

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
