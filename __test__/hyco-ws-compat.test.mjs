// hyco-ws compatibility: what code written for Microsoft's hyco-ws (ws 1.1 underneath, ws 7
// in its repository) relies on. On every RelayedServer: hyco-ws's fields (`listenUri`,
// `path`, `options`, `closeRequested`, a `controlChannel` whose `readyState`, `close()` and
// `onmessage` work as hyco-ws code uses them) and constructor messages. Through the
// `hyco-ws-rs/hyco-ws` entry point: text as strings, `new WebSocket(url, null, options)`,
// `clients` as an array, 'listening' on every reopen, 'error' on every failed attempt, a
// plain close of the connections, and hyco-ws's leniency in the helpers. The main entry
// point keeps ws 8's behaviour, checked alongside.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';

import hyco, { createRelayListenUri, createRelaySendUri, createRelayToken } from 'hyco-ws-rs';
import HycoWs from 'hyco-ws-rs/hyco-ws';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import {
  eventsOfType,
  history,
  listenOptions,
  newServer,
  nextOf,
  record,
  relayEvents,
  whenListening,
  withServerRelay
} from './support/server-steps.mjs';

const require = createRequire(import.meta.url);
const { native } = require('../lib/native-events.js');

/**
 * A recorded `hyco-ws-rs/hyco-ws` server (closed by `withServerRelay`).
 *
 * @param {object} options The options.
 * @returns {any} The server.
 */
function newHycoWsServer(options) {
  return record(HycoWs.createRelayedServer(options));
}

/**
 * A client made as hyco-ws code makes one: `new WebSocket(address, null, { headers })`, from
 * the `hyco-ws-rs/hyco-ws` export, with the token in ServiceBusAuthorization.
 *
 * @param {any} relay The relay.
 * @param {object} [headers] More headers.
 * @returns {Promise<any>} The open client.
 */
async function hycoWsClient(relay, headers = {}) {
  const uri = createRelaySendUri(relay.namespace, 'hc');
  const client = new HycoWs(uri, null, {
    headers: { ServiceBusAuthorization: createRelayToken(uri, relay.keyName, relay.key), ...headers }
  });
  await withTimeout(once(client, 'open'), STEP_MS, 'the client to open');
  return client;
}

/**
 * The next 'message' of a socket, as `[data, second argument]`.
 *
 * @param {any} ws The socket.
 * @param {string} what For the failure message.
 * @returns {Promise<Array>}
 */
function nextMessage(ws, what) {
  return withTimeout(once(ws, 'message'), STEP_MS, what);
}

describe("hyco-ws's fields and messages on every RelayedServer", () => {
  test('listenUri, path, options (as given, with hyco-ws defaults), closeRequested', async () => {
    await withServerRelay(undefined, async (relay) => {
      const opts = listenOptions(relay, 'hc', { id: 'tracking-1' });
      const server = newServer(opts);
      assert.equal(server.listenUri, `${opts.server}&sb-hc-id=tracking-1`);
      assert.equal(server.path, 'hc', 'without a path option, the Hybrid Connection');
      assert.equal(server.options.server, opts.server);
      assert.equal(server.options.token, opts.token);
      assert.equal(server.options.id, 'tracking-1');
      assert.equal(server.options.verifyClient, null);
      assert.equal(server.options.handleProtocols, null);
      assert.equal(server.options.clientTracking, true);
      assert.equal(server.options.maxPayload, 100 * 1024 * 1024);
      assert.equal(server.closeRequested, false);
      await whenListening(server);
      const closed = new Promise((resolve) => server.close(resolve));
      assert.equal(server.closeRequested, true, 'true as soon as close() is called');
      await withTimeout(closed, STEP_MS, 'close()');

      const withPath = newServer({ ...listenOptions(relay, 'hc'), path: 'given' });
      assert.equal(withPath.path, 'given');
    });
  });

  test('setting closeRequested = true, as hyco-ws code does to stop reconnecting, closes the server', async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newServer(listenOptions(relay));
      await whenListening(server);
      server.closeRequested = true;
      await nextOf(server, 'close');
      assert.equal(server.status, 'closed');
      assert.equal(relay.stats().listeners, 0);
      server.closeRequested = false;
      assert.equal(server.closeRequested, true, 'a closed server stays closed');
    });
  });

  test("constructor messages start with hyco-ws's words, for both entry points", () => {
    for (const api of [hyco, HycoWs]) {
      for (const server of [undefined, null]) {
        assert.throws(() => new api.RelayedServer({ server, token: 't' }), (err) => {
          assert.ok(err instanceof TypeError);
          assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
          assert.ok(err.message.startsWith("'server' must be provided: "), err.message);
          return true;
        });
      }
      for (const token of [undefined, null]) {
        assert.throws(() => api.createRelayedServer({ server: 'wss://ns.servicebus.windows.net/$hc/hc', token }), (err) => {
          assert.ok(err instanceof TypeError);
          assert.ok(err.message.startsWith("A 'token' string or function must be provided: "), err.message);
          return true;
        });
      }
    }
  });
});

describe('controlChannel', () => {
  test('readyState follows the channel; the default onmessage is a function to wrap; a wrapper sees accept messages, and accepts go on', async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newServer(listenOptions(relay));
      const channel = server.controlChannel;
      assert.equal(channel.readyState, hyco.CONNECTING);
      assert.equal(channel.url, server.listenUri);
      await whenListening(server);
      assert.equal(channel.readyState, hyco.OPEN);
      assert.equal(typeof channel.onmessage, 'function');

      // As hyco-ws's tests and apps do: wrap the handler, read event.data, call the original.
      const original = channel.onmessage;
      const seen = [];
      channel.onmessage = function (event) {
        seen.push(JSON.parse(event.data));
        original.call(this, event);
      };
      const listened = [];
      channel.on('message', (text) => listened.push(text));
      server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
      const client = await hycoWsClient(relay, { 'X-Custom-Test': 'relay-header-value', 'X-Time': '12:30:45' });
      client.send('after the wrapper');
      assert.equal((await nextMessage(client, 'the echo'))[0], 'after the wrapper');
      await waitUntil(() => seen.length === 1, STEP_MS, 'the accept message at the wrapper');
      const { accept } = seen[0];
      assert.ok(accept, `an accept message: ${JSON.stringify(seen[0])}`);
      const headers = Object.fromEntries(Object.entries(accept.connectHeaders).map(([k, v]) => [k.toLowerCase(), v]));
      assert.equal(headers['x-custom-test'], 'relay-header-value');
      assert.equal(headers['x-time'], '12:30:45');
      assert.equal(typeof accept.address, 'string');
      assert.equal(listened.length, 1);
      assert.deepEqual(JSON.parse(listened[0]), seen[0]);
      client.close();
    });
  });

  test('close() reopens the channel at once: a clean close, then open again; after the server closes it does nothing', async () => {
    await withServerRelay(undefined, async (relay) => {
      const listens = relayEvents(relay, 'listen');
      const server = newServer(listenOptions(relay));
      await whenListening(server);
      const channel = server.controlChannel;
      const closes = [];
      const opens = [];
      const errors = [];
      channel.onclose = (event) => closes.push(event);
      channel.on('open', () => opens.push(Date.now()));
      channel.onerror = (event) => errors.push(event);
      server.on('error', (err) => errors.push(err));
      channel.close();
      const offline = await nextOf(server, 'offline');
      assert.equal(offline.args[0].code, 'ERR_CONTROL_CHANNEL_REOPENED', offline.args[0].message);
      await waitUntil(() => eventsOfType(server, 'online').length === 2, STEP_MS, "'online' again after controlChannel.close()");
      assert.equal(channel.readyState, hyco.OPEN);
      assert.equal(closes.length, 1);
      assert.equal(closes[0].code, 1000);
      assert.equal(closes[0].wasClean, true);
      assert.equal(opens.length, 1);
      await waitUntil(() => listens.length === 2, STEP_MS, "the relay's second 'listen'");
      assert.equal(eventsOfType(server, 'listening').length, 1, "the main entry point emits 'listening' once");
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      // Asked for, so not a failure: no 'error' on the channel or the server, and the next
      // attempt carries none.
      assert.deepEqual(errors, []);
      assert.equal(eventsOfType(server, 'connecting').at(-1).args[0], null, history(server));

      await withTimeout(new Promise((resolve) => server.close(resolve)), STEP_MS, 'close()');
      assert.equal(channel.readyState, hyco.CLOSED);
      channel.close();
      assert.equal(server.status, 'closed');
      assert.equal(relay.stats().listeners, 0);
    });
  });
  test('close() just as the channel is lost: the loss is reported (1006, not a clean close), and the channel comes back', async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newServer(listenOptions(relay));
      server.on('error', () => {});
      await whenListening(server);
      const channel = server.controlChannel;
      const closes = [];
      channel.on('close', (code, reason) => closes.push({ code, reason }));
      assert.equal(native.liveCounts().queued, 0, 'nothing queued for JavaScript while idle');
      assert.equal(await withTimeout(relay.dropListeners({ code: 1011, reason: 'gone' }), STEP_MS, 'dropListeners'), 1);
      // Without yielding to the event loop, so that the loss is queued for JavaScript but
      // not yet seen there when close() is called (the race to pin).
      const deadline = Date.now() + STEP_MS;
      while (native.liveCounts().queued === 0) {
        assert.ok(Date.now() < deadline, "the loss to be queued for JavaScript");
      }
      channel.close();
      await nextOf(server, 'offline');
      await waitUntil(() => closes.length === 1, STEP_MS, "the channel's 'close'");
      assert.equal(closes[0].code, 1006, `the channel's close: ${JSON.stringify(closes)}`);
      assert.equal(server.lastError.code, 'ERR_CONTROL_CHANNEL_CLOSED', server.lastError.message);
      await waitUntil(() => eventsOfType(server, 'online').length === 2, STEP_MS, "'online' again after the loss");
      assert.equal(channel.readyState, hyco.OPEN);
    });
  });
});

describe('the hyco-ws-rs/hyco-ws entry point', () => {
  test("the helpers' lenient forms (compared with hyco-ws 1.0.5 itself in interop-hyco-ws): refused where hyco-ws's result differs; null options count as absent", () => {
    const uri = 'wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=connect';
    const life = hyco.parseRelayToken(HycoWs.createRelayToken(uri, 'rule', 'key', '120')).expiresAt.getTime() - Date.now();
    assert.ok(life > 118_000 && life <= 120_000, `a '120' lifetime is 120 s (${life} ms)`);
    // The main entry point keeps its strict checks; and a lifetime string worth 0 (hyco-ws:
    // a token expired at once, where 0 means the default) is refused.
    assert.throws(() => hyco.createRelayToken(uri, 'rule', 'key', '120'), TypeError);
    for (const zero of ['0', ' 0 ', '0.0', '-0']) {
      assert.throws(() => HycoWs.createRelayToken(uri, 'rule', 'key', zero), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
    }
    assert.throws(() => HycoWs.createRelayToken(uri, 'rule', Buffer.from([0xff, 0xfe]), 60), /must hold UTF-8 text/);
    // Only hyco-ws's own null defaults count as absent: proxy: null is a mistake, as on the
    // main entry point.
    assert.throws(() => new HycoWs.RelayedServer({ server: 'ws://127.0.0.1:9/$hc/hc', token: 't', proxy: null }), TypeError);
    // A server made again from another's options, as hyco-ws allowed (id: null in them).
    const first = new HycoWs.RelayedServer({ server: 'ws://127.0.0.1:9/$hc/hc', token: 't', reconnectDelays: [60000], maxPayload: null, clientTracking: null });
    first.on('error', () => {});
    assert.equal(first.options.id, null);
    const again = new HycoWs.RelayedServer(first.options);
    again.on('error', () => {});
    const main = new hyco.RelayedServer({ ...first.options, reconnectDelays: [60000] });
    main.on('error', () => {});
    for (const s of [first, again, main]) s.close();
  });

  test("an accepted socket emits 'open' after 'connection' (where hyco-ws apps greet); close reasons are strings; every socket is an instance of the export, which is its own WebSocket", async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newHycoWsServer(listenOptions(relay));
      const order = [];
      const accepted = new Promise((resolve) => {
        server.on('connection', (ws) => {
          order.push(`connection ${ws.readyState}`);
          // As a hyco-ws app: the socket was still connecting here, so the work starts in 'open'.
          ws.on('open', () => {
            order.push('open');
            ws.send('greeting');
          });
          ws.on('close', (code, reason) => resolve({ ws, code, reason }));
        });
      });
      await whenListening(server);
      const uri = createRelaySendUri(relay.namespace, 'hc');
      const sender = HycoWs.relayedConnect(uri, createRelayToken(uri, relay.keyName, relay.key));
      const [greeting] = await nextMessage(sender, 'the greeting');
      assert.equal(greeting, 'greeting');
      assert.deepEqual(order, ['connection 1', 'open']);
      const clientClosed = withTimeout(once(sender, 'close'), STEP_MS, "the sender's 'close'");
      sender.close(4000, 'see you');
      const { ws, code, reason } = await withTimeout(accepted, STEP_MS, "the accepted socket's 'close'");
      assert.equal(code, 4000);
      assert.equal(reason, 'see you', 'a string, as ws 1.1 gave it');
      const [, clientReason] = await clientClosed;
      assert.equal(typeof clientReason, 'string');
      for (const socket of [ws, sender, new HycoWs('ws://127.0.0.1:9', null).on('error', () => {})]) {
        assert.ok(socket instanceof HycoWs, 'an instance of the export');
        assert.ok(socket instanceof HycoWs.WebSocket, 'an instance of its WebSocket');
      }
      assert.equal(HycoWs.WebSocket, HycoWs);
      assert.equal(typeof HycoWs.WebSocket.createRelaySendUri, 'function');
      // A subclass keeps instanceof's usual meaning.
      class Mine extends HycoWs {}
      const mine = new Mine('ws://127.0.0.1:9', null).on('error', () => {});
      assert.ok(mine instanceof Mine && mine instanceof HycoWs);
      assert.equal(sender instanceof Mine, false);
      assert.equal(new HycoWs('ws://127.0.0.1:9', null).on('error', () => {}) instanceof Mine, false);
    });
  });

  test('text arrives as a string with flags (accepted sockets, relayedConnect, new WebSocket(url, null, options)); binary as a Buffer; an echo keeps the type', async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newHycoWsServer(listenOptions(relay));
      const got = [];
      server.on('connection', (ws) => {
        ws.on('message', (data, flags) => {
          got.push([data, flags]);
          ws.send(data);
        });
      });
      await whenListening(server);

      const client = await hycoWsClient(relay);
      client.send('ping');
      const [echo, echoFlags] = await nextMessage(client, 'the echo at the client');
      assert.equal(echo, 'ping');
      assert.deepEqual(echoFlags, { binary: false });
      assert.deepEqual(got[0], ['ping', { binary: false }]);
      client.send('');
      assert.equal((await nextMessage(client, 'the empty echo'))[0], '');
      client.send(Buffer.from([1, 2, 3]));
      const [bin, binFlags] = await nextMessage(client, 'the binary echo');
      assert.ok(Buffer.isBuffer(bin));
      assert.deepEqual([...bin], [1, 2, 3]);
      assert.deepEqual(binFlags, { binary: true });
      assert.ok(Buffer.isBuffer(got[2][0]) && got[2][1].binary === true);
      // ws's onmessage gets the string too.
      const viaAttribute = new Promise((resolve) => (client.onmessage = (event) => resolve(event.data)));
      client.send('attribute');
      assert.equal(await withTimeout(viaAttribute, STEP_MS, 'onmessage'), 'attribute');

      const uri = createRelaySendUri(relay.namespace, 'hc');
      const opened = new Promise((resolve) => HycoWs.relayedConnect(uri, createRelayToken(uri, relay.keyName, relay.key), resolve));
      const sender = await withTimeout(opened, STEP_MS, 'relayedConnect to call back');
      assert.ok(sender instanceof hyco.RelayedWebSocket);
      sender.send('Hello Azure Relay via hyco-ws!');
      assert.equal((await nextMessage(sender, 'the echo at the relayed sender'))[0], 'Hello Azure Relay via hyco-ws!');
      client.close();
      sender.close();
    });
  });

  test("clients is an array; 'listening' on every reopen; closing the server closes its connections with 1000", async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newHycoWsServer(listenOptions(relay));
      await whenListening(server);
      assert.ok(Array.isArray(server.clients));
      const client = await hycoWsClient(relay);
      await waitUntil(() => server.clients.length === 1, STEP_MS, 'one client');
      assert.equal(server.clients.filter((c) => c.readyState === HycoWs.OPEN).length, 1);

      server.controlChannel.close();
      await waitUntil(() => eventsOfType(server, 'online').length === 2, STEP_MS, "'online' after the reopen");
      assert.equal(eventsOfType(server, 'listening').length, 2, "'listening' for each open channel");

      const clientClosed = withTimeout(once(client, 'close'), STEP_MS, "the client's close");
      const serverSocket = server.clients[0];
      const socketClosed = withTimeout(once(serverSocket, 'close'), STEP_MS, "the server socket's close");
      await withTimeout(new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))), STEP_MS, 'close()');
      assert.equal((await socketClosed)[0], 1000);
      assert.equal((await clientClosed)[0], 1000);
      assert.equal(server.clients.length, 0);
      assert.equal(server.closeRequested, true);

      // Without client tracking the array stays, empty, as hyco-ws's did.
      const untracked = newHycoWsServer(listenOptions(relay, 'hc', { clientTracking: false }));
      await whenListening(untracked);
      const other = await hycoWsClient(relay);
      await waitUntil(() => eventsOfType(untracked, 'connection').length === 1, STEP_MS, 'a connection');
      assert.deepEqual(untracked.clients, []);
      other.close();
    });
  });

  test("the main entry point keeps ws 8's ways: Buffers with isBinary, a Set, 'listening' once, 1001 on close", async () => {
    await withServerRelay(undefined, async (relay) => {
      const server = newServer(listenOptions(relay));
      server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
      await whenListening(server);
      assert.ok(server.clients instanceof Set);
      const uri = createRelaySendUri(relay.namespace, 'hc');
      assert.throws(() => new hyco(uri, null), { name: 'SyntaxError' }, 'ws 8 refuses a null protocol list');
      const sender = hyco.relayedConnect(uri, createRelayToken(uri, relay.keyName, relay.key));
      await withTimeout(once(sender, 'open'), STEP_MS, 'the sender');
      sender.send('text');
      const [data, isBinary] = await nextMessage(sender, 'the echo');
      assert.ok(Buffer.isBuffer(data));
      assert.equal(isBinary, false);
      const closed = withTimeout(once(sender, 'close'), STEP_MS, "the sender's close");
      server.close();
      assert.equal((await closed)[0], 1001);
    });
  });

  test("every failed attempt is an 'error' when something listens (a host that does not resolve, named); the server keeps trying; none without a listener", async () => {
    const uri = createRelayListenUri('hyco-ws-rs-test.invalid', 'hc');
    const token = () => createRelayToken(uri, 'rule', 'key');
    const server = newHycoWsServer({ server: uri, token, reconnectDelays: [50] });
    const errors = [];
    server.on('error', (err) => errors.push(err));
    try {
      await waitUntil(() => errors.length >= 2, 20_000, () => `two 'error' events (events: ${history(server)})`);
      assert.equal(errors[0].code, 'ENOTFOUND');
      assert.match(errors[0].message, /hyco-ws-rs-test\.invalid/);
      assert.notEqual(server.status, 'closed', 'still retrying');
      // As hyco-ws code does in its 'error' handler: stop.
      server.closeRequested = true;
      await nextOf(server, 'close');

      // Without an 'error' listener: no crash, still retrying.
      const quiet = newHycoWsServer({ server: uri, token, reconnectDelays: [50] });
      await waitUntil(
        () => eventsOfType(quiet, 'connecting').filter((e) => e.args[0]).length >= 2,
        20_000,
        () => `two failed attempts (events: ${history(quiet)})`
      );
      quiet.close();
      await nextOf(quiet, 'close');
    } finally {
      server.close();
    }
  });

  test('the helpers take what hyco-ws took where the result is well defined, and still refuse a missing key name', () => {
    const uri = 'wss://contoso.servicebus.windows.net:443/$hc/mypath';
    const before = Math.floor(Date.now() / 1000);
    const past = HycoWs.createRelayToken(uri, 'RootManageSharedAccessKey', 'k', -60);
    const se = Number(/se=(\d+)/.exec(past)[1]);
    assert.ok(se <= before - 59 && se >= before - 61, `se ${se} is a minute ago`);
    const empty = HycoWs.createRelayToken(uri, 'RootManageSharedAccessKey', '');
    const sr = /sr=([^&]+)/.exec(empty)[1];
    const at = /se=(\d+)/.exec(empty)[1];
    const expected = crypto.createHmac('sha256', '').update(`${sr}\n${at}`).digest('base64');
    assert.equal(decodeURIComponent(/sig=([^&]+)/.exec(empty)[1]), expected, 'signed with the empty key');
    assert.match(empty, /&skn=RootManageSharedAccessKey$/);
    assert.equal(HycoWs.createRelaySendUri('contoso.servicebus.windows.net', ''), 'wss://contoso.servicebus.windows.net:443/$hc/?sb-hc-action=connect');
    assert.equal(HycoWs.createRelayBaseUri('ns', ''), 'wss://ns:443/$hc/');
    assert.match(HycoWs.appendRelayToken(uri, 'rule', '', -1), /sb-hc-token=SharedAccessSignature/);
    // Garbage in hyco-ws (`skn=null`, `skn=`): a clear error here.
    for (const keyName of [null, undefined, '']) {
      assert.throws(() => HycoWs.createRelayToken(uri, keyName, 'k'), { name: 'TypeError', message: /"keyName" argument/ });
    }
    // The main entry point stays strict.
    assert.throws(() => hyco.createRelayToken(uri, 'rule', 'k', -60), { name: 'RangeError' });
    assert.throws(() => hyco.createRelayToken(uri, 'rule', ''), { name: 'TypeError' });
    assert.throws(() => hyco.createRelaySendUri('ns', ''), { name: 'TypeError' });
  });

  test('the exports: ws 8 underneath with hyco-ws classes, CommonJS and ES modules alike', async () => {
    const cjs = require('hyco-ws-rs/hyco-ws');
    assert.equal(cjs, HycoWs);
    const esm = await import('hyco-ws-rs/hyco-ws');
    for (const name of ['createRelayedServer', 'relayedConnect', 'createRelayToken', 'RelayedServer', 'WebSocket', 'WebSocketServer', 'startLocalRelay']) {
      assert.equal(esm[name], HycoWs[name], name);
    }
    // The export is its own WebSocket, helpers included, as ws 8's is (it was the bare class,
    // which the declarations said it was not).
    assert.equal(HycoWs.WebSocket, HycoWs);
    assert.equal(Object.getPrototypeOf(HycoWs.prototype), hyco.prototype);
    assert.ok(new HycoWs.RelayedServer({ server: 'wss://x.invalid/$hc/y', token: 't', reconnectDelays: [60000] }).close() === undefined);
    assert.ok(HycoWs.RelayedServer.prototype instanceof hyco.RelayedServer);
    assert.equal(HycoWs.OPEN, 1);
    // A ws server of this entry point hands out sockets of its kind.
    const wss = new HycoWs.Server({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    const accepted = once(wss, 'connection');
    const client = new HycoWs(`ws://127.0.0.1:${wss.address().port}`, null, {});
    const [socket] = await withTimeout(accepted, STEP_MS, 'the local connection');
    assert.ok(socket instanceof HycoWs.WebSocket);
    await once(client, 'open');
    client.send('local text');
    assert.equal((await nextMessage(socket, 'the local message'))[0], 'local text');
    client.close();
    await new Promise((resolve) => wss.close(resolve));
  });
});
