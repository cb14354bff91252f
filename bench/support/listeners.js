'use strict';

/**
 * The two Hybrid Connections listeners that `bench/listener.js` compares, behind one small
 * interface, so that the connect measure (listeners in the bench process) and the memory
 * measure (one listener per child process, `bench/support/listener-peer.js`) run exactly the
 * same listener code:
 *
 *   - `rs`: hyco-ws-rs's `new RelayedServer({ server, token })`; its control channel and
 *     accepted sockets run in Rust; `'connection' (socket, req)` fires once the socket is
 *     open. With the environment variable `HYCO_BENCH_PREWARM=0` (inherited by the child
 *     processes) it is `new RelayedServer({ server, token, prewarm: false })`: no spare
 *     connection for the next accept.
 *   - `ws`: a hand-written plain ws 8 listener: a control channel
 *     `new WebSocket(createRelayListenUri(ns, entity), { headers: { ServiceBusAuthorization },
 *     perMessageDeflate: false })`; on each control message `{accept}` it opens
 *     `new WebSocket(accept.address, { perMessageDeflate: false })`, and its "connection"
 *     moment is that accept socket's 'open'.
 *
 * Usage: `const { startListener } = require('./support/listeners');` (a library, not run by
 * hand).
 *
 * Each kind listens on a Hybrid Connection of its own (`bench-rs`, `bench-ws`), so that only
 * one listener serves each. Every accepted socket echoes each message back with the same
 * binary flag. A sender identifies itself with an application query parameter `n` (the
 * relay passes it on in the accept address, and RelayedServer in `req.url`); a binary
 * message of at least 4 bytes must start with the same `n` (uint32, big-endian), else the
 * listener counts a mismatch (the sender and the listener-side socket are not the two ends
 * of one connection).
 */

const { performance } = require('perf_hooks');

const { createRelayListenUri, createRelayToken, RelayedServer, WebSocket } = require('../..');
const { monoMs, withTimeout } = require('./run');

/** The listener kinds, their labels and their Hybrid Connections. */
const KINDS = {
  rs: { key: 'rs', label: 'RelayedServer (hyco-ws-rs)', entity: 'bench-rs' },
  ws: { key: 'ws', label: 'ws 8 listener (hand-written)', entity: 'bench-ws' }
};

const ONLINE_TIMEOUT_MS = 20000;
const SEND_BINARY = { binary: true, compress: false };
const SEND_TEXT = { binary: false, compress: false };
/** How many error messages a listener keeps (it counts them all). */
const KEEP_ERRORS = 5;

/**
 * The `n` query parameter of a URL or request target.
 *
 * @param {String} url An absolute URL (an accept address) or a request target (`/?n=5`)
 * @return {Number} `n`, or `NaN` when there is none
 */
function senderNumber(url) {
  const value = new URL(url, 'ws://localhost/').searchParams.get('n');
  return value === null ? NaN : Number(value);
}

/**
 * Whether an error looks like running out of file descriptors (Node's `EMFILE`, or the
 * Rust side's "Too many open files (os error 24)").
 *
 * @param {?Error} err The error
 * @return {Boolean} Whether it is EMFILE
 */
function isFdExhaustion(err) {
  if (!err) return false;
  return err.code === 'EMFILE' || /EMFILE|too many open files|os error 24/i.test(String(err.message));
}

/**
 * Creates the state and bookkeeping that both listener kinds share.
 *
 * @param {Object} kind An entry of `KINDS`
 * @param {Object} hooks `{ connection(ws, n, t), closed(ws, n, code), problem(message) }`,
 *     all optional: a connection opened at `monoMs()` = `t`; a listener-side
 *     socket closed with `code`; something went wrong that is not a socket's own error
 * @return {Object} The listener (see `startListener`), without its `close`
 */
function baseListener(kind, hooks) {
  const l = {
    kind: kind.key,
    label: kind.label,
    entity: kind.entity,
    /** Listener-side sockets open now. */
    open: new Set(),
    /** Connections that opened. */
    accepted: 0,
    /** Accept handshakes that failed before the socket opened (ws kind only: RelayedServer hides them). */
    acceptFailures: 0,
    /** 'error' events on listener-side sockets, and the first few messages. */
    errors: 0,
    errorMessages: [],
    /** Probes whose `n` did not match the connection's. */
    mismatches: 0,
    /** Close codes of listener-side sockets, counted. */
    closeCodes: {},
    /** Set once `close()` was called: closes after that are expected. */
    closing: false,
    /** Whether an error was EMFILE. */
    fdExhausted: false
  };

  /**
   * Records an error of a socket or of the listener.
   *
   * @param {String} what Where it happened
   * @param {Error} err The error
   */
  l.recordError = (what, err) => {
    l.errors++;
    if (isFdExhaustion(err)) l.fdExhausted = true;
    if (l.errorMessages.length < KEEP_ERRORS) l.errorMessages.push(`${what}: ${err && err.message}`);
  };

  /**
   * Reports something that went wrong with the listener itself.
   *
   * @param {String} message What went wrong
   */
  l.problem = (message) => {
    if (hooks.problem) hooks.problem(`${kind.label}: ${message}`);
  };

  /**
   * Takes an open listener-side socket into service: echo, bookkeeping, hooks.
   *
   * @param {WebSocket} ws The open socket
   * @param {Number} n The sender's number
   * @param {Number} t `monoMs()` when it opened
   */
  l.adopt = (ws, n, t) => {
    l.open.add(ws);
    l.accepted++;
    ws.on('message', (data, isBinary) => {
      if (isBinary && data.length >= 4 && data.readUInt32BE(0) !== n) l.mismatches++;
      ws.send(data, isBinary ? SEND_BINARY : SEND_TEXT);
    });
    ws.once('close', (code) => {
      l.open.delete(ws);
      l.closeCodes[code] = (l.closeCodes[code] || 0) + 1;
      if (hooks.closed) hooks.closed(ws, n, code);
    });
    if (hooks.connection) hooks.connection(ws, n, t);
  };

  /**
   * A snapshot of the counters, for reports across processes.
   *
   * @return {Object} The counters
   */
  l.state = () => ({
    open: l.open.size,
    accepted: l.accepted,
    acceptFailures: l.acceptFailures,
    errors: l.errors,
    errorMessages: l.errorMessages.slice(),
    mismatches: l.mismatches,
    closeCodes: { ...l.closeCodes },
    fdExhausted: l.fdExhausted
  });
  return l;
}


/**
 * Starts hyco-ws-rs's RelayedServer on the kind's Hybrid Connection.
 *
 * @param {Object} relay `{ namespace, keyName, key }`
 * @param {Object} kind `KINDS.rs`
 * @param {Object} hooks See `baseListener`
 * @return {Promise<Object>} The listener, online
 */
async function startRelayedServer(relay, kind, hooks) {
  const l = baseListener(kind, hooks);
  const uri = createRelayListenUri(relay.namespace, kind.entity);
  const server = new RelayedServer({
    server: uri,
    token: createRelayToken(uri, relay.keyName, relay.key),
    prewarm: process.env.HYCO_BENCH_PREWARM !== '0'
  });
  l.server = server;
  server.on('connection', (ws, req) => {
    const t = monoMs();
    ws.on('error', (err) => l.recordError('accepted socket', err));
    l.adopt(ws, senderNumber(req.url), t);
  });
  server.on('warning', (err) => l.problem(`'warning': ${err.message}`));
  server.on('offline', (err) => {
    if (!l.closing) l.problem(`'offline' (the control channel was lost): ${err && err.message}`);
  });
  server.on('connecting', (err) => {
    if (err) {
      if (isFdExhaustion(err)) l.fdExhausted = true;
      if (!l.closing) l.problem(`'connecting' (a reconnect) after: ${err.message}`);
    }
  });
  server.on('error', (err) => {
    l.recordError('server', err);
    l.problem(`'error': ${err.message}`);
  });

  const online = new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  try {
    await withTimeout(online, ONLINE_TIMEOUT_MS, `${kind.label} to be listening`);
  } catch (err) {
    server.close();
    throw err;
  }

  /**
   * `server.close()`: closes the control channel and every connection (1001).
   *
   * @param {Number} timeoutMs How long to wait for the 'close' callback
   * @return {Promise<{ms: Number, clean: Boolean, left: Number}>} How long it took, whether
   *     it called back in time, and how many sockets were still open when it gave up
   */
  l.close = async (timeoutMs) => {
    l.closing = true;
    const t0 = performance.now();
    let clean = true;
    try {
      await withTimeout(new Promise((resolve) => server.close(() => resolve())), timeoutMs, 'RelayedServer.close()');
    } catch {
      clean = false;
    }
    return { ms: performance.now() - t0, clean, left: l.open.size };
  };
  return l;
}

/**
 * Starts the hand-written ws 8 listener on the kind's Hybrid Connection: a control channel,
 * and one accept socket per `{accept}` message.
 *
 * @param {Object} relay `{ namespace, keyName, key }`
 * @param {Object} kind `KINDS.ws`
 * @param {Object} hooks See `baseListener`
 * @return {Promise<Object>} The listener, online
 */
async function startWsListener(relay, kind, hooks) {
  const l = baseListener(kind, hooks);
  const pending = new Set();
  const uri = createRelayListenUri(relay.namespace, kind.entity);
  const control = new WebSocket(uri, {
    headers: { ServiceBusAuthorization: createRelayToken(uri, relay.keyName, relay.key) },
    perMessageDeflate: false
  });
  l.control = control;
  control.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(String(data));
    } catch {
      l.problem(`the control channel sent ${isBinary ? 'binary' : 'non-JSON'}: ${String(data).slice(0, 200)}`);
      return;
    }
    if (!msg.accept) return;
    const address = msg.accept.address;
    const ws = new WebSocket(address, { perMessageDeflate: false });
    pending.add(ws);
    let opened = false;
    ws.once('open', () => {
      const t = monoMs();
      opened = true;
      pending.delete(ws);
      l.adopt(ws, senderNumber(address), t);
    });
    ws.on('error', (err) => {
      if (!opened) l.acceptFailures++;
      l.recordError(opened ? 'accepted socket' : 'accept handshake', err);
    });
    ws.once('close', () => pending.delete(ws));
  });

  await withTimeout(
    new Promise((resolve, reject) => {
      control.once('open', resolve);
      control.once('error', reject);
      control.once('close', (code) => reject(new Error(`the control channel closed (${code}) before opening`)));
    }),
    ONLINE_TIMEOUT_MS,
    `${kind.label}'s control channel to open`
  ).catch((err) => {
    control.terminate();
    if (isFdExhaustion(err)) l.fdExhausted = true;
    throw err;
  });
  control.on('error', (err) => l.recordError('control channel', err));
  control.on('close', (code) => {
    if (!l.closing) l.problem(`the control channel closed (${code})`);
  });

  /**
   * Closes the control channel (1000) and every connection (1001, as RelayedServer does),
   * and waits for all of them; terminates what has not closed in time.
   *
   * @param {Number} timeoutMs How long to wait
   * @return {Promise<{ms: Number, clean: Boolean, left: Number}>} As RelayedServer's
   */
  l.close = async (timeoutMs) => {
    l.closing = true;
    const t0 = performance.now();
    const all = [control, ...l.open, ...pending];
    const closed = all.map((ws) =>
      ws.readyState === WebSocket.CLOSED ? null : new Promise((resolve) => ws.once('close', resolve))
    );
    if (control.readyState === WebSocket.OPEN) control.close(1000);
    else control.terminate();
    for (const ws of l.open) ws.close(1001, 'Server shutting down');
    for (const ws of pending) ws.terminate();
    let clean = true;
    try {
      await withTimeout(Promise.all(closed), timeoutMs, 'the ws 8 listener to close');
    } catch {
      clean = false;
    }
    const left = l.open.size;
    if (!clean) for (const ws of all) ws.terminate();
    return { ms: performance.now() - t0, clean, left };
  };
  return l;
}

/**
 * Starts a listener of `kind` on the relay and resolves once its control channel is online.
 *
 * @param {String} kind `rs` or `ws`
 * @param {Object} relay `{ namespace, keyName, key }` of the relay
 * @param {Object} [hooks] See `baseListener`
 * @return {Promise<Object>} The listener: `{ kind, label, entity, open, accepted,
 *     acceptFailures, errors, errorMessages, mismatches, closeCodes, fdExhausted, state(),
 *     close(timeoutMs) }`
 */
function startListener(kind, relay, hooks = {}) {
  if (kind === 'rs') return startRelayedServer(relay, KINDS.rs, hooks);
  if (kind === 'ws') return startWsListener(relay, KINDS.ws, hooks);
  throw new TypeError(`unknown listener kind: ${kind}`);
}

module.exports = { KINDS, startListener, senderNumber, isFdExhaustion, withTimeout };
