// No panic crosses into Node. A test hook (`testPanic`, armed only with
// HYCO_WS_RS_TEST_HOOKS=1) makes a panic happen inside a napi call, in the next connection
// task, or in the next listener loop; each must end as an error on that object (a thrown
// Error; an 'error' then a close), never an abort, a hang, or an object that never closes;
// and the process must go on, serve the next connection, and exit by itself. Every #[napi]
// function of the addon is checked to catch panics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { withTimeout } from './support/relay-steps.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * The scenario, run in a child process (so that an abort would show as its exit signal):
 * prints one line per observation and exits by itself when everything is closed.
 */
const SCENARIO = String.raw`
const hyco = require('hyco-ws-rs');
const native = require(require('path').join(process.cwd(), 'lib/native')).loadNative();
const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
(async () => {
  try {
    native.testPanic('napi');
    console.log('napi: no throw');
  } catch (err) {
    console.log('napi: threw', err instanceof Error, /as asked/.test(err.message));
  }
  const relay = await hyco.startLocalRelay({ acceptTimeoutMs: 1000 });
  const send = hyco.createRelaySendUri(relay.namespace, 'hc');
  const listen = hyco.createRelayListenUri(relay.namespace, 'hc');
  const token = (uri) => hyco.createRelayToken(uri, relay.keyName, relay.key);

  // A sender whose connection task panics: 'error' then 'close'.
  native.testPanic('socket');
  const ws = hyco.relayedConnect(send, token(send));
  const events = [];
  ws.on('error', (err) => events.push('error ' + err.code));
  const [code] = await once(ws, 'close');
  console.log('socket:', events.join(','), 'close', code, 'readyState', ws.readyState);

  // A listener whose loop panics: 'error' then 'close'.
  native.testPanic('listener');
  const broken = new hyco.RelayedServer({ server: listen, token: token(listen) });
  broken.on('error', (err) => console.log('listener: error', err.code));
  await once(broken, 'close');
  console.log('listener: closed', broken.status);

  // A listener whose natively accepted connection panics: the sender is not served, the
  // listener goes on and serves the next one, and its close does not wait for the panicked
  // accept (an accept timeout longer than the test's own: waiting for it fails the test).
  const server = new hyco.RelayedServer({ server: listen, token: token(listen), acceptTimeout: 600000 });
  server.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })));
  await once(server, 'listening');
  // The sender is a plain ws client, so that the next task to start is the accept's.
  native.testPanic('socket');
  const WebSocket = require('ws');
  const first = new WebSocket(send, { headers: { ServiceBusAuthorization: token(send) } });
  first.on('error', (err) => console.log('first sender: error', err.message));
  await once(first, 'close');
  const second = hyco.relayedConnect(send, token(send));
  await once(second, 'open');
  second.send('still here');
  const [data] = await once(second, 'message');
  console.log('second sender: echo', String(data));
  second.close();
  await once(second, 'close');
  await new Promise((resolve) => server.close(resolve));
  await relay.close();

  // A panic as the event loop starts reading an idle socket itself (inline reads, after a
  // delivery): that socket ends ('error', close 1006), the process goes on. The peer is a
  // plain ws server, whose own sockets take no inline reads.
  const peer = new WebSocket.Server({ host: '127.0.0.1', port: 0 });
  // A message read by the task makes a sparse turn, after which it offers reading. An
  // offer that finds the task still ending its turn is dropped until the next sparse turn,
  // so the peer sends one message per answer (100 at most, then it closes: 1000 here is
  // the failure), as a request/response application would.
  peer.on('connection', (socket) => {
    let left = 100;
    socket.send('hello');
    socket.on('message', () => (--left > 0 ? socket.send('hello') : socket.close()));
  });
  await once(peer, 'listening');
  native.testPanic('inline');
  const idle = hyco.relayedConnect('ws://127.0.0.1:' + peer.address().port + '/', null);
  const idleEvents = [];
  const note = (event) => idleEvents.at(-1) !== event && idleEvents.push(event);
  idle.on('error', (err) => note('error ' + err.code));
  idle.on('open', () => note('open'));
  idle.on('message', (data) => {
    note('message ' + data);
    idle.send('again');
  });
  const [idleCode] = await once(idle, 'close');
  console.log('inline:', idleEvents.join(','), 'close', idleCode);
  await new Promise((resolve) => peer.close(resolve));
  console.log('done');
})().catch((err) => {
  console.log('scenario failed', err && err.stack);
  process.exitCode = 1;
});
`;

/**
 * Runs `script` in a child Node process (cwd: the package) and waits, at most a minute, for it
 * to end.
 *
 * @param {string} script The script, for `node -e`.
 * @param {NodeJS.ProcessEnv} [env] Its environment (default: this process's).
 * @returns {Promise<{ code: number | null, signal: string | null, out: string, err: string }>}
 */
async function runScenario(script, env = process.env) {
  const child = spawn(process.execPath, ['-e', script], { cwd: root, env });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const [code, signal] = await withTimeout(
    new Promise((resolve) => child.on('close', (c, s) => resolve([c, s]))),
    60_000,
    () => `the scenario to end:\n${out}\n${err.slice(0, 2000)}`
  ).finally(() => child.kill('SIGKILL'));
  return { code, signal, out, err };
}

test('a panic in a napi call, a connection task or a listener ends as an error on that object; the process goes on and exits by itself', async () => {
  const { code, signal, out, err } = await runScenario(SCENARIO, {
    ...process.env,
    HYCO_WS_RS_TEST_HOOKS: '1',
    RUST_BACKTRACE: '0'
  });
  assert.equal(signal, null, `no abort:\n${out}\n${err.slice(0, 2000)}`);
  assert.equal(code, 0, `${out}\n${err.slice(0, 2000)}`);
  assert.deepEqual(out.trim().split('\n'), [
    'napi: threw true true',
    'socket: error ERR_INTERNAL close 1006 readyState 3',
    'listener: error ERR_INTERNAL',
    'listener: closed closed',
    // The panicked accept leaves the sender to the relay's accept timeout (504).
    'first sender: error Unexpected server response: 504',
    'second sender: echo still here',
    // Messages in a row are noted once: how many came before the owner took reading over
    // depends on timing.
    'inline: open,message hello,error ERR_INTERNAL close 1006',
    'done'
  ]);
  // The panics did happen (they are reported on stderr by Rust's panic hook).
  assert.equal(err.match(/test hook: a panic/g)?.length, 5, err.slice(0, 2000));
});

/**
 * A native send that throws (as a panic in it would) while the end of a tick hands over the
 * packed frames of two sockets: run in a child process, which reports how the error came out
 * and what the other socket's peer got.
 */
const FLUSH_THROWS = String.raw`
const hyco = require('hyco-ws-rs');
const { native } = require(require('path').join(process.cwd(), 'lib/native-events'));
const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
process.on('unhandledRejection', (err) => console.log('unhandledRejection', err.message));
process.on('uncaughtException', (err) => console.log('uncaughtException', err.message));
(async () => {
  const relay = await hyco.startLocalRelay();
  const send = hyco.createRelaySendUri(relay.namespace, 'hc');
  const listen = hyco.createRelayListenUri(relay.namespace, 'hc');
  const token = (uri) => hyco.createRelayToken(uri, relay.keyName, relay.key);
  const server = new hyco.RelayedServer({ server: listen, token: token(listen) });
  const got = [];
  server.on('connection', (socket) => socket.on('message', (data) => got.push(String(data))));
  await once(server, 'listening');
  const a = hyco.relayedConnect(send, token(send));
  const b = hyco.relayedConnect(send, token(send));
  await Promise.all([once(a, 'open'), once(b, 'open')]);
  const real = native.socketSendBatch;
  let thrown = 0;
  native.socketSendBatch = function (id, ...rest) {
    if (id === a._id && thrown++ === 0) throw new Error('a native failure');
    return real.call(this, id, ...rest);
  };
  if (native.socketSendBatch === real) throw new Error('the addon export could not be replaced');
  const aClosed = once(a, 'close');
  a.send('from a', (err) => console.log('a callback:', err && err.message));
  b.send('from b');
  // The failing socket drops what it could not send from bufferedAmount, and ends.
  await new Promise((resolve) => setImmediate(resolve));
  console.log('a bufferedAmount', a.bufferedAmount);
  const [code] = await aClosed;
  while (got.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  console.log('a closed', code, 'received', got.join(','));
  native.socketSendBatch = real;
  b.close();
  await once(b, 'close');
  await new Promise((resolve) => server.close(resolve));
  await relay.close();
  console.log('done');
})();
`;

test("a native send that throws at the end of a tick: its callbacks fail, its socket ends, the tick's other sockets are flushed, the error is an uncaught exception", async () => {
  const { code, out, err } = await runScenario(FLUSH_THROWS);
  assert.equal(code, 0, `${out}\n${err.slice(0, 2000)}`);
  assert.deepEqual(out.trim().split('\n'), [
    'a callback: WebSocket is not open: readyState 2 (CLOSING)',
    'uncaughtException a native failure',
    'a bufferedAmount 0',
    'a closed 1006 received from b',
    'done'
  ]);
});

test('without HYCO_WS_RS_TEST_HOOKS=1 the hook does nothing', async () => {
  const child = spawn(
    process.execPath,
    ['-e', "const n = require(require('path').join(process.cwd(), 'lib/native')).loadNative(); console.log(n.testPanic('napi'), n.testPanic('socket'))"],
    { cwd: root, env: { ...process.env, HYCO_WS_RS_TEST_HOOKS: '' } }
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  const [code] = await withTimeout(new Promise((resolve) => child.on('close', (c) => resolve([c]))), 30_000, 'the child');
  assert.equal(code, 0);
  assert.equal(out.trim(), 'false false');
});

test('every #[napi] function of the addon catches panics (catch_unwind), async ones excepted (tokio catches those)', () => {
  const dir = new URL('../src/bindings/', import.meta.url);
  const missing = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.rs'))) {
    const lines = readFileSync(new URL(file, dir), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const attr = /^\s*#\[napi(?:\((.*)\))?\]\s*$/.exec(line);
      const next = (lines[i + 1] || '').trim();
      if (!attr || !/^pub fn /.test(next)) return;
      if (!/\bcatch_unwind\b/.test(attr[1] || '')) missing.push(`${file}:${i + 1} ${next}`);
    });
  }
  assert.deepEqual(missing, []);
});
