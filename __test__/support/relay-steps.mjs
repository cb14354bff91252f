// Hand-written Azure Relay Hybrid Connections protocol steps for the local relay's tests.
//
// Everything here speaks the wire protocol (PROTOCOL.md) with plain `ws` clients and raw
// sockets; nothing uses a relay client of this package, only its token and URI helpers, so
// that the emulator and these tests cannot share a mistake. Every wait has a timeout that
// fails the test with a message saying what was awaited.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import WebSocket from 'ws';
import hyco, { createRelayListenUri, createRelaySendUri, createRelayToken } from 'hyco-ws-rs';

export { WebSocket };

/** Default time allowed for one protocol step on a loopback socket. */
export const STEP_MS = 5000;

/** Every client socket opened by these helpers, so that a test can end them all. */
const openClients = new Set();

/**
 * Starts the emulator through the package's export, looked up at call time so that the
 * test files load (and fail one test at a time, clearly) even when the export is missing.
 *
 * @param {object} [options] The options of `startLocalRelay`.
 * @returns {Promise<any>} The started relay.
 */
export async function startLocalRelay(options) {
  const start = hyco.startLocalRelay;
  assert.equal(typeof start, 'function', 'hyco-ws-rs does not export startLocalRelay');
  return withTimeout(start(options), 10_000, 'startLocalRelay()');
}

/**
 * Starts a relay, runs `fn` with it, then closes the relay and every client socket these
 * helpers opened, whether `fn` succeeded or not.
 *
 * @param {object|undefined} options The options of `startLocalRelay`.
 * @param {(relay: any) => Promise<any>} fn The test body.
 * @returns {Promise<any>} What `fn` returned.
 */
export async function withRelay(options, fn) {
  const relay = await startLocalRelay(options);
  try {
    return await fn(relay);
  } finally {
    try {
      await withTimeout(relay.close(), 10_000, 'relay.close()');
    } finally {
      endClients();
    }
  }
}

/**
 * Ends (forcibly) every client socket still open from these helpers.
 */
export function endClients() {
  for (const client of openClients) {
    try {
      if (client instanceof WebSocket) {
        client.terminate();
      } else {
        client.destroy();
      }
    } catch {
      // already gone
    }
  }
  openClients.clear();
}

/**
 * A throwaway self-signed certificate (RSA 2048, one day) made with `openssl`, for the
 * relay's `tls` option and the clients' `ca`.
 *
 * @param {string} subjectAltName e.g. `DNS:localhost` or `IP:127.0.0.1`: the only names
 *   clients that check the host name accept.
 * @returns {{ cert: string, key: string }} PEM.
 */
export function makeCertificate(subjectAltName) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-cert-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    const cn = subjectAltName.replace(/^[A-Z]+:/, '');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${subjectAltName}`,
        '-days', '1', '-keyout', keyFile, '-out', certFile],
      { stdio: 'ignore' }
    );
    return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Races `promise` against a timer.
 *
 * @template T
 * @param {Promise<T>} promise What to wait for.
 * @param {number} ms How long to wait.
 * @param {string | (() => string)} what What is awaited, for the failure message (a function
 *   is called at failure time, to report the last state).
 * @returns {Promise<T>} The promise's value, or a rejection naming `what` after `ms`.
 */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const said = typeof what === 'function' ? what() : what;
      reject(new Error(`timed out after ${ms} ms waiting for ${said}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls a condition (every 10 ms) until it holds. For state that has no event of its own,
 * such as `relay.stats()`.
 *
 * @param {() => boolean} predicate The condition.
 * @param {number} ms How long to wait.
 * @param {string | (() => string)} what What is awaited, for the failure message (a function
 *   is called at failure time, to report the last state).
 * @returns {Promise<void>}
 */
export async function waitUntil(predicate, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (predicate()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting until ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Waits for an event on an emitter.
 *
 * @param {import('node:events').EventEmitter} emitter The emitter.
 * @param {string} event The event's name.
 * @param {number} ms How long to wait.
 * @param {string} what What is awaited, for the failure message.
 * @returns {Promise<any[]>} The event's arguments.
 */
export function nextEvent(emitter, event, ms, what) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, what).finally(() => emitter.removeListener(event, handler));
}

/**
 * Equips a client WebSocket with an inbox (every message, kept from the first one) and a
 * promise of its close, registered at creation so that nothing can be missed.
 *
 * @param {WebSocket} ws The socket.
 * @param {{ inbox?: boolean }} [opts] `inbox: false` to keep no messages (bulk transfers).
 * @returns {WebSocket} The same socket.
 */
function equip(ws, opts = {}) {
  openClients.add(ws);
  ws.inbox = [];
  ws.inboxWaiters = [];
  if (opts.inbox !== false) {
    ws.on('message', (data, isBinary) => {
      const waiter = ws.inboxWaiters.shift();
      if (waiter) waiter({ data, isBinary });
      else ws.inbox.push({ data, isBinary });
    });
  }
  ws.closeInfo = new Promise((resolve) => {
    ws.once('close', (code, reason) => {
      openClients.delete(ws);
      resolve({ code, reason: reason.toString() });
    });
  });
  // An 'error' without a listener would crash the test process; failures show up as the
  // handshake outcome or as the close code instead.
  ws.on('error', (err) => {
    ws.lastError = err;
  });
  return ws;
}

/**
 * The next message a helper-made socket receives.
 *
 * @param {WebSocket} ws The socket.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited, for the failure message.
 * @returns {Promise<{ data: Buffer, isBinary: boolean }>}
 */
export function nextMessage(ws, ms = STEP_MS, what = 'a message') {
  if (ws.inbox.length > 0) return Promise.resolve(ws.inbox.shift());
  let waiter;
  const p = new Promise((resolve) => {
    waiter = resolve;
    ws.inboxWaiters.push(resolve);
  });
  return withTimeout(p, ms, what).catch((err) => {
    const i = ws.inboxWaiters.indexOf(waiter);
    if (i >= 0) ws.inboxWaiters.splice(i, 1);
    throw err;
  });
}

/**
 * Waits for a helper-made socket to close.
 *
 * @param {WebSocket} ws The socket.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited, for the failure message.
 * @returns {Promise<{ code: number, reason: string }>} The close code and reason.
 */
export function whenClosed(ws, ms = STEP_MS, what = 'the socket to close') {
  return withTimeout(ws.closeInfo, ms, what);
}

/**
 * Opens a WebSocket and reports how its opening handshake ended, without throwing.
 *
 * @param {string} url The address.
 * @param {string|string[]|undefined} protocols Sub-protocols to offer.
 * @param {object} [options] ws client options (`headers`, `ca`…), plus `inbox: false`.
 * @returns {{ ws: WebSocket, outcome: Promise<{ ok: boolean, ws: WebSocket, statusCode?: number,
 *   statusMessage?: string, headers?: object, error?: Error }> }}
 */
export function attempt(url, protocols, options = {}) {
  const { inbox, ...wsOptions } = options;
  const ws = equip(new WebSocket(url, protocols, wsOptions), { inbox });
  const outcome = new Promise((resolve) => {
    ws.once('open', () => resolve({ ok: true, ws }));
    ws.once('unexpected-response', (req, res) => {
      const result = {
        ok: false,
        ws,
        statusCode: res.statusCode,
        statusMessage: res.statusMessage,
        headers: res.headers
      };
      res.resume();
      ws.terminate();
      resolve(result);
    });
    ws.once('error', (error) => resolve({ ok: false, ws, error }));
  });
  return { ws, outcome };
}

/**
 * Describes a handshake outcome for failure messages.
 *
 * @param {{ ok: boolean, statusCode?: number, statusMessage?: string, error?: Error }} o
 * @returns {string}
 */
export function describeOutcome(o) {
  if (o.ok) return 'the handshake succeeded';
  if (o.statusCode !== undefined) return `HTTP ${o.statusCode} ${JSON.stringify(o.statusMessage)}`;
  return `error ${o.error && (o.error.code || o.error.message)}`;
}

/**
 * Waits for a handshake to succeed.
 *
 * @param {Promise<any>} outcome From `attempt`.
 * @param {string} what What is being opened, for the failure message.
 * @param {number} [ms] How long to wait.
 * @returns {Promise<WebSocket>} The open socket.
 */
export async function expectOpen(outcome, what, ms = STEP_MS) {
  const o = await withTimeout(outcome, ms, `${what} to open`);
  assert.ok(o.ok, `${what}: expected the handshake to succeed, got ${describeOutcome(o)}`);
  return o.ws;
}

/**
 * Waits for a handshake to fail with an HTTP status.
 *
 * @param {Promise<any>} outcome From `attempt`.
 * @param {number|number[]} status The expected status, or any of several.
 * @param {string} what What is being opened, for the failure message.
 * @param {number} [ms] How long to wait.
 * @returns {Promise<{ statusCode: number, statusMessage: string }>}
 */
export async function expectStatus(outcome, status, what, ms = STEP_MS) {
  const o = await withTimeout(outcome, ms, `${what} to be refused`);
  const wanted = Array.isArray(status) ? status : [status];
  assert.ok(
    !o.ok && wanted.includes(o.statusCode),
    `${what}: expected HTTP ${wanted.join(' or ')}, got ${describeOutcome(o)}`
  );
  return o;
}

/**
 * A SAS token signed by hand (PROTOCOL.md), for expiries `createRelayToken` cannot make.
 *
 * @param {string} resource The resource to sign, e.g. `http://127.0.0.1:9000/hc`.
 * @param {string} keyName The rule's name.
 * @param {string} key The rule's key.
 * @param {number} expiry Unix seconds.
 * @returns {string} `SharedAccessSignature sr=…&sig=…&se=…&skn=…`.
 */
export function signToken(resource, keyName, key, expiry) {
  const sr = encodeURIComponent(resource);
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(`${sr}\n${expiry}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${expiry}&skn=${encodeURIComponent(keyName)}`;
}

/**
 * Adds the token (unless `null`) to the headers or to the address.
 *
 * @param {string} uri The address built without a token.
 * @param {string|null} token The token.
 * @param {'header'|'query'} tokenIn Where it goes.
 * @param {object} headers Headers to extend.
 * @returns {string} The address to open.
 */
function placeToken(uri, token, tokenIn, headers) {
  if (token === null) return uri;
  if (tokenIn === 'query') return `${uri}&sb-hc-token=${encodeURIComponent(token)}`;
  headers.ServiceBusAuthorization = token;
  return uri;
}

/**
 * Starts a listener's control-channel handshake (`sb-hc-action=listen`).
 *
 * @param {any} relay The relay.
 * @param {string} path The Hybrid Connection's name.
 * @param {object} [opts]
 * @param {string|null} [opts.token] The token; default a Manage token of the relay's first
 *   rule for this address; `null` for none.
 * @param {'header'|'query'} [opts.tokenIn] Default `header`.
 * @param {string} [opts.id] `sb-hc-id`.
 * @param {string} [opts.namespace] Default `relay.namespace`.
 * @param {object} [opts.wsOptions] More ws client options (`ca`).
 * @returns {ReturnType<typeof attempt>}
 */
export function tryListen(relay, path, opts = {}) {
  const ns = opts.namespace ?? relay.namespace;
  const uri = createRelayListenUri(ns, path, undefined, opts.id);
  const token = opts.token === undefined ? createRelayToken(uri, relay.keyName, relay.key) : opts.token;
  const headers = { ...(opts.headers || {}) };
  const url = placeToken(uri, token, opts.tokenIn || 'header', headers);
  return attempt(url, undefined, { ...(opts.wsOptions || {}), headers });
}

/**
 * Opens a listener's control channel; fails the test if the handshake fails.
 *
 * @param {any} relay The relay.
 * @param {string} path The Hybrid Connection's name.
 * @param {object} [opts] As for `tryListen`.
 * @returns {Promise<WebSocket>} The open control channel.
 */
export function listen(relay, path, opts = {}) {
  return expectOpen(tryListen(relay, path, opts).outcome, `listener on ${path}`);
}

/**
 * Starts a sender's handshake (`sb-hc-action=connect`). It completes only once a listener
 * accepts, so the outcome is awaited separately.
 *
 * @param {any} relay The relay.
 * @param {string} path The Hybrid Connection's name, optionally with `/suffix` and `?query`.
 * @param {object} [opts]
 * @param {string|null} [opts.token] Default a Manage token for this address; `null` for none.
 * @param {'header'|'query'} [opts.tokenIn] Default `header`.
 * @param {string} [opts.id] `sb-hc-id`.
 * @param {object} [opts.headers] Extra request headers.
 * @param {string[]} [opts.protocols] Sub-protocols to offer.
 * @param {string} [opts.namespace] Default `relay.namespace`.
 * @param {object} [opts.wsOptions] More ws client options (`ca`, `inbox: false`).
 * @returns {ReturnType<typeof attempt>}
 */
export function startSender(relay, path, opts = {}) {
  const ns = opts.namespace ?? relay.namespace;
  const uri = createRelaySendUri(ns, path, undefined, opts.id);
  const token = opts.token === undefined ? createRelayToken(uri, relay.keyName, relay.key) : opts.token;
  const headers = { ...(opts.headers || {}) };
  const url = placeToken(uri, token, opts.tokenIn || 'header', headers);
  return attempt(url, opts.protocols, { ...(opts.wsOptions || {}), headers });
}

/**
 * Waits for the next control message and checks that it is an accept.
 *
 * @param {WebSocket} control An open control channel.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited, for the failure message.
 * @returns {Promise<{ address: string, id: string, connectHeaders: object,
 *   remoteEndpoint: { address: string, port: number } }>} The accept's body.
 */
export async function nextAccept(control, ms = STEP_MS, what = 'an accept message on the control channel') {
  const { data, isBinary } = await nextMessage(control, ms, what);
  assert.equal(isBinary, false, 'control messages are text frames');
  let msg;
  try {
    msg = JSON.parse(data.toString());
  } catch {
    assert.fail(`control message is not JSON: ${data.toString().slice(0, 200)}`);
  }
  assert.ok(msg && typeof msg.accept === 'object' && msg.accept !== null, `not an accept: ${data.toString().slice(0, 200)}`);
  return msg.accept;
}

/**
 * Accepts a rendezvous: opens the accept address (no token), choosing a sub-protocol.
 *
 * @param {{ address: string }} accept The accept message's body.
 * @param {object} [opts]
 * @param {string} [opts.protocol] The sub-protocol to echo.
 * @param {object} [opts.wsOptions] More ws client options.
 * @returns {Promise<WebSocket>} The listener's end of the relayed connection.
 */
export function acceptRendezvous(accept, opts = {}) {
  const { outcome } = attempt(accept.address, opts.protocol ? [opts.protocol] : undefined, opts.wsOptions || {});
  return expectOpen(outcome, 'the accept handshake');
}

/**
 * Rejects a rendezvous and checks the relay's 410 answer.
 *
 * @param {{ address: string }} accept The accept message's body.
 * @param {number} statusCode The status for the sender.
 * @param {string} description The description for the sender.
 * @param {object} [wsOptions] More ws client options.
 * @returns {Promise<void>}
 */
export async function rejectRendezvous(accept, statusCode, description, wsOptions = {}) {
  const url = `${accept.address}&sb-hc-statusCode=${statusCode}&sb-hc-statusDescription=${encodeURIComponent(description)}`;
  await expectStatus(attempt(url, undefined, wsOptions).outcome, 410, 'the reject handshake');
}

/**
 * Joins a sender to an open listener: sender handshake, accept message, accept handshake.
 *
 * @param {any} relay The relay.
 * @param {WebSocket} control The listener's open control channel on `path`.
 * @param {string} path The address the sender uses.
 * @param {object} [opts] `startSender` options, plus `protocol` (the listener's choice).
 * @returns {Promise<{ sender: WebSocket, peer: WebSocket, accept: object }>} `peer` is the
 *   listener's end.
 */
export async function connectPair(relay, control, path, opts = {}) {
  const s = startSender(relay, path, opts);
  const accept = await nextAccept(control);
  const peer = await acceptRendezvous(accept, { protocol: opts.protocol, wsOptions: opts.wsOptions });
  const sender = await expectOpen(s.outcome, `sender on ${path}`);
  return { sender, peer, accept };
}

/**
 * Proves the relay serves: a fresh listener, a sender, an accept, a message each way, then
 * everything closed again.
 *
 * @param {any} relay The relay.
 * @param {string} [path] A Hybrid Connection the relay allows, with no other listener on it
 *   (senders are spread across listeners at random).
 * @param {object} [opts] `listen`/`startSender` options (`namespace`, `wsOptions`).
 * @returns {Promise<void>}
 */
export async function roundTrip(relay, path = 'hc', opts = {}) {
  const control = await listen(relay, path, opts);
  try {
    const { sender, peer } = await connectPair(relay, control, path, opts);
    const nonce = crypto.randomBytes(8).toString('hex');
    sender.send(`ping ${nonce}`);
    const atListener = await nextMessage(peer, STEP_MS, 'the sender\'s message at the listener');
    assert.equal(atListener.data.toString(), `ping ${nonce}`);
    peer.send(Buffer.from(`pong ${nonce}`));
    const atSender = await nextMessage(sender, STEP_MS, 'the listener\'s message at the sender');
    assert.equal(atSender.isBinary, true);
    assert.equal(atSender.data.toString(), `pong ${nonce}`);
    sender.close(1000);
    await whenClosed(sender, STEP_MS, 'the round-trip sender to close');
    await whenClosed(peer, STEP_MS, 'the round-trip listener side to close');
  } finally {
    control.close();
  }
  await whenClosed(control, STEP_MS, 'the round-trip control channel to close');
}

/**
 * Opens a raw TCP connection to the relay, tracked for cleanup, that records what it
 * receives and resolves `ended` when the connection is over (end, close or error).
 *
 * @param {number} port The relay's port.
 * @returns {Promise<net.Socket & { received: Buffer[], ended: Promise<void>, text: () => string }>}
 */
export async function rawConnect(port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  openClients.add(socket);
  socket.received = [];
  socket.text = () => Buffer.concat(socket.received).toString('latin1');
  socket.on('data', (chunk) => socket.received.push(chunk));
  socket.ended = new Promise((resolve) => {
    const done = () => {
      openClients.delete(socket);
      resolve();
    };
    socket.once('close', done);
    socket.once('end', done);
    socket.on('error', done);
  });
  await nextEvent(socket, 'connect', STEP_MS, 'a raw TCP connection to the relay');
  return socket;
}

/**
 * Waits until a raw socket has received something matching `test`, or has ended.
 *
 * @param {Awaited<ReturnType<typeof rawConnect>>} socket The raw socket.
 * @param {(text: string) => boolean} test Checked on all data so far (latin1).
 * @param {number} ms How long to wait.
 * @param {string} what What is awaited, for the failure message.
 * @returns {Promise<'matched'|'ended'>}
 */
export function rawWaitFor(socket, test, ms, what) {
  if (test(socket.text())) return Promise.resolve('matched');
  let onData;
  const matched = new Promise((resolve) => {
    onData = () => {
      if (test(socket.text())) resolve('matched');
    };
    socket.on('data', onData);
  });
  return withTimeout(
    Promise.race([matched, socket.ended.then(() => (test(socket.text()) ? 'matched' : 'ended'))]),
    ms,
    what
  ).finally(() => socket.removeListener('data', onData));
}
