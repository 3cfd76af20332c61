// Fulfilment and refunds, on a system whose payments succeed after half a second: a shopper
// checks out with an address typed into the cart's form; an administrator ships the order
// with a carrier and a tracking number, then refunds part of it and the rest. The shopper's
// order page, never reloaded, shows the tracking, each refund and finally the refunded order.
// And an order placed without an address cannot be shipped: the administrator is told why.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, newPage, screenshot } from '../lib/browser.mjs';
import {
  addToCart, eventually, fillAddress, newShopper, open, orderIdOf, orderStatus, register,
  shopperWithCart, signIn,
} from '../lib/shop.mjs';
import { adminToken, api, createProduct, loginToken, startSystem } from '../lib/system.mjs';

let system;
let browser;
let pot;

before(async () => {
  system = await startSystem({
    label: 'fulfilment',
    env: {
      PAYMENT_DURATION: 500,
      PAYMENT_FAILED_PROBABILITY: 0,
      THROTTLER_AUTH_LIMIT: 1000,
      THROTTLER_LIMIT: 100000,
      // The development default, said out loud: the administrator signs in with a password.
      ADMIN_REQUIRE_MFA: false,
    },
  });
  browser = await launch();
  const admin = await adminToken(system);
  pot = await createProduct(system, admin, { name: 'Moka pot', description: 'Aluminium, six cups.', priceCents: 2450, stock: 20 });
});

after(async () => {
  await browser?.close();
  await system?.close();
});

/** A page where the system's administrator has signed in. */
async function adminPage() {
  const page = await newPage(browser, { url: system.url });
  await signIn(page, system, system.admin);
  return page;
}

/** The fields of `expected` as `actual` has them (the API may add absent optional ones). */
function sameFields(actual, expected, what) {
  assert.ok(actual, `${what}: none`);
  for (const [key, value] of Object.entries(expected)) assert.equal(actual[key], value, `${what}: ${key}`);
}

describe('fulfilment', () => {
  test('checkout with an address, shipped with tracking, refunded in two parts: the shopper follows live', async () => {
    const shopper = newShopper('Marie');
    const address = {
      name: 'Marie Curie',
      line1: '36 quai de Béthune',
      line2: 'Escalier B',
      city: 'Paris',
      postalCode: '75004',
      country: 'FR',
      phone: '+33 1 23 45 67 89',
    };
    const page = await newPage(browser, { url: system.url });
    await register(page, system, shopper);
    await open(page, system, '#/');
    await addToCart(page, 'Moka pot', 1);
    await page.getByRole('link', { name: 'Cart (1)' }).click();
    await page.getByLabel('Quantity of Moka pot').fill('2');
    await page.getByLabel('Quantity of Moka pot').press('Tab');
    await page.locator('#cart-total', { hasText: '$49.00' }).waitFor();

    // A half-typed address is stopped beside its fields, before anything is sent.
    await page.locator('#address').getByLabel('Full name').fill(address.name);
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.getByText('Enter the street and number.').waitFor();
    await page.getByText('Enter the postal code.').waitFor();
    // One the shop refuses comes back field by field, and places no order.
    await fillAddress(page, { ...address, postalCode: '75004!' });
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.locator('#address .field-error', { hasText: /^Postal code / }).waitFor();
    await page.getByText('Please check the shipping address').waitFor();
    assert.match(page.url(), /#\/cart$/);
    await screenshot(page, 'checkout-address-refused');
    await page.locator('#address').getByLabel('Postal code').fill(address.postalCode);
    await page.getByLabel('Save as my default address').check();
    await screenshot(page, 'checkout-address');

    // A marker that a reload would lose.
    await page.evaluate(() => { window.stillThisPage = true; });
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    await orderStatus(page, 'paid');
    const id = orderIdOf(page);
    await page.locator('#shipping-address', { hasText: '36 quai de Béthune' }).waitFor();
    await page.locator('#shipping-address', { hasText: 'France' }).waitFor();
    await screenshot(page, 'order-paid-address');

    const token = await loginToken(system, shopper.email, shopper.password);
    const placed = await api(system.url, 'GET', `/orders/${id}`, { token });
    assert.equal(placed.status, 200, JSON.stringify(placed.body));
    sameFields(placed.body.shippingAddress, address, 'the order\'s address');
    assert.equal(placed.body.shipment, null);
    assert.equal(placed.body.refundedCents, 0);
    const saved = await api(system.url, 'GET', '/me/address', { token });
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    sameFields(saved.body, address, 'the default address');

    // The administrator ships it from the list of all orders, with a carrier and a tracking number.
    const desk = await adminPage();
    await open(desk, system, '#/admin/orders');
    const row = desk.locator(`tr[data-order-id="${id}"]`);
    await row.getByLabel(/^Carrier/).fill('La Poste');
    await row.getByLabel(/^Tracking number/).fill('6A12345678901');
    await screenshot(desk, 'admin-ship');
    await row.getByRole('button', { name: /shipped$/ }).click();
    await row.getByRole('button', { name: /delivered$/ }).waitFor();
    await row.getByText('La Poste · 6A12345678901').waitFor();

    // The shopper's page shows how the parcel travels, without a reload.
    await orderStatus(page, 'shipped');
    await page.locator('#shipment[data-carrier="La Poste"][data-tracking-number="6A12345678901"]').waitFor();
    await page.locator('#tracking-number', { hasText: '6A12345678901' }).waitFor();
    await page.locator('#activity [data-event="order.shipped"]', { hasText: '6A12345678901' }).waitFor();
    await screenshot(page, 'order-shipped');

    // A first, partial refund from the order's page.
    await row.getByRole('link', { name: /^Refund order/ }).click();
    await desk.waitForURL(new RegExp(`#/orders/${id}\\?refund$`));
    await desk.locator('#refund-captured', { hasText: '$49.00' }).waitFor();
    await desk.locator('#refund-left', { hasText: '$49.00' }).waitFor();
    await desk.getByLabel('Amount to refund').fill('15.00');
    await desk.getByLabel('Reason').fill('One pot arrived dented');
    await desk.getByRole('button', { name: 'Refund', exact: true }).click();
    await desk.getByText('Refund of $15.00 requested.').waitFor();
    await desk.locator('#refunds [data-refund-status="succeeded"]', { hasText: '$15.00' }).waitFor();
    await desk.locator('#refund-left', { hasText: '$34.00' }).waitFor();

    await page.locator('#refunds [data-refund-status="succeeded"]', { hasText: 'One pot arrived dented' }).waitFor();
    await page.locator('#refunded-total', { hasText: '$15.00' }).waitFor();
    assert.equal(await page.evaluate(() => document.body.dataset.orderStatus), 'shipped');
    await screenshot(page, 'order-partly-refunded');

    // More than is left is refused, by the page and by the API.
    await desk.getByLabel('Amount to refund').fill('40.00');
    await desk.getByLabel('Reason').fill('Too much');
    await desk.getByRole('button', { name: 'Refund', exact: true }).click();
    await desk.getByText('That is more than the $34.00 left to refund.').waitFor();
    const over = await api(system.url, 'POST', `/orders/${id}/refunds`, {
      token: await adminToken(system),
      body: { amountCents: 3401, reason: 'Too much' },
    });
    assert.equal(over.status, 409, JSON.stringify(over.body));
    assert.equal(over.body.code, 'refund-exceeds-captured');

    // The rest.
    await desk.getByRole('button', { name: /^Everything left/ }).click();
    assert.equal(await desk.getByLabel('Amount to refund').inputValue(), '34.00');
    await desk.getByLabel('Reason').fill('Lost in transit');
    await desk.getByRole('button', { name: 'Refund', exact: true }).click();
    await orderStatus(desk, 'refunded');
    await desk.getByText('This order is refunded in full.').waitFor();
    await desk.locator('#refund-left', { hasText: '$0.00' }).waitFor();
    await screenshot(desk, 'admin-refunded');

    // The shopper's page, still the same one, ends refunded with both refunds listed.
    await orderStatus(page, 'refunded');
    await page.locator('.summary .badge', { hasText: 'Refunded' }).waitFor();
    await page.locator('#refunds [data-refund-status="succeeded"]', { hasText: 'Lost in transit' }).waitFor();
    await page.locator('#refunded-total', { hasText: '$49.00' }).waitFor();
    await page.locator('#activity [data-event="order.refunded"]').waitFor();
    assert.equal(await page.locator('#refunds [data-refund-id]').count(), 2);
    assert.equal(await page.evaluate(() => window.stillThisPage), true, 'the page was reloaded');
    await screenshot(page, 'order-refunded');

    const final = await api(system.url, 'GET', `/orders/${id}`, { token });
    assert.equal(final.body.status, 'refunded');
    assert.equal(final.body.refundedCents, 4900);
    sameFields(final.body.shipment, { carrier: 'La Poste', trackingNumber: '6A12345678901' }, 'the shipment');
    const refunds = await api(system.url, 'GET', `/orders/${id}/refunds`, { token });
    assert.equal(refunds.status, 200, JSON.stringify(refunds.body));
    assert.deepEqual(refunds.body.items.map((r) => [r.amountCents, r.status, r.reason]), [
      [1500, 'succeeded', 'One pot arrived dented'],
      [3400, 'succeeded', 'Lost in transit'],
    ]);
    assert.equal(refunds.body.capturedCents, 4900);
    assert.equal(refunds.body.refundedCents, 4900);
    assert.equal(refunds.body.refundableCents, 0);
    for (const p of [page, desk]) assert.deepEqual(p.problems, []);
  });

  test('an order placed without an address cannot be shipped, and the administrator is told why', async () => {
    const { token } = await shopperWithCart(system, 'Nowhere', [[pot.id, 1]]);
    const placed = await api(system.url, 'POST', '/cart/checkout', { token });
    assert.equal(placed.status, 201, JSON.stringify(placed.body));
    assert.equal(placed.body.shippingAddress ?? null, null);
    const id = placed.body.id;
    await eventually(async () => (await api(system.url, 'GET', `/orders/${id}`, { token })).body.status === 'paid', 'the order to be paid');

    const desk = await adminPage();
    await open(desk, system, '#/admin/orders');
    const row = desk.locator(`tr[data-order-id="${id}"]`);
    await row.getByText('No shipping address').waitFor();
    await row.getByLabel(/^Carrier/).fill('La Poste');
    await row.getByRole('button', { name: /shipped$/ }).click();
    await desk.getByRole('alert').filter({ hasText: 'cannot be shipped: it has no shipping address' }).waitFor();
    await screenshot(desk, 'admin-address-required');
    assert.equal((await api(system.url, 'GET', `/orders/${id}`, { token })).body.status, 'paid');
    // What was typed is still there for when it can be shipped.
    assert.equal(await row.getByLabel(/^Carrier/).inputValue(), 'La Poste');
    assert.deepEqual(desk.problems, []);
  });
});
