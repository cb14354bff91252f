// Inbound memory bounds and dead peers. A socket stops reading once its own
// `inboundHighWaterMark` of received messages waits for the event loop, and every socket of
// the process stops once the process's inbound budget (`setInboundBudget`) is spent; a
// stalled event loop then holds no more than that, and no byte is lost when it catches up.
// The peers send from processes of their own while the test blocks its event loop and reads
// the native count (`getInboundBudget().used`), which the event loop does not need to update.
// Then: the heartbeat option (a ping every interval, a silent peer dropped), and accepted
// sockets taking `autoPong`, `closeTimeout` and `heartbeatInterval`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import hyco, { getInboundBudget, relayedConnect, setInboundBudget } from 'hyco-ws-rs';
import { WebSocket, WebSocketServer } from 'ws';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import { listenOptions, newServer, nextConnection, sendAddress, whenListening, withServerRelay } from './support/server-steps.mjs';
import { watched } from './support/inline-steps.mjs';

const blaster = fileURLToPath(new URL('./fixtures/blaster.js', import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;
/** What may pass a limit: the read that crossed it (64 KiB) and a message (64 KiB here). */
const SLACK = 128 * KiB;

/**
 * Starts a blaster process.
 *
 * @param {string[]} args Its arguments.
 * @param {object} [env] More environment.
 * @returns {Promise<{ child: any, lines: string[], next: (re: RegExp) => Promise<string> }>}
 */
async function startBlaster(args, env = {}) {
  const child = spawn(process.execPath, [blaster, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  const waiters = [];
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      for (const w of [...waiters]) w();
    }
  });
  const next = (re) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const line = lines.find((l) => re.test(l));
          if (line === undefined) return false;
          waiters.splice(waiters.indexOf(check), 1);
          resolve(line);
          return true;
        };
        waiters.push(check);
        check();
      }),
      20_000,
      `the blaster to print ${re}`
    );
  return { child, lines, next };
}

/**
 * Blocks the event loop and watches the native count of bytes waiting for it: until it has
 * reached `atLeast` (at most 15 s), then for `observeMs` more.
 *
 * @param {number} atLeast The count to reach.
 * @param {number} observeMs How long to keep watching once it is reached.
 * @returns {{ reached: boolean, max: number }}
 */
function blockAndWatch(atLeast, observeMs) {
  const start = Date.now();
  let max = 0;
  let reachedAt = 0;
  for (;;) {
    const { used } = getInboundBudget();
    if (used > max) max = used;
    const now = Date.now();
    if (!reachedAt && used >= atLeast) reachedAt = now;
    if (reachedAt && now - reachedAt >= observeMs) return { reached: true, max };
    if (!reachedAt && now - start > 15_000) return { reached: false, max };
  }
}

/**
 * The next 'close' of a socket, as `[code, reason]` (events.once would reject on an 'error',
 * which these tests expect before the close).
 *
 * @param {any} ws The socket.
 * @returns {Promise<Array>}
 */
function closeOf(ws) {
  return new Promise((resolve) => ws.once('close', (...args) => resolve(args)));
}

/**
 * Counts a socket's received bytes.
 *
 * @param {any} ws The socket.
 * @returns {{ bytes: number }}
 */
function counter(ws) {
  const c = { bytes: 0 };
  ws.on('message', (data) => {
    c.bytes += data.length;
  });
  return c;
}

test("a socket stops reading at its inboundHighWaterMark; nothing is lost once the event loop catches up", async () => {
  const total = 32 * MiB;
  const peer = await startBlaster(['server', String(total)]);
  try {
    const port = Number((await peer.next(/^port \d+$/)).split(' ')[1]);
    const ws = relayedConnect(`ws://127.0.0.1:${port}/`, null, { inboundHighWaterMark: 256 * KiB, perMessageDeflate: false });
    const received = counter(ws);
    await withTimeout(once(ws, 'open'), STEP_MS, 'the socket to open');
    const { reached, max } = blockAndWatch(256 * KiB, 1500);
    assert.ok(reached, `the socket received its high-water mark while the loop was blocked (max ${max})`);
    assert.ok(max <= 256 * KiB + SLACK, `at most the mark (+ one read and one message) waited: ${max} bytes`);
    await waitUntil(() => received.bytes === total, 30_000, () => `every byte (${received.bytes} of ${total})`);
    assert.equal(getInboundBudget().used, 0);
    ws.close();
    await withTimeout(once(ws, 'close'), STEP_MS, 'the close');
  } finally {
    peer.child.stdin.end();
  }
});

test('the process budget holds every socket back once spent; setInboundBudget checks its argument', async () => {
  assert.throws(() => setInboundBudget(-1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => setInboundBudget(1.5), { name: 'RangeError' });
  assert.throws(() => setInboundBudget('1'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.equal(getInboundBudget().limit, 256 * MiB, 'the default');
  const total = 16 * MiB;
  const peer = await startBlaster(['server', String(total)]);
  const before = setInboundBudget(1 * MiB);
  assert.equal(before, 256 * MiB);
  try {
    const port = Number((await peer.next(/^port \d+$/)).split(' ')[1]);
    // Each socket alone may hold 16 MiB: the budget is what stops them.
    const sockets = [0, 1, 2].map(() => relayedConnect(`ws://127.0.0.1:${port}/`, null, { perMessageDeflate: false }));
    const counts = sockets.map(counter);
    await withTimeout(Promise.all(sockets.map((s) => once(s, 'open'))), STEP_MS, 'the sockets to open');
    const { reached, max } = blockAndWatch(1 * MiB, 1500);
    assert.ok(reached, `the budget was reached while the loop was blocked (max ${max})`);
    assert.ok(max <= 1 * MiB + 3 * SLACK, `at most the budget (+ a read and a message per socket) waited: ${max} bytes`);
    await waitUntil(() => counts.every((c) => c.bytes === total), 30_000, () => `every byte (${counts.map((c) => c.bytes)} of ${total} each)`);
    for (const s of sockets) s.close();
    await withTimeout(Promise.all(sockets.map((s) => once(s, 'close'))), STEP_MS, 'the closes');
  } finally {
    setInboundBudget(before);
    peer.child.stdin.end();
  }
});

test("an accepted socket stops at the server's inboundHighWaterMark", async () => {
  await withServerRelay(undefined, async (relay) => {
    const server = newServer(listenOptions(relay, 'hc', { inboundHighWaterMark: 256 * KiB }));
    await whenListening(server);
    const { uri, token } = sendAddress(relay);
    const total = 8 * MiB;
    const peer = await startBlaster(['sender', String(total), uri], { TOKEN: token });
    try {
      const { socket } = await nextConnection(server);
      const received = counter(socket);
      const { reached, max } = blockAndWatch(256 * KiB, 1500);
      assert.ok(reached, `the accepted socket received its high-water mark (max ${max})`);
      assert.ok(max <= 256 * KiB + SLACK, `at most the mark waited: ${max} bytes`);
      await waitUntil(() => received.bytes === total, 30_000, () => `every byte (${received.bytes} of ${total})`);
    } finally {
      peer.child.stdin.end();
    }
  });
});

test("heartbeatInterval: a ping every interval; a peer that does not answer is dropped with 'error' ETIMEDOUT and 'close' 1006; one that answers stays", async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false });
  await once(wss, 'listening');
  const answering = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(answering, 'listening');
  try {
    const pings = [];
    wss.on('connection', (peer) => peer.on('ping', () => pings.push(Date.now())));
    const ws = relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, null, { heartbeatInterval: 200 });
    const events = [];
    ws.on('error', (err) => events.push(`error ${err.code} ${err.message}`));
    const [code] = await withTimeout(closeOf(ws), STEP_MS, 'the silent peer to be dropped');
    assert.equal(code, 1006);
    assert.deepEqual(events, ['error ETIMEDOUT WebSocket heartbeat timed out: no pong within 200 ms']);
    assert.equal(pings.length, 1, 'one ping, unanswered');

    let seen = 0;
    const pinged = new Promise((resolve) =>
      answering.on('connection', (peer) => peer.on('ping', () => ++seen === 3 && resolve()))
    );
    const alive = relayedConnect(`ws://127.0.0.1:${answering.address().port}/`, null, { heartbeatInterval: 100 });
    alive.on('error', (err) => assert.fail(`no error expected: ${err.message}`));
    await withTimeout(pinged, STEP_MS, 'three heartbeats answered');
    assert.equal(alive.readyState, WebSocket.OPEN);
    alive.close();
    await withTimeout(once(alive, 'close'), STEP_MS, 'the close');

    // A peer that keeps sending but never answers is dropped too (messages are no pong).
    // permessage-deflate agreed, so that the connection's own thread reads, not the loop.
    const chatty = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false, perMessageDeflate: true });
    await once(chatty, 'listening');
    const timers = new Set();
    chatty.on('connection', (peer) => {
      const t = setInterval(() => peer.send('still here'), 30);
      timers.add(t);
      peer.on('close', () => clearInterval(t));
    });
    try {
      const talker = relayedConnect(`ws://127.0.0.1:${chatty.address().port}/`, null, { heartbeatInterval: 100, perMessageDeflate: true });
      const heard = [];
      talker.on('message', () => heard.push(1));
      talker.on('error', (err) => heard.push(`error ${err.code}`));
      const [talkerCode] = await withTimeout(closeOf(talker), STEP_MS, 'the peer that never pongs to be dropped');
      assert.equal(talkerCode, 1006);
      assert.ok(heard.includes('error ETIMEDOUT'), `dropped by the heartbeat: ${heard.filter((h) => h !== 1)}`);
      assert.equal(talker.extensions, 'permessage-deflate');
    } finally {
      for (const t of timers) clearInterval(t);
      chatty.close();
    }
    assert.throws(() => relayedConnect('ws://127.0.0.1:1/', null, { heartbeatInterval: -1 }), { name: 'RangeError' });
    assert.throws(() => relayedConnect('ws://127.0.0.1:1/', null, { inboundHighWaterMark: 0 }), { name: 'RangeError' });
  } finally {
    wss.close();
    answering.close();
  }
});

test('heartbeatInterval: a peer that answers is not dropped while the event loop is busy, whether the loop reads the socket or reading is held', async () => {
  // total 0: an idle socket, which the event loop reads itself (inline reads); 8 MiB: a
  // socket whose reading is held at its high-water mark while the loop is blocked. Either
  // way the pongs wait unread for more than two intervals.
  for (const total of [0, 8 * MiB]) {
    const peer = await startBlaster(['server', String(total)]);
    try {
      const port = Number((await peer.next(/^port \d+$/)).split(' ')[1]);
      const ws = relayedConnect(`ws://127.0.0.1:${port}/`, null, {
        heartbeatInterval: 100,
        inboundHighWaterMark: 256 * KiB,
        perMessageDeflate: false
      });
      const events = [];
      ws.on('error', (err) => events.push(`error ${err.code} ${err.message}`));
      ws.on('close', (code) => events.push(`close ${code}`));
      const received = counter(ws);
      await withTimeout(once(ws, 'open'), STEP_MS, 'the socket to open');
      if (total === 0) {
        await waitUntil(() => watched() === 1, STEP_MS, 'the idle socket to be read by the event loop');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      } else {
        const { reached, max } = blockAndWatch(256 * KiB, 1000);
        assert.ok(reached, `reading was held at the high-water mark (max ${max})`);
        await waitUntil(() => received.bytes === total, 30_000, () => `every byte (${received.bytes} of ${total})`);
      }
      // Whatever the socket went through while the loop was blocked comes before this pong.
      ws.ping();
      await withTimeout(once(ws, 'pong'), STEP_MS, 'a pong after the busy loop');
      assert.deepEqual(events, [], `total ${total}: the connection lives`);
      assert.equal(ws.readyState, ws.OPEN);
      ws.close();
      await withTimeout(once(ws, 'close'), STEP_MS, 'the close');
    } finally {
      peer.child.stdin.end();
    }
  }
});

test('heartbeatInterval: a pong later than the interval drops an idle socket that the event loop reads, as one its own thread reads', async () => {
  // The peer answers each ping after one and a half intervals: late. An idle socket is read
  // by the event loop (inline reads); the connection's thread used to grant it an interval
  // more (it could not tell an unread pong from a missing one), so a dead peer took up to
  // twice as long to detect there. It takes the socket back and reads it itself now.
  const interval = 400;
  // permessage-deflate when the client offers it: a compressed socket is read by its own
  // thread (the comparison); an uncompressed idle one by the event loop.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false, perMessageDeflate: true });
  await once(wss, 'listening');
  const timers = new Set();
  wss.on('connection', (peer) => {
    peer.send('hello');
    peer.on('ping', (data) => timers.add(setTimeout(() => peer.pong(data), interval * 1.5)));
  });
  try {
    for (const inline of [true, false]) {
      // Watchers of earlier tests' sockets may still be in the table: this one's adds one.
      const before = watched();
      const ws = relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, null, {
        heartbeatInterval: interval,
        perMessageDeflate: inline ? false : true
      });
      const events = [];
      ws.on('error', (err) => events.push(`error ${err.code}`));
      // Listened for at once: a loaded machine may stall past the drop before the waits below.
      const closed = closeOf(ws);
      await withTimeout(once(ws, 'message'), STEP_MS, 'the first message');
      let readInline = false;
      if (inline) {
        await waitUntil(
          () => (readInline ||= watched() > before) || ws.readyState === ws.CLOSED,
          STEP_MS,
          'the idle socket to be read by the event loop'
        );
        assert.ok(readInline, 'the socket was read by the event loop before it was dropped');
      }
      const [code] = await withTimeout(closed, STEP_MS, `the late peer to be dropped (inline ${inline})`);
      assert.equal(code, 1006);
      assert.deepEqual(events, ['error ETIMEDOUT'], `inline ${inline}`);
    }
  } finally {
    for (const t of timers) clearTimeout(t);
    wss.close();
  }
});

test('accepted sockets take autoPong, closeTimeout and heartbeatInterval', async () => {
  await withServerRelay(undefined, async (relay) => {
    const server = newServer(listenOptions(relay, 'hc', { autoPong: false, closeTimeout: 300, heartbeatInterval: 200 }));
    await whenListening(server);
    const { uri, token } = sendAddress(relay);

    // autoPong: false: the application answers pings itself.
    const sender = new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, autoPong: true });
    await withTimeout(once(sender, 'open'), STEP_MS, 'the sender');
    const { socket } = await nextConnection(server);
    const pongs = [];
    sender.on('pong', (d) => pongs.push(String(d)));
    const pinged = once(socket, 'ping');
    sender.ping('first');
    await withTimeout(pinged, STEP_MS, "the accepted socket's 'ping'");
    const ponged = once(sender, 'pong');
    socket.pong('by hand');
    await withTimeout(ponged, STEP_MS, 'the pong sent by hand');
    assert.deepEqual(pongs, ['by hand'], 'no automatic pong');

    // closeTimeout: a peer that never answers the close frame is dropped after 300 ms.
    sender._socket.pause();
    const started = Date.now();
    socket.close(1000);
    const [code] = await withTimeout(once(socket, 'close'), STEP_MS, 'the close to time out');
    assert.equal(code, 1006, 'no close frame came back');
    assert.ok(Date.now() - started < 5000);
    sender.terminate();

    // heartbeatInterval: a sender that answers no ping is dropped.
    const silent = new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, autoPong: false });
    await withTimeout(once(silent, 'open'), STEP_MS, 'the silent sender');
    const { socket: accepted } = await nextConnection(server);
    const errors = [];
    accepted.on('error', (err) => errors.push(err.code));
    const [dropped] = await withTimeout(closeOf(accepted), STEP_MS, 'the silent sender to be dropped');
    assert.equal(dropped, 1006);
    assert.deepEqual(errors, ['ETIMEDOUT']);
    await withTimeout(once(silent, 'close'), STEP_MS, "the sender's side to close too");
    assert.ok(hyco.RelayedServer);
  });
});
