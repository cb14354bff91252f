// relayedConnect(address, token[, options][, fn]): arguments, options, the callback, handshake
// failures and TLS. The relay is the package's local emulator and the listener is written by
// hand (a plain ws 8 control channel and accept sockets); a few tests put a hand-made HTTP or
// TCP server where the relay would be, to see exactly what the sender sends or how it fails.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import WebSocket from 'ws';
import { createRelaySendUri, createRelayToken } from 'hyco-ws-rs';

import {
  STEP_MS,
  nextAccept,
  nextEvent,
  nextMessage,
  rejectRendezvous,
  withRelay,
  withTimeout
} from './support/relay-steps.mjs';
import {
  api,
  closeOf,
  describeChild,
  endSockets,
  eventsOf,
  handshakeFailure,
  next,
  nextMessageOf,
  relayed,
  runNode,
  typesOf,
  withListener
} from './support/socket-steps.mjs';

/**
 * The first header of `headers` whose name matches `name` case-insensitively.
 *
 * @param {object} headers A header map.
 * @param {string} name The header's name.
 * @returns {[string, string] | undefined}
 */
function findHeader(headers, name) {
  return Object.entries(headers).find(([k]) => k.toLowerCase() === name.toLowerCase());
}

/**
 * Listens on 127.0.0.1, port 0.
 *
 * @param {net.Server} server The server.
 * @returns {Promise<number>} The port.
 */
async function listenLocal(server) {
  server.listen(0, '127.0.0.1');
  await nextEvent(server, 'listening', STEP_MS, 'a local server to listen');
  return server.address().port;
}

/**
 * Closes a server and destroys the sockets it accepted.
 *
 * @param {net.Server} server The server.
 * @param {Set<net.Socket>} sockets Its sockets.
 * @returns {Promise<void>}
 */
async function closeServer(server, sockets) {
  for (const s of sockets) s.destroy();
  await withTimeout(new Promise((resolve) => server.close(() => resolve())), STEP_MS, 'a local server to close');
}

/**
 * A TCP server that accepts connections and never says anything.
 *
 * @returns {Promise<{ port: number, close: () => Promise<void>, connections: () => number }>}
 */
async function silentServer() {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  const port = await listenLocal(server);
  return { port, close: () => closeServer(server, sockets), connections: () => sockets.size };
}

/**
 * An HTTP server that notes every upgrade request (`url`, `headers`) and answers it 404.
 *
 * @returns {Promise<{ port: number, upgrades: Array<{ url: string, headers: object }>, close: () => Promise<void> }>}
 */
async function refusingServer() {
  const upgrades = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => res.end());
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket) => {
    upgrades.push({ url: req.url, headers: req.headers });
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  const port = await listenLocal(server);
  return { port, upgrades, close: () => closeServer(server, sockets) };
}

/**
 * Calls `relayedConnect(...args)` for a test that expects it to throw; should it return a
 * socket instead, that socket is ended (and its 'error' swallowed) so that the failure is
 * the assertion's, not a stray connection's.
 *
 * @param {...any} args The arguments.
 * @returns {() => void} A function for `assert.throws`.
 */
function connecting(...args) {
  return () => {
    const s = api().relayedConnect(...args);
    if (s && typeof s.on === 'function') s.on('error', () => {});
    if (s && typeof s.terminate === 'function') s.terminate();
  };
}

/**
 * The send URI of Hybrid Connection `hc` at a local address that is not a relay.
 *
 * @param {string} hostPort e.g. `127.0.0.1:1234`.
 * @returns {string}
 */
function sendUriAt(hostPort) {
  return createRelaySendUri(`ws://${hostPort}`, 'hc');
}

// ---------------------------------------------------------------------------------------------
describe('relayedConnect: arguments', () => {
  test('returns the socket at once, CONNECTING, a ws WebSocket whose url is the address', async () => {
    await withListener({}, async ({ uri, token, accept }) => {
      const { WebSocket } = api();
      const S = relayed(uri, token);
      assert.ok(S instanceof WebSocket, 'an instance of ws.WebSocket');
      assert.equal(S.readyState, WebSocket.CONNECTING);
      assert.equal(S.url, uri);
      assert.equal(typeof S.url, 'string');
      const { peer } = await accept();
      await next(S, 'open');
      assert.equal(S.readyState, WebSocket.OPEN);
      assert.equal(S.url, uri);
      S.send('hello');
      assert.equal((await nextMessage(peer)).data.toString(), 'hello');
    });
  });

  test('a URL object is accepted as the address', async () => {
    await withListener({}, async ({ uri, token, accept }) => {
      const url = new URL(uri);
      const S = relayed(url, token);
      assert.equal(S.url, url.href);
      await accept();
      await next(S, 'open');
    });
  });

  test('an address string that is not a URL throws a SyntaxError "Invalid URL: …"', () => {
    api();
    for (const address of ['not a url', '', '//127.0.0.1/$hc/hc']) {
      assert.throws(
        connecting(address, null),
        (err) => {
          assert.ok(err instanceof SyntaxError, `${address}: a SyntaxError (got ${err && err.name}: ${err && err.message})`);
          assert.equal(err.message, `Invalid URL: ${address}`);
          return true;
        }
      );
    }
    // A password written in an address that is not a URL is not echoed.
    for (const [address, shown] of [
      ['wss://alice:hunter2@bad host/$hc/hc', 'wss://alice:<redacted>@bad host/$hc/hc'],
      ['wss://alice:hun@ter2@bad host/$hc/hc', 'wss://alice:<redacted>@bad host/$hc/hc'],
      ['wss://alice@corp:s3cret@bad host/$hc/hc', 'wss://alice@corp:<redacted>@bad host/$hc/hc'],
      ['wss://alice:pa/ss#w?rd@bad host/$hc/hc', 'wss://alice:<redacted>@bad host/$hc/hc'],
      [' wss://alice:hunter2@bad host/', ' wss://alice:<redacted>@bad host/']
    ]) {
      assert.throws(connecting(address, null), (err) => {
        assert.ok(err instanceof SyntaxError);
        assert.equal(err.message, `Invalid URL: ${shown}`);
        return true;
      });
    }
  });

  test('an address that is neither a string nor a URL throws a SyntaxError "Invalid URL: …" (as ws)', () => {
    api();
    for (const address of [42, undefined, null, {}]) {
      assert.throws(
        connecting(address, null),
        (err) => {
          assert.ok(err instanceof SyntaxError, `${String(address)}: a SyntaxError (got ${err && err.name}: ${err && err.message})`);
          assert.ok(err.message.startsWith('Invalid URL: '), `${String(address)}: ${err.message}`);
          return true;
        }
      );
    }
  });

  test('an address that is not ws:/wss: throws a SyntaxError naming the allowed protocols', () => {
    api();
    for (const address of ['ftp://127.0.0.1/$hc/hc?sb-hc-action=connect', 'sb://ns.servicebus.windows.net/hc']) {
      assert.throws(
        connecting(address, null),
        (err) => {
          assert.ok(err instanceof SyntaxError, `${address}: a SyntaxError (got ${err && err.name})`);
          assert.equal(
            err.message,
            'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"',
            address
          );
          return true;
        }
      );
    }
  });

  test('a token that is not a string, null or undefined throws a TypeError ERR_INVALID_ARG_TYPE naming "token"', () => {
    api();
    const uri = sendUriAt('127.0.0.1:9');
    for (const token of [42, {}, true, ['SharedAccessSignature x'], Buffer.from('x')]) {
      assert.throws(
        connecting(uri, token),
        (err) => {
          assert.ok(err instanceof TypeError, `token ${String(token)}: a TypeError (got ${err && err.name})`);
          assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
          assert.match(err.message, /token/);
          return true;
        }
      );
    }
  });

  test('bad option values throw a TypeError or RangeError naming the option', () => {
    api();
    const uri = sendUriAt('127.0.0.1:9');
    const cases = [
      ['handshakeTimeout', -1],
      ['handshakeTimeout', 0],
      ['handshakeTimeout', NaN],
      ['handshakeTimeout', Infinity],
      ['handshakeTimeout', '300'],
      ['maxPayload', 'big'],
      ['closeTimeout', 'soon'],
      ['headers', 'X-A: b'],
      ['headers', 42],
      ['ca', 42],
      ['ca', [42]],
      // No certificate in it: refused at the call, not when TLS starts (wss: only).
      ['ca', 'not a pem'],
      ['ca', [Buffer.from('neither')]]
    ];
    for (const [name, value] of cases) {
      assert.throws(
        connecting(uri, null, { [name]: value }),
        (err) => {
          assert.ok(
            err instanceof TypeError || err instanceof RangeError,
            `${name}: ${String(value)}: a TypeError or RangeError (got ${err && err.name}: ${err && err.message})`
          );
          assert.ok(err.message.includes(name), `${name}: ${String(value)}: the message names the option: ${err.message}`);
          return true;
        },
        `${name}: ${String(value)}`
      );
    }
  });

  test('an invalid or duplicated subprotocol throws a SyntaxError', () => {
    api();
    const uri = sendUriAt('127.0.0.1:9');
    for (const protocols of [['foo', 'foo'], 'bad protocol', [''], ['a,b'], ['ok', 'é']]) {
      assert.throws(
        connecting(uri, null, { protocols }),
        (err) => {
          assert.ok(err instanceof SyntaxError, `${JSON.stringify(protocols)}: a SyntaxError (got ${err && err.name})`);
          assert.equal(err.message, 'An invalid or duplicated subprotocol was specified');
          return true;
        }
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('relayedConnect: the callback and options', () => {
  test('fn is called once on open with the socket, readyState OPEN; options may be left out', async () => {
    await withListener({}, async ({ uri, token, accept }) => {
      const calls = [];
      const S = relayed(uri, token, (socket) => calls.push({ socket, readyState: socket.readyState }));
      assert.equal(calls.length, 0, 'not called synchronously');
      const { peer } = await accept();
      await next(S, 'open');
      assert.equal(calls.length, 1);
      assert.equal(calls[0].socket, S);
      assert.equal(calls[0].readyState, 1);
      S.send('x');
      await nextMessage(peer);
      peer.send('y');
      await nextMessageOf(S);
      assert.equal(calls.length, 1, 'called once');
      assert.equal(typesOf(S).filter((t) => t === 'open').length, 1, "'open' once");

      const calls2 = [];
      const T = relayed(uri, token, { protocols: 'p1' }, (socket) => calls2.push(socket.protocol));
      await accept({ protocol: 'p1' });
      await next(T, 'open');
      assert.deepEqual(calls2, ['p1'], 'with options and fn');
    });
  });

  test('the token goes in ServiceBusAuthorization (none when null/undefined); id as sb-hc-id; headers are sent', async () => {
    const { port, upgrades, close } = await refusingServer();
    try {
      const uri = sendUriAt(`127.0.0.1:${port}`);
      const token = createRelayToken(uri, 'RootManageSharedAccessKey', 'a-key');
      const S = relayed(uri, token, { id: 'my-track-id', headers: { 'X-Custom-Header': 'v1' } });
      const err = await handshakeFailure(S, token);
      assert.equal(err.message, 'Unexpected server response: 404');
      assert.equal(err.statusCode, 404);
      assert.equal(err.statusDescription, 'Not Found');
      assert.equal(upgrades.length, 1);
      const [first] = upgrades;
      assert.equal(first.headers.servicebusauthorization, token, 'the token in ServiceBusAuthorization');
      assert.equal(first.headers['x-custom-header'], 'v1');
      assert.equal(first.headers.upgrade.toLowerCase(), 'websocket');
      assert.equal(first.headers['sec-websocket-version'], '13');
      const url = new URL(first.url, `http://127.0.0.1:${port}`);
      assert.equal(url.pathname, '/$hc/hc');
      assert.equal(url.searchParams.get('sb-hc-action'), 'connect');
      assert.deepEqual(url.searchParams.getAll('sb-hc-id'), ['my-track-id']);
      assert.equal(url.searchParams.has('sb-hc-token'), false, 'the token is not put in the address');

      for (const [what, args] of [['null', [uri, null]], ['undefined', [uri, undefined]], ['left out', [uri]]]) {
        const T = relayed(...args);
        await handshakeFailure(T, null);
        const last = upgrades[upgrades.length - 1];
        assert.equal(last.headers.servicebusauthorization, undefined, `token ${what}: no ServiceBusAuthorization`);
        assert.equal(new URL(last.url, 'http://x').searchParams.has('sb-hc-id'), false, `token ${what}: no sb-hc-id`);
      }
      assert.equal(upgrades.length, 4);

      // As ws: credentials in the address go as Basic authorization (percent-decoded);
      // header names that differ only in case are one header, the last given.
      const withUser = new URL(uri);
      withUser.username = 'user';
      withUser.password = 'p%40ss';
      const U = relayed(withUser.href, null, { headers: { 'X-Dup': 'a', 'x-dup': 'b' } });
      await handshakeFailure(U, null);
      const sent = upgrades.at(-1).headers;
      assert.equal(sent.authorization, `Basic ${Buffer.from('user:p@ss').toString('base64')}`);
      assert.equal(sent['x-dup'], 'b');
      const V = relayed(withUser.href, null, { headers: { authorization: 'Bearer mine' } });
      await handshakeFailure(V, null);
      assert.equal(upgrades.at(-1).headers.authorization, 'Bearer mine', 'an Authorization header of its own wins');
      const W = relayed(withUser.href, null, { headers: { Authorization: '' } });
      await handshakeFailure(W, null);
      assert.equal(upgrades.at(-1).headers.authorization, sent.authorization, 'an empty one does not');
    } finally {
      endSockets();
      await close();
    }
  });

  test('headers reach the listener in connectHeaders; id is the accept id; protocols and permessage-deflate are offered', async () => {
    await withListener({}, async ({ open }) => {
      const { S, accept } = await open(
        { headers: { 'X-Custom-Header': 'v1' }, id: 'track-7', protocols: ['p1', 'p2'] },
        { protocol: 'p2' }
      );
      assert.equal(accept.id, 'track-7');
      assert.equal(new URL(accept.address).searchParams.get('sb-hc-id'), 'track-7');
      const custom = findHeader(accept.connectHeaders, 'X-Custom-Header');
      assert.ok(custom, 'the custom header is passed on');
      assert.equal(custom[1], 'v1');
      const offered = findHeader(accept.connectHeaders, 'Sec-WebSocket-Protocol');
      assert.ok(offered, 'Sec-WebSocket-Protocol is sent');
      assert.deepEqual(offered[1].split(/\s*,\s*/), ['p1', 'p2']);
      // ws's client offer, by default (perMessageDeflate: true).
      const extensions = findHeader(accept.connectHeaders, 'Sec-WebSocket-Extensions');
      assert.ok(extensions, 'permessage-deflate is offered');
      assert.equal(extensions[1], 'permessage-deflate; client_max_window_bits');
      assert.equal(S.protocol, 'p2');

      const single = await open({ protocols: 'only', perMessageDeflate: false }, { protocol: 'only' });
      assert.equal(findHeader(single.accept.connectHeaders, 'Sec-WebSocket-Protocol')[1], 'only');
      assert.equal(findHeader(single.accept.connectHeaders, 'Sec-WebSocket-Extensions'), undefined, 'perMessageDeflate: false offers nothing');
      assert.equal(single.S.protocol, 'only');
    });
  });

  test('an anonymous sender (token null or undefined) reaches a Hybrid Connection without client authorization', async () => {
    await withListener(
      { relay: { hybridConnections: [{ name: 'open', requiresClientAuthorization: false }, { name: 'closed' }] }, path: 'open' },
      async ({ uri, accept, relay }) => {
        for (const token of [null, undefined]) {
          const S = relayed(uri, token);
          const { peer } = await accept();
          await next(S, 'open');
          S.send('anonymous');
          assert.equal((await nextMessage(peer)).data.toString(), 'anonymous');
        }
        // A Hybrid Connection that requires a token refuses it with 401.
        const closedUri = createRelaySendUri(relay.namespace, 'closed');
        const err = await handshakeFailure(relayed(closedUri, null), null);
        assert.equal(err.message, 'Unexpected server response: 401');
        assert.equal(err.statusCode, 401);
      }
    );
  });

  test('maxPayload: a message of exactly maxPayload bytes is delivered; one byte more is an error', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open({ maxPayload: 1024 });
      peer.send(Buffer.alloc(1024, 1));
      const m = await nextMessageOf(S);
      assert.equal(m.data.length, 1024);
      peer.send(Buffer.alloc(1025, 2));
      const c = await closeOf(S);
      assert.deepEqual(typesOf(S), ['open', 'message', 'error', 'close']);
      const err = eventsOf(S)[2].args[0];
      assert.equal(err.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
      assert.equal(c.code, 1006);
    });
  });

  test('the default maxPayload (100 MiB) takes a 65 MiB message in one frame', async () => {
    await withListener({}, async ({ open }) => {
      const { S, peer } = await open();
      const big = Buffer.alloc(65 * 1024 * 1024, 0x5a);
      big.writeUInt32BE(0xdeadbeef, big.length - 4);
      peer.send(big);
      const m = await nextMessageOf(S, 30_000, 'the 65 MiB message');
      assert.equal(m.isBinary, true);
      assert.equal(m.data.length, big.length);
      assert.ok(m.data.equals(big), 'the same bytes');
      assert.deepEqual(typesOf(S), ['open', 'message']);
    });
  });
});

// ---------------------------------------------------------------------------------------------
describe('relayedConnect: handshake failures', () => {
  test('no listener: Unexpected server response: 404', async () => {
    await withRelay(undefined, async (relay) => {
      try {
        const uri = createRelaySendUri(relay.namespace, 'nobody');
        const token = createRelayToken(uri, relay.keyName, relay.key);
        const err = await handshakeFailure(relayed(uri, token), token);
        assert.equal(err.message, 'Unexpected server response: 404');
        assert.equal(err.statusCode, 404);
        assert.equal(typeof err.statusDescription, 'string');
      } finally {
        endSockets();
      }
    });
  });

  test("rejected by the listener: the listener's status and description", async () => {
    await withListener({}, async ({ start, control, token }) => {
      for (const [code, description] of [[403, 'go away'], [503, 'busy, try later']]) {
        const S = start();
        await rejectRendezvous(await nextAccept(control), code, description);
        const err = await handshakeFailure(S, token);
        assert.equal(err.message, `Unexpected server response: ${code}`);
        assert.equal(err.statusCode, code);
        assert.equal(err.statusDescription, description);
      }
    });
  });

  test('a token the relay refuses: 401, and the signature is not in the error', async () => {
    await withListener({}, async ({ uri }) => {
      const bad = createRelayToken(uri, 'RootManageSharedAccessKey', 'not-the-key');
      const err = await handshakeFailure(relayed(uri, bad), bad);
      assert.equal(err.message, 'Unexpected server response: 401');
      assert.equal(err.statusCode, 401);
      const none = await handshakeFailure(relayed(uri, null), null);
      assert.equal(none.statusCode, 401);
    });
  });

  test('connection refused: ECONNREFUSED', async () => {
    const server = net.createServer();
    const port = await listenLocal(server);
    await closeServer(server, new Set());
    try {
      const uri = sendUriAt(`127.0.0.1:${port}`);
      const token = createRelayToken(uri, 'k', 'secret-key');
      const err = await handshakeFailure(relayed(uri, token), token);
      assert.equal(err.code, 'ECONNREFUSED');
    } finally {
      endSockets();
    }
  });

  test('a host name that does not resolve: ENOTFOUND', async () => {
    try {
      const uri = createRelaySendUri('ws://nonexistent.invalid', 'hc');
      const token = createRelayToken(uri, 'k', 'secret-key');
      const err = await handshakeFailure(relayed(uri, token), token, 15_000);
      assert.equal(err.code, 'ENOTFOUND');
    } finally {
      endSockets();
    }
  });

  test('handshakeTimeout against a server that never answers: Opening handshake has timed out (ETIMEDOUT)', async () => {
    const silent = await silentServer();
    try {
      const uri = sendUriAt(`127.0.0.1:${silent.port}`);
      const token = createRelayToken(uri, 'k', 'secret-key');
      const started = Date.now();
      const S = relayed(uri, token, { handshakeTimeout: 300 });
      const err = await handshakeFailure(S, token);
      const elapsed = eventsOf(S)[0].at - started;
      assert.equal(err.message, 'Opening handshake has timed out');
      assert.equal(err.code, 'ETIMEDOUT');
      assert.ok(elapsed >= 250, `timed out after ${elapsed} ms, before handshakeTimeout (300 ms)`);
      assert.ok(elapsed < 3000, `timed out after ${elapsed} ms, long after handshakeTimeout (300 ms)`);
    } finally {
      endSockets();
      await silent.close();
    }
  });

  test('handshakeTimeout while the listener does not accept', async () => {
    await withListener({}, async ({ start, control, token }) => {
      const S = start({ handshakeTimeout: 300 });
      await nextAccept(control);
      const err = await handshakeFailure(S, token);
      assert.equal(err.message, 'Opening handshake has timed out');
      assert.equal(err.code, 'ETIMEDOUT');
    });
  });
});

/**
 * A TCP server that answers every upgrade request with `respond(accept)`'s bytes, where
 * `accept` is the right Sec-WebSocket-Accept, then keeps the connection open.
 *
 * @param {(accept: string) => (string|Buffer)} respond The answer.
 * @param {(socket: net.Socket) => void} [onSocket] Sees each connection.
 * @returns {Promise<{ port: number, close: () => Promise<void> }>}
 */
async function answeringServer(respond, onSocket) {
  const sockets = new Set();
  const server = net.createServer((s) => {
    if (onSocket) onSocket(s);
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    let head = '';
    s.on('data', (chunk) => {
      if (head.includes('\r\n\r\n')) return;
      head += chunk;
      if (!head.includes('\r\n\r\n')) return;
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)[1];
      s.write(respond(crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')));
    });
  });
  const port = await listenLocal(server);
  return { port, close: () => closeServer(server, sockets) };
}

describe('relayedConnect: as ws 8, where the handshake has room for it', () => {
  test('informational answers (100, 103) before the 101 are skipped, and a 101 with 300 headers opens, with both clients', async () => {
    const many = Array.from({ length: 300 }, (_, i) => `X-Header-${i}: ${i}`);
    const answers = {
      informational: (accept) =>
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      'many headers': (accept) =>
        ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`, ...many, '', ''].join(
          '\r\n'
        )
    };
    for (const [what, respond] of Object.entries(answers)) {
      const server = await answeringServer(respond);
      try {
        const uri = sendUriAt(`127.0.0.1:${server.port}`);
        const W = new WebSocket(uri, { perMessageDeflate: false });
        const wsOutcome = await withTimeout(
          new Promise((resolve) => {
            W.once('open', () => resolve('open'));
            W.once('error', (err) => resolve(err.message));
          }),
          STEP_MS,
          `ws 8 against ${what}`
        );
        W.terminate();
        assert.equal(wsOutcome, 'open', `ws 8 against ${what}`);
        const S = relayed(uri, null);
        const first = await withTimeout(
          new Promise((resolve) => {
            S.once('open', () => resolve('open'));
            S.once('error', (err) => resolve(err.message));
          }),
          STEP_MS,
          `relayedConnect against ${what}`
        );
        assert.equal(first, 'open', `relayedConnect against ${what}`);
      } finally {
        endSockets();
        await server.close();
      }
    }
  });

  test('after a protocol error from the peer, the close frame goes out and the connection is half-closed at once, with both clients', async () => {
    let ended;
    const answer = (accept) =>
      Buffer.concat([
        Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`),
        Buffer.from([0x80, 0x00]) // a continuation frame with nothing to continue: 1002
      ]);
    const server = await answeringServer(answer, (s) => {
      const got = [];
      s.on('data', (d) => got.push(d));
      // The peer never answers the close: only the client's half-close ends this wait.
      s.on('end', () => ended(Buffer.concat(got)));
    });
    try {
      const uri = sendUriAt(`127.0.0.1:${server.port}`);
      for (const [name, connect] of [
        ['ws 8', () => new WebSocket(uri, { perMessageDeflate: false })],
        ['relayedConnect', () => relayed(uri, null)]
      ]) {
        const half = new Promise((resolve) => (ended = resolve));
        const S = connect();
        S.on('error', () => {});
        const bytes = await withTimeout(half, STEP_MS, `${name}: the client's half-close`);
        // The close frame (masked, 1002) came before the end.
        const frame = bytes.subarray(bytes.indexOf('\r\n\r\n') + 4);
        assert.equal(frame[0], 0x88, `${name}: a close frame`);
        const code = (frame[6] ^ frame[2]) * 256 + (frame[7] ^ frame[3]);
        assert.equal(code, 1002, `${name}: its code`);
        S.terminate();
      }
    } finally {
      endSockets();
      await server.close();
    }
  });

  test("options.id is added to the address's query as written: the rest of it is not re-encoded", async () => {
    const { port, upgrades, close } = await refusingServer();
    try {
      const uri = `${sendUriAt(`127.0.0.1:${port}`)}&app=a%20b~c&flag`;
      for (const id of [undefined, 'track 1/&']) {
        const S = relayed(uri, null, id === undefined ? {} : { id });
        await handshakeFailure(S, null);
        const sent = upgrades.at(-1).url;
        assert.ok(sent.includes('&app=a%20b~c&flag'), `the query as written (id ${id}): ${sent}`);
        if (id !== undefined) {
          assert.ok(sent.endsWith(`&flag&sb-hc-id=${encodeURIComponent(id)}`), sent);
          assert.equal(S.url, `${uri}&sb-hc-id=${encodeURIComponent(id)}`);
        }
      }
    } finally {
      endSockets();
      await close();
    }
  });

  test('a token a header cannot carry: a TypeError ERR_INVALID_CHAR at once; from a token function, ERR_TOKEN_PROVIDER', async () => {
    const uri = sendUriAt('127.0.0.1:9');
    for (const token of ['SharedAccessSignature sr=a\r\nX-Evil: 1', 'a\u0001b', 'a\u20acb']) {
      assert.throws(connecting(uri, token), (err) => {
        assert.ok(err instanceof TypeError, `${JSON.stringify(token)}: ${err}`);
        assert.equal(err.code, 'ERR_INVALID_CHAR');
        assert.equal(err.message, 'Invalid character in header content ["ServiceBusAuthorization"]');
        return true;
      });
      const S = relayed(uri, () => token);
      const err = await handshakeFailure(S, token);
      assert.equal(err.code, 'ERR_TOKEN_PROVIDER');
      assert.equal(err.message, 'The token provider failed: the token has characters a header cannot carry');
    }
  });

  test('close() while a token function has not answered: the socket closes and nothing keeps the process alive', async () => {
    const script = `
      const { relayedConnect } = require(process.env.HYCO_PKG);
      const ws = relayedConnect('ws://127.0.0.1:9/$hc/hc?sb-hc-action=connect', () => new Promise(() => {}), { handshakeTimeout: 600000 });
      ws.on('error', (err) => console.log('error', err.message));
      ws.on('close', (code) => console.log('close', code));
      ws.close();
    `;
    const r = await runNode(script, { ms: STEP_MS * 2 }).done;
    assert.equal(r.timedOut, false, `the process exits by itself: ${describeChild(r)}`);
    assert.equal(r.code, 0, describeChild(r));
    assert.equal(r.stdout, 'error WebSocket was closed before the connection was established\nclose 1006\n');
  });

  test('a token function with a handshakeTimeout beyond a timer\'s range (2^31 ms) waits for the token', async () => {
    const server = await answeringServer(() => 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    try {
      const uri = sendUriAt(`127.0.0.1:${server.port}`);
      const token = createRelayToken(uri, 'k', 'secret-key');
      for (const handshakeTimeout of [2 ** 31, 30 * 86_400_000]) {
        // (A timer of more than 2^31 - 1 ms fires after 1 ms: the token comes later.)
        const S = relayed(uri, () => new Promise((resolve) => setTimeout(resolve, 50, token)), { handshakeTimeout });
        const err = await handshakeFailure(S, token);
        assert.equal(err.message, 'Unexpected server response: 404', `handshakeTimeout ${handshakeTimeout}`);
      }
    } finally {
      endSockets();
      await server.close();
    }
  });

  test("a token function's wait counts towards handshakeTimeout: the handshake gets what is left", async () => {
    const silent = await silentServer();
    try {
      const uri = sendUriAt(`127.0.0.1:${silent.port}`);
      const token = createRelayToken(uri, 'k', 'secret-key');
      const started = Date.now();
      const provider = () => new Promise((resolve) => setTimeout(resolve, 1000, token));
      const S = relayed(uri, provider, { handshakeTimeout: 1200 });
      const err = await handshakeFailure(S, token, 10_000);
      const elapsed = eventsOf(S)[0].at - started;
      assert.equal(err.code, 'ETIMEDOUT');
      // 1,200 ms from the start, not 1,000 + 1,200.
      assert.ok(elapsed < 2000, `timed out ${elapsed} ms after the start (handshakeTimeout 1200)`);
      assert.ok(elapsed >= 1100, `timed out ${elapsed} ms after the start, before handshakeTimeout`);
    } finally {
      endSockets();
      await silent.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('relayedConnect: TLS', () => {
  let dir;
  let certFile;
  let certPem;
  let keyPem;
  let otherCertPem;
  let otherKeyPem;
  let caPem;
  let leafCertPem;
  let leafKeyPem;
  let chainLeafPem;
  let chainKeyPem;
  let intermediatePem;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'connect-tls-'));
    const make = (name, subject, san) => {
      const keyFile = path.join(dir, `${name}.key`);
      const crtFile = path.join(dir, `${name}.crt`);
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-addext', `subjectAltName=${san}`,
          '-days', '1', '-keyout', keyFile, '-out', crtFile],
        { stdio: 'ignore' }
      );
      return { keyFile, crtFile };
    };
    const good = make('local', '/CN=127.0.0.1', 'IP:127.0.0.1');
    const other = make('other', '/CN=other.example', 'DNS:other.example');
    certFile = good.crtFile;
    certPem = fs.readFileSync(good.crtFile, 'utf8');
    keyPem = fs.readFileSync(good.keyFile, 'utf8');
    otherCertPem = fs.readFileSync(other.crtFile, 'utf8');
    otherKeyPem = fs.readFileSync(other.keyFile, 'utf8');

    // A CA and a leaf it issued (CA:FALSE), the usual shape of a server certificate.
    const ca = make('ca', '/CN=hyco-ws-rs test CA', 'DNS:hyco-ws-rs-test-ca');
    const leafKey = path.join(dir, 'leaf.key');
    const leafCsr = path.join(dir, 'leaf.csr');
    const leafCrt = path.join(dir, 'leaf.crt');
    const ext = path.join(dir, 'leaf.ext');
    fs.writeFileSync(
      ext,
      'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n'
    );
    execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', leafKey, '-out', leafCsr], {
      stdio: 'ignore'
    });
    execFileSync(
      'openssl',
      ['x509', '-req', '-in', leafCsr, '-CA', ca.crtFile, '-CAkey', ca.keyFile, '-set_serial', '2', '-days', '1', '-extfile', ext, '-out', leafCrt],
      { stdio: 'ignore' }
    );
    caPem = fs.readFileSync(ca.crtFile, 'utf8');
    leafCertPem = fs.readFileSync(leafCrt, 'utf8');
    leafKeyPem = fs.readFileSync(leafKey, 'utf8');

    // An intermediate CA under it, and a leaf that intermediate issued: a server sends its
    // chain (a TLS-inspecting proxy's, a private CA's).
    const sign = (name, issuer, extText, serial) => {
      const key = path.join(dir, `${name}.key`);
      const csr = path.join(dir, `${name}.csr`);
      const crt = path.join(dir, `${name}.crt`);
      const extFile = path.join(dir, `${name}.ext`);
      fs.writeFileSync(extFile, extText);
      execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', key, '-out', csr], { stdio: 'ignore' });
      execFileSync(
        'openssl',
        ['x509', '-req', '-in', csr, '-CA', issuer.crtFile, '-CAkey', issuer.keyFile, '-set_serial', serial, '-days', '1', '-extfile', extFile, '-out', crt],
        { stdio: 'ignore' }
      );
      return { keyFile: key, crtFile: crt };
    };
    const intermediate = sign('intermediate', ca, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n', '3');
    const chained = sign('chained', intermediate, fs.readFileSync(ext, 'utf8'), '4');
    chainLeafPem = fs.readFileSync(chained.crtFile, 'utf8');
    chainKeyPem = fs.readFileSync(chained.keyFile, 'utf8');
    intermediatePem = fs.readFileSync(intermediate.crtFile, 'utf8');
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const tlsListener = () => ({
    relay: { tls: { cert: certPem, key: keyPem } },
    listen: { wsOptions: { ca: certPem } },
    peerOptions: { ca: certPem }
  });

  test('ca as a PEM string, a Buffer or an array of them trusts the relay', async () => {
    await withListener(tlsListener(), async ({ open, relay, uri }) => {
      assert.ok(uri.startsWith(`wss://127.0.0.1:${relay.port}/`), uri);
      for (const [what, ca] of [
        ['a string', certPem],
        ['a Buffer', Buffer.from(certPem)],
        ['an array', [certPem]],
        ['an array with a Buffer', [otherCertPem, Buffer.from(certPem)]]
      ]) {
        const { S, peer } = await open({ ca });
        S.send(`over TLS, ca as ${what}`);
        assert.equal((await nextMessage(peer)).data.toString(), `over TLS, ca as ${what}`);
        peer.send('back');
        assert.equal((await nextMessageOf(S)).data.toString(), 'back');
      }
    });
  });

  // As Node.js (and so ws) reports it: an untrusted self-signed leaf is
  // DEPTH_ZERO_SELF_SIGNED_CERT; an untrusted issuer UNABLE_TO_VERIFY_LEAF_SIGNATURE (below).
  test('without ca, the self-signed relay certificate is refused: DEPTH_ZERO_SELF_SIGNED_CERT', async () => {
    await withListener(tlsListener(), async ({ start, token }) => {
      const err = await handshakeFailure(start(), token);
      assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT', `${err.code}: ${err.message}`);
      assert.equal(err.message, 'self-signed certificate');
    });
  });

  test('a certificate for another host name is refused: ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    await withRelay({ tls: { cert: otherCertPem, key: otherKeyPem } }, async (relay) => {
      try {
        const uri = createRelaySendUri(relay.namespace, 'hc');
        const token = createRelayToken(uri, relay.keyName, relay.key);
        const err = await handshakeFailure(relayed(uri, token, { ca: otherCertPem }), token);
        assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID', `${err.code}: ${err.message}`);
      } finally {
        endSockets();
      }
    });
  });

  test('a leaf certificate issued by a CA: trusted with ca = the CA; without it UNABLE_TO_VERIFY_LEAF_SIGNATURE', async () => {
    const opts = {
      relay: { tls: { cert: leafCertPem, key: leafKeyPem } },
      listen: { wsOptions: { ca: caPem } },
      peerOptions: { ca: caPem }
    };
    await withListener(opts, async ({ open, start, token }) => {
      const { S, peer } = await open({ ca: caPem });
      S.send('via a CA');
      assert.equal((await nextMessage(peer)).data.toString(), 'via a CA');
      const err = await handshakeFailure(start(), token);
      assert.equal(err.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', `${err.code}: ${err.message}`);
    });
  });

  test('a leaf issued by a CA is not trusted by being listed in ca itself: UNABLE_TO_VERIFY_LEAF_SIGNATURE', async () => {
    const opts = {
      relay: { tls: { cert: leafCertPem, key: leafKeyPem } },
      listen: { wsOptions: { ca: caPem } },
      peerOptions: { ca: caPem }
    };
    await withListener(opts, async ({ start, token }) => {
      // As OpenSSL (and so Node.js) without a partial-chain flag: only self-signed
      // certificates are trusted as they are.
      const err = await handshakeFailure(start({ ca: leafCertPem }), token);
      assert.equal(err.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', `${err.code}: ${err.message}`);
    });
  });

  test("a chain with no trusted issuer is refused with OpenSSL's code for its shape: UNABLE_TO_GET_ISSUER_CERT_LOCALLY, SELF_SIGNED_CERT_IN_CHAIN; trusted with ca = the root", async () => {
    for (const [shape, cert, code, message] of [
      ['leaf and intermediate', chainLeafPem + intermediatePem, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'unable to get local issuer certificate'],
      ['leaf, intermediate and root', chainLeafPem + intermediatePem + caPem, 'SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain']
    ]) {
      const opts = {
        relay: { tls: { cert, key: chainKeyPem } },
        listen: { wsOptions: { ca: caPem } },
        peerOptions: { ca: caPem }
      };
      await withListener(opts, async ({ open, start, token }) => {
        const err = await handshakeFailure(start(), token);
        assert.equal(err.code, code, `${shape}: ${err.code}: ${err.message}`);
        assert.equal(err.message, message);
        const { S, peer } = await open({ ca: caPem });
        S.send(`via ${shape}`);
        assert.equal((await nextMessage(peer)).data.toString(), `via ${shape}`);
      });
    }
  });

  test("rejectUnauthorized: false and NODE_TLS_REJECT_UNAUTHORIZED=0 change nothing and say so, once per process (child processes)", async () => {
    const script = `
      const hyco = require(process.env.HYCO_PKG);
      const warnings = [];
      process.on('warning', (w) => warnings.push(w.code));
      for (let i = 0; i < 2; i++) {
        const S = hyco.relayedConnect('ws://127.0.0.1:9/hc', null, process.env.OPTION ? { rejectUnauthorized: false } : {});
        S.on('error', () => {});
        const server = new hyco.RelayedServer({ server: 'ws://127.0.0.1:9/$hc/hc', token: 't', rejectUnauthorized: process.env.OPTION ? false : undefined });
        server.on('error', () => {});
        server.close();
      }
      setTimeout(() => console.log(JSON.stringify(warnings)), 200);
    `;
    for (const [what, env, expected] of [
      ['rejectUnauthorized: false', { OPTION: '1' }, ['HYCO_TLS_ALWAYS_VERIFIED']],
      ['NODE_TLS_REJECT_UNAUTHORIZED=0', { NODE_TLS_REJECT_UNAUTHORIZED: '0' }, ['HYCO_TLS_ALWAYS_VERIFIED']],
      ['neither', {}, []]
    ]) {
      const r = await runNode(script, { env, ms: STEP_MS * 2 }).done;
      assert.equal(r.code, 0, describeChild(r));
      const warnings = JSON.parse(r.stdout.trim().split('\n').pop());
      assert.deepEqual(warnings, expected, `${what}: ${describeChild(r)}`);
    }
  });

  test('NODE_EXTRA_CA_CERTS is trusted (child process, no ca option)', async () => {
    await withListener(tlsListener(), async ({ relay, accept }) => {
      const script = `
        const hyco = require(process.env.HYCO_PKG);
        const uri = hyco.createRelaySendUri(process.env.RELAY_NS, 'hc');
        const S = hyco.relayedConnect(uri, hyco.createRelayToken(uri, process.env.RELAY_KEY_NAME, process.env.RELAY_KEY));
        const guard = setTimeout(() => { console.log('timeout'); process.exit(2); }, 10000);
        S.on('open', () => { console.log('open'); process.exit(0); });
        S.on('error', (e) => { console.log('error ' + e.code + ' ' + e.message); process.exit(1); });
      `;
      const env = {
        NODE_EXTRA_CA_CERTS: certFile,
        RELAY_NS: relay.namespace,
        RELAY_KEY_NAME: relay.keyName,
        RELAY_KEY: relay.key
      };
      const run = runNode(script, { env, ms: 15_000 });
      const accepted = accept();
      accepted.catch(() => {});
      await Promise.race([
        accepted,
        run.done.then((r) => {
          throw new Error(`the child ended before the listener accepted: ${describeChild(r)}`);
        })
      ]);
      const r = await run.done;
      assert.equal(r.code, 0, describeChild(r));
      assert.match(r.stdout, /^open$/m, describeChild(r));
    });
  });
});
