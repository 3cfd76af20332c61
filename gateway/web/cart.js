// The cart: a small store of the server's cart lines (so the header can count them), and the
// cart page with the shipping address and checkout. Checkout sends one `Idempotency-Key` per
// cart content and address: a double click or a retry after a lost answer places the same
// single order. (Two tabs have a key each: checking out in both at the same instant can place
// two orders; once one is placed, the cart is empty and the other tab's checkout is refused.)

import { ApiError, call, currentUser, dropGuestCart, ensureGuestCart, get, guestCartToken, newKey } from './api.js';
import { field, h, money, notice, show } from './dom.js';
import { stockBadge } from './catalogue.js';
import { countryOptions, fieldMessage } from './words.js';

class Cart extends EventTarget {
  lines = [];
  /** The key of the checkout for the current content; a new one when the content changes. */
  checkoutKey = newKey();
  /** What else the key's checkout sends (the address, as JSON). */
  #sends;

  #set(lines) {
    const before = JSON.stringify(this.lines);
    this.lines = lines.map(({ productId, quantity }) => ({ productId, quantity }));
    if (JSON.stringify(this.lines) !== before) this.checkoutKey = newKey();
    this.dispatchEvent(new Event('change'));
  }

  /** The checkout key for the current content sending `body` (JSON): a new one when it changes. */
  keyFor(body) {
    if (body !== this.#sends) {
      this.#sends = body;
      this.checkoutKey = newKey();
    }
    return this.checkoutKey;
  }

  /** Units in the cart. */
  count() {
    return this.lines.reduce((sum, line) => sum + line.quantity, 0);
  }

  quantityOf(productId) {
    return this.lines.find((line) => line.productId === productId)?.quantity ?? 0;
  }

  /** Signed in, the account's cart; otherwise this visitor's guest cart, if any. */
  async load() {
    if (!currentUser() && !guestCartToken()) {
      this.#set([]);
      return this.lines;
    }
    try {
      const body = await get('/cart', { guest: true });
      this.#set(body.items);
    } catch (error) {
      if (!isDeadGuestCart(error)) throw error;
      dropGuestCart();
      this.#set([]);
    }
    return this.lines;
  }

  /** Sets a line's quantity (the server's answer is the whole cart). A visitor's first line
   * starts a guest cart. */
  async set(productId, quantity) {
    const put = () => call('PUT', `/cart/items/${productId}`, { body: { quantity }, guest: true });
    if (!currentUser()) await ensureGuestCart();
    let answer;
    try {
      answer = await put();
    } catch (error) {
      if (!isDeadGuestCart(error)) throw error;
      dropGuestCart();
      await ensureGuestCart();
      answer = await put();
    }
    this.#set(answer.body.items);
  }

  /** Adds `quantity` to what is already there. */
  async add(productId, quantity = 1) {
    await this.load().catch(() => {});
    await this.set(productId, this.quantityOf(productId) + quantity);
  }

  async remove(productId) {
    await call('DELETE', `/cart/items/${productId}`, { guest: true });
    this.#set(this.lines.filter((line) => line.productId !== productId));
  }

  /** Forgets the cart locally (signing out); the server keeps it. */
  clear() {
    this.#set([]);
  }

  /** After an order: the server has emptied the cart. */
  placed() {
    this.lines = [];
    this.checkoutKey = newKey();
    this.dispatchEvent(new Event('change'));
  }
}

/** A guest cart the server no longer knows (merged in another tab, or expired). */
function isDeadGuestCart(error) {
  return !currentUser() && error instanceof ApiError && error.code === 'invalid-token';
}

export const cart = new Cart();

/** A message for the next rendering of the cart (after a checkout the stock refused). */
let flash = null;

/** Product details for the lines (cached reads; a removed product comes back as null). */
async function products(lines) {
  return Promise.all(lines.map((line) =>
    get(`/products/${line.productId}`, { auth: false }).catch((error) => {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    })));
}

/** `#/cart` */
export async function view(ctx) {
  ctx.setTitle('Your cart');
  await cart.load();
  const [details, saved] = await Promise.all([
    products(cart.lines),
    currentUser() && cart.lines.length ? defaultAddress() : null,
  ]);
  if (ctx.stale()) return;

  if (!cart.lines.length) {
    show(ctx.main, h('h1', {}, 'Your cart'),
      h('div', { class: 'empty' }, h('p', {}, 'Your cart is empty.'), h('p', {}, h('a', { href: '#/' }, 'Browse the products'))));
    return;
  }

  const message = h('div', { 'aria-live': 'polite' }, flash);
  flash = null;
  let total = 0;
  let blocked = false;
  const rows = cart.lines.map((line, index) => {
    const product = details[index];
    if (!product) {
      blocked = true;
      return h('tr', { 'data-product-id': line.productId },
        h('td', { 'data-label': 'Product' }, 'A product that is no longer sold'),
        h('td', { class: 'number', 'data-label': 'Price' }, '–'),
        h('td', { 'data-label': 'Quantity' }, String(line.quantity)),
        h('td', { class: 'number', 'data-label': 'Subtotal' }, '–'),
        h('td', {}, removeButton(ctx, line.productId, 'this product')));
    }
    const subtotal = product.priceCents * line.quantity;
    total += subtotal;
    const short = line.quantity > product.stock;
    if (short) blocked = true;
    const input = h('input', {
      type: 'number', class: 'qty', min: 1, max: 999, value: line.quantity, inputmode: 'numeric',
      id: `qty-${index}`, 'aria-label': `Quantity of ${product.name}`,
    });
    input.addEventListener('change', async () => {
      const quantity = Number(input.value);
      if (!Number.isInteger(quantity) || quantity < 1) {
        input.value = line.quantity;
        message.replaceChildren(notice('error', 'Enter a whole number of at least 1, or remove the line.'));
        return;
      }
      input.disabled = true;
      try {
        await cart.set(line.productId, quantity);
        ctx.reload();
      } catch (error) {
        input.disabled = false;
        input.value = line.quantity;
        message.replaceChildren(notice('error', ctx.failed(error, { context: 'cart' })));
      }
    });
    return h('tr', { 'data-product-id': product.id },
      h('td', { 'data-label': 'Product' },
        h('a', { href: `#/products/${product.id}` }, product.name), ' ',
        short ? h('span', { class: 'badge out' }, product.stock ? `Only ${product.stock} left` : 'Out of stock') : stockBadge(product.stock)),
      h('td', { class: 'number', 'data-label': 'Price' }, money(product.priceCents)),
      h('td', { 'data-label': 'Quantity' }, input),
      h('td', { class: 'number', 'data-label': 'Subtotal' }, money(subtotal)),
      h('td', {}, removeButton(ctx, product.id, product.name)));
  });

  const address = currentUser() ? addressForm(saved) : null;
  const checkout = h('button', { type: 'button', id: 'checkout' }, currentUser() ? 'Place order' : 'Sign in to place the order');
  checkout.addEventListener('click', () => {
    // A visitor signs in (or registers) first; the cart comes along.
    if (!currentUser()) ctx.navigate(`#/login?next=${encodeURIComponent('#/cart')}`);
    else placeOrder(ctx, checkout, message, address);
  });
  // Enter in an address field places the order, as the button does.
  address?.form.addEventListener('submit', (event) => {
    event.preventDefault();
    checkout.click();
  });
  if (blocked) {
    checkout.disabled = true;
    message.append(notice('warning', 'Some lines cannot be ordered as they are: lower their quantity or remove them.'));
  }

  show(ctx.main,
    h('h1', {}, 'Your cart'),
    message,
    h('table', { class: 'table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col', class: 'number' }, 'Price'),
        h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col', class: 'number' }, 'Subtotal'),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows),
      h('tfoot', {}, h('tr', {},
        h('td', { colspan: 3 }, 'Total'),
        h('td', { class: 'number', id: 'cart-total', 'data-label': 'Total' }, money(total)),
        h('td', {})))),
    address?.element,
    h('div', { class: 'actions' }, checkout, h('a', { href: '#/' }, 'Keep shopping')),
    h('p', { class: 'muted' }, 'Stock is reserved when you place the order; payment follows by itself and this page takes you to the order to watch it.'));
}

function removeButton(ctx, productId, name) {
  const button = h('button', {
    type: 'button', class: 'secondary', 'aria-label': `Remove ${name}`,
    onclick: async () => {
      button.disabled = true;
      try {
        await cart.remove(productId);
        ctx.reload();
      } catch (error) {
        button.disabled = false;
        ctx.toast(ctx.failed(error, { context: 'cart', button }));
      }
    },
  }, 'Remove');
  return button;
}

/**
 * One checkout for the cart as it is. The button stays disabled while the request is out, and
 * the key stays the same until the cart or the address changes, so even a retry after a lost
 * answer cannot place a second order. Ticking "save as my default address" also saves it as
 * the account's default once the order is placed.
 */
async function placeOrder(ctx, button, message, form) {
  if (button.disabled) return;
  message.replaceChildren();
  const { address, invalid } = form ? form.values() : { address: null };
  if (invalid) return;
  const key = cart.keyFor(JSON.stringify(address));
  button.disabled = true;
  button.textContent = 'Placing order…';
  try {
    const { body: order } = await call('POST', '/cart/checkout', {
      headers: { 'Idempotency-Key': key },
      // Without an address the account's default one (if any) applies.
      body: address ? { shippingAddress: address } : undefined,
    });
    cart.placed();
    addressDraft = null;
    let saved = '';
    if (address && form.saveDefault() && !sameAddress(address, form.saved)) {
      try {
        await call('PUT', '/me/address', { body: address });
        saved = ' Your address is saved as your default.';
      } catch {
        saved = ' Your address could not be saved as your default; this order has it all the same.';
      }
    }
    ctx.toast(`Order placed. Payment is on its way.${saved}`);
    ctx.navigate(`#/orders/${order.id}`);
  } catch (error) {
    button.textContent = 'Place order';
    if (ctx.stale()) return;
    if (form && error instanceof ApiError && error.status === 422 && form.placeErrors(error)) {
      // The address was refused, field by field: the errors stand beside the fields, and the
      // next try (with the address corrected) is a new checkout.
      cart.checkoutKey = newKey();
      message.replaceChildren(notice('error', ctx.failed(error, { context: 'address', button })));
      button.disabled = false;
      return;
    }
    const text = ctx.failed(error, { context: 'checkout', button });
    const refused = error instanceof ApiError && [409, 422].includes(error.status) && error.code !== 'idempotency-in-progress';
    if (refused) {
      // The server keeps a refusal on its key and would repeat it: the next try is a new one.
      cart.checkoutKey = newKey();
      const available = error.problem.available;
      flash = notice('error',
        h('p', {}, text),
        error.code === 'insufficient-stock' && available !== undefined
          ? h('p', {}, available ? `Only ${available} of one product are left; lower its quantity and try again.` : 'One product has just sold out; remove it and try again.')
          : null);
      // The cart's lines show what is left now, under the message.
      ctx.reload();
      return;
    }
    // Anything else (no answer, an outage, still in progress) may yet have placed the order:
    // the key stays, so trying again cannot place a second one.
    message.replaceChildren(notice('error', text));
    if (!(error instanceof ApiError && error.retryAfter)) button.disabled = false;
  }
}

/** The account's default shipping address, or null when it has none (or it cannot be read). */
async function defaultAddress() {
  try {
    return await get('/me/address', { cache: 'no-store' });
  } catch {
    // No default yet (404), or the read failed: the form starts empty either way.
    return null;
  }
}

/** What the shopper typed into the address form, kept while the cart page is painted again. */
let addressDraft = null; // { userId, values, saveDefault }

/** The address form's fields: `[name, field options]`, in the order a label reads (`wide`
 * ones take a whole line of the form). */
const ADDRESS_FIELDS = [
  ['name', { label: 'Full name', autocomplete: 'shipping name', maxlength: 200, wide: true }],
  ['line1', { label: 'Address', autocomplete: 'shipping address-line1', maxlength: 200, hint: 'Street and number.', wide: true }],
  ['line2', { label: 'Address line 2 (optional)', autocomplete: 'shipping address-line2', maxlength: 200, wide: true }],
  ['postalCode', { label: 'Postal code', autocomplete: 'shipping postal-code', maxlength: 16 }],
  ['city', { label: 'City', autocomplete: 'shipping address-level2', maxlength: 200 }],
  ['region', { label: 'State, province or region (optional)', autocomplete: 'shipping address-level1', maxlength: 200 }],
  ['country', { label: 'Country', autocomplete: 'shipping country' }],
  ['phone', { label: 'Phone (optional)', type: 'tel', autocomplete: 'shipping tel', maxlength: 32, hint: 'For the carrier, should they need to reach you.' }],
];

/** What a required field says when it is empty. */
const MISSING = {
  name: 'Enter the name of the person the order goes to.',
  line1: 'Enter the street and number.',
  postalCode: 'Enter the postal code.',
  city: 'Enter the city.',
  country: 'Choose a country.',
};

/** The country of the reader's language settings (`en-GB` → `GB`), to start the list at. */
function localCountry() {
  try {
    return new Intl.Locale(navigator.language).maximize().region ?? '';
  } catch {
    return '';
  }
}

function sameAddress(a, b) {
  return Boolean(b) && ADDRESS_FIELDS.every(([name]) => (a[name] ?? '') === (b[name] ?? ''));
}

/**
 * The shipping address form, filled with what the shopper typed before, else the account's
 * default address (`saved`). `values()` reads it back: `{ address }` (null when nothing was
 * typed: the default applies) or `{ invalid: true }` with the errors beside the fields.
 */
function addressForm(saved) {
  const user = currentUser();
  const draft = addressDraft?.userId === user.id ? addressDraft : null;
  const start = draft?.values ?? saved ?? { country: localCountry() };
  const fields = Object.fromEntries(ADDRESS_FIELDS.map(([name, { wide, ...options }]) => {
    const value = start[name] ?? '';
    const wrapper = name === 'country'
      ? field({ name, ...options, value, options: [['', 'Choose a country'], ...countryOptions(value)] })
      : field({ name, type: 'text', ...options, value });
    if (wide) wrapper.classList.add('wide');
    // An error goes as soon as the field is changed; the next try checks again.
    wrapper.input.addEventListener(name === 'country' ? 'change' : 'input', () => wrapper.setError(null));
    return [name, wrapper];
  }));
  const saveBox = h('input', { type: 'checkbox', id: 'save-address', name: 'saveAddress', checked: draft ? draft.saveDefault : !saved });
  const form = h('form', { class: 'address-form', id: 'address', novalidate: true },
    h('div', { class: 'address-fields' }, Object.values(fields)),
    h('label', { class: 'check', for: 'save-address' }, saveBox, 'Save as my default address'));

  const read = () => {
    const address = {};
    for (const [name] of ADDRESS_FIELDS) {
      const value = fields[name].input.value.trim();
      if (value) address[name] = name === 'country' ? value.toUpperCase() : value;
    }
    return address;
  };
  const keep = () => {
    addressDraft = { userId: user.id, values: read(), saveDefault: saveBox.checked };
  };
  form.addEventListener('input', keep);
  form.addEventListener('change', keep);

  const values = () => {
    for (const f of Object.values(fields)) f.setError(null);
    const address = read();
    // The country alone (preselected) is not an address.
    if (!Object.keys(address).some((name) => name !== 'country')) return { address: null };
    const missing = Object.keys(MISSING).filter((name) => !address[name]);
    for (const name of missing) fields[name].setError(MISSING[name]);
    if (address.country && !/^[A-Z]{2}$/.test(address.country)) {
      fields.country.setError(MISSING.country);
      missing.push('country');
    }
    if (missing.length) {
      fields[ADDRESS_FIELDS.map(([name]) => name).find((name) => missing.includes(name))].input.focus();
      return { invalid: true };
    }
    return { address };
  };

  /** A 422's errors on the address (`shippingAddress.city` or `city`) beside their fields. */
  const placeErrors = (error) => {
    let first = null;
    for (const [path, problem] of Object.entries(error.fields)) {
      const name = path.replace(/^shippingAddress\./, '');
      if (!fields[name]) continue;
      fields[name].setError(fieldMessage(name, problem));
      first ??= fields[name];
    }
    first?.input.focus();
    return Boolean(first);
  };

  return {
    form,
    saved,
    values,
    placeErrors,
    saveDefault: () => saveBox.checked,
    element: h('section', { class: 'panel address-panel', 'aria-labelledby': 'address-h' },
      h('h2', { id: 'address-h' }, 'Shipping address'),
      h('p', { class: 'muted' }, saved
        ? 'Your default address is filled in. Change it here for this order only, or tick the box to make the change your default.'
        : 'Where should we send the order?'),
      form),
  };
}
