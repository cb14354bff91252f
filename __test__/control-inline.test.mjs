// The control channel read on the JavaScript thread (#12): while its traffic is sparse, the
// listener's control channel is read inline, as sockets are (inline-reads.test.mjs; dense
// traffic goes back to tokio's threads, a rate pinned by control.rs's unit test), and
// what the service sends there (HTTP requests, their bodies, accepts) reaches JavaScript
// from the callback that read it. And a request answered whole at once on the control
// channel never starts its exchange's task (counted with the addon's liveCounts()): the task
// starts only when the handler writes in pieces, or has not answered after a second (it
// then keeps the relay's deadline). Whoever reads, every request must be answered whole and
// once, bodies intact, accepts and requests mixed, across a reconnect of the channel, and the
// watch must end with the channel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { createRelayedServer } from 'hyco-ws-rs';

import { httpAddress, sendHttp } from './support/http-steps.mjs';
import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import { openFds, watched } from './support/inline-steps.mjs';
import {
  echoRoundTrip,
  eventsOfType,
  listenOptions,
  nextOf,
  record,
  whenListening,
  withServerRelay
} from './support/server-steps.mjs';

const require = createRequire(import.meta.url);
const { native } = require('../lib/native-events.js');

const linux = process.platform === 'linux';

/**
 * A recorded, listening server whose 'request' handler answers `ok <url>` (or echoes a
 * POST's body), each answer whole in one res.end(), and whose WebSocket senders are echoed.
 *
 * @param {any} relay
 * @param {object} [extra] More options.
 * @returns {Promise<any>}
 */
async function echoingServer(relay, extra = {}) {
  const server = record(createRelayedServer(listenOptions(relay, 'hc', extra)));
  server.on('request', (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST') res.end(Buffer.concat(chunks));
      else res.end(`ok ${req.url}`);
    });
  });
  server.on('connection', (socket) => socket.on('message', (d, b) => socket.send(d, { binary: b })));
  await whenListening(server);
  return server;
}

/**
 * Sends GETs one at a time, a few milliseconds apart, until the control channel is read
 * inline (at most 100). The pause is the load's shape, not a wait for anything: the channel
 * is read inline only while requests are sparse (under 1,000 a second once they were dense).
 *
 * @param {any} relay
 * @param {number} watchedBefore Sockets watched before (none of them the channel).
 * @returns {Promise<void>}
 */
async function untilReadInline(relay, watchedBefore) {
  for (let i = 0; i < 100 && watched() <= watchedBefore; i++) {
    const { url, token } = httpAddress(relay, `hc/warm/${i}`);
    const r = await sendHttp(url, { token });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `ok /warm/${i}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(watched(), watchedBefore + 1, 'the control channel is read on the JavaScript thread');
}

test('read inline, the control channel brings requests, bodies and accepts, each answered whole', { skip: !linux && 'inline reads are Unix-only; the descriptor count is Linux' }, () =>
  withServerRelay(undefined, async (relay) => {
    const fdsBefore = openFds();
    const watchedBefore = watched();
    const server = await echoingServer(relay);
    await untilReadInline(relay, watchedBefore);
    // Many at once: GETs, POSTs whose bodies come inline after their request message,
    // and WebSocket senders, whose accepts come on the same channel.
    const one = async (i) => {
      const { url, token } = httpAddress(relay, `hc/n/${i}`);
      if (i % 3 === 0) {
        const body = Buffer.alloc(100 + i * 37, i % 251);
        const r = await sendHttp(url, { token, method: 'POST', body });
        assert.equal(r.status, 200, `POST ${i}`);
        assert.ok(r.body.equals(body), `POST ${i}: the body came back whole`);
      } else {
        const r = await sendHttp(url, { token });
        assert.equal(r.status, 200, `GET ${i}`);
        assert.equal(r.body.toString(), `ok /n/${i}`, `GET ${i}`);
      }
    };
    await Promise.all([
      ...Array.from({ length: 60 }, (_, i) => one(i)),
      echoRoundTrip(relay, 'a WebSocket sender'),
      echoRoundTrip(relay, 'another WebSocket sender')
    ]);
    // Dense: where the machine is fast enough (over 2,000 requests a second), tokio's
    // threads take reading over meanwhile; every request is answered whole either way, and
    // sparse requests are read inline again after.
    let next = 60;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < 460) await one(next++);
      })
    );
    await untilReadInline(relay, watchedBefore);
    await withTimeout(new Promise((r) => server.close(r)), STEP_MS, 'close()');
    await waitUntil(() => watched() === watchedBefore, STEP_MS, () => `the watch to end: ${watched()} watched`);
    await waitUntil(() => openFds() <= fdsBefore, STEP_MS, () => `descriptors back to ${fdsBefore}: ${openFds()}`);
  }));

test('a reopened control channel is read inline in place of the one before', { skip: !linux && 'inline reads are Unix-only' }, () =>
  withServerRelay(undefined, async (relay) => {
    const watchedBefore = watched();
    const server = await echoingServer(relay);
    await untilReadInline(relay, watchedBefore);
    server.controlChannel.close();
    await nextOf(server, 'offline');
    await waitUntil(() => eventsOfType(server, 'online').length === 2, STEP_MS, "'online' again after controlChannel.close()");
    // The old channel's watch ends with it; the new one's starts with its first requests.
    await waitUntil(() => watched() === watchedBefore, STEP_MS, () => `the old channel's watch to end: ${watched()}`);
    await untilReadInline(relay, watchedBefore);
    for (let i = 0; i < 20; i++) {
      const { url, token } = httpAddress(relay, `hc/after/${i}`);
      const r = await sendHttp(url, { token });
      assert.equal(r.body.toString(), `ok /after/${i}`);
    }
    assert.equal(watched(), watchedBefore + 1);
  }));

test('a request answered whole at once on the control channel starts no exchange task', () =>
  withServerRelay(undefined, async (relay) => {
    const server = record(createRelayedServer(listenOptions(relay, 'hc')));
    const seen = [];
    server.on('request', (req, res) => {
      // The request's task, if it had one, started before the request reached JavaScript.
      seen.push(native.liveCounts().exchanges);
      res.end('ok');
    });
    await whenListening(server);
    const { url, token } = httpAddress(relay, 'hc/x');
    await Promise.all(
      Array.from({ length: 40 }, async () => {
        const r = await sendHttp(url, { token });
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok');
      })
    );
    assert.equal(seen.length, 40);
    assert.deepEqual(
      seen.filter((n) => n !== 0),
      [],
      'exchange tasks alive while requests answered at once were handled'
    );
    assert.equal(native.liveCounts().exchanges, 0);
  }));

test("a request not answered at once gets its task: written in pieces it is answered, left alone it hits the listener's deadline", () =>
  // The relay waits longer than the listener, so that the listener's own deadline ends the
  // exchange; 3 s is the shortest deadline whose tasks start late (see exchange.rs).
  withServerRelay({ requestTimeoutMs: 6000 }, async (relay) => {
    let closed;
    const resClosed = new Promise((r) => (closed = r));
    const events = [];
    const server = record(createRelayedServer(listenOptions(relay, 'hc', { requestTimeout: 3000 })));
    let tasksAfterWrite;
    server.on('request', (req, res) => {
      if (req.url === '/pieces') {
        res.write('first ');
        setImmediate(() => {
          // The write (out of Node's socket by now) started the task, there and then, not
          // the sweep a second later.
          tasksAfterWrite = native.liveCounts().exchanges;
          res.end('then');
        });
        return;
      }
      res.on('finish', () => events.push('finish'));
      res.on('close', () => {
        events.push('close');
        closed();
      });
    });
    await whenListening(server);
    const pieces = httpAddress(relay, 'hc/pieces');
    const r = await sendHttp(pieces.url, { token: pieces.token });
    assert.equal(r.body.toString(), 'first then');
    assert.equal(tasksAfterWrite, 1, 'the exchange task started by the first write');
    const silent = httpAddress(relay, 'hc/silent');
    const pending = sendHttp(silent.url, { token: silent.token, ms: 20_000 });
    await withTimeout(resClosed, STEP_MS, "res's 'close' at the listener's deadline");
    assert.deepEqual(events, ['close']);
    assert.equal((await pending).status, 504);
    await waitUntil(() => native.liveCounts().exchanges === 0, STEP_MS, () => `exchange tasks to end: ${native.liveCounts().exchanges}`);
  }));

test('a busy event loop does not cost the control channel read inline its keep-alive', { skip: !linux && 'inline reads are Unix-only' }, () =>
  // Pings every 500 ms, each pong due within 500 ms; the loop is then blocked for 2.5 s. The
  // pongs must be read by the listener's tokio threads meanwhile, or the channel would be
  // dropped as dead.
  withServerRelay(undefined, async (relay) => {
    const watchedBefore = watched();
    const server = await echoingServer(relay, { keepAliveInterval: 500 });
    await untilReadInline(relay, watchedBefore);
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      // busy: nothing else runs on this thread
    }
    const r = await sendHttp(httpAddress(relay, 'hc/after').url, { token: httpAddress(relay).token });
    assert.equal(r.body.toString(), 'ok /after');
    assert.deepEqual(eventsOfType(server, 'offline'), [], 'the channel stayed up');
  }));
