// Building the page: elements from data, never from markup strings (the page runs under
// Trusted Types, so assigning markup to an element would throw), and the formats every view
// shares.

/**
 * An element: `h('a', { href: '#/', class: 'brand', onclick: fn }, 'Shop', child, [more])`.
 * Functions under `on…` names become listeners; `true`/`false` set boolean properties; `null`,
 * `undefined` and `false` children are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (value === true) {
      element.setAttribute(name, '');
    } else if (name === 'value') {
      element.value = value;
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

/**
 * Runs `repaint` (which replaces elements) and puts the keyboard focus back on the element
 * that stands where the focused one stood: same id, or same label, name or text.
 */
export function keepFocus(repaint) {
  const active = document.activeElement;
  const key = active && active !== document.body
    ? (active.id && `#${CSS.escape(active.id)}`)
      || (active.getAttribute('aria-label') && `${active.tagName}[aria-label="${CSS.escape(active.getAttribute('aria-label'))}"]`)
      || (active.getAttribute('name') && `${active.tagName}[name="${CSS.escape(active.getAttribute('name'))}"]`)
      || null
    : null;
  const text = active?.tagName === 'BUTTON' || active?.tagName === 'A' ? active.textContent : null;
  repaint();
  if (!active || active === document.body || document.contains(active)) return;
  const candidates = key ? [...document.querySelectorAll(key)] : text ? [...document.querySelectorAll(active.tagName)].filter((e) => e.textContent === text) : [];
  candidates[0]?.focus({ preventScroll: true });
}

/** Replaces what `parent` shows. */
export function show(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

const moneyFormats = new Map();

/** Integer minor units as money: `money(1250, 'USD')` → `$12.50`. */
export function money(cents, currency = 'USD') {
  if (cents === null || cents === undefined) return '–';
  let format = moneyFormats.get(currency);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    moneyFormats.set(currency, format);
  }
  return format.format(cents / 100);
}

/** `12.50` (as typed into a price field) → 1250, or null when it is not an amount. */
export function parseMoney(text) {
  const match = /^\s*(\d+)(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? '0').padEnd(2, '0'));
}

/** 1250 → `12.50`, for a price field. */
export function moneyInput(cents) {
  return (cents / 100).toFixed(2);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** An RFC 3339 time, in the reader's zone. */
export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : '–';
}

/** Only the time of day. */
export function clock(iso) {
  return iso ? timeOnly.format(new Date(iso)) : '–';
}

/** A short, readable handle for an id (v7 ids share their leading time digits). */
export function shortId(id) {
  return `#${id.replaceAll('-', '').slice(-8).toUpperCase()}`;
}

let fieldCount = 0;

/**
 * A labelled form field with a place for its error: `{ label, name, type, value, hint, …input
 * attributes }`. Returns the wrapper; its input is `wrapper.input`.
 */
export function field({ label, hint, options, multiline, ...attributes }) {
  fieldCount += 1;
  const id = `f${fieldCount}-${attributes.name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const control = options
    ? h('select', { id, ...attributes }, options.map(([value, text]) =>
        h('option', { value, selected: String(value) === String(attributes.value) }, text)))
    : multiline
      ? h('textarea', { id, rows: 3, ...attributes })
      : h('input', { id, type: 'text', ...attributes });
  const described = [hint ? hintId : null, errorId].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', described);
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const wrapper = h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    control,
    error);
  wrapper.input = control;
  wrapper.setError = (message) => {
    error.textContent = message ?? '';
    error.hidden = !message;
    if (message) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  };
  return wrapper;
}

/** The page a list view is on (`page` in its query; 1 when absent or not a number). */
export function pageOf(query) {
  return Math.max(1, Number.parseInt(query.get('page') ?? '1', 10) || 1);
}

/** Previous, "Page x of y" and Next for `total` items, `size` a page; null for one page. */
export function pager(page, total, size, go) {
  const pages = Math.max(1, Math.ceil(total / size));
  if (pages <= 1) return null;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => go(page - 1) }, 'Previous'),
    h('span', { 'aria-live': 'polite' }, `Page ${page} of ${pages}`),
    h('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => go(page + 1) }, 'Next'));
}

/** What a view shows for something that does not exist: a title, why, and where to go. */
export function notFound(ctx, title, text, [href, label]) {
  ctx.setTitle(title);
  show(ctx.main, h('section', {}, h('h1', {}, title), notice('info', text), h('p', {}, h('a', { href }, label))));
}

/** A message box: `kind` is `error`, `warning`, `info` or `success`. */
export function notice(kind, ...children) {
  return h('div', { class: ['notice', kind], role: kind === 'error' ? 'alert' : 'status' }, ...children);
}
