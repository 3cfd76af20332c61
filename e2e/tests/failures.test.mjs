// When things go wrong: payments that always fail (each attempt shows, then the failure, and
// the stock comes back), a catalogue service that is down (the page says so and recovers by
// itself), and sign-in attempts over the limit (a countdown, not a dead button).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, newPage, screenshot } from '../lib/browser.mjs';
import {
  atCart, open, orderIdOf, orderStatus, newShopper, productNow, shopperWithCart,
} from '../lib/shop.mjs';
import { adminToken, api, createProduct, registerUser, startSystem } from '../lib/system.mjs';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

describe('payments that keep failing', () => {
  let system;
  before(async () => {
    system = await startSystem({
      label: 'declined',
      env: {
        PAYMENT_FAILED_PROBABILITY: 100,
        BACKOFF_RETRIES: 2,
        BACKOFF_DELAY: 1000,
        PAYMENT_DURATION: 300,
        THROTTLER_AUTH_LIMIT: 1000,
        THROTTLER_LIMIT: 100000,
      },
    });
  });
  after(() => system?.close());

  test('the order page shows each failed attempt, then the failure, and the stock returns', async () => {
    const admin = await adminToken(system);
    const lamp = await createProduct(system, admin, { name: 'Desk lamp', description: 'Brass.', priceCents: 4500, stock: 5 });
    const { shopper, token } = await shopperWithCart(system, 'Declined', [[lamp.id, 2]]);
    const page = await atCart(browser, system, shopper);
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    // While the payment is tried, the two lamps are held.
    await page.locator('.stock-now [data-stock="3"]').waitFor();

    await page.locator('#payment [data-attempt="1"][data-outcome="failed"]').waitFor();
    await page.locator('#activity [data-event="payment.attempt_failed"]').first().waitFor();
    await screenshot(page, 'order-retrying');
    for (const attempt of [2, 3]) {
      await page.locator(`#payment [data-attempt="${attempt}"][data-outcome="failed"]`).waitFor();
    }
    await orderStatus(page, 'failed');
    await page.locator('.summary .badge', { hasText: 'Failed' }).waitFor();
    await page.getByText('Payment failed after every attempt').waitFor();
    await page.locator('#payment[data-payment-status="failed"]').waitFor();
    // The stock shown comes back to five without a reload.
    await page.locator('.stock-now [data-stock="5"]').waitFor();
    await screenshot(page, 'order-failed');

    assert.equal(await page.locator('#payment [data-attempt]').count(), 3);
    assert.equal((await productNow(system, lamp.id)).stock, 5);
    const order = await api(system.url, 'GET', `/orders/${orderIdOf(page)}`, { token });
    assert.equal(order.body.status, 'failed');
    assert.deepEqual(page.problems, []);
  });

  test('while the catalogue service is down the shop says so, and comes back by itself', async () => {
    const page = await newPage(browser, { url: system.url });
    await open(page, system);
    await page.getByRole('heading', { name: 'Products' }).waitFor();
    await system.stop('catalog');
    try {
      await open(page, system, '#/?q=lamp');
      await page.getByRole('heading', { name: 'This part of the shop is unavailable' }).waitFor();
      await page.locator('#banner', { hasText: 'unavailable' }).waitFor();
      await page.getByText(/Trying again in \d+ s/).waitFor();
      await screenshot(page, 'catalogue-unavailable');
    } finally {
      await system.start('catalog');
    }
    // No click and no reload: the page tries again when Retry-After has passed.
    await page.getByRole('heading', { name: 'Results for “lamp”' }).waitFor({ timeout: 40_000 });
    assert.deepEqual(page.problems, []);
  });
});

describe('limits', () => {
  let system;
  before(async () => {
    system = await startSystem({ label: 'limited', env: { THROTTLER_AUTH_LIMIT: 3, THROTTLER_AUTH_TTL: 60_000 } });
  });
  after(() => system?.close());

  test('sign-in attempts over the limit get a countdown, then work again', async () => {
    // Three sign-in calls a minute per address (registering counts on its own).
    const shopper = newShopper('Hasty');
    await registerUser(system, shopper);
    const page = await newPage(browser, { url: system.url });
    await open(page, system, '#/login');
    const button = page.getByRole('button', { name: /^Sign in/ });
    for (let n = 0; n < 3; n += 1) {
      await page.getByLabel('Email').fill(shopper.email);
      await page.getByLabel('Password').fill('not the password');
      await button.click();
      await page.getByText('That email and password do not match an account.').waitFor();
      await page.locator('form .notice').evaluate((element) => element.remove());
    }
    await page.getByLabel('Password').fill('not the password');
    await button.click();
    await page.locator('#banner', { hasText: 'You are going faster than the shop allows' }).waitFor();
    await page.locator('#banner', { hasText: /Try again in \d+ s\./ }).waitFor();
    assert.equal(await button.isDisabled(), true, 'the button should wait out Retry-After');
    assert.match(await button.textContent(), /Sign in \(\d+ s\)/);
    await screenshot(page, 'rate-limited');

    // When the wait is over the button says so, and the right password gets in.
    await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor({ timeout: 40_000 });
    assert.equal(await button.isEnabled(), true);
    await page.getByLabel('Password').fill(shopper.password);
    await button.click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    assert.deepEqual(page.problems, []);
  });
});
