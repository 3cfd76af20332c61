// What a person does in the storefront, as steps the tests share, and the API calls that set
// the scene or check what the page claims.

import assert from 'node:assert/strict';

import { newPage } from './browser.mjs';
import { api, loginToken, registerUser } from './system.mjs';

let counter = 0;

/** A fresh account's details. */
export function newShopper(name = 'Shopper') {
  counter += 1;
  const tag = `${Date.now().toString(36)}${counter}${Math.random().toString(36).slice(2, 6)}`;
  return { name, email: `${name.toLowerCase().replace(/\W+/g, '-')}-${tag}@example.com`, password: 'correct horse battery' };
}

/** Opens the storefront at `hash` (`#/cart`) and waits for its first view. */
export async function open(page, system, hash = '#/') {
  await page.goto(new URL(`/${hash}`, system.url).href);
  await page.locator('#main > *:not(.loading)').first().waitFor();
}

/** Signs in through the form, and waits until the header says so. */
export async function signIn(page, system, { email, password }) {
  await open(page, system, '#/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Creates an account through the form (which signs in too). */
export async function register(page, system, shopper) {
  await open(page, system, '#/register');
  await page.getByLabel('Name').fill(shopper.name);
  await page.getByLabel('Email').fill(shopper.email);
  await page.getByLabel('Password').fill(shopper.password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Searches from the header. */
export async function search(page, text) {
  const box = page.getByLabel('Search products');
  await box.fill(text);
  await box.press('Enter');
  await page.getByRole('heading', { name: `Results for “${text}”` }).waitFor();
}

/** Adds a product from the list, and waits for the cart count to reach `expected`. */
export async function addToCart(page, name, expected) {
  await page.getByRole('button', { name: `Add ${name} to cart` }).click();
  await page.locator(`[data-cart-count="${expected}"]`).waitFor();
}

/** Waits until the order page shows `status` (the page marks the body with it). */
export async function orderStatus(page, status, timeout = 30_000) {
  await page.locator(`body[data-order-status="${status}"]`).waitFor({ timeout });
}

/** The order id of the order page on screen. */
export function orderIdOf(page) {
  const match = /#\/orders\/([0-9a-f-]{36})/.exec(page.url());
  assert.ok(match, `not on an order page: ${page.url()}`);
  return match[1];
}

/** Everything `token`'s user has ordered, whatever the status. */
export async function ordersOf(system, token) {
  const all = [];
  for (const status of ['reserving', 'pending', 'paid', 'failed', 'cancelled', 'shipped', 'delivered', 'refunded']) {
    const { status: code, body } = await api(system.url, 'GET', `/orders?status=${status}&limit=100`, { token });
    assert.equal(code, 200, JSON.stringify(body));
    all.push(...body.items);
  }
  return all;
}

/** A product as the API has it now. */
export async function productNow(system, id) {
  const { status, body } = await api(system.url, 'GET', `/products/${id}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** Sets a line of `token`'s cart through the API. */
export async function putInCart(system, token, productId, quantity) {
  const { status, body } = await api(system.url, 'PUT', `/cart/items/${productId}`, { token, body: { quantity } });
  assert.equal(status, 200, JSON.stringify(body));
}

/**
 * A new shopper, registered through the API, with `lines` (`[[productId, quantity], …]`) in
 * the cart: `{ shopper, token }`.
 */
export async function shopperWithCart(system, name, lines = []) {
  const shopper = newShopper(name);
  await registerUser(system, shopper);
  const token = await loginToken(system, shopper.email, shopper.password);
  for (const [productId, quantity] of lines) await putInCart(system, token, productId, quantity);
  return { shopper, token };
}

/** A new page where `shopper` has signed in and looks at the cart. */
export async function atCart(browser, system, shopper) {
  const page = await newPage(browser, { url: system.url });
  await signIn(page, system, shopper);
  await open(page, system, '#/cart');
  return page;
}

/** A shipping address (`ShippingAddress`) in `name`'s name. */
export function newAddress(name = 'Ada Lovelace') {
  return { name, line1: '12 rue de la Paix', city: 'Paris', postalCode: '75002', country: 'FR' };
}

/** Makes `address` the default shipping address of `token`'s user, through the API. */
export async function setDefaultAddress(system, token, address) {
  const { status, body } = await api(system.url, 'PUT', '/me/address', { token, body: address });
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** Types `address` into the cart page's shipping address form (optional parts left empty). */
export async function fillAddress(page, address) {
  const form = page.locator('#address');
  await form.getByLabel('Full name').fill(address.name);
  await form.getByLabel('Address', { exact: true }).fill(address.line1);
  await form.getByLabel('Address line 2 (optional)').fill(address.line2 ?? '');
  await form.getByLabel('Postal code').fill(address.postalCode);
  await form.getByLabel('City').fill(address.city);
  await form.getByLabel('State, province or region (optional)').fill(address.region ?? '');
  await form.getByLabel('Country').selectOption(address.country);
  await form.getByLabel('Phone (optional)').fill(address.phone ?? '');
}

/** Polls until `check()` is truthy (for state the page does not show). */
export async function eventually(check, what, timeout = 30_000) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** No element wider than the screen, and every form control labelled. */
export async function assertReadable(page, where) {
  const { overflow, unlabelled } = await page.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    unlabelled: [...document.querySelectorAll('input, select, textarea')]
      .filter((control) => control.type !== 'hidden')
      .filter((control) => !control.labels?.length && !control.getAttribute('aria-label'))
      .map((control) => control.outerHTML),
  }));
  assert.equal(overflow, 0, `${where}: the page is ${overflow}px wider than the screen`);
  assert.deepEqual(unlabelled, [], `${where}: form controls without a label`);
}
