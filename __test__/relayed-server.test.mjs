// RelayedServer (the listener), from its spec: the API and options, the events, accepting
// and refusing senders (handleProtocols, verifyClient, 'headers'), the request object,
// close(), and terminal errors. The relay is the package's local emulator; senders are plain
// ws 8 clients and the package's relayedConnect. A fake service (a ws WebSocketServer) stands
// in for the relay where a test must see exactly what the listener sends on an accept.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import EventEmitter from 'node:events';

import hyco, { createRelayListenUri, createRelayToken } from 'hyco-ws-rs';

import {
  STEP_MS,
  WebSocket,
  expectOpen,
  expectStatus,
  makeCertificate,
  nextMessage,
  waitUntil,
  whenClosed,
  withTimeout
} from './support/relay-steps.mjs';
import { selfSignedCert } from './support/proxy-steps.mjs';
import {
  closeOf,
  describeChild,
  handshakeFailure,
  next,
  nextMessageOf,
  relayed,
  runNode
} from './support/socket-steps.mjs';
import {
  cleanup,
  echo,
  eventsOfType,
  history,
  listenOptions,
  newServer,
  nextConnection,
  nextOf,
  record,
  sendAddress,
  serverApi,
  startFakeService,
  startServer,
  typesOf,
  whenListening,
  withServerRelay,
  wsSender,
  echoRoundTrip
} from './support/server-steps.mjs';

/** One Hybrid Connection, 'hc', so that sender suffixes (hc/sub/dir) resolve to it. */
const RELAY = { hybridConnections: ['hc'] };


/**
 * A callback that resolves a promise with its arguments.
 *
 * @returns {{ cb: (...args: any[]) => void, called: Promise<any[]>, calls: any[][] }}
 */
function callback() {
  const calls = [];
  let resolve;
  const called = new Promise((r) => {
    resolve = r;
  });
  return {
    calls,
    called,
    cb: (...args) => {
      calls.push(args);
      resolve(args);
    }
  };
}

describe('exports and options', () => {
  test('RelayedServer and createRelayedServer are exported functions; a server is an EventEmitter', async () => {
    const { RelayedServer, createRelayedServer } = serverApi();
    assert.equal(typeof RelayedServer, 'function');
    assert.equal(typeof createRelayedServer, 'function');
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay);
      assert.ok(server instanceof RelayedServer, 'new RelayedServer() is a RelayedServer');
      assert.ok(server instanceof EventEmitter, 'a RelayedServer is an EventEmitter');
    });
  });

  test('bad options throw synchronously, naming the option', async () => {
    const { RelayedServer } = serverApi();
    const server = 'ws://127.0.0.1:1/$hc/hc?sb-hc-action=listen';
    const token = createRelayToken(server, 'k', 'a2V5', 3600);
    const ok = { server, token };
    const make = (o) => () => {
      // Should it not throw, the server is recorded so that cleanup() closes it.
      record(new RelayedServer(o));
    };
    const is = (Class, re) => (err) => {
      assert.ok(err instanceof Class, `expected a ${Class.name}, got ${err && err.constructor && err.constructor.name}: ${err && err.message}`);
      assert.match(err.message, re);
      return true;
    };
    const typeOrRange = (re) => (err) => {
      assert.ok(
        err instanceof TypeError || err instanceof RangeError,
        `expected a TypeError or RangeError, got ${err && err.constructor && err.constructor.name}: ${err && err.message}`
      );
      assert.match(err.message, re);
      return true;
    };
    try {
      // The spec's own examples.
      assert.throws(make({}), is(TypeError, /server/), 'neither server nor connectionString');
      assert.throws(make({ token }), is(TypeError, /server/), 'no server, a token');
      assert.throws(make({ server, token: 42 }), is(TypeError, /token/), 'a number as token');
      assert.throws(make({ server, token: { t: 'x' } }), is(TypeError, /token/), 'an object as token');
      assert.throws(make({ ...ok, keepAliveInterval: -1 }), is(RangeError, /keepAliveInterval/), 'keepAliveInterval -1');
      // The same rule, for the other options.
      assert.throws(make(undefined), TypeError, 'no options at all');
      assert.throws(make({ server: 42, token }), typeOrRange(/server/), 'a number as server');
      assert.throws(
        make({ server: 'ws://127.0.0.1:9/$hc/bad%zz?sb-hc-token=secret', token }),
        (err) => err instanceof SyntaxError && /^Invalid URL: /.test(err.message) && !err.message.includes('secret'),
        'a malformed %-escape in the path: a SyntaxError (not a URIError), the token redacted'
      );
      assert.throws(make({ ...ok, requestTimeout: 0 }), typeOrRange(/requestTimeout/), 'requestTimeout 0');
      assert.throws(make({ ...ok, keepAliveInterval: 'often' }), typeOrRange(/keepAliveInterval/), 'keepAliveInterval a string');
      assert.throws(make({ ...ok, acceptTimeout: -5 }), typeOrRange(/acceptTimeout/), 'acceptTimeout -5');
      assert.throws(make({ ...ok, maxPayload: -1 }), typeOrRange(/maxPayload/), 'maxPayload -1');
      assert.throws(make({ ...ok, reconnectDelays: 'soon' }), typeOrRange(/reconnectDelays/), 'reconnectDelays a string');
      assert.throws(make({ ...ok, reconnectDelays: [0, -1] }), typeOrRange(/reconnectDelays/), 'a negative reconnect delay');
      assert.throws(make({ ...ok, handleProtocols: 'b' }), typeOrRange(/handleProtocols/), 'handleProtocols a string');
      assert.throws(make({ ...ok, verifyClient: true }), typeOrRange(/verifyClient/), 'verifyClient a boolean');
      assert.throws(make({ connectionString: 'garbage' }), typeOrRange(/connection ?string/i), 'a malformed connection string');
      assert.throws(
        make({ connectionString: 'Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5' }),
        typeOrRange(/path|EntityPath/),
        'a connection string without EntityPath and no path option'
      );
    } finally {
      await cleanup();
    }
  });

  test("the constructor's callback is a 'listening' listener; 'listening' is emitted once, with status 'online'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const cb = callback();
      const server = newServer(listenOptions(relay), cb.cb);
      assert.equal(server.status, 'connecting', 'status right after the constructor');
      assert.equal(server.lastError, null, 'lastError right after the constructor');
      await withTimeout(cb.called, STEP_MS, "the constructor's callback");
      assert.equal(server.status, 'online');
      assert.equal(server.lastError, null);
      const types = typesOf(server);
      assert.equal(types.filter((t) => t === 'listening').length, 1, history(server));
      assert.equal(types.filter((t) => t === 'online').length, 1, history(server));
      const connecting = eventsOfType(server, 'connecting');
      assert.ok(connecting.length >= 1, `a 'connecting' event before going online (${history(server)})`);
      assert.equal(connecting[0].args[0], null, "the first 'connecting' carries null");
      assert.ok(types.indexOf('connecting') < types.indexOf('online'), history(server));
      assert.equal(eventsOfType(server, 'listening')[0].status, 'online', "status is 'online' in 'listening'");
      echo(server);
      await echoRoundTrip(relay);
      assert.equal(cb.calls.length, 1, 'the callback is called once');
    });
  });

  test("createRelayedServer(options, fn): fn is a 'connection' listener, called with (socket, req)", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const { RelayedServer, createRelayedServer } = serverApi();
      const cb = callback();
      const server = record(createRelayedServer(listenOptions(relay), cb.cb));
      assert.ok(server instanceof RelayedServer, 'createRelayedServer returns a RelayedServer');
      await whenListening(server);
      const { outcome } = wsSender(relay, 'hc/x?y=z');
      const [[socket, req]] = await Promise.all([
        withTimeout(cb.called, STEP_MS, "createRelayedServer's fn"),
        expectOpen(outcome, 'the sender')
      ]);
      assert.ok(socket instanceof WebSocket, 'fn gets a ws WebSocket');
      assert.equal(req.url, '/x?y=z');
    });
  });
});

describe('accepting senders', () => {
  test('a plain ws sender: OPEN socket and req in "connection", clients, messages and close codes both ways', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay);
      const s = wsSender(relay, 'hc/sub/dir?x=1', { id: 'plain-sender-1', headers: { 'X-App': 'demo' } });
      const [{ socket, req, readyState }, sender] = await Promise.all([
        nextConnection(server),
        expectOpen(s.outcome, 'the plain ws sender')
      ]);
      const senderPort = sender._socket.localPort;

      assert.equal(readyState, WebSocket.OPEN, "the socket is OPEN when 'connection' is emitted");
      assert.ok(socket instanceof WebSocket, 'the socket is a ws 8 WebSocket');
      assert.ok(socket instanceof hyco.WebSocket, "the socket is an instance of the package's WebSocket");
      assert.equal(req.method, 'GET');
      assert.equal(req.url, '/sub/dir?x=1', 'the suffix and query, without sb-hc-* parameters');
      assert.equal(req.headers['x-app'], 'demo');
      for (const name of Object.keys(req.headers)) assert.equal(name, name.toLowerCase(), `header name ${name} is lowercased`);
      assert.equal(req.socket.remoteAddress, '127.0.0.1');
      assert.equal(req.socket.remotePort, senderPort, "remotePort is the sender's local port");
      assert.equal(req.id, 'plain-sender-1', "req.id is the sender's sb-hc-id");

      assert.ok(server.clients instanceof Set, 'server.clients is a Set');
      assert.ok(server.clients.has(socket), 'the socket is in server.clients');
      assert.equal(server.clients.size, 1);

      sender.send('hello listener');
      let m = await nextMessage(socket, STEP_MS, "the sender's text at the listener");
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString(), 'hello listener');
      sender.send(Buffer.from([0, 1, 2, 255]));
      m = await nextMessage(socket, STEP_MS, "the sender's binary at the listener");
      assert.equal(m.isBinary, true);
      assert.deepEqual([...m.data], [0, 1, 2, 255]);

      socket.send('hello sender');
      m = await nextMessage(sender, STEP_MS, "the listener's text at the sender");
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString(), 'hello sender');
      socket.send(Buffer.from('bin'));
      m = await nextMessage(sender, STEP_MS, "the listener's binary at the sender");
      assert.equal(m.isBinary, true);
      assert.equal(m.data.toString(), 'bin');

      // The sender closes.
      sender.close(4001, 'sender bye');
      const atListener = await whenClosed(socket, STEP_MS, 'the listener socket to close');
      assert.deepEqual(atListener, { code: 4001, reason: 'sender bye' });
      assert.equal((await whenClosed(sender, STEP_MS, 'the sender to close')).code, 4001);
      await waitUntil(() => !server.clients.has(socket), STEP_MS, 'the closed socket leaves server.clients');

      // A second sender, no suffix, no id; the listener closes.
      const s2 = wsSender(relay, 'hc');
      const [c2, sender2] = await Promise.all([nextConnection(server), expectOpen(s2.outcome, 'the second sender')]);
      assert.equal(c2.req.url, '/', 'no suffix gives /');
      assert.equal(typeof c2.req.id, 'string');
      assert.ok(c2.req.id.length > 0, 'a rendezvous id even when the sender gave none');
      assert.notEqual(c2.req.id, 'plain-sender-1');
      assert.equal(c2.req.socket.remotePort, sender2._socket.localPort);
      c2.socket.close(4002, 'listener bye');
      assert.deepEqual(await whenClosed(sender2, STEP_MS, 'the second sender to close'), { code: 4002, reason: 'listener bye' });
      assert.equal((await whenClosed(c2.socket, STEP_MS, 'the second listener socket to close')).code, 4002);
      await waitUntil(() => server.clients.size === 0, STEP_MS, 'server.clients to be empty');
    });
  });

  test('a relayedConnect sender: req, messages and close codes both ways', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay);
      const { uri, token } = sendAddress(relay, 'hc/rc?q=2');
      const S = relayed(uri, token, { headers: { 'X-App': 'rc' }, id: 'rc-sender-1' });
      const [{ socket, req, readyState }] = await Promise.all([nextConnection(server), next(S, 'open')]);
      assert.equal(readyState, WebSocket.OPEN);
      assert.ok(socket instanceof WebSocket);
      assert.equal(req.method, 'GET');
      assert.equal(req.url, '/rc?q=2');
      assert.equal(req.headers['x-app'], 'rc');
      assert.equal(req.id, 'rc-sender-1');
      assert.equal(req.socket.remoteAddress, '127.0.0.1');
      assert.ok(Number.isInteger(req.socket.remotePort) && req.socket.remotePort > 0, String(req.socket.remotePort));

      S.send('from S');
      const m = await nextMessage(socket, STEP_MS, "S's message at the listener");
      assert.equal(m.data.toString(), 'from S');
      assert.equal(m.isBinary, false);
      socket.send(Buffer.from([9, 8, 7]));
      const back = await nextMessageOf(S, STEP_MS, "the listener's message at S");
      assert.equal(back.isBinary, true);
      assert.deepEqual([...back.data], [9, 8, 7]);

      // The listener closes.
      socket.close(4002, 'srv');
      const closed = await closeOf(S, STEP_MS, "S's close");
      assert.equal(closed.code, 4002);
      assert.equal(closed.reason.toString(), 'srv');
      assert.equal((await whenClosed(socket)).code, 4002);

      // The sender closes.
      const { uri: uri2, token: token2 } = sendAddress(relay, 'hc');
      const S2 = relayed(uri2, token2);
      const [c2] = await Promise.all([nextConnection(server), next(S2, 'open')]);
      assert.equal(c2.req.url, '/');
      S2.close(4003, 'rc bye');
      assert.deepEqual(await whenClosed(c2.socket, STEP_MS, 'the listener socket to close'), { code: 4003, reason: 'rc bye' });
      assert.equal((await closeOf(S2)).code, 4003);
      await waitUntil(() => server.clients.size === 0, STEP_MS, 'server.clients to be empty');
    });
  });

  test('handleProtocols(protocols: Set, req) picks the protocol both sides see; false refuses with 401', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const calls = [];
      const server = await startServer(relay, {
        handleProtocols: (protocols, req) => {
          calls.push({ protocols, req });
          return protocols.has('b') ? 'b' : false;
        }
      });
      const s = wsSender(relay, 'hc/p', { protocols: ['a', 'b'] });
      const [{ socket }, sender] = await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the ws sender')]);
      assert.equal(socket.protocol, 'b', 'the listener socket sees the chosen protocol');
      assert.equal(sender.protocol, 'b', 'the sender sees the chosen protocol');
      assert.equal(calls.length, 1);
      // The Set contract a ws 8 handler uses (has, size, iteration). Not `instanceof Set`: the
      // same argument must also serve hyco-ws's (list, cb) form, where it is an array.
      const offered = calls[0].protocols;
      assert.equal(typeof offered.has, 'function', 'protocols.has() exists (Set contract)');
      assert.equal(offered.has('a'), true);
      assert.equal(offered.has('z'), false);
      assert.equal(offered.size, 2, 'protocols.size (Set contract)');
      assert.deepEqual([...offered], ['a', 'b']);
      assert.equal(calls[0].req.url, '/p', 'the second argument is the req');

      const { uri, token } = sendAddress(relay, 'hc');
      const S = relayed(uri, token, { protocols: ['a', 'b'] });
      const [c2] = await Promise.all([nextConnection(server), next(S, 'open')]);
      assert.equal(S.protocol, 'b');
      assert.equal(c2.socket.protocol, 'b');

      const refused = wsSender(relay, 'hc', { protocols: ['z'] });
      await expectStatus(refused.outcome, 401, 'a sender offering only z');
      assert.equal(eventsOfType(server, 'connection').length, 2, 'no connection for the refused sender');
    });
  });

  test("handleProtocols in hyco-ws's form (list, cb) with cb(result, protocol)", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const cbTypes = [];
      const server = await startServer(relay, {
        handleProtocols: (list, cb) => {
          cbTypes.push(typeof cb);
          // As in hyco-ws (ws 1.x), the callback is called synchronously; the list is an array.
          if (list.indexOf('b') >= 0) cb(true, 'b');
          else cb(false);
        }
      });
      const s = wsSender(relay, 'hc', { protocols: ['a', 'b'] });
      const [{ socket }, sender] = await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the ws sender')]);
      assert.deepEqual(cbTypes, ['function']);
      assert.equal(sender.protocol, 'b');
      assert.equal(socket.protocol, 'b');

      const { uri, token } = sendAddress(relay, 'hc');
      const S = relayed(uri, token, { protocols: ['a', 'b'] });
      await Promise.all([nextConnection(server), next(S, 'open')]);
      assert.equal(S.protocol, 'b');

      await expectStatus(wsSender(relay, 'hc', { protocols: ['z'] }).outcome, 401, 'a sender refused by cb(false)');
    });
  });

  test("verifyClient, sync: info { origin, req, secure }; false refuses with 401 'Unauthorized'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const infos = [];
      const server = await startServer(relay, {
        verifyClient: (info) => {
          infos.push(info);
          return info.req.headers['x-allow'] === 'yes';
        }
      });
      const refused = await expectStatus(
        wsSender(relay, 'hc/v?w=1', { headers: { 'X-Allow': 'no' }, wsOptions: { origin: 'https://example.org' } }).outcome,
        401,
        'a sender refused by verifyClient'
      );
      assert.equal(refused.statusMessage, 'Unauthorized');
      assert.equal(infos.length, 1);
      assert.equal(infos[0].origin, 'https://example.org');
      assert.equal(typeof infos[0].secure, 'boolean');
      assert.equal(infos[0].req.url, '/v?w=1');
      assert.equal(infos[0].req.headers['x-allow'], 'no');

      const { uri, token } = sendAddress(relay, 'hc');
      const err = await handshakeFailure(relayed(uri, token, { headers: { 'X-Allow': 'no' } }), token);
      assert.equal(err.statusCode, 401);

      const ok = wsSender(relay, 'hc', { headers: { 'X-Allow': 'yes' } });
      await Promise.all([nextConnection(server), expectOpen(ok.outcome, 'an allowed sender')]);
      assert.equal(eventsOfType(server, 'connection').length, 1, 'only the allowed sender was connected');
      await waitUntil(() => relay.stats().pendingAccepts === 0, STEP_MS, 'no accept left pending at the relay');
    });
  });

  test("verifyClient, async: cb(false, 403, 'Go away') gives 403 'Go away'; cb(false) 401; cb(true) accepts; a message with a lone surrogate or of 20,000 characters still refuses", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay, {
        verifyClient: (info, cb) => {
          const mode = info.req.headers['x-mode'];
          setImmediate(() => {
            if (mode === 'forbid') cb(false, 403, 'Go away');
            else if (mode === 'plain') cb(false);
            // A message built from what the sender sent: a lone surrogate (which
            // encodeURIComponent throws on), or far longer than a reason phrase.
            else if (mode === 'surrogate') cb(false, 403, `bad \uD800 ${info.req.headers['x-mode']}`);
            else if (mode === 'long') cb(false, 403, 'x'.repeat(20000));
            else cb(true);
          });
        }
      });
      const forbidden = await expectStatus(wsSender(relay, 'hc', { headers: { 'X-Mode': 'forbid' } }).outcome, 403, 'a forbidden ws sender');
      assert.equal(forbidden.statusMessage, 'Go away');

      const { uri, token } = sendAddress(relay, 'hc');
      const err = await handshakeFailure(relayed(uri, token, { headers: { 'X-Mode': 'forbid' } }), token);
      assert.equal(err.statusCode, 403);
      assert.equal(err.statusDescription, 'Go away');

      const plain = await expectStatus(wsSender(relay, 'hc', { headers: { 'X-Mode': 'plain' } }).outcome, 401, 'a sender refused by cb(false)');
      assert.equal(plain.statusMessage, 'Unauthorized');

      const odd = await expectStatus(wsSender(relay, 'hc', { headers: { 'X-Mode': 'surrogate' } }).outcome, 403, 'a sender refused with a lone surrogate');
      assert.match(odd.statusMessage, /^bad .* surrogate$/);
      const long = await expectStatus(wsSender(relay, 'hc', { headers: { 'X-Mode': 'long' } }).outcome, 403, 'a sender refused with 20,000 characters');
      assert.match(long.statusMessage, /^x+$/);

      const ok = wsSender(relay, 'hc', { headers: { 'X-Mode': 'ok' } });
      await Promise.all([nextConnection(server), expectOpen(ok.outcome, 'an accepted sender')]);
      assert.equal(eventsOfType(server, 'connection').length, 1);
    });
  });

  test('accepts are handled concurrently: a slow verifyClient does not delay a second sender', async () => {
    await withServerRelay(RELAY, async (relay) => {
      let held = null;
      const server = await startServer(relay, {
        verifyClient: (info, cb) => {
          if (info.req.headers['x-order'] === '1') held = cb;
          else cb(true);
        }
      });
      const first = wsSender(relay, 'hc/first', { headers: { 'X-Order': '1' } });
      await waitUntil(() => held !== null, STEP_MS, "verifyClient to be called for the first sender");
      const second = wsSender(relay, 'hc/second', { headers: { 'X-Order': '2' } });
      const c2 = await nextConnection(server, STEP_MS, "the second sender's connection while the first is pending");
      await expectOpen(second.outcome, 'the second sender');
      assert.equal(c2.req.url, '/second');
      assert.equal(first.ws.readyState, WebSocket.CONNECTING, 'the first sender is still waiting');
      held(true);
      const c1 = await nextConnection(server, STEP_MS, "the first sender's connection once verified");
      await expectOpen(first.outcome, 'the first sender');
      assert.equal(c1.req.url, '/first');
    });
  });

  test("'headers' (array, req) fires before each accept handshake, before 'connection'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const calls = [];
      const server = await startServer(relay);
      server.on('headers', (headers, req) => {
        calls.push({ isArray: Array.isArray(headers), url: req && req.url, app: req && req.headers && req.headers['x-app'] });
        headers.push('X-Extra: yes');
      });
      echo(server);
      const s = wsSender(relay, 'hc/h', { headers: { 'X-App': 'hdr' } });
      await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the sender')]);
      assert.deepEqual(calls, [{ isArray: true, url: '/h', app: 'hdr' }]);
      const types = typesOf(server);
      assert.ok(types.indexOf('headers') < types.indexOf('connection'), history(server));
      await echoRoundTrip(relay, 'a second sender');
      assert.equal(calls.length, 2, "'headers' fires for each accept");
    });
  });

  test('maxPayload applies to accepted sockets: a larger message closes with 1009', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(await startServer(relay, { maxPayload: 1024 }));
      const s = wsSender(relay, 'hc');
      const [{ socket }, sender] = await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the sender')]);
      sender.send(Buffer.alloc(1024, 1));
      const m = await nextMessage(sender, STEP_MS, 'the echo of a 1024-byte message');
      assert.equal(m.data.length, 1024);
      sender.send(Buffer.alloc(1025, 2));
      // As with ws: the sender is closed with 1009; the listener's socket emits ws's error and
      // closes (ws reports 1006 on that side, having sent the 1009).
      assert.equal((await whenClosed(sender, STEP_MS, 'the sender to close')).code, 1009);
      const atListener = await whenClosed(socket, STEP_MS, 'the listener socket to close');
      assert.ok([1006, 1009].includes(atListener.code), `listener close code ${atListener.code}`);
      assert.equal(socket.lastError && socket.lastError.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
    });
  });

  test('clientTracking: false keeps no clients', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = await startServer(relay, { clientTracking: false });
      const s = wsSender(relay, 'hc');
      const [{ socket }] = await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the sender')]);
      assert.ok(!(server.clients instanceof Set && server.clients.has(socket)), 'the socket is not tracked');
    });
  });
});

describe('connection strings and tokens', () => {
  test('connectionString with EntityPath', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = newServer({ connectionString: relay.connectionString('hc') });
      await whenListening(server);
      echo(server);
      await echoRoundTrip(relay);
    });
  });

  test('connectionString without EntityPath, plus path', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = newServer({ connectionString: relay.connectionString(), path: 'hc' });
      await whenListening(server);
      echo(server);
      await echoRoundTrip(relay);
    });
  });

  test('connectionString with SharedAccessSignature', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const token = createRelayToken(createRelayListenUri(relay.namespace, 'hc'), relay.keyName, relay.key);
      const server = newServer({ connectionString: `Endpoint=${relay.url};SharedAccessSignature=${token};EntityPath=hc` });
      await whenListening(server);
      echo(server);
      await echoRoundTrip(relay);
    });
  });

  for (const [name, make] of [
    ['a string', (t) => t],
    ['a sync function', (t, count) => () => (count(), t)],
    ['an async function', (t, count) => async () => (count(), t)]
  ]) {
    test(`token as ${name}`, async () => {
      await withServerRelay(RELAY, async (relay) => {
        const { server: uri, token } = listenOptions(relay);
        let calls = 0;
        const server = newServer({ server: uri, token: make(token, () => calls++) });
        await whenListening(server);
        if (name !== 'a string') assert.ok(calls >= 1, 'the provider was called');
        echo(server);
        await echoRoundTrip(relay);
      });
    });
  }
});

describe('the accept handshake, seen by a fake service', () => {
  test("control channel: token header, sb-hc-id; accept: 'headers' adds a header, the chosen protocol, req from the accept message", async () => {
    try {
      const fake = await startFakeService();
      const token = createRelayToken(fake.listenUri, 'fake-rule', 'a2V5', 3600);
      const headerCalls = [];
      const server = newServer({
        server: fake.listenUri,
        token,
        id: 'track-7',
        handleProtocols: (protocols) => (protocols.has('b') ? 'b' : false)
      });
      server.on('headers', (headers, req) => {
        headerCalls.push({ isArray: Array.isArray(headers), url: req.url });
        headers.push('X-Extra: yes');
      });
      const control = await fake.nextControl();
      await whenListening(server);
      assert.equal(control.req.headers.servicebusauthorization, token, 'the token goes in the ServiceBusAuthorization header');
      assert.equal(control.parsedUrl.searchParams.get('sb-hc-action'), 'listen');
      assert.equal(control.parsedUrl.searchParams.get('sb-hc-id'), 'track-7', 'the id option is sent as sb-hc-id');
      assert.equal(control.parsedUrl.pathname, '/$hc/hc');

      const accept = (id, address) =>
        JSON.stringify({
          accept: {
            address,
            id,
            connectHeaders: {
              Host: `127.0.0.1:${fake.port}`,
              'X-App': 'fake',
              'Sec-WebSocket-Protocol': 'a, b',
              'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
              'Sec-WebSocket-Version': '13',
              Origin: 'https://origin.example'
            },
            remoteEndpoint: { address: '127.0.0.1', port: 4242 }
          }
        });
      control.send(accept('acc-1', fake.acceptAddress('acc-1')));
      const [acc, { socket, req }] = await Promise.all([fake.nextAcceptSocket(), nextConnection(server)]);
      assert.equal(acc.req.headers['x-extra'], 'yes', "the header added in 'headers' is sent on the accept request");
      assert.equal(acc.req.headers['sec-websocket-protocol'], 'b', 'the accept request echoes the chosen protocol');
      assert.equal(acc.parsedUrl.searchParams.get('sb-hc-action'), 'accept');
      assert.equal(acc.parsedUrl.searchParams.get('sb-hc-id'), 'acc-1', 'the accept address is opened as given');
      assert.deepEqual(headerCalls, [{ isArray: true, url: '/' }]);
      assert.equal(socket.protocol, 'b');
      assert.equal(req.url, '/');
      assert.equal(req.id, 'acc-1');
      assert.equal(req.method, 'GET');
      assert.equal(req.headers['x-app'], 'fake');
      assert.equal(req.headers.origin, 'https://origin.example');
      assert.equal(req.socket.remoteAddress, '127.0.0.1');
      assert.equal(req.socket.remotePort, 4242);

      acc.send('from the sender side');
      assert.equal((await nextMessage(socket)).data.toString(), 'from the sender side');
      socket.send('from the listener');
      assert.equal((await nextMessage(acc)).data.toString(), 'from the listener');

      // A suffix and an app query in the accept address; sb-hc-* parameters are dropped.
      const address2 = `ws://127.0.0.1:${fake.port}/$hc/hc/sub/dir?x=1&sb-hc-action=accept&sb-hc-id=acc-2`;
      control.send(accept('acc-2', address2));
      const [, c2] = await Promise.all([fake.nextAcceptSocket(), nextConnection(server)]);
      assert.equal(c2.req.url, '/sub/dir?x=1');
      assert.equal(c2.req.id, 'acc-2');
    } finally {
      await cleanup();
    }
  });

  test("options.id is added to the listen address's query as written: the rest of it is not re-encoded", async () => {
    try {
      const fake = await startFakeService();
      const server = `${fake.listenUri}&app=a%20b~c&flag`;
      const id = 'track 1/&';
      const s = newServer({ server, token: createRelayToken(fake.listenUri, 'fake-rule', 'a2V5', 3600), id });
      const control = await fake.nextControl();
      await whenListening(s);
      const expected = `&app=a%20b~c&flag&sb-hc-id=${encodeURIComponent(id)}`;
      assert.ok(control.req.url.endsWith(expected), `the query as written, then the id: ${control.req.url}`);
      assert.equal(control.parsedUrl.searchParams.get('sb-hc-id'), id);
      assert.equal(s.listenUri, `${server}&sb-hc-id=${encodeURIComponent(id)}`);
    } finally {
      await cleanup();
    }
  });

  test('a refusal opens the accept address with sb-hc-statusCode and sb-hc-statusDescription', async () => {
    try {
      const fake = await startFakeService();
      const server = newServer({
        server: fake.listenUri,
        token: createRelayToken(fake.listenUri, 'fake-rule', 'a2V5', 3600),
        verifyClient: (info, cb) => cb(false, 403, 'Go away')
      });
      const control = await fake.nextControl();
      await whenListening(server);
      control.send(
        JSON.stringify({
          accept: {
            address: fake.acceptAddress('rej-1'),
            id: 'rej-1',
            connectHeaders: { Host: `127.0.0.1:${fake.port}`, 'Sec-WebSocket-Version': '13' },
            remoteEndpoint: { address: '127.0.0.1', port: 5151 }
          }
        })
      );
      const reject = await fake.nextReject();
      assert.equal(reject.parsedUrl.searchParams.get('sb-hc-id'), 'rej-1');
      assert.equal(reject.parsedUrl.searchParams.get('sb-hc-statusCode'), '403');
      assert.equal(reject.parsedUrl.searchParams.get('sb-hc-statusDescription'), 'Go away');
      assert.equal(eventsOfType(server, 'connection').length, 0);
      // The 410 answer is the expected outcome of a reject, not a reason to go offline.
      assert.equal(server.status, 'online');
      assert.equal(control.readyState, WebSocket.OPEN);
    } finally {
      await cleanup();
    }
  });
});

describe('close', () => {
  test('close(cb) closes the tracked clients and the control channel, emits close, calls cb; a second close errs', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(await startServer(relay));
      const s = wsSender(relay, 'hc');
      const { uri, token } = sendAddress(relay, 'hc');
      const S = relayed(uri, token);
      const [, sender] = await Promise.all([nextConnection(server), expectOpen(s.outcome, 'the ws sender')]);
      await Promise.all([nextConnection(server), next(S, 'open')]);
      assert.equal(server.clients.size, 2);
      assert.equal(relay.stats().listeners, 1);

      let closeSeenByCb;
      const first = callback();
      server.close((...args) => {
        closeSeenByCb = eventsOfType(server, 'close').length;
        first.cb(...args);
      });
      const [err] = await withTimeout(first.called, STEP_MS, "close()'s callback");
      assert.ok(err === undefined || err === null, `close(cb) succeeds (got ${err})`);
      assert.equal(closeSeenByCb, 1, "'close' is emitted before cb is called");
      const atSender = await whenClosed(sender, STEP_MS, 'the ws sender to be closed by close()');
      assert.ok([1000, 1001].includes(atSender.code), `ws sender close code ${atSender.code}`);
      const atS = await closeOf(S, STEP_MS, 'S to be closed by close()');
      assert.ok([1000, 1001].includes(atS.code), `relayedConnect sender close code ${atS.code}`);
      assert.equal(server.clients.size, 0, 'no client left');
      assert.equal(server.status, 'closed');
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, () => `the relay to count no listener (${JSON.stringify(relay.stats())})`);
      await expectStatus(wsSender(relay, 'hc').outcome, 404, 'a sender after close()');

      const second = callback();
      server.close(second.cb);
      const [err2] = await withTimeout(second.called, STEP_MS, "the second close()'s callback");
      assert.ok(err2 instanceof Error, 'the second close(cb) gets an Error');
      assert.equal(err2.message, 'The server is not running');
      assert.equal(eventsOfType(server, 'close').length, 1, "'close' is emitted once");
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
    });
  });

  test('close() while connecting to an unreachable service: close is emitted, nothing fails afterwards', async () => {
    // A token request still in flight when close() completes must not fail later.
    const rejections = [];
    const onRejection = (reason) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const fake = await startFakeService();
      const address = fake.listenUri;
      await fake.close(); // nothing listens on that port now
      const server = newServer({
        server: address,
        token: createRelayToken(address, 'k', 'a2V5', 3600),
        reconnectDelays: [0, 100, 200]
      });
      await nextOf(server, 'connecting', STEP_MS, "a 'connecting' event");
      const done = callback();
      server.close(done.cb);
      await withTimeout(done.called, STEP_MS, "close()'s callback");
      await nextOf(server, 'close', STEP_MS, "'close'");
      assert.equal(server.status, 'closed');
      assert.equal(eventsOfType(server, 'error').length, 0, `a refused connection is not terminal (${history(server)})`);
      await new Promise((resolve) => setTimeout(resolve, 50)); // observation window
      assert.deepEqual(
        rejections.map((r) => String(r && r.stack ? r.stack.split('\n').slice(0, 2).join(' ') : r)),
        [],
        'no unhandled rejection after close()'
      );
    } finally {
      process.removeListener('unhandledRejection', onRejection);
      await cleanup();
    }
  });

  test('close() while an async token provider is pending: close is emitted, the late token is ignored', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const rejections = [];
      const onRejection = (reason) => rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      try {
        const { server: uri, token } = listenOptions(relay);
        let asked = 0;
        let answered = false;
        const server = newServer({
          server: uri,
          token: () => {
            asked++;
            return new Promise((resolve) =>
              setTimeout(() => {
                answered = true;
                resolve(token);
              }, 200)
            );
          }
        });
        await waitUntil(() => asked === 1, STEP_MS, 'the provider to be asked for the first token');
        const done = callback();
        server.close(done.cb);
        await withTimeout(done.called, STEP_MS, "close()'s callback");
        await nextOf(server, 'close', STEP_MS, "'close'");
        await waitUntil(() => answered, STEP_MS, 'the provider to answer (after close)');
        await new Promise((resolve) => setTimeout(resolve, 50)); // observation window
        assert.deepEqual(
          rejections.map((r) => String((r && r.message) || r)),
          [],
          'no unhandled rejection when the token arrives after close()'
        );
        assert.equal(server.status, 'closed');
        assert.equal(relay.stats().listeners, 0, 'the late token opened no control channel');
        assert.deepEqual(typesOf(server).filter((t) => t === 'online' || t === 'error'), [], history(server));
      } finally {
        process.removeListener('unhandledRejection', onRejection);
      }
    });
  });

  test('a process with a server and a sender exits by itself after closing them', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const script = `
        const hyco = require(process.env.HYCO_PKG);
        const { RelayedServer, createRelayListenUri, createRelaySendUri, createRelayToken, WebSocket } = hyco;
        const ns = process.env.RELAY_NS, kn = process.env.RELAY_KEY_NAME, key = process.env.RELAY_KEY;
        const luri = createRelayListenUri(ns, 'hc');
        const server = new RelayedServer({ server: luri, token: createRelayToken(luri, kn, key) }, () => {
          console.log('listening');
          const suri = createRelaySendUri(ns, 'hc');
          const ws = new WebSocket(suri, { headers: { ServiceBusAuthorization: createRelayToken(suri, kn, key) }, perMessageDeflate: false });
          ws.on('open', () => ws.send('hi'));
          ws.on('message', (d) => {
            console.log('echo ' + d);
            // The sender is still open: close() closes it.
            server.close((err) => console.log('closed ' + (err ? err.message : 'ok')));
          });
          ws.on('close', (code) => console.log('sender closed ' + code));
        });
        server.on('connection', (s) => s.on('message', (d) => s.send(String(d))));
      `;
      const env = { RELAY_NS: relay.namespace, RELAY_KEY_NAME: relay.keyName, RELAY_KEY: relay.key };
      const started = Date.now();
      const r = await runNode(script, { env, ms: 10_000 }).done;
      assert.equal(r.timedOut, false, `the child did not exit by itself within 10 s: ${describeChild(r)}`);
      assert.equal(r.code, 0, describeChild(r));
      assert.match(r.stdout, /^echo hi$/m, describeChild(r));
      assert.match(r.stdout, /^closed ok$/m, describeChild(r));
      assert.match(r.stdout, /^sender closed 100[01]$/m, describeChild(r));
      assert.ok(Date.now() - started < 10_000);
    });
  });
});

describe('terminal errors', () => {
  test("an unknown Hybrid Connection: 'error' with statusCode 404, then 'close'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = newServer(listenOptions(relay, 'other'));
      const errors = [];
      server.on('error', (err) => errors.push(err));
      await nextOf(server, 'close', STEP_MS, "'close' after a 404");
      const types = typesOf(server);
      assert.equal(errors.length, 1, history(server));
      assert.equal(errors[0].statusCode, 404, `${errors[0].statusCode} ${errors[0].message}`);
      assert.ok(types.indexOf('error') < types.indexOf('close'), history(server));
      assert.ok(!types.includes('listening'), history(server));
      assert.equal(server.status, 'closed');
      assert.equal(server.lastError, errors[0], 'lastError is the error');
    });
  });

  test("a static token with a wrong key: 'error' 401, then 'close'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const token = createRelayToken(uri, relay.keyName, Buffer.from('not the key').toString('base64'));
      const server = newServer({ server: uri, token });
      const errors = [];
      server.on('error', (err) => errors.push(err));
      await nextOf(server, 'close', STEP_MS, "'close' after a 401");
      assert.equal(errors.length, 1, history(server));
      assert.equal(errors[0].statusCode, 401);
      assert.ok(!String(errors[0].message).includes(token.split('sig=')[1].split('&')[0]), 'the message does not reveal the signature');
      const types = typesOf(server);
      assert.ok(types.indexOf('error') < types.indexOf('close'), history(server));
      assert.equal(server.status, 'closed');
    });
  });

  test("a static token without the Listen right: 'error' 403, then 'close'", async () => {
    const key = Buffer.from('a send-only key of 32 bytes long').toString('base64');
    await withServerRelay({ ...RELAY, rules: [{ name: 'sender', key, rights: ['Send'] }] }, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const server = newServer({ server: uri, token: createRelayToken(uri, 'sender', key) });
      const errors = [];
      server.on('error', (err) => errors.push(err));
      await nextOf(server, 'close', STEP_MS, "'close' after a 403");
      assert.equal(errors.length, 1, history(server));
      assert.equal(errors[0].statusCode, 403);
    });
  });

  test("a connection string's key that is wrong, or whose rule lacks Listen: 'error' 401/403, then 'close' (a key does not fix itself)", async () => {
    const key = Buffer.from('a send-only key of 32 bytes long').toString('base64');
    const rules = [
      { name: 'RootManageSharedAccessKey', key: Buffer.from('the right key, thirty-two bytes!').toString('base64'), rights: ['Manage'] },
      { name: 'sender', key, rights: ['Send'] }
    ];
    await withServerRelay({ ...RELAY, rules }, async (relay) => {
      const wrongKey = relay.connectionString('hc').replace(/SharedAccessKey=[^;]*/, `SharedAccessKey=${Buffer.from('not the key').toString('base64')}`);
      const sendOnly = relay.connectionString('hc').replace(/SharedAccessKeyName=[^;]*;SharedAccessKey=[^;]*/, `SharedAccessKeyName=sender;SharedAccessKey=${key}`);
      for (const [connectionString, status] of [[wrongKey, 401], [sendOnly, 403]]) {
        const server = newServer({ connectionString, reconnectDelays: [0] });
        const errors = [];
        server.on('error', (err) => errors.push(err));
        server.on('warning', (w) => assert.fail(`no retry, no warning: ${w.code} ${w.message}`));
        await nextOf(server, 'close', STEP_MS, `'close' after a ${status}`);
        assert.equal(errors.length, 1, history(server));
        assert.equal(errors[0].statusCode, status, errors[0].message);
        assert.equal(eventsOfType(server, 'connecting').length, 1, `one attempt only (${history(server)})`);
        assert.ok(!String(errors[0].message + errors[0].stack).includes(key), 'the message does not reveal the key');
      }
    });
  });

  test("with a token provider, 401 is not terminal: no 'error', 'connecting' events carry statusCode 401", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      let calls = 0;
      const server = newServer({
        server: uri,
        token: () => {
          calls++;
          return createRelayToken(uri, relay.keyName, Buffer.from('not the key').toString('base64'));
        },
        reconnectDelays: [0, 100, 200]
      });
      const refusals = [];
      server.on('warning', (w) => refusals.push(w));
      // No 'error' listener: an 'error' would crash the test.
      await waitUntil(
        () => eventsOfType(server, 'connecting').filter((e) => e.args[0] && e.args[0].statusCode === 401).length >= 2,
        10_000,
        () => `two 'connecting' events with a 401 (events: ${history(server)})`
      );
      assert.ok(calls >= 2, `the provider is asked again for each attempt (${calls} calls)`);
      // Each refused attempt is reported, so a wrong key in a provider does not go unseen.
      assert.ok(refusals.length >= 2, `a 'warning' per refused attempt (${refusals.length})`);
      for (const w of refusals) {
        assert.equal(w.code, 'ERR_TOKEN_REFUSED');
        assert.equal(w.statusCode, 401);
      }
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      assert.ok(!typesOf(server).includes('close'), history(server));
      assert.equal(server.lastError && server.lastError.statusCode, 401, 'lastError is the 401');
      const done = callback();
      server.close(done.cb);
      await withTimeout(done.called, STEP_MS, "close()'s callback");
      await nextOf(server, 'close', STEP_MS, "'close'");
    });
  });
});

describe('TLS (ca)', () => {
  let cert;
  let certPem;
  let keyPem;

  before(() => {
    cert = selfSignedCert();
    ({ cert: certPem, key: keyPem } = cert);
  });

  after(() => {
    if (cert) cert.remove();
  });

  test('with ca, the control channel and the accept sockets trust a self-signed relay', async () => {
    await withServerRelay({ ...RELAY, tls: { cert: certPem, key: keyPem } }, async (relay) => {
      assert.match(relay.namespace, /^wss:/);
      const server = echo(await startServer(relay, { ca: certPem }));
      const { outcome } = wsSender(relay, 'hc', { wsOptions: { ca: certPem } });
      const [{ req }, ws] = await Promise.all([nextConnection(server), expectOpen(outcome, 'a TLS sender')]);
      assert.equal(req.url, '/');
      ws.send('over tls');
      assert.equal((await nextMessage(ws)).data.toString(), 'over tls');

      const { uri, token } = sendAddress(relay, 'hc');
      const S = relayed(uri, token, { ca: Buffer.from(certPem) });
      await Promise.all([nextConnection(server), next(S, 'open')]);
    });
  });

  test('listening by host name, accepts come back to that name: a certificate without the IP verifies them', async () => {
    const named = makeCertificate('DNS:localhost');
    await withServerRelay({ ...RELAY, tls: named }, async (relay) => {
      const namespace = `wss://localhost:${relay.port}`;
      const uri = createRelayListenUri(namespace, 'hc');
      const server = echo(newServer({ server: uri, token: createRelayToken(uri, relay.keyName, relay.key), ca: named.cert }));
      await whenListening(server);
      const { outcome } = wsSender(relay, 'hc', { namespace, wsOptions: { ca: named.cert } });
      const [{ req }, ws] = await Promise.all([nextConnection(server), expectOpen(outcome, 'a sender by host name')]);
      assert.equal(req.url, '/');
      ws.send('by name');
      assert.equal((await nextMessage(ws)).data.toString(), 'by name');
    });
  });

  test('without ca, an untrusted relay certificate is not terminal: connecting again, no error', async () => {
    await withServerRelay({ ...RELAY, tls: { cert: certPem, key: keyPem } }, async (relay) => {
      const server = newServer(listenOptions(relay, 'hc', { reconnectDelays: [0, 100, 200] }));
      await waitUntil(
        () => eventsOfType(server, 'connecting').filter((e) => e.args[0] instanceof Error).length >= 2,
        STEP_MS,
        () => `two 'connecting' events with a TLS error (events: ${history(server)})`
      );
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      assert.ok(!typesOf(server).includes('listening'), history(server));
      assert.ok(server.lastError instanceof Error, 'lastError is the TLS error');
    });
  });
});
