// How events reach JavaScript: one call per delivery (or per part of a long one), its
// values passed as arguments, and the small payloads of a part copied into one ArrayBuffer
// (src/bindings/delivery.rs, lib/native-events.js); a socket's small messages of one read
// go up as one run (src/bindings/run.rs, lib/websocket.js). lib/ cuts both into views.
// Whatever the grouping, every message must arrive once, whole, in order, as a Buffer of
// its own bytes (or whatever binaryType asks for), with pings, fragments and the close
// reason intact; pause() and a throwing listener must act between the messages of a run as
// between separate events; and a view may keep at most about 16.5 KiB alive (ws's messages
// keep the chunk their socket read, up to 64 KiB). The peer is a plain ws 8 server on
// 127.0.0.1 that sends a burst in one go, so that the socket reads many messages at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createRequire } from 'node:module';

import { WebSocketServer } from 'ws';
import { relayedConnect } from 'hyco-ws-rs';

import { STEP_MS, withTimeout } from './support/relay-steps.mjs';
import { runNode, describeChild } from './support/socket-steps.mjs';

const require = createRequire(import.meta.url);

/** Sizes a mixed burst cycles through: empty, small, at and over the grouping limit (512). */
const MIXED = [0, 1, 63, 64, 100, 511, 512, 600, 4096, 7];
/** Sizes a burst of small messages cycles through. */
const SMALL = [0, 1, 63, 64, 100, 300, 511, 7];
const COUNT = 3000;
/** The most a message's buffer may be: a run of 16 KiB and its last message and words. */
const MAX_HELD = 16 * 1024 + 1024;

/**
 * Message `i` of a burst of `sizes`: its payload and whether it is binary (one in five is
 * text).
 *
 * @param {number} i Its index.
 * @param {number[]} [sizes] The sizes the burst cycles through.
 * @returns {{ payload: Buffer, binary: boolean }}
 */
function message(i, sizes = MIXED) {
  const size = sizes[i % sizes.length];
  const binary = i % 5 !== 0;
  const payload = Buffer.alloc(size);
  for (let k = 0; k < size; k++) payload[k] = binary ? (i * 7 + k) & 0xff : 0x61 + ((i + k) % 26);
  return { payload, binary };
}

/**
 * A ws 8 server on 127.0.0.1 whose connections get a burst of `sizes` at once: `COUNT`
 * messages (every 97th in two fragments), a ping with data every 50, then a close with a
 * reason (unless `close` is false).
 *
 * @param {number[]} [sizes] The sizes the burst cycles through.
 * @param {boolean} [close] Whether the server closes after the burst.
 * @returns {Promise<{ url: string, close: () => Promise<void> }>}
 */
async function burstServer(sizes = MIXED, close = true) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  wss.on('connection', (peer) => {
    for (let i = 0; i < COUNT; i++) {
      const { payload, binary } = message(i, sizes);
      if (i % 97 === 0 && payload.length > 1) {
        const half = payload.length >> 1;
        peer.send(payload.subarray(0, half), { binary, fin: false });
        peer.send(payload.subarray(half), { binary, fin: true });
      } else {
        peer.send(payload, { binary });
      }
      if (i % 50 === 0) peer.ping(Buffer.from(`ping ${i}`));
    }
    if (close) peer.close(1000, 'bye');
    else peer.on('close', () => {});
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    close: async () => {
      for (const p of wss.clients) p.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  };
}

/**
 * Connects to `url` with `binaryType` and collects everything until the close.
 *
 * @param {string} url The server.
 * @param {string} binaryType The socket's binaryType.
 * @returns {Promise<{ messages: Array<[any, boolean]>, pings: Buffer[], code: number, reason: Buffer }>}
 */
async function collect(url, binaryType) {
  const S = relayedConnect(url, undefined, { perMessageDeflate: false });
  S.binaryType = binaryType;
  const messages = [];
  const pings = [];
  S.on('message', (data, isBinary) => messages.push([data, isBinary]));
  S.on('ping', (data) => pings.push(data));
  S.on('error', () => {});
  const [code, reason] = await withTimeout(once(S, 'close'), STEP_MS, 'the burst and the close');
  return { messages, pings, code, reason };
}

/**
 * Checks a burst of `sizes` as `collect` got it: every message once, whole, in order, a
 * Buffer of its own bytes with its flag; pings and the close reason intact. Returns how
 * many whole small messages came, and in how many buffers.
 *
 * @param {object} got What `collect` returned.
 * @param {number[]} sizes The burst's sizes.
 * @returns {{ small: number, buffers: number }}
 */
function checkBurst(got, sizes) {
  assert.equal(got.messages.length, COUNT);
  // Checked once everything has arrived: later deliveries must not have touched earlier
  // messages.
  const buffers = new Set();
  let small = 0;
  got.messages.forEach(([data, isBinary], i) => {
    const { payload, binary } = message(i, sizes);
    assert.ok(Buffer.isBuffer(data), `message ${i} is a Buffer`);
    assert.equal(isBinary, binary, `message ${i}'s flag`);
    assert.ok(data.equals(payload), `message ${i}: ${data.length} bytes, ${payload.length} sent`);
    if (payload.length < 512 && !(i % 97 === 0 && payload.length > 1)) {
      small++;
      buffers.add(data.buffer);
      assert.ok(data.buffer.byteLength <= MAX_HELD, `message ${i} keeps ${data.buffer.byteLength} bytes alive`);
    }
  });
  assert.deepEqual(
    got.pings.map(String),
    Array.from({ length: COUNT / 50 }, (_, k) => `ping ${k * 50}`)
  );
  if (got.code !== undefined) {
    assert.equal(got.code, 1000);
    assert.ok(Buffer.isBuffer(got.reason));
    assert.equal(String(got.reason), 'bye');
  }
  return { small, buffers: buffers.size };
}

test('a mixed burst: each message whole, in order, a Buffer of its own bytes, with its flag; pings and the close reason intact', async () => {
  const server = await burstServer(MIXED);
  try {
    const { small, buffers } = checkBurst(await collect(server.url, 'nodebuffer'), MIXED);
    // Runs end at every large message here (every seventh or so) and with every read:
    // still shared (each message had a buffer of its own before runs and packs).
    assert.ok(buffers < small / 2, `${small} small messages in ${buffers} buffers`);
  } finally {
    await server.close();
  }
});

test('a burst of small messages comes in runs: a few buffers, none of more than about 16.5 KiB', async () => {
  const server = await burstServer(SMALL);
  try {
    const { small, buffers } = checkBurst(await collect(server.url, 'nodebuffer'), SMALL);
    // Pings (every 50) and fragmented messages (every 97) end runs, and so does every read:
    // 180-230 buffers on a quiet machine, 389 once with the whole suite running (each
    // message had a buffer of its own before runs and packs).
    assert.ok(buffers < small / 3, `${small} small messages in ${buffers} buffers`);
  } finally {
    await server.close();
  }
});

test('pause() from a listener in the middle of a run holds the rest until resume(), in order', async () => {
  // The server does not close after the burst: a close delivers what was read at once,
  // paused or not (as ws), which is not what this test is about.
  const server = await burstServer(SMALL, false);
  try {
    const S = relayedConnect(server.url, undefined, { perMessageDeflate: false });
    const got = [];
    const pings = [];
    let paused = false;
    let early = 0;
    const all = new Promise((resolve) => {
      S.on('message', (data, isBinary) => {
        if (paused) early++;
        got.push([data, isBinary]);
        if (got.length === 100 || got.length === 1000) {
          // The rest of this run is in the same delivery: delivered now, it would come
          // before this setImmediate.
          paused = true;
          S.pause();
          setImmediate(() => {
            paused = false;
            S.resume();
          });
        }
        if (got.length === COUNT) resolve();
      });
    });
    S.on('error', () => {});
    S.on('ping', (data) => pings.push(data));
    await withTimeout(all, STEP_MS, 'the burst');
    assert.equal(early, 0, 'messages delivered while paused');
    checkBurst({ messages: got, pings }, SMALL);
    S.terminate();
  } finally {
    await server.close();
  }
});

test('a throwing listener in the middle of a run: an uncaughtException each, and the rest of the run still arrives', async () => {
  const script = `
    const { WebSocketServer } = require('ws');
    const { relayedConnect } = require(process.env.HYCO_PKG);
    const guard = setTimeout(() => { console.log('TIMEOUT'); process.exit(6); }, 15000);
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    wss.on('connection', (peer) => {
      for (let i = 0; i < 500; i++) peer.send(Buffer.from(String(i)));
      peer.close(1000);
    });
    wss.on('listening', () => {
      const S = relayedConnect('ws://127.0.0.1:' + wss.address().port + '/', undefined, { perMessageDeflate: false });
      const got = [];
      let caught = 0;
      process.on('uncaughtException', (err) => {
        if (err && err.message.startsWith('boom ')) caught++;
        else { console.log('UNEXPECTED ' + (err && err.stack)); process.exit(3); }
      });
      S.on('message', (data) => {
        got.push(String(data));
        if (got.length % 100 === 50) throw new Error('boom ' + got.length);
      });
      S.on('close', () => {
        // The exceptions are rethrown on later ticks.
        setImmediate(() => {
          const inOrder = got.length === 500 && got.every((m, i) => m === String(i));
          console.log(inOrder && caught === 5 ? 'OK' : 'BAD ' + got.length + ' ' + caught);
          clearTimeout(guard);
          wss.close();
        });
      });
    });
  `;
  const r = await runNode(script, { ms: 20_000 }).done;
  assert.equal(r.signal, null, `the child died of a signal: ${describeChild(r)}`);
  assert.match(r.stdout, /^OK$/m, describeChild(r));
});

test("binaryType 'arraybuffer' and 'fragments': each message its own bytes, never its pack's", async () => {
  const server = await burstServer(MIXED);
  try {
    const ab = await collect(server.url, 'arraybuffer');
    assert.equal(ab.messages.length, COUNT);
    ab.messages.forEach(([data, isBinary], i) => {
      const { payload, binary } = message(i);
      if (!binary) {
        assert.ok(Buffer.isBuffer(data), `text message ${i} is a Buffer`);
        assert.ok(data.equals(payload), `text message ${i}`);
        return;
      }
      assert.ok(data instanceof ArrayBuffer, `message ${i} is an ArrayBuffer`);
      assert.equal(data.byteLength, payload.length, `message ${i}'s length`);
      assert.ok(Buffer.from(data).equals(payload), `message ${i}'s bytes`);
    });
    const fr = await collect(server.url, 'fragments');
    assert.equal(fr.messages.length, COUNT);
    fr.messages.forEach(([data, isBinary], i) => {
      const { payload, binary } = message(i);
      if (!binary) return;
      assert.ok(Array.isArray(data), `message ${i} is a list of fragments`);
      assert.ok(Buffer.concat(data).equals(payload), `message ${i}'s fragments`);
    });
  } finally {
    await server.close();
  }
});

test('empty payloads packed together: an empty ping, message and pong, each an empty Buffer', async () => {
  // Sent in one go, they reach the socket in one read and one call, whose pack then has
  // no bytes at all.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  wss.on('connection', (peer) => {
    for (let i = 0; i < 20; i++) {
      peer.ping(Buffer.alloc(0));
      peer.send(Buffer.alloc(0));
      peer.pong(Buffer.alloc(0));
    }
    peer.close(1000, '');
  });
  try {
    const S = relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, undefined, { perMessageDeflate: false });
    const got = [];
    S.on('ping', (d) => got.push(['ping', d]));
    S.on('message', (d, isBinary) => got.push(['message', d, isBinary]));
    S.on('pong', (d) => got.push(['pong', d]));
    S.on('error', () => {});
    const [code, reason] = await withTimeout(once(S, 'close'), STEP_MS, 'the close');
    assert.equal(got.length, 60);
    got.forEach(([kind, data, isBinary], i) => {
      assert.equal(kind, ['ping', 'message', 'pong'][i % 3], `event ${i}`);
      assert.ok(Buffer.isBuffer(data) && data.length === 0, `event ${i} is an empty Buffer`);
      if (kind === 'message') assert.equal(isBinary, true);
    });
    assert.equal(code, 1000);
    assert.equal(reason.length, 0);
  } finally {
    for (const p of wss.clients) p.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

test("many sockets' small messages in one delivery: split into calls of at most 16 KiB of payloads, every message whole", async () => {
  // A process of its own whose sockets are read by their tasks (inline reads off), so that
  // what they read while its event loop is busy waits in one queue: 300 sockets, a 300-byte
  // message each, 90,000 bytes of small payloads for the first delivery after the loop is
  // free. Correctness does not depend on how the delivery is cut.
  const script = `
    const { WebSocketServer } = require('ws');
    const { relayedConnect } = require(process.env.HYCO_PKG);
    const guard = setTimeout(() => { console.log('TIMEOUT'); process.exit(6); }, 30000);
    const N = 300;
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    wss.on('listening', async () => {
      const url = 'ws://127.0.0.1:' + wss.address().port + '/';
      const sockets = [];
      for (let i = 0; i < N; i++) {
        const S = relayedConnect(url, undefined, { perMessageDeflate: false });
        await new Promise((resolve, reject) => { S.once('open', resolve); S.once('error', reject); });
        sockets.push(S);
      }
      const seen = new Set();
      const buffers = new Set();
      let bad = 0;
      let largest = 0;
      let count = 0;
      const body = (k) => {
        const b = Buffer.alloc(300, k % 251);
        b.writeUInt16LE(k, 0);
        return b;
      };
      for (const S of sockets) {
        S.on('message', (data) => {
          count++;
          const k = data.length === 300 ? data.readUInt16LE(0) : -1;
          if (k < 0 || seen.has(k) || !data.equals(body(k))) bad++;
          seen.add(k);
          buffers.add(data.buffer);
          largest = Math.max(largest, data.buffer.byteLength);
          if (count === N) {
            console.log(JSON.stringify({ bad, largest, buffers: buffers.size, distinct: seen.size }));
            clearTimeout(guard);
            for (const s of sockets) s.terminate();
            wss.close();
          }
        });
      }
      // Every server-side socket sends at once, then the loop stays busy for a while.
      [...wss.clients].forEach((p, k) => p.send(body(k)));
      const until = Date.now() + 300;
      while (Date.now() < until);
    });
  `;
  const r = await runNode(script, { ms: 40_000, env: { HYCO_WS_RS_INLINE_READS: '0' } }).done;
  assert.equal(r.signal, null, `the child died of a signal: ${describeChild(r)}`);
  const line = r.stdout.trim().split('\n').pop();
  assert.ok(line.startsWith('{'), describeChild(r));
  const result = JSON.parse(line);
  assert.equal(result.bad, 0, 'messages not whole, or twice');
  assert.equal(result.distinct, 300);
  assert.ok(result.largest <= MAX_HELD, `a message keeps ${result.largest} bytes alive`);
  assert.ok(result.buffers >= 2, `${result.buffers} buffers for 90,000 bytes`);
});


test("resume() from another socket's listener within a delivery: the resumed socket's later events stay behind what it held", async () => {
  // A delivery carries several sockets' events (lib/native-events.js hands each to its
  // socket's `_handle`, as done here by hand, so that the interleaving is certain): A
  // pauses at its first message, B's listener resumes A, and then comes more for A in the
  // same delivery. A's held messages must come first, then the rest, in order.
  const { eventType } = require('../lib/native-events.js');
  const EV_MESSAGE = eventType('message', ['data', 'binary']);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  try {
    const url = `ws://127.0.0.1:${wss.address().port}/`;
    const [A, B] = [0, 1].map(() => relayedConnect(url, undefined, { perMessageDeflate: false }));
    await withTimeout(Promise.all([A, B].map((S) => once(S, 'open'))), STEP_MS, 'two sockets to open');
    const got = [];
    A.on('message', (data) => {
      got.push(String(data));
      if (got.length === 1) A.pause();
    });
    B.on('message', () => A.resume());
    const list = [EV_MESSAGE, Buffer.from('a1'), false, EV_MESSAGE, Buffer.from('a2'), false];
    A._handle(list, EV_MESSAGE, 1);
    A._handle(list, EV_MESSAGE, 4);
    B._handle([EV_MESSAGE, Buffer.from('b1'), false], EV_MESSAGE, 1);
    A._handle([EV_MESSAGE, Buffer.from('a3'), false], EV_MESSAGE, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(got, ['a1', 'a2', 'a3']);
    A.terminate();
    B.terminate();
  } finally {
    for (const p of wss.clients) p.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

test('pause() in every listener call and resume() on the next turn: what is held never outgrows inboundHighWaterMark', async () => {
  // The peer streams; the socket pauses at every message and resumes a turn later. The
  // connection must not read on while messages read before are still held (they count
  // against the high-water mark only until JavaScript has them).
  const HIGH_WATER = 64 * 1024;
  const SIZE = 16;
  const WANTED = 30000;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  wss.on('connection', (peer) => {
    const payload = Buffer.alloc(SIZE, 1);
    const pump = () => {
      if (peer.readyState !== peer.OPEN) return;
      // 64 KiB at a time, then wait for ws to have written it (backpressure).
      for (let i = 0; i < 4096; i++) peer.send(payload);
      peer.send(payload, () => setImmediate(pump));
    };
    pump();
  });
  try {
    const S = relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, undefined, {
      perMessageDeflate: false,
      inboundHighWaterMark: HIGH_WATER
    });
    let got = 0;
    let most = 0;
    const done = new Promise((resolve) => {
      S.on('message', () => {
        got++;
        const held = S._held === null ? 0 : (S._held.list.length - S._held.at) / 3;
        if (held > most) most = held;
        S.pause();
        setImmediate(() => S.resume());
        if (got === WANTED) resolve();
      });
    });
    await withTimeout(done, 20_000, `${WANTED} messages`);
    S.terminate();
    // Messages count against the mark until JavaScript has them, not until they are
    // emitted; the connection reads on from a resume() only once what is held is emitted,
    // and stops again at the next pause(), so what is held stays within a few times the
    // mark (before, each resume() let it read on: it grew without end).
    const bound = (4 * HIGH_WATER) / SIZE;
    assert.ok(most <= bound, `${most} messages held at most, against ${bound}`);
  } finally {
    for (const p of wss.clients) p.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});
