// Administration: products (create, edit with conflict resolution, stock, delete), every
// customer's orders with their fulfilment steps, and refunds.

import { ApiError, call, get, newKey } from './api.js';
import { field, h, money, moneyInput, notFound, notice, pageOf, pager, parseMoney, shortId, show, when } from './dom.js';
import { placeFieldErrors } from './account.js';
import { stockBadge } from './catalogue.js';
import { REFUNDABLE, ordersList } from './orders.js';
import { STATUS, fieldMessage } from './words.js';

const PAGE_SIZE = 20;

/** `#/admin/products?q=&page=` */
export async function products(ctx) {
  ctx.setTitle('Manage products');
  const q = ctx.query.get('q') ?? '';
  const page = pageOf(ctx.query);
  const params = new URLSearchParams({ page, limit: PAGE_SIZE, sort: '-createdAt' });
  if (q) params.set('q', q);
  const body = await get(`/products?${params}`, { cache: 'no-cache' });
  if (ctx.stale()) return;
  const go = (changes) => {
    const next = new URLSearchParams();
    const values = { q, page, ...changes };
    if (values.q) next.set('q', values.q);
    if (values.page > 1) next.set('page', values.page);
    ctx.navigate(`#/admin/products${next.size ? `?${next}` : ''}`);
  };
  const search = field({ label: 'Find a product', name: 'q', type: 'search', value: q });
  const searchForm = h('form', { class: 'filters', role: 'search' }, search, h('button', { type: 'submit', class: 'secondary' }, 'Find'));
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    go({ q: search.input.value.trim(), page: 1 });
  });
  show(ctx.main,
    h('h1', {}, 'Manage products'),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/admin/products/new' }, 'New product')),
    searchForm,
    body.items.length
      ? h('table', { class: 'table' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Product'),
            h('th', { scope: 'col', class: 'number' }, 'Price'),
            h('th', { scope: 'col' }, 'Stock'),
            h('th', { scope: 'col' }, 'Updated'))),
          h('tbody', {}, body.items.map((product) => h('tr', { 'data-product-id': product.id },
            h('td', { 'data-label': 'Product' }, h('a', { href: `#/admin/products/${product.id}` }, product.name)),
            h('td', { class: 'number', 'data-label': 'Price' }, money(product.priceCents)),
            h('td', { 'data-label': 'Stock' }, stockBadge(product.stock)),
            h('td', { 'data-label': 'Updated' }, when(product.updatedAt))))))
      : h('div', { class: 'empty' }, h('p', {}, q ? `No product matches “${q}”.` : 'There are no products yet.')),
    pager(page, body.total, PAGE_SIZE, (to) => go({ page: to })));
}

/** The editable fields as a form; `values()` reads them back (null when one is invalid). */
function productFields(product = {}, { withStock = false } = {}) {
  const fields = {
    name: field({ label: 'Name', name: 'name', value: product.name ?? '', required: true, maxlength: 200 }),
    description: field({ label: 'Description', name: 'description', multiline: true, value: product.description ?? '', maxlength: 2000 }),
    priceCents: field({ label: 'Price', name: 'priceCents', value: product.priceCents === undefined ? '' : moneyInput(product.priceCents), inputmode: 'decimal', hint: 'In dollars, like 12.50.', required: true }),
  };
  if (withStock) {
    fields.stock = field({ label: 'Stock', name: 'stock', type: 'number', min: 0, value: 0, inputmode: 'numeric', hint: 'Units on hand. Change it later with stock adjustments.' });
  }
  const values = () => {
    for (const f of Object.values(fields)) f.setError(null);
    const name = fields.name.input.value.trim();
    const priceCents = parseMoney(fields.priceCents.input.value);
    let bad = null;
    if (!name) {
      fields.name.setError('Enter a name.');
      bad ??= fields.name;
    }
    if (priceCents === null) {
      fields.priceCents.setError('Enter a price like 12.50.');
      bad ??= fields.priceCents;
    }
    const result = { name, description: fields.description.input.value, priceCents };
    if (withStock) {
      const stock = Number(fields.stock.input.value);
      if (!Number.isInteger(stock) || stock < 0) {
        fields.stock.setError('Enter a whole number, 0 or more.');
        bad ??= fields.stock;
      }
      result.stock = stock;
    }
    if (bad) {
      bad.input.focus();
      return null;
    }
    return result;
  };
  const fill = (product) => {
    fields.name.input.value = product.name;
    fields.description.input.value = product.description ?? '';
    fields.priceCents.input.value = moneyInput(product.priceCents);
  };
  return { fields, values, fill };
}

/** `#/admin/products/new` */
export async function newProduct(ctx) {
  ctx.setTitle('New product');
  const { fields, values } = productFields({}, { withStock: true });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Create product');
  const form = h('form', { class: 'form wide', novalidate: true },
    h('h1', {}, 'New product'), message, Object.values(fields),
    h('div', { class: 'actions' }, submit, h('a', { href: '#/admin/products' }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.replaceChildren();
    const body = values();
    if (!body) return;
    submit.disabled = true;
    try {
      const { body: created } = await call('POST', '/products', { body: body });
      ctx.toast(`${created.name} is on sale.`);
      ctx.navigate(`#/admin/products/${created.id}`);
    } catch (error) {
      const text = ctx.failed(error, { context: 'save', button: submit });
      if (!placeFieldErrors(error, fields)) message.replaceChildren(notice('error', text));
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
    }
  });
  show(ctx.main, h('p', {}, h('a', { href: '#/admin/products' }, '← All products')), form);
  fields.name.input.focus();
}

const LABELS = { name: 'Name', description: 'Description', priceCents: 'Price' };
const shown = (key, value) => (key === 'priceCents' ? money(value) : value || '(empty)');

/**
 * The edit conflicted: someone saved first. Shows, per field, what the editor started from,
 * what they typed and what is saved now, and offers three ways out: merge (their change where
 * only they changed a field, mine where I did), keep mine over theirs, or take theirs.
 */
function conflictPanel(base, mine, theirs, { onSave, onDiscard }) {
  const keys = ['name', 'description', 'priceCents'];
  const changedByMe = keys.filter((k) => mine[k] !== base[k]);
  const changedByThem = keys.filter((k) => theirs[k] !== base[k]);
  const clash = changedByMe.filter((k) => changedByThem.includes(k) && mine[k] !== theirs[k]);
  const merged = Object.fromEntries(keys.map((k) => [k, changedByMe.includes(k) ? mine[k] : theirs[k]]));
  const rows = keys.map((k) => h('tr', { class: mine[k] !== theirs[k] ? 'differs' : null },
    h('th', { scope: 'row' }, LABELS[k]),
    h('td', {}, shown(k, base[k])),
    h('td', {}, shown(k, mine[k])),
    h('td', {}, shown(k, theirs[k]))));
  const buttons = [];
  if (!clash.length) {
    buttons.push(h('button', { type: 'button', onclick: () => onSave(merged) }, 'Merge both and save'));
  }
  buttons.push(h('button', { type: 'button', class: clash.length ? null : 'secondary', onclick: () => onSave(Object.fromEntries(keys.map((k) => [k, mine[k]]))) }, 'Save mine over theirs'));
  buttons.push(h('button', { type: 'button', class: 'secondary', onclick: () => onDiscard() }, 'Discard mine, use theirs'));
  return h('section', { class: 'conflict', id: 'conflict', role: 'alert', 'aria-labelledby': 'conflict-h' },
    h('h2', { id: 'conflict-h' }, 'Someone else saved this product first'),
    h('p', {}, `Their version (${theirs.version}) was saved ${when(theirs.updatedAt)}, after you opened the product. Nothing of yours was saved yet.`),
    clash.length
      ? h('p', {}, `You both changed: ${clash.map((k) => LABELS[k].toLowerCase()).join(', ')}. Choose whose to keep.`)
      : h('p', {}, changedByThem.length
          ? `They changed ${changedByThem.map((k) => LABELS[k].toLowerCase()).join(', ')}; you changed ${changedByMe.map((k) => LABELS[k].toLowerCase()).join(', ') || 'nothing'}. Both can be kept.`
          : 'Their change did not touch the fields you edited.'),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'When you opened it'), h('th', { scope: 'col' }, 'Yours'), h('th', { scope: 'col' }, 'Saved now'))),
      h('tbody', {}, rows)),
    h('div', { class: 'actions' }, buttons));
}

/** `#/admin/products/{id}`: edit, adjust stock, delete. */
export async function editProduct(ctx, id) {
  let product;
  try {
    product = await get(`/products/${id}`, { cache: 'no-cache' });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      notFound(ctx, 'Product not found', 'This product does not exist or was deleted.', ['#/admin/products', 'All products']);
      return;
    }
    throw error;
  }
  if (ctx.stale()) return;
  ctx.setTitle(`Edit ${product.name}`);
  // What the editor started from: the base of a three-way merge if a save conflicts.
  let base = product;
  const { fields, values, fill } = productFields(product);
  const message = h('div', { 'aria-live': 'polite' });
  const conflictArea = h('div', {});
  const heading = h('h1', {}, product.name);
  const versionNote = h('p', { class: 'muted', id: 'version' }, `Version ${product.version}, saved ${when(product.updatedAt)}`);
  const submit = h('button', { type: 'submit' }, 'Save changes');

  const opened = (saved) => {
    base = saved;
    product = saved;
    fill(saved);
    heading.textContent = saved.name;
    versionNote.textContent = `Version ${saved.version}, saved ${when(saved.updatedAt)}`;
    stockShown.replaceChildren(stockBadge(saved.stock));
  };

  const save = async (body, version) => {
    message.replaceChildren();
    submit.disabled = true;
    try {
      const { body: saved } = await call('PUT', `/products/${id}`, { body: { ...body, version } });
      conflictArea.replaceChildren();
      opened(saved);
      message.replaceChildren(notice('success', 'Saved.'));
      ctx.toast(`${saved.name} is saved.`);
    } catch (error) {
      if (error instanceof ApiError && (error.code === 'version-conflict' || error.code === 'precondition-failed')) {
        let theirs;
        try {
          theirs = await get(`/products/${id}`, { cache: 'no-cache' });
        } catch (readError) {
          message.replaceChildren(notice('error', `${ctx.failed(error)} ${ctx.failed(readError, { context: 'load' })}`));
          return;
        }
        if (ctx.stale()) return;
        conflictArea.replaceChildren(conflictPanel(base, body, theirs, {
          onSave: (resolved) => save(resolved, theirs.version),
          onDiscard: () => {
            conflictArea.replaceChildren();
            opened(theirs);
            message.replaceChildren(notice('info', 'The form now shows what is saved.'));
          },
        }));
        conflictArea.querySelector('button')?.focus();
      } else if (error instanceof ApiError && error.status === 404) {
        message.replaceChildren(notice('error', 'This product was deleted by someone else. Your changes cannot be saved.'));
      } else {
        const text = ctx.failed(error, { context: 'save', button: submit });
        if (!placeFieldErrors(error, fields)) message.replaceChildren(notice('error', text));
      }
    } finally {
      if (!submit.textContent.includes('(')) submit.disabled = false;
    }
  };

  const form = h('form', { class: 'form wide', novalidate: true, id: 'edit' },
    h('h2', {}, 'Details'), Object.values(fields), h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const body = values();
    if (body) save(body, product.version);
  });

  // Stock
  const stockShown = h('span', {}, stockBadge(product.stock));
  const delta = field({ label: 'Change', name: 'delta', type: 'number', inputmode: 'numeric', hint: 'Units to add, or negative to remove.', required: true });
  const reason = field({ label: 'Reason', name: 'reason', required: true, maxlength: 200, hint: 'For the stock ledger, like “delivery” or “damaged”.' });
  const stockMessage = h('div', { 'aria-live': 'polite' });
  const adjust = h('button', { type: 'submit' }, 'Adjust stock');
  const stockForm = h('form', { class: 'stock-form', novalidate: true, id: 'stock' }, delta, reason, adjust);
  stockForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    stockMessage.replaceChildren();
    delta.setError(null);
    reason.setError(null);
    const change = Number(delta.input.value);
    if (!Number.isInteger(change) || change === 0) {
      delta.setError('Enter a whole number other than 0.');
      return delta.input.focus();
    }
    if (!reason.input.value.trim()) {
      reason.setError('Say why the stock changes.');
      return reason.input.focus();
    }
    adjust.disabled = true;
    try {
      const { body: updated } = await call('POST', `/products/${id}/stock-adjustments`, { body: { delta: change, reason: reason.input.value.trim() } });
      product = { ...product, stock: updated.stock };
      stockShown.replaceChildren(stockBadge(updated.stock));
      delta.input.value = '';
      reason.input.value = '';
      stockMessage.replaceChildren(notice('success', `Stock is now ${updated.stock}.`));
    } catch (error) {
      if (error instanceof ApiError && error.code === 'insufficient-stock') {
        const available = error.problem.available;
        delta.setError(`That would take the stock below zero${available !== undefined ? `: only ${available} on hand` : ''}.`);
        delta.input.focus();
      } else {
        const text = ctx.failed(error, { context: 'save', button: adjust });
        if (!placeFieldErrors(error, { delta, reason })) stockMessage.replaceChildren(notice('error', text));
      }
    } finally {
      if (!adjust.textContent.includes('(')) adjust.disabled = false;
    }
  });

  // Delete
  const remove = h('button', { type: 'button', class: 'danger' }, 'Delete product');
  let armed = false;
  remove.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      remove.textContent = 'Really delete? Click again';
      setTimeout(() => {
        armed = false;
        remove.textContent = 'Delete product';
      }, 5000);
      return;
    }
    remove.disabled = true;
    try {
      await call('DELETE', `/products/${id}`);
      ctx.toast(`${product.name} is no longer sold.`);
      ctx.navigate('#/admin/products');
    } catch (error) {
      remove.disabled = false;
      message.replaceChildren(notice('error', ctx.failed(error, { context: 'save', button: remove })));
    }
  });

  show(ctx.main,
    h('p', {}, h('a', { href: '#/admin/products' }, '← All products')),
    heading,
    versionNote,
    message,
    conflictArea,
    form,
    h('section', { class: 'panel', 'aria-labelledby': 'stock-h' },
      h('h2', { id: 'stock-h' }, 'Stock'),
      h('p', {}, 'On hand: ', stockShown),
      stockMessage,
      stockForm),
    h('section', { class: 'panel', 'aria-labelledby': 'delete-h' },
      h('h2', { id: 'delete-h' }, 'Stop selling'),
      h('p', {}, 'Deleted products disappear from the shop; orders already placed keep them.'),
      remove));
}

const NEXT = { paid: 'shipped', shipped: 'delivered' };

/**
 * A paid order's carrier and tracking number, typed into its row. What is typed survives the
 * list being painted again (it is, on every event) in `drafts`, by order id.
 */
function shipmentInputs(order, drafts) {
  const draft = drafts.get(order.id) ?? { carrier: '', trackingNumber: '' };
  const input = (name, label, maxlength) => {
    const id = `${name}-${order.id}`;
    const control = h('input', {
      id, name, type: 'text', value: draft[name], maxlength, autocomplete: 'off', spellcheck: 'false',
    });
    control.addEventListener('input', () => {
      drafts.set(order.id, { ...(drafts.get(order.id) ?? draft), [name]: control.value });
    });
    return h('div', { class: 'compact' },
      h('label', { for: id }, label, h('span', { class: 'visually-hidden' }, ` for order ${shortId(order.id)}`)),
      control);
  };
  return [input('carrier', 'Carrier', 100), input('trackingNumber', 'Tracking number', 100)];
}

/** `#/admin/orders?status=&page=`: every customer's orders, with their next step. */
export function orders(ctx) {
  const message = h('div', { 'aria-live': 'polite' });
  const drafts = new Map();
  const nextStep = (render) => (order) => {
    const next = NEXT[order.status];
    const refundLink = REFUNDABLE.has(order.status)
      ? h('a', { href: `#/orders/${order.id}?refund`, class: 'refund-link', 'aria-label': `Refund order ${shortId(order.id)}` }, 'Refund…')
      : null;
    if (!next) return refundLink ?? h('span', { class: 'muted' }, '–');
    const shipping = next === 'shipped';
    const button = h('button', {
      type: shipping ? 'submit' : 'button',
      class: 'secondary',
      // The same id for the order's next step, so the keyboard stays on it after a step.
      id: `next-${order.id}`,
      'aria-label': `Mark order ${shortId(order.id)} ${STATUS[next].toLowerCase()}`,
    }, `Mark ${STATUS[next].toLowerCase()}`);
    const step = async () => {
      if (button.disabled) return;
      button.disabled = true;
      message.replaceChildren();
      const body = { status: next };
      if (shipping) {
        const draft = drafts.get(order.id) ?? {};
        const carrier = draft.carrier?.trim();
        const trackingNumber = draft.trackingNumber?.trim();
        if (carrier) body.carrier = carrier;
        if (trackingNumber) body.trackingNumber = trackingNumber;
      }
      try {
        await call('PUT', `/orders/${order.id}/status`, { body });
        drafts.delete(order.id);
        ctx.toast(`Order ${shortId(order.id)} is ${STATUS[next].toLowerCase()}.`);
      } catch (error) {
        message.replaceChildren(notice('error', stepFailed(ctx, error, order, button)));
        if (!(error instanceof ApiError && error.retryAfter)) button.disabled = false;
      }
      await render().catch(() => {});
    };
    if (!shipping) {
      button.addEventListener('click', step);
      return [button, refundLink];
    }
    // Shipping takes the carrier and tracking number typed beside the button (both optional).
    const form = h('form', { class: 'ship', novalidate: true, 'aria-label': `Ship order ${shortId(order.id)}` },
      shipmentInputs(order, drafts),
      button,
      order.shippingAddress === null ? h('p', { class: 'note warn' }, 'No shipping address') : null);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      step();
    });
    return [form, refundLink];
  };
  return ordersList(ctx, {
    title: 'All orders',
    base: '#/admin/orders',
    top: message,
    table: (render) => ({ actions: nextStep(render), owner: true }),
    empty: () => h('p', {}, 'No orders here.'),
  });
}

/** Why an order's step failed, in one sentence that names the order. */
function stepFailed(ctx, error, order, button) {
  const text = ctx.failed(error, { context: 'order', button });
  if (!(error instanceof ApiError)) return text;
  if (error.code === 'address-required') {
    return `Order ${shortId(order.id)} cannot be shipped: it has no shipping address. Only orders placed with an address can be shipped.`;
  }
  const fields = Object.entries(error.fields);
  if (error.status === 422 && fields.length) {
    return `Order ${shortId(order.id)}: ${fields.map(([name, problem]) => fieldMessage(name, problem)).join('; ')}.`;
  }
  return `Order ${shortId(order.id)}: ${text}`;
}

/**
 * The refund form of the order page, for administrators: an amount in the currency's major
 * units and a reason. It stays in the page while the order around it is painted again;
 * `update(order, refunds)` tells it what is left. One `Idempotency-Key` per amount and reason:
 * a retry after a lost answer makes no second refund. `refreshed()` reads the order again.
 */
export function refundForm(ctx, id, { refreshed }) {
  let order = null;
  let list = null;
  let key = newKey();
  let keyFor = null;
  const amount = field({
    label: 'Amount to refund', name: 'amountCents', inputmode: 'decimal', autocomplete: 'off', required: true,
    hint: 'Like 12.50.',
  });
  const reason = field({ label: 'Reason', name: 'reason', required: true, maxlength: 500, hint: 'The customer sees it with the refund.' });
  const hint = amount.querySelector('.hint');
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Refund');
  const fillRest = h('button', { type: 'button', class: 'secondary', id: 'refund-rest' }, 'Everything left');
  fillRest.addEventListener('click', () => {
    if (!list) return;
    amount.input.value = moneyInput(list.refundableCents);
    amount.setError(null);
    reason.input.focus();
  });
  const closed = h('p', { class: 'muted', id: 'refund-closed', hidden: true });
  const form = h('form', { class: 'refund-form', novalidate: true, id: 'refund', hidden: true, 'aria-labelledby': 'refund-h' },
    h('h3', { id: 'refund-h' }, 'Make a refund'),
    message,
    h('div', { class: 'refund-fields' }, amount, reason),
    h('div', { class: 'actions' }, submit, fillRest));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    message.replaceChildren();
    amount.setError(null);
    reason.setError(null);
    const cents = parseMoney(amount.input.value);
    const currency = order?.currency;
    if (cents === null || cents < 1) {
      amount.setError('Enter an amount like 12.50.');
      return amount.input.focus();
    }
    if (list && cents > list.refundableCents) {
      amount.setError(`That is more than the ${money(list.refundableCents, currency)} left to refund.`);
      return amount.input.focus();
    }
    const why = reason.input.value.trim();
    if (!why) {
      reason.setError('Say why the money goes back.');
      return reason.input.focus();
    }
    const content = JSON.stringify([cents, why]);
    if (content !== keyFor) {
      key = newKey();
      keyFor = content;
    }
    submit.disabled = true;
    try {
      const { body: refund } = await call('POST', `/orders/${id}/refunds`, {
        body: { amountCents: cents, reason: why },
        headers: { 'Idempotency-Key': key },
      });
      keyFor = null;
      amount.input.value = '';
      reason.input.value = '';
      message.replaceChildren(notice('success', `Refund of ${money(refund.amountCents, currency)} requested. It completes in a moment; the list below follows it.`));
    } catch (error) {
      if (ctx.stale()) return;
      // The server keeps a refusal on its key and would repeat it: the next try is a new one.
      // Anything else (no answer, an outage) may yet have made the refund: the key stays.
      if (error instanceof ApiError && [409, 422].includes(error.status) && !error.code.startsWith('idempotency-')) keyFor = null;
      const text = ctx.failed(error, { context: 'refund', button: submit });
      if (error instanceof ApiError && error.code === 'refund-exceeds-captured') {
        const left = error.problem.refundableCents;
        amount.setError(Number.isInteger(left) ? `That is more than the ${money(left, currency)} left to refund.` : text);
        amount.input.focus();
      } else if (!placeFieldErrors(error, { amountCents: amount, reason })) {
        message.replaceChildren(notice('error', text));
      }
    } finally {
      if (!submit.textContent.includes('(')) submit.disabled = false;
    }
    await refreshed().catch(() => {});
  });

  return {
    element: h('div', {}, closed, form),
    focus: () => amount.input.focus(),
    /** Shows the form while something is left to refund, and says why not otherwise. */
    update(current, refunds) {
      order = current;
      list = refunds;
      const left = refunds?.refundableCents ?? 0;
      const open = Boolean(refunds) && REFUNDABLE.has(current.status) && left > 0;
      form.hidden = !open;
      closed.hidden = open || !refunds;
      if (open) {
        hint.textContent = `In ${current.currency}, like 12.50: at most ${money(left, current.currency)}.`;
        fillRest.textContent = `Everything left (${money(left, current.currency)})`;
      } else if (current.status === 'refunded') {
        closed.textContent = 'This order is refunded in full.';
      } else if (!REFUNDABLE.has(current.status)) {
        closed.textContent = 'Only paid, shipped or delivered orders can be refunded.';
      } else {
        const pending = refunds?.items?.some((refund) => refund.status === 'pending');
        closed.textContent = pending
          ? 'Nothing more can be refunded while the refunds in progress complete.'
          : 'Nothing is left to refund.';
      }
    },
  };
}
