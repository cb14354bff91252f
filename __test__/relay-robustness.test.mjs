// The local relay emulator under abuse: garbage on raw sockets, oversize headers and frames,
// abrupt disconnects, a slow reader (bounded buffering), and the test hooks (dropListeners,
// freezeListeners, stop/start/restart). After every abuse a full listen + connect round trip
// proves the relay still serves.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { createRelaySendUri, createRelayToken } from 'hyco-ws-rs';

import {
  STEP_MS,
  acceptRendezvous,
  attempt,
  connectPair,
  expectOpen,
  expectStatus,
  listen,
  nextAccept,
  nextEvent,
  nextMessage,
  rawConnect,
  rawWaitFor,
  roundTrip,
  startSender,
  tryListen,
  waitUntil,
  whenClosed,
  withRelay,
  withTimeout,
  WebSocket
} from './support/relay-steps.mjs';

const MiB = 1024 * 1024;

/**
 * A WebSocket upgrade request written by hand.
 *
 * @param {number} port The relay's port (for Host).
 * @param {string} target The request target, e.g. `/$hc/hc?sb-hc-action=listen`.
 * @param {string} [extraHeaders] More header lines, each ending in CRLF.
 * @returns {string}
 */
function upgradeRequest(port, target, extraHeaders = '') {
  return (
    `GET ${target} HTTP/1.1\r\n` +
    `Host: 127.0.0.1:${port}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
    'Sec-WebSocket-Version: 13\r\n' +
    extraHeaders +
    '\r\n'
  );
}

/**
 * The status of the HTTP response a raw socket received, if any.
 *
 * @param {{ text: () => string }} socket A raw socket from `rawConnect`.
 * @returns {number|undefined}
 */
function rawStatus(socket) {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(socket.text());
  return m ? Number(m[1]) : undefined;
}

/**
 * Whether a raw WebSocket client has received, after the 101 response, a close frame.
 *
 * @param {string} text Everything received so far (latin1).
 * @returns {boolean}
 */
function hasCloseFrameAfterHandshake(text) {
  const end = text.indexOf('\r\n\r\n');
  return end >= 0 && text.length > end + 4 && (text.charCodeAt(end + 4) & 0x0f) === 0x8;
}

/**
 * A masked binary frame header claiming 2^63-1 bytes of payload, then a little payload.
 *
 * @returns {Buffer}
 */
function hugeFrame() {
  return Buffer.concat([
    Buffer.from([0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    crypto.randomBytes(4),
    crypto.randomBytes(1024)
  ]);
}

/**
 * Writes the oversized frame on a raw WebSocket and waits for the relay to end it: a close
 * frame or the end of the TCP connection.
 *
 * @param {Awaited<ReturnType<typeof rawConnect>>} socket A raw socket past its 101 answer.
 * @returns {Promise<void>}
 */
async function sendHugeFrameAndExpectClose(socket) {
  socket.write(hugeFrame());
  await rawWaitFor(socket, hasCloseFrameAfterHandshake, 10_000, 'the relay to close the connection that claimed 2^63-1 bytes');
  socket.destroy();
}

describe('garbage input', () => {
  test('random bytes on raw TCP connections are dropped, and the relay keeps serving', async () => {
    await withRelay(undefined, async (relay) => {
      const sockets = await Promise.all(Array.from({ length: 20 }, () => rawConnect(relay.port)));
      for (const socket of sockets) {
        socket.write(crypto.randomBytes(512 + crypto.randomInt(8192)));
        socket.end();
      }
      await withTimeout(Promise.all(sockets.map((s) => s.ended)), 10_000, 'the relay to end 20 garbage connections');
      for (const socket of sockets) {
        const status = rawStatus(socket);
        if (socket.text().length > 0) assert.ok(status >= 400 && status < 500, `answer to garbage: ${socket.text().slice(0, 80)}`);
      }
      await roundTrip(relay, 'hc');
    });
  });

  test('a binary request line gets 400 or a close without waiting for EOF', async () => {
    await withRelay(undefined, async (relay) => {
      const socket = await rawConnect(relay.port);
      socket.write(Buffer.concat([Buffer.from([0, 0xff, 0x13, 0x37]), crypto.randomBytes(200), Buffer.from('\r\n\r\n')]));
      const r = await rawWaitFor(socket, (t) => t.includes('\r\n'), 10_000, 'an answer or a close to a binary request line');
      if (r === 'matched') assert.equal(rawStatus(socket), 400, socket.text().slice(0, 80));
      socket.destroy();
      await roundTrip(relay, 'hc');
    });
  });

  test('truncated handshakes followed by EOF are dropped, and the relay keeps serving', async () => {
    await withRelay(undefined, async (relay) => {
      const request = upgradeRequest(relay.port, '/$hc/hc?sb-hc-action=listen');
      for (const cut of [1, 10, 40, request.length - 30, request.length - 2]) {
        const socket = await rawConnect(relay.port);
        socket.write(request.slice(0, cut));
        socket.end();
        await withTimeout(socket.ended, STEP_MS, `the relay to end a handshake cut at ${cut} bytes`);
      }
      await roundTrip(relay, 'hc');
    });
  });

  test('oversize request headers get 431 or 400 or a close', async () => {
    await withRelay(undefined, async (relay) => {
      const variants = [
        ['one 64 KiB header', `X-Big: ${'a'.repeat(64 * 1024)}\r\n`],
        ['2000 headers', Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'v'.repeat(30)}\r\n`).join('')]
      ];
      for (const [what, headers] of variants) {
        const socket = await rawConnect(relay.port);
        socket.write(upgradeRequest(relay.port, '/$hc/hc?sb-hc-action=listen', headers));
        const r = await rawWaitFor(socket, (t) => t.includes('\r\n'), 10_000, `an answer or a close to ${what}`);
        if (r === 'matched') {
          const status = rawStatus(socket);
          assert.ok(status === 431 || status === 400, `${what}: ${socket.text().slice(0, 80)}`);
        }
        socket.destroy();
      }
      await roundTrip(relay, 'hc');
    });
  });

  test('a sender frame claiming 2^63-1 bytes closes that connection only', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const token = createRelayToken(createRelaySendUri(relay.namespace, 'hc'), relay.keyName, relay.key);
      const socket = await rawConnect(relay.port);
      socket.write(upgradeRequest(relay.port, `/$hc/hc?sb-hc-action=connect&sb-hc-token=${encodeURIComponent(token)}`));
      const peer = await acceptRendezvous(await nextAccept(control));
      await rawWaitFor(socket, (t) => t.includes('\r\n\r\n'), STEP_MS, 'the answer to the hand-made sender handshake');
      assert.equal(rawStatus(socket), 101, socket.text().slice(0, 80));
      await sendHugeFrameAndExpectClose(socket);
      await whenClosed(peer, 10_000, 'the listener side of the bad connection to be closed');
      await waitUntil(() => relay.stats().connections === 0, STEP_MS, () => `no connection left: ${JSON.stringify(relay.stats())}`);
      assert.equal(control.readyState, WebSocket.OPEN, 'the control channel is unaffected');
      await roundTrip(relay, 'hc-check');
    });
  });

  test('a listener frame claiming 2^63-1 bytes on the accept socket closes that connection only', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const s = startSender(relay, 'hc');
      const accept = await nextAccept(control);
      const address = new URL(accept.address);
      const socket = await rawConnect(relay.port);
      socket.write(upgradeRequest(relay.port, `${address.pathname}${address.search}`));
      await rawWaitFor(socket, (t) => t.includes('\r\n\r\n'), STEP_MS, 'the answer to the hand-made accept handshake');
      assert.equal(rawStatus(socket), 101, socket.text().slice(0, 80));
      const sender = await expectOpen(s.outcome, 'the sender');
      await sendHugeFrameAndExpectClose(socket);
      await whenClosed(sender, 10_000, 'the sender side of the bad connection to be closed');
      await waitUntil(() => relay.stats().connections === 0, STEP_MS, () => `no connection left: ${JSON.stringify(relay.stats())}`);
      assert.equal(control.readyState, WebSocket.OPEN, 'the control channel is unaffected');
      await roundTrip(relay, 'hc-check');
    });
  });

  test('many abrupt disconnects leave no listeners, pending accepts or connections behind', async () => {
    await withRelay({ acceptTimeoutMs: 1500 }, async (relay) => {
      const stats = () => JSON.stringify(relay.stats());
      // 3 x 10 listeners killed mid-life: more than the default 25 slots, so leaked slots
      // would make a later listen fail with 403.
      for (let round = 0; round < 3; round++) {
        const controls = await Promise.all(Array.from({ length: 10 }, () => listen(relay, 'hc')));
        for (const c of controls) c.terminate();
        await waitUntil(() => relay.stats().listeners === 0, STEP_MS, () => `every killed listener to be gone: ${stats()}`);
      }

      // Senders killed while waiting for an accept.
      const control = await listen(relay, 'hc');
      const waiting = Array.from({ length: 10 }, () => startSender(relay, 'hc'));
      for (let i = 0; i < waiting.length; i++) await nextAccept(control);
      for (const s of waiting) s.ws.terminate();
      await waitUntil(() => relay.stats().pendingAccepts === 0, 10_000, () => `no accept left pending: ${stats()}`);

      // Relayed pairs killed from either side.
      const pairs = [];
      for (let i = 0; i < 10; i++) pairs.push(await connectPair(relay, control, 'hc'));
      pairs.forEach(({ sender, peer }, i) => (i % 2 ? sender : peer).terminate());
      for (const [i, { sender, peer }] of pairs.entries()) {
        await whenClosed(i % 2 ? peer : sender, STEP_MS, `the other end of killed pair ${i} to be closed`);
      }
      await waitUntil(() => relay.stats().connections === 0, STEP_MS, () => `no connection left: ${stats()}`);

      // Raw sockets cut at once, and handshakes cut halfway.
      const raws = await Promise.all(Array.from({ length: 10 }, () => rawConnect(relay.port)));
      raws.forEach((socket, i) => {
        if (i % 2) socket.write(upgradeRequest(relay.port, '/$hc/hc?sb-hc-action=listen').slice(0, 50));
        socket.destroy();
      });

      control.terminate();
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, () => `the last listener to be gone: ${stats()}`);
      await roundTrip(relay, 'hc');
      await waitUntil(
        () => {
          const s = relay.stats();
          return s.listeners === 0 && s.pendingAccepts === 0 && s.connections === 0;
        },
        STEP_MS,
        () => `everything back to 0: ${stats()}`
      );
    });
  });
});

describe('refused listeners and accepts', () => {
  test('a listen request without a valid token makes no Hybrid Connection, and takes no senders from a shorter name', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      for (let i = 0; i < 20; i++) {
        await expectStatus(tryListen(relay, `junk${i}`, { token: null }).outcome, 401, `tokenless listener ${i}`);
      }
      await expectStatus(tryListen(relay, 'hc/sub', { token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=z' }).outcome, 401, 'a listener with a bad token on hc/sub');
      assert.equal(relay.stats().hybridConnections, 1, 'only the authorized listener made one');
      // A sender to hc/sub/x reaches the listener on hc, with /sub/x as its suffix.
      const sender = startSender(relay, 'hc/sub/x');
      const accept = await nextAccept(control);
      assert.match(new URL(accept.address).pathname, /\/hc\/sub\/x$/);
      const peer = await acceptRendezvous(accept);
      const ws = await expectOpen(sender.outcome, 'the sender on hc/sub/x');
      ws.send('hello');
      assert.equal(String((await nextMessage(peer, STEP_MS, 'the message at the listener')).data), 'hello');
      control.close();
    });
  });

  test("an accept address is good only on its sender's Hybrid Connection: the same id on another gets 403", async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      await listen(relay, 'hc2');
      const sender = startSender(relay, 'hc/sub', { id: 'fixed-id' });
      const accept = await nextAccept(control);
      assert.match(accept.address, /sb-hc-id=fixed-id/);
      for (const path of ['other', 'hc2', 'hc2/sub']) {
        const wrong = accept.address.replace('/$hc/hc/sub?', `/$hc/${path}?`);
        await expectStatus(attempt(wrong).outcome, 403, `the accept on ${path}`);
      }
      const peer = await acceptRendezvous(accept);
      const ws = await expectOpen(sender.outcome, 'the sender');
      ws.send('hello');
      assert.equal(String((await nextMessage(peer, STEP_MS, 'the message at the listener')).data), 'hello');
      control.close();
    });
  });
});

describe('bounded buffering', () => {
  test('a paused sender stops the relay reading from the listener, with at most 1 MiB held; every byte arrives after resume', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const noDeflate = { perMessageDeflate: false, inbox: false };
      const s = startSender(relay, 'hc', { wsOptions: noDeflate });
      const peer = await acceptRendezvous(await nextAccept(control), { wsOptions: noDeflate });
      const sender = await expectOpen(s.outcome, 'the sender');
      sender.pause();

      const SIZE = 64 * 1024;
      const WINDOW = 264; // messages sent but not yet written out: 16.5 MiB
      // What a bounded relay can let the listener write before everything stops: the kernel
      // buffers of both hops (at most tcp_wmem + tcp_rmem maxima each, ~72 MiB on Linux
      // defaults; ~8 MiB in practice) plus the relay's 1 MiB. An unbounded relay passes it.
      const LIMIT = 96 * MiB;
      const block = crypto.randomBytes(SIZE);
      let sent = 0;
      let written = 0;
      let lastWrite = Date.now();
      let stopped = false;
      let sendError;
      const sendOne = () => {
        const msg = Buffer.from(block);
        msg.writeUInt32BE(sent++, 0);
        peer.send(msg, { binary: true }, onWritten);
      };
      // Each write that completes allows more, up to WINDOW outstanding, so the listener
      // always has more to write: its writes only stop completing if the relay stops reading.
      function onWritten(err) {
        if (err) {
          sendError = sendError || err;
          return;
        }
        written++;
        lastWrite = Date.now();
        if (stopped) return;
        for (let n = Math.min(32, WINDOW - (sent - written)); n > 0; n--) sendOne();
      }
      for (let i = 0; i < 16; i++) sendOne();

      // The relay has stopped reading when more than 16 MiB wait in the listener and none of
      // it has been written out for a while. bufferedAmount alone is no proof: the producer
      // can outpace a relay that keeps reading (this event loop is also the consumer). What
      // fails the test deterministically is the relay taking more than LIMIT from the
      // listener, or holding more than 1 MiB itself.
      await waitUntil(
        () => {
          if (sendError) throw sendError;
          if (written * SIZE > LIMIT || relay.stats().bufferedBytes > 64 * MiB) {
            throw new Error(
              `the relay kept reading: ${written * SIZE / MiB} MiB taken from the listener while the sender was paused; ` +
                `stats ${JSON.stringify(relay.stats())}`
            );
          }
          return peer.bufferedAmount > 16 * MiB && Date.now() - lastWrite > 250;
        },
        30_000,
        () =>
          `the listener's writes to stall with > 16 MiB queued (${(peer.bufferedAmount / MiB).toFixed(1)} MiB queued, ` +
          `${(written * SIZE / MiB).toFixed(1)} MiB written out; stats ${JSON.stringify(relay.stats())})`
      );
      stopped = true;
      const held = relay.stats().bufferedBytes;
      assert.ok(held <= MiB, `the relay holds ${held} bytes for a paused sender`);

      const total = sent;
      let received = 0;
      let bytes = 0;
      let problem;
      sender.on('message', (data, isBinary) => {
        if (problem) return;
        if (!isBinary || data.length !== SIZE) problem = `message ${received}: ${data.length} bytes, binary ${isBinary}`;
        else if (data.readUInt32BE(0) !== received) problem = `message ${received} arrived as ${data.readUInt32BE(0)}`;
        else if (!data.subarray(4).equals(block.subarray(4))) problem = `message ${received}: payload differs`;
        received++;
        bytes += data.length;
      });
      sender.resume();
      await waitUntil(() => problem || received >= total, 30_000, () => `all ${total} messages at the sender (got ${received})`);
      assert.equal(problem, undefined);
      assert.equal(received, total);
      assert.equal(bytes, total * SIZE);
      // Both ends still work.
      const got = nextEvent(peer, 'message', STEP_MS, 'a message after the transfer');
      sender.send('after');
      const [after] = await got;
      assert.equal(after.toString(), 'after');
    });
  });
});

describe('test hooks', () => {
  test('dropListeners closes the matching control channels with the given code, 1011 by default', async () => {
    await withRelay(undefined, async (relay) => {
      const a = await listen(relay, 'hc-a');
      const b = await listen(relay, 'hc-b');
      const n = await withTimeout(
        relay.dropListeners({ hybridConnection: 'hc-a', code: 1001, reason: 'maintenance' }),
        STEP_MS,
        'dropListeners(hc-a)'
      );
      assert.equal(n, 1);
      assert.deepEqual(await whenClosed(a, STEP_MS, 'hc-a\'s listener to be dropped'), { code: 1001, reason: 'maintenance' });
      const ponged = nextEvent(b, 'pong', STEP_MS, 'a pong from hc-b\'s listener');
      b.ping();
      await ponged;
      assert.equal(b.readyState, WebSocket.OPEN);
      assert.equal(await withTimeout(relay.dropListeners(), STEP_MS, 'dropListeners()'), 1);
      assert.equal((await whenClosed(b, STEP_MS, 'hc-b\'s listener to be dropped')).code, 1011);
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, 'no listener left');
      assert.equal(await withTimeout(relay.dropListeners(), STEP_MS, 'dropListeners() with none'), 0);
      await roundTrip(relay, 'hc-a');
    });
  });

  test('freezeListeners: a frozen listener gets no senders and no pongs until thawed', async () => {
    await withRelay(undefined, async (relay) => {
      const frozen = await listen(relay, 'hc-a');
      const other = await listen(relay, 'hc-b');
      assert.equal(relay.freezeListeners({ hybridConnection: 'hc-a' }), 1);
      let pongs = 0;
      frozen.on('pong', () => pongs++);
      const ponged = nextEvent(frozen, 'pong', 10_000, 'the frozen listener\'s pong after thawing');
      frozen.ping();
      assert.equal(relay.stats().listeners, 2, 'a frozen listener still counts');
      await expectStatus(startSender(relay, 'hc-a').outcome, 404, 'a sender to the frozen listener');
      // The other entity is not frozen.
      const { sender } = await connectPair(relay, other, 'hc-b');
      assert.equal(sender.readyState, WebSocket.OPEN);
      assert.equal(pongs, 0, 'the frozen listener answered a ping');

      assert.equal(relay.freezeListeners({ hybridConnection: 'hc-a', frozen: false }), 1);
      await ponged;
      await connectPair(relay, frozen, 'hc-a');

      // Without a filter every listener freezes.
      assert.equal(relay.freezeListeners(), 2);
      await expectStatus(startSender(relay, 'hc-b').outcome, 404, 'a sender while all are frozen');
      assert.equal(relay.freezeListeners({ frozen: false }), 2);
      await connectPair(relay, other, 'hc-b');
    });
  });

  test('stop() closes every socket and the port; start() listens again on the same port', async () => {
    const key = crypto.randomBytes(32).toString('base64');
    await withRelay({ rules: [{ name: 'kept', key, rights: ['Manage'] }] }, async (relay) => {
      const port = relay.port;
      const control = await listen(relay, 'hc');
      const { sender } = await connectPair(relay, control, 'hc');
      await withTimeout(relay.stop(), 10_000, 'relay.stop()');
      await whenClosed(control, STEP_MS, 'the listener to be closed by stop()');
      await whenClosed(sender, STEP_MS, 'the sender to be closed by stop()');
      const refused = await withTimeout(tryListen(relay, 'hc').outcome, STEP_MS, 'a listen attempt while stopped');
      assert.equal(refused.ok, false);
      assert.equal(refused.error && refused.error.code, 'ECONNREFUSED');
      await withTimeout(relay.start(), 10_000, 'relay.start()');
      assert.equal(relay.port, port);
      assert.equal(relay.keyName, 'kept');
      assert.equal(relay.key, key);
      await roundTrip(relay, 'hc');
    });
  });

  test('restart() drops open listeners and serves again on the same port', async () => {
    await withRelay(undefined, async (relay) => {
      const port = relay.port;
      const control = await listen(relay, 'hc');
      await withTimeout(relay.restart(), 10_000, 'relay.restart()');
      const { code } = await whenClosed(control, STEP_MS, 'the listener to be closed by restart()');
      assert.ok(code === 1006 || code === 1001, `close code ${code}`);
      assert.equal(control.readyState, WebSocket.CLOSED);
      assert.equal(relay.port, port);
      assert.equal(relay.namespace, `ws://127.0.0.1:${port}`);
      const again = await listen(relay, 'hc');
      const { sender, peer } = await connectPair(relay, again, 'hc');
      sender.send('after restart');
      assert.equal((await nextMessage(peer)).data.toString(), 'after restart');
    });
  });
});
