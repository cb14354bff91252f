// Memory under churn, as counts rather than bytes: one sender at a time connects through the
// local relay to a RelayedServer, is echoed one message and closes, a thousand times over;
// then everything those connections made must be gone. What is counted returns to its
// value before the cycles whatever their number, so a leak of one object per connection (or
// per few hundred) fails here: the addon's tokio tasks and socket states, the event hub's
// objects and queue, lib/'s registry of native objects, the server's clients, the relay's
// connections and rendezvous, and the process's active handles and requests. After the
// server and the relay close, the native counts must all be zero.
//
// Every wait is bounded. The waits for the counts to come back are polls (nothing emits an
// event for "a task ended"), bounded at 5 s: below the 10 s for which the listener keeps a
// spare connection, so that state held for that long after each connection (as the spare's
// expiry task was, before it ended with the spare) fails the test instead of ageing out
// while it waits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import {
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  RelayedServer,
  startLocalRelay
} from 'hyco-ws-rs';

import { STEP_MS, nextEvent, waitUntil, withTimeout } from './support/relay-steps.mjs';

const require = createRequire(import.meta.url);
const { native, targetCount } = require('../lib/native-events.js');

const CYCLES = 1000;
const WARMUP = 20;
const SETTLE_MS = 5000;

/**
 * What may stay above the count before the cycles, at most, whatever their number: the
 * listener's spare connection (a task in the listener, one in the relay) may be there at
 * the end and not yet at the start. Every other count must come back exactly.
 */
const SLACK = { tasks: 2 };

/**
 * Everything counted, now.
 *
 * @param {import('hyco-ws-rs').LocalRelay} relay The relay
 * @param {import('hyco-ws-rs').RelayedServer} server The listener
 * @return {Object<string, number>} The counts, by name
 */
function counts(relay, server) {
  const live = native.liveCounts();
  const stats = relay.stats();
  return {
    tasks: live.tasks,
    sockets: live.sockets,
    hubTargets: live.targets,
    hubQueued: live.queued,
    jsTargets: targetCount(),
    clients: server.clients.size,
    relayConnections: stats.connections,
    relayPendingAccepts: stats.pendingAccepts,
    relayBufferedBytes: stats.bufferedBytes,
    activeResources: process.getActiveResourcesInfo().length
  };
}

/**
 * The counts that are above `limit` (plus their slack), as `name: now > limit` strings.
 *
 * @param {Object<string, number>} now The counts now
 * @param {Object<string, number>} limit The counts they may not exceed
 * @param {Object<string, number>} [slack] What each may exceed it by
 * @return {string[]} The excesses; empty when there are none
 */
function excess(now, limit, slack = {}) {
  return Object.keys(limit)
    .filter((k) => now[k] > limit[k] + (slack[k] || 0))
    .map((k) => `${k}: ${now[k]} > ${limit[k]}${slack[k] ? ` + ${slack[k]}` : ''}`);
}

/**
 * One cycle: a `relayedConnect` sender that must be echoed `m<n>` and then closes, or, for
 * a refused sender, that must fail with `status` and close.
 *
 * @param {{ uri: string, token: string }} to The send address and its token
 * @param {number} n The cycle's number
 * @param {?number} status The status the sender must be refused with; `null`: accepted
 * @return {Promise<void>}
 */
function cycle(to, n, status) {
  const ws = relayedConnect(to.uri, to.token);
  const done = new Promise((resolve, reject) => {
    let error = null;
    ws.on('error', (err) => {
      error = err;
    });
    ws.on('open', () => ws.send(`m${n}`));
    ws.on('message', (data) => {
      if (String(data) === `m${n}`) ws.close(1000);
      else reject(new Error(`cycle ${n}: echo ${data}`));
    });
    ws.on('close', (code) => {
      if (status === null && code === 1000) resolve();
      else if (status !== null && error && error.statusCode === status) resolve();
      else reject(new Error(`cycle ${n}: closed ${code} after ${error ? error.message : 'no error'}`));
    });
  });
  return withTimeout(done, STEP_MS, `cycle ${n}`);
}

/**
 * Runs `WARMUP` cycles, takes the counts, runs `CYCLES` more, and checks that the counts
 * come back; then closes the server and the relay, and checks that the native counts are
 * zero.
 *
 * @param {Object} options The server's options, beside its address and token
 * @param {?number} status As `cycle`'s
 * @return {Promise<void>}
 */
async function churn(options, status) {
  assert.deepEqual(
    excess(native.liveCounts(), { tasks: 0, sockets: 0, targets: 0, queued: 0 }),
    [],
    'native objects are alive before the test (left by an earlier test in this file)'
  );
  const relay = await startLocalRelay({ hybridConnections: ['hc'] });
  let server = null;
  try {
    const listenUri = createRelayListenUri(relay.namespace, 'hc');
    server = new RelayedServer({
      server: listenUri,
      token: () => createRelayToken(listenUri, relay.keyName, relay.key),
      ...options
    });
    server.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
    await nextEvent(server, 'listening', STEP_MS, 'the server');
    const uri = createRelaySendUri(relay.namespace, 'hc');
    const to = { uri, token: createRelayToken(uri, relay.keyName, relay.key) };

    for (let n = 0; n < WARMUP; n++) await cycle(to, n, status);
    const idle = { clients: 0, relayConnections: 0, relayPendingAccepts: 0, hubQueued: 0 };
    await waitUntil(() => excess(counts(relay, server), idle).length === 0, SETTLE_MS, () => {
      return `the warm-up's connections to end: ${excess(counts(relay, server), idle).join(', ')}`;
    });
    const before = counts(relay, server);

    for (let n = WARMUP; n < WARMUP + CYCLES; n++) await cycle(to, n, status);
    await waitUntil(() => excess(counts(relay, server), before, SLACK).length === 0, SETTLE_MS, () => {
      return `the counts to come back after ${CYCLES} cycles: ${excess(counts(relay, server), before, SLACK).join(', ')}`;
    });
  } finally {
    if (server) await withTimeout(new Promise((resolve) => server.close(resolve)), STEP_MS, 'the server to close');
    await relay.close();
  }
  const zero = { tasks: 0, sockets: 0, targets: 0, queued: 0 };
  await waitUntil(() => excess(native.liveCounts(), zero).length === 0, SETTLE_MS, () => {
    return `every native object to go once all is closed: ${excess(native.liveCounts(), zero).join(', ')}`;
  });
  assert.equal(targetCount(), 0, "lib/'s registry of native objects");
}

test(`accepted by the listener itself (the default): ${CYCLES} cycles leave nothing behind`, async () => {
  await churn({}, null);
});

test(`accepted after verifyClient: ${CYCLES} cycles leave nothing behind`, async () => {
  await churn({ verifyClient: () => true }, null);
});

test(`refused by verifyClient: ${CYCLES} cycles leave nothing behind`, async () => {
  await churn({ verifyClient: () => false }, 401);
});
