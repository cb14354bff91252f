// The relayed sender socket against the ws 8 `WebSocket` contract: the numbered checklist of
// shared/design/ws-compat-checklist.md section 12 (items 1-45 and 48), then the documented
// deviations and what the package adds (backpressure, bufferedAmount, a throwing listener,
// a process that exits by itself).
//
// Every test starts the local relay and a hand-written listener (a plain ws 8 control channel
// and accept sockets). "S" is the socket under test, made with `relayedConnect`; "peer" is the
// listener's accept socket, a plain ws 8 client (the relay forwards frames end to end).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import vm from 'node:vm';

import { WebSocketServer } from 'ws';
import { createRelaySendUri, createRelayToken } from 'hyco-ws-rs';

import {
  STEP_MS,
  nextEvent,
  nextMessage,
  waitUntil,
  whenClosed,
  withTimeout
} from './support/relay-steps.mjs';
import {
  MiB,
  api,
  closeOf,
  describeChild,
  endSockets,
  eventsOf,
  expectNoEvent,
  next,
  nextMessageOf,
  runNode,
  relayed,
  typesOf,
  withListener
} from './support/socket-steps.mjs';

const NOOP = () => {};
const CONNECTING_ERROR = /^Error: WebSocket is not open: readyState 0 \(CONNECTING\)$/;

/**
 * The property descriptor of `key` on `obj` or the nearest object of its prototype chain.
 *
 * @param {object} obj Where to start.
 * @param {string} key The property.
 * @returns {PropertyDescriptor | undefined}
 */
function findDescriptor(obj, key) {
  for (let o = obj; o && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, key);
    if (d) return d;
  }
  return undefined;
}

/**
 * A promise of the next call of a callback, with a timeout.
 *
 * @param {string} what What is awaited.
 * @returns {{ cb: (...args: any[]) => void, called: Promise<{ args: any[], sync: boolean }>, calls: any[], done: () => void }}
 *   `done()` marks the end of the synchronous part (so that `sync` tells whether a call came before it).
 */
function callback(what) {
  let sync = true;
  const calls = [];
  let resolve;
  const p = new Promise((r) => {
    resolve = r;
  });
  const cb = (...args) => {
    const call = { args, sync };
    calls.push(call);
    resolve(call);
  };
  return {
    cb,
    calls,
    done: () => {
      sync = false;
    },
    called: withTimeout(p, STEP_MS, what)
  };
}

/**
 * Asserts that the peer's next message is `expected` with the given binary flag.
 *
 * @param {WebSocket} peer The listener's end.
 * @param {string|Buffer} expected The payload.
 * @param {boolean} isBinary Whether it is binary.
 * @param {string} what For the failure message.
 */
async function peerGets(peer, expected, isBinary, what) {
  const m = await nextMessage(peer, STEP_MS, what);
  assert.ok(Buffer.isBuffer(m.data), `${what}: a Buffer at the peer`);
  assert.deepEqual(m.data, Buffer.isBuffer(expected) ? expected : Buffer.from(expected), `${what}: payload`);
  assert.equal(m.isBinary, isBinary, `${what}: isBinary`);
}

/**
 * Waits for the peer's close and returns its code and reason (a string).
 *
 * @param {WebSocket} peer The listener's end.
 * @param {string} [what] For the failure message.
 * @returns {Promise<{ code: number, reason: string }>}
 */
function peerClose(peer, what = "the peer's 'close'") {
  return whenClosed(peer, STEP_MS, what);
}

// ---------------------------------------------------------------------------------------------
describe('12 constants & attributes', () => {
  test('12.1 ready-state constants are read-only, enumerable, on the class and the prototype', async () => {
    await withListener({}, async ({ start }) => {
      const { WebSocket: WS } = api();
      const S = start();
      assert.ok(S instanceof WS, 'S is an instance of ws.WebSocket');
      for (const [name, value] of [['CONNECTING', 0], ['OPEN', 1], ['CLOSING', 2], ['CLOSED', 3]]) {
        const expected = { value, writable: false, enumerable: true, configurable: false };
        for (const [where, obj] of [
          ["S's class", S.constructor],
          ["S's prototype", Object.getPrototypeOf(S)],
          ['ws.WebSocket', WS],
          ['ws.WebSocket.prototype', WS.prototype]
        ]) {
          assert.deepEqual(findDescriptor(obj, name), expected, `${name} on ${where}`);
        }
        assert.equal(S[name], value, `S.${name}`);
      }
    });
  });

  test('12.2 attributes are enumerable, configurable prototype accessors', async () => {
    await withListener({}, async ({ start }) => {
      const S = start();
      const proto = Object.getPrototypeOf(S);
      const getOnly = ['bufferedAmount', 'extensions', 'isPaused', 'protocol', 'readyState', 'url'];
      const getSet = ['binaryType', 'onopen', 'onmessage', 'onclose', 'onerror'];
      for (const name of [...getOnly, ...getSet]) {
        assert.equal(Object.getOwnPropertyDescriptor(S, name), undefined, `${name} is not an own property of S`);
        const d = findDescriptor(proto, name);
        assert.ok(d, `${name} is defined on S's prototype chain`);
        assert.equal(typeof d.get, 'function', `${name} has a getter`);
        if (getSet.includes(name)) assert.equal(typeof d.set, 'function', `${name} has a setter`);
        else assert.equal(d.set, undefined, `${name} has no setter`);
        assert.equal(d.enumerable, true, `${name} is enumerable`);
        assert.equal(d.configurable, true, `${name} is configurable`);
      }
    });
  });

  test('12.3 binaryType defaults to nodebuffer; valid values are kept, invalid ones ignored', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      assert.equal(S.binaryType, 'nodebuffer');
      S.binaryType = 'arraybuffer';
      assert.equal(S.binaryType, 'arraybuffer');
      S.binaryType = 'foo';
      assert.equal(S.binaryType, 'arraybuffer', "'foo' is ignored");
      S.binaryType = '';
      assert.equal(S.binaryType, 'arraybuffer', "'' is ignored");
      S.binaryType = 'fragments';
      assert.equal(S.binaryType, 'fragments');
      if (typeof Blob !== 'undefined') {
        S.binaryType = 'blob';
        assert.equal(S.binaryType, 'blob');
      }
      S.binaryType = 'nodebuffer';
      assert.equal(S.binaryType, 'nodebuffer');
    });
  });

  test('12.4 readyState is OPEN in open, CLOSED in close after close(1001) and after terminate()', async () => {
    await withListener({}, async ({ open }) => {
      const a = await open();
      const opened = eventsOf(a.S).find((e) => e.type === 'open');
      assert.equal(opened.readyState, 1, "readyState in 'open'");
      assert.equal(a.S.readyState, a.S.OPEN);
      a.S.close(1001);
      const c1 = await closeOf(a.S);
      assert.equal(c1.readyState, 3, "readyState in 'close' after close(1001)");
      assert.equal(a.S.readyState, 3);

      const b = await open();
      b.S.terminate();
      const c2 = await closeOf(b.S);
      assert.equal(c2.readyState, 3, "readyState in 'close' after terminate()");
    });
  });

  test("12.5 protocol is the listener's choice; extensions is ''", async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open({ protocols: 'foo' }, { protocol: 'foo' });
      assert.equal(S.protocol, 'foo');
      assert.equal(S.extensions, '');
      const plain = await open();
      assert.equal(plain.S.protocol, '', 'no subprotocol: protocol is empty');
      assert.equal(plain.S.extensions, '');
    });
  });

  test("with a listener that answers no extension, extensions is ''; send with compress: true arrives uncompressed (as ws)", async () => {
    await withListener({}, async ({ open }) => {
      // The peer answers nothing (perMessageDeflate: false) and the relay negotiates nothing; a
      // compressed frame (RSV1) would make the relay close the pair with 1002. (Compression
      // itself: __test__/deflate.test.mjs.)
      const { S, peer } = await open();
      assert.equal(S.extensions, '');
      S.send('squeeze me'.repeat(100), { compress: true });
      await peerGets(peer, 'squeeze me'.repeat(100), false, 'the message sent with compress: true');
      assert.equal(S.readyState, S.OPEN);
    });
  });

  test('12.6 bufferedAmount is 0 at open', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      const opened = eventsOf(S).find((e) => e.type === 'open');
      assert.equal(opened.bufferedAmount, 0, "bufferedAmount in 'open'");
      assert.equal(S.bufferedAmount, 0);
    });
  });

  test('12.7 isPaused follows pause() and resume()', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      assert.equal(S.isPaused, false);
      S.pause();
      assert.equal(S.isPaused, true);
      S.resume();
      assert.equal(S.isPaused, false);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 send', () => {
  test('12.8 send text', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send('hi');
      await peerGets(peer, 'hi', false, 'the text message');
    });
  });

  test('12.9 send a big binary message (Float32Array of 1M elements)', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const f32 = new Float32Array(1024 * 1024);
      crypto.randomFillSync(f32);
      S.send(f32);
      const m = await nextMessage(peer, 15_000, 'the 4 MiB message');
      assert.equal(m.isBinary, true);
      assert.equal(m.data.length, f32.byteLength);
      assert.ok(m.data.equals(Buffer.from(f32.buffer)), 'the same bytes');
    });
  });

  test('12.10 send a TypedArray view (only its bytes), an ArrayBuffer and a Buffer as binary', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const f32 = new Float32Array([1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
      const sub = f32.subarray(2, 5);
      S.send(sub);
      await peerGets(peer, Buffer.from(sub.buffer, sub.byteOffset, sub.byteLength), true, 'the subarray');
      assert.equal(sub.byteLength, 12);

      const ab = new Uint8Array([1, 2, 3, 4, 5]).buffer;
      S.send(ab);
      await peerGets(peer, Buffer.from([1, 2, 3, 4, 5]), true, 'the ArrayBuffer');

      S.send(Buffer.from('buffer'));
      await peerGets(peer, Buffer.from('buffer'), true, 'the Buffer');
    });
  });

  test('12.11 numbers are sent as text', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send(0);
      await peerGets(peer, '0', false, 'send(0)');
      S.send(42.5);
      await peerGets(peer, '42.5', false, 'send(42.5)');
    });
  });

  test('12.12 send() and send(null) send an empty binary message; send("") an empty text one', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send();
      await peerGets(peer, Buffer.alloc(0), true, 'send()');
      S.send(null);
      await peerGets(peer, Buffer.alloc(0), true, 'send(null)');
      S.send('');
      await peerGets(peer, Buffer.alloc(0), false, "send('')");
    });
  });

  test('12.13 fin: false fragments make one message', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send('fragment', { fin: false });
      S.send('fragment', { fin: true });
      await peerGets(peer, 'fragmentfragment', false, 'the reassembled message');
      // The socket is back to normal messages afterwards.
      S.send(Buffer.from('next'));
      await peerGets(peer, Buffer.from('next'), true, 'the next message');
    });
  });

  test('12.14 the send callback is called once, asynchronously, with no error', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const c = callback('the send callback');
      S.send('hi', c.cb);
      c.done();
      const call = await c.called;
      assert.equal(call.sync, false, 'the callback is asynchronous');
      assert.ok(!call.args[0], `no error (got ${call.args[0]})`);
      await peerGets(peer, 'hi', false, 'the message');
      // A later round trip: the callback has still been called only once.
      const c2 = callback('the second send callback');
      S.send('again', {}, c2.cb);
      c2.done();
      assert.ok(!(await c2.called).args[0]);
      await peerGets(peer, 'again', false, 'the second message');
      assert.equal(c.calls.length, 1, 'the first callback was called once');
    });
  });

  test('12.15 send({}) throws a TypeError and the socket stays open', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      for (const bad of [{}, true, Symbol('x')]) {
        assert.throws(() => S.send(bad), TypeError, `send(${String(bad)})`);
        assert.equal(S.readyState, S.OPEN);
      }
      assert.throws(() => S.send({}, NOOP), TypeError, 'send({}, cb)');
      S.send('still works');
      await peerGets(peer, 'still works', false, 'a message after the bad sends');
    });
  });

  test('12.16 send in CONNECTING throws', async () => {
    await withListener({}, async ({ start, accept }) => {
      const S = start();
      assert.equal(S.readyState, 0);
      assert.throws(() => S.send('hi'), CONNECTING_ERROR);
      assert.throws(() => S.send('hi', NOOP), CONNECTING_ERROR);
      const { peer } = await accept();
      await next(S, 'open');
      S.send('after open');
      await peerGets(peer, 'after open', false, 'the message sent once open');
    });
  });

  test('12.17 send in CLOSING/CLOSED calls back with the readyState error and grows bufferedAmount', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      S.close();
      assert.equal(S.readyState, 2);
      const before = S.bufferedAmount;
      const c = callback('the CLOSING send callback');
      assert.doesNotThrow(() => S.send('hi', c.cb));
      c.done();
      assert.equal(S.bufferedAmount, before + 2, 'bufferedAmount grows by 2 in CLOSING');
      const call = await c.called;
      assert.equal(call.sync, false, 'the callback is asynchronous');
      assert.ok(call.args[0] instanceof Error);
      assert.equal(call.args[0].message, 'WebSocket is not open: readyState 2 (CLOSING)');
      assert.doesNotThrow(() => S.send('hi'), 'no callback: no throw');

      await closeOf(S);
      const after = S.bufferedAmount;
      const c2 = callback('the CLOSED send callback');
      assert.doesNotThrow(() => S.send('hi', c2.cb));
      c2.done();
      assert.equal(S.bufferedAmount, after + 2, 'bufferedAmount grows by 2 in CLOSED');
      const call2 = await c2.called;
      assert.equal(call2.sync, false);
      assert.ok(call2.args[0] instanceof Error);
      assert.equal(call2.args[0].message, 'WebSocket is not open: readyState 3 (CLOSED)');
    });
  });

  test('12.18 a received Buffer echoed with { binary: isBinary } arrives as text', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.on('message', (msg, isBinary) => S.send(msg, { binary: isBinary }));
      peer.send('hi');
      await peerGets(peer, 'hi', false, 'the echoed text');
      peer.send(Buffer.from([1, 2, 3]));
      await peerGets(peer, Buffer.from([1, 2, 3]), true, 'the echoed binary');
    });
  });
});

describe('12 send: Blob data (ws 8.18 and later)', () => {
  test('send(blob) and ping(blob) are sent once read, in order with what follows, the close last; bufferedAmount counts the Blob meanwhile', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const pings = [];
      peer.on('ping', (d) => pings.push(d.toString()));
      const sent = callback('the Blob send callback');
      S.send(new Blob(['blob', 'data']), sent.cb);
      assert.equal(S.bufferedAmount, 8, "the Blob's size counts while it is read");
      S.ping(new Blob(['pb']));
      S.send('after');
      assert.throws(() => S.ping(new Blob(['x'.repeat(126)])), /^RangeError: The data size must not be greater than 125 bytes$/);
      S.close(4000, 'done');
      sent.done();
      await peerGets(peer, Buffer.from('blobdata'), true, 'the Blob, binary');
      await peerGets(peer, 'after', false, 'the text sent after the Blob');
      assert.deepEqual(pings, ['pb']);
      assert.deepEqual(await peerClose(peer), { code: 4000, reason: 'done' });
      const { args } = await sent.called;
      assert.equal(args[0] ?? null, null);
    });
  });

  test('a Blob after close calls back with the readyState error and counts its size, as ws; terminate() while one is read fails what waited behind it', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      const first = callback('the callback of the Blob being read');
      const behind = callback('the callback queued behind it');
      S.send(new Blob(['x'.repeat(1000)]), first.cb);
      S.send('behind', behind.cb);
      S.terminate();
      first.done();
      behind.done();
      const closedWhileRead = /^Error: The socket was closed while the blob was being read$/;
      assert.match(String((await first.called).args[0]), closedWhileRead);
      assert.match(String((await behind.called).args[0]), closedWhileRead);
      await closeOf(S);
      const before = S.bufferedAmount;
      const late = callback('a Blob sent after close');
      S.send(new Blob(['abc']), late.cb);
      late.done();
      assert.equal(S.bufferedAmount, before + 3);
      assert.match(String((await late.called).args[0]), /^Error: WebSocket is not open: readyState 3 \(CLOSED\)$/);
    });
  });

  test("the peer's close while a Blob is read is answered after the Blob and what followed it, as ws's reply waits in its sender's queue", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      let release;
      const bytes = new Promise((resolve) => {
        release = resolve;
      });
      // A File whose bytes come when the test says.
      const slow = { size: 4, type: '', arrayBuffer: () => bytes, stream() {}, [Symbol.toStringTag]: 'File' };
      S.send(slow);
      S.send('after');
      peer.close(1000, 'bye');
      await waitUntil(() => S.readyState === S.CLOSING, STEP_MS, "the peer's close to reach S");
      release(new Uint8Array([1, 2, 3, 4]).buffer);
      await peerGets(peer, Buffer.from([1, 2, 3, 4]), true, 'the Blob');
      await peerGets(peer, 'after', false, 'what followed it');
      assert.equal((await closeOf(S)).code, 1000);
    });
  });

  test('close() behind a Blob whose read never ends still closes (1006) after closeTimeout, as ws', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open({ closeTimeout: 300 });
      const never = { size: 4, type: '', arrayBuffer: () => new Promise(() => {}), stream() {}, [Symbol.toStringTag]: 'Blob' };
      S.send(never);
      S.close(1000);
      // (The Blob's own callback, as ws's, waits for a read that never ends.)
      assert.equal((await closeOf(S)).code, 1006);
    });
  });

  test("the peer's close behind a Blob whose read never ends: closed after closeTimeout, as ws's close() on the peer's close", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open({ closeTimeout: 300 });
      const never = { size: 4, type: '', arrayBuffer: () => new Promise(() => {}), stream() {}, [Symbol.toStringTag]: 'Blob' };
      S.send(never);
      peer.close(1000);
      await waitUntil(() => S.readyState === S.CLOSING, STEP_MS, "the peer's close to reach S");
      // Not held until the peer gives up: S's own closing time ends it.
      assert.ok([1000, 1006].includes((await closeOf(S, 3000, "S's 'close' within its closing time")).code));
    });
  });

  test("a Blob whose read fails fails its callback and the socket: 'error' with the read's error, then 'close' 1006", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const failure = new Error('the file is gone');
      // A File whose bytes cannot be read (ws takes any object that looks like a Blob).
      const unreadable = {
        size: 3,
        type: '',
        arrayBuffer: () => Promise.reject(failure),
        stream() {},
        [Symbol.toStringTag]: 'File'
      };
      const cb = callback('the failed Blob send callback');
      S.send(unreadable, (...args) => {
        // As ws: the callbacks fail before the socket's 'error'.
        assert.deepEqual(typesOf(S), ['open']);
        cb.cb(...args);
      });
      cb.done();
      assert.equal((await cb.called).args[0], failure);
      const c = await closeOf(S);
      assert.equal(c.code, 1006);
      assert.deepEqual(typesOf(S), ['open', 'error', 'close']);
      assert.equal(eventsOf(S)[1].args[0], failure);
      assert.equal((await peerClose(peer)).code, 1006);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 ping / pong', () => {
  test('12.19 ping and pong with no data, a string and a number', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      for (const method of ['ping', 'pong']) {
        for (const [arg, expected] of [[undefined, ''], ['hi', 'hi'], [0, '0']]) {
          const got = nextEvent(peer, method, STEP_MS, `the peer's '${method}' for ${method}(${arg})`);
          if (arg === undefined) S[method]();
          else S[method](arg);
          const [data] = await got;
          assert.ok(Buffer.isBuffer(data), `${method}(${arg}): a Buffer`);
          assert.equal(data.toString(), expected, `${method}(${arg})`);
        }
      }
    });
  });

  test('12.20 ping/pong payloads over 125 bytes throw a RangeError', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      const tooBig = /^RangeError: The data size must not be greater than 125 bytes$/;
      assert.throws(() => S.ping(Buffer.alloc(126)), tooBig);
      assert.throws(() => S.pong(Buffer.alloc(126)), tooBig);
      assert.equal(S.readyState, S.OPEN);
    });
  });

  test('12.21 ping/pong throw in CONNECTING, call back with the readyState error in CLOSING/CLOSED', async () => {
    await withListener({}, async ({ start, accept }) => {
      const S = start();
      assert.throws(() => S.ping(), CONNECTING_ERROR);
      assert.throws(() => S.pong(), CONNECTING_ERROR);
      assert.throws(() => S.ping('x', false, NOOP), CONNECTING_ERROR);
      await accept();
      await next(S, 'open');
      S.close();
      for (const method of ['ping', 'pong']) {
        const c = callback(`the CLOSING ${method} callback`);
        assert.doesNotThrow(() => S[method]('hi', c.cb));
        c.done();
        const call = await c.called;
        assert.equal(call.sync, false);
        assert.equal(call.args[0] && call.args[0].message, 'WebSocket is not open: readyState 2 (CLOSING)');
      }
      await closeOf(S);
      for (const method of ['ping', 'pong']) {
        const c = callback(`the CLOSED ${method} callback`);
        assert.doesNotThrow(() => S[method](c.cb));
        c.done();
        const call = await c.called;
        assert.equal(call.args[0] && call.args[0].message, 'WebSocket is not open: readyState 3 (CLOSED)');
      }
    });
  });

  test("12.22 a peer's ping is emitted and answered with the same bytes; a peer's pong is emitted", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const payload = Buffer.from([0, 1, 2, 250, 255]);
      const pong = nextEvent(peer, 'pong', STEP_MS, "the peer's 'pong'");
      peer.ping(payload);
      const ping = await next(S, 'ping');
      assert.ok(Buffer.isBuffer(ping.args[0]));
      assert.deepEqual(ping.args[0], payload);
      const [pongData] = await pong;
      assert.deepEqual(pongData, payload, 'the automatic pong carries the ping data');

      peer.pong(Buffer.from('unsolicited'));
      const p = await next(S, 'pong');
      assert.deepEqual(p.args[0], Buffer.from('unsolicited'));
    });
  });

  test('12.23 autoPong: false sends no pong', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open({ autoPong: false });
      const pongs = [];
      peer.on('pong', (d) => pongs.push(d));
      peer.ping('are you there');
      await next(S, 'ping');
      // Frames keep their order through the relay: an automatic pong, queued when the ping was
      // read, would reach the peer before this message.
      S.send('marker');
      await peerGets(peer, 'marker', false, 'the marker');
      assert.equal(pongs.length, 0, 'no automatic pong');
      // An explicit pong still works.
      const got = nextEvent(peer, 'pong', STEP_MS, 'the explicit pong');
      S.pong('by hand');
      assert.equal((await got)[0].toString(), 'by hand');
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 close / terminate', () => {
  test('12.24 close() with no code: the peer sees 1005 and an empty reason', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.close();
      assert.deepEqual(await peerClose(peer), { code: 1005, reason: '' });
      const c = await closeOf(S);
      assert.equal(c.code, 1005);
      assert.equal(c.reason.length, 0);
    });
  });

  test('12.25 close(1000) and close(1000, reason)', async () => {
    await withListener({}, async ({ open }) => {
      const a = await open();
      a.S.close(1000);
      assert.deepEqual(await peerClose(a.peer), { code: 1000, reason: '' });
      const ca = await closeOf(a.S);
      assert.equal(ca.code, 1000);
      assert.equal(ca.reason.length, 0);

      const b = await open();
      b.S.close(1000, 'some reason');
      assert.deepEqual(await peerClose(b.peer), { code: 1000, reason: 'some reason' });
      const cb = await closeOf(b.S);
      assert.equal(cb.code, 1000);
      assert.deepEqual(cb.reason, Buffer.from('some reason'), 'the echoed reason, as a Buffer');
    });
  });

  test('12.26 close codes 1013 and 1014 are allowed, both ways', async () => {
    await withListener({}, async ({ open }) => {
      for (const code of [1013, 1014]) {
        const a = await open();
        a.S.close(code);
        assert.equal((await peerClose(a.peer, `the peer's close after S.close(${code})`)).code, code);
        assert.equal((await closeOf(a.S)).code, code);

        const b = await open();
        b.peer.close(code);
        const cb = await closeOf(b.S, STEP_MS, `S's close after peer.close(${code})`);
        assert.equal(cb.code, code, `S sees the peer's ${code}`);
        assert.equal((await peerClose(b.peer)).code, code, `S echoes ${code}`);
        assert.deepEqual(typesOf(b.S), ['open', 'close'], 'no error');
      }
    });
  });

  test('12.27 close with an invalid code throws a TypeError and leaves the socket open', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      for (const code of ['error', 1004, 999, 1005, 1006, 1015, 2999, 5000, null, NaN]) {
        assert.throws(
          () => S.close(code),
          /^TypeError: First argument must be a valid error code number$/,
          `close(${String(code)})`
        );
        assert.equal(S.readyState, S.OPEN, `readyState after close(${String(code)})`);
      }
      S.send('still open');
      await peerGets(peer, 'still open', false, 'a message after the failed closes');
      S.close(4999);
      assert.equal((await peerClose(peer)).code, 4999);
    });
  });

  test('12.28 a close reason over 123 bytes throws a RangeError; 123 bytes is fine', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const tooLong = /^RangeError: The message must not be greater than 123 bytes$/;
      assert.throws(() => S.close(1000, 'a'.repeat(124)), tooLong);
      assert.throws(() => S.close(1000, 'é'.repeat(62)), tooLong, '124 bytes of UTF-8');
      assert.equal(S.readyState, S.OPEN);
      const reason = 'b'.repeat(123);
      S.close(1000, reason);
      assert.deepEqual(await peerClose(peer), { code: 1000, reason });
    });
  });

  test("12.29 a close reason that is neither a string nor a Uint8Array throws, checked in ws's order; a Buffer, or another realm's Uint8Array, works", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      assert.throws(() => S.close(1000, new Float32Array(20)), /^TypeError: Second argument must be a string or a Uint8Array$/);
      // The length first, as ws's sender measures it: 160 bytes of Float32Array is too long,
      // and what Buffer.byteLength cannot measure is its TypeError.
      assert.throws(() => S.close(1000, new Float32Array(40)), /^RangeError: The message must not be greater than 123 bytes$/);
      assert.throws(() => S.close(1000, [1, 2, 3]), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.equal(S.readyState, S.OPEN);
      S.close(4000, Buffer.from('x'));
      assert.deepEqual(await peerClose(peer), { code: 4000, reason: 'x' });
      // A vm context's (or a test environment's) Uint8Array is not `instanceof` this realm's.
      const other = await open();
      other.S.close(4001, vm.runInNewContext('new Uint8Array([120, 121])'));
      assert.deepEqual(await peerClose(other.peer), { code: 4001, reason: 'xy' });
    });
  });

  test('12.30 close() delivers all the data sent before it; a second close() is a no-op', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send('foo');
      S.send('bar');
      S.send('baz');
      S.close();
      assert.doesNotThrow(() => S.close());
      for (const word of ['foo', 'bar', 'baz']) await peerGets(peer, word, false, `'${word}'`);
      assert.deepEqual(await peerClose(peer), { code: 1005, reason: '' });
      assert.equal((await closeOf(S)).code, 1005);
    });
  });

  test("12.31 close() and terminate() in 'close' are no-ops", async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      const problems = [];
      S.on('close', () => {
        try {
          S.close();
          S.close(1000, 'again');
          S.terminate();
        } catch (err) {
          problems.push(err);
        }
        if (S.readyState !== 3) problems.push(new Error(`readyState ${S.readyState}`));
      });
      S.close(1000);
      await closeOf(S);
      assert.deepEqual(problems, []);
      // Nothing follows the 'close'.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(typesOf(S), ['open', 'close']);
    });
  });

  test('12.32 closeTimeout: a peer that never answers the close is cut off with 1006', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open({ closeTimeout: 300 });
      // The peer stops reading: the close frame waits in its socket buffer, unanswered.
      peer._socket.pause();
      const started = Date.now();
      S.close(1000);
      assert.equal(S.readyState, 2);
      const c = await closeOf(S, 5000, "S's 'close' after closeTimeout");
      const elapsed = c.at - started;
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      assert.ok(elapsed >= 250, `closed after ${elapsed} ms, before closeTimeout`);
      assert.ok(elapsed < 3000, `closed after ${elapsed} ms, long after closeTimeout (300 ms)`);
      assert.deepEqual(typesOf(S), ['open', 'close'], 'no error');
    });
  });

  test('12.33 terminate(): CLOSING at once, then 1006 on both sides', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.terminate();
      assert.equal(S.readyState, 2, 'readyState is CLOSING right after terminate()');
      const c = await closeOf(S);
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      assert.deepEqual(await peerClose(peer), { code: 1006, reason: '' });
      assert.deepEqual(typesOf(S), ['open', 'close'], 'no error');
    });
  });

  test('12.33a send() then terminate() in one tick: the message goes out first and its callback succeeds, as ws writes it when sent', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const cb = callback('the send callback');
      S.send('last words', cb.cb);
      S.terminate();
      cb.done();
      const m = await nextMessage(peer, STEP_MS, 'the message sent before terminate()');
      assert.equal(m.data.toString(), 'last words');
      const { args } = await cb.called;
      assert.equal(args[0] ?? null, null, 'the callback has no error');
      assert.equal((await closeOf(S)).code, 1006);
      assert.deepEqual(await peerClose(peer), { code: 1006, reason: '' });
    });
  });

  test('12.34 close() before open: error, then close 1006, no open', async () => {
    await withListener({}, async ({ start }) => {
      for (const method of ['close', 'terminate']) {
        const S = start();
        assert.equal(S.readyState, 0);
        S[method]();
        assert.equal(S.readyState, 2, `readyState right after ${method}() while CONNECTING`);
        assert.deepEqual(typesOf(S), [], "'error' is not emitted synchronously");
        const c = await closeOf(S, STEP_MS, `'close' after ${method}() while CONNECTING`);
        assert.deepEqual(typesOf(S), ['error', 'close'], `${method}(): events`);
        const err = eventsOf(S)[0].args[0];
        assert.ok(err instanceof Error);
        assert.equal(err.message, 'WebSocket was closed before the connection was established');
        assert.equal(c.code, 1006);
        assert.equal(c.reason.length, 0);
        assert.equal(S.readyState, 3);
      }
    });
  });
});

describe('12 close() before open, once the handshake has completed natively', () => {
  test("12.34b close() or terminate() while the event loop has not seen the open: ws's abort, no close frame, nothing received is emitted", async () => {
    // The server runs in a process of its own, so that it answers while this one's event
    // loop is blocked: the handshake then completes natively, and the server's greeting
    // arrives, before the socket's 'open' reaches JavaScript.
    const lines = [];
    let onLine = () => {};
    const server = runNode(
      `const { WebSocketServer } = require('ws');
       const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
       wss.on('listening', () => console.log('port ' + wss.address().port));
       wss.on('connection', (c) => {
         console.log('connected');
         // A greeting of several messages in one segment: they reach the socket as a run.
         c._socket.cork();
         for (let i = 0; i < 5; i++) c.send('greeting ' + i);
         c._socket.uncork();
         c.on('close', (code) => console.log('server close ' + code));
       });`,
      {
        ms: 60_000,
        onStdout: (out) => {
          lines.splice(0, lines.length, ...out.split('\n').filter(Boolean));
          onLine();
        }
      }
    );
    const line = (re, what) =>
      withTimeout(
        new Promise((resolve) => {
          const look = () => {
            const found = lines.find((l) => re.test(l));
            if (found !== undefined) resolve(found);
          };
          onLine = look;
          look();
        }),
        STEP_MS,
        what
      );
    try {
      const port = Number((await line(/^port \d+$/, "the server's port")).split(' ')[1]);
      for (const [i, method] of ['close', 'terminate'].entries()) {
        const S = relayed(`ws://127.0.0.1:${port}/`, null);
        const events = [];
        S.on('open', () => events.push('open'));
        S.on('message', (data) => events.push(`message ${data}`));
        S.on('error', (err) => events.push(`error ${err.message}`));
        const closed = closeOf(S, STEP_MS, `'close' after ${method}()`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
        S[method]();
        const c = await closed;
        assert.deepEqual(events, ['error WebSocket was closed before the connection was established'], `${method}(): events`);
        assert.equal(c.code, 1006);
        // The server saw a connection (the handshake did complete) dropped without a close
        // frame, as ws's abort drops it: 1006, not a close frame's 1005.
        const closes = () => lines.filter((l) => l.startsWith('server close'));
        await withTimeout(
          new Promise((resolve) => {
            onLine = () => closes().length > i && resolve();
            onLine();
          }),
          STEP_MS,
          `the server's close (${method})`
        );
        assert.equal(lines.filter((l) => l === 'connected').length, i + 1, 'the handshake completed');
        assert.equal(closes()[i], 'server close 1006', `${method}(): the server's close`);
      }
    } finally {
      server.child.kill();
      await server.done;
    }
  });

  test("12.34c close() right after a connection that has already failed natively: ws's abort error, not the failure's", async () => {
    for (const method of ['close', 'terminate']) {
      // Port 1 refuses at once, on the connection's thread; the refusal is on its way to
      // JavaScript when close() comes.
      const S = relayed('ws://127.0.0.1:1/', null);
      const events = [];
      S.on('error', (err) => events.push(`error ${err.message} ${err.code ?? null}`));
      const closed = closeOf(S, STEP_MS, `'close' after ${method}()`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      S[method]();
      assert.equal((await closed).code, 1006);
      assert.deepEqual(events, ['error WebSocket was closed before the connection was established null'], method);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 errors', () => {
  test('12.35 an invalid opcode from the peer (a ws server writing 0x85 0x00): error, 1006; the peer gets 1002', async () => {
    // The relay itself refuses frames with unknown opcodes (it closes the pair with 1002), so
    // to see what S does with opcode 5 the peer here is a ws server that S connects to
    // directly: relayedConnect is a WebSocket client, whoever answers.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    try {
      await nextEvent(wss, 'listening', STEP_MS, 'the ws server to listen');
      const connection = nextEvent(wss, 'connection', STEP_MS, 'the connection at the ws server');
      const S = relayed(`ws://127.0.0.1:${wss.address().port}/$hc/hc?sb-hc-action=connect`, null);
      const [server] = await connection;
      const serverClosed = nextEvent(server, 'close', STEP_MS, "the server side's 'close'");
      server.on('error', NOOP);
      await next(S, 'open');
      server._socket.write(Buffer.from([0x85, 0x00]));
      const c = await closeOf(S);
      assert.deepEqual(typesOf(S), ['open', 'error', 'close']);
      const err = eventsOf(S)[1].args[0];
      assert.ok(err instanceof RangeError, `a RangeError (got ${err && err.name})`);
      assert.equal(err.code, 'WS_ERR_INVALID_OPCODE');
      assert.equal(err.message, 'Invalid WebSocket frame: invalid opcode 5');
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      const [code] = await serverClosed;
      assert.equal(code, 1002, 'the other side gets 1002');
    } finally {
      endSockets();
      for (const client of wss.clients) client.terminate();
      await withTimeout(new Promise((resolve) => wss.close(resolve)), STEP_MS, 'the ws server to close');
    }
  });

  test('12.35 (through the relay) an unexpected continuation frame: error invalid opcode 0, 1006; the peer gets 1002', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      // FIN + opcode 0, masked, empty: valid for the relay, which passes it on as 0x80 0x00,
      // but no message is being fragmented.
      peer._socket.write(Buffer.from([0x80, 0x80, 0, 0, 0, 0]));
      const c = await closeOf(S);
      assert.deepEqual(typesOf(S), ['open', 'error', 'close']);
      const err = eventsOf(S)[1].args[0];
      assert.ok(err instanceof RangeError, `a RangeError (got ${err && err.name})`);
      assert.equal(err.code, 'WS_ERR_INVALID_OPCODE');
      assert.equal(err.message, 'Invalid WebSocket frame: invalid opcode 0');
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      assert.equal((await peerClose(peer)).code, 1002);
    });
  });

  test('12.36 a message over maxPayload: error Max payload size exceeded, 1006; the peer gets 1009', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open({ maxPayload: 1024 });
      peer.send(Buffer.alloc(2048, 7));
      const c = await closeOf(S);
      assert.deepEqual(typesOf(S), ['open', 'error', 'close'], 'no message, one error');
      const err = eventsOf(S)[1].args[0];
      assert.ok(err instanceof RangeError, `a RangeError (got ${err && err.name})`);
      assert.equal(err.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
      assert.equal(err.message, 'Max payload size exceeded');
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      assert.equal((await peerClose(peer)).code, 1009);
    });
  });

  test("12.37 only one 'error', never after 'close'", async () => {
    await withListener({}, async ({ open }) => {
      // Two invalid frames in one write.
      const a = await open();
      a.peer._socket.write(Buffer.from([0x80, 0x80, 0, 0, 0, 0, 0x80, 0x80, 0, 0, 0, 0]));
      await closeOf(a.S);
      // Two oversize messages.
      const b = await open({ maxPayload: 16 });
      b.peer.send(Buffer.alloc(64));
      b.peer.send(Buffer.alloc(64));
      await closeOf(b.S);
      await peerClose(a.peer);
      await peerClose(b.peer);
      // Let anything late surface before looking.
      await new Promise((resolve) => setImmediate(resolve));
      for (const S of [a.S, b.S]) {
        assert.deepEqual(typesOf(S), ['open', 'error', 'close']);
        assert.doesNotThrow(() => S.close());
        assert.doesNotThrow(() => S.terminate());
      }
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(typesOf(a.S), ['open', 'error', 'close']);
      assert.deepEqual(typesOf(b.S), ['open', 'error', 'close']);
    });
  });

  test("12.38 a peer TCP reset: no 'error', 'close' 1006 with an empty reason", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      peer._socket.resetAndDestroy();
      const c = await closeOf(S);
      assert.equal(c.code, 1006);
      assert.equal(c.reason.length, 0);
      assert.deepEqual(typesOf(S), ['open', 'close'], 'no error');
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 EventTarget emulation', () => {
  test('12.39 the on{open,message,close,error} attributes', async () => {
    await withListener({}, async ({ start, accept }) => {
      const S = start();
      for (const name of ['onopen', 'onmessage', 'onclose', 'onerror']) assert.equal(S[name], null, `${name} starts null`);
      const base = S.listenerCount('message');
      S.onmessage = NOOP;
      assert.equal(S.onmessage, NOOP);
      assert.equal(S.listenerCount('message'), base + 1);
      S.onmessage = 'foo';
      assert.equal(S.onmessage, null, 'a non-function clears the attribute');
      assert.equal(S.listenerCount('message'), base, 'and removes its listener');

      const onOpenListener = () => {};
      S.on('open', onOpenListener);
      assert.equal(S.onopen, null, 'a listener added with on() is not returned');
      const onCloseListener = () => {};
      S.on('close', onCloseListener);
      S.onclose = NOOP;
      S.onclose = null;
      assert.ok(S.listeners('close').includes(onCloseListener), 'a listener added with on() is not removed');

      // Replacing a handler: only the last one is called, with an event object.
      const calls = [];
      S.onmessage = () => calls.push('first');
      S.onmessage = (evt) => calls.push(evt.data);
      let openEvent;
      S.onopen = (evt) => {
        openEvent = evt;
      };
      const { peer } = await accept();
      await next(S, 'open');
      assert.equal(openEvent && openEvent.type, 'open', 'onopen got an Event');
      peer.send('hello');
      await next(S, 'message');
      assert.deepEqual(calls, ['hello']);
    });
  });

  test('12.40 addEventListener: unknown types ignored, duplicates collapsed, once with a handleEvent object', async () => {
    await withListener({}, async ({ start, accept }) => {
      const S = start();
      S.addEventListener('foo', NOOP);
      assert.equal(S.listenerCount('foo'), 0, "an unknown type adds nothing");

      const opens = [];
      function onOpen(evt) {
        opens.push({ self: this, evt });
      }
      S.addEventListener('open', onOpen);
      S.addEventListener('open', onOpen);

      const handler = {
        calls: [],
        handleEvent(evt) {
          this.calls.push({ self: this, data: evt.data });
        }
      };
      S.addEventListener('message', handler, { once: true });

      const { peer } = await accept();
      await next(S, 'open');
      assert.equal(opens.length, 1, 'the same listener added twice is called once');
      assert.equal(opens[0].self, S, 'a function listener is called with this = the socket');
      assert.equal(opens[0].evt.type, 'open');
      assert.equal(opens[0].evt.target, S);

      peer.send('one');
      peer.send('two');
      await next(S, 'message');
      await next(S, 'message');
      assert.equal(handler.calls.length, 1, 'once: called once');
      assert.equal(handler.calls[0].self, handler, 'handleEvent is called with this = the object');
      assert.equal(handler.calls[0].data, 'one');
    });
  });

  test('12.41 removeEventListener removes only addEventListener listeners (once ones too)', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      let calls = [];
      const viaAdd = () => calls.push('add');
      const viaOnce = () => calls.push('once');
      const viaOn = () => calls.push('on');
      const viaAttr = () => calls.push('attr');
      const kept = () => calls.push('kept');
      S.addEventListener('message', viaAdd);
      S.addEventListener('message', viaOnce, { once: true });
      S.on('message', viaOn);
      S.onmessage = viaAttr;
      S.addEventListener('message', kept);
      for (const fn of [viaAdd, viaOnce, viaOn, viaAttr]) S.removeEventListener('message', fn);
      assert.equal(S.onmessage, viaAttr, 'the attribute handler is not removed');
      peer.send('x');
      await next(S, 'message');
      assert.deepEqual(calls.sort(), ['attr', 'kept', 'on']);

      // Clearing the attribute does not remove the same function added with addEventListener.
      S.onmessage = kept;
      S.onmessage = null;
      calls = [];
      peer.send('y');
      await next(S, 'message');
      assert.deepEqual(calls.sort(), ['kept', 'on']);
    });
  });

  test('12.42 MessageEvent data: text as a string; binary per binaryType, switched on the fly', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const events = [];
      S.addEventListener('message', (evt) => events.push(evt));
      const receive = async (send, what) => {
        send();
        const e = await next(S, 'message', STEP_MS, what);
        const evt = events.shift();
        assert.ok(evt, `${what}: a MessageEvent`);
        assert.equal(evt.type, 'message');
        assert.equal(evt.target, S);
        return { evt, data: e.args[0], isBinary: e.args[1] };
      };

      let r = await receive(() => peer.send('hi'), 'text');
      assert.equal(r.evt.data, 'hi', 'text is a string in the MessageEvent');
      assert.ok(Buffer.isBuffer(r.data) && r.isBinary === false, "text is a Buffer in 'message'");

      r = await receive(() => peer.send(Buffer.from('foo')), 'binary, nodebuffer');
      assert.ok(Buffer.isBuffer(r.evt.data), 'a Buffer by default');
      assert.equal(r.evt.data.toString(), 'foo');

      S.binaryType = 'arraybuffer';
      r = await receive(() => peer.send('text again'), 'text, arraybuffer');
      assert.equal(r.evt.data, 'text again', 'binaryType is ignored for text');
      assert.ok(Buffer.isBuffer(r.data), "binaryType is ignored for text in 'message'");

      r = await receive(() => peer.send(Buffer.from('bar')), 'binary, arraybuffer');
      assert.ok(r.evt.data instanceof ArrayBuffer, 'an ArrayBuffer');
      assert.equal(Buffer.from(r.evt.data).toString(), 'bar');
      assert.ok(r.data instanceof ArrayBuffer, "an ArrayBuffer in 'message'");
      assert.equal(r.isBinary, true);

      S.binaryType = 'fragments';
      r = await receive(() => {
        peer.send(Buffer.from('ba'), { binary: true, fin: false });
        peer.send(Buffer.from('z'), { binary: true, fin: true });
      }, 'binary, fragments');
      assert.ok(Array.isArray(r.evt.data), 'an array of fragments');
      assert.ok(r.evt.data.every((b) => Buffer.isBuffer(b)), 'of Buffers');
      assert.equal(Buffer.concat(r.evt.data).toString(), 'baz');
      // ws lists only the frames that carried bytes: an empty message is [] (not [<Buffer >]).
      r = await receive(() => peer.send(Buffer.alloc(0)), 'empty binary, fragments');
      assert.deepEqual(r.evt.data, [], 'an empty message has no fragments');
      r = await receive(() => {
        peer.send(Buffer.from('a'), { binary: true, fin: false });
        peer.send(Buffer.alloc(0), { binary: true, fin: false });
        peer.send(Buffer.from('b'), { binary: true, fin: true });
      }, 'binary with an empty middle frame, fragments');
      assert.deepEqual(r.evt.data.map((b) => b.toString()), ['a', 'b'], 'empty frames are left out');

      if (typeof Blob !== 'undefined') {
        S.binaryType = 'blob';
        r = await receive(() => peer.send(Buffer.from('qux')), 'binary, blob');
        assert.ok(r.evt.data instanceof Blob, 'a Blob');
        assert.equal(await r.evt.data.text(), 'qux');
        assert.ok(r.data instanceof Blob, "a Blob in 'message'");
      }

      S.binaryType = 'nodebuffer';
      r = await receive(() => peer.send(Buffer.from('back')), 'binary, nodebuffer again');
      assert.ok(Buffer.isBuffer(r.evt.data));
    });
  });

  test('12.43 CloseEvent, ErrorEvent; every event has type and target', async () => {
    await withListener({}, async ({ open }) => {
      const a = await open();
      const closes = [];
      a.S.addEventListener('close', (evt) => closes.push(evt));
      a.peer.close(4000, 'some daft reason');
      await closeOf(a.S);
      assert.equal(closes.length, 1);
      const ce = closes[0];
      assert.equal(ce.type, 'close');
      assert.equal(ce.target, a.S);
      assert.equal(ce.code, 4000);
      assert.equal(ce.reason, 'some daft reason');
      assert.equal(ce.wasClean, true);

      const b = await open({ maxPayload: 16 });
      const errors = [];
      const closes2 = [];
      b.S.onerror = (evt) => errors.push(evt);
      b.S.onclose = (evt) => closes2.push(evt);
      b.peer.send(Buffer.alloc(64));
      await closeOf(b.S);
      assert.equal(errors.length, 1);
      const ee = errors[0];
      assert.equal(ee.type, 'error');
      assert.equal(ee.target, b.S);
      assert.ok(ee.error instanceof Error);
      assert.equal(ee.error.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
      assert.equal(ee.message, ee.error.message);
      assert.equal(closes2.length, 1);
      assert.equal(closes2[0].code, 1006);
      assert.equal(closes2[0].reason, '');
      assert.equal(closes2[0].wasClean, false);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 pause / resume', () => {
  test('12.44 pause()/resume() do nothing while CONNECTING or CLOSED', async () => {
    await withListener({}, async ({ start, accept }) => {
      const S = start();
      S.pause();
      assert.equal(S.isPaused, false, 'pause() while CONNECTING');
      S.resume();
      assert.equal(S.isPaused, false);
      await accept();
      await next(S, 'open');
      S.pause();
      assert.equal(S.isPaused, true);
      S.terminate();
      await closeOf(S);
      S.resume();
      assert.equal(S.isPaused, true, 'resume() after close leaves isPaused');

      const T = start();
      await accept();
      await next(T, 'open');
      T.close();
      await closeOf(T);
      T.pause();
      assert.equal(T.isPaused, false, 'pause() after close');
    });
  });

  test('12.45 no message while paused; delivered after resume()', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.pause();
      peer.send('while paused');
      await expectNoEvent(S, 'message', 300, 'a message while paused');
      S.resume();
      const m = await nextMessageOf(S);
      assert.equal(m.data.toString(), 'while paused');
      assert.equal(m.isBinary, false);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('12 stream integration', () => {
  test('12.48 createWebSocketStream(S): writes become messages, messages are readable, end() closes', async () => {
    await withListener({}, async ({ open }) => {
      const { createWebSocketStream } = api();
      const { S, peer } = await open();
      const duplex = createWebSocketStream(S);
      const chunks = [];
      duplex.on('data', (c) => chunks.push(c));
      const errors = [];
      duplex.on('error', (e) => errors.push(e));

      duplex.write('written');
      await peerGets(peer, Buffer.from('written'), true, 'the written chunk');

      peer.send('readable');
      await waitUntil(() => chunks.length > 0, STEP_MS, 'data on the stream');
      assert.equal(Buffer.concat(chunks).toString(), 'readable');

      const finished = nextEvent(duplex, 'finish', STEP_MS, "the stream's 'finish'");
      const closed = nextEvent(duplex, 'close', STEP_MS, "the stream's 'close'");
      assert.doesNotThrow(() => duplex.end());
      assert.deepEqual(await peerClose(peer), { code: 1005, reason: '' });
      assert.equal((await closeOf(S)).code, 1005);
      await finished;
      await closed;
      assert.deepEqual(errors, []);
    });
  });

  test('12.48 createWebSocketStream(S): a write while CLOSING errors the stream', async () => {
    await withListener({}, async ({ open }) => {
      const { createWebSocketStream } = api();
      const { S } = await open();
      const duplex = createWebSocketStream(S);
      const error = nextEvent(duplex, 'error', STEP_MS, "the stream's 'error'");
      S.close();
      duplex.write('too late');
      const [err] = await error;
      assert.equal(err.message, 'WebSocket is not open: readyState 2 (CLOSING)');
      assert.ok(duplex.destroyed);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('documented deviations', () => {
  test('the mask option is ignored: frames are always masked (the relay refuses unmasked ones)', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      S.send('unmasked?', { mask: false });
      await peerGets(peer, 'unmasked?', false, 'the message sent with mask: false');
      S.ping('p', false);
      assert.equal((await nextEvent(peer, 'ping', STEP_MS, "the peer's ping"))[0].toString(), 'p');
      assert.equal(S.readyState, S.OPEN);
    });
  });

  test("no 'upgrade', 'unexpected-response' or 'redirect' events: a failed handshake is an 'error'; 'open' fires once", async () => {
    await withListener({}, async ({ start, accept, relay }) => {
      const spy = [];
      const S = start();
      for (const name of ['upgrade', 'unexpected-response', 'redirect']) S.on(name, () => spy.push(name));
      await accept();
      await next(S, 'open');
      S.send('x');
      // No listener on 'nobody': the relay answers 404.
      const uri = createRelaySendUri(relay.namespace, 'nobody');
      const F = relayed(uri, createRelayToken(uri, relay.keyName, relay.key));
      for (const name of ['upgrade', 'unexpected-response', 'redirect']) F.on(name, () => spy.push(name));
      await closeOf(F);
      assert.deepEqual(typesOf(F), ['error', 'close'], "an 'error' even with an 'unexpected-response' listener");
      assert.equal(eventsOf(F)[0].args[0].message, 'Unexpected server response: 404');
      S.close();
      await closeOf(S);
      assert.deepEqual(spy, []);
      assert.deepEqual(typesOf(S), ['open', 'close'], "'open' fires once");
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('flow control', () => {
  test('bufferedAmount counts a 1 MiB send until it is written out', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const c = callback('the 1 MiB send callback');
      S.send(Buffer.alloc(1 << 20, 1), c.cb);
      c.done();
      assert.ok(S.bufferedAmount > 0, `bufferedAmount right after send: ${S.bufferedAmount}`);
      const call = await c.called;
      assert.ok(!call.args[0]);
      await waitUntil(() => S.bufferedAmount === 0, STEP_MS, () => `bufferedAmount back to 0 (${S.bufferedAmount})`);
      const m = await nextMessage(peer, STEP_MS, 'the 1 MiB message');
      assert.equal(m.data.length, 1 << 20);
    });
  });

  test('backpressure: a paused S stops reading; the peer cannot write out 32 MiB; all of it arrives in order after resume', async () => {
    await withListener({}, async ({ open, relay }) => {
      const { S, peer } = await open();
      S.pause();
      const SIZE = 64 * 1024;
      const COUNT = 512; // 32 MiB
      const block = crypto.randomBytes(SIZE);
      let sendError;
      for (let i = 0; i < COUNT; i++) {
        const m = Buffer.from(block);
        m.writeUInt32BE(i, 0);
        peer.send(m, { binary: true }, (err) => {
          if (err) sendError = sendError || err;
        });
      }
      // Wait until the peer's queue stops shrinking (or is empty).
      let last = -1;
      let lastChange = Date.now();
      await waitUntil(
        () => {
          if (sendError) throw sendError;
          const b = peer.bufferedAmount;
          if (b !== last) {
            last = b;
            lastChange = Date.now();
          }
          return b === 0 || Date.now() - lastChange > 500;
        },
        20_000,
        () => `the peer's queue to settle (${(peer.bufferedAmount / MiB).toFixed(1)} MiB queued)`
      );
      const queued = peer.bufferedAmount;
      assert.ok(
        queued > 8 * MiB,
        `only ${(queued / MiB).toFixed(1)} MiB left queued at the peer: S kept reading while paused ` +
          `(relay holds ${relay.stats().bufferedBytes} bytes)`
      );
      assert.equal(typesOf(S).filter((t) => t === 'message').length, 0, 'no message while paused');

      S.resume();
      await waitUntil(
        () => typesOf(S).filter((t) => t === 'message').length >= COUNT,
        30_000,
        () => `all ${COUNT} messages at S (got ${typesOf(S).filter((t) => t === 'message').length})`
      );
      const messages = eventsOf(S).filter((e) => e.type === 'message');
      assert.equal(messages.length, COUNT);
      messages.forEach((e, i) => {
        const [data, isBinary] = e.args;
        assert.ok(isBinary && Buffer.isBuffer(data) && data.length === SIZE, `message ${i}: ${data.length} bytes`);
        assert.equal(data.readUInt32BE(0), i, `message ${i} in order`);
        assert.ok(data.subarray(4).equals(block.subarray(4)), `message ${i}: payload`);
      });
      S.send('after');
      await peerGets(peer, 'after', false, 'a message after the transfer');
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('process', () => {
  // A relay, a hand-written listener that echoes, and one relayedConnect socket, in a child.
  const SETUP = `
    const { createRequire } = require('module');
    const req = createRequire(process.env.HYCO_PKG + '/index.js');
    const hyco = req('./index.js');
    const WebSocket = req('ws');
    async function setup() {
      const relay = await hyco.startLocalRelay();
      const listenUri = hyco.createRelayListenUri(relay.namespace, 'hc');
      const control = new WebSocket(listenUri, {
        headers: { ServiceBusAuthorization: hyco.createRelayToken(listenUri, relay.keyName, relay.key) },
        perMessageDeflate: false
      });
      await new Promise((resolve, reject) => { control.once('open', resolve); control.once('error', reject); });
      const peers = [];
      control.on('message', (data) => {
        const msg = JSON.parse(data.toString());
        if (!msg.accept) return;
        const peer = new WebSocket(msg.accept.address, { perMessageDeflate: false });
        peer.closed = new Promise((resolve) => peer.once('close', resolve));
        peer.on('message', (d, isBinary) => peer.send(d, { binary: isBinary }));
        peers.push(peer);
      });
      const sendUri = hyco.createRelaySendUri(relay.namespace, 'hc');
      const S = hyco.relayedConnect(sendUri, hyco.createRelayToken(sendUri, relay.keyName, relay.key));
      return { relay, control, peers, S };
    }
  `;

  test("a throwing 'message' listener surfaces as an uncaughtException; the socket keeps working", async () => {
    const script = `${SETUP}
      const guard = setTimeout(() => { console.log('TIMEOUT'); process.exit(6); }, 15000);
      setup().then(({ S }) => {
        let caught = null;
        process.on('uncaughtException', (err) => {
          if (err && err.message === 'boom from a message listener') {
            caught = err;
            S.send('second');
            return;
          }
          console.log('UNEXPECTED ' + (err && err.stack));
          process.exit(3);
        });
        S.on('error', (e) => { console.log('S error ' + e.message); process.exit(5); });
        S.on('open', () => S.send('first'));
        S.on('message', (data) => {
          const text = data.toString();
          if (text === 'first') throw new Error('boom from a message listener');
          if (text === 'second') {
            console.log(caught ? 'OK' : 'NOT CAUGHT');
            process.exit(caught ? 0 : 4);
          }
        });
      }, (e) => { console.log('SETUP ' + e.stack); process.exit(7); });
    `;
    const r = await runNode(script, { ms: 20_000 }).done;
    assert.equal(r.signal, null, `the child died of a signal: ${describeChild(r)}`);
    assert.equal(r.code, 0, describeChild(r));
    assert.match(r.stdout, /^OK$/m, describeChild(r));
  });

  test('a process whose sockets are all closed exits by itself', async () => {
    const script = `${SETUP}
      setup().then(async ({ relay, control, peers, S }) => {
        await new Promise((resolve, reject) => { S.once('open', resolve); S.once('error', reject); });
        const echoed = new Promise((resolve) => S.once('message', resolve));
        S.send('hello');
        if ((await echoed).toString() !== 'hello') throw new Error('bad echo');
        const closed = new Promise((resolve) => S.once('close', resolve));
        S.close(1000);
        await closed;
        await Promise.all(peers.map((p) => p.closed));
        const controlClosed = new Promise((resolve) => control.once('close', resolve));
        control.close();
        await controlClosed;
        await relay.close();
        console.log('DONE');
      }).catch((e) => { console.log('FAILED ' + e.stack); process.exit(7); });
    `;
    let doneAt;
    let killer;
    const run = runNode(script, {
      ms: 30_000,
      onStdout: (out) => {
        if (doneAt === undefined && /^DONE$/m.test(out)) {
          doneAt = Date.now();
          killer = setTimeout(() => run.child.kill('SIGKILL'), 10_000);
        }
      }
    });
    const r = await run.done;
    clearTimeout(killer);
    assert.match(r.stdout, /^DONE$/m, `the child did not finish its exchange: ${describeChild(r)}`);
    assert.equal(r.signal, null, `the child did not exit by itself within 10 s of closing everything: ${describeChild(r)}`);
    assert.equal(r.code, 0, describeChild(r));
  });
});
