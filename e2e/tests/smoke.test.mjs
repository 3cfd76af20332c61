// The storefront's first page loads under its Content Security Policy, with a title, and
// without a console error, an uncaught exception or a request leaving the system.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage } from '../lib/browser.mjs';
import { startSystem } from '../lib/system.mjs';

let system;
let browser;

before(async () => {
  system = await startSystem({ label: 'smoke' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await system?.close();
});

test('the storefront opens under its CSP, without problems', async () => {
  const page = await newPage(browser, { url: system.url });
  const response = await page.goto(new URL('/', system.url).href, { waitUntil: 'networkidle' });
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'] ?? '', /default-src 'none'/);
  assert.notEqual(await page.evaluate(() => document.title), '');
  assert.deepEqual(page.problems, []);
});
