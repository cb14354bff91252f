'use strict';

/**
 * One end of `bench/deflate.js`, alone in a child process so that its CPU time, event-loop
 * utilisation and memory count that end and nothing else.
 *
 * Usage: started by bench/deflate.js as
 *   child_process.fork('bench/support/deflate-peer.js', [role, kind], { execArgv: ['--expose-gc'] })
 * with `role` `listener` or `sender`, and `kind` `rs` (hyco-ws-rs: `RelayedServer` with
 * `perMessageDeflate: true`, `relayedConnect` with its default offer) or `ws` (ws 8 at both
 * ends: a hand-written listener whose accept socket is `new WebSocket(accept.address, {
 * perMessageDeflate: { clientMaxWindowBits: false } })`, which sends `permessage-deflate`,
 * an answer the relay passes back to the sender; and a sender `new WebSocket(sendUri, {
 * headers: { ServiceBusAuthorization } })`, ws's default offer). With
 * `HYCO_BENCH_DEFLATE_LEVEL=n`, every end compresses at level `n` (else zlib's default, 6, as
 * ws). Not meant to be run by hand.
 *
 * IPC: every request `{ id, op, ...args }` gets `{ id, result }` or `{ id, error }`.
 *   - `start { relay }`: the listener goes online (echoing every message with its binary
 *     flag, compressed as its socket decides), or the sender notes the relay.
 *   - `open { count, size }` (sender): opens `count` connections in batches of 50, each
 *     sends a message of `size` bytes once and waits for its echo; they stay open. Answers
 *     `{ open }`.
 *   - `throughput { size, count, window, seed }` (sender): on a fresh connection, `count`
 *     JSON-like text messages of `size` bytes, at most `window` unanswered; answers the time,
 *     this process's CPU time and the bytes echoed.
 *   - `rate { size, perSecond, seconds }` (sender): the same at a fixed rate (one timer tick
 *     every 10 ms sends its share), measuring this process's event-loop utilisation.
 *   - `usage {}`: `{ cpuUs, elu, memory, after, open }`: CPU time so far (µs), event-loop
 *     utilisation counters, `process.memoryUsage()` after collecting garbage, the CPU time
 *     and counters again after it (`after`: where the next window starts), open connections.
 *   - `close {}`: closes everything; the process then ends by itself.
 */

const { performance } = require('perf_hooks');

const {
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  RelayedServer,
  WebSocket
} = require('../..');
const { closeAll, inBatches, serve, usage, wsListener } = require('./peers');
const { opened, withTimeout } = require('./run');

const [role, kind] = process.argv.slice(2);
const ENTITY = kind === 'rs' ? 'bench-rs' : 'bench-ws';
const STEP_MS = 20000;
const OPEN_BATCH = 50;
/**
 * `HYCO_BENCH_DEFLATE_LEVEL`: a compression level for both kinds' both ends
 * (`zlibDeflateOptions.level`); unset, zlib's default (6), as ws.
 */
const LEVEL = process.env.HYCO_BENCH_DEFLATE_LEVEL;
const ZLIB = LEVEL === undefined || LEVEL === '' ? {} : { zlibDeflateOptions: { level: Number(LEVEL) } };

let relay = null;
let server = null;
let control = null;
const sockets = new Set();

/**
 * JSON-like text of `n` bytes: objects of a few fields, different for each `seed`, as an
 * application's messages are (repetitive keys, varied values).
 *
 * @param {Number} n Bytes
 * @param {Number} seed Variation
 * @return {String} The text
 */
function jsonText(n, seed) {
  const parts = [];
  let size = 1;
  let x = seed * 2654435761 + 1;
  for (let i = 0; size < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const item = JSON.stringify({
      id: (seed * 100000 + i) % 1000003,
      user: `user-${x % 10007}`,
      email: `u${x % 9973}@example.com`,
      active: x % 3 === 0,
      score: (x % 100000) / 100,
      tags: ['alpha', 'beta', 'gamma'].slice(0, 1 + (x % 3))
    });
    parts.push(item);
    size += item.length + 1;
  }
  return `[${parts.join(',')}]`.slice(0, n);
}

/**
 * Echoes every message of `ws` back.
 *
 * @param {WebSocket} ws A socket
 */
function echo(ws) {
  sockets.add(ws);
  ws.on('message', (data, isBinary) => {
    if (ws.readyState === ws.OPEN) ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
  ws.on('close', () => sockets.delete(ws));
}

/**
 * Starts the listener of this process's kind and resolves once it is online.
 *
 * @return {Promise<void>}
 */
async function startListener() {
  const uri = createRelayListenUri(relay.namespace, ENTITY);
  const token = () => createRelayToken(uri, relay.keyName, relay.key);
  if (kind === 'rs') {
    server = new RelayedServer({ server: uri, token, perMessageDeflate: { ...ZLIB } });
    server.on('connection', echo);
    await withTimeout(new Promise((resolve) => server.once('listening', resolve)), STEP_MS, 'RelayedServer to listen');
    return;
  }
  const options = { perMessageDeflate: { clientMaxWindowBits: false, ...ZLIB } };
  control = await wsListener(uri, token(), options, echo, STEP_MS);
}

/**
 * Opens one sender of this process's kind.
 *
 * @return {Promise<WebSocket>} The open socket
 */
async function openSender() {
  const uri = createRelaySendUri(relay.namespace, ENTITY);
  const token = createRelayToken(uri, relay.keyName, relay.key);
  const ws =
    kind === 'rs'
      ? relayedConnect(uri, token, { perMessageDeflate: { ...ZLIB } })
      : new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: { ...ZLIB } });
  ws.on('error', () => {});
  sockets.add(ws);
  ws.on('close', () => sockets.delete(ws));
  await opened(ws, `a ${kind} sender`, STEP_MS);
  if (ws.extensions !== 'permessage-deflate') throw new Error(`the ${kind} sender agreed ${JSON.stringify(ws.extensions)}`);
  return ws;
}

/**
 * Sends `message` on `ws` and waits for its echo.
 *
 * @param {WebSocket} ws The socket
 * @param {String} message The message
 * @return {Promise<void>}
 */
function roundTrip(ws, message) {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('message', (data) => (data.length === Buffer.byteLength(message) ? resolve() : reject(new Error('bad echo'))));
      ws.send(message);
    }),
    STEP_MS,
    'an echo'
  );
}

/**
 * `count` echoed messages of `size` bytes with at most `window` in flight.
 *
 * @param {Object} args `{ size, count, window, seed }`
 * @return {Promise<Object>} `{ ms, cpuUs, bytes }`
 */
async function throughput({ size, count, window, seed }) {
  const ws = await openSender();
  const messages = Array.from({ length: 16 }, (_, i) => jsonText(size, seed + i));
  await roundTrip(ws, messages[0]);
  let sent = 0;
  let received = 0;
  let bytes = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await withTimeout(
    new Promise((resolve) => {
      ws.on('message', (data) => {
        bytes += data.length;
        received++;
        if (received === count) resolve();
        else if (sent < count) ws.send(messages[sent++ % messages.length]);
      });
      while (sent < Math.min(window, count)) ws.send(messages[sent++ % messages.length]);
    }),
    120000,
    `${count} echoes of ${size} bytes`
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  ws.removeAllListeners('message');
  ws.close();
  return { ms, cpuUs: cpu.user + cpu.system, bytes };
}

/**
 * Echoed messages of `size` bytes at `perSecond` for `seconds`, measuring this process's
 * event-loop utilisation.
 *
 * @param {Object} args `{ size, perSecond, seconds }`
 * @return {Promise<Object>} `{ elu, cpuUs, sent, received, ms }`
 */
async function rate({ size, perSecond, seconds }) {
  const ws = await openSender();
  const messages = Array.from({ length: 16 }, (_, i) => jsonText(size, 7 + i));
  await roundTrip(ws, messages[0]);
  let sent = 0;
  let received = 0;
  ws.on('message', () => received++);
  const total = perSecond * seconds;
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * perSecond));
      while (sent < due) ws.send(messages[sent++ % messages.length]);
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
  await withTimeout(
    new Promise((resolve) => {
      const check = () => (received >= total ? resolve() : setTimeout(check, 5));
      check();
    }),
    60000,
    'the last echoes at a fixed rate'
  );
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const cpu = process.cpuUsage(cpu0);
  ws.removeAllListeners('message');
  ws.close();
  return { elu, cpuUs: cpu.user + cpu.system, sent, received, ms };
}

/**
 * Opens `count` connections that each send a message once and get it back, then stay.
 *
 * @param {Object} args `{ count, size }`: JSON-like text of `size` bytes
 * @return {Promise<Object>} `{ open }`
 */
async function openIdle({ count, size }) {
  await inBatches(count, OPEN_BATCH, async (i) => roundTrip(await openSender(), jsonText(size, i)));
  return { open: sockets.size };
}

const ops = {
  start: async (args) => {
    relay = args.relay;
    if (role === 'listener') await startListener();
    return { pid: process.pid };
  },
  open: openIdle,
  throughput,
  rate,
  usage: () => usage({ open: sockets.size }),
  close: () => closeAll(sockets, server, control, STEP_MS)
};

serve(ops);
