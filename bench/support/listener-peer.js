'use strict';

/**
 * The listener under test for `bench/listener.js`'s memory measure, alone in a fresh child
 * process (one per kind and round), so that its `process.memoryUsage()` counts that
 * listener and nothing else: no relay, no senders.
 *
 * Usage: started by bench/listener.js as
 *   child_process.fork('bench/support/listener-peer.js', [kind], { execArgv: ['--expose-gc'] })
 * with `kind` `rs` (hyco-ws-rs's RelayedServer) or `ws` (the hand-written ws 8 listener);
 * see bench/support/listeners.js. Not meant to be run by hand.
 *
 * IPC (every request carries an `id` that its reply repeats):
 *   - parent `{ start: { namespace, keyName, key } }`: starts the listener; the child answers
 *     `{ online: { pid, gc } }` once its control channel is open, or `{ failed: { message,
 *     fdExhausted } }`;
 *   - `{ measure: { id, reset } }`: runs the garbage collector (three times, with pauses, when
 *     `--expose-gc` is on) and answers `{ reply: { id, memory, state } }`, `memory` being
 *     `process.memoryUsage()`; with `reset`, the per-phase counters (`accepted`, the senders'
 *     numbers seen) start again from zero afterwards;
 *   - `{ waitOpen: { id, count, timeoutMs } }`: answers `{ reply: { id, ok, state } }` once
 *     `count` connections are open (or when the time is up);
 *   - `{ close: { id, timeoutMs } }`: closes the listener and every connection, then measures
 *     as `measure` and answers `{ reply: { id, close: { ms, clean, left }, memory, state } }`.
 *     After that, the child does not exit on its own accord: once the parent disconnects,
 *     the process must end by itself (nothing of the listener may keep it alive), which the
 *     parent checks.
 *   - unsolicited: `{ problem: message }` when the listener reports something wrong.
 * `state` is the listener's counters (see listeners.js) plus `distinct` and `duplicates`:
 * how many different sender numbers `n` connected since the last reset, and how many
 * connections repeated one.
 * If the parent goes away before the close, the child exits at once.
 */

const { startListener, isFdExhaustion } = require('./listeners');

const GC_PASSES = 3;
const GC_PAUSE_MS = 30;
const POLL_MS = 20;

let listener = null;
let closed = false;
let seen = new Set();
let duplicates = 0;
let acceptedAtReset = 0;

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
 * Sends a message to the parent if it is still there.
 *
 * @param {Object} msg The message
 */
function tell(msg) {
  if (process.connected) process.send(msg);
}

/**
 * Collects garbage (when exposed) and reads the process's memory.
 *
 * @return {Promise<Object>} `process.memoryUsage()` after the collection
 */
async function snapshot() {
  if (typeof global.gc === 'function') {
    for (let i = 0; i < GC_PASSES; i++) {
      global.gc();
      await sleep(GC_PAUSE_MS);
    }
  }
  return process.memoryUsage();
}

/**
 * The listener's counters plus the sender numbers seen since the last reset.
 *
 * @return {Object} The state
 */
function state() {
  const s = listener ? listener.state() : {};
  return { ...s, accepted: (s.accepted || 0) - acceptedAtReset, distinct: seen.size, duplicates };
}

/**
 * Starts the listener of `kind` and tells the parent.
 *
 * @param {String} kind `rs` or `ws`
 * @param {Object} relay `{ namespace, keyName, key }`
 * @return {Promise<void>}
 */
async function start(kind, relay) {
  try {
    listener = await startListener(kind, relay, {
      connection: (ws, n) => {
        if (seen.has(n)) duplicates++;
        else seen.add(n);
      },
      problem: (message) => tell({ problem: message })
    });
  } catch (err) {
    tell({ failed: { message: err.message, fdExhausted: isFdExhaustion(err) } });
    process.exit(1);
  }
  tell({ online: { pid: process.pid, gc: typeof global.gc === 'function' } });
}

/**
 * Resolves once `count` connections are open, or `false` after `timeoutMs`.
 *
 * @param {Number} count Connections
 * @param {Number} timeoutMs Milliseconds
 * @return {Promise<Boolean>} Whether they are open
 */
async function waitOpen(count, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (listener.open.size !== count) {
    if (Date.now() > deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/**
 * Handles a request from the parent.
 *
 * @param {Object} msg The request
 * @return {Promise<void>}
 */
async function handle(msg) {
  if (msg.start) {
    await start(process.argv[2], msg.start);
  } else if (msg.measure) {
    const memory = await snapshot();
    const s = state();
    if (msg.measure.reset) {
      seen = new Set();
      duplicates = 0;
      acceptedAtReset = listener.accepted;
    }
    tell({ reply: { id: msg.measure.id, memory, state: s } });
  } else if (msg.waitOpen) {
    const ok = await waitOpen(msg.waitOpen.count, msg.waitOpen.timeoutMs);
    tell({ reply: { id: msg.waitOpen.id, ok, state: state() } });
  } else if (msg.close) {
    closed = true;
    const close = await listener.close(msg.close.timeoutMs);
    const memory = await snapshot();
    tell({ reply: { id: msg.close.id, close, memory, state: state() } });
  }
}

process.on('message', (msg) => {
  if (!msg) return;
  handle(msg).catch((err) => {
    tell({ problem: `bench/support/listener-peer.js: ${err.stack || err.message}` });
    process.exit(1);
  });
});
process.on('disconnect', () => {
  // Before the planned close, a vanished parent means: stop now. After it, the process
  // must end by itself; the parent is timing that.
  if (!closed) process.exit(1);
});
