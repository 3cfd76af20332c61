// Accounts in the storefront, with the mail the user service sends read back from an SMTP
// server of the test's own: a forgotten password reset through the mailed link; a visitor's
// cart kept through registration, checked out, paid, and the order mail received; a second
// factor enrolled from the account page and asked for at the next sign-in.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { launch, newPage, screenshot } from '../lib/browser.mjs';
import { linkOf, startMailServer } from '../lib/mail.mjs';
import { addToCart, newShopper, open, orderStatus, signIn } from '../lib/shop.mjs';
import { adminToken, createProduct, registerUser, startSystem } from '../lib/system.mjs';

let mail;
let system;
let browser;

before(async () => {
  mail = await startMailServer();
  system = await startSystem({
    label: 'accounts',
    env: {
      PAYMENT_DURATION: 500,
      PAYMENT_FAILED_PROBABILITY: 0,
      THROTTLER_AUTH_LIMIT: 1000,
      THROTTLER_LIMIT: 100000,
      MAIL_TRANSPORT: 'smtp',
      SMTP_URL: mail.url,
    },
  });
  browser = await launch();
  const admin = await adminToken(system);
  await createProduct(system, admin, { name: 'Pour-over kettle', description: 'Gooseneck, 1 l.', priceCents: 4200, stock: 20 });
});

after(async () => {
  await browser?.close();
  await system?.close();
  await mail?.close();
});

describe('accounts', () => {
  test('forgot password: the mailed link sets a new password, and it signs in', async () => {
    const shopper = newShopper('Grace');
    await registerUser(system, shopper);
    const page = await newPage(browser, { url: system.url });
    await open(page, system, '#/login');
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.getByLabel('Email').fill(shopper.email);
    await page.getByRole('button', { name: 'Send me a link' }).click();
    await page.getByText(`If ${shopper.email} has an account`).waitFor();
    await screenshot(page, 'forgot-password');

    const message = await mail.waitFor(shopper.email, 'Reset your password');
    assert.match(message.html, /href="[^"]*#\/reset-password\?token=/);
    await open(page, system, linkOf(message));
    await page.getByLabel('New password').fill('a much newer password');
    await screenshot(page, 'reset-password');
    await page.getByRole('button', { name: 'Set the password' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await signIn(page, system, { email: shopper.email, password: 'a much newer password' });
    await mail.waitFor(shopper.email, 'Your password was changed');

    // The link works once.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await open(page, system, linkOf(message));
    await page.getByLabel('New password').fill('yet another password');
    await page.getByRole('button', { name: 'Set the password' }).click();
    await page.getByText('This link is used, expired or replaced by a newer one.').waitFor();
    await page.close();
  });

  test("a visitor's cart survives registration, is checked out, paid, and the order is mailed", async () => {
    const shopper = newShopper('Alan');
    const page = await newPage(browser, { url: system.url });
    await open(page, system, '#/');
    await addToCart(page, 'Pour-over kettle', 1);
    await page.getByRole('link', { name: 'Cart (1)' }).click();
    await page.getByRole('button', { name: 'Sign in to place the order' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.getByLabel('Name').fill(shopper.name);
    await page.getByLabel('Email').fill(shopper.email);
    await page.getByLabel('Password').fill(shopper.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    // Back at the cart, signed in, with the visitor's line merged into the account's cart.
    await page.getByRole('button', { name: 'Place order' }).waitFor();
    await page.getByRole('link', { name: 'Cart (1)' }).waitFor();
    await page.getByText('Please verify your email address').waitFor();
    await screenshot(page, 'guest-cart-merged');
    await page.getByRole('button', { name: 'Place order' }).click();
    await orderStatus(page, 'paid');
    const orderId = new URL(page.url()).hash.split('/').pop();

    const paid = await mail.waitFor(shopper.email, 'Your order is paid');
    assert.match(paid.text, /1 × Pour-over kettle at 42\.00 USD/);
    assert.match(paid.text, /Total: 42\.00 USD/);
    assert.ok(paid.text.includes(`#/orders/${orderId}`), paid.text);

    // The verification mail's link clears the banner.
    const verify = await mail.waitFor(shopper.email, 'Verify your email');
    await open(page, system, linkOf(verify));
    await page.getByText('your email address is verified').waitFor();
    await open(page, system, '#/');
    assert.equal(await page.getByText('Please verify your email address').isVisible(), false);
    await page.close();
  });

  test('a second factor enrolled from the account page is asked for at the next sign-in', async () => {
    const shopper = newShopper('Hedy');
    await registerUser(system, shopper);
    const page = await newPage(browser, { url: system.url });
    await signIn(page, system, shopper);
    await open(page, system, '#/account');
    await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
    await page.getByRole('img', { name: 'QR code of the key' }).locator('svg').waitFor();
    const secret = await page.locator('#mfa-secret').textContent();
    await screenshot(page, 'mfa-enrolment');
    await page.getByLabel('Code from the app').fill(totp(secret, 0));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.getByText('On: signing in asks for a code').waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await open(page, system, '#/login');
    await page.getByLabel('Email').fill(shopper.email);
    await page.getByLabel('Password').fill(shopper.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('One-time code').waitFor();
    // The enrolment took this step's code: the next step's is within the window.
    await page.getByLabel('One-time code').fill(totp(secret, 1));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await page.close();
  });
});

/** RFC 6238 (SHA-1, six digits, 30 s) for a base32 secret, `offset` steps from now. */
function totp(base32, offset) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of base32.replace(/=+$/, '').toUpperCase()) {
    bits += alphabet.indexOf(char).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => Number.parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + offset));
  const digest = createHmac('sha1', key).update(counter).digest();
  const at = digest[digest.length - 1] & 0xf;
  const value = (digest.readUInt32BE(at) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, '0');
}
