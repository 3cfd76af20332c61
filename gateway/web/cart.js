// The cart: a small store of the server's cart lines (so the header can count them), and the
// cart page with checkout. Checkout sends one `Idempotency-Key` per cart content: a double
// click or a retry after a lost answer places the same single order. (Two tabs have a key
// each: checking out in both at the same instant can place two orders; once one is placed,
// the cart is empty and the other tab's checkout is refused.)

import { ApiError, call, currentUser, dropGuestCart, ensureGuestCart, get, guestCartToken, newKey } from './api.js';
import { h, money, notice, show } from './dom.js';
import { stockBadge } from './catalogue.js';

class Cart extends EventTarget {
  lines = [];
  /** The key of the checkout for the current content; a new one when the content changes. */
  checkoutKey = newKey();

  #set(lines) {
    const before = JSON.stringify(this.lines);
    this.lines = lines.map(({ productId, quantity }) => ({ productId, quantity }));
    if (JSON.stringify(this.lines) !== before) this.checkoutKey = newKey();
    this.dispatchEvent(new Event('change'));
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
  const details = await products(cart.lines);
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

  const checkout = h('button', { type: 'button', id: 'checkout' }, currentUser() ? 'Place order' : 'Sign in to place the order');
  checkout.addEventListener('click', () => {
    // A visitor signs in (or registers) first; the cart comes along.
    if (!currentUser()) ctx.navigate(`#/login?next=${encodeURIComponent('#/cart')}`);
    else placeOrder(ctx, checkout, message);
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
 * the key stays the same until the cart changes, so even a retry after a lost answer cannot
 * place a second order.
 */
async function placeOrder(ctx, button, message) {
  if (button.disabled) return;
  button.disabled = true;
  button.textContent = 'Placing order…';
  message.replaceChildren();
  try {
    const { body: order } = await call('POST', '/cart/checkout', { headers: { 'Idempotency-Key': cart.checkoutKey } });
    cart.placed();
    ctx.toast('Order placed. Payment is on its way.');
    ctx.navigate(`#/orders/${order.id}`);
  } catch (error) {
    button.textContent = 'Place order';
    if (ctx.stale()) return;
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
