// The storefront's shell: the header, the router (`#/…` addresses, so the gateway serves one
// page and every view has a link), and the states every view shares: loading, errors the
// shopper can act on, rate limits and outages.

import { ApiError, currentUser, isAdmin, logout, resendVerification, session } from './api.js';
import { h, notice, show } from './dom.js';
import { onState } from './live.js';
import { explain } from './words.js';
import { cart } from './cart.js';
import * as catalogue from './catalogue.js';
import * as account from './account.js';
import * as cartView from './cart.js';
import * as orders from './orders.js';
import * as admin from './admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const banner = document.getElementById('banner');
const toastArea = document.getElementById('toast');

/** `[pattern, view, who]`: who is `anyone`, `user` or `admin`. */
const ROUTES = [
  [/^\/$/, catalogue.list, 'anyone'],
  [/^\/products\/([0-9a-f-]{36})$/, catalogue.product, 'anyone'],
  [/^\/login$/, account.login, 'anyone'],
  [/^\/register$/, account.register, 'anyone'],
  [/^\/forgot-password$/, account.forgotPassword, 'anyone'],
  [/^\/reset-password$/, account.resetPassword, 'anyone'],
  [/^\/verify-email$/, account.verifyEmail, 'anyone'],
  [/^\/account$/, account.security, 'user'],
  [/^\/cart$/, cartView.view, 'anyone'],
  [/^\/orders$/, orders.list, 'user'],
  [/^\/orders\/([0-9a-f-]{36})$/, orders.detail, 'user'],
  [/^\/admin\/products$/, admin.products, 'admin'],
  [/^\/admin\/products\/new$/, admin.newProduct, 'admin'],
  [/^\/admin\/products\/([0-9a-f-]{36})$/, admin.editProduct, 'admin'],
  [/^\/admin\/orders$/, admin.orders, 'admin'],
];

let leaving = [];
let visit = 0;

/** Goes to `#/path?query`. */
export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

let bannerTimer = null;

/**
 * A message across the top; rate limits and outages count down their `Retry-After`. The
 * sentence is announced once; the countdown beside it is for the eye only.
 */
function showBanner(error, context) {
  clearInterval(bannerTimer);
  let left = error.retryAfter ?? 0;
  const sentence = explain(error, context, { wait: false });
  const countdown = h('span', { class: 'countdown', 'aria-hidden': 'true' });
  const tick = () => {
    countdown.textContent = left > 0 ? `Try again in ${left} s.` : 'Please try again in a moment.';
  };
  tick();
  show(banner, h('p', {}, sentence, ' ', countdown), h('button', { type: 'button', class: 'link', onclick: hideBanner }, 'Dismiss'));
  banner.hidden = false;
  banner.dataset.code = error.code;
  if (left > 0) {
    bannerTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) hideBanner();
      else tick();
    }, 1000);
  }
}

function hideBanner() {
  clearInterval(bannerTimer);
  banner.hidden = true;
  banner.replaceChildren();
  delete banner.dataset.code;
}

let toastTimer = null;

/** A short confirmation that goes away by itself. */
export function toast(message) {
  clearTimeout(toastTimer);
  // The live region stays in the page (empty, it takes no room) so screen readers announce it.
  show(toastArea, h('p', {}, message));
  toastTimer = setTimeout(() => toastArea.replaceChildren(), 4000);
}

/** Disables `button` for `seconds`, counting down on it. */
function cooldown(button, seconds) {
  if (!button || !seconds) return;
  const label = button.textContent;
  let left = Math.ceil(seconds);
  button.disabled = true;
  const tick = () => {
    if (left <= 0) {
      clearInterval(timer);
      button.disabled = false;
      button.textContent = label;
      return;
    }
    button.textContent = `${label} (${left} s)`;
    left -= 1;
  };
  const timer = setInterval(tick, 1000);
  tick();
}

/**
 * What a view does with a failed call: rate limits and outages get the banner (and the button
 * that caused them waits out `Retry-After`); anything else comes back as a sentence for the
 * view to show where the shopper is looking.
 */
function failed(error, { context = '', button = null } = {}) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    return 'Something went wrong in this page. Reload it and try again.';
  }
  const message = explain(error, context);
  if (error.code === 'rate-limited' || error.status === 503 || error.status === 504 || error.code === 'network') {
    showBanner(error, context);
  }
  // Whatever asks to wait (limits, outages, a checkout still in progress) disables its button
  // for that long, and only that long.
  if (error.retryAfter) cooldown(button, error.retryAfter);
  if (error.code === 'unauthorized' && context !== 'login' && !currentUser()) {
    navigate(`#/login?next=${encodeURIComponent(location.hash)}`);
  }
  return message;
}

/**
 * A view that could not load: what happened, a button to try again, and for outages and
 * limits an automatic retry when `Retry-After` has passed.
 */
function loadFailed(error, retry, context = 'load') {
  const message = failed(error, { context });
  const mine = visit;
  const transient = error instanceof ApiError && (error.status === 0 || error.status === 429 || error.status >= 503);
  const again = h('button', { type: 'button', onclick: () => retry() }, 'Try again');
  const status = h('p', { class: 'muted' });
  show(main, h('section', { class: 'unavailable' },
    h('h1', {}, transient ? 'This part of the shop is unavailable' : 'This page could not be shown'),
    // Outages and limits already have the banner with its countdown.
    transient ? h('p', {}, 'This page will try again by itself; you can also try now.') : notice('error', message),
    again, status));
  if (transient) {
    let left = Math.max(2, Math.min(error.retryAfter ?? 5, 30));
    const timer = setInterval(() => {
      if (mine !== visit) return clearInterval(timer);
      left -= 1;
      status.textContent = `Trying again in ${left} s…`;
      if (left <= 0) {
        clearInterval(timer);
        retry();
      }
    }, 1000);
    status.textContent = `Trying again in ${left} s…`;
  }
}

async function route() {
  for (const leave of leaving) leave();
  leaving = [];
  visit += 1;
  const mine = visit;
  const { path, query } = parseHash();
  const match = ROUTES.map(([pattern, view, who]) => [pattern.exec(path), view, who]).find(([m]) => m);
  renderNav(path);
  // The search box shows the catalogue's query, and nothing elsewhere.
  if (path !== '/') document.getElementById('search-q').value = '';
  if (!match) {
    setTitle('Not found');
    show(main, h('section', {}, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the shop'))));
    return;
  }
  const [found, view, who] = match;
  if (who !== 'anyone' && !currentUser()) {
    navigate(`#/login?next=${encodeURIComponent(`#${path}${query.size ? `?${query}` : ''}`)}`);
    return;
  }
  if (who === 'admin' && !isAdmin()) {
    setTitle('Not allowed');
    show(main, h('section', {}, h('h1', {}, 'Administrators only'), notice('error', 'Your account cannot open this page.')));
    return;
  }
  const context = {
    main,
    query,
    navigate,
    toast,
    failed,
    setTitle,
    /** Whether the shopper has moved on to another view (a late answer is then dropped). */
    stale: () => mine !== visit,
    onLeave: (fn) => leaving.push(fn),
    loadFailed: (error, retry, ctx) => loadFailed(error, retry, ctx),
    reload: () => navigate(location.hash),
  };
  show(main, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  try {
    await view(context, ...found.slice(1));
  } catch (error) {
    if (mine === visit) loadFailed(error, () => route());
  }
  if (mine === visit && document.activeElement === document.body) main.focus({ preventScroll: true });
}

function setTitle(title) {
  document.title = title ? `${title} · Shop` : 'Shop';
}

function link(href, text, current, extra = {}) {
  return h('a', { href, 'aria-current': current ? 'page' : null, ...extra }, text);
}

function renderNav(path = parseHash().path) {
  const user = currentUser();
  const items = [link('#/', 'Products', path === '/' || path.startsWith('/products'))];
  const count = cart.count();
  items.push(link('#/cart', count ? `Cart (${count})` : 'Cart', path === '/cart', { 'data-cart-count': count }));
  if (user) {
    items.push(link('#/orders', 'Orders', path.startsWith('/orders')));
    if (isAdmin()) {
      items.push(link('#/admin/products', 'Manage products', path.startsWith('/admin/products')));
      items.push(link('#/admin/orders', 'All orders', path === '/admin/orders'));
    }
    items.push(link('#/account', user.name || user.email, path === '/account', { class: 'who' }));
    items.push(h('button', {
      type: 'button',
      class: 'link',
      onclick: async () => {
        await logout();
        cart.clear();
        navigate('#/');
        toast('You are signed out.');
      },
    }, 'Sign out'));
  } else {
    items.push(link(`#/login${path === '/login' ? '' : `?next=${encodeURIComponent(location.hash || '#/')}`}`, 'Sign in', path === '/login'));
    items.push(link('#/register', 'Register', path === '/register'));
  }
  show(nav, items);
}

function renderLive(state) {
  const element = document.getElementById('live');
  const words = {
    off: '',
    connecting: 'Connecting…',
    live: 'Live updates on',
    retrying: 'Live updates paused, reconnecting…',
  };
  element.textContent = words[state];
  element.dataset.state = state;
  element.hidden = state === 'off';
}

document.getElementById('search').addEventListener('submit', (event) => {
  event.preventDefault();
  const q = new FormData(event.target).get('q').trim();
  navigate(q ? `#/?q=${encodeURIComponent(q)}` : '#/');
});

document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

/** Until the email is verified, a line under the header says so, with a resend button. */
function renderVerifyBanner() {
  const element = document.getElementById('verify');
  const user = currentUser();
  if (!user || user.emailVerified) {
    element.hidden = true;
    element.replaceChildren();
    return;
  }
  const resend = h('button', {
    type: 'button',
    class: 'link',
    onclick: async () => {
      resend.disabled = true;
      try {
        await resendVerification();
        toast(`A new link is on its way to ${user.email}.`);
      } catch (error) {
        toast(failed(error, { context: 'verify', button: resend }));
        if (!(error instanceof ApiError && error.retryAfter)) resend.disabled = false;
      }
    },
  }, 'Send the link again');
  element.replaceChildren(`Please verify your email address: we sent a link to ${user.email}. `, resend);
  element.hidden = false;
}

session.addEventListener('change', () => {
  if (currentUser()) cart.load().catch(() => {});
  else cart.clear();
  renderNav();
  renderVerifyBanner();
});
// A visitor's guest cart, from an earlier visit.
cart.load().catch(() => {});
cart.addEventListener('change', () => renderNav());
onState(renderLive);
window.addEventListener('hashchange', route);
route();
