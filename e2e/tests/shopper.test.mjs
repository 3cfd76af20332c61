// A shopper's way through the storefront, on a system whose payments succeed after 1.5 s:
// register, sign in, search, fill the cart, check out, and watch the order turn paid live;
// a double click and a lost answer each still make one order; phone width and keyboard use.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, newPage, screenshot } from '../lib/browser.mjs';
import {
  addToCart, assertReadable, atCart, newAddress, open, orderIdOf, orderStatus, ordersOf, newShopper,
  productNow, register, search, setDefaultAddress, shopperWithCart, signIn,
} from '../lib/shop.mjs';
import { adminToken, api, createProduct, loginToken, registerUser, startSystem } from '../lib/system.mjs';

let system;
let browser;
let admin;
const products = {};

before(async () => {
  system = await startSystem({
    label: 'shopper',
    env: { PAYMENT_DURATION: 1500, PAYMENT_FAILED_PROBABILITY: 0, THROTTLER_AUTH_LIMIT: 1000, THROTTLER_LIMIT: 100000 },
  });
  browser = await launch();
  admin = await adminToken(system);
  const catalogue = [
    ['cup', { name: 'Espresso cup', description: 'Porcelain, 80 ml.', priceCents: 890, stock: 40 }],
    ['jug', { name: 'Milk jug', description: 'Steel, 350 ml.', priceCents: 1450, stock: 30 }],
    ['towel', { name: 'Tea towel', description: 'Linen.', priceCents: 700, stock: 0 }],
  ];
  for (const [key, product] of catalogue) products[key] = await createProduct(system, admin, product);
  // Enough to fill more than one page of twelve.
  for (let n = 1; n <= 12; n += 1) {
    await createProduct(system, admin, { name: `Spoon no. ${n}`, description: 'Teaspoon.', priceCents: 300 + n, stock: 50 });
  }
});

after(async () => {
  await browser?.close();
  await system?.close();
});

describe('shopper', () => {
  test('register, sign in, search, order two products, and the order turns paid live', async () => {
    const page = await newPage(browser, { url: system.url });
    const shopper = newShopper('Ada');

    await open(page, system);
    await page.getByText('Page 1 of 2').waitFor();
    await screenshot(page, 'catalogue');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByText('Page 2 of 2').waitFor();
    const soldOut = page.getByRole('button', { name: 'Tea towel is out of stock' });
    assert.equal(await soldOut.isDisabled(), true);
    await page.getByLabel('In stock only').check();
    // The cup, the jug and twelve spoons are in stock; the towel is not.
    await page.getByText('14 products', { exact: true }).waitFor();
    assert.equal(await soldOut.count(), 0, 'the in-stock filter shows a sold-out product');

    await register(page, system, shopper);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await signIn(page, system, shopper);

    await search(page, 'espresso');
    assert.equal(await page.locator('.card').count(), 1);
    await addToCart(page, 'Espresso cup', 1);
    await search(page, 'jug');
    await addToCart(page, 'Milk jug', 2);

    await page.getByRole('link', { name: 'Cart (2)' }).click();
    await page.getByRole('button', { name: 'Place order' }).waitFor();
    await page.getByLabel('Quantity of Espresso cup').fill('2');
    await page.getByLabel('Quantity of Espresso cup').press('Tab');
    await page.locator('#cart-total', { hasText: '$32.30' }).waitFor();
    await screenshot(page, 'cart');

    // A marker that a reload would lose.
    await page.evaluate(() => { window.stillThisPage = true; });
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    await orderStatus(page, 'pending');
    await page.locator('.summary .badge', { hasText: 'Awaiting payment' }).waitFor();
    await screenshot(page, 'order-pending');

    await orderStatus(page, 'paid');
    await page.locator('.summary .badge', { hasText: 'Paid' }).waitFor();
    await page.locator('#activity [data-event="order.paid"]').waitFor();
    await page.locator('#payment [data-attempt="1"][data-outcome="succeeded"]').waitFor();
    assert.equal(await page.evaluate(() => window.stillThisPage), true, 'the page was reloaded');
    await screenshot(page, 'order-paid');

    const token = await loginToken(system, shopper.email, shopper.password);
    const orders = await ordersOf(system, token);
    assert.equal(orders.length, 1);
    assert.equal(orders[0].id, orderIdOf(page));
    assert.equal(orders[0].status, 'paid');
    assert.equal(orders[0].totalCents, 2 * 890 + 1450);
    assert.deepEqual(page.problems, []);
  });

  test('two quick clicks on checkout place one order', async () => {
    const { shopper, token } = await shopperWithCart(system, 'Quick', [[products.cup.id, 1]]);
    const page = await atCart(browser, system, shopper);
    await page.getByRole('button', { name: 'Place order' }).dblclick();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    await orderStatus(page, 'paid');
    const orders = await ordersOf(system, token);
    assert.equal(orders.length, 1, JSON.stringify(orders));
    assert.deepEqual(page.problems, []);
  });

  test('a checkout whose answer is lost is tried again and still makes one order', async () => {
    const { shopper, token } = await shopperWithCart(system, 'Lost', [[products.jug.id, 1]]);
    const page = await atCart(browser, system, shopper);

    // The first checkout reaches the server and places the order; its answer never arrives.
    let lost = 0;
    await page.route('**/cart/checkout', async (route) => {
      if (lost === 0) {
        lost += 1;
        await route.fetch();
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.locator('#banner', { hasText: 'could not reach the shop' }).waitFor();
    assert.equal(lost, 1);
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    const orders = await ordersOf(system, token);
    assert.equal(orders.length, 1, JSON.stringify(orders));
    assert.equal(orders[0].id, orderIdOf(page));
    const problems = page.problems.filter((p) => !/ERR_CONNECTION_RESET|ERR_FAILED/.test(p));
    assert.deepEqual(problems, []);
  });

  test('a cart line beyond the stock is flagged and cannot be ordered', async () => {
    const scarce = await createProduct(system, admin, { name: 'Rare teapot', description: 'One of a few.', priceCents: 9900, stock: 2 });
    const { shopper } = await shopperWithCart(system, 'Greedy', [[scarce.id, 3]]);
    const page = await atCart(browser, system, shopper);
    await page.getByText('Only 2 left').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Place order' }).isDisabled(), true);
    await page.getByLabel('Quantity of Rare teapot').fill('2');
    await page.getByLabel('Quantity of Rare teapot').press('Tab');
    await page.locator('#cart-total', { hasText: '$198.00' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Place order' }).isEnabled(), true);
    assert.equal((await productNow(system, scarce.id)).stock, 2);
    assert.deepEqual(page.problems, []);
  });

  test('a checkout refused for stock says what is left, and succeeds once the stock is back', async () => {
    const kettle = await createProduct(system, admin, { name: 'Stovetop kettle', description: 'Enamel.', priceCents: 3900, stock: 2 });
    const { shopper, token } = await shopperWithCart(system, 'Unlucky', [[kettle.id, 2]]);
    const page = await atCart(browser, system, shopper);
    await page.getByRole('button', { name: 'Place order' }).waitFor();

    // Someone else takes one while the shopper looks at the cart.
    const adjust = (delta) => api(system.url, 'POST', `/products/${kettle.id}/stock-adjustments`, { token: admin, body: { delta, reason: 'e2e' } });
    assert.equal((await adjust(-1)).status, 200);
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.getByText('Only 1 of one product are left').waitFor();
    await page.getByText('Only 1 left').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Place order' }).isDisabled(), true);
    await screenshot(page, 'cart-short');
    assert.equal((await productNow(system, kettle.id)).stock, 1);

    // The stock comes back: the refusal is not replayed, the next checkout is a new one.
    assert.equal((await adjust(1)).status, 200);
    await open(page, system, '#/orders');
    await open(page, system, '#/cart');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
    await orderStatus(page, 'paid');
    const placed = (await ordersOf(system, token)).filter((order) => order.status !== 'failed');
    assert.equal(placed.length, 1, JSON.stringify(placed));
    assert.equal((await productNow(system, kettle.id)).stock, 0);
    assert.deepEqual(page.problems, []);
  });

  test('at phone width every page fits the screen and every field has a label', async () => {
    const { shopper } = await shopperWithCart(system, 'Phone', [[products.cup.id, 1]]);
    const page = await newPage(browser, { url: system.url, viewport: { width: 390, height: 844 } });
    await open(page, system);
    await assertReadable(page, 'catalogue');
    await open(page, system, '#/register');
    await assertReadable(page, 'register');
    await signIn(page, system, shopper);
    await assertReadable(page, 'sign in');
    await open(page, system, `#/products/${products.jug.id}`);
    await assertReadable(page, 'product');
    await open(page, system, '#/cart');
    await page.getByRole('button', { name: 'Place order' }).waitFor();
    await assertReadable(page, 'cart');
    await page.getByRole('button', { name: 'Place order' }).click();
    await orderStatus(page, 'paid');
    await assertReadable(page, 'order');
    await screenshot(page, 'phone-order');
    assert.deepEqual(page.problems, []);
  });

  test('signing in and ordering work from the keyboard alone', async () => {
    const shopper = newShopper('Keys');
    await registerUser(system, shopper);
    const page = await newPage(browser, { url: system.url });
    await open(page, system, '#/login');
    // The skip link, first in the page, takes the keyboard past the header to the content.
    const first = await page.evaluate(() => document.querySelector('a, button, input, select, textarea').textContent);
    assert.equal(first, 'Skip to content');
    await page.locator('.skip').focus();
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
    // The sign-in form puts the cursor in its first field.
    await page.getByLabel('Email').focus();
    await page.keyboard.type(shopper.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(shopper.password);
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();

    await open(page, system, `#/products/${products.cup.id}`);
    await page.getByLabel('Quantity').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Add Espresso cup to cart');
    await page.keyboard.press('Enter');
    await page.locator('[data-cart-count="1"]').waitFor();
    await open(page, system, '#/cart');
    await page.getByRole('button', { name: 'Place order' }).focus();
    await page.keyboard.press('Enter');
    await orderStatus(page, 'paid');
    assert.deepEqual(page.problems, []);
  });

  test('admins: a conflicting edit is shown and merged, stock adjusted, an order shipped and delivered', async () => {
    // A second administrator, made one by the first.
    const other = newShopper('Second admin');
    const account = await registerUser(system, other);
    const promoted = await api(system.url, 'PATCH', `/users/${account.id}`, { token: admin, body: { role: 'admin' } });
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body));

    const product = await createProduct(system, admin, { name: 'French press', description: 'Glass, 1 l.', priceCents: 3200, stock: 12 });
    const mine = await newPage(browser, { url: system.url });
    await signIn(mine, system, system.admin);
    await open(mine, system, `#/admin/products/${product.id}`);
    await mine.getByLabel('Price').waitFor();

    const theirs = await newPage(browser, { url: system.url });
    await signIn(theirs, system, other);
    await open(theirs, system, `#/admin/products/${product.id}`);
    await theirs.getByLabel('Description').fill('Borosilicate glass, 1 l.');
    await theirs.getByRole('button', { name: 'Save changes' }).click();
    await theirs.getByText('Saved.', { exact: true }).waitFor();

    await mine.getByLabel('Price').fill('29.90');
    await mine.getByRole('button', { name: 'Save changes' }).click();
    await mine.locator('#conflict').waitFor();
    await mine.locator('#conflict', { hasText: 'Borosilicate glass, 1 l.' }).waitFor();
    await screenshot(mine, 'admin-conflict');
    assert.equal((await productNow(system, product.id)).priceCents, 3200, 'the conflicting save was written');
    await mine.getByRole('button', { name: 'Merge both and save' }).click();
    await mine.getByText('Saved.', { exact: true }).waitFor();
    const merged = await productNow(system, product.id);
    assert.equal(merged.priceCents, 2990);
    assert.equal(merged.description, 'Borosilicate glass, 1 l.');
    assert.equal(merged.version, 3);

    // Stock: never below zero, and an adjustment shows at once.
    await mine.getByLabel('Change').fill('-100');
    await mine.getByLabel('Reason').fill('stocktake');
    await mine.getByRole('button', { name: 'Adjust stock' }).click();
    await mine.getByText('below zero: only 12 on hand').waitFor();
    await mine.getByLabel('Change').fill('8');
    await mine.getByRole('button', { name: 'Adjust stock' }).click();
    await mine.getByText('Stock is now 20.').waitFor();
    assert.equal((await productNow(system, product.id)).stock, 20);

    // A paid order moves on, and its owner's page follows. Only an order with an address can
    // be shipped: the shopper's default one, which the cart's form offers and checkout sends.
    const { shopper, token: waiting } = await shopperWithCart(system, 'Waiting', [[product.id, 1]]);
    await setDefaultAddress(system, waiting, newAddress('Wanda Waiting'));
    const owner = await atCart(browser, system, shopper);
    await owner.getByRole('button', { name: 'Place order' }).click();
    await orderStatus(owner, 'paid');
    const id = orderIdOf(owner);

    await open(mine, system, '#/admin/orders');
    const row = mine.locator(`tr[data-order-id="${id}"]`);
    await row.getByRole('button', { name: /shipped$/ }).click();
    await row.getByRole('button', { name: /delivered$/ }).waitFor();
    await orderStatus(owner, 'shipped');
    await screenshot(mine, 'admin-orders');
    await row.getByRole('button', { name: /delivered$/ }).click();
    await orderStatus(owner, 'delivered');
    await screenshot(owner, 'order-delivered');
    for (const page of [mine, theirs, owner]) assert.deepEqual(page.problems, []);
  });
});
