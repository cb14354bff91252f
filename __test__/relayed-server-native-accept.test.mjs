// RelayedServer's native accept path and the event hub behind it: with no verifyClient,
// handleProtocols or 'headers' listener, the Rust listener accepts senders by itself; a
// 'headers' listener (however added or removed) moves the decision back to JavaScript;
// close() settles accepts still in their handshake; a throwing 'connection' listener loses
// no other sender's events; worker threads and a second copy of the module each get their
// events, and a worker's listener stops with the worker.
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

import { createRelayToken } from 'hyco-ws-rs';
import { RelayedServer as HycoWsServer } from 'hyco-ws-rs/hyco-ws';

import { STEP_MS, expectOpen, nextEvent, nextMessage, waitUntil, whenClosed, withTimeout } from './support/relay-steps.mjs';
import {
  cleanup,
  echo,
  echoRoundTrip,
  history,
  newServer,
  nextConnection,
  record,
  startFakeService,
  startServer,
  typesOf,
  whenListening,
  withServerRelay,
  wsSender
} from './support/server-steps.mjs';
import { describeChild, runNode } from './support/socket-steps.mjs';

const RELAY = { hybridConnections: ['hc'] };

afterEach(cleanup);

/**
 * Connects a plain ws sender and waits for the server's 'connection'.
 *
 * @param {any} relay The relay.
 * @param {any} server The recorded server.
 * @param {string} what For failure messages.
 * @returns {Promise<{ sender: any, socket: any }>}
 */
async function connectOne(relay, server, what) {
  const got = nextConnection(server, STEP_MS, `'connection' for ${what}`);
  const { outcome } = wsSender(relay, 'hc');
  const sender = await expectOpen(outcome, what);
  const { socket } = await got;
  return { sender, socket };
}

/**
 * A RelayedServer whose 'connection' handler adds no 'error' listener, and one sender that
 * makes the accepted socket fail, in a child process (an unheard 'error' is an uncaught
 * exception there, not this test run's).
 *
 * @param {string} serverOptions More of the server's options, as source (`key: value, ...`).
 * @param {string} sender Source that sets `s` to a sender to `su` with token `tok` (`h` is
 *   the package, `WebSocket` ws 8, `crypto` Node's).
 * @returns {Promise<{ code: number, uncaught: { code: string, message: string }[] }>} The
 *   accepted socket's close code, and the uncaught exceptions.
 */
async function unheardErrors(serverOptions, sender) {
  const script = `
    const h = require(process.env.HYCO_PKG);
    const WebSocket = require('ws');
    const crypto = require('crypto');
    const uncaught = [];
    process.on('uncaughtException', (e) => uncaught.push({ code: e.code, message: e.message }));
    (async () => {
      const relay = await h.startLocalRelay();
      const lu = h.createRelayListenUri(relay.namespace, 'hc');
      const server = new h.RelayedServer({ server: lu, token: h.createRelayToken(lu, relay.keyName, relay.key), ${serverOptions} });
      const closed = new Promise((resolve) => server.once('connection', (ws) => ws.on('close', resolve)));
      await new Promise((r) => server.once('listening', r));
      const su = h.createRelaySendUri(relay.namespace, 'hc');
      const tok = h.createRelayToken(su, relay.keyName, relay.key);
      let s = null;
      ${sender}
      const code = await closed;
      s.terminate();
      await new Promise((r) => server.close(r));
      await relay.close();
      console.log(JSON.stringify({ code, uncaught }));
    })().catch((e) => { console.log('FAILED ' + e.stack); process.exit(1); });
  `;
  const r = await runNode(script).done;
  assert.equal(r.code, 0, describeChild(r));
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

describe("native accept and 'headers'", () => {
  test("a 'headers' listener, however added and removed, runs for exactly the senders that come while it exists", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay);
      echo(server);
      const seen = [];
      const onHeaders = (headers, req) => seen.push(req.url);

      await connectOne(relay, server, 'sender 1 (no hook: accepted natively)');
      assert.deepEqual(seen, []);

      server.on('headers', onHeaders);
      await connectOne(relay, server, 'sender 2 (on)');
      assert.deepEqual(seen, ['/']);

      server.off('headers', onHeaders);
      await connectOne(relay, server, 'sender 3 (off)');
      assert.equal(seen.length, 1, "'headers' ran after off()");

      server.once('headers', onHeaders);
      await connectOne(relay, server, 'sender 4 (once)');
      await connectOne(relay, server, 'sender 5 (after once)');
      assert.equal(seen.length, 2, "a once('headers') listener ran once");

      server.prependListener('headers', onHeaders);
      server.prependOnceListener('headers', onHeaders);
      await connectOne(relay, server, 'sender 6 (prepend + prependOnce)');
      assert.equal(seen.length, 4);
      server.removeAllListeners('headers');
      await connectOne(relay, server, 'sender 7 (removeAllListeners)');
      assert.equal(seen.length, 4);

      // removeAllListeners() with no argument must not lose the tracking either.
      server.removeAllListeners();
      echo(server);
      server.on('error', () => {});
      server.addListener('headers', onHeaders);
      await connectOne(relay, server, 'sender 8 (after removeAllListeners())');
      assert.equal(seen.length, 5, history(server));
    });
  });

  test("a 'headers' listener's header reaches the relay's accept handshake", async () => {
    const fake = await startFakeService();
    const server = newServer({ server: fake.listenUri, token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600) });
    const control = await fake.nextControl();
    await whenListening(server);
    server.on('headers', (headers) => headers.push('X-Hook: yes'));
    control.send(JSON.stringify({ accept: { address: fake.acceptAddress('h1'), id: 'h1', connectHeaders: {}, remoteEndpoint: { address: '127.0.0.1', port: 1 } } }));
    const accepted = await fake.nextAcceptSocket();
    assert.equal(accepted.req.headers['x-hook'], 'yes');
    await nextConnection(server);
  });

  test('prewarm must be a boolean; prewarm: false still accepts', async () => {
    await withServerRelay(RELAY, async (relay) => {
      for (const bad of [1, 'yes', null]) {
        assert.throws(
          () => newServer({ server: 'wss://ns.servicebus.windows.net/$hc/hc', token: 't', prewarm: bad }),
          (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE' && /options\.prewarm/.test(err.message)
        );
      }
      const server = await startServer(relay, { prewarm: false });
      echo(server);
      await echoRoundTrip(relay, 'sender 1');
      await echoRoundTrip(relay, 'sender 2');
    });
  });
});

describe('close() and accepts in their handshake', () => {
  for (const [kind, make, code] of [
    ['RelayedServer', newServer, 1001],
    // hyco-ws's server closes its connections with a plain 1000.
    ['hyco-ws RelayedServer', (options) => record(new HycoWsServer(options)), 1000]
  ])
  for (const [path, extra] of [
    ['natively', {}],
    // The JavaScript path: the socket is the server's while its handshake runs.
    ['after verifyClient', { verifyClient: (info, cb) => cb(true) }]
  ])
  test(`${kind}: a sender accepted ${path} while the server closes gets ${code}, no connection event, and close waits for it`, async () => {
    const fake = await startFakeService();
    // A rendezvous that answers only when told: the accept stays in its handshake.
    let release;
    const released = new Promise((resolve) => {
      release = resolve;
    });
    const arrived = [];
    const http = createServer();
    const rendezvous = new WebSocketServer({
      server: http,
      perMessageDeflate: false,
      verifyClient: (info, cb) => {
        arrived.push(info.req.url);
        released.then(() => cb(true));
      }
    });
    try {
      http.listen(0, '127.0.0.1');
      await nextEvent(http, 'listening', STEP_MS, 'the held rendezvous server');
      const closes = [];
      rendezvous.on('connection', (ws) => ws.on('close', (code) => closes.push(code)));
      const server = make({ server: fake.listenUri, token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600), ...extra });
      const control = await fake.nextControl();
      await whenListening(server);
      const address = `ws://127.0.0.1:${http.address().port}/$hc/hc?sb-hc-action=accept&sb-hc-id=held`;
      control.send(JSON.stringify({ accept: { address, id: 'held', connectHeaders: {}, remoteEndpoint: { address: '127.0.0.1', port: 1 } } }));
      await waitUntil(() => arrived.length === 1, STEP_MS, 'the accept handshake to reach the held rendezvous');
      let closedAt = 0;
      const closed = new Promise((resolve) => server.close(() => { closedAt = Date.now(); resolve(); }));
      // The server cannot be done while the accept is still in its handshake.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(closedAt, 0, `'close' came before the accept in its handshake was settled: ${history(server)}`);
      const releasedAt = Date.now();
      release();
      await withTimeout(closed, STEP_MS, "the server's close callback");
      assert.ok(closedAt >= releasedAt);
      await waitUntil(() => closes.length === 1, STEP_MS, 'the accepted socket to be closed');
      assert.deepEqual(closes, [code]);
      assert.deepEqual(typesOf(server).filter((t) => t === 'connection'), [], history(server));
    } finally {
      release();
      rendezvous.close();
      http.closeAllConnections();
      await withTimeout(new Promise((resolve) => http.close(() => resolve())), STEP_MS, 'the rendezvous server to close');
    }
  });
});

describe('native accepts whose handshake fails', () => {
  test("are dropped unseen: no 'connection', no 'error', nothing tracked, and the next sender is accepted", async () => {
    const fake = await startFakeService();
    // A port nothing listens on (the connect is refused) and a server that answers the
    // upgrade with 404 (the handshake reaches it and fails).
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await nextEvent(probe, 'listening', STEP_MS, 'a server to find a free port');
    const refusedPort = probe.address().port;
    await new Promise((resolve) => probe.close(() => resolve()));
    const upgrades = [];
    const http = createServer();
    http.on('upgrade', (req, socket) => {
      upgrades.push(req.url);
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    });
    try {
      http.listen(0, '127.0.0.1');
      await nextEvent(http, 'listening', STEP_MS, 'the 404 server');
      const server = newServer({ server: fake.listenUri, token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600) });
      const control = await fake.nextControl();
      await whenListening(server);
      const accept = (address, id) =>
        control.send(JSON.stringify({ accept: { address, id, connectHeaders: { 'X-Who': id }, remoteEndpoint: { address: '127.0.0.1', port: 1 } } }));
      accept(`ws://127.0.0.1:${refusedPort}/$hc/hc?sb-hc-action=accept&sb-hc-id=refused`, 'refused');
      accept(`ws://127.0.0.1:${http.address().port}/$hc/hc?sb-hc-action=accept&sb-hc-id=notfound`, 'notfound');
      await waitUntil(() => upgrades.length === 1, STEP_MS, 'the accept handshake to reach the 404 server');
      accept(fake.acceptAddress('good'), 'good');
      const sender = await fake.nextAcceptSocket();
      const { socket, req } = await nextConnection(server);
      assert.equal(req.id, 'good');
      assert.equal(req.headers['x-who'], 'good');
      assert.equal(socket.readyState, socket.OPEN);
      const echoed = nextMessage(sender, STEP_MS, 'the echo');
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
      sender.send('ping me');
      assert.equal(String((await echoed).data), 'ping me');
      assert.deepEqual([...server.clients], [socket]);
      assert.deepEqual(typesOf(server).filter((t) => t === 'connection' || t === 'error'), ['connection'], history(server));
    } finally {
      http.closeAllConnections();
      await withTimeout(new Promise((resolve) => http.close(() => resolve())), STEP_MS, 'the 404 server to close');
    }
  });
});

describe('event delivery', () => {
  test("an accepted socket stripped of every listener is still forgotten when it closes, and close(cb) completes", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay);
      const first = await connectOne(relay, server, 'sender 1');
      first.socket.removeAllListeners();
      const senderClosed = whenClosed(first.sender, STEP_MS, 'sender 1 to close');
      first.sender.close(1000);
      await senderClosed;
      await waitUntil(() => server.clients.size === 0, STEP_MS, 'the server to forget sender 1');
      // Closed by the server this time: close(cb) must not wait for it forever.
      const second = await connectOne(relay, server, 'sender 2');
      second.socket.removeAllListeners();
      assert.equal(server.clients.size, 1);
      await withTimeout(new Promise((resolve) => server.close(resolve)), STEP_MS, "the server's close callback");
      assert.equal(server.clients.size, 0);
      assert.equal((await whenClosed(second.sender, STEP_MS, 'sender 2 to close')).code, 1001);
    });
  });

  test("a 'connection' listener that throws loses no other sender's events (child process)", async () => {
    const script = `
      const h = require(process.env.HYCO_PKG);
      const errors = [];
      process.on('uncaughtException', (e) => errors.push(e.message));
      (async () => {
        const relay = await h.startLocalRelay();
        const lu = h.createRelayListenUri(relay.namespace, 'hc');
        const server = new h.RelayedServer({ server: lu, token: h.createRelayToken(lu, relay.keyName, relay.key) });
        let n = 0;
        server.on('connection', (ws) => {
          ws.on('message', (d) => ws.send(d));
          if (n++ % 2 === 0) throw new Error('boom ' + n);
        });
        await new Promise((r) => server.once('listening', r));
        const su = h.createRelaySendUri(relay.namespace, 'hc');
        const token = h.createRelayToken(su, relay.keyName, relay.key);
        // Ten senders at once, so that several connections share one batch of events.
        const echoes = await Promise.all(Array.from({ length: 10 }, (_, i) => new Promise((resolve, reject) => {
          const s = new h.WebSocket(su, { headers: { ServiceBusAuthorization: token } });
          s.on('error', reject);
          s.on('open', () => s.send('m' + i));
          s.on('message', (d) => { resolve(String(d)); s.close(); });
        })));
        await new Promise((r) => server.close(r));
        await relay.close();
        console.log(JSON.stringify({ echoes, errors }));
      })().catch((e) => { console.log('FAILED ' + e.stack); process.exit(1); });
    `;
    const r = await runNode(script).done;
    assert.equal(r.code, 0, describeChild(r));
    const { echoes, errors } = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.deepEqual(echoes, Array.from({ length: 10 }, (_, i) => `m${i}`));
    assert.equal(errors.length, 5, describeChild(r));
    assert.ok(errors.every((m) => /^boom \d+$/.test(m)), describeChild(r));
  });

  test("a protocol error on an accepted socket with no 'error' listener is thrown after 'connection', as ws's server sockets throw it (child process)", async () => {
    const { code, uncaught } = await unheardErrors(
      '',
      `s = new h.WebSocket(su, { headers: { ServiceBusAuthorization: tok } });
       s.on('error', () => {});
       // Text that is not UTF-8: the accepted socket fails with WS_ERR_INVALID_UTF8.
       s.on('open', () => s.send(Buffer.from([0x61, 0xff, 0xfe]), { binary: false }));`
    );
    assert.equal(code, 1006);
    assert.deepEqual(uncaught, [{ code: 'WS_ERR_INVALID_UTF8', message: 'Invalid WebSocket frame: invalid UTF-8 sequence' }]);
  });

  test("a compressed message that does not inflate, on an accepted socket with no 'error' listener, is thrown (Z_DATA_ERROR), as ws's server sockets throw it (child process)", async () => {
    const { code, uncaught } = await unheardErrors(
      'perMessageDeflate: true',
      `s = new WebSocket(su, { headers: { ServiceBusAuthorization: tok }, perMessageDeflate: true });
       s.on('error', () => {});
       await new Promise((r) => s.once('open', r));
       // FIN, RSV1 (compressed), binary: bytes that are no deflate stream.
       const payload = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]);
       const mask = crypto.randomBytes(4);
       s._socket.write(Buffer.concat([Buffer.from([0xc2, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]));`
    );
    assert.equal(code, 1006);
    assert.deepEqual(uncaught.map((e) => e.code), ['Z_DATA_ERROR']);
  });

  test("the heartbeat's ETIMEDOUT on an accepted socket with no 'error' listener is not thrown (ws has no such 'error'); the socket closes (child process)", async () => {
    const { code, uncaught } = await unheardErrors(
      'heartbeatInterval: 200',
      `// A sender that never answers pings.
       s = h.relayedConnect(su, tok, { autoPong: false });
       s.on('error', () => {});`
    );
    assert.equal(code, 1006);
    assert.deepEqual(uncaught, []);
  });

  test('server.close() while senders arrive: each is refused (503, or 404 once no listener is left) or opened and closed 1001; none waits for the accept timeout (child process)', async () => {
    const script = `
      const h = require(process.env.HYCO_PKG);
      const WebSocket = require('ws');
      (async () => {
        const tally = {};
        for (const mode of ['native', 'verifyClient']) {
          for (const at of [5, 20, 40]) {
            const relay = await h.startLocalRelay({ acceptTimeoutMs: 8000 });
            const lu = h.createRelayListenUri(relay.namespace, 'hc');
            const opts = { server: lu, token: h.createRelayToken(lu, relay.keyName, relay.key) };
            if (mode === 'verifyClient') opts.verifyClient = () => true;
            const server = new h.RelayedServer(opts);
            server.on('connection', (ws) => ws.on('error', () => {}));
            await new Promise((r) => server.once('listening', r));
            // close() when the relay has routed the at-th sender: some are accepted, some
            // in their handshake, some still on their way to the listener.
            let connects = 0;
            const closed = new Promise((resolve) => relay.on('event', (e) => {
              if (e.type === 'connect' && ++connects === at) server.close(resolve);
            }));
            const su = h.createRelaySendUri(relay.namespace, 'hc');
            const tok = h.createRelayToken(su, relay.keyName, relay.key);
            const outcomes = await Promise.all(Array.from({ length: 60 }, () => new Promise((resolve) => {
              const t0 = Date.now();
              const s = new WebSocket(su, { headers: { ServiceBusAuthorization: tok } });
              let opened = false;
              s.on('open', () => { opened = true; });
              s.on('unexpected-response', (req, res) => { resolve('http ' + res.statusCode + (Date.now() - t0 > 4000 ? ' late' : '')); s.terminate(); });
              s.on('error', (e) => { if (!/Unexpected server response/.test(e.message)) resolve('error ' + (e.code || e.message)); });
              s.on('close', (code) => resolve(opened ? 'open then close ' + code : 'close ' + code));
            })));
            await closed;
            for (const o of outcomes) tally[o] = (tally[o] || 0) + 1;
            await relay.close();
          }
        }
        console.log(JSON.stringify(tally));
      })().catch((e) => { console.log('FAILED ' + e.stack); process.exit(1); });
    `;
    const r = await runNode(script, { ms: 120_000 }).done;
    assert.equal(r.code, 0, describeChild(r));
    const tally = JSON.parse(r.stdout.trim().split('\n').pop());
    const allowed = new Set(['http 503', 'http 404', 'open then close 1001']);
    for (const outcome of Object.keys(tally)) assert.ok(allowed.has(outcome), `${outcome}: ${JSON.stringify(tally)}`);
  });

  test('a second copy of the module (a fresh require cache) gets its events; the process still exits by itself', async () => {
    const script = `
      const path = require('path');
      const round = async (h) => {
        const relay = await h.startLocalRelay();
        const lu = h.createRelayListenUri(relay.namespace, 'hc');
        const server = new h.RelayedServer({ server: lu, token: h.createRelayToken(lu, relay.keyName, relay.key) });
        server.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
        await new Promise((r) => server.once('listening', r));
        const su = h.createRelaySendUri(relay.namespace, 'hc');
        const s = h.relayedConnect(su, h.createRelayToken(su, relay.keyName, relay.key));
        const got = await new Promise((resolve, reject) => {
          s.on('error', reject);
          s.on('open', () => s.send('hi'));
          s.on('message', (d) => resolve(String(d)));
        });
        s.close();
        await new Promise((r) => s.on('close', r));
        await new Promise((r) => server.close(r));
        await relay.close();
        return got;
      };
      (async () => {
        const first = await round(require(process.env.HYCO_PKG));
        for (const k of Object.keys(require.cache)) {
          if (k.startsWith(process.env.HYCO_PKG) && !k.includes(path.sep + 'node_modules' + path.sep)) delete require.cache[k];
        }
        const second = await round(require(process.env.HYCO_PKG));
        console.log(first + ' ' + second);
      })().catch((e) => { console.log('FAILED ' + e.stack); process.exit(1); });
    `;
    const r = await runNode(script).done;
    assert.equal(r.code, 0, describeChild(r));
    assert.equal(r.stdout.trim(), 'hi hi', describeChild(r));
  });
});

describe('worker threads', () => {
  const WORKER = `
    const { parentPort, workerData } = require('worker_threads');
    const h = require(workerData.pkg);
    const lu = h.createRelayListenUri(workerData.namespace, 'hc');
    const server = new h.RelayedServer({ server: lu, token: h.createRelayToken(lu, workerData.keyName, workerData.key) });
    server.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
    server.once('listening', async () => {
      if (workerData.stayOnline) return parentPort.postMessage('online');
      const su = h.createRelaySendUri(workerData.namespace, 'hc');
      const s = h.relayedConnect(su, h.createRelayToken(su, workerData.keyName, workerData.key));
      s.on('open', () => s.send('from the worker'));
      s.on('message', (d) => {
        parentPort.postMessage(String(d));
        s.close();
        s.on('close', () => server.close());
      });
    });
  `;

  /**
   * Starts the worker above against `relay`.
   *
   * @param {any} relay The relay.
   * @param {boolean} stayOnline Only go online (else: a round trip, then close everything).
   * @returns {Promise<import('node:worker_threads').Worker>}
   */
  async function startWorker(relay, stayOnline) {
    const { Worker } = await import('node:worker_threads');
    const { PACKAGE_DIR } = await import('./support/socket-steps.mjs');
    return new Worker(WORKER, {
      eval: true,
      workerData: { pkg: PACKAGE_DIR, namespace: relay.namespace, keyName: relay.keyName, key: relay.key, stayOnline }
    });
  }

  test('a worker thread accepts and connects, and ends by itself once everything is closed', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const worker = await startWorker(relay, false);
      const [message] = await nextEvent(worker, 'message', STEP_MS, "the worker's echo");
      assert.equal(message, 'from the worker');
      const [code] = await nextEvent(worker, 'exit', STEP_MS, 'the worker to end by itself');
      assert.equal(code, 0);
    });
  });

  test("a terminated worker's listener goes offline (its control channel is closed)", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const worker = await startWorker(relay, true);
      await nextEvent(worker, 'message', STEP_MS, 'the worker to be online');
      assert.equal(relay.stats().listeners, 1);
      await withTimeout(worker.terminate(), STEP_MS, 'the worker to terminate');
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, () => `the control channel to close: ${JSON.stringify(relay.stats())}`);
      // The main thread's own listeners are unaffected.
      const server = await startServer(relay);
      echo(server);
      await echoRoundTrip(relay, 'a sender after the worker');
    });
  });
});
