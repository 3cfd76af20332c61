// The system under test: `shop-system` (crates/proof/src/bin/shop-system.rs) as a child
// process, driven over its stdin, and a few calls of the public API to seed data with.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository's root. */
export const root = fileURLToPath(new URL('../../', import.meta.url));

const READY_TIMEOUT_MS = 120_000;
const EXIT_TIMEOUT_MS = 30_000;
const STDERR_LIMIT = 8_000;

/**
 * Starts the whole system (five processes, a database and a redis-server of its own) and
 * waits until it is ready. `env` configures every process (`{ PAYMENT_FAILED_PROBABILITY: 100 }`).
 */
export async function startSystem({ label = 'e2e', env = {} } = {}) {
  const binDir = path.resolve(root, process.env.SHOP_BIN_DIR ?? 'target/debug');
  const args = ['--label', label, '--bin-dir', binDir, ...pairs(env)];
  const child = spawn(path.join(binDir, 'shop-system'), args, {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // A write after the system has ended fails here; the end itself is reported by `exited`.
  child.stdin.on('error', () => {});
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    if (stderr.length < STDERR_LIMIT) stderr = (stderr + chunk).slice(0, STDERR_LIMIT);
  });
  // Never outlive a crashed test process: the system shuts down on SIGTERM (or stdin's end).
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  process.on('exit', onExit);
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      process.off('exit', onExit);
      resolve({ code, signal });
    });
  });
  const failure = (what) => new Error(`shop-system: ${what}${stderr ? `\n${stderr}` : ''}`);

  // The first line says the system is ready; every later one answers a command, in order.
  const answers = [];
  let started = false;
  const lines = createInterface({ input: child.stdout });
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(failure(`not ready within ${READY_TIMEOUT_MS / 1000} s`));
    }, READY_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(failure(`cannot start ${child.spawnfile}: ${error.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(failure(`exited (${signal ?? code}) before it was ready`));
      for (const answer of answers.splice(0)) {
        answer.reject(failure(`${answer.command}: exited (${signal ?? code})`));
      }
    });
    lines.on('line', (line) => {
      if (!started) {
        started = true;
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line));
        } catch {
          reject(failure(`unexpected first line ${JSON.stringify(line)}`));
        }
        return;
      }
      const answer = answers.shift();
      if (!answer) return;
      if (line === 'ok') answer.resolve();
      else answer.reject(new Error(`shop-system: ${answer.command}: ${line}`));
    });
  });

  const command = (text) =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null || !child.stdin.writable) {
        reject(failure(`${text}: the system has ended`));
        return;
      }
      answers.push({ command: text, resolve, reject });
      child.stdin.write(`${text}\n`);
    });

  return {
    url: info.gateway,
    admin: info.admin,
    database: info.database,
    logs: info.logs,
    /** SIGTERM to one process (`user`, `catalog`, `order`, `payment`, `gateway`). */
    stop: (name) => command(`stop ${name}`),
    /** SIGKILL to one process. */
    kill: (name) => command(`kill ${name}`),
    /** Starts one process again, with `env` over its configuration, and waits until ready. */
    start: (name, env = {}) => command(['start', name, ...pairs(env)].join(' ')),
    /** Stops everything and drops the database; SIGKILL if that takes over 30 s. */
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.stdin.end();
      const timeout = setTimeout(() => child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
      const { code, signal } = await exited.finally(() => clearTimeout(timeout));
      if (code !== 0) throw failure(`ended with ${signal ?? code}`);
    },
  };
}

function pairs(env) {
  return Object.entries(env).map(([key, value]) => {
    const pair = `${key}=${value}`;
    if (/\s/.test(pair)) throw new Error(`${pair}: no spaces in the system's configuration`);
    return pair;
  });
}

/** One call of the gateway's API: `{ status, body, headers }`, the body parsed if JSON. */
export async function api(url, method, path, { token, body, headers = {} } = {}) {
  const request = { method, headers: new Headers({ accept: 'application/json', ...headers }) };
  if (token) request.headers.set('authorization', `Bearer ${token}`);
  if (body !== undefined) {
    if (!request.headers.has('content-type')) {
      request.headers.set('content-type', 'application/json');
    }
    request.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const response = await fetch(new URL(path, url), request);
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: the text as it came.
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

function expect(response, status, what) {
  if (response.status !== status) {
    throw new Error(`${what}: ${response.status} ${JSON.stringify(response.body)}`);
  }
  return response.body;
}

/** An access token of the system's administrator. */
export async function adminToken(system) {
  return loginToken(system, system.admin.email, system.admin.password);
}

/** An access token of `email`. */
export async function loginToken(system, email, password) {
  const response = await api(system.url, 'POST', '/login', { body: { email, password } });
  return expect(response, 200, `login of ${email}`).accessToken;
}

/** Creates a product as an administrator; the product as the API answers it. */
export async function createProduct(system, token, { name, description, priceCents, stock }) {
  const response = await api(system.url, 'POST', '/products', {
    token,
    body: { name, description, priceCents, stock },
  });
  return expect(response, 201, `creating ${name}`);
}

/** Registers a shopper; the account as the API answers it. */
export async function registerUser(system, { email, password, name }) {
  const response = await api(system.url, 'POST', '/register', { body: { email, password, name } });
  return expect(response, 201, `registration of ${email}`);
}
