// Live updates: one WebSocket per signed-in page, opened with a one-use ticket (browsers
// cannot set headers on a socket), reopened after any loss with `since` set to the last event
// seen, so nothing published in between is missed.

import { ApiError, accessToken, call, currentUser, isAdmin, session } from './api.js';

const listeners = new Set();
const states = new Set();
let socket = null;
let lastId = null;
let state = 'off'; // off | connecting | live | retrying
let retryDelay = 1000;
let retryTimer = null;
let generation = 0;

function setState(next) {
  state = next;
  for (const listener of states) listener(state);
}

/** `listener(event, id)` for every event; returns the unsubscribe function. */
export function onEvent(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** `listener(state)` now and on every change of the connection's state. */
export function onState(listener) {
  states.add(listener);
  listener(state);
  return () => states.delete(listener);
}

function dispatch(event, id) {
  for (const listener of [...listeners]) {
    try {
      listener(event, id);
    } catch (error) {
      console.error('live listener', error);
    }
  }
}

function scheduleRetry(mine) {
  if (mine !== generation) return;
  setState('retrying');
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => open(mine), retryDelay);
  retryDelay = Math.min(retryDelay * 2, 15000);
}

async function open(mine) {
  if (mine !== generation || !currentUser()) return;
  setState('connecting');
  let ticket;
  try {
    ({ body: { ticket } } = await call('POST', '/ws/ticket'));
  } catch (error) {
    if (error instanceof ApiError && error.retryAfter) retryDelay = error.retryAfter * 1000;
    scheduleRetry(mine);
    return;
  }
  if (mine !== generation) return;
  const query = new URLSearchParams({ ticket });
  if (lastId) query.set('since', lastId);
  if (isAdmin()) query.set('scope', 'all');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
  socket = ws;
  ws.addEventListener('message', (message) => {
    // A socket of an earlier session may still deliver what it had queued: not for this one.
    if (mine !== generation) return;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === 'ready') {
      retryDelay = 1000;
      setState('live');
    } else if (data.type === 'event') {
      lastId = data.id;
      dispatch(data.event, data.id);
    } else if (data.type === 'resync') {
      // Older than what the server keeps: the views read everything again.
      dispatch({ type: 'resync' }, null);
    }
  });
  ws.addEventListener('close', async (closed) => {
    if (socket === ws) socket = null;
    if (mine !== generation) return;
    if (closed.code === 4401) {
      // The token expired or the session ended: a fresh token if this one is at its end (a
      // revoked session shows when the next ticket is refused).
      try {
        await accessToken();
      } catch {
        if (!currentUser()) return;
      }
    }
    scheduleRetry(mine);
  });
}

function restart() {
  generation += 1;
  clearTimeout(retryTimer);
  socket?.close(1000, 'session changed');
  socket = null;
  lastId = null;
  retryDelay = 1000;
  if (currentUser()) {
    // Changes made while the socket was not open yet are read by the views themselves.
    open(generation);
  } else {
    setState('off');
  }
}

let signedInAs = null;
session.addEventListener('change', () => {
  const who = currentUser() ? `${currentUser().id}:${currentUser().role}` : null;
  if (who !== signedInAs) {
    signedInAs = who;
    restart();
  }
});

/** Whether the socket is open and subscribed. */
export function isLive() {
  return state === 'live';
}
