// Debian's Chromium, headless, driven by playwright-core (no browser download), and pages that
// collect what a shopper would never see: console errors, uncaught exceptions, Content
// Security Policy violations and requests leaving the system's origin.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { root } from './system.mjs';

/** A headless Chromium: `$CHROMIUM`, else Debian's. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

const HTTP_ERROR = /^Failed to load resource: the server responded with a status of (4\d\d|503)\b/;
const CSP = /content[- ]security[- ]policy|trusted ?(types?|html|script)/i;

/**
 * A page in a context of its own. `url` is the system's (the gateway's): a request to any other
 * origin is aborted and recorded. `page.problems` lists everything that went wrong, as text.
 */
export async function newPage(browser, { url, viewport = { width: 1280, height: 800 } } = {}) {
  if (!url) throw new Error('newPage: pass the gateway url');
  const origin = new URL(url).origin;
  const context = await browser.newContext({ viewport });
  const problems = [];
  await context.route('**/*', (route) => {
    const requested = new URL(route.request().url());
    if (requested.origin === origin || ['data:', 'blob:'].includes(requested.protocol)) {
      return route.continue();
    }
    problems.push(`request to another origin: ${route.request().method()} ${requested.href}`);
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  page.problems = problems;
  // What the API answered with an error status: the app handles those (and the tests check
  // what it shows), so they are kept apart from the problems.
  page.httpErrors = [];
  page.on('console', (message) => {
    if (HTTP_ERROR.test(message.text())) {
      page.httpErrors.push(message.text());
    } else if (CSP.test(message.text())) {
      problems.push(`CSP violation: ${message.text()}`);
    } else if (message.type() === 'error') {
      const { url: source, lineNumber } = message.location();
      const where = source ? ` (${source}:${lineNumber})` : '';
      problems.push(`console error: ${message.text()}${where}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.stack ?? error.message}`));
  return page;
}

/**
 * Saves a full-page screenshot as `<dir>/<name>.png` and returns its path; the directory is
 * `$E2E_SCREENSHOTS` (relative to the repository's root), else target/e2e/screenshots.
 */
export async function screenshot(page, name) {
  const dir = path.resolve(root, process.env.E2E_SCREENSHOTS ?? 'target/e2e/screenshots');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  // A passing confirmation would sit in the middle of a full-page picture: it goes early.
  await page.evaluate(() => document.getElementById('toast')?.replaceChildren());
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
