// The order guarantees of sending (issue #14): a send that nothing queued precedes is written
// at once from the JavaScript thread, without the connection's thread; every other send is
// queued. Whichever way each send goes, the peer must see the messages in the order of
// send(), no message after the close frame, the send callbacks must run in the order of
// send() and each one only once its message is written (bufferedAmount then counts only
// later sends), and bufferedAmount must come back to 0.
//
// Sends are mixed so that both ways are taken: lone small messages (written at once when the
// connection is idle), bursts in one tick, messages of 16 KiB and more (handed over one by
// one), a 1 MiB message (which cannot be written at once), sends in later ticks while large
// ones are still being written, and close() right after, in the same tick and later.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { STEP_MS, waitUntil, whenClosed, withTimeout } from './support/relay-steps.mjs';
import { selfSignedCert } from './support/proxy-steps.mjs';
import { MiB, closeOf, withListener } from './support/socket-steps.mjs';
import { nextConnection, sendAddress, startServer, withServerRelay } from './support/server-steps.mjs';
import { relayedConnect } from 'hyco-ws-rs';

/**
 * A message of `size` bytes carrying `seq` in its first four bytes.
 *
 * @param {number} seq The sequence number.
 * @param {number} size Its size (at least 4).
 * @returns {Buffer}
 */
function numbered(seq, size) {
  const b = Buffer.alloc(size, seq & 0xff);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** The size of a message on the wire from a client (masked): what bufferedAmount counts. */
function framed(size) {
  return size + (size < 126 ? 6 : size < 65536 ? 8 : 14);
}

/**
 * Collects what `peer` receives: every message's sequence number and size, and whether one
 * came after its 'close'.
 *
 * @param {any} peer A ws or hyco-ws-rs socket.
 * @returns {{ seqs: number[], sizes: number[], afterClose: number[], close: Promise<any> }}
 */
function collect(peer) {
  const got = { seqs: [], sizes: [], afterClose: [], closed: false };
  peer.on('message', (data) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    if (got.closed) got.afterClose.push(buf.readUInt32BE(0));
    got.seqs.push(buf.readUInt32BE(0));
    got.sizes.push(buf.length);
  });
  got.close = new Promise((resolve) => {
    peer.once('close', (code, reason) => {
      got.closed = true;
      resolve({ code, reason: String(reason) });
    });
  });
  return got;
}

/**
 * Sends `plan` (a list of sizes, and `'tick'` for a turn of the event loop) on `S`, each
 * message numbered in order, with a callback that checks it runs in order and that
 * bufferedAmount then holds no more than the later sends. Resolves once every callback ran.
 *
 * @param {any} S The socket.
 * @param {Array<number|string>} plan The sizes, and `'tick'`s.
 * @returns {Promise<{ sent: number, sizes: number[], direct: number }>} `direct`: sends after
 *     which (once their tick's packed frames were handed over) nothing was left counted
 */
async function sendPlan(S, plan) {
  const sizes = plan.filter((x) => typeof x === 'number');
  const called = [];
  const problems = [];
  // What bufferedAmount may hold when send i's callback runs: the framed sizes of the later
  // sends made so far (the tick's own sends are not all made yet when the first callback
  // runs, so the bound only grows as the plan goes on).
  let pendingAfter = 0;
  const framedSent = [];
  let all;
  const done = new Promise((resolve) => {
    all = resolve;
  });
  let seq = 0;
  let direct = 0;
  for (const step of plan) {
    if (step === 'tick') {
      await new Promise((resolve) => setImmediate(resolve));
      if (S.bufferedAmount === 0) direct++;
      continue;
    }
    const i = seq++;
    framedSent.push(framed(step));
    pendingAfter += framed(step);
    S.send(numbered(i, step), { binary: true }, (err) => {
      if (err) problems.push(`callback ${i} failed: ${err.message}`);
      if (called.length !== i) problems.push(`callback ${i} ran after ${called.length} others`);
      called.push(i);
      pendingAfter -= framedSent[i];
      if (S.bufferedAmount > pendingAfter) {
        problems.push(`bufferedAmount ${S.bufferedAmount} at callback ${i}, later sends ${pendingAfter}`);
      }
      if (called.length === sizes.length) all();
    });
  }
  await withTimeout(done, STEP_MS * 4, `the ${sizes.length} send callbacks`);
  assert.deepEqual(problems, []);
  assert.deepEqual(called, sizes.map((_, i) => i));
  await waitUntil(() => S.bufferedAmount === 0, STEP_MS, () => `bufferedAmount back to 0 (${S.bufferedAmount})`);
  return { sent: seq, sizes, direct };
}

/** A plan mixing lone small sends, bursts, large and 1 MiB sends, and ticks between. */
function mixedPlan(rounds) {
  const plan = [];
  for (let r = 0; r < rounds; r++) {
    plan.push(32, 'tick');
    plan.push(100, 200, 'tick');
    plan.push(20000, 'tick');
    plan.push(16, 70000, 8, 'tick');
    if (r % 10 === 3) plan.push(MiB, 5, 'tick', 64, 'tick');
  }
  return plan;
}

describe('send order with sends written at once and queued', () => {
  test('relayedConnect: messages in order, callbacks in order and after their write, bufferedAmount right', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const got = collect(peer);
      const plan = mixedPlan(40);
      const r = await sendPlan(S, plan);
      // Lone messages on an idle connection are written at once: the path under test ran.
      assert.ok(r.direct > 0, 'no send was written at once (nothing left counted after its tick)');
      await waitUntil(() => got.seqs.length >= r.sent, STEP_MS, () => `the peer to get ${r.sent} messages (${got.seqs.length})`);
      assert.deepEqual(got.seqs, r.sizes.map((_, i) => i));
      assert.deepEqual(got.sizes, r.sizes);
    });
  });

  test('a message sent just before close() arrives before the close frame, whether written at once or queued', async () => {
    await withListener({}, async ({ open }) => {
      for (const variant of ['same tick', 'after a tick', 'after a large send']) {
        const { S, peer } = await open();
        const got = collect(peer);
        const sizes = variant === 'after a large send' ? [MiB, 10, 20] : [10, 20];
        if (variant === 'after a tick') {
          S.send(numbered(0, 10));
          await new Promise((resolve) => setImmediate(resolve));
          S.send(numbered(1, 20));
          S.close(4001, variant);
        } else {
          sizes.forEach((size, i) => S.send(numbered(i, size)));
          S.close(4001, variant);
        }
        // Sends after close() fail, and are never written.
        const late = await new Promise((resolve) => S.send(numbered(99, 10), resolve));
        assert.match(String(late), /not open/, variant);
        const c = await withTimeout(got.close, STEP_MS, `the peer's close (${variant})`);
        assert.equal(c.code, 4001, variant);
        assert.equal(c.reason, variant);
        assert.deepEqual(got.seqs, sizes.map((_, i) => i), variant);
        assert.deepEqual(got.afterClose, [], variant);
        await closeOf(S);
      }
    });
  });

  test('send callbacks of sends made while a written event is on its way keep their order', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const got = collect(peer);
      // A large send first: its written event comes later, and the small ones after it must
      // not be written (and reported) ahead of it.
      const plan = [];
      for (let r = 0; r < 20; r++) plan.push(MiB, 'tick', 10, 'tick', 11, 12, 'tick');
      const r = await sendPlan(S, plan);
      await waitUntil(() => got.seqs.length >= r.sent, STEP_MS, () => `the peer to get ${r.sent} messages`);
      assert.deepEqual(got.seqs, r.sizes.map((_, i) => i));
    });
  });
});

describe('send order over TLS', () => {
  // Over TLS a send written at once goes into the TLS session and may stay there in part (the
  // socket takes less): the connection's task flushes the rest, still ahead of what follows.
  let cert;

  before(() => {
    cert = selfSignedCert();
  });

  after(() => {
    if (cert) cert.remove();
  });

  test('relayedConnect over TLS: messages in order, callbacks in order, then the close', async () => {
    const { cert: certPem, key: keyPem } = cert;
    const opts = { relay: { tls: { cert: certPem, key: keyPem } }, listen: { wsOptions: { ca: certPem } }, peerOptions: { ca: certPem } };
    await withListener(opts, async ({ open, uri }) => {
      assert.ok(uri.startsWith('wss://'), uri);
      const { S, peer } = await open({ ca: certPem });
      const got = collect(peer);
      const r = await sendPlan(S, mixedPlan(12));
      assert.ok(r.direct > 0, 'no send was written at once');
      S.send(numbered(r.sent, 10));
      S.close(4002, 'tls');
      const c = await withTimeout(got.close, STEP_MS, "the peer's close");
      assert.equal(c.code, 4002);
      assert.deepEqual(got.seqs, [...r.sizes, 10].map((_, i) => i));
      assert.deepEqual(got.sizes, [...r.sizes, 10]);
      assert.deepEqual(got.afterClose, []);
    });
  });
});

describe('both ends hyco-ws-rs', () => {
  test('an echoing RelayedServer and relayedConnect: every echo in order, callbacks in order, closes cleanly', async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = await startServer(relay);
      const echoed = [];
      server.on('connection', (socket) => {
        // Two answers per message (one small, one larger), both numbered: the listener's
        // sends mix writes at once with queued ones too.
        socket.on('message', (data) => {
          const seq = data.readUInt32BE(0);
          socket.send(numbered(seq * 2, 8));
          socket.send(numbered(seq * 2 + 1, data.length), (err) => {
            if (!err) echoed.push(seq);
          });
        });
      });
      const { uri, token } = sendAddress(relay);
      const S = relayedConnect(uri, token);
      const accepted = nextConnection(server);
      await withTimeout(new Promise((resolve, reject) => {
        S.once('open', resolve);
        S.once('error', reject);
      }), STEP_MS, "the sender's 'open'");
      const { socket } = await accepted;
      const got = collect(S);
      const sizes = [];
      for (let i = 0; i < 300; i++) {
        const size = i % 50 === 7 ? 200000 : i % 5 === 0 ? 20000 : 32;
        sizes.push(size);
        const reply = new Promise((resolve) => {
          const want = 2 * i + 2;
          const check = () => (got.seqs.length >= want ? resolve() : setImmediate(check));
          check();
        });
        S.send(numbered(i, size));
        if (i % 3 === 0) await withTimeout(reply, STEP_MS, `the echoes of message ${i}`);
      }
      await waitUntil(() => got.seqs.length >= 600, STEP_MS, () => `600 echoes (${got.seqs.length})`);
      assert.deepEqual(got.seqs, Array.from({ length: 600 }, (_, k) => k));
      assert.deepEqual(got.sizes.filter((_, k) => k % 2 === 1), sizes);
      await waitUntil(() => echoed.length === 300, STEP_MS, () => `the listener's send callbacks (${echoed.length})`);
      assert.deepEqual(echoed, Array.from({ length: 300 }, (_, k) => k));
      assert.equal(socket.bufferedAmount, 0);
      S.close(1000, 'done');
      const c = await withTimeout(got.close, STEP_MS, "the sender's close");
      assert.equal(c.code, 1000);
      await whenClosed(socket, STEP_MS, "the listener's socket to close");
      assert.deepEqual(got.afterClose, []);
    });
  });
});

describe('small sends packed in one tick', () => {
  test('sockets that each outgrow their packing buffer in the same tick: every message arrives whole', async () => {
    await withListener({}, async ({ open }) => {
      const pairs = [];
      for (let k = 0; k < 3; k++) pairs.push(await open());
      const got = pairs.map(({ peer }) => {
        const list = [];
        peer.on('message', (data) => list.push(Buffer.from(data)));
        return list;
      });
      // Each socket's tick packs more than the first packing buffer (1 KiB) holds, then more
      // than the one it grew to, its sends interleaved with the other sockets': a buffer
      // kept for reuse while a socket still packs into it would show as foreign bytes.
      const sent = pairs.map(() => []);
      for (let tick = 0; tick < 3; tick++) {
        for (let i = 0; i < 150; i++) {
          pairs.forEach(({ S }, k) => {
            const size = 4 + ((i * 37 + k * 11 + tick) % 120);
            const msg = Buffer.alloc(size, (k * 50 + i + tick) & 0xff);
            msg.writeUInt32BE(tick * 1000 + i, 0);
            sent[k].push(msg);
            S.send(msg);
          });
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      for (let k = 0; k < pairs.length; k++) {
        await waitUntil(() => got[k].length >= sent[k].length, STEP_MS, () => `socket ${k}'s ${sent[k].length} messages (${got[k].length})`);
        assert.deepEqual(got[k], sent[k], `socket ${k}`);
      }
    });
  });

  test('callback ids past 2^24 and the wrap after 2^31 - 1 keep their callbacks, in order', async () => {
    await withListener({}, async ({ open }) => {
      const { S } = await open();
      // 2^24 sends would take minutes: the id counter is set where the ids need all four of
      // their bytes, then where it wraps (a packed frame carries its id as a u32).
      for (const start of [0xfffffe, 0x7ffffffe]) {
        S._nextAck = start;
        const order = [];
        await withTimeout(
          new Promise((resolve, reject) => {
            for (let i = 0; i < 4; i++) {
              S.send(Buffer.from([i]), (err) => {
                if (err) reject(err);
                order.push(i);
                if (order.length === 4) resolve();
              });
            }
          }),
          STEP_MS,
          `the callbacks from id ${start}`
        );
        assert.deepEqual(order, [0, 1, 2, 3], `from id ${start}`);
        // The counter is the one sends use (a renamed field would leave ids 1 to 4 tested).
        assert.equal(S._nextAck, start === 0x7ffffffe ? 3 : start + 4, `after id ${start}`);
      }
    });
  });

  test("send()'s options: none, undefined, null, a callback in their place, or an object, as ws", async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const got = [];
      peer.on('message', (data, isBinary) => got.push([String(data), isBinary]));
      const calls = [];
      S.send('text, no options');
      S.send(Buffer.from('binary, no options'));
      S.send(Buffer.from('binary, undefined'), undefined, () => calls.push('undefined'));
      S.send('text, null', null);
      S.send('text, callback', () => calls.push('callback'));
      S.send(Buffer.from('as text'), { binary: false });
      S.send('as binary', { binary: true }, () => calls.push('object'));
      await waitUntil(() => got.length >= 7 && calls.length >= 3, STEP_MS, () => `7 messages (${got.length}) and 3 callbacks (${calls.length})`);
      assert.deepEqual(got, [
        ['text, no options', false],
        ['binary, no options', true],
        ['binary, undefined', true],
        ['text, null', false],
        ['text, callback', false],
        ['as text', false],
        ['as binary', true]
      ]);
      assert.deepEqual(calls, ['undefined', 'callback', 'object']);
    });
  });
});
