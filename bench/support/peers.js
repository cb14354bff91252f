'use strict';

/**
 * The process layout of the benchmarks that put the relay, a listener and a sender each in
 * a child process of its own (`bench/deflate.js`, `bench/both-ends.js`): the parent's side
 * (start the processes, ask them to do things, stop them) and the peers' side (answer the
 * parent, report usage, the hand-written ws 8 listener).
 *
 * Usage: `const { startRelay, startPair, call, stopPair } = require('./support/peers');` in a
 * benchmark, `const { serve, usage, wsListener } = require('./peers');` in its peer script.
 *
 * IPC: the relay sends `{ ready: { namespace, keyName, key } }` once listening. A peer
 * answers every request `{ id, op, ...args }` with `{ id, result }` or `{ id, error }`.
 */

const { fork } = require('child_process');
const { performance } = require('perf_hooks');

const WebSocket = require('ws');

const { opened, withTimeout } = require('./run');

/** How long a peer may take for one request. */
const STEP_MS = 180000;

let nextId = 1;

/**
 * Starts a peer process (with `--expose-gc`, so that its memory can be read after a
 * collection).
 *
 * @param {String} script The peer script
 * @param {String[]} args Its arguments
 * @return {Object} The child process
 */
function forkPeer(script, args) {
  return fork(script, args, { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/**
 * Sends a request to a peer and resolves with its result.
 *
 * @param {Object} child The peer
 * @param {String} op The operation
 * @param {Object} [args] Its arguments
 * @return {Promise<Object>} The result
 */
function call(child, op, args = {}) {
  const id = nextId++;
  const p = new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (!msg || msg.id !== id) return;
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
      if (msg.error) reject(new Error(`${op}: ${msg.error}`));
      else resolve(msg.result);
    };
    const onExit = (code) => {
      child.removeListener('message', onMessage);
      reject(new Error(`${op}: the peer exited (${code})`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ id, op, ...args });
  });
  return withTimeout(p, STEP_MS, `the peer's ${op}`);
}

/**
 * Starts the relay in a child process and waits until it listens.
 *
 * @param {String} script The relay's script
 * @param {String[]} args Its arguments
 * @return {Promise<Object>} `{ child, namespace, keyName, key }`
 */
async function startRelay(script, args) {
  const child = forkPeer(script, args);
  const ready = await withTimeout(
    new Promise((resolve) => child.on('message', (m) => m && m.ready && resolve(m.ready))),
    20000,
    'the relay to start'
  );
  return { child, namespace: ready.namespace, keyName: ready.keyName, key: ready.key };
}

/**
 * Starts a listener and a sender of `kind` (`script listener kind`, `script sender kind`)
 * and resolves once the listener is online.
 *
 * @param {String} script The peer script
 * @param {Object} relay The relay
 * @param {String} kind The kind
 * @return {Promise<Object>} `{ listener, sender }`
 */
async function startPair(script, relay, kind) {
  const listener = forkPeer(script, ['listener', kind]);
  const sender = forkPeer(script, ['sender', kind]);
  const r = { namespace: relay.namespace, keyName: relay.keyName, key: relay.key };
  await call(listener, 'start', { relay: r });
  await call(sender, 'start', { relay: r });
  return { listener, sender };
}

/**
 * Closes a pair and waits for both processes to end.
 *
 * @param {Object} pair `{ listener, sender }`
 * @return {Promise<void>}
 */
async function stopPair(pair) {
  for (const child of [pair.sender, pair.listener]) {
    if (child.exitCode !== null) continue;
    await call(child, 'close').catch(() => {});
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.disconnect();
    await withTimeout(exited, 10000, 'a peer to exit').catch(() => child.kill());
  }
}

/**
 * Event-loop utilisation between two `usage` answers: from the end of the first's garbage
 * collection (see `usage`) to the start of the second's.
 *
 * @param {Object} a The first
 * @param {Object} b The second
 * @return {Number} Utilisation, 0 to 1
 */
function eluBetween(a, b) {
  const from = (a.after || a).elu;
  return (b.elu.active - from.active) / (b.elu.active + b.elu.idle - from.active - from.idle);
}

/**
 * CPU time (µs) between two `usage` answers: from the end of the first's garbage collection
 * (see `usage`) to the start of the second's.
 *
 * @param {Object} a The first
 * @param {Object} b The second
 * @return {Number} Microseconds
 */
function cpuBetween(a, b) {
  return b.cpuUs - (a.after || a).cpuUs;
}

/**
 * In a peer: answers the parent's requests with `ops[op](request)`, and ends the process
 * when the parent goes away.
 *
 * @param {Object<String, Function>} ops Async operations by name
 */
function serve(ops) {
  process.on('message', (msg) => {
    if (!msg || !ops[msg.op]) return;
    ops[msg.op](msg)
      .then((result) => process.connected && process.send({ id: msg.id, result }))
      .catch((err) => process.connected && process.send({ id: msg.id, error: err.stack || err.message }));
  });
  process.on('disconnect', () => process.exit(0));
}

/**
 * In a peer: this process's CPU time (µs) and event-loop counters, then its memory after
 * garbage collection (when the process runs with `--expose-gc`), then the CPU time and
 * event-loop counters again (`after`).
 *
 * A window measured between two answers runs from the first's `after` to the second's
 * `cpuUs` and `elu` (see `cpuBetween` and `eluBetween`): the forced collections are in
 * neither end's window. Before, a window began before the first answer's three collections,
 * which added their time (several milliseconds) to what it measured.
 *
 * @param {Object} [extra] More fields for the answer, read before the collection
 * @param {Function} [extraAfter] Returns more fields for `after`, read after it
 * @return {Promise<Object>} `{ cpuUs, elu, memory, after: { cpuUs, elu, ... }, ...extra }`
 */
async function usage(extra = {}, extraAfter = () => ({})) {
  // CPU and event loop first: the collection below is not part of what ends here.
  const cpu = process.cpuUsage();
  const elu = performance.eventLoopUtilization();
  if (typeof global.gc === 'function') {
    for (let i = 0; i < 3; i++) {
      global.gc();
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  }
  const memory = process.memoryUsage();
  const cpuAfter = process.cpuUsage();
  const after = {
    cpuUs: cpuAfter.user + cpuAfter.system,
    elu: performance.eventLoopUtilization(),
    ...extraAfter()
  };
  return { cpuUs: cpu.user + cpu.system, elu, memory, after, ...extra };
}

/**
 * In a peer: a hand-written plain ws 8 listener, as an application without this package
 * writes one: a control channel, and on each `{accept}` a
 * `new WebSocket(accept.address, socketOptions)` handed to `onSocket` at once.
 *
 * @param {String} uri The listen address
 * @param {String} token Its SAS token
 * @param {Object} socketOptions ws options of each accept socket
 * @param {Function} onSocket Called with `(ws, address)` for each accept socket
 * @param {Number} ms How long the control channel may take to open
 * @return {Promise<WebSocket>} The control channel, open
 */
async function wsListener(uri, token, socketOptions, onSocket, ms) {
  const control = new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: false });
  control.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (!msg.accept) return;
    onSocket(new WebSocket(msg.accept.address, socketOptions), msg.accept.address);
  });
  await opened(control, 'the ws 8 control channel', ms);
  return control;
}

/**
 * In a peer: runs `openOne(i)` for i from 0 to `count - 1`, `batch` at a time.
 *
 * @param {Number} count How many
 * @param {Number} batch How many at once
 * @param {Function} openOne Async, with the index
 * @return {Promise<void>}
 */
async function inBatches(count, batch, openOne) {
  for (let done = 0; done < count; done += batch) {
    const n = Math.min(batch, count - done);
    await Promise.all(Array.from({ length: n }, (_, i) => openOne(done + i)));
  }
}

/**
 * In a peer: terminates its sockets, closes its RelayedServer and its ws 8 control channel.
 *
 * @param {Set<WebSocket>} sockets The sockets
 * @param {?Object} server A RelayedServer
 * @param {?WebSocket} control A control channel
 * @param {Number} ms How long the server may take to close
 * @return {Promise<Object>} `{}`
 */
async function closeAll(sockets, server, control, ms) {
  for (const ws of sockets) ws.terminate();
  if (server) await withTimeout(new Promise((resolve) => server.close(resolve)), ms, 'RelayedServer to close');
  if (control) control.terminate();
  return {};
}

module.exports = {
  call,
  closeAll,
  cpuBetween,
  eluBetween,
  forkPeer,
  inBatches,
  serve,
  startPair,
  startRelay,
  stopPair,
  usage,
  wsListener
};
