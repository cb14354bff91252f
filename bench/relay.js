'use strict';

/**
 * Relay throughput: messages/s and MB/s through the project's local relay emulator
 * (`startLocalRelay`) between two plain ws 8 clients (sender -> relay -> listener's accept
 * socket), against a direct ws 8 connection (a `WebSocket` client -> a `WebSocketServer` on
 * 127.0.0.1), in one process and run, interleaved rounds (relayed, direct, relayed, ...).
 *
 * Usage: npm run build && node bench/relay.js [rounds=5] [scale=1]
 *
 *   rounds  timed rounds per path and payload size (medians are reported)
 *   scale   multiplies the per-round budget (200,000 x 64 B; 64 MiB of 4 KiB, 64 KiB and
 *           1 MiB messages); `node bench/relay.js 1 0.05` is a quick smoke run
 *
 * Payloads are binary, 64 B, 4 KiB, 64 KiB and 1 MiB; permessage-deflate is off everywhere.
 * The sender streams as fast as backpressure allows (its `bufferedAmount` stays under
 * 4 MiB), the receiver counts messages and bytes, and a round is timed from the first send
 * to the last receipt. Every message's length, first byte (a sequence number) and last byte
 * are checked, and every 64th message is compared in full, so a broken path fails instead
 * of reporting a fast number.
 *
 * Prints, per size, the median msgs/s and MB/s (1 MB = 10^6 payload bytes) of each path
 * and the ratio relayed/direct; the project's goal is at least 0.90 at 64 KiB and 1 MiB
 * (PASS/BELOW).
 *
 * Both ends of each path run on this process's one JavaScript thread, as do both paths'
 * ws framing; the relay runs on its own Rust threads. The direct receiver is a ws server and
 * unmasks every frame in JavaScript, whereas the relayed receiver is a ws client that gets
 * unmasked frames from the relay (which does that work): keep this in mind when reading
 * ratios near or above 1, and when comparing runs with and without `bufferutil`.
 */

const os = require('os');
const { once } = require('events');
const { performance } = require('perf_hooks');

const {
  startLocalRelay,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  WebSocket,
  WebSocketServer
} = require('..');
const { median, formatSize, formatRate } = require('./support/stats');
const { opened, parseRoundsAndScale, runMain, withTimeout } = require('./support/run');

const USAGE = 'Usage: node bench/relay.js [rounds=5] [scale=1]';

/** Payload sizes and their per-round message counts at scale 1; `goal` marks the 90% target. */
const SIZES = [
  { size: 64, count: 200000, goal: false },
  { size: 4 * 1024, count: 16384, goal: false }, // 64 MiB
  { size: 64 * 1024, count: 1024, goal: true }, // 64 MiB
  { size: 1024 * 1024, count: 64, goal: true } // 64 MiB
];
const GOAL = 0.9;
const MIN_MESSAGES = 4;
/** Warm-up rounds (untimed, per path and size) send this fraction of a round's messages. */
const WARMUP_FRACTION = 0.25;
/** The sender waits for a flush once `bufferedAmount` would reach this. */
const HIGH_WATER = 4 * 1024 * 1024;
/** The sender yields to the event loop after this many bytes, so the receiver interleaves. */
const YIELD_BYTES = 1024 * 1024;
/** Every message's first byte is its sequence number; every this-many-th is compared whole. */
const FULL_CHECK_EVERY = 64;
/** A round fails if no message arrives for this long. */
const STALL_MS = 30000;
const SETUP_TIMEOUT_MS = 10000;
const CLOSE_TIMEOUT_MS = 5000;
const ENTITY = 'bench';
const SEND_OPTIONS = { binary: true, compress: false };
const CLIENT_OPTIONS = { perMessageDeflate: false };

/** Every socket this script opens, so that all of them are closed whatever happens. */
const sockets = [];



/**
 * Creates a ws client, remembers it for the final cleanup and records its errors (a
 * round fails on the `'close'` that follows an error).
 *
 * @param {String} url The address
 * @param {Object} [headers] Extra request headers
 * @return {WebSocket} The socket
 */
function connect(url, headers) {
  const ws = new WebSocket(url, { ...CLIENT_OPTIONS, headers });
  track(ws);
  return ws;
}

/**
 * Remembers a socket for the final cleanup and records its errors.
 *
 * @param {WebSocket} ws The socket
 * @return {WebSocket} The socket
 */
function track(ws) {
  ws.lastError = null;
  ws.on('error', (err) => {
    ws.lastError = err;
  });
  sockets.push(ws);
  return ws;
}

/**
 * Wraps a sender/receiver socket pair; one permanent `'message'` listener dispatches to the
 * current round, so that a stray message between rounds is noticed.
 *
 * @param {String} name `relayed` or `direct`
 * @param {WebSocket} tx The sending socket (a ws client)
 * @param {WebSocket} rx The receiving socket
 * @return {{name: String, tx: WebSocket, rx: WebSocket, handler: ?Function, stray: Number}}
 */
function makePair(name, tx, rx) {
  const pair = { name, tx, rx, handler: null, stray: 0 };
  rx.on('message', (data, isBinary) => {
    if (pair.handler) pair.handler(data, isBinary);
    else pair.stray++;
  });
  return pair;
}

/**
 * Opens the relayed path by hand: a listener control channel, a sender, and the
 * listener's accept socket, all plain ws clients.
 *
 * @param {LocalRelay} relay The running local relay
 * @return {Promise<Object>} The pair (see `makePair`), plus `control`
 */
async function openRelayedPair(relay) {
  const ns = relay.namespace;
  const lu = createRelayListenUri(ns, ENTITY);
  const control = connect(lu, { ServiceBusAuthorization: createRelayToken(lu, relay.keyName, relay.key) });
  await opened(control, 'relay control channel', SETUP_TIMEOUT_MS);

  const accepted = new Promise((resolve, reject) => {
    let rx = null;
    control.on('message', (data) => {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (err) {
        reject(new Error(`control channel: not JSON: ${String(data).slice(0, 200)}`));
        return;
      }
      if (!msg.accept) return;
      if (rx) {
        reject(new Error('control channel: a second accept, but only one sender exists'));
        return;
      }
      rx = connect(msg.accept.address);
      resolve(rx);
    });
  });

  const su = createRelaySendUri(ns, ENTITY);
  const tx = connect(su, { ServiceBusAuthorization: createRelayToken(su, relay.keyName, relay.key) });
  const rx = await withTimeout(accepted, SETUP_TIMEOUT_MS, 'the relay to send an accept');
  await Promise.all([opened(tx, 'relayed sender', SETUP_TIMEOUT_MS), opened(rx, 'relayed accept socket', SETUP_TIMEOUT_MS)]);
  return Object.assign(makePair('relayed', tx, rx), { control });
}

/**
 * Opens the direct path: a `WebSocketServer` on 127.0.0.1 port 0 and a client.
 *
 * @return {Promise<Object>} The pair (see `makePair`), plus `server`
 */
async function openDirectPair() {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('error', () => {});
  server.on('connection', track);
  await withTimeout(once(server, 'listening'), SETUP_TIMEOUT_MS, 'the direct server to listen');
  const connection = withTimeout(once(server, 'connection'), SETUP_TIMEOUT_MS, 'the direct server to accept');
  const tx = connect(`ws://127.0.0.1:${server.address().port}/`);
  const [[rx]] = await Promise.all([connection, opened(tx, 'direct client', SETUP_TIMEOUT_MS)]);
  return Object.assign(makePair('direct', tx, rx), { server });
}

/**
 * A payload of `size` bytes in a fixed pattern; its first byte is overwritten with each
 * message's sequence number. ws clients mask into a fresh buffer during `send()`, so the
 * same buffer can be changed and sent again at once.
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
 * Streams `count` copies of `payload` from `pair.tx` to `pair.rx` as fast as backpressure
 * allows and checks what arrives.
 *
 * @param {Object} pair The pair (see `makePair`)
 * @param {Buffer} payload The payload (its first byte is overwritten)
 * @param {Number} count How many messages
 * @return {Promise<Number>} Milliseconds from the first send to the last receipt
 */
function runRound(pair, payload, count) {
  const { tx, rx, name } = pair;
  const size = payload.length;
  const tail = payload[size - 1];
  const body = payload.subarray(1);

  return new Promise((resolve, reject) => {
    let sent = 0;
    let received = 0;
    let bytes = 0;
    let start = 0;
    let done = false;
    let lastProgress = performance.now();
    let lastReceived = 0;

    const cleanup = () => {
      done = true;
      pair.handler = null;
      clearInterval(watchdog);
      for (const ws of [tx, rx]) ws.removeListener('close', onClose);
    };
    const fail = (err) => {
      if (done) return;
      cleanup();
      reject(new Error(`${name} ${formatSize(size)}: ${err.message} (sent ${sent}, received ${received}/${count})`));
    };
    function onClose(code) {
      const why = this.lastError ? `: ${this.lastError.message}` : '';
      fail(new Error(`${this === tx ? 'sender' : 'receiver'} closed (${code})${why}`));
    }
    const watchdog = setInterval(() => {
      const now = performance.now();
      if (received !== lastReceived) {
        lastReceived = received;
        lastProgress = now;
      } else if (now - lastProgress > STALL_MS) {
        fail(new Error(`stalled: nothing received for ${STALL_MS} ms`));
      }
    }, 1000);

    pair.handler = (data, isBinary) => {
      if (!isBinary) return fail(new Error(`message ${received} is not binary`));
      if (data.length !== size) return fail(new Error(`message ${received} has ${data.length} bytes`));
      if (data[0] !== (received & 0xff)) {
        return fail(new Error(`message ${received} starts with ${data[0]}: lost, reordered or corrupt`));
      }
      if (data[size - 1] !== tail) return fail(new Error(`message ${received} has a corrupt last byte`));
      if (received % FULL_CHECK_EVERY === 0 && !data.subarray(1).equals(body)) {
        return fail(new Error(`message ${received} is corrupt`));
      }
      received++;
      bytes += data.length;
      if (received === count) {
        const elapsed = performance.now() - start;
        cleanup();
        if (bytes !== count * size) {
          reject(new Error(`${name}: received ${bytes} bytes, sent ${count * size}`));
        } else {
          resolve(elapsed);
        }
      }
      return undefined;
    };

    const onFlushed = (err) => {
      if (err) fail(err);
      else pump();
    };
    const pump = () => {
      if (done) return;
      try {
        let batch = 0;
        while (sent < count) {
          payload[0] = sent & 0xff;
          sent++;
          if (tx.bufferedAmount + size >= HIGH_WATER) {
            // Over the high-water mark: carry on once this message has reached the kernel.
            tx.send(payload, SEND_OPTIONS, onFlushed);
            return;
          }
          tx.send(payload, SEND_OPTIONS);
          batch += size;
          if (batch >= YIELD_BYTES && sent < count) {
            setImmediate(pump);
            return;
          }
        }
      } catch (err) {
        fail(err);
      }
    };

    for (const ws of [tx, rx]) ws.on('close', onClose);
    if (tx.readyState !== WebSocket.OPEN || rx.readyState !== WebSocket.OPEN) {
      fail(new Error('socket not open'));
      return;
    }
    if (pair.stray) {
      fail(new Error(`${pair.stray} stray message(s) between rounds`));
      return;
    }
    start = performance.now();
    pump();
  });
}

/**
 * Closes a socket cleanly, or terminates it if that does not finish in time.
 *
 * @param {WebSocket} ws The socket
 * @return {Promise<void>}
 */
async function closeSocket(ws) {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = once(ws, 'close');
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  try {
    await withTimeout(closed, CLOSE_TIMEOUT_MS, 'a socket to close');
  } catch {
    ws.terminate();
  }
}

/**
 * The header: what ran where.
 *
 * @param {{rounds: Number, scale: Number}} args The arguments
 * @return {String[]} Lines
 */
function header({ rounds, scale }) {
  const cpus = os.cpus();
  const model = cpus.length ? cpus[0].model.replace(/\s+/g, ' ').trim() : 'unknown CPU';
  let bufferutil = 'no (ws masks in JavaScript)';
  try {
    require.resolve('bufferutil');
    bufferutil = process.env.WS_NO_BUFFER_UTIL ? 'installed, disabled by WS_NO_BUFFER_UTIL' : 'yes';
  } catch {
    // Not installed.
  }
  const wsVersion = require('ws/package.json').version;
  return [
    'Relay throughput: relayed (ws client -> local relay -> ws client) vs direct (ws client -> ws server)',
    `  node ${process.version}, ${os.platform()} ${os.arch()}, ${cpus.length} CPUs (${model}), ${new Date().toISOString()}`,
    `  ws ${wsVersion}, bufferutil: ${bufferutil}, permessage-deflate off`,
    `  median of ${rounds} round(s) per path, interleaved, after a warm-up; scale ${scale}`
  ];
}

/**
 * Lays out rows as a table with right-aligned columns (the first left-aligned).
 *
 * @param {String[][]} rows The rows, the first being the heading
 * @return {String[]} Lines
 */
function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] || '').length)));
  return rows.map((r) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()
  );
}

/**
 * Runs the benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const args = parseRoundsAndScale();
  if (!args) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const { rounds, scale } = args;
  const begun = performance.now();
  console.log(header(args).join('\n'));

  let relay = null;
  let relayed = null;
  let direct = null;
  try {
    relay = await startLocalRelay();
    relayed = await openRelayedPair(relay);
    direct = await openDirectPair();

    const results = [];
    for (const { size, count: base, goal } of SIZES) {
      const count = Math.max(MIN_MESSAGES, Math.round(base * scale));
      const warm = Math.max(MIN_MESSAGES, Math.round(count * WARMUP_FRACTION));
      const payload = makePayload(size);
      await runRound(relayed, payload, warm);
      await runRound(direct, payload, warm);
      const times = { relayed: [], direct: [] };
      for (let r = 0; r < rounds; r++) {
        times.relayed.push(await runRound(relayed, payload, count));
        times.direct.push(await runRound(direct, payload, count));
      }
      const fmt = (xs) => xs.map((ms) => ms.toFixed(1)).join(' ');
      console.error(`  ${formatSize(size)} x ${count}: relayed ms [${fmt(times.relayed)}], direct ms [${fmt(times.direct)}]`);
      results.push({ size, count, goal, times });
    }

    const rows = [['size', 'msgs/round', 'relayed msg/s', 'direct msg/s', 'relayed MB/s', 'direct MB/s', 'relayed/direct', '']];
    const perRound = [];
    for (const { size, count, goal, times } of results) {
      const tr = median(times.relayed);
      const td = median(times.direct);
      const rate = (ms) => (count * 1000) / ms;
      const ratio = td / tr; // same messages, so the ratio of rates is the inverse ratio of times
      rows.push([
        formatSize(size),
        String(count),
        formatRate(rate(tr)),
        formatRate(rate(td)),
        formatRate((rate(tr) * size) / 1e6),
        formatRate((rate(td) * size) / 1e6),
        ratio.toFixed(2),
        goal ? `${ratio >= GOAL ? 'PASS' : 'BELOW'} (goal >= ${GOAL.toFixed(2)})` : ''
      ]);
      perRound.push(`  ${formatSize(size).padEnd(6)} ${times.relayed.map((t, i) => (times.direct[i] / t).toFixed(2)).join(' ')}`);
    }
    console.log('');
    console.log(table(rows).join('\n'));
    console.log('');
    console.log('relayed/direct per round (pairs of adjacent rounds):');
    console.log(perRound.join('\n'));
    console.log(`\nMB = 10^6 payload bytes; total run ${((performance.now() - begun) / 1000).toFixed(1)} s`);
    for (const pair of [relayed, direct]) {
      if (pair.stray) throw new Error(`${pair.name}: ${pair.stray} stray message(s) after the last round`);
    }
  } finally {
    // Senders first, so that close frames travel the whole path, then everything else.
    const first = [relayed, direct].filter(Boolean).map((p) => p.tx);
    await Promise.all(first.map(closeSocket));
    await Promise.all(sockets.map(closeSocket));
    if (direct) await new Promise((resolve) => direct.server.close(() => resolve()));
    if (relay) await relay.close();
  }
}

runMain('bench/relay.js', main);
