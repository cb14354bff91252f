// Steps for the tests of the listener (`RelayedServer`), written from its spec, not from the
// implementation.
//
// Every server made here is recorded from its creation: its `emit` is wrapped (rather than
// listeners added), so that every event is seen in order, with the status at the time, while
// the server keeps exactly the listeners the test gives it (an 'error' with no listener must
// still be possible to observe as a crash). Every socket a server hands to 'connection' gets
// an inbox and a close promise synchronously, before any test code runs, so that nothing it
// receives is missed. `withServerRelay` closes every server, sender and fake service whether
// the test passed or not.
import assert from 'node:assert/strict';

import hyco, { createRelayListenUri, createRelaySendUri, createRelayToken } from 'hyco-ws-rs';
import { WebSocketServer } from 'ws';

import { STEP_MS, endClients, expectOpen, nextEvent, nextMessage, startSender, whenClosed, withRelay, withTimeout } from './relay-steps.mjs';
import { endSockets } from './socket-steps.mjs';

/**
 * The API under test, looked up at call time so that the files load (and fail one test at a
 * time, clearly) while the export is missing.
 *
 * @returns {{ RelayedServer: any, createRelayedServer: Function }}
 */
export function serverApi() {
  assert.equal(typeof hyco.RelayedServer, 'function', 'hyco-ws-rs does not export RelayedServer (yet)');
  assert.equal(typeof hyco.createRelayedServer, 'function', 'hyco-ws-rs does not export createRelayedServer (yet)');
  return { RelayedServer: hyco.RelayedServer, createRelayedServer: hyco.createRelayedServer };
}

const records = new WeakMap();
const servers = new Set();
const fakes = new Set();

/**
 * Gives a socket an inbox (every message from now on) and a promise of its close, in the
 * shape `nextMessage` / `whenClosed` of relay-steps.mjs read.
 *
 * @param {any} ws A ws 8 WebSocket.
 * @returns {any} The same socket.
 */
export function equip(ws) {
  if (ws.inbox) return ws;
  ws.inbox = [];
  ws.inboxWaiters = [];
  ws.on('message', (data, isBinary) => {
    const waiter = ws.inboxWaiters.shift();
    if (waiter) waiter({ data, isBinary });
    else ws.inbox.push({ data, isBinary });
  });
  ws.closeInfo = new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: String(reason) }));
  });
  ws.on('error', (err) => {
    ws.lastError = err;
  });
  return ws;
}

/**
 * Records every event a server emits from now on, and registers it for `closeServers()`.
 *
 * @param {any} server A RelayedServer.
 * @returns {any} The same server.
 */
export function record(server) {
  const rec = { log: [], cursors: new Map(), waiters: new Set(), floor: 0 };
  records.set(server, rec);
  servers.add(server);
  const emit = server.emit;
  server.emit = function recordedEmit(type, ...args) {
    let status;
    try {
      status = server.status;
    } catch {
      status = undefined;
    }
    let readyState;
    if (type === 'connection' && args[0] && typeof args[0].on === 'function') {
      readyState = args[0].readyState;
      equip(args[0]);
    }
    rec.log.push({ type, args, status, readyState, at: Date.now() });
    for (const wake of [...rec.waiters]) wake();
    return emit.call(this, type, ...args);
  };
  return server;
}

/**
 * `new RelayedServer(options[, callback])`, recorded.
 *
 * @param {object} options The options.
 * @param {Function} [callback] The 'listening' callback.
 * @returns {any} The server.
 */
export function newServer(options, callback) {
  const { RelayedServer } = serverApi();
  const server = callback === undefined ? new RelayedServer(options) : new RelayedServer(options, callback);
  return record(server);
}

/**
 * `withTimeout` with a failure message computed when the time is up (to report the state
 * then).
 *
 * @template T
 * @param {Promise<T>} promise What to wait for.
 * @param {number} ms How long to wait.
 * @param {() => string} what What is awaited.
 * @returns {Promise<T>}
 */
export function lazyTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what()}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Every event recorded on a server so far.
 *
 * @param {any} server A recorded server.
 * @returns {Array<{ type: string, args: any[], status: string, readyState?: number, at: number }>}
 */
export function eventsOf(server) {
  const rec = records.get(server);
  assert.ok(rec, 'eventsOf() on a server that is not recorded');
  return rec.log;
}

/**
 * The types of the server's recorded events, leaving out 'newListener'/'removeListener'.
 *
 * @param {any} server A recorded server.
 * @returns {string[]}
 */
export function typesOf(server) {
  return eventsOf(server)
    .map((e) => e.type)
    .filter((t) => t !== 'newListener' && t !== 'removeListener');
}

/**
 * The recorded events of one type.
 *
 * @param {any} server A recorded server.
 * @param {string} type The event.
 * @returns {Array<{ type: string, args: any[], status: string, readyState?: number, at: number }>}
 */
export function eventsOfType(server, type) {
  return eventsOf(server).filter((e) => e.type === type);
}

/**
 * A short description of a server's event history, for failure messages.
 *
 * @param {any} server A recorded server.
 * @returns {string}
 */
export function history(server) {
  return typesOf(server)
    .map((t, i, all) => (t === 'connecting' || t === 'offline' || t === 'error' || t === 'warning' ? describeEvent(server, t, i, all) : t))
    .join(', ');
}

function describeEvent(server, type, index) {
  const e = eventsOf(server).filter((x) => x.type !== 'newListener' && x.type !== 'removeListener')[index];
  const err = e && e.args[0];
  if (!err) return `${type}(null)`;
  return `${type}(${err.statusCode ?? err.code ?? ''} ${String(err.message).slice(0, 80)})`;
}

/**
 * The next recorded event of `type` not yet returned by this function (per server and type),
 * waiting for it. Fails early, with the history, if the server emits 'close' first (unless
 * 'close' is what is awaited).
 *
 * @param {any} server A recorded server.
 * @param {string} type The event.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited, for the failure message.
 * @returns {Promise<{ type: string, args: any[], status: string, at: number }>}
 */
export function nextOf(server, type, ms = STEP_MS, what = `the server's '${type}' event`) {
  const rec = records.get(server);
  assert.ok(rec, 'nextOf() on a server that is not recorded');
  const find = () => {
    const start = Math.max(rec.cursors.get(type) ?? 0, rec.floor);
    for (let i = start; i < rec.log.length; i++) {
      if (rec.log[i].type === type) {
        rec.cursors.set(type, i + 1);
        return rec.log[i];
      }
    }
    rec.cursors.set(type, rec.log.length);
    return undefined;
  };
  const closedEarly = () => type !== 'close' && rec.log.some((e) => e.type === 'close');
  const found = find();
  if (found) return Promise.resolve(found);
  if (closedEarly()) {
    return Promise.reject(new Error(`the server closed before ${what} (events: ${history(server)})`));
  }
  let wake;
  const p = new Promise((resolve, reject) => {
    wake = () => {
      if (!rec.waiters.has(wake)) return;
      const e = find();
      if (e) {
        rec.waiters.delete(wake);
        resolve(e);
      } else if (closedEarly()) {
        rec.waiters.delete(wake);
        reject(new Error(`the server closed before ${what} (events: ${history(server)})`));
      }
    };
    rec.waiters.add(wake);
  });
  return lazyTimeout(p, ms, () => `${what} (events so far: ${history(server) || 'none'})`).finally(() =>
    rec.waiters.delete(wake)
  );
}

/**
 * Marks every event recorded so far as seen: `nextOf` returns only later ones (of any type).
 * Call it before causing something, to await its consequences.
 *
 * @param {any} server A recorded server.
 * @returns {number} The time of the mark (ms since the epoch).
 */
export function markSeen(server) {
  const rec = records.get(server);
  assert.ok(rec, 'markSeen() on a server that is not recorded');
  rec.floor = rec.log.length;
  return Date.now();
}

/**
 * Waits until the server has recorded `count` events of `type` (in all).
 *
 * @param {any} server A recorded server.
 * @param {string} type The event.
 * @param {number} count How many.
 * @param {number} ms How long to wait.
 * @param {string} what What is awaited.
 * @returns {Promise<void>}
 */
export function countReached(server, type, count, ms, what) {
  const rec = records.get(server);
  const done = () => rec.log.filter((e) => e.type === type).length >= count;
  if (done()) return Promise.resolve();
  let wake;
  const p = new Promise((resolve) => {
    wake = () => {
      if (done()) {
        rec.waiters.delete(wake);
        resolve();
      }
    };
    rec.waiters.add(wake);
  });
  return lazyTimeout(p, ms, () => `${what} (events so far: ${history(server) || 'none'})`).finally(() =>
    rec.waiters.delete(wake)
  );
}

/**
 * Waits for a server's 'listening' event; fails at once, with the history, on 'close'.
 *
 * @param {any} server A recorded server.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited.
 * @returns {Promise<void>}
 */
export async function whenListening(server, ms = STEP_MS, what = "the server's 'listening' event") {
  await nextOf(server, 'listening', ms, what);
}

/**
 * The next 'connection' event: the accepted socket and the request.
 *
 * @param {any} server A recorded server.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited.
 * @returns {Promise<{ socket: any, req: any, readyState: number }>} `readyState`: the
 *   socket's, when 'connection' was emitted.
 */
export async function nextConnection(server, ms = STEP_MS, what = "the server's 'connection' event") {
  const e = await nextOf(server, 'connection', ms, what);
  return { socket: e.args[0], req: e.args[1], readyState: e.readyState };
}

/**
 * The listen options for a relay: address and a Manage token for it.
 *
 * @param {any} relay The relay.
 * @param {string} [path] The Hybrid Connection.
 * @param {object} [extra] More options (override the defaults).
 * @returns {object}
 */
export function listenOptions(relay, path = 'hc', extra = {}) {
  const server = createRelayListenUri(relay.namespace, path);
  return { server, token: createRelayToken(server, relay.keyName, relay.key), ...extra };
}

/**
 * A recorded server on `path`, awaited until 'listening'.
 *
 * @param {any} relay The relay.
 * @param {object} [extra] More options.
 * @param {string} [path] The Hybrid Connection.
 * @returns {Promise<any>} The listening server.
 */
export async function startServer(relay, extra = {}, path = 'hc') {
  const server = newServer(listenOptions(relay, path, extra));
  await whenListening(server, STEP_MS, `the server on ${path} to listen`);
  return server;
}

/**
 * Makes a server echo every message (text as text, binary as binary).
 *
 * @param {any} server A RelayedServer.
 * @returns {any} The server.
 */
export function echo(server) {
  server.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      try {
        socket.send(data, { binary: isBinary });
      } catch {
        // closed meanwhile
      }
    });
  });
  return server;
}

/**
 * A plain ws 8 sender (token in the ServiceBusAuthorization header, no permessage-deflate).
 *
 * @param {any} relay The relay.
 * @param {string} [path] Hybrid Connection, optional suffix and query.
 * @param {object} [opts] `startSender` options (`id`, `headers`, `protocols`, `wsOptions`).
 * @returns {{ ws: any, outcome: Promise<any> }}
 */
export function wsSender(relay, path = 'hc', opts = {}) {
  return startSender(relay, path, { ...opts, wsOptions: { perMessageDeflate: false, ...(opts.wsOptions || {}) } });
}

/**
 * The send address and a Manage token for it, for `relayedConnect`.
 *
 * @param {any} relay The relay.
 * @param {string} [path] Hybrid Connection, optional suffix and query.
 * @returns {{ uri: string, token: string }}
 */
export function sendAddress(relay, path = 'hc') {
  const uri = createRelaySendUri(relay.namespace, path);
  return { uri, token: createRelayToken(uri, relay.keyName, relay.key) };
}

/**
 * Closes every recorded server still open and waits (bounded) for its 'close'.
 *
 * @returns {Promise<void>}
 */
export async function closeServers() {
  const all = [...servers];
  servers.clear();
  await Promise.all(
    all.map(async (server) => {
      const rec = records.get(server);
      if (rec.log.some((e) => e.type === 'close')) return;
      try {
        server.close();
      } catch {
        // a broken close() is reported by the tests of close()
      }
      try {
        await nextOf(server, 'close', STEP_MS, "a server's 'close' during cleanup");
      } catch {
        // reported elsewhere; cleanup goes on
      }
    })
  );
}

/**
 * Runs `fn` with a fresh relay; afterwards closes every server, fake service and client
 * socket made by the helpers, then the relay.
 *
 * @param {object|undefined} relayOptions The options of `startLocalRelay`.
 * @param {(relay: any) => Promise<any>} fn The test body.
 * @returns {Promise<any>}
 */
export function withServerRelay(relayOptions, fn) {
  return withRelay(relayOptions, async (relay) => {
    try {
      return await fn(relay);
    } finally {
      await cleanup();
    }
  });
}

/**
 * Closes every server, fake service and client socket made by the helpers.
 *
 * @returns {Promise<void>}
 */
export async function cleanup() {
  try {
    await closeServers();
  } finally {
    endSockets();
    endClients();
    await Promise.all([...fakes].map((f) => f.close()));
  }
}

/**
 * A fake Hybrid Connections service: a ws 8 WebSocketServer on 127.0.0.1 that accepts any
 * WebSocket (control channels, accept handshakes), so that a test can send a listener any
 * control message it likes and see exactly what the listener sends.
 *
 * @returns {Promise<{ port: number, listenUri: string, acceptAddress: (id: string) => string,
 *   nextControl: (ms?: number) => Promise<any>, nextAcceptSocket: (ms?: number) => Promise<any>,
 *   nextReject: (ms?: number) => Promise<{ req: any, parsedUrl: URL }>, close: () => Promise<void> }>}
 *   `nextControl` and `nextAcceptSocket` resolve to server-side sockets (equipped: inbox,
 *   closeInfo) with `.req` (the handshake request) and `.parsedUrl`; `nextReject` to a reject
 *   handshake (answered 410).
 */
export async function startFakeService() {
  const queues = { listen: [], accept: [], reject: [] };
  const waiters = { listen: [], accept: [], reject: [] };
  const push = (kind, item) => {
    const w = waiters[kind].shift();
    if (w) w(item);
    else queues[kind].push(item);
  };
  // A reject (an accept address plus sb-hc-statusCode) is answered 410, as the service does.
  const verifyClient = (info, cb) => {
    const url = new URL(info.req.url, 'http://127.0.0.1');
    if (url.searchParams.has('sb-hc-statusCode')) {
      push('reject', { req: info.req, parsedUrl: url });
      cb(false, 410, 'Gone');
    } else {
      cb(true);
    }
  };
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, verifyClient });
  wss.on('error', () => {});
  await nextEvent(wss, 'listening', STEP_MS, 'the fake service to listen');
  const { port } = wss.address();
  const sockets = new Set();
  wss.on('connection', (ws, req) => {
    equip(ws);
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.req = req;
    ws.parsedUrl = new URL(req.url, `http://127.0.0.1:${port}`);
    push(ws.parsedUrl.searchParams.get('sb-hc-action') === 'listen' ? 'listen' : 'accept', ws);
  });
  const nextOfKind = (kind, ms, what) => {
    if (queues[kind].length > 0) return Promise.resolve(queues[kind].shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      waiters[kind].push(resolve);
    });
    return withTimeout(p, ms, what).catch((err) => {
      const i = waiters[kind].indexOf(waiter);
      if (i >= 0) waiters[kind].splice(i, 1);
      throw err;
    });
  };
  let closed = false;
  const fake = {
    port,
    listenUri: `ws://127.0.0.1:${port}/$hc/hc?sb-hc-action=listen`,
    acceptAddress: (id) => `ws://127.0.0.1:${port}/$hc/hc?sb-hc-action=accept&sb-hc-id=${encodeURIComponent(id)}`,
    nextControl: (ms = STEP_MS) => nextOfKind('listen', ms, 'a control channel at the fake service'),
    nextAcceptSocket: (ms = STEP_MS) => nextOfKind('accept', ms, 'an accept handshake at the fake service'),
    nextReject: (ms = STEP_MS) => nextOfKind('reject', ms, 'a reject handshake at the fake service'),
    sockets,
    async close() {
      if (closed) return;
      closed = true;
      fakes.delete(fake);
      for (const s of sockets) s.terminate();
      await withTimeout(new Promise((resolve) => wss.close(() => resolve())), STEP_MS, 'the fake service to close');
    }
  };
  fakes.add(fake);
  return fake;
}

/**
 * Parses a text control message.
 *
 * @param {{ data: Buffer, isBinary: boolean }} m A message from `nextMessage`.
 * @returns {any}
 */
export function parseControl(m) {
  assert.equal(m.isBinary, false, 'control messages are text frames');
  try {
    return JSON.parse(m.data.toString());
  } catch {
    return assert.fail(`the control message is not JSON: ${m.data.toString().slice(0, 200)}`);
  }
}

/**
 * A text round trip through an echoing server, with a plain ws sender.
 *
 * @param {any} relay The relay.
 * @param {string} [what] For failure messages.
 * @returns {Promise<void>}
 */
export async function echoRoundTrip(relay, what = 'a sender') {
  const { outcome } = wsSender(relay, 'hc');
  const ws = await expectOpen(outcome, what);
  const nonce = `n-${Math.random().toString(36).slice(2)}`;
  ws.send(nonce);
  const m = await nextMessage(ws, STEP_MS, `the echo at ${what}`);
  assert.equal(m.data.toString(), nonce);
  ws.close(1000);
  await whenClosed(ws, STEP_MS, `${what} to close`);
}

/**
 * Records the relay's events of one type from now on, each with the time it was seen.
 *
 * @param {any} relay The relay.
 * @param {string} type e.g. 'renew'.
 * @returns {Array<{ at: number }>}
 */
export function relayEvents(relay, type) {
  const seen = [];
  relay.on('event', (e) => {
    if (e && e.type === type) seen.push({ ...e, at: Date.now() });
  });
  return seen;
}
