// Orders: the shopper's list, and an order's page that follows the order live: its status,
// its payment attempts as they fail and retry, where it goes and how it travels, its refunds,
// its timeline, and the stock of what it holds.

import { ApiError, call, get, isAdmin } from './api.js';
import { clock, field, h, keepFocus, money, notFound, notice, pageOf, pager, shortId, show, when } from './dom.js';
import { isLive, onEvent, onState } from './live.js';
import { EVENTS, PAYMENT, REFUND, STATUS, actor, cause, countryName } from './words.js';
import { stockBadge } from './catalogue.js';
import { refundForm } from './admin.js';

const PAGE_SIZE = 20;

export function statusBadge(status) {
  return h('span', { class: ['badge', status], 'data-status': status }, STATUS[status] ?? status);
}

function itemCount(order) {
  const units = order.items.reduce((sum, item) => sum + item.quantity, 0);
  return units === 1 ? '1 item' : `${units} items`;
}

/**
 * A table of orders; `actions(order)` adds a last column (the admin's status buttons).
 */
export function ordersTable(orders, { actions = null, owner = false } = {}) {
  return h('table', { class: 'table orders' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Order'),
      h('th', { scope: 'col' }, 'Placed'),
      owner ? h('th', { scope: 'col' }, 'Customer') : null,
      h('th', { scope: 'col' }, 'Items'),
      h('th', { scope: 'col', class: 'number' }, 'Total'),
      h('th', { scope: 'col' }, 'Status'),
      actions ? h('th', { scope: 'col' }, 'Next step') : null)),
    h('tbody', {}, orders.map((order) => h('tr', { 'data-order-id': order.id },
      h('td', { 'data-label': 'Order' }, h('a', { href: `#/orders/${order.id}` }, shortId(order.id))),
      h('td', { 'data-label': 'Placed' }, when(order.createdAt)),
      owner ? h('td', { 'data-label': 'Customer' }, shortId(order.userId)) : null,
      h('td', { 'data-label': 'Items' }, itemCount(order)),
      h('td', { class: 'number', 'data-label': 'Total' }, money(order.totalCents, order.currency)),
      h('td', { 'data-label': 'Status' }, statusBadge(order.status), statusNote(order)),
      actions ? h('td', { 'data-label': 'Next step' }, actions(order)) : null))));
}

/** Under a listed order's status: how it travels, and what of it was refunded. */
function statusNote(order) {
  const notes = [];
  const shipment = order.shipment;
  if (shipment && (shipment.carrier || shipment.trackingNumber)) {
    notes.push([shipment.carrier, shipment.trackingNumber].filter(Boolean).join(' · '));
  }
  if (order.refundedCents > 0 && order.status !== 'refunded') {
    notes.push(`${money(order.refundedCents, order.currency)} refunded`);
  }
  return notes.length ? h('span', { class: 'note' }, notes.join('; ')) : null;
}

/** A status filter and pager shared by the shopper's and the admin's lists. */
function listControls(ctx, { base, status, page, total }) {
  const go = (changes) => {
    const next = new URLSearchParams();
    const values = { status, page, ...changes };
    if (values.status) next.set('status', values.status);
    if (values.page > 1) next.set('page', values.page);
    ctx.navigate(`${base}${next.size ? `?${next}` : ''}`);
  };
  const filter = field({
    label: 'Show',
    name: 'status',
    value: status,
    options: [['', 'All orders'], ...Object.entries(STATUS).filter(([s]) => s !== 'reserving')],
  });
  filter.input.addEventListener('change', () => go({ status: filter.input.value, page: 1 }));
  return {
    filter: h('div', { class: 'filters' }, filter, h('p', { class: 'muted', role: 'status' }, total === 1 ? '1 order' : `${total} orders`)),
    pager: pager(page, total, PAGE_SIZE, (to) => go({ page: to })),
  };
}

/** Reruns `render` when an event about an order arrives (or the socket had to resync). */
function followOrders(ctx, render, matches = () => true) {
  let timer = null;
  const again = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!ctx.stale()) render().catch(() => {});
    }, 150);
  };
  const off = onEvent((event) => {
    if (event.type === 'resync' || (event.orderId && matches(event))) again();
  });
  let first = true;
  const offState = onState((state) => {
    // Back after an outage: whatever happened meanwhile arrives as events, but a resync or a
    // fresh socket may not replay it all, so read again.
    if (state === 'live' && !first) again();
    first = false;
  });
  ctx.onLeave(() => {
    off();
    offState();
    clearTimeout(timer);
  });
}

/**
 * A list of orders at `base?status=&page=` that follows them live: the shopper's own and the
 * admin's all. `table(render)` gives `ordersTable`'s options (render repaints the list), `top`
 * goes above the filter and `empty(status)` is shown for no orders.
 */
export async function ordersList(ctx, { title, base, top = null, table = () => ({}), empty }) {
  ctx.setTitle(title);
  const status = STATUS[ctx.query.get('status')] ? ctx.query.get('status') : '';
  const page = pageOf(ctx.query);
  const params = new URLSearchParams({ page, limit: PAGE_SIZE });
  if (status) params.set('status', status);
  let latest = 0;
  const render = async () => {
    // Reads can overlap (events, actions): only the newest one paints.
    const mine = ++latest;
    const body = await get(`/orders?${params}`, { cache: 'no-store' });
    if (ctx.stale() || mine !== latest) return;
    const { filter, pager: pages } = listControls(ctx, { base, status, page, total: body.total });
    keepFocus(() => show(ctx.main,
      h('h1', {}, title),
      top,
      filter,
      body.items.length ? ordersTable(body.items, table(render)) : h('div', { class: 'empty' }, empty(status)),
      pages));
  };
  await render();
  followOrders(ctx, render);
}

/** `#/orders?status=&page=` */
export function list(ctx) {
  return ordersList(ctx, {
    title: 'Your orders',
    base: '#/orders',
    empty: (status) => [
      h('p', {}, status ? `You have no orders that are ${STATUS[status].toLowerCase()}.` : 'You have not ordered anything yet.'),
      h('p', {}, h('a', { href: '#/' }, 'Browse the products')),
    ],
  });
}

/** The payment, or null before the payment service has it. */
async function payment(id) {
  try {
    return await get(`/orders/${id}/payment`, { cache: 'no-store' });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function stockNow(productId) {
  return get(`/products/${productId}`, { auth: false, cache: 'no-cache' }).catch(() => null);
}

const FINAL = new Set(['paid', 'failed', 'cancelled', 'shipped', 'delivered', 'refunded']);

/** Statuses an order can be refunded from (and so has refunds to show). */
export const REFUNDABLE = new Set(['paid', 'shipped', 'delivered']);

/** The order's refunds (`{items, capturedCents, refundedCents, refundableCents}`), or null
 * for an order that was never paid. */
async function refunds(order) {
  if (!REFUNDABLE.has(order.status) && order.status !== 'refunded' && !(order.refundedCents > 0)) return null;
  try {
    return await get(`/orders/${order.id}/refunds`, { cache: 'no-store' });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function headline(order, pay) {
  switch (order.status) {
    case 'reserving':
      return notice('info', 'We are reserving the stock for your order.');
    case 'pending':
      if (pay?.attempts?.some((a) => a.outcome === 'failed')) {
        return notice('warning', 'A payment attempt failed. We will try again automatically; this page updates by itself.');
      }
      return notice('info', 'Your stock is reserved and payment is being processed. This page updates by itself.');
    case 'paid':
      return notice('success', 'Payment received. Your order is being prepared.');
    case 'failed':
      if (order.payment?.status === 'failed') {
        return notice('error', 'Payment failed after every attempt, so the order was not completed. Nothing was charged and the items went back on sale.');
      }
      return notice('error', 'This order could not be completed. Nothing was charged.');
    case 'cancelled':
      return notice('info', 'This order was cancelled. Nothing was charged and the items went back on sale.');
    case 'shipped':
      return notice('success', order.shipment?.carrier ? `Your order is on its way with ${order.shipment.carrier}.` : 'Your order is on its way.');
    case 'delivered':
      return notice('success', 'Your order was delivered.');
    case 'refunded':
      return notice('info', `This order was refunded in full: ${money(order.refundedCents ?? order.totalCents, order.currency)} went back to the payment method it was paid with.`);
    default:
      return null;
  }
}

function attemptLine(attempt) {
  const outcome = attempt.outcome;
  return h('li', { 'data-attempt': attempt.attemptNo, 'data-outcome': outcome },
    h('strong', {}, `Attempt ${attempt.attemptNo}`),
    h('span', { class: ['badge', outcome] }, PAYMENT[outcome] ?? outcome),
    h('time', { datetime: attempt.at }, clock(attempt.at)),
    attempt.error ? h('span', {}, attempt.error) : null,
    attempt.nextRetryAt ? h('span', { class: 'muted' }, `Next try at ${clock(attempt.nextRetryAt)}`) : null);
}

function paymentPanel(order, pay) {
  if (!pay) {
    return h('section', { class: 'panel', id: 'payment', 'aria-labelledby': 'payment-h' },
      h('h2', { id: 'payment-h' }, 'Payment'),
      h('p', { class: 'muted' }, FINAL.has(order.status) ? 'No payment was taken for this order.' : 'Payment has not started yet.'));
  }
  return h('section', { class: 'panel', id: 'payment', 'aria-labelledby': 'payment-h', 'data-payment-status': pay.status },
    h('h2', { id: 'payment-h' }, 'Payment'),
    h('p', { class: 'status-line' },
      h('span', {}, money(pay.amountCents, pay.currency)),
      h('span', { class: ['badge', pay.status] }, PAYMENT[pay.status] ?? pay.status),
      pay.nextAttemptAt && pay.status === 'processing' ? h('span', { class: 'muted' }, `Next attempt at ${clock(pay.nextAttemptAt)}`) : null),
    pay.attempts.length
      ? h('ol', { class: 'attempts', 'aria-label': 'Payment attempts' }, pay.attempts.map(attemptLine))
      : h('p', { class: 'muted' }, 'The first attempt is starting.'));
}

/** An address as the lines of a label. */
function addressLines(address) {
  return [
    address.name,
    address.line1,
    address.line2,
    [address.postalCode, address.city].filter(Boolean).join(' '),
    address.region,
    countryName(address.country),
  ].filter(Boolean);
}

/** Where the order goes, and once shipped, with whom and under which tracking number. */
function deliveryPanel(order) {
  // An order from before addresses existed says nothing about delivery.
  if (order.shippingAddress === undefined && !order.shipment) return null;
  const address = order.shippingAddress;
  const shipment = order.shipment;
  let travel = null;
  if (shipment) {
    travel = h('div', {
      id: 'shipment',
      'data-carrier': shipment.carrier ?? '',
      'data-tracking-number': shipment.trackingNumber ?? '',
    },
    h('p', {}, `Shipped ${when(shipment.shippedAt)}`, shipment.carrier ? [' with ', h('strong', { class: 'carrier' }, shipment.carrier)] : null, '.'),
    shipment.trackingNumber
      ? h('p', {}, 'Tracking number: ', h('strong', { class: 'tracking', id: 'tracking-number' }, shipment.trackingNumber))
      : h('p', { class: 'muted' }, 'No tracking number was given.'));
  } else if (order.status === 'paid') {
    travel = h('p', { class: 'muted' }, 'Not shipped yet. The tracking number shows here once it is.');
  }
  return h('section', { class: 'panel', id: 'shipping', 'aria-labelledby': 'shipping-h' },
    h('h2', { id: 'shipping-h' }, 'Delivery'),
    address
      ? h('address', { class: 'address', id: 'shipping-address', 'aria-label': 'Shipping address' },
          addressLines(address).map((line) => h('span', {}, line)),
          address.phone ? h('span', {}, `Phone: ${address.phone}`) : null)
      : h('p', { class: 'muted', id: 'shipping-address' }, 'No shipping address was given for this order.'),
    travel);
}

function refundLine(refund, currency) {
  return h('li', { 'data-refund-id': refund.id, 'data-refund-status': refund.status },
    h('strong', { class: 'amount' }, money(refund.amountCents, currency)),
    h('span', { class: ['badge', refund.status] }, REFUND[refund.status] ?? refund.status),
    refund.reason ? h('span', { class: 'reason' }, refund.reason) : null,
    refund.status === 'failed' && refund.error ? h('span', { class: 'muted' }, refund.error) : null,
    h('time', { datetime: refund.completedAt ?? refund.createdAt }, when(refund.completedAt ?? refund.createdAt)));
}

/** What was refunded, refund by refund (oldest first); `left` adds what can still be. */
function refundsSummary(order, list, { left = false } = {}) {
  const currency = order.currency;
  const figures = [
    ['Paid', 'refund-captured', list.capturedCents],
    ['Refunded', 'refunded-total', list.refundedCents ?? order.refundedCents],
  ];
  if (left) figures.push(['Left to refund', 'refund-left', list.refundableCents]);
  return [
    h('dl', { class: 'figures' }, figures.map(([label, id, cents]) => h('div', {},
      h('dt', {}, label),
      h('dd', { id, 'data-cents': cents }, money(cents, currency))))),
    list.items.length
      ? h('ol', { class: 'refunds', 'aria-label': 'Refunds' }, list.items.map((refund) => refundLine(refund, currency)))
      : h('p', { class: 'muted' }, 'Nothing was refunded.'),
  ];
}

function timelinePanel(entries) {
  return h('section', { class: 'panel', id: 'timeline', 'aria-labelledby': 'timeline-h' },
    h('h2', { id: 'timeline-h' }, 'Timeline'),
    h('ol', { class: 'timeline' }, entries.map((entry) => {
      const bad = ['failed', 'cancelled'].includes(entry.status);
      return h('li', { class: bad ? 'bad' : null, 'data-status': entry.status },
        h('strong', {}, STATUS[entry.status] ?? entry.status),
        entry.cause ? ` · ${cause(entry.cause)}` : null,
        entry.actor ? h('span', { class: 'muted' }, ` · by ${actor(entry.actor)}`) : null,
        h('time', { datetime: entry.at }, when(entry.at)));
    })));
}

function itemsTable(order, stock) {
  return h('table', { class: 'table', id: 'items' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Product'),
      h('th', { scope: 'col', class: 'number' }, 'Price'),
      h('th', { scope: 'col' }, 'Quantity'),
      h('th', { scope: 'col', class: 'number' }, 'Subtotal'),
      h('th', { scope: 'col' }, 'In stock now'))),
    h('tbody', {}, order.items.map((item, index) => h('tr', { 'data-product-id': item.productId },
      h('td', { 'data-label': 'Product' }, h('a', { href: `#/products/${item.productId}` }, item.name ?? 'Product')),
      h('td', { class: 'number', 'data-label': 'Price' }, money(item.unitPriceCents, order.currency)),
      h('td', { 'data-label': 'Quantity' }, String(item.quantity)),
      h('td', { class: 'number', 'data-label': 'Subtotal' }, item.unitPriceCents === null ? '–' : money(item.unitPriceCents * item.quantity, order.currency)),
      h('td', { 'data-label': 'In stock now', class: 'stock-now' }, stock[index] ? stockBadge(stock[index].stock) : h('span', { class: 'muted' }, 'Not sold any more'))))),
    h('tfoot', {}, h('tr', {},
      h('td', { colspan: 3 }, 'Total'),
      h('td', { class: 'number', 'data-label': 'Total' }, money(order.totalCents, order.currency)),
      h('td', {}))));
}

/** `#/orders/{id}`: the order, live. */
export async function detail(ctx, id) {
  const heading = h('h1', { tabindex: -1 }, `Order ${shortId(id)}`);
  const status = h('div', { class: 'summary', 'aria-live': 'polite' });
  const body = h('div', {});
  // The refunds have a place of their own: an administrator's refund form lives in it and
  // keeps what was typed while the rest of the page is painted again.
  const refundsView = h('div', {});
  const form = isAdmin() ? refundForm(ctx, id, { refreshed: () => render() }) : null;
  const refundsPanel = h('section', { class: 'panel', id: 'refunds', hidden: true, 'aria-labelledby': 'refunds-h' },
    h('h2', { id: 'refunds-h' }, 'Refunds'), refundsView, form?.element);
  const history = h('div', {});
  const activity = h('ol', { class: 'timeline', id: 'activity' });
  const activityPanel = h('section', { class: 'panel', hidden: true, 'aria-labelledby': 'activity-h' },
    h('h2', { id: 'activity-h' }, 'Live activity'), activity);
  const message = h('div', { 'aria-live': 'polite' });
  let rendered = false;
  let inFlight = null;
  let again = false;
  let pendingTimer = null;
  let pendingDelay = 1000;

  const load = async () => {
    const order = await get(`/orders/${id}`, { cache: 'no-store' });
    const [timeline, pay, stock, refundList] = await Promise.all([
      get(`/orders/${id}/timeline`, { cache: 'no-store' }),
      payment(id),
      Promise.all(order.items.map((item) => stockNow(item.productId))),
      refunds(order),
    ]);
    return { order, timeline, pay, stock, refundList };
  };

  const render = async () => {
    // One read at a time; events arriving meanwhile ask for one more afterwards.
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          again = false;
          const loaded = await load();
          if (ctx.stale()) return;
          paint(loaded);
        } while (again && !ctx.stale());
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };

  /**
   * A refund is carried out after its request, and a partial one is announced by the payment
   * service, possibly before the order service has recorded it: while one is in progress the
   * page reads again by itself, less and less often.
   */
  const watchPending = (refundList) => {
    clearTimeout(pendingTimer);
    if (!refundList?.items?.some((refund) => refund.status === 'pending')) {
      pendingDelay = 1000;
      return;
    }
    pendingTimer = setTimeout(() => {
      if (!ctx.stale()) render().catch(() => {});
    }, pendingDelay);
    pendingDelay = Math.min(pendingDelay * 2, 15_000);
  };

  const paint = ({ order, timeline, pay, stock, refundList }) => {
    ctx.setTitle(`Order ${shortId(order.id)} · ${STATUS[order.status] ?? order.status}`);
    const cancel = order.status === 'pending' && !isAdmin()
      ? h('button', { type: 'button', class: 'danger', onclick: () => cancelOrder(ctx, order, cancel, message, render, heading) }, 'Cancel order')
      : null;
    keepFocus(() => show(status,
      h('span', { class: 'status-line' }, 'Status: ', statusBadge(order.status)),
      h('span', {}, `Placed ${when(order.createdAt)}`),
      h('span', { class: 'price' }, money(order.totalCents, order.currency)),
      order.refundedCents > 0 && order.status !== 'refunded'
        ? h('span', { class: 'refunded-note' }, `${money(order.refundedCents, order.currency)} refunded`)
        : null,
      cancel));
    show(body,
      headline(order, pay),
      deliveryPanel(order),
      itemsTable(order, stock),
      paymentPanel(order, pay));
    // The owner sees refunds once there are some; an administrator wherever one can be made.
    const refundsShown = refundList && (refundList.items.length > 0 || (form && REFUNDABLE.has(order.status)));
    refundsPanel.hidden = !refundsShown;
    refundsPanel.dataset.refundedCents = order.refundedCents ?? 0;
    if (refundsShown) show(refundsView, refundsSummary(order, refundList, { left: Boolean(form) }));
    form?.update(order, refundList);
    show(history, timelinePanel(timeline));
    document.body.dataset.orderStatus = order.status;
    watchPending(refundList);
    rendered = true;
  };

  try {
    await render();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      notFound(ctx, 'Order not found', 'We could not find this order. It may belong to another account.', ['#/orders', 'Your orders']);
      return;
    }
    throw error;
  }
  if (ctx.stale() || !rendered) return;
  show(ctx.main,
    h('p', {}, h('a', { href: isAdmin() ? '#/admin/orders' : '#/orders' }, isAdmin() ? '← All orders' : '← Your orders')),
    heading, status, message, body, refundsPanel, history, activityPanel,
    h('p', { class: 'muted', id: 'live-note' }, isLive() ? '' : 'Live updates are connecting; the page refreshes itself when they arrive.'));
  ctx.onLeave(() => {
    delete document.body.dataset.orderStatus;
    clearTimeout(pendingTimer);
  });
  // `#/orders/{id}?refund` (the admin's list links there) starts at the refund form.
  if (form && ctx.query.has('refund') && !refundsPanel.hidden) form.focus();

  onEventLines(ctx, id, activity, activityPanel);
  followOrders(ctx, () => render().catch((error) => {
    if (!ctx.stale()) message.replaceChildren(notice('warning', ctx.failed(error, { context: 'order' })));
  }), (event) => event.orderId === id);
  const offState = onState((state) => {
    const note = document.getElementById('live-note');
    if (note) note.textContent = state === 'live' ? '' : state === 'off' ? '' : 'Live updates are reconnecting; the page catches up when they return.';
  });
  ctx.onLeave(offState);
}

/** An event's line in the order's activity. */
function eventText(event) {
  const data = event.data ?? {};
  switch (event.type) {
    case 'payment.attempt_failed': {
      let text = `Payment attempt ${data.attemptNo ?? ''} failed${data.error ? `: ${data.error}` : ''}`;
      if (data.nextRetryAt) text += `; next try at ${clock(data.nextRetryAt)}`;
      return text;
    }
    case 'order.shipped':
      return [
        EVENTS[event.type],
        data.carrier ? ` with ${data.carrier}` : '',
        data.trackingNumber ? `, tracking number ${data.trackingNumber}` : '',
      ].join('');
    case 'payment.refunded':
      return Number.isInteger(data.amountCents)
        ? `Refund of ${money(data.amountCents, data.currency)} completed`
        : EVENTS[event.type];
    default:
      return EVENTS[event.type];
  }
}

/** Each live event about this order, as it arrives. */
function onEventLines(ctx, id, list, panel) {
  const off = onEvent((event) => {
    if (event.orderId !== id || !EVENTS[event.type]) return;
    const bad = /failed|cancelled/.test(event.type);
    list.append(h('li', { class: bad ? 'bad' : null, 'data-event': event.type }, h('strong', {}, eventText(event)), h('time', { datetime: event.occurredAt }, clock(event.occurredAt))));
    panel.hidden = false;
  });
  ctx.onLeave(off);
}

async function cancelOrder(ctx, order, button, message, render, heading) {
  button.disabled = true;
  try {
    await call('POST', `/orders/${order.id}/cancel`);
    ctx.toast('Your order is cancelled.');
  } catch (error) {
    message.replaceChildren(notice('error', ctx.failed(error, { context: 'cancel', button })));
    if (!(error instanceof ApiError && error.retryAfter)) button.disabled = false;
  }
  await render().catch(() => {});
  // The button is gone once the order moved on; the keyboard continues from the heading.
  if (!document.contains(document.activeElement) || document.activeElement === document.body) heading.focus();
}
