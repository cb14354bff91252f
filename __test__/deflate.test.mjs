// permessage-deflate (RFC 7692) end to end, against the real emulator: ws 8 senders and
// listeners, this package's sender and listener (both accept paths), browser-style offers,
// fragmented messages, frames the relay or a client must refuse, and compression bombs.
// Where ws leaves nothing to choose, ws itself is the reference: its own server's answer to
// the same offer, its own error for the same bad frame.
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';

import hyco, { createRelaySendUri } from 'hyco-ws-rs';
import WebSocket, { WebSocketServer } from 'ws';

import {
  STEP_MS,
  acceptRendezvous,
  attempt,
  expectOpen,
  listen,
  nextAccept,
  nextEvent,
  nextMessage,
  rawConnect,
  rawWaitFor,
  startSender,
  whenClosed,
  withTimeout
} from './support/relay-steps.mjs';
import { echo, nextConnection, sendAddress, startServer, withServerRelay } from './support/server-steps.mjs';

const { relayedConnect } = hyco;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * JSON-like text of about `n` bytes, different for each `seed`.
 *
 * @param {number} n Bytes.
 * @param {number} seed Variation.
 * @returns {string}
 */
function json(n, seed = 0) {
  const items = [];
  let size = 2;
  for (let i = 0; size < n; i++) {
    const item = JSON.stringify({ id: i * 7 + seed, name: `user-${(i * 31 + seed) % 97}`, active: i % 3 === 0, score: (i * 13) % 101 });
    items.push(item);
    size += item.length + 1;
  }
  return `[${items.join(',')}]`.slice(0, n);
}

/**
 * Counts the compressed frames a plain ws socket reads (ws inflates each frame that has RSV1).
 *
 * @param {WebSocket} ws An open ws socket.
 * @returns {{ count: number }} Updated as frames arrive.
 */
function spyCompressed(ws) {
  const counter = { count: 0 };
  const receiver = ws._receiver;
  const decompress = receiver.decompress;
  receiver.decompress = function (...args) {
    counter.count++;
    return decompress.apply(this, args);
  };
  return counter;
}

/**
 * Waits for a relayed socket of this package to open (or fail).
 *
 * @param {any} S The socket.
 * @param {string} what What is awaited.
 * @returns {Promise<void>}
 */
function opened(S, what) {
  return withTimeout(
    new Promise((resolve, reject) => {
      S.once('open', resolve);
      S.once('error', reject);
    }),
    STEP_MS,
    what
  );
}

/**
 * Keeps every message of a socket of this package, in order, from now on.
 *
 * @param {any} S The socket.
 * @returns {any} `S`, with `inbox` and `inboxWaiters`.
 */
function keepMessages(S) {
  S.inbox = [];
  S.inboxWaiters = [];
  S.on('message', (data, isBinary) => {
    const waiter = S.inboxWaiters.shift();
    if (waiter) waiter({ data, isBinary });
    else S.inbox.push({ data, isBinary });
  });
  return S;
}

/**
 * The next message of a socket of this package (see `keepMessages`).
 *
 * @param {any} S The socket.
 * @param {string} what What is awaited.
 * @returns {Promise<{ data: any, isBinary: boolean }>}
 */
function messageOf(S, what) {
  if (S.inbox.length > 0) return Promise.resolve(S.inbox.shift());
  return withTimeout(new Promise((resolve) => S.inboxWaiters.push(resolve)), STEP_MS, what);
}

/**
 * A relayed sender of this package, with its events kept.
 *
 * @param {any} relay The relay.
 * @param {object} [options] `relayedConnect` options.
 * @returns {any} The socket, with `errors` and `closed` (a promise of `{ code, reason }`).
 */
function sender(relay, options = {}) {
  const { uri, token } = sendAddress(relay);
  const S = relayedConnect(uri, token, options);
  keepMessages(S);
  S.errors = [];
  S.on('error', (e) => S.errors.push(e));
  S.closed = new Promise((resolve) => S.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  return S;
}

/**
 * Offers and answers of ws's own server for `serverOptions`: what a ws 8 client with
 * `clientOptions` agrees with it directly (its `params`), or the handshake's failure.
 *
 * @param {object} serverOptions ws `perMessageDeflate` of the server.
 * @param {object|false} clientOptions ws `perMessageDeflate` of the client.
 * @returns {Promise<{ params?: object, error?: string }>}
 */
async function wsAgreement(serverOptions, clientOptions) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: serverOptions });
  await nextEvent(wss, 'listening', STEP_MS, 'a ws server to listen');
  try {
    const { outcome } = attempt(`ws://127.0.0.1:${wss.address().port}/`, undefined, { perMessageDeflate: clientOptions });
    const o = await withTimeout(outcome, STEP_MS, 'a direct ws handshake');
    if (!o.ok) return { error: o.statusCode ? `Unexpected server response: ${o.statusCode}` : o.error.message };
    const ext = o.ws._extensions['permessage-deflate'];
    o.ws.terminate();
    return { params: ext ? { ...ext.params } : null };
  } finally {
    for (const c of wss.clients) c.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
}

/** The offers a ws 8 client can make (its `perMessageDeflate` options). */
function clientOffers() {
  const offers = [false];
  for (const serverNoContextTakeover of [undefined, true]) {
    for (const clientNoContextTakeover of [undefined, true]) {
      for (const serverMaxWindowBits of [undefined, 10]) {
        for (const clientMaxWindowBits of [undefined, false, 9]) {
          const o = {};
          if (serverNoContextTakeover !== undefined) o.serverNoContextTakeover = serverNoContextTakeover;
          if (clientNoContextTakeover !== undefined) o.clientNoContextTakeover = clientNoContextTakeover;
          if (serverMaxWindowBits !== undefined) o.serverMaxWindowBits = serverMaxWindowBits;
          if (clientMaxWindowBits !== undefined) o.clientMaxWindowBits = clientMaxWindowBits;
          offers.push(o);
        }
      }
    }
  }
  return offers;
}

/**
 * A masked client frame.
 *
 * @param {number} b0 The first byte (FIN, RSV1, opcode).
 * @param {Buffer} payload The payload.
 * @returns {Buffer}
 */
function maskedFrame(b0, payload) {
  const mask = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([b0, 0x80 | len]) : Buffer.from([b0, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

describe('a ws 8 sender and RelayedServer', () => {
  for (const path of ['native accept', 'JavaScript hooks']) {
    for (const serverOptions of [true, { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 12, threshold: 0 }]) {
      test(`every offer ws can make is answered as ws's own server answers it (${path}, ${JSON.stringify(serverOptions)})`, async () => {
        await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
          const extra = { perMessageDeflate: serverOptions };
          if (path !== 'native accept') extra.verifyClient = () => true;
          const server = echo(await startServer(relay, extra));
          const wsServerOptions = serverOptions === true ? {} : serverOptions;
          let seed = 0;
          for (const offer of clientOffers()) {
            const label = JSON.stringify(offer);
            const expected = await wsAgreement(wsServerOptions, offer);
            const s = startSender(relay, 'hc', { wsOptions: { perMessageDeflate: offer } });
            const o = await withTimeout(s.outcome, STEP_MS, `the sender offering ${label}`);
            if (expected.error) {
              assert.equal(o.ok, false, `${label}: ws's server refuses it, so must this one`);
              assert.equal(o.statusCode, 400, label);
              continue;
            }
            assert.ok(o.ok, `${label}: ${o.error && o.error.message}`);
            const { socket } = await nextConnection(server, STEP_MS, `the connection for ${label}`);
            const ws = o.ws;
            const agreed = ws._extensions['permessage-deflate'];
            assert.deepEqual(agreed ? { ...agreed.params } : null, expected.params, `${label}: the sender's agreement`);
            assert.equal(ws.extensions, expected.params ? 'permessage-deflate' : '', label);
            assert.equal(socket.extensions, ws.extensions, `${label}: both ends report the same extensions`);
            if (expected.params) assert.deepEqual({ ...socket._extensions['permessage-deflate'].params }, expected.params, label);
            const spy = spyCompressed(ws);
            const messages = [json(5000, seed++), json(5000, seed++), json(5000, seed - 1), 'tiny', ''];
            for (const m of messages) ws.send(m);
            for (const m of messages) {
              const got = await nextMessage(ws, STEP_MS, `the echo (${label})`);
              assert.ok(got.data.toString() === m, `${label}: an echo of ${m.length} bytes, got ${got.data.length}`);
            }
            // Fragmented, compressed by ws frame by frame.
            ws.send('abc'.repeat(500), { fin: false });
            ws.send('def'.repeat(500), { fin: false });
            ws.send('ghi'.repeat(500));
            assert.equal((await nextMessage(ws, STEP_MS, 'the fragmented echo')).data.toString(), 'abc'.repeat(500) + 'def'.repeat(500) + 'ghi'.repeat(500));
            if (expected.params) assert.ok(spy.count >= 4, `${label}: the listener compressed its echoes (${spy.count})`);
            else assert.equal(spy.count, 0, label);
            ws.close();
            await whenClosed(ws, STEP_MS, 'the sender to close');
          }
        });
      });
    }
  }

  test('deflate is off by default, as in ws\'s server: the offer is declined', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const server = echo(await startServer(relay));
      const s = startSender(relay, 'hc', { wsOptions: {} });
      const ws = await expectOpen(s.outcome, 'a default ws sender');
      const { socket } = await nextConnection(server);
      assert.equal(ws.extensions, '');
      assert.equal(socket.extensions, '');
      ws.send(json(3000));
      assert.equal((await nextMessage(ws)).data.toString(), json(3000));
    });
  });

  test('a compression bomb is refused with 1009, as ws refuses it (maxPayload applies inflated)', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const server = await startServer(relay, { perMessageDeflate: true, maxPayload: 1024 * 1024 });
      const s = startSender(relay, 'hc', { wsOptions: {} });
      const ws = await expectOpen(s.outcome, 'the sender');
      const { socket } = await nextConnection(server);
      const err = withTimeout(new Promise((resolve) => socket.once('error', resolve)), STEP_MS, "the listener's error");
      const bomb = Buffer.alloc(16 * 1024 * 1024);
      assert.ok(zlib.deflateRawSync(bomb).length < 32 * 1024, 'it is a bomb');
      ws.send(bomb);
      const e = await err;
      assert.ok(e instanceof RangeError);
      assert.equal(e.message, 'Max payload size exceeded');
      assert.equal(e.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
      assert.equal((await whenClosed(ws, STEP_MS, 'the sender to be closed')).code, 1009);
    });
  });

  test('compressed data that does not inflate fails with 1007 and zlib\'s error, as ws', async () => {
    const garbage = maskedFrame(0xc1, Buffer.from([0xff, 0xff, 0xff]));
    // ws's own server, for the reference.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true });
    await nextEvent(wss, 'listening', STEP_MS, 'a ws server');
    const wsErr = new Promise((resolve) => wss.once('connection', (c) => c.once('error', resolve)));
    const direct = await expectOpen(attempt(`ws://127.0.0.1:${wss.address().port}/`, undefined, {}).outcome, 'a direct sender');
    direct._socket.write(garbage);
    const reference = await withTimeout(wsErr, STEP_MS, "ws's server's error");
    assert.equal((await whenClosed(direct)).code, 1007);
    await new Promise((resolve) => wss.close(resolve));
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const server = await startServer(relay, { perMessageDeflate: true });
      const ws = await expectOpen(startSender(relay, 'hc', { wsOptions: {} }).outcome, 'the sender');
      const { socket } = await nextConnection(server);
      const err = withTimeout(new Promise((resolve) => socket.once('error', resolve)), STEP_MS, "the listener's error");
      ws._socket.write(garbage);
      const e = await err;
      assert.equal(e.message, reference.message);
      assert.equal(e.code, reference.code);
      // zlib's return value too (-3), as Node's zlib gives it; the same own fields.
      assert.equal(e.errno, reference.errno);
      assert.deepEqual(Object.keys(e), Object.keys(reference));
      assert.equal((await whenClosed(ws, STEP_MS, 'the sender to be closed')).code, 1007);
    });
  });

  test('an offer that cannot be read or accepted is refused with 400 on both paths', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      for (const extra of [{}, { verifyClient: () => true }]) {
        const server = await startServer(relay, { perMessageDeflate: { serverNoContextTakeover: false }, ...extra });
        for (const header of ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; bogus', 'permessage-deflate;;']) {
          const s = startSender(relay, 'hc', { headers: { 'Sec-WebSocket-Extensions': header }, wsOptions: { perMessageDeflate: false } });
          const o = await withTimeout(s.outcome, STEP_MS, `the sender offering ${header}`);
          assert.equal(o.statusCode, 400, header);
          assert.equal(o.statusMessage, 'Invalid or unacceptable Sec-WebSocket-Extensions header');
        }
        server.close();
        await nextEvent(server, 'close', STEP_MS, 'the server to close');
      }
    });
  });

  test('a browser-style offer (two offers, in one header line or two) over a raw connection: the answer, then RSV1 frames both ways', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      await echo(await startServer(relay, { perMessageDeflate: true }));
      const { uri, token } = sendAddress(relay);
      // Two lines are one list (RFC 7230 3.2.2), for the listener and the relay alike.
      for (const offer of [
        'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate\r\n',
        'Sec-WebSocket-Extensions: x-unknown\r\nSec-WebSocket-Extensions: permessage-deflate\r\n',
        'Sec-WebSocket-Extensions: \r\nSec-WebSocket-Extensions: permessage-deflate\r\n'
      ]) {
        const raw = await rawConnect(relay.port);
        const target = new URL(uri);
        raw.write(
          `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: 127.0.0.1:${relay.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
            offer +
            `ServiceBusAuthorization: ${token}\r\n\r\n`
        );
        assert.equal(await rawWaitFor(raw, (t) => t.includes('\r\n\r\n'), STEP_MS, 'the 101'), 'matched');
        const head = raw.text().split('\r\n\r\n')[0];
        assert.match(head, /^HTTP\/1\.1 101/);
        assert.match(head, /\r\nSec-WebSocket-Extensions: permessage-deflate(\r\n|$)/i);
        const headLength = Buffer.byteLength(head, 'latin1') + 4;
        const text = json(4000);
        const compressed = zlib.deflateRawSync(text, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
        assert.ok(compressed.subarray(-4).equals(TAIL));
        raw.write(maskedFrame(0xc1, compressed.subarray(0, -4)));
        const frameIn = () => Buffer.concat(raw.received).subarray(headLength);
        await rawWaitFor(raw, () => {
          const f = frameIn();
          return f.length >= 4 && f.length >= 4 + f.readUInt16BE(2);
        }, STEP_MS, 'the echo');
        const f = frameIn();
        assert.equal(f[0], 0xc1, 'FIN, RSV1, text: the echo is compressed');
        assert.equal(f[1], 126);
        const payload = f.subarray(4, 4 + f.readUInt16BE(2));
        assert.equal(zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString(), text);
        raw.destroy();
      }
    });
  });
});

describe('relayedConnect with a ws 8 listener (hand-written, over the relay)', () => {
  test('the offer reaches the listener; its answer makes both ends compress', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const control = await listen(relay, 'hc');
      try {
        const S = sender(relay);
        const accept = await nextAccept(control);
        const offered = Object.entries(accept.connectHeaders).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
        assert.deepEqual(offered && offered[1], 'permessage-deflate; client_max_window_bits', "ws's client offer");
        // `clientMaxWindowBits: false` makes ws offer exactly `permessage-deflate`: an
        // answer a ws client can take back (with default parameters, the roles agree).
        const peer = await acceptRendezvous(accept, { wsOptions: { perMessageDeflate: { clientMaxWindowBits: false } } });
        await opened(S, 'the sender to open');
        assert.equal(S.extensions, 'permessage-deflate');
        assert.equal(peer.extensions, 'permessage-deflate');
        assert.deepEqual({ ...S._extensions['permessage-deflate'].params }, {});
        const spy = spyCompressed(peer);
        const big = json(6000);
        S.send(big);
        assert.equal((await nextMessage(peer)).data.toString(), big);
        assert.equal(spy.count, 1, 'sent compressed');
        S.send(big, { compress: false });
        assert.equal((await nextMessage(peer)).data.toString(), big);
        assert.equal(spy.count, 1, 'compress: false sends it as it is');
        // Large (the native call of its own), binary and fragmented.
        const bin = Buffer.from(json(100_000));
        S.send(bin);
        assert.deepEqual((await nextMessage(peer)).data, bin);
        S.send('one,', { fin: false });
        S.send('two,', { fin: false });
        S.send('three');
        assert.equal((await nextMessage(peer)).data.toString(), 'one,two,three');
        assert.equal(spy.count, 5, 'every frame of a compressed message is compressed');
        // Large and not compressed (framed in place, in a write of its own), between
        // compressed messages; fragmented too, either way round.
        const large = Buffer.from(json(300_000, 1));
        S.send(large, { compress: false });
        assert.deepEqual((await nextMessage(peer)).data, large);
        assert.equal(spy.count, 5, 'a large compress: false message is sent as it is');
        S.send(big);
        assert.equal((await nextMessage(peer)).data.toString(), big);
        assert.equal(spy.count, 6, 'compressed again after it');
        S.send(large, { fin: false, compress: false });
        S.send(large);
        assert.deepEqual((await nextMessage(peer)).data, Buffer.concat([large, large]));
        assert.equal(spy.count, 6, 'the first frame decides: its continuation is not compressed');
        S.send('head,', { fin: false });
        S.send(large, { compress: false });
        assert.equal((await nextMessage(peer)).data.toString(), `head,${large}`);
        assert.equal(spy.count, 8, 'the first frame decides: its continuation is compressed');
        // After a compressed message, an uncompressed large first frame (in place) and a
        // small continuation: the connection's compression state followed the first frame.
        S.send(large, { fin: false, compress: false });
        S.send('tail');
        assert.equal((await nextMessage(peer)).data.toString(), `${large}tail`);
        assert.equal(spy.count, 8, 'neither frame compressed');
        peer.send(big);
        assert.equal((await messageOf(S, 'the listener\'s message')).data.toString(), big);
        S.close();
        await S.closed;
      } finally {
        control.close();
      }
    });
  });

  test('perMessageDeflate: false offers nothing; an answer it did not ask for fails the handshake as in ws', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const control = await listen(relay, 'hc');
      try {
        const S = sender(relay, { perMessageDeflate: false });
        const accept = await nextAccept(control);
        assert.ok(!Object.keys(accept.connectHeaders).some((k) => k.toLowerCase() === 'sec-websocket-extensions'));
        await acceptRendezvous(accept, { wsOptions: { perMessageDeflate: { clientMaxWindowBits: false } } });
        await S.closed;
        assert.equal(S.errors.length, 1);
        assert.equal(S.errors[0].message, 'Server sent a Sec-WebSocket-Extensions header but no extension was requested');
      } finally {
        control.close();
      }
    });
  });

  test('a listener that answers nothing leaves both ends uncompressed', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const control = await listen(relay, 'hc');
      try {
        const S = sender(relay);
        // A default ws client *offers* (`client_max_window_bits` without a value): that is
        // no answer, and the relay negotiates nothing for this pair.
        const peer = await acceptRendezvous(await nextAccept(control), { wsOptions: {} });
        await opened(S, 'the sender');
        assert.equal(S.extensions, '');
        assert.equal(peer.extensions, '');
        S.send(json(5000));
        assert.equal((await nextMessage(peer)).data.toString(), json(5000));
      } finally {
        control.close();
      }
    });
  });
});

describe('RSV1 without an agreement', () => {
  test('the emulator refuses it (1002)', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      const control = await listen(relay, 'hc');
      try {
        const s = startSender(relay, 'hc', { wsOptions: { perMessageDeflate: false } });
        const peer = await acceptRendezvous(await nextAccept(control), { wsOptions: { perMessageDeflate: false } });
        const ws = await expectOpen(s.outcome, 'the sender');
        ws._socket.write(maskedFrame(0xc1, Buffer.from('x')));
        assert.equal((await whenClosed(peer, STEP_MS, 'the listener to be closed')).code, 1002);
      } finally {
        control.close();
      }
    });
  });

  test('our client refuses it with ws\'s error; with deflate agreed, a bomb is 1009', async () => {
    for (const deflate of [false, true]) {
      const server = http.createServer();
      const wss = new WebSocketServer({ server, perMessageDeflate: deflate });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const serverClose = new Promise((resolve) => wss.once('connection', (c) => {
        c.once('close', (code) => resolve(code));
        if (deflate) c.send(Buffer.alloc(8 * 1024 * 1024));
        else c._socket.write(Buffer.from([0xc1, 0x01, 0x78]));
      }));
      const S = relayedConnect(`ws://127.0.0.1:${server.address().port}/`, null, { maxPayload: 1024 * 1024 });
      const errors = [];
      S.on('error', (e) => errors.push(e));
      const closed = new Promise((resolve) => S.once('close', (code) => resolve(code)));
      assert.equal(await withTimeout(closed, STEP_MS, 'our client to close'), 1006);
      assert.equal(errors.length, 1);
      if (deflate) {
        assert.equal(S.extensions, 'permessage-deflate');
        assert.equal(errors[0].message, 'Max payload size exceeded');
        assert.equal(errors[0].code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
        assert.equal(await withTimeout(serverClose, STEP_MS, "the server's close"), 1009);
      } else {
        assert.equal(errors[0].message, 'Invalid WebSocket frame: RSV1 must be clear');
        assert.equal(errors[0].code, 'WS_ERR_UNEXPECTED_RSV_1');
        assert.equal(await withTimeout(serverClose, STEP_MS, "the server's close"), 1002);
      }
      await new Promise((resolve) => wss.close(() => server.close(resolve)));
    }
  });
});

describe('relayedConnect and RelayedServer', () => {
  const cases = [
    [undefined, true],
    [{ serverNoContextTakeover: true }, true],
    [{ clientNoContextTakeover: true, threshold: 0 }, { serverNoContextTakeover: true, threshold: 0 }],
    [{ serverMaxWindowBits: 9, clientMaxWindowBits: 10 }, { zlibDeflateOptions: { level: 1, memLevel: 2 } }],
    [{ zlibDeflateOptions: { level: 9, memLevel: 9 } }, { serverMaxWindowBits: 12, clientMaxWindowBits: 13 }],
    [false, true],
    [undefined, false]
  ];
  for (const hooks of [false, true]) {
    test(`messages of every size and shape, every ${hooks ? 'hooked' : 'native'} accept, the roles the right way round`, async () => {
      await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
        for (const [client, listener] of cases) {
          const label = `${JSON.stringify(client)} -> ${JSON.stringify(listener)}`;
          const extra = { perMessageDeflate: listener };
          if (hooks) extra.verifyClient = () => true;
          const server = echo(await startServer(relay, extra));
          const S = sender(relay, client === undefined ? {} : { perMessageDeflate: client });
          await opened(S, `the sender (${label})`);
          const { socket } = await nextConnection(server, STEP_MS, `the connection (${label})`);
          const agreed = client !== false && listener !== false;
          assert.equal(S.extensions, agreed ? 'permessage-deflate' : '', label);
          assert.equal(socket.extensions, S.extensions, label);
          // The same message again and again: a listener that compressed under the client's
          // parameters, or kept a context it agreed to drop, would fail the sender (1007).
          const same = json(5000, 1);
          const messages = [same, same, same, json(300), '', Buffer.from(json(70_000)), json(20_000, 2), same];
          for (const m of messages) S.send(m);
          for (const m of messages) {
            const got = await messageOf(S, `an echo (${label})`);
            const expected = typeof m === 'string' ? Buffer.from(m) : m;
            assert.ok(expected.equals(got.data), `${label}: message of ${expected.length} bytes, got ${got.data.length}`);
            assert.equal(got.isBinary, typeof m !== 'string', label);
          }
          S.send('a'.repeat(2000), { fin: false });
          S.send('b'.repeat(10), { fin: false });
          S.send('c'.repeat(3000));
          assert.equal((await messageOf(S, 'the fragmented echo')).data.toString(), 'a'.repeat(2000) + 'b'.repeat(10) + 'c'.repeat(3000));
          assert.deepEqual(S.errors, [], label);
          S.close();
          await S.closed;
          server.close();
          await nextEvent(server, 'close', STEP_MS, 'the server to close');
        }
      });
    });
  }

  test('bufferedAmount counts a compressed message as sent, until it is written', async () => {
    await withServerRelay({ hybridConnections: ['hc'] }, async (relay) => {
      await startServer(relay, { perMessageDeflate: true });
      const S = sender(relay);
      await opened(S, 'the sender');
      const data = json(20_000);
      const written = new Promise((resolve) => S.send(data, resolve));
      assert.equal(S.bufferedAmount, data.length + 8);
      assert.equal(await withTimeout(written, STEP_MS, 'the send callback'), null);
      assert.equal(S.bufferedAmount, 0);
      S.send('small', () => {});
      assert.equal(S.bufferedAmount, 5 + 6);
    });
  });

  test('the perMessageDeflate option is checked', () => {
    const { uri, token } = { uri: createRelaySendUri('ws://127.0.0.1:1', 'hc'), token: null };
    const bad = [
      ['yes', TypeError, 'The "options.perMessageDeflate" property must be a boolean or an object. Received type string'],
      [{ serverMaxWindowBits: 16 }, RangeError, 'The value of "options.perMessageDeflate.serverMaxWindowBits" is out of range. It must be an integer from 8 to 15. Received 16'],
      [{ clientMaxWindowBits: '9' }, TypeError, 'The "options.perMessageDeflate.clientMaxWindowBits" property must be a boolean or a number. Received type string'],
      [{ serverNoContextTakeover: 1 }, TypeError, 'The "options.perMessageDeflate.serverNoContextTakeover" property must be of type boolean. Received type number'],
      [{ threshold: -1 }, RangeError, 'The value of "options.perMessageDeflate.threshold" is out of range. It must be a finite number >= 0. Received -1'],
      // ws takes these unchecked; refused here, as the README says.
      [{ threshold: NaN }, RangeError, 'The value of "options.perMessageDeflate.threshold" is out of range. It must be a finite number >= 0. Received NaN'],
      [{ threshold: '2048' }, TypeError, 'The "options.perMessageDeflate.threshold" property must be of type number. Received type string'],
      [{ serverMaxWindowBits: 0 }, RangeError, 'The value of "options.perMessageDeflate.serverMaxWindowBits" is out of range. It must be an integer from 8 to 15. Received 0'],
      [1, TypeError, 'The "options.perMessageDeflate" property must be a boolean or an object. Received type number'],
      [{ zlibDeflateOptions: { level: 10 } }, RangeError, 'The value of "options.level" is out of range. It must be >= -1 and <= 9. Received 10'],
      [{ zlibDeflateOptions: { memLevel: 0 } }, RangeError, 'The value of "options.memLevel" is out of range. It must be >= 1 and <= 9. Received 0']
    ];
    // zlib's options: what Node's zlib refuses, refused with its error, as this Node.js words it.
    for (const [name, value] of [['level', Infinity], ['level', '3'], ['level', 1e10], ['memLevel', {}], ['memLevel', true], ['level', -2]]) {
      let expected;
      try {
        zlib.createDeflateRaw({ [name]: value }).close();
      } catch (err) {
        expected = err;
      }
      assert.ok(expected, `Node's zlib refuses ${name} ${String(value)}`);
      bad.push([{ zlibDeflateOptions: { [name]: value } }, expected.constructor, expected.message]);
    }
    for (const [value, Ctor, message] of bad) {
      assert.throws(() => relayedConnect(uri, token, { perMessageDeflate: value }), (e) => e instanceof Ctor && e.message === message);
      assert.throws(
        () => new hyco.RelayedServer({ server: 'ws://127.0.0.1:1/$hc/hc', token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=z', perMessageDeflate: value }),
        (e) => e instanceof Ctor && e.message === message
      );
    }
    // What ws takes and this package has no use for is accepted, and what ws reads as
    // "none" or "never" (zlibDeflateOptions: null, threshold: Infinity).
    for (const options of [
      { concurrencyLimit: 4, zlibInflateOptions: { chunkSize: 1024 } },
      { zlibDeflateOptions: null, threshold: Infinity },
      // NaN is zlib's default, as Node's zlib reads it.
      { zlibDeflateOptions: { level: NaN, memLevel: NaN } }
    ]) {
      const S = relayedConnect(uri, token, { perMessageDeflate: options });
      S.on('error', () => {});
      S.terminate();
    }
  });
});
