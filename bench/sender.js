'use strict';

/**
 * The sender: hyco-ws-rs's `relayedConnect()` (a ws-8-compatible socket whose transport,
 * framing and masking run in Rust) against a plain ws 8 `WebSocket` client on the same
 * path (sender -> local relay emulator -> plain ws 8 listener), with a direct ws 8 pair
 * (ws client -> ws `WebSocketServer`, no relay) as the JavaScript ceiling. One run,
 * interleaved rounds, medians.
 *
 * Usage: node bench/sender.js [rounds=5] [scale=1]
 *
 *   rounds  timed rounds per client and measure (default 5; the client order rotates
 *           from round to round)
 *   scale   multiplies every per-round budget: 200,000 x 64 B and 64 MiB of 4 KiB, 64 KiB
 *           and 1 MiB messages per throughput round, 2,000 echo round trips, 50 connects,
 *           2 s at the fixed rate; `node bench/sender.js 1 0.05` is a quick smoke run
 *
 * Process layout: the relay emulator, the listener (control channel + accept sockets) and
 * the direct server run in a child process (`bench/support/sender-peer.js`), so that this
 * process holds only the clients under test and `process.cpuUsage()` (user + system, all
 * of its threads, the addon's Rust threads included) is the clients' CPU time.
 *
 * Measures, for each client:
 *   1. Throughput at 64 B, 4 KiB, 64 KiB and 1 MiB binary messages: msgs/s and MB/s
 *      (1 MB = 10^6 payload bytes), from the first send to the moment the peer reports that
 *      it has every message. The sender streams with backpressure (`bufferedAmount` under
 *      4 MiB, else it waits for the last send's callback) and yields to the event loop after
 *      every 1 MiB sent. The peer checks every message's length, first byte (a sequence
 *      number) and last byte, and every 64th in full, and reports counts and errors.
 *   2. Echo round trip, 64 B, one message in flight: p50 and p99 in µs over all round trips
 *      of all rounds; every echo is compared in full with what was sent.
 *   3. Connect time: from `relayedConnect()` / `new WebSocket()` to 'open', p50 and p99 over
 *      all connects of all rounds; each connection then proves itself with an echo (not
 *      timed) and is closed before the next.
 *   4. Client CPU per message (`process.cpuUsage()` delta / messages) in each throughput
 *      round.
 *   5. This process's event-loop utilisation (`performance.eventLoopUtilization()`) and CPU
 *      while sending 64 B messages at a fixed 20,000 msgs/s for 2 s (a batch every 10 ms,
 *      sized so that the schedule is kept), until the peer has them all.
 *
 * Prints one table (hyco-ws-rs, ws 8 relayed, their ratio, the target where there is one,
 * and the direct pair) and a markdown section for bench/RESULTS.md between clearly marked
 * lines. Targets: hyco-ws-rs / ws 8 at least 3x the msgs/s at 64 B, at least 3x the MB/s at
 * 1 MiB, at most 0.3x the client CPU per message at 64 B and 64 KiB (PASS/BELOW).
 * Progress and per-round figures go to stderr. Exits 1 if anything fails a check.
 */

const path = require('path');
const crypto = require('crypto');
const { fork } = require('child_process');
const { once } = require('events');
const { performance } = require('perf_hooks');

const { createRelaySendUri, createRelayToken, relayedConnect, WebSocket } = require('..');
const { median, percentile, formatSize, formatRate } = require('./support/stats');
const { opened, parseRoundsAndScale, runMain, withTimeout } = require('./support/run');
const { addonStamp, machine, markdownTable, table } = require('./support/report');
const { closeAll, closeSocket, track } = require('./support/senders');

const USAGE = 'Usage: node bench/sender.js [rounds=5] [scale=1]';
const PEER_SCRIPT = path.join(__dirname, 'support', 'sender-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');
const ENTITY = 'bench';

/** Payload sizes and their per-round message counts at scale 1. */
const SIZES = [
  { size: 64, count: 200000 },
  { size: 4 * 1024, count: 16384 }, // 64 MiB
  { size: 64 * 1024, count: 1024 }, // 64 MiB
  { size: 1024 * 1024, count: 64 } // 64 MiB
];
const MIN_MESSAGES = 4;
/** Warm-up rounds (untimed, per client and size) send this fraction of a round's messages. */
const WARMUP_FRACTION = 0.25;
/** The sender waits for a flush once `bufferedAmount` would reach this. */
const HIGH_WATER = 4 * 1024 * 1024;
/** The sender yields to the event loop after this many bytes. */
const YIELD_BYTES = 1024 * 1024;

const ECHO_SIZE = 64;
const ECHO_COUNT = 2000;
const ECHO_WARMUP = 200;
const CONNECTS = 50;
const CONNECT_WARMUP = 3;
const RATE = 20000;
const RATE_TICK_MS = 10;
const RATE_DURATION_MS = 2000;
const RATE_SIZE = 64;
const IDLE_MS = 500;

const TARGETS = { msgs64: 3, mb1MiB: 3, cpu: 0.3 };

/** A throughput round fails after this long plus the time the data takes at 1 MB/s. */
const ROUND_TIMEOUT_MS = 30000;
const STEP_TIMEOUT_MS = 10000;
const CLOSE_TIMEOUT_MS = 5000;
const SEND_OPTIONS = { binary: true, compress: false };

/** The clients, in their first round's order. */
const CLIENTS = [
  { key: 'hyco', label: 'hyco-ws-rs' },
  { key: 'ws', label: 'ws 8 (relayed)' },
  { key: 'direct', label: 'ws 8 direct' }
];




/**
 * Resolves after `ms` milliseconds.
 *
 * @param {Number} ms Milliseconds
 * @return {Promise<void>}
 */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The clients in round `r`'s order (rotated by one each round).
 *
 * @param {Number} r The round
 * @return {Object[]} The clients
 */
function roundOrder(r) {
  const k = r % CLIENTS.length;
  return [...CLIENTS.slice(k), ...CLIENTS.slice(0, k)];
}

/**
 * Starts the child process (relay, listener, direct server) and waits until it is ready.
 *
 * @return {Promise<Object>} `{ child, namespace, keyName, key, directPort, uris, tokens }`
 */
async function startPeer() {
  const child = fork(PEER_SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const peer = { child, stopping: false };
  child.on('exit', (code, signal) => {
    if (!peer.stopping) console.error(`bench/sender.js: the peer process exited unexpectedly (${signal || code})`);
  });
  const ready = new Promise((resolve, reject) => {
    child.on('message', (msg) => {
      if (msg && msg.ready) resolve(msg.ready);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`the peer process exited (${signal || code}) before it was ready`)));
  });
  try {
    Object.assign(peer, await withTimeout(ready, 20000, 'the peer process to start'));
  } catch (err) {
    await stopPeer(peer);
    throw err;
  }
  peer.uris = {};
  peer.tokens = {};
  for (const mode of ['sink', 'echo']) {
    const uri = createRelaySendUri(peer.namespace, `${ENTITY}?mode=${mode}`);
    peer.uris[mode] = uri;
    peer.tokens[mode] = createRelayToken(uri, peer.keyName, peer.key);
  }
  return peer;
}

/**
 * Asks the child process to shut down and kills it if it has not exited in time.
 *
 * @param {Object} peer The peer (see `startPeer`)
 * @return {Promise<void>}
 */
async function stopPeer(peer) {
  const { child } = peer;
  if (child.exitCode !== null || child.signalCode !== null) return;
  peer.stopping = true;
  const exited = once(child, 'exit');
  try {
    if (child.connected) child.send({ shutdown: true });
    await withTimeout(exited, 5000, 'the peer process to exit');
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Opens a socket of `client`'s kind to the peer in `mode`, remembers it for the final
 * cleanup and records its errors. The caller starts the clock just before this.
 *
 * @param {Object} peer The peer (see `startPeer`)
 * @param {String} client `hyco`, `ws` or `direct`
 * @param {String} mode `sink` or `echo`
 * @return {WebSocket} The socket, connecting
 */
function openSocket(peer, client, mode) {
  let ws;
  if (client === 'hyco') {
    ws = relayedConnect(peer.uris[mode], peer.tokens[mode]);
  } else if (client === 'ws') {
    ws = new WebSocket(peer.uris[mode], {
      headers: { ServiceBusAuthorization: peer.tokens[mode] },
      perMessageDeflate: false
    });
  } else {
    ws = new WebSocket(`ws://127.0.0.1:${peer.directPort}/?mode=${mode}`, { perMessageDeflate: false });
  }
  return track(ws);
}

/**
 * Opens a long-lived connection of `client`'s kind in `mode` and wraps it: one permanent
 * 'message' listener dispatches to the current round, so that a stray message between
 * rounds is noticed.
 *
 * @param {Object} peer The peer (see `startPeer`)
 * @param {Object} client An entry of `CLIENTS`
 * @param {String} mode `sink` or `echo`
 * @return {Promise<{client: Object, ws: WebSocket, handler: ?Function, stray: Number}>}
 */
async function openConn(peer, client, mode) {
  const ws = openSocket(peer, client.key, mode);
  await opened(ws, `${client.label} ${mode} connection`, STEP_TIMEOUT_MS);
  const conn = { client, ws, handler: null, stray: 0 };
  ws.on('message', (data, isBinary) => {
    if (conn.handler) conn.handler(data, isBinary);
    else conn.stray++;
  });
  return conn;
}

/**
 * Runs `body(ok, fail, guard)` as a round on `conn`: fails on a close of the socket, on a
 * stray message before the start and on an exception in a step; `guard(fn)` wraps a
 * callback so that its exceptions fail the round and it does nothing once the round is
 * over. `ok.timer(fn, ms)` and `ok.interval(fn, ms)` are guarded timers that the end of the
 * round clears.
 *
 * @param {Object} conn The connection (see `openConn`)
 * @param {String} what The round's name, for messages
 * @param {Function} body Starts the round; gets `ok(value)`, `fail(err)` and `guard`
 * @return {Promise<*>} What `ok` was given
 */
function round(conn, what, body) {
  return new Promise((resolve, reject) => {
    const { ws } = conn;
    const timers = [];
    const intervals = [];
    let done = false;
    const finish = () => {
      done = true;
      conn.handler = null;
      ws.removeListener('close', onClose);
      for (const t of timers) clearTimeout(t);
      for (const t of intervals) clearInterval(t);
    };
    const ok = (value) => {
      if (done) return;
      finish();
      resolve(value);
    };
    const fail = (err) => {
      if (done) return;
      finish();
      reject(new Error(`${conn.client.label}, ${what}: ${err.message}`));
    };
    const guard = (fn) =>
      function guarded(...args) {
        if (done) return undefined;
        try {
          return fn.apply(this, args);
        } catch (err) {
          fail(err);
          return undefined;
        }
      };
    /**
     * Fails the round when the socket closes.
     *
     * @param {Number} code The close code
     */
    function onClose(code) {
      const why = ws.lastError ? `: ${ws.lastError.message}` : '';
      fail(new Error(`the socket closed (${code})${why}`));
    }
    ok.timer = (fn, ms) => timers.push(setTimeout(guard(fn), ms));
    ok.interval = (fn, ms) => {
      const t = setInterval(guard(fn), ms);
      intervals.push(t);
      return t;
    };
    ws.on('close', onClose);
    if (ws.readyState !== WebSocket.OPEN) return fail(new Error('socket not open'));
    if (conn.stray) return fail(new Error(`${conn.stray} stray message(s) between rounds`));
    guard(body)(ok, fail, guard);
    return undefined;
  });
}

/**
 * Parses a peer report (a text message) and checks that it is for round `id`.
 *
 * @param {Buffer} data The message
 * @param {Boolean} isBinary Whether it is binary
 * @param {Number} id The round id
 * @return {Object} The report
 * @throws {Error} If it is not that round's report
 */
function parseReport(data, isBinary, id) {
  if (isBinary) throw new Error(`a binary message of ${data.length} bytes from the sink`);
  const msg = JSON.parse(String(data));
  if (!msg.report) throw new Error(`an unexpected message from the sink: ${String(data).slice(0, 200)}`);
  if (msg.report.id !== id) throw new Error(`a report for round ${msg.report.id}, expected ${id}`);
  return msg.report;
}

/**
 * Checks a peer report against what was sent.
 *
 * @param {Object} report The report
 * @param {Number} count Messages sent
 * @param {Number} size Bytes per message
 * @throws {Error} If the peer did not get exactly what was sent
 */
function checkReport(report, count, size) {
  const { received, bytes, errors, firstError, stray } = report;
  if (errors) throw new Error(`the peer found ${errors} bad message(s), first: ${firstError}`);
  if (stray) throw new Error(`the peer got ${stray} message(s) outside a round`);
  if (received !== count || bytes !== count * size) {
    throw new Error(`the peer got ${received} messages, ${bytes} bytes; sent ${count}, ${count * size}`);
  }
}

/**
 * A payload of `size` bytes in the pattern the peer checks: byte j is `(j * 31 + 7) & 0xff`,
 * byte 0 is overwritten with each message's sequence number. Both clients copy (ws masks
 * into a new buffer, hyco-ws-rs copies into Rust) during `send()`, so the same buffer can
 * be changed and sent again at once.
 *
 * @param {Number} size The length
 * @return {Buffer} The payload
 */
function makePayload(size) {
  const payload = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff;
  return payload;
}

let nextRoundId = 1;

/**
 * Streams `count` copies of `payload` to the sink as fast as backpressure allows.
 *
 * @param {Object} conn A sink connection (see `openConn`)
 * @param {Buffer} payload The payload (its first byte is overwritten)
 * @param {Number} count How many messages
 * @return {Promise<{ms: Number, cpuUs: Number}>} Milliseconds from the first send to the
 *     peer's report, and this process's CPU microseconds in that time
 */
function runThroughput(conn, payload, count) {
  const { ws } = conn;
  const size = payload.length;
  const id = nextRoundId++;
  return round(conn, `${formatSize(size)} x ${count}`, (ok, fail, guard) => {
    let sent = 0;
    let start = 0;
    let cpu0 = null;
    let timedOut = false;

    conn.handler = guard((data, isBinary) => {
      const report = parseReport(data, isBinary, id);
      const ms = performance.now() - start;
      const cpu = process.cpuUsage(cpu0);
      if (timedOut) {
        throw new Error(`no report in time; the peer has ${report.received}/${count} messages ` +
          `(${report.errors} bad, first: ${report.firstError}); ${sent} sent, bufferedAmount ${ws.bufferedAmount}`);
      }
      checkReport(report, count, size);
      ok({ ms, cpuUs: cpu.user + cpu.system });
    });

    const onFlushed = guard((err) => {
      if (err) throw err;
      pump();
    });
    const pump = guard(() => {
      let batch = 0;
      while (sent < count) {
        payload[0] = sent & 0xff;
        sent++;
        if (ws.bufferedAmount + size >= HIGH_WATER) {
          // Over the high-water mark: carry on once this message has been written.
          ws.send(payload, SEND_OPTIONS, onFlushed);
          return;
        }
        ws.send(payload, SEND_OPTIONS);
        batch += size;
        if (batch >= YIELD_BYTES && sent < count) {
          setImmediate(pump);
          return;
        }
      }
    });

    const limit = ROUND_TIMEOUT_MS + (count * size) / 1000;
    ok.timer(() => {
      timedOut = true;
      ws.send(JSON.stringify({ status: id }));
      ok.timer(() => {
        throw new Error(`no report within ${limit} ms, nor an answer to a status request; ` +
          `${sent} sent, bufferedAmount ${ws.bufferedAmount}`);
      }, 3000);
    }, limit);

    ws.send(JSON.stringify({ expect: { id, count, size } }));
    cpu0 = process.cpuUsage();
    start = performance.now();
    pump();
  });
}

/**
 * Sends `count` 64 B messages to the echo peer, one in flight at a time, and times each
 * round trip. Every echo must equal what was sent.
 *
 * @param {Object} conn An echo connection (see `openConn`)
 * @param {Number} count Round trips
 * @return {Promise<Number[]>} Round-trip times in microseconds
 */
function runEcho(conn, count) {
  const { ws } = conn;
  const payload = makePayload(ECHO_SIZE);
  return round(conn, `echo x ${count}`, (ok, fail, guard) => {
    const rtts = [];
    let t0 = 0;
    let lastProgress = performance.now();
    const send = () => {
      payload[0] = rtts.length & 0xff;
      t0 = performance.now();
      ws.send(payload, SEND_OPTIONS);
    };
    conn.handler = guard((data, isBinary) => {
      const t = performance.now();
      if (!isBinary) throw new Error(`echo ${rtts.length} is not binary`);
      if (!payload.equals(data)) throw new Error(`echo ${rtts.length} differs from what was sent (${data.length} bytes)`);
      rtts.push((t - t0) * 1000);
      lastProgress = t;
      if (rtts.length === count) ok(rtts);
      else send();
    });
    const watch = () => {
      if (performance.now() - lastProgress > STEP_TIMEOUT_MS) {
        throw new Error(`no echo for ${STEP_TIMEOUT_MS} ms after ${rtts.length} round trips`);
      }
      ok.timer(watch, 1000);
    };
    ok.timer(watch, 1000);
    send();
  });
}

/**
 * Connects once in echo mode and times the connect; then proves the connection with an
 * echo (not timed) and closes it.
 *
 * @param {Object} peer The peer (see `startPeer`)
 * @param {Object} client An entry of `CLIENTS`
 * @return {Promise<Number>} Microseconds from the constructor call to 'open'
 */
async function connectOnce(peer, client) {
  const t0 = performance.now();
  const ws = openSocket(peer, client.key, 'echo');
  try {
    await opened(ws, `${client.label} connect`, STEP_TIMEOUT_MS);
    const us = (performance.now() - t0) * 1000;
    const probe = crypto.randomBytes(16);
    const echoed = new Promise((resolve, reject) => {
      ws.once('message', (data, isBinary) => {
        if (isBinary && probe.equals(data)) resolve();
        else reject(new Error(`${client.label} connect: the echo differs from what was sent`));
      });
      ws.once('close', (code) => reject(new Error(`${client.label} connect: closed (${code}) before the echo`)));
    });
    ws.send(probe, SEND_OPTIONS);
    await withTimeout(echoed, STEP_TIMEOUT_MS, `${client.label} connect's echo`);
    return us;
  } finally {
    await closeSocket(ws, CLOSE_TIMEOUT_MS);
  }
}

/**
 * Sends 64 B messages to the sink at a fixed rate from timer ticks (every 10 ms, as many as
 * the schedule calls for) and measures this process's event-loop utilisation and CPU from
 * the first tick to the peer's report.
 *
 * @param {Object} conn A sink connection (see `openConn`)
 * @param {Number} durationMs How long to send
 * @return {Promise<{elu: Number, cpuUs: Number, windowMs: Number, sendMs: Number,
 *     maxBuffered: Number, count: Number}>} The measures
 */
function runFixedRate(conn, durationMs) {
  const { ws } = conn;
  const payload = makePayload(RATE_SIZE);
  const count = Math.round((RATE * durationMs) / 1000);
  const id = nextRoundId++;
  return round(conn, `${RATE} msgs/s for ${durationMs} ms`, (ok, fail, guard) => {
    let sent = 0;
    let sendMs = 0;
    let maxBuffered = 0;
    let interval = null;
    let t0 = 0;
    let elu0 = null;
    let cpu0 = null;

    conn.handler = guard((data, isBinary) => {
      const report = parseReport(data, isBinary, id);
      const windowMs = performance.now() - t0;
      const elu = performance.eventLoopUtilization(elu0).utilization;
      const cpu = process.cpuUsage(cpu0);
      checkReport(report, count, RATE_SIZE);
      ok({ elu, cpuUs: cpu.user + cpu.system, windowMs, sendMs, maxBuffered, count });
    });
    const tick = () => {
      const now = performance.now();
      const due = Math.min(count, Math.floor(((now - t0) * count) / durationMs));
      while (sent < due) {
        payload[0] = sent & 0xff;
        sent++;
        ws.send(payload, SEND_OPTIONS);
      }
      if (ws.bufferedAmount > maxBuffered) maxBuffered = ws.bufferedAmount;
      if (sent === count) {
        clearInterval(interval);
        sendMs = now - t0;
      }
    };
    ok.timer(() => {
      throw new Error(`no report within ${durationMs + STEP_TIMEOUT_MS} ms; ${sent}/${count} sent`);
    }, durationMs + STEP_TIMEOUT_MS);

    ws.send(JSON.stringify({ expect: { id, count, size: RATE_SIZE } }));
    t0 = performance.now();
    elu0 = performance.eventLoopUtilization();
    cpu0 = process.cpuUsage();
    interval = ok.interval(tick, RATE_TICK_MS);
  });
}

/**
 * This process's CPU microseconds over `ms` of doing nothing.
 *
 * @param {Number} ms Milliseconds
 * @return {Promise<Number>} CPU microseconds per second
 */
async function idleCpu(ms) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const cpu = process.cpuUsage(cpu0);
  return ((cpu.user + cpu.system) * 1000) / (performance.now() - t0);
}





/**
 * A verdict against a target.
 *
 * @param {Number} ratio hyco-ws-rs / ws 8
 * @param {Number} target The target
 * @param {Boolean} atLeast Whether the ratio must be at least (else at most) the target
 * @return {String} `PASS (>= 3x)` or `BELOW (>= 3x)`
 */
function verdict(ratio, target, atLeast) {
  const pass = atLeast ? ratio >= target : ratio <= target;
  return `${pass ? 'PASS' : 'BELOW'} (${atLeast ? '>=' : '<='} ${target}x)`;
}

/**
 * Builds the result rows: measure, hyco-ws-rs, ws 8 relayed, ratio, target, ws 8 direct.
 *
 * @param {Object} res The collected results
 * @return {String[][]} The rows, heading first
 */
function resultRows(res) {
  const rows = [['measure', 'hyco-ws-rs', 'ws 8 (relayed)', 'hyco/ws', 'target', 'ws 8 direct']];
  const add = (label, values, fmt, target) => {
    const ratio = values.hyco / values.ws;
    rows.push([
      label,
      fmt(values.hyco),
      fmt(values.ws),
      `${ratio.toFixed(2)}x`,
      target ? verdict(ratio, target.value, target.atLeast) : '',
      fmt(values.direct)
    ]);
  };
  const each = (fn) => Object.fromEntries(CLIENTS.map((c) => [c.key, fn(c.key)]));
  const fixed = (d) => (x) => x.toFixed(d);

  for (const { size, count, rounds } of res.throughput) {
    const rate = (k) => (count * 1000) / median(rounds[k].map((r) => r.ms));
    add(`msgs/s, ${formatSize(size)}`, each(rate), formatRate,
      size === 64 ? { value: TARGETS.msgs64, atLeast: true } : null);
  }
  for (const { size, count, rounds } of res.throughput) {
    const mb = (k) => (count * size) / 1000 / median(rounds[k].map((r) => r.ms));
    add(`MB/s, ${formatSize(size)}`, each(mb), formatRate,
      size === 1024 * 1024 ? { value: TARGETS.mb1MiB, atLeast: true } : null);
  }
  for (const { size, count, rounds } of res.throughput) {
    const cpu = (k) => median(rounds[k].map((r) => r.cpuUs / count));
    add(`client CPU µs/msg, ${formatSize(size)}`, each(cpu), size >= 65536 ? fixed(1) : fixed(3),
      size === 64 || size === 65536 ? { value: TARGETS.cpu, atLeast: false } : null);
  }
  add('echo RTT p50 µs, 64 B', each((k) => percentile(res.echo[k], 50)), fixed(1));
  add('echo RTT p99 µs, 64 B', each((k) => percentile(res.echo[k], 99)), fixed(1));
  add('connect p50 ms', each((k) => percentile(res.connect[k], 50) / 1000), fixed(2));
  add('connect p99 ms', each((k) => percentile(res.connect[k], 99) / 1000), fixed(2));
  const rate = (k, fn) => median(res.fixedRate[k].map(fn));
  add(`event-loop util. @ ${RATE / 1000}k msgs/s`, each((k) => rate(k, (r) => r.elu * 100)), (x) => `${x.toFixed(1)}%`);
  add(`client CPU @ ${RATE / 1000}k msgs/s, % of a core`, each((k) => rate(k, (r) => r.cpuUs / 10 / r.windowMs)), (x) => `${x.toFixed(1)}%`);
  add(`client CPU µs/msg @ ${RATE / 1000}k msgs/s`, each((k) => rate(k, (r) => r.cpuUs / r.count)), fixed(2));
  return rows;
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
  const m = machine(ADDON);
  console.log('Sender: hyco-ws-rs relayedConnect vs ws 8 WebSocket, sender -> local relay -> ws 8 listener (child process)');
  console.log(`  node ${m.node}, ${m.platform}, ${m.cores} CPUs (${m.cpuModel}), ${m.memGiB} GiB, ${m.date}`);
  console.log(`  ws ${m.ws}, bufferutil: ${m.bufferutil}, permessage-deflate off; addon ${m.addon}`);
  console.log(`  ${rounds} interleaved round(s) per client and measure (order rotates), after a warm-up; scale ${scale}`);

  let peer = null;
  const conns = [];
  try {
    peer = await startPeer();
    const sink = {};
    const echo = {};
    const res = { throughput: [], echo: {}, connect: {}, fixedRate: {}, idle: {} };

    // ws connections first, then idle CPU with and without the hyco-ws-rs sockets open.
    for (const key of ['ws', 'direct', 'hyco']) {
      if (key === 'hyco') res.idle.before = await idleCpu(IDLE_MS);
      const client = CLIENTS.find((c) => c.key === key);
      sink[key] = await openConn(peer, client, 'sink');
      echo[key] = await openConn(peer, client, 'echo');
      conns.push(sink[key], echo[key]);
    }
    res.idle.after = await idleCpu(IDLE_MS);

    // 1 + 4. Throughput and CPU per message.
    for (const { size, count: base } of SIZES) {
      const count = Math.max(MIN_MESSAGES, Math.round(base * scale));
      const warm = Math.max(MIN_MESSAGES, Math.round(count * WARMUP_FRACTION));
      const payload = makePayload(size);
      for (const c of CLIENTS) await runThroughput(sink[c.key], payload, warm);
      const roundsOf = { hyco: [], ws: [], direct: [] };
      for (let r = 0; r < rounds; r++) {
        for (const c of roundOrder(r)) roundsOf[c.key].push(await runThroughput(sink[c.key], payload, count));
      }
      const fmt = (k) => roundsOf[k].map((x) => `${x.ms.toFixed(0)}ms/${(x.cpuUs / 1000).toFixed(0)}cpu`).join(' ');
      console.error(`  ${formatSize(size)} x ${count}: ${CLIENTS.map((c) => `${c.key} [${fmt(c.key)}]`).join(', ')}`);
      res.throughput.push({ size, count, rounds: roundsOf });
    }

    // 2. Echo round trips.
    const echoCount = Math.max(50, Math.round(ECHO_COUNT * scale));
    for (const c of CLIENTS) await runEcho(echo[c.key], ECHO_WARMUP);
    for (const c of CLIENTS) res.echo[c.key] = [];
    const echoP50 = { hyco: [], ws: [], direct: [] };
    for (let r = 0; r < rounds; r++) {
      for (const c of roundOrder(r)) {
        const rtts = await runEcho(echo[c.key], echoCount);
        res.echo[c.key].push(...rtts);
        echoP50[c.key].push(percentile(rtts, 50));
      }
    }
    console.error(`  echo x ${echoCount} per round, p50 µs per round: ${CLIENTS.map((c) => `${c.key} [${echoP50[c.key].map((x) => x.toFixed(0)).join(' ')}]`).join(', ')}`);

    // 3. Connect time.
    const connects = Math.max(5, Math.round(CONNECTS * scale));
    for (let i = 0; i < CONNECT_WARMUP; i++) for (const c of CLIENTS) await connectOnce(peer, c);
    for (const c of CLIENTS) res.connect[c.key] = [];
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < connects; i++) {
        for (const c of roundOrder(r + i)) res.connect[c.key].push(await connectOnce(peer, c));
      }
    }
    console.error(`  connect x ${connects} per round, max ms: ${CLIENTS.map((c) => `${c.key} ${(Math.max(...res.connect[c.key]) / 1000).toFixed(2)}`).join(', ')}`);

    // 5. Event-loop utilisation at a fixed rate.
    const durationMs = Math.max(250, Math.round(RATE_DURATION_MS * scale));
    for (const c of CLIENTS) res.fixedRate[c.key] = [];
    for (let r = 0; r < rounds; r++) {
      for (const c of roundOrder(r)) res.fixedRate[c.key].push(await runFixedRate(sink[c.key], durationMs));
    }
    const fr = (k) => res.fixedRate[k].map((x) => `${(x.elu * 100).toFixed(1)}%/${((x.count * 1000) / x.sendMs).toFixed(0)}msg/s/${x.maxBuffered}B`).join(' ');
    console.error(`  fixed rate, ELU/achieved rate/max bufferedAmount: ${CLIENTS.map((c) => `${c.key} [${fr(c.key)}]`).join(', ')}`);

    for (const conn of conns) {
      if (conn.stray) throw new Error(`${conn.client.label}: ${conn.stray} stray message(s) after the last round`);
    }

    // Report.
    const rows = resultRows(res);
    const idle = `idle CPU of this process: ${(res.idle.before / 1000).toFixed(1)} ms/s with only ws sockets open, ` +
      `${(res.idle.after / 1000).toFixed(1)} ms/s with 2 hyco-ws-rs sockets open too`;
    const stampAfter = addonStamp(ADDON);
    const rebuilt = stampAfter !== m.addon;
    const notes = [
      'hyco/ws = hyco-ws-rs / ws 8 on the relayed path (above 1 is better for rates, below 1 for times, CPU and utilisation).',
      'Throughput and CPU: medians of rounds; MB = 10^6 payload bytes; client CPU = process.cpuUsage() of the',
      'sender process (all threads) / messages. Latencies: percentiles over all samples of all rounds',
      `(echo ${echoCount} x ${rounds} round trips, connect ${connects} x ${rounds} connects per client).`,
      `Fixed rate: ${RATE} msgs/s of ${RATE_SIZE} B for ${durationMs} ms; medians of rounds.`,
      idle + '.'
    ];
    console.log('');
    console.log(table(rows).join('\n'));
    console.log('');
    console.log(notes.join('\n'));
    console.log(`total run ${((performance.now() - begun) / 1000).toFixed(1)} s`);
    if (rebuilt) console.log(`WARNING: the addon changed during the run (now ${stampAfter}); re-run.`);

    const md = [
      '## Sender: `node bench/sender.js` (`bench/sender.js`)',
      '',
      `${m.date.slice(0, 10)}. Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB, ${m.platform}; Node.js ${m.node}, ` +
        `ws ${m.ws} (bufferutil: ${m.bufferutil}). Addon: ${m.addon}.`,
      `Sender → local relay emulator → plain ws 8 listener; the relay, the listener and the direct server run in a`,
      `child process, so the client CPU is the sender process's only. ${rounds} interleaved round(s) per client and measure, scale ${scale}.`,
      '',
      ...markdownTable(rows),
      '',
      ...notes.map((n) => n.replace(/`/g, ''))
    ];
    console.log('');
    console.log('----- BEGIN markdown for bench/RESULTS.md -----');
    console.log(md.join('\n'));
    console.log('----- END markdown for bench/RESULTS.md -----');
  } finally {
    await closeAll(CLOSE_TIMEOUT_MS);
    if (peer) await stopPeer(peer);
  }
}

runMain('bench/sender.js', main);
