'use strict';

/**
 * One subject of `bench/churn.js`, in a process of its own so that its memory is its own: a
 * listener and a sender that connect, echo one message and close, one connection at a
 * time, as many times as the bench asks.
 *
 * Usage: started by bench/churn.js with child_process.fork(), with the subject's kind as
 * its argument; not meant to be run by hand. Kinds:
 *   - `rs`: hyco-ws-rs's RelayedServer and `relayedConnect` senders, the relay in its own
 *     process (bench/support/relay-peer.js);
 *   - `ws`: the hand-written ws 8 listener of bench/support/listeners.js and ws 8 senders,
 *     the same relay;
 *   - `rs-local`: as `rs`, with the relay in this process (`startLocalRelay`): the layout of
 *     the issue that reported the growth, where the process holds all three.
 *
 * IPC: `{ relay: { namespace, keyName, key } }` (not for `rs-local`) starts the listener,
 * answered `{ ready: sample }`; `{ run: n, every: k }` runs n cycles without a pause, with a
 * `{ sample }` message after every k, then `{ ran: true }`; `{ shutdown: true }` (or the
 * bench going away) closes everything and exits. A sample is `{ cycles, ms, cpuMs, memory,
 * live }`: cycles so far, the wall and CPU time (this process, every thread) of the cycles
 * since the previous sample, `process.memoryUsage()` with `rss` from /proc (no GC
 * forced: what the system sees), and for hyco-ws-rs the addon's live object counts once the
 * last connection is gone (see `settledCounts`). A cycle
 * that fails ends the process with an error.
 */

const fs = require('fs');

const { createRelaySendUri, createRelayToken, relayedConnect, startLocalRelay, WebSocket } = require('../..');
const { KINDS, startListener } = require('./listeners');
const { withTimeout } = require('./run');

const kind = process.argv[2];
const STEP_TIMEOUT_MS = 10000;
const CLOSE_TIMEOUT_MS = 10000;
const SETTLE_MS = 2000;

/**
 * This process's resident set, in bytes, as the kernel counts it.
 *
 * @return {Number} Bytes
 */
function rssBytes() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage.rss();
}

/**
 * The addon's live object counts (internal; hyco-ws-rs kinds only, and builds that have
 * them: the bench also measures older builds, for before/after figures).
 *
 * @return {?Object} `{ tasks, sockets, targets, queued }`, or `null`
 */
function liveCounts() {
  if (kind === 'ws') return null;
  const native = require('../../lib/native').loadNative();
  return typeof native.liveCounts === 'function' ? native.liveCounts() : null;
}

/**
 * The live counts once the last cycle's connection is gone: polled until the listener has
 * no socket open and two readings 20 ms apart agree (at most `SETTLE_MS`; then the last
 * reading, and the bench reports what is left).
 *
 * @param {Object} listener The listener (its `open` set)
 * @return {Promise<?Object>} The counts, as `liveCounts`
 */
async function settledCounts(listener) {
  const deadline = Date.now() + SETTLE_MS;
  let last = liveCounts();
  while (last !== null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = liveCounts();
    if (listener.open.size === 0 && JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
  return last;
}

/**
 * Opens a sender of this kind.
 *
 * @param {String} uri The send address
 * @param {String} token Its SAS token
 * @return {WebSocket} The sender, connecting
 */
function openSender(uri, token) {
  if (kind === 'ws') return new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: false });
  return relayedConnect(uri, token);
}

/**
 * One cycle: connect, send `m<n>`, wait for its echo, close (1000), wait for the close.
 *
 * @param {String} uri The send address
 * @param {String} token Its SAS token
 * @param {Number} n The cycle's number
 * @return {Promise<void>}
 */
function cycle(uri, token, n) {
  const ws = openSender(uri, token);
  const done = new Promise((resolve, reject) => {
    let error = null;
    ws.on('error', (err) => {
      error = err;
    });
    ws.on('open', () => ws.send(`m${n}`));
    ws.on('message', (data) => {
      if (String(data) === `m${n}`) ws.close(1000);
      else reject(new Error(`cycle ${n}: echo ${String(data).slice(0, 40)}`));
    });
    ws.on('close', (code) => {
      if (code === 1000) resolve();
      else reject(new Error(`cycle ${n}: closed ${code}${error ? ` after ${error.message}` : ''}`));
    });
  });
  return withTimeout(done, STEP_TIMEOUT_MS, `cycle ${n}`);
}

/**
 * Starts the listener (and for `rs-local` the relay), then serves the bench.
 *
 * @return {Promise<void>}
 */
async function main() {
  if (!['rs', 'ws', 'rs-local'].includes(kind)) throw new TypeError(`unknown kind: ${kind}`);
  const listenerKind = kind === 'ws' ? 'ws' : 'rs';
  let localRelay = null;
  let listener = null;
  let to = null;
  let cycles = 0;
  let problem = null;

  /**
   * A sample of this process's state: memory at once, then the live counts once settled.
   *
   * @param {Number} ms The last run's wall time
   * @param {Number} cpuMs The last run's CPU time
   * @return {Promise<Object>} See the module's description
   */
  const sample = async (ms, cpuMs) => {
    const memory = { ...process.memoryUsage(), rss: rssBytes() };
    return { cycles, ms, cpuMs, memory, live: await settledCounts(listener), problem };
  };

  /**
   * Starts the listener on `relay`.
   *
   * @param {Object} relay `{ namespace, keyName, key }`
   * @return {Promise<void>}
   */
  const start = async (relay) => {
    listener = await startListener(listenerKind, relay, { problem: (m) => (problem = problem || m) });
    const uri = createRelaySendUri(relay.namespace, KINDS[listenerKind].entity);
    to = { uri, token: createRelayToken(uri, relay.keyName, relay.key) };
    process.send({ ready: await sample(0, 0) });
  };

  /**
   * Runs `n` cycles, reporting a sample after every `every`.
   *
   * @param {Number} n How many
   * @param {Number} every Cycles between samples
   * @return {Promise<void>}
   */
  const run = async (n, every) => {
    for (let done = 0; done < n; done += every) {
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < every; i++) await cycle(to.uri, to.token, cycles++);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const cpu = process.cpuUsage(cpu0);
      process.send({ sample: await sample(ms, (cpu.user + cpu.system) / 1000) });
    }
    process.send({ ran: true });
  };

  let stopping = false;
  /**
   * Closes the listener (and the relay) and exits.
   *
   * @param {Number} code The exit status
   * @return {Promise<void>}
   */
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    if (listener) await listener.close(CLOSE_TIMEOUT_MS);
    if (localRelay) await localRelay.close();
    process.exit(code);
  };
  process.on('message', (msg) => {
    if (!msg) return;
    let step = null;
    if (msg.relay) step = start(msg.relay);
    else if (msg.run) step = run(msg.run, msg.every);
    else if (msg.shutdown) step = stop(0);
    if (step) {
      step.catch((err) => {
        console.error(`bench/support/churn-peer.js (${kind}) failed: ${err.stack || err.message}`);
        stop(1);
      });
    }
  });
  process.on('disconnect', () => stop(0));
  if (kind === 'rs-local') {
    localRelay = await startLocalRelay({ hybridConnections: [KINDS.rs.entity] });
    await start({ namespace: localRelay.namespace, keyName: localRelay.keyName, key: localRelay.key });
  }
}

main().catch((err) => {
  console.error(`bench/support/churn-peer.js (${kind}) failed: ${err.stack || err.message}`);
  process.exit(1);
});
