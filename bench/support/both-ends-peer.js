'use strict';

/**
 * One end of `bench/both-ends.js` (the relay, a listener or a sender), alone in a child
 * process so that its CPU time, event-loop utilisation and memory count that end only.
 *
 * Usage: started by bench/both-ends.js as
 *   child_process.fork('bench/support/both-ends-peer.js', [role, kind], { execArgv: ['--expose-gc'] })
 * with `role` `relay`, `listener` or `sender`, and `kind`:
 *   - `rs`: this package at both ends: `new RelayedServer({ server, token })` and
 *     `relayedConnect(address, token)`, with their default options;
 *   - `ws`: ws 8 at both ends: a hand-written listener (a control channel, and on each
 *     `{accept}` a `new WebSocket(accept.address, { perMessageDeflate: false })`) and a
 *     sender `new WebSocket(address, { headers: { ServiceBusAuthorization }, perMessageDeflate:
 *     false })`;
 *   - `base`: as `rs`, with the package found in the directory `HYCO_BENCH_BASELINE` names
 *     (an older build kept aside, to compare builds in one run).
 * The relay is this package's `startLocalRelay()`, whatever the kind. Not meant to be run
 * by hand.
 *
 * Every listener-side socket serves the mode its sender asked for in the address's query
 * (`?mode=echo` or `?mode=sink`): `echo` sends every message back with its binary flag;
 * `sink` takes a text `{"expect":{id,count,size}}`, then counts binary messages, checking
 * each one's length and first byte (`seq & 0xff`), and answers a text
 * `{"report":{id,received,bytes,errors,firstError}}` once it has `count`.
 *
 * IPC: the relay sends `{ ready: { namespace, keyName, key } }` once listening. A listener
 * or a sender answers every request `{ id, op, ...args }` with `{ id, result }` or `{ id,
 * error }`:
 *   - `start { relay }`: a listener goes online; a sender notes the relay;
 *   - `connect { count }` (sender): `count` connects one after the other, each timed from
 *     the constructor to 'open' (µs), then proven with an echo and closed;
 *   - `echo { size, count, warmup }` (sender): one connection, one message in flight;
 *     answers every round trip's time (µs) and the per-thread CPU of the timed part;
 *   - `throughput { size, count }` (sender): one sink connection, `count` messages of
 *     `size` bytes as fast as backpressure allows (`bufferedAmount` under 4 MiB, else the
 *     next send waits for the callback; a turn of the event loop every 1 MiB); answers
 *     the time to the sink's report and this process's CPU time;
 *   - `rate { size, perSecond, seconds }` (sender): one sink connection at a fixed rate
 *     (a timer every 10 ms sends its share); answers this process's event-loop
 *     utilisation, CPU time and how long it took until the sink had everything;
 *   - `open { count }` (sender): `count` connections in batches of 50, each proven with a
 *     32 B echo, left open;
 *   - `usage {}`: CPU time (µs), event-loop counters, per-thread CPU, memory after garbage
 *     collection, open sockets; and the CPU time, event-loop counters and per-thread CPU
 *     after the collection (`after`: where the next window starts);
 *   - `close {}`: closes everything; the process then ends by itself.
 */

const fs = require('fs');
const path = require('path');
const { performance } = require('perf_hooks');

const [role, kind] = process.argv.slice(2);
const pkg = kind === 'base' ? require(path.resolve(process.env.HYCO_BENCH_BASELINE || '.') + path.sep) : require('../..');
const { createRelayListenUri, createRelaySendUri, createRelayToken, relayedConnect, RelayedServer, WebSocket } = pkg;
const { closeAll, inBatches, serve, usage, wsListener } = require('./peers');
const { opened, withTimeout } = require('./run');

const ENTITY = `both-${kind}`;
const STEP_MS = 20000;
const OPEN_BATCH = 50;
const HIGH_WATER = 4 * 1024 * 1024;
const YIELD_BYTES = 1024 * 1024;
const SEND_BINARY = { binary: true, compress: false };

let relay = null;
let server = null;
let control = null;
const sockets = new Set();

/**
 * This process's CPU seconds by kind of thread, `js` (the main thread), `rust` (tokio
 * workers) and `other` (libuv's and V8's helpers), and the seconds its threads waited for
 * a CPU while runnable (`queued`): from /proc's schedstat, in nanoseconds (Linux; zeros
 * elsewhere).
 *
 * @return {{js: Number, rust: Number, other: Number, queued: Number}} Seconds
 */
function threadCpu() {
  const out = { js: 0, rust: 0, other: 0, queued: 0 };
  let tids;
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    let name;
    let stat;
    try {
      name = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8');
      stat = fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ');
    } catch {
      continue; // The thread ended meanwhile.
    }
    const k = name.startsWith('tokio') ? 'rust' : Number(tid) === process.pid ? 'js' : 'other';
    out[k] += Number(stat[0]) / 1e9;
    out.queued += Number(stat[1]) / 1e9;
  }
  return out;
}

/**
 * A payload of `size` bytes in a fixed pattern (byte j is `(j * 31 + 7) & 0xff`).
 *
 * @param {Number} size The length
 * @return {Buffer} The payload
 */
function makePayload(size) {
  const payload = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff;
  return payload;
}

/**
 * The `mode` query parameter of an address or request target.
 *
 * @param {String} url An absolute URL or a request target
 * @return {String} `echo`, `sink` or `''`
 */
function modeOf(url) {
  return new URL(url, 'ws://localhost/').searchParams.get('mode') || '';
}

/**
 * Serves a listener-side socket in `mode` (see the module's description).
 *
 * @param {WebSocket} ws The open socket
 * @param {String} mode `echo` or `sink`
 */
function serveSocket(ws, mode) {
  sockets.add(ws);
  ws.on('error', () => {});
  ws.on('close', () => sockets.delete(ws));
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => {
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: isBinary, compress: false });
    });
    return;
  }
  let expect = null;
  let received = 0;
  let bytes = 0;
  let errors = 0;
  let firstError = null;
  const fault = (what) => {
    errors++;
    if (firstError === null) firstError = what;
  };
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const msg = JSON.parse(String(data));
      if (msg.expect) {
        expect = msg.expect;
        received = 0;
        bytes = 0;
        errors = 0;
        firstError = null;
      }
      return;
    }
    if (expect === null) return fault('a message before the expectation');
    if (data.length !== expect.size) fault(`message ${received}: ${data.length} bytes`);
    else if (data[0] !== (received & 0xff)) fault(`message ${received}: sequence byte ${data[0]}`);
    received++;
    bytes += data.length;
    if (received === expect.count) {
      ws.send(JSON.stringify({ report: { id: expect.id, received, bytes, errors, firstError } }));
      expect = null;
    }
    return undefined;
  });
}

/**
 * Starts the listener of this process's kind and resolves once it is online.
 *
 * @return {Promise<void>}
 */
async function startListener() {
  const uri = createRelayListenUri(relay.namespace, ENTITY);
  const token = () => createRelayToken(uri, relay.keyName, relay.key);
  if (kind !== 'ws') {
    server = new RelayedServer({ server: uri, token });
    server.on('connection', (ws, req) => serveSocket(ws, modeOf(req.url)));
    server.on('error', () => {});
    await withTimeout(new Promise((resolve) => server.once('listening', resolve)), STEP_MS, 'RelayedServer to listen');
    return;
  }
  const onSocket = (ws, address) => {
    ws.on('error', () => {});
    ws.once('open', () => serveSocket(ws, modeOf(address)));
  };
  control = await wsListener(uri, token(), { perMessageDeflate: false }, onSocket, STEP_MS);
}

/**
 * Starts one sender of this process's kind in `mode` (the clock starts just before).
 *
 * @param {String} mode `echo` or `sink`
 * @return {WebSocket} The socket, connecting
 */
function newSender(mode) {
  const uri = createRelaySendUri(relay.namespace, `${ENTITY}?mode=${mode}`);
  const token = createRelayToken(uri, relay.keyName, relay.key);
  const ws =
    kind === 'ws'
      ? new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: false })
      : relayedConnect(uri, token);
  ws.on('error', () => {});
  sockets.add(ws);
  ws.on('close', () => sockets.delete(ws));
  return ws;
}

/**
 * Opens one sender in `mode` and waits until it is open.
 *
 * @param {String} mode `echo` or `sink`
 * @return {Promise<WebSocket>} The open socket
 */
async function openSender(mode) {
  const ws = newSender(mode);
  await opened(ws, `a ${kind} sender`, STEP_MS);
  if (ws.extensions !== '') throw new Error(`the ${kind} sender agreed ${JSON.stringify(ws.extensions)}`);
  return ws;
}

/**
 * Closes `ws` and waits for its 'close'.
 *
 * @param {WebSocket} ws The socket
 * @return {Promise<void>}
 */
async function closeSocket(ws) {
  if (ws.readyState === ws.CLOSED) return;
  const closed = new Promise((resolve) => ws.once('close', resolve));
  ws.close(1000);
  await withTimeout(closed, STEP_MS, 'a socket to close').catch(() => ws.terminate());
}

/**
 * Sends `payload` on `ws` and waits for an identical echo.
 *
 * @param {WebSocket} ws The socket
 * @param {Buffer} payload The payload
 * @return {Promise<void>}
 */
function roundTrip(ws, payload) {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('message', (data) => (payload.equals(data) ? resolve() : reject(new Error('the echo differs'))));
      ws.send(payload, SEND_BINARY);
    }),
    STEP_MS,
    'an echo'
  );
}

/**
 * `count` connects one after the other, each timed from the constructor to 'open'.
 *
 * @param {Object} args `{ count }`
 * @return {Promise<Object>} `{ us }`: each connect's microseconds
 */
async function connect({ count }) {
  const us = [];
  const probe = makePayload(32);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const ws = newSender('echo');
    await opened(ws, `a ${kind} sender`, STEP_MS);
    us.push((performance.now() - t0) * 1000);
    await roundTrip(ws, probe);
    await closeSocket(ws);
  }
  return { us };
}

/**
 * Round trips of `size` bytes, one in flight, every echo compared with what was sent.
 *
 * @param {Object} args `{ size, count, warmup }`
 * @return {Promise<Object>} `{ us, threads }`: each timed round trip's microseconds, and
 *     this process's CPU seconds by thread kind over the timed part
 */
async function echo({ size, count, warmup }) {
  const ws = await openSender('echo');
  const payload = makePayload(size);
  const us = [];
  let threads0 = null;
  let t0 = 0;
  await withTimeout(
    new Promise((resolve, reject) => {
      let n = 0;
      const send = () => {
        payload[0] = n & 0xff;
        if (n === warmup) threads0 = threadCpu();
        t0 = performance.now();
        ws.send(payload, SEND_BINARY);
      };
      ws.on('message', (data) => {
        const t = performance.now();
        if (!payload.equals(data)) {
          reject(new Error(`echo ${n} differs from what was sent`));
          return;
        }
        if (n >= warmup) us.push((t - t0) * 1000);
        n++;
        if (n === warmup + count) resolve();
        else send();
      });
      send();
    }),
    120000,
    `${count} echoes of ${size} bytes`
  );
  const threads1 = threadCpu();
  const threads = {};
  for (const k of Object.keys(threads1)) threads[k] = threads1[k] - threads0[k];
  ws.removeAllListeners('message');
  await closeSocket(ws);
  return { us, threads };
}

/**
 * Waits for the sink's report for round `id` on `ws`.
 *
 * @param {WebSocket} ws A sink connection
 * @param {Number} id The round
 * @param {Number} count Messages sent
 * @param {Number} size Their size
 * @param {Number} ms How long to wait
 * @return {Promise<void>}
 */
function report(ws, id, count, size, ms) {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('message', (data, isBinary) => {
        const r = isBinary ? null : JSON.parse(String(data)).report;
        if (!r || r.id !== id) reject(new Error(`not the report of round ${id}`));
        else if (r.errors) reject(new Error(`the sink found ${r.errors} bad message(s), first: ${r.firstError}`));
        else if (r.received !== count || r.bytes !== count * size) reject(new Error(`the sink got ${r.received} messages`));
        else resolve();
      });
    }),
    ms,
    `the sink's report (${count} x ${size} B)`
  );
}

let nextRound = 1;

/**
 * `count` messages of `size` bytes to a sink as fast as backpressure allows.
 *
 * @param {Object} args `{ size, count }`
 * @return {Promise<Object>} `{ ms, cpuUs }`
 */
async function throughput({ size, count }) {
  const ws = await openSender('sink');
  const payload = makePayload(size);
  const id = nextRound++;
  const done = report(ws, id, count, size, 60000 + (count * size) / 1000);
  ws.send(JSON.stringify({ expect: { id, count, size } }));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  let failure = null;
  const onFlushed = (err) => {
    if (err) failure = err;
    else pump();
  };
  const pump = () => {
    let batch = 0;
    while (sent < count) {
      payload[0] = sent & 0xff;
      sent++;
      if (ws.bufferedAmount + size >= HIGH_WATER) {
        ws.send(payload, SEND_BINARY, onFlushed);
        return;
      }
      ws.send(payload, SEND_BINARY);
      batch += size;
      if (batch >= YIELD_BYTES && sent < count) {
        setImmediate(pump);
        return;
      }
    }
  };
  pump();
  await done;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (failure) throw failure;
  await closeSocket(ws);
  return { ms, cpuUs: cpu.user + cpu.system };
}

/**
 * Messages of `size` bytes to a sink at `perSecond` for `seconds`, measuring this
 * process's event-loop utilisation and CPU time until the sink has them all.
 *
 * @param {Object} args `{ size, perSecond, seconds }`
 * @return {Promise<Object>} `{ elu, cpuUs, ms, count }`
 */
async function rate({ size, perSecond, seconds }) {
  const ws = await openSender('sink');
  const payload = makePayload(size);
  const count = perSecond * seconds;
  const id = nextRound++;
  const done = report(ws, id, count, size, seconds * 1000 + 30000);
  ws.send(JSON.stringify({ expect: { id, count, size } }));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * perSecond));
    while (sent < due) {
      payload[0] = sent & 0xff;
      sent++;
      ws.send(payload, SEND_BINARY);
    }
    if (sent >= count) clearInterval(timer);
  }, 10);
  try {
    await done;
  } finally {
    clearInterval(timer);
  }
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const cpu = process.cpuUsage(cpu0);
  await closeSocket(ws);
  return { elu, cpuUs: cpu.user + cpu.system, ms, count };
}

/**
 * Opens `count` connections that each send 32 bytes once and get them back, then stay.
 *
 * @param {Object} args `{ count }`
 * @return {Promise<Object>} `{ open }`
 */
async function openIdle({ count }) {
  const payload = makePayload(32);
  await inBatches(count, OPEN_BATCH, async () => roundTrip(await openSender('echo'), payload));
  return { open: sockets.size };
}

/**
 * Runs the local relay and tells the parent where it is; closes it when asked or when the
 * parent goes away.
 *
 * @return {Promise<void>}
 */
async function runRelay() {
  const local = await pkg.startLocalRelay();
  const shutdown = async () => {
    setTimeout(() => process.exit(1), 5000).unref();
    await local.close();
    process.exit(0);
  };
  process.on('message', (msg) => {
    if (msg && msg.shutdown) shutdown();
  });
  process.on('disconnect', shutdown);
  process.send({ ready: { namespace: local.namespace, keyName: local.keyName, key: local.key, pid: process.pid } });
}

const ops = {
  start: async (args) => {
    relay = args.relay;
    if (role === 'listener') await startListener();
    return { pid: process.pid };
  },
  connect,
  echo,
  throughput,
  rate,
  open: openIdle,
  usage: () => usage({ threads: threadCpu(), open: sockets.size }, () => ({ threads: threadCpu() })),
  close: () => closeAll(sockets, server, control, STEP_MS)
};

if (role === 'relay') {
  runRelay().catch((err) => {
    console.error(`bench/support/both-ends-peer.js (relay) failed: ${err.stack || err.message}`);
    process.exit(1);
  });
} else {
  serve(ops);
}
