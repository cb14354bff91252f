// Steps for the tests of the relayed sender socket (`relayedConnect`), written from the ws 8
// contract (shared/design/ws-compat-checklist.md), not from the implementation.
//
// "S" is the socket under test, made with `relayedConnect`; "peer" is the listener's accept
// socket, a plain ws 8 client (from relay-steps.mjs). Every socket made here is recorded from
// its creation (every event, in order, with the readyState at the time), so that nothing is
// missed and the order of 'error' / 'close' / 'open' can be checked; and every one is ended by
// `endSockets()`, which `withListener` calls whether the test passed or not.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import hyco, { createRelaySendUri, createRelayToken } from 'hyco-ws-rs';

import { STEP_MS, acceptRendezvous, listen, nextAccept, withRelay, withTimeout } from './relay-steps.mjs';

/** The package's root directory, for child processes. */
export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Options of every plain-ws peer: the relay negotiates no extension. */
export const PEER_OPTIONS = Object.freeze({ perMessageDeflate: false });

export const MiB = 1024 * 1024;

/**
 * The API under test, looked up at call time so that the files load (and fail one test at a
 * time, clearly) while the export is missing.
 *
 * @returns {{ relayedConnect: Function, WebSocket: any, createWebSocketStream: Function }}
 */
export function api() {
  if (process.env.HYCO_SOCKET_TESTS_REFERENCE === 'ws') return wsReference();
  assert.equal(typeof hyco.relayedConnect, 'function', 'hyco-ws-rs does not export relayedConnect (yet)');
  return {
    relayedConnect: hyco.relayedConnect,
    WebSocket: hyco.WebSocket,
    createWebSocketStream: hyco.createWebSocketStream
  };
}

/**
 * Reference mode (HYCO_SOCKET_TESTS_REFERENCE=ws): `relayedConnect` played by a plain ws 8
 * client, to check these tests against ws itself. Only for developing the tests: where the
 * package documents a deviation from ws (handshake errors, argument checks), ws fails.
 *
 * @returns {{ relayedConnect: Function, WebSocket: any, createWebSocketStream: Function }}
 */
function wsReference() {
  const WS = hyco.WebSocket;
  const relayedConnect = (address, token, options, fn) => {
    if (typeof options === 'function') {
      fn = options;
      options = undefined;
    }
    const { protocols, headers, id, ...rest } = options || {};
    let url = address;
    if (id !== undefined) {
      const u = new URL(address);
      u.searchParams.set('sb-hc-id', id);
      url = u.href;
    }
    const h = { ...(headers || {}) };
    if (token !== null && token !== undefined) h.ServiceBusAuthorization = token;
    const ws = new WS(url, protocols, { perMessageDeflate: false, ...rest, headers: h });
    if (fn) ws.on('open', () => fn(ws));
    return ws;
  };
  return { relayedConnect, WebSocket: WS, createWebSocketStream: hyco.createWebSocketStream };
}

const EVENTS = ['open', 'message', 'close', 'error', 'ping', 'pong'];
const records = new WeakMap();
const sockets = new Set();

/**
 * Records every event of `S` from now on (type, arguments, readyState and bufferedAmount at
 * the time), and registers it for `endSockets()`. The 'error' listener this adds also keeps a
 * stray 'error' from crashing the test process.
 *
 * @param {any} S A socket made by `relayedConnect`.
 * @returns {any} `S`.
 */
export function track(S) {
  const rec = { log: [], cursors: new Map(), waiters: new Set() };
  records.set(S, rec);
  sockets.add(S);
  for (const type of EVENTS) {
    S.on(type, (...args) => {
      rec.log.push({ type, args, readyState: S.readyState, bufferedAmount: S.bufferedAmount, at: Date.now() });
      if (type === 'close') sockets.delete(S);
      for (const wake of [...rec.waiters]) wake();
    });
  }
  return S;
}

/**
 * `relayedConnect(...args)`, recorded. Trailing `undefined` arguments are left off so that the
 * call is exactly what a user would write.
 *
 * @param {...any} args The arguments of `relayedConnect`.
 * @returns {any} The socket.
 */
export function relayed(...args) {
  while (args.length > 2 && args[args.length - 1] === undefined) args.pop();
  return track(api().relayedConnect(...args));
}

/**
 * Every event recorded on `S` so far, in order.
 *
 * @param {any} S A tracked socket.
 * @returns {Array<{ type: string, args: any[], readyState: number, bufferedAmount: number, at: number }>}
 */
export function eventsOf(S) {
  return records.get(S).log;
}

/**
 * The types of every event recorded on `S` so far, in order (e.g. `['open', 'close']`).
 *
 * @param {any} S A tracked socket.
 * @returns {string[]}
 */
export function typesOf(S) {
  return eventsOf(S).map((e) => e.type);
}

/**
 * The next recorded event of `type` not yet returned by this function, waiting for it.
 *
 * @param {any} S A tracked socket.
 * @param {string} type The event.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited, for the failure message.
 * @returns {Promise<{ type: string, args: any[], readyState: number, bufferedAmount: number, at: number }>}
 */
export function next(S, type, ms = STEP_MS, what = `S's '${type}' event`) {
  const rec = records.get(S);
  assert.ok(rec, 'next() on a socket that is not tracked');
  const find = () => {
    const start = rec.cursors.get(type) ?? 0;
    for (let i = start; i < rec.log.length; i++) {
      if (rec.log[i].type === type) {
        rec.cursors.set(type, i + 1);
        return rec.log[i];
      }
    }
    rec.cursors.set(type, rec.log.length);
    return undefined;
  };
  const found = find();
  if (found) return Promise.resolve(found);
  let wake;
  const p = new Promise((resolve) => {
    wake = () => {
      // Once served, a waiter takes nothing more (a later event is for the next caller).
      if (!rec.waiters.has(wake)) return;
      const e = find();
      if (e) {
        rec.waiters.delete(wake);
        resolve(e);
      }
    };
    rec.waiters.add(wake);
  });
  return withTimeout(p, ms, `${what} (events so far: ${typesOf(S).join(', ') || 'none'})`).finally(() =>
    rec.waiters.delete(wake)
  );
}

/**
 * The next message S receives (see `next`).
 *
 * @param {any} S A tracked socket.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited.
 * @returns {Promise<{ data: any, isBinary: boolean }>}
 */
export async function nextMessageOf(S, ms = STEP_MS, what = 'a message at S') {
  const e = await next(S, 'message', ms, what);
  return { data: e.args[0], isBinary: e.args[1] };
}

/**
 * Waits for S's 'close' and checks the ws 8 argument types.
 *
 * @param {any} S A tracked socket.
 * @param {number} [ms] How long to wait.
 * @param {string} [what] What is awaited.
 * @returns {Promise<{ code: number, reason: Buffer, readyState: number, at: number }>}
 */
export async function closeOf(S, ms = STEP_MS, what = "S's 'close' event") {
  const e = await next(S, 'close', ms, what);
  const [code, reason] = e.args;
  assert.equal(typeof code, 'number', "'close' code is a number");
  assert.ok(Buffer.isBuffer(reason), `'close' reason is a Buffer (got ${Object.prototype.toString.call(reason)})`);
  return { code, reason, readyState: e.readyState, at: e.at };
}

/**
 * Waits for a failed opening handshake: 'error' then 'close' (1006, empty Buffer), no 'open',
 * readyState CLOSED in 'close', and the token's signature nowhere in the error.
 *
 * @param {any} S A tracked socket.
 * @param {string|null|undefined} token The token S was given (its `sig=` must not leak).
 * @param {number} [ms] How long to wait.
 * @returns {Promise<Error>} The error.
 */
export async function handshakeFailure(S, token, ms = STEP_MS) {
  const closed = await closeOf(S, ms, "S's 'close' after a failed handshake");
  const types = typesOf(S);
  assert.deepEqual(types, ['error', 'close'], `a failed handshake emits 'error' then 'close', nothing else (got ${types})`);
  assert.equal(closed.code, 1006);
  assert.equal(closed.reason.length, 0, 'the close reason is empty');
  assert.equal(closed.readyState, 3, "readyState is CLOSED in 'close'");
  assert.equal(S.readyState, 3);
  const err = eventsOf(S)[0].args[0];
  assert.ok(err instanceof Error, `the 'error' argument is an Error (got ${err})`);
  assertNoSecret(err, token);
  return err;
}

/**
 * Fails if an error's message or stack contains the token's signature (raw or URL-decoded).
 *
 * @param {Error} err The error.
 * @param {string|null|undefined} token The token.
 */
export function assertNoSecret(err, token) {
  if (typeof token !== 'string') return;
  const m = /sig=([^&]+)/.exec(token);
  if (!m) return;
  const secrets = new Set([m[1], decodeURIComponent(m[1])]);
  for (const text of [String(err && err.message), String(err && err.stack)]) {
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), `the error reveals the token's signature: ${text.slice(0, 200)}`);
    }
  }
}

/**
 * Observes S for `ms` and fails if an event of `type` not yet consumed by `next` happens
 * (or had happened). Only for proving an absence (a paused socket delivering nothing); it
 * never orders steps.
 *
 * @param {any} S A tracked socket.
 * @param {string} type The event.
 * @param {number} ms The observation window.
 * @param {string} what What must not happen, for the failure message.
 */
export async function expectNoEvent(S, type, ms, what) {
  const rec = records.get(S);
  const start = rec.cursors.get(type) ?? 0;
  await new Promise((resolve) => setTimeout(resolve, ms));
  const extra = rec.log.slice(start).filter((e) => e.type === type);
  assert.equal(extra.length, 0, `${what}: got ${extra.length} '${type}' event(s)`);
}

/**
 * Terminates every recorded socket not yet closed.
 */
export function endSockets() {
  for (const S of sockets) {
    try {
      S.terminate();
    } catch {
      // already gone
    }
  }
  sockets.clear();
}

/**
 * Starts a relay (options `relay`), opens a hand-written listener on `path` (default 'hc';
 * listen options `listen`), and runs `fn` with a context:
 * - `relay`, `control`, `uri` (the send URI), `token` (a Manage token for it);
 * - `start(options, fn)`: `relayedConnect(uri, token, options, fn)`, recorded;
 * - `open(options, { protocol, peerOptions, fn })`: starts S, accepts the rendezvous with a
 *   plain ws client (choosing `protocol`), waits for S's 'open'; returns `{ S, peer, accept }`.
 * Everything is closed afterwards, whether `fn` succeeded or not.
 *
 * @param {object} opts `{ relay, listen, path, peerOptions }`.
 * @param {(ctx: any) => Promise<any>} fn The test body.
 * @returns {Promise<any>}
 */
export function withListener(opts, fn) {
  return withRelay(opts.relay, async (relay) => {
    try {
      const p = opts.path ?? 'hc';
      const control = await listen(relay, p, opts.listen);
      const uri = createRelaySendUri(relay.namespace, p);
      const token = createRelayToken(uri, relay.keyName, relay.key);
      const ctx = {
        relay,
        control,
        uri,
        token,
        start(options, cb) {
          return relayed(uri, token, options, cb);
        },
        async accept(acceptOpts = {}) {
          const accept = await nextAccept(control);
          const peer = await acceptRendezvous(accept, {
            protocol: acceptOpts.protocol,
            wsOptions: { ...PEER_OPTIONS, ...(opts.peerOptions || {}), ...(acceptOpts.peerOptions || {}) }
          });
          return { accept, peer };
        },
        async open(options, openOpts = {}) {
          const S = ctx.start(options, openOpts.fn);
          // If S fails instead, say so rather than time out waiting for the accept.
          const failed = new Promise((_, reject) => {
            S.once('error', (err) => {
              reject(new Error(`S failed before opening: ${err && err.code ? `${err.code}: ` : ''}${err && err.message}`));
            });
          });
          failed.catch(() => {});
          const { accept, peer } = await Promise.race([ctx.accept(openOpts), failed]);
          await Promise.race([next(S, 'open', STEP_MS, "S's 'open'"), failed]);
          return { S, peer, accept };
        }
      };
      return await fn(ctx);
    } finally {
      endSockets();
    }
  });
}

/**
 * Runs a Node.js script in a child process (CommonJS, `-e`), with `HYCO_PKG` set to the
 * package's directory. Kills the child (by its own pid) if it outlives `ms`.
 *
 * @param {string} script The script.
 * @param {object} [opts] `{ env, ms, onStdout }`.
 * @returns {{ child: import('node:child_process').ChildProcess, done: Promise<{ code: number|null,
 *   signal: string|null, stdout: string, stderr: string, timedOut: boolean }> }}
 */
export function runNode(script, opts = {}) {
  const env = { ...process.env, HYCO_PKG: PACKAGE_DIR, ...(opts.env || {}) };
  // The child is a plain script, not part of this test run.
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['-e', script], {
    cwd: PACKAGE_DIR,
    env,
    stdio: ['ignore', 'pipe', 'pipe']
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    stdout += d;
    if (opts.onStdout) opts.onStdout(stdout);
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const ms = opts.ms ?? 20_000;
  const done = new Promise((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
  return { child, done };
}

/**
 * Describes a child's outcome for failure messages.
 *
 * @param {{ code: number|null, signal: string|null, stdout: string, stderr: string, timedOut: boolean }} r
 * @returns {string}
 */
export function describeChild(r) {
  return (
    `exit code ${r.code}, signal ${r.signal}${r.timedOut ? ' (killed: timed out)' : ''}\n` +
    `--- stdout ---\n${r.stdout.slice(-2000)}\n--- stderr ---\n${r.stderr.slice(-2000)}`
  );
}
